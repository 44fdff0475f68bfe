"""What both proposer hosts share: the caller's :data:`Token`, the :class:`Ready` a host
answers with, and the :class:`Wakeups` heap that says when a proposer must be ticked.

:class:`~zpaxos.hosts.proposer_host.ProposerHost` (write-once keys) and
:class:`~zpaxos.hosts.register_host.RegisterHost` (registers) are two uses of this one
shape: a batch of replies, the time, or a nudge in; a Ready out. So the client loop
(:mod:`zpaxos.runtime.loop`) and the simulators drive either the same way; only what a
finished operation yields differs (an Outcome for a key, a RegResult for a register).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator
from typing import Any, Generic, Protocol, TypeVar

import msgspec
from msgspec import field

from zpaxos.protocol.events import Event

__all__ = ["INF", "Ready", "Token", "Wakeups"]

INF = float("inf")
Token = Hashable  # the caller's handle for one operation (an index, a future...)
R = TypeVar("R")


class Ready(msgspec.Struct, Generic[R]):
    """What a proposer host asks of the runtime: send these (to node ids), report these
    events; these operations finished (the caller's token, and how it ended)."""

    send: list[tuple[int, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    finished: list[tuple[Token, R]] = field(default_factory=list)


class Waker(Protocol):
    """Something a host wakes: it remembers the one time it is due at (None: not due)."""

    wake: float | None


W = TypeVar("W", bound=Waker)


class Wakeups(Generic[W]):
    """A lazy heap of wake-up times. An item is due at ``item.wake``; setting a new time
    leaves the old entry in the heap, where it is skipped (cheaper than removing it)."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, W]] = []
        self._seq = 0  # ties broken by insertion order, never by comparing items

    def schedule(self, item: W, wake: float | None) -> None:
        """``item`` is due at ``wake`` (None or never: not due)."""
        if wake is not None and wake != item.wake and wake != INF:
            item.wake = wake
            self._seq += 1
            heapq.heappush(self._heap, (wake, self._seq, item))

    @property
    def next(self) -> float | None:
        """The earliest time an item is due; None when none is."""
        heap = self._heap
        while heap and heap[0][2].wake != heap[0][0]:
            heapq.heappop(heap)  # superseded by a later entry for the same item
        return heap[0][0] if heap else None

    def due(self, now: float) -> Iterator[W]:
        """Each item due by ``now``, once (its ``wake`` reset). The caller may schedule
        items again while it iterates."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            wake, _, item = heapq.heappop(heap)
            if item.wake == wake:  # not superseded
                item.wake = None
                yield item
