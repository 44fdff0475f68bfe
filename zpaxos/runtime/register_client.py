"""The register runtime: a thin loop around the pure RegisterHost, on a Client's sockets.

    with Client(load_config("configs/cluster.ini")) as c:
        r = c.set("config", b"v1")                 # RegResult(status="ok", version=1, ...)
        r = c.cas("config", b"v2", expect_version=1)
        results = c.registers([("a", RegOp(GET)), ("b", RegOp(SET, b"x"))])  # at once

A Client keeps one :class:`Registers` (so one RegisterHost, one proposer id) for its life:
the 1-RTT promise a write earns carries to the next operation on that register.
"""

from __future__ import annotations

import functools
import itertools
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from msgspec.structs import fields, replace

from zpaxos.hosts.proposing import Ready, Token
from zpaxos.hosts.register_host import RegisterHost
from zpaxos.protocol.core import ProposerOptions
from zpaxos.protocol.messages import MembersInfo, key_problem
from zpaxos.protocol.register import GET, RegisterOptions, RegOp, RegResult
from zpaxos.protocol.registry import MAX_VALUE_BYTES
from zpaxos.protocol.regmessages import RAccepted, RNack, RPromise, RState
from zpaxos.runtime.client_members import FollowsMembers
from zpaxos.runtime.loop import drive
from zpaxos.runtime.sockets import Sockets

__all__ = ["Registers", "options_with", "register_options"]

_REPLIES = frozenset((RPromise, RAccepted, RNack, RState))


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    """A Struct's field names, asked of msgspec once: ``fields()`` evaluates the class's
    annotations each time (a compile() per field), which cost a ``set`` or ``get`` that
    built its options about 80 us, more than the rest of its Python."""
    return frozenset(f.name for f in fields(cls))


@functools.lru_cache(maxsize=64)
def register_options(p: ProposerOptions, one_rtt: bool = True) -> RegisterOptions:
    """Register pacing from the config's [proposer] options (RegisterOptions extends them).
    (Both are frozen Structs, so the answer for one ``p`` is kept.)"""
    return RegisterOptions(**{name: getattr(p, name) for name in _field_names(ProposerOptions)},
                           one_rtt=one_rtt)


def options_with(p: ProposerOptions, one_rtt: bool, overrides: dict[str, Any],
                 ) -> RegisterOptions:
    """Register pacing from ``p`` with ``overrides`` (None: keep), which may name the
    [proposer] options and the registers' own (``read_quorum_first``...)."""
    known = _field_names(RegisterOptions)
    for name in overrides:
        if name not in known:
            raise TypeError(f"no register option {name!r}")
    o = register_options(p, one_rtt)
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(o, **given) if given else o


def checked(key: str, op: RegOp) -> RegOp:
    """``op`` after the checks a node would make (a bad one fails here, at once)."""
    problem = key_problem(key)
    if problem:
        raise ValueError(f"invalid register name {key!r}: {problem}")
    for v in (op.value, op.expect_value):
        if v is not None and len(v) > MAX_VALUE_BYTES:
            raise ValueError(f"value of {len(v)} bytes is over the {MAX_VALUE_BYTES}-byte "
                             f"limit (1 MiB)")
    if op.kind != GET and op.kind != "delete" and op.value is None:
        raise ValueError(f"{op.kind} needs a value")
    return op


class Registers:
    """Register operations over ``sockets`` (the Client's), with one host for its life."""

    def __init__(self, sockets: Sockets, nodes: list[int], rng: random.Random,
                 proposer_id: bytes, on_stop: Callable[[], None],
                 on_refused: Callable[[], None] = lambda: None,
                 report: Callable[[Ready[RegResult]], None] = lambda ready: None,
                 follow: FollowsMembers | None = None) -> None:
        """``follow``: the client whose membership view the registers follow (a refusal
        of our epoch moves it, and every register, to the configuration it carries)."""
        self.sockets = sockets
        self.host = RegisterHost(nodes, rng, proposer_id)
        self.follow = follow
        self.epoch = 0  # the configuration's the registers count (0: the file's nodes)
        self.on_stop = on_stop  # called when a signal asks us to stop (raises)
        # Called when nodes refused our connection (CURVE); raises once no quorum can
        # answer, as for a proposal (Client._check_refusals), instead of at the deadline.
        self.on_refused = on_refused
        self.report = report  # logs a Ready's events (rounds, retries...) like a proposal's
        self._tokens = itertools.count(1)

    def stream(self, items: Iterable[tuple[str, RegOp]], concurrency: int,
               options: RegisterOptions,
               aside: Callable[[list[tuple[Any, Any]]], None] | None = None,
               ) -> Iterator[tuple[int, RegResult, float]]:
        """Run operations with up to ``concurrency`` in flight (operations on one register
        run in order, one at a time); yield ``(index, result, seconds)`` as each ends."""
        host = self.host

        def start(now: float, token: Token, item: tuple[str, RegOp]) -> Ready[RegResult]:
            key, op = item
            return host.submit(now, token, key, checked(key, op), options)

        follow = self.follow
        self._follow(time.monotonic())

        def moved(now: float, infos: list[MembersInfo]) -> Ready[RegResult] | None:
            assert follow is not None
            follow.adopt(infos)
            return self._follow(now)

        return drive(host, self.sockets, items, concurrency, start, _REPLIES, self.report,
                     self.on_stop, self.on_refused, self._tokens, aside,
                     members=moved if follow is not None else None)

    def _follow(self, now: float) -> Ready[RegResult] | None:
        """Move every register to the client's configuration if it is newer than theirs."""
        cfg = self.follow.members if self.follow is not None else None
        if cfg is None or cfg.epoch <= self.epoch:
            return None
        self.epoch = cfg.epoch
        return self.host.reconfigure(now, cfg)

    def run(self, items: Iterable[tuple[str, RegOp]], options: RegisterOptions,
            concurrency: int | None = None,
            aside: Callable[[list[tuple[Any, Any]]], None] | None = None,
            ) -> list[RegResult]:
        items = list(items)
        out: list[RegResult | None] = [None] * len(items)
        for i, result, _ in self.stream(items, concurrency or max(1, len(items)), options,
                                        aside):
            out[i] = result
        return out  # type: ignore[return-value]


def with_one_rtt(o: RegisterOptions, one_rtt: bool | None) -> RegisterOptions:
    return o if one_rtt is None else replace(o, one_rtt=one_rtt)
