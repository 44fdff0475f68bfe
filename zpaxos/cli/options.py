"""Options declared once, as data: each builds its click option and, where a command has
a fast path (``zpaxos propose``), parses itself from ``argv`` exactly as click would.

This module imports click only inside :func:`click_option` and the callbacks click calls,
so the fast path can read the tables without loading click.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

if TYPE_CHECKING:
    import click

Kind = Literal["flag", "text", "key", "file", "seconds", "count", "node_delays"]
MAX_SECONDS = 1e9


class Option(msgspec.Struct, frozen=True):
    """One command-line option. ``kind`` is its type, for click and for the fast path:

    flag         a switch (``--json``)
    text         any text (``--config PATH``)
    key          a key or register name, checked by protocol.messages.key_problem
    file         a path to a file, not a directory (click.Path(dir_okay=False))
    seconds      a float in [low, high]; count: an int in [low, high] (high None: no limit)
    node_delays  NODE:SECONDS, repeatable, into a dict (staging)

    ``default`` None leaves click's own (None, False for a flag); ``fast`` False sends any
    use of the option to click."""

    decls: tuple[str, ...]
    dest: str
    kind: Kind
    help: str
    metavar: str | None = None
    low: float = 0.0
    high: float | None = MAX_SECONDS
    default: float | None = None
    fast: bool = True

    def parse(self, raw: str) -> Any:
        """The value click would give for ``raw``, or None where click would refuse it
        (then click parses the whole command line and says why)."""
        if self.kind == "text":
            return raw
        if self.kind == "key":
            from zpaxos.protocol.messages import key_problem

            return None if key_problem(raw) else raw
        if self.kind == "file":
            return None if not raw or os.path.isdir(raw) else Path(raw)
        if self.kind == "seconds":
            try:
                v = float(raw)
            except ValueError:
                return None
            return v if self.low <= v <= (self.high or MAX_SECONDS) else None  # NaN fails
        if self.kind == "count":
            try:
                n = int(raw)
            except ValueError:
                return None
            return n if n >= self.low and (self.high is None or n <= self.high) else None
        return None  # flags take no value; node_delays are click's


def click_option(opt: Option) -> Callable[[Any], Any]:
    """The ``@click.option`` decorator of ``opt``."""
    import click

    kw: dict[str, Any] = {"help": opt.help}
    if opt.metavar is not None:
        kw["metavar"] = opt.metavar
    if opt.default is not None:
        kw["default"] = opt.default
    if opt.kind == "flag":
        kw["is_flag"] = True
    elif opt.kind == "key":
        kw["callback"] = key_param
    elif opt.kind == "file":
        kw["type"] = click.Path(dir_okay=False, path_type=Path)
    elif opt.kind == "seconds":
        kw["type"] = click.FloatRange(min=opt.low, max=opt.high)
    elif opt.kind == "count":
        kw["type"] = click.IntRange(min=int(opt.low),
                                    max=None if opt.high is None else int(opt.high))
    elif opt.kind == "node_delays":
        kw.update(multiple=True, callback=node_delays)
    return click.option(*opt.decls, opt.dest, **kw)


def apply(options: tuple[Option, ...]) -> Callable[[Any], Any]:
    """All of ``options`` as one decorator, in the table's order in ``--help``."""
    def decorate(f: Any) -> Any:
        for opt in reversed(options):
            f = click_option(opt)(f)
        return f
    return decorate


def key_param(ctx: click.Context, param: click.Parameter, key: str | None) -> str | None:
    import click

    from zpaxos.protocol.messages import key_problem

    if key is not None:
        problem = key_problem(key)
        if problem:
            raise click.BadParameter(f"{key!r}: {problem}")
    return key


def node_delays(ctx: click.Context, param: click.Parameter,
                raw: tuple[str, ...]) -> dict[Hashable, float]:
    """NODE:SECONDS items into {node id: seconds} (node ids are the peers of staging)."""
    import click

    delays: dict[Hashable, float] = {}
    for item in raw:
        node_s, sep, secs_s = item.partition(":")
        try:
            node_id, secs = int(node_s), float(secs_s)
        except ValueError:
            node_id, secs = -1, -1.0
        if not sep or node_id < 0 or not 0 <= secs < float("inf"):
            raise click.BadParameter(f"{item!r} is not NODE:SECONDS (for example 2:1.5)")
        delays[node_id] = secs
    return delays


# ---------------------------------------------------------------- shared by commands

CONFIG = Option(("--config",), "config", "text", metavar="PATH",
                help="Cluster file (default: $ZPAXOS_CONFIG, else configs/cluster.ini).")
CLIENT_KEY = Option(("--client-key",), "client_key", "file", metavar="PATH",
                    help="With CURVE: this client's secret key file (default: [security] "
                         "client_key).")
JSON = Option(("--json",), "as_json", "flag", help="Print one JSON object.")
