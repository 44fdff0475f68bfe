"""``python -m zpaxos ...``: the same command as the installed ``zpaxos``."""

from zpaxos.entry import main

main()
