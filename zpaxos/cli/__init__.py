"""The ``zpaxos`` commands: parse, load config, call the library, print. Wiring only.

One module per command family; :mod:`zpaxos.cli.app` is the click group and its error
handling, :mod:`zpaxos.cli.entry` the console entry point. This file imports nothing, so a
plain ``zpaxos propose`` (``zpaxos.cli.propose``, without click) does not load click;
``from zpaxos.cli import main, cli`` still works, loading the group on first use.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("main", "cli"):
        from zpaxos.cli import app

        return getattr(app, name)
    raise AttributeError(f"module 'zpaxos.cli' has no attribute {name!r}")
