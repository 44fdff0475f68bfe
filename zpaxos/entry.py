"""The ``zpaxos`` console entry point (also ``python -m zpaxos`` and ``python cli.py``).

``zpaxos propose`` in its common forms runs straight from :mod:`zpaxos.proposecmd`,
without loading click or any other command (a short-lived process is mostly start-up);
everything else, help and every usage error included, goes to :func:`zpaxos.cli.main`.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from zpaxos.proposecmd import EXIT_INTERRUPTED, Failure, echo, fast_args, run_propose


def main(argv: list[str] | None = None) -> None:
    """Errors look exactly as :func:`zpaxos.cli.main` prints them."""
    args = sys.argv[1:] if argv is None else argv
    kw = fast_args(args[1:]) if args[:1] == ["propose"] else None
    if kw is None:
        from zpaxos.cli import main as click_main

        click_main(argv)
        return
    try:
        run_propose(**kw)
    except Failure as e:
        from zpaxos.printable import printable

        _fail(printable(str(e)), e.code)
    except KeyboardInterrupt:
        echo("zpaxos propose: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:  # the reader has gone; fine
        sys.stderr.close()
        sys.exit(0)
    sys.exit(0)


def _fail(message: str, code: int) -> NoReturn:
    echo(f"zpaxos propose: error: {message}", err=True)
    sys.exit(code)
