"""Run zpaxos from a checkout without installing it: ``python cli.py node 0``.

The real command lives in the package (``zpaxos.cli``; ``zpaxos.cli.entry`` runs a plain
``zpaxos propose`` without loading click), which is also what the installed ``zpaxos``
console script runs; this file only makes the repository root work too.
"""

from zpaxos.cli.entry import main

if __name__ == "__main__":
    main()
