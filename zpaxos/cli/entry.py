"""The ``zpaxos`` console entry point (also ``python -m zpaxos`` and ``python cli.py``).

``zpaxos propose`` in its common forms runs straight from :mod:`zpaxos.cli.propose`,
without loading click or any other command (a short-lived process is mostly start-up),
without the cyclic garbage collector (about 3-4 ms of its imports' CPU), without
``typing_extensions`` (see :func:`_without_typing_extensions`), and ends without the
interpreter's teardown (see :func:`_leave`); everything else, help and every usage error
included, goes to :func:`zpaxos.cli.app.main`.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from zpaxos.cli.common import Failure, echo
from zpaxos.runtime.exits import Exit


def main(argv: list[str] | None = None) -> None:
    """Errors look exactly as :func:`zpaxos.cli.app.main` prints them. ``argv`` given (a
    caller in the same process): ends with SystemExit, as click does, never os._exit."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["propose"]:
        fast = None
    else:
        if argv is None:
            _without_typing_extensions()
        from zpaxos.cli.propose import fast_args

        fast = fast_args(args[1:])
    if fast is None:
        from zpaxos.cli.app import main as click_main

        click_main(argv)
        return
    leave: Callable[[int], NoReturn] = _leave if argv is None else _exit
    if argv is None:
        # A short-lived process of ours (it ends with os._exit): no cyclic collection while
        # it imports and runs one call; reference counting still frees what it drops.
        gc.disable()
    from zpaxos.cli.propose import run_propose

    try:
        run_propose(fast)
    except Failure as e:
        from zpaxos.printable import printable

        echo(f"zpaxos propose: error: {printable(str(e))}", err=True)
        leave(e.code)
    except KeyboardInterrupt:
        echo("zpaxos propose: interrupted", err=True)
        leave(Exit.INTERRUPTED)
    except BrokenPipeError:  # the reader has gone; fine
        sys.stderr.close()
        sys.exit(Exit.OK)
    leave(Exit.OK)


def _without_typing_extensions() -> None:
    """Keep ``typing_extensions`` out of this process: msgspec imports it when it is
    installed (with ``inspect`` and ``ast``: about 4-5 ms of a 50 ms ``zpaxos propose``)
    and uses it only for types zpaxos never declares, falling back to :mod:`typing` when
    it is absent. It is not a dependency of zpaxos (mypy brings it into a development
    set-up), so this makes such a set-up's propose the same as an installed one's. The
    other libraries on this path (pyzmq, click) import it only for type checking.
    A ``None`` in ``sys.modules`` makes ``import typing_extensions`` raise ImportError;
    one imported already (a caller in the same process) is left alone."""
    sys.modules.setdefault("typing_extensions", None)  # type: ignore[arg-type]


def _exit(code: int) -> NoReturn:
    sys.exit(code)


def _leave(code: int) -> NoReturn:
    """End the process with ``code`` once everything it wrote is out: the log files
    closed (``logging.shutdown``), stdout and stderr flushed. It skips the interpreter's
    teardown, which frees every module, class and object one at a time: about 20 ms of a
    ``zpaxos propose`` that is mostly start-up. Nothing is left for the teardown to do:
    the client has closed its sockets (waiting out their linger), no other thread of ours
    runs, and no atexit handler of ours exists."""
    if "logging" in sys.modules:
        import logging

        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # the reader has gone, or already closed
            pass
    os._exit(code)
