"""The client loop: one loop under ``Client.stream`` (write-once keys) and the register
stream (``Client.register_stream``), around either proposer host.

It only moves messages and time: top up to ``concurrency`` operations, send what the
host asked for (one frame per node per pass), poll until the host's next wake-up, feed it
the replies, a nudge when a node came back, and the time; yield each operation as it
finishes. Which operation a reply belongs to, retries and outcomes are the host's business
(:mod:`zpaxos.hosts.proposer_host`, :mod:`zpaxos.hosts.register_host`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from zpaxos.hosts.proposing import Ready, Token
from zpaxos.protocol.messages import Decide, MembersInfo
from zpaxos.runtime.sockets import Sockets

__all__ = ["Host", "drive"]

R = TypeVar("R")
T = TypeVar("T")


class Host(Protocol[R]):
    """What the loop needs of a proposer host (ProposerHost and RegisterHost both are)."""

    @property
    def next_wakeup(self) -> float | None: ...

    def receive_all(self, now: float, replies: Any) -> Ready[R]: ...

    def nudge(self, now: float) -> Ready[R]: ...

    def tick(self, now: float) -> Ready[R]: ...


def drive(host: Host[R], sockets: Sockets, items: Iterable[T], concurrency: int,
          start: Callable[[float, Token, T], Ready[R]], replies: frozenset[type],
          report: Callable[[Ready[R]], None], stop: Callable[[], None],
          refused: Callable[[], None], tokens: Iterator[int],
          aside: Callable[[list[tuple[Any, Any]]], None] | None = None,
          members: Callable[[float, list[MembersInfo]], Ready[R] | None] | None = None,
          ) -> Iterator[tuple[int, R, float]]:
    """Run ``items`` with up to ``concurrency`` in flight; yield ``(index, how it ended,
    seconds it took)`` as each finishes. ``start(now, token, item)`` starts one (a bad
    item raises before anything is sent); ``replies``: the message types the host takes
    (from a node we asked: a node's DEALER source is its id); ``report``: log a Ready's
    events; ``stop``: a signal asked us to stop (raises); ``refused``: nodes refused our
    connection (raises once no quorum can answer); ``tokens``: fresh tokens (a host that
    outlives one call never sees one twice); ``aside``: given what arrived that the host
    does not take (a watch's notifications, during its confirming read); ``members``:
    given the MembersInfo that arrived (a node refused our epoch and told us its
    configuration), returns what the host does about it (a new round, at once)."""
    # One piece (over 70 lines): a pass of the loop is one ordered story -- start, send,
    # poll, feed replies/nudge/tick, send what running operations need, then yield -- and
    # the order is what keeps the wire batched and a round logged before its messages.
    pending = iter(enumerate(items))
    started: dict[Token, tuple[int, float]] = {}
    outbox: list[tuple[int, Any]] = []  # the pass's sends: one frame per node at the end
    watch = sockets.watch

    def take(ready: Ready[R], finished: list[tuple[Token, R]]) -> None:
        # Events first: a round starts (in the log) before its Prepares leave.
        # Proposers persist nothing: a restarted proposer is a new proposer with a new id.
        if ready.events:
            report(ready)
        if ready.send:
            outbox.extend(ready.send)
        if ready.finished:
            finished += ready.finished

    try:
        while True:
            finished: list[tuple[Token, R]] = []
            while len(started) < concurrency:  # top up
                nxt = next(pending, None)
                if nxt is None:
                    break
                index, item = nxt
                token, now = next(tokens), time.monotonic()
                ready = start(now, token, item)
                started[token] = (index, now)
                take(ready, finished)
            _flush(sockets, outbox)
            if not started:
                return  # nothing in flight and nothing left to start
            if not finished:
                wake = host.next_wakeup
                batch = sockets.poll(None if wake is None else wake - time.monotonic())
                if sockets.stop_requested:
                    stop()
                if watch is not None and watch.refused:
                    refused()
                now = time.monotonic()
                got = [(src, msg) for src, msg in batch
                       if type(src) is int and type(msg) in replies]
                if aside is not None and len(got) < len(batch):
                    aside([(src, msg) for src, msg in batch
                           if not (type(src) is int and type(msg) in replies)])
                if got:
                    take(host.receive_all(now, got), finished)
                if members is not None:
                    infos = [m for _, m in batch if type(m) is MembersInfo]
                    moved = members(now, infos) if infos else None
                    if moved is not None:
                        take(moved, finished)
                if watch is not None and watch.came_up:
                    # A node is back (after a crash or a partition): retry at once, so
                    # decisions resume within a round trip of a majority being reachable.
                    watch.came_up.clear()
                    take(host.nudge(now), finished)
                if wake is not None and now >= wake:
                    take(host.tick(now), finished)
            # Before any outcome is handed out, what running operations need must leave.
            # Decides alone may wait for the next pass's frame (one frame per node
            # instead of two, one at a time); the finally below sends them if the
            # caller stops iterating.
            if outbox and any(type(m) is not Decide for _, m in outbox):
                _flush(sockets, outbox)
            for done, result in finished:
                entry = started.pop(done, None)
                if entry is not None:  # (else: left over from a call its caller dropped)
                    yield entry[0], result, time.monotonic() - entry[1]
    finally:
        if sockets.dealers:  # (closed sockets have none: a generator dropped after close
            _flush(sockets, outbox)  # sends nothing)


def _flush(sockets: Sockets, outbox: list[tuple[int, Any]]) -> None:
    """Send what the pass produced: one frame per node (the batched wire)."""
    if outbox:
        sockets.send_all(outbox)
        outbox.clear()
