"""``python -m zpaxos ...``: the same command as the installed ``zpaxos``."""

from zpaxos.cli.entry import main

main()
