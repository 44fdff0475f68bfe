"""``python -m zpaxos ...``: the same command as the installed ``zpaxos``."""

from zpaxos.proposecmd import fast_main

fast_main()
