"""``python -m zpaxos ...``: the same command as the installed ``zpaxos``."""

from zpaxos.cli import main

main()
