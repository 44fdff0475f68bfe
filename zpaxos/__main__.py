"""``python -m zpaxos ...``: the same command as the installed ``zpaxos``."""

from .cli import main

main()
