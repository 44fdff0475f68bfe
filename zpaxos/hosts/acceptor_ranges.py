"""The acceptor host's RangePrepares (zpaxos/protocol/ranges.py), paced, each reading only
its own range's keys (:class:`RangesMixin`).

Its own module because a RangePrepare is the one message whose cost is not one key's: it
looks at every key of its range, so the host counts its rows against a pass's budget and
leaves the rest, in order, to later passes; with a source it reads the range by an index
seek and lays the pass's new keys over it. The rule itself is the core's.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import TYPE_CHECKING

from zpaxos.hosts.acceptor_ready import Ready, StateSource, outcome_of
from zpaxos.hosts.addresses import Src
from zpaxos.hosts.keyrange import in_range, span
from zpaxos.protocol.core import Acceptor
from zpaxos.protocol.events import Ignored
from zpaxos.protocol.messages import RangePrepare
from zpaxos.protocol.ranges import MAX_SCAN
from zpaxos.protocol.registry import type_name

# RangePrepares: each reads (and checksums) the keys of its range a node holds, up to
# ranges.MAX_SCAN + 1 rows, and one frame can carry thousands of them. A pass takes them
# while they have cost less than RANGE_ROWS_PER_PASS rows (always at least one a pass),
# each costing the rows it read and RANGE_PREPARE_ROWS more (its own work, measured at
# about 20 us, the time of a few rows: 128 of an empty range's a pass, a few ms). The rest
# wait, in order, for the next passes (the loop runs one at once), never behind later
# ones. At most MAX_DEFERRED_RANGES wait (a whole frame's worth); past it a new one is
# dropped (logged ``ignored``): the proposer's range times out, and it runs two phases.
RANGE_ROWS_PER_PASS = 1024
RANGE_PREPARE_ROWS = 8
MAX_DEFERRED_RANGES = 10_000


class RangesMixin:
    """Part of :class:`~zpaxos.hosts.acceptor_host.AcceptorHost`: range prepares."""

    acceptor: Acceptor
    source: StateSource | None
    stats: dict[str, int]
    deferred: deque[tuple[Src, RangePrepare]]
    _range_rows: int
    _range_keys: dict[str, list[str]]
    _pass_new: list[str]
    _pass_new_sorted: list[str]

    if TYPE_CHECKING:  # the host's own (acceptor_host.py) and its indexes (acceptor_pages.py)
        def _count(self, t: type, outcome: str) -> None: ...
        @property
        def _keys(self) -> list[str]: ...

    def _range_prepare(self, src: Src, msg: RangePrepare, ready: Ready) -> None:
        """Phase 1 for a range (the core's rule), on every key of the range this node
        holds, the pass's new ones included: the reply must name every busy one. Counts
        the rows it looked at against the pass's RANGE_ROWS_PER_PASS."""
        if self.source is None:
            index = self._keys
            lo, hi = span(index, msg.prefix)
            self._range_rows += RANGE_PREPARE_ROWS + min(hi - lo, MAX_SCAN + 1)
        else:
            index = self._range_index(msg.prefix)
        self.acceptor.key_index = index
        step = self.acceptor.handle(src, msg)
        ready.ranges.update(step.ranges)
        ready.send.extend((src, m) for _, m in step.send)
        self._count(RangePrepare, outcome_of(step.send, step.events))

    def _defer(self, src: Src, msg: RangePrepare, ready: Ready) -> None:
        if len(self.deferred) >= MAX_DEFERRED_RANGES:
            self.stats["ranges_dropped"] = self.stats.get("ranges_dropped", 0) + 1
            ready.events.append((src, Ignored("", type_name(msg))))
            return
        self.deferred.append((src, msg))

    def _range_index(self, prefix: str) -> list[str]:
        """The sorted keys a RangePrepare for ``prefix`` must look at, each state in the
        cache so the core sees them as if every key were in memory: the range's keys in
        the store (its first MAX_SCAN + 1: ranges.busy_keys looks at no more), read by an
        index seek, and those this pass created, which the store does not hold yet. Every
        other cached key is in the store: the cache holds only keys read from it and keys
        an earlier pass created, which that pass persisted (or the loop's source shows,
        for learned ones waiting: Ready.lazy)."""
        assert self.source is not None
        keys = self._range_keys.get(prefix)
        if keys is None:
            states = self.acceptor.states
            keys = []
            for k, s in self.source.prefixed(prefix, MAX_SCAN + 1):
                keys.append(k)
                if k not in states:  # a cached state is the latest
                    states[k] = s
            self._range_keys[prefix] = keys
        self._range_rows += RANGE_PREPARE_ROWS + len(keys)
        new, done = self._pass_new, self._pass_new_sorted
        for k in new[len(done):]:  # the keys created since the last RangePrepare
            bisect.insort(done, k)
        fresh = in_range(done, prefix)
        return sorted({*keys, *fresh}) if fresh else keys


__all__ = ["MAX_DEFERRED_RANGES", "RANGE_PREPARE_ROWS", "RANGE_ROWS_PER_PASS", "RangesMixin"]
