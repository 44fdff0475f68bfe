"""Range promises: phase 1 for a whole range of keys at once, and the fast path it opens.

Basic Paxos runs two phases per key. A proposer process that will propose many fresh keys
can instead run phase 1 once for a *range* of keys (every key that starts with a prefix,
such as ``bench-1f2e3d-serial-``) and then, for each fresh key of the range, only phase 2.
This is the textbook optimisation (Lamport's "Paxos Made Simple", section 3: a leader runs
phase 1 for infinitely many instances with one short message) applied to named keys.

Why it is safe. A RangePromise from acceptor ``a`` at ballot ``B`` for prefix ``p`` says:

1. from now on ``a`` refuses every ballot below ``B`` for every key that starts with
   ``p``: a key's *effective promise* is the higher of its own promise and every range
   promise covering it (:meth:`RangeTable.covering`); made durable before the reply
   leaves, like any promise, and kept across restarts;
2. ``busy`` names every key of the range that, when ``a`` promised, held an accepted value,
   a decision, or a promise above ``B`` (:func:`busy_keys`); if there are too many to
   name, ``more`` is set and the proposer uses two phases for the whole range.

So for a key ``k`` of the range that no member of a promising quorum ``Q`` named, every
member of ``Q`` had accepted nothing for ``k`` and will accept nothing below ``B``: that
is exactly what phase 1 for ``k`` at ballot ``B`` would have told the proposer, with
"no value accepted" from the whole quorum, so any value may be proposed for ``k`` at ``B``.
Two conditions remain, both kept by :class:`Lease`:

* one value per ballot and key: a key is taken at most once from a lease (``used``), and
  a lease's ballot carries an id of its own, never one of a proposal's;
* the range promise is the quorum's: the fast path opens only once a quorum granted the
  range (any quorum: phase 2 may then be accepted by a different one, as in any round).

Losing the range is no danger in itself (an acceptor that promised a higher ballot simply
refuses the lease's Accepts), but the proposal then falls back to two phases with a ballot
of its own, and the lease is dropped (renewed at a higher ballot for later proposals).
Overlapping ranges (one prefix starts with the other) of two proposers are ordered like any
promises: a RangePrepare is granted only above every overlapping range promise.

The simulator (zpaxos/sim/simulator.py) runs fast proposals among two-phase ones, with
crashes; its ghost counts range promises in "no vote below a promise sent", and mutants
(zpaxos/sim/mutants.py) break each rule above.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence

from zpaxos.protocol.events import Peer
from zpaxos.protocol.messages import (
    ZERO,
    Ballot,
    RangeNack,
    RangePrepare,
    RangePromise,
)
from zpaxos.protocol.registry import MAX_BUSY, MAX_RANGE_ENTRIES

MAX_RANGES = MAX_RANGE_ENTRIES  # range promises one acceptor holds; beyond, a new one is refused
MAX_SCAN = 4096  # keys of a range one RangePrepare looks at; beyond, ``more`` is set
MAX_USED = 100_000  # keys one lease gives out; then it retires (renewed, ``used`` emptied)
_SEPARATORS = "-_."

__all__ = ["MAX_RANGES", "MAX_SCAN", "Lease", "RangeTable", "busy_keys", "prefix_end",
           "range_prefix", "superseded"]

_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)  # no key holds one: text in SQLite is UTF-8


def prefix_end(prefix: str) -> str | None:
    """The least string above every key that starts with ``prefix`` (None: no such
    bound, for ``""`` or a prefix of nothing but U+10FFFF), so that the keys of the range
    are exactly those with ``prefix <= key < prefix_end(prefix)``: a seek down a sorted
    index, never a walk past the range's last key. Its last character that can grow, grown
    by one (``job-`` -> ``job.``); the characters after it (each U+10FFFF) are dropped.
    Surrogates are skipped (U+D7FF grows to U+E000): no key can hold one."""
    i = len(prefix)
    while i > 0 and ord(prefix[i - 1]) == _MAX_CODE_POINT:
        i -= 1
    if i == 0:
        return None
    c = ord(prefix[i - 1]) + 1
    if c in _SURROGATES:
        c = _SURROGATES.stop
    return prefix[:i - 1] + chr(c)


def range_prefix(key: str) -> str | None:
    """The range a client takes for ``key``: the key up to and including its last
    separator (``-``, ``_``, ``.``), else the key without its trailing digits
    (``bench-1f-serial-17`` -> ``bench-1f-serial-``, ``k12`` -> ``k``); None if that
    leaves nothing (no range: two phases)."""
    cut = max(map(key.rfind, _SEPARATORS)) + 1
    if cut <= 0:
        cut = len(key.rstrip("0123456789"))
    return key[:cut] or None


def superseded(ranges: Mapping[str, Ballot]) -> list[str]:
    """The range promises that another one implies, so dropping them changes nothing.

    Compaction rule: ``(p, B)`` is superseded when a promise ``(q, C)`` is held with ``q``
    a proper prefix of ``p`` and ``C >= B``. Why dropping it is safe: every key that
    starts with ``p`` starts with ``q``, so its effective promise (:meth:`RangeTable.covering`)
    is already at least ``C >= B`` without it; and every range that overlaps ``p`` (one
    prefix starts with the other) overlaps ``q`` too (both are prefixes of ``p``, or ``p``
    is one of it, hence ``q`` is), so :meth:`RangeTable.overlapping`, which decides what
    new range may be granted, never goes down either. Nothing the acceptor accepts or
    grants can change, for any key, present or future.

    It is the common case: a range is granted only above every overlapping promise, so a
    shorter prefix granted after longer ones under it always supersedes all of them.
    No other promise may go: a range promise never expires (its holder may still be
    sending Accepts at its ballot, and an acceptor cannot know it stopped), and a range
    no other range implies is the only record of what fresh keys it must refuse."""
    out = []
    lengths = sorted({len(p) for p in ranges})
    for p, b in ranges.items():
        for n in lengths:
            if n >= len(p):
                break
            c = ranges.get(p[:n])
            if c is not None and c >= b:
                out.append(p)
                break
    return out


class RangeTable:
    """One acceptor's range promises, prefix -> ballot: what it must never go below.
    Kept compacted: a promise another one implies is dropped (:func:`superseded`)."""

    def __init__(self, ranges: Mapping[str, Ballot] | None = None) -> None:
        self.by_prefix: dict[str, Ballot] = dict(ranges or {})
        for p in superseded(self.by_prefix):
            del self.by_prefix[p]
        self._lengths = sorted({len(p) for p in self.by_prefix})
        self._sorted = sorted(self.by_prefix)

    def __len__(self) -> int:
        return len(self.by_prefix)

    def covering(self, key: str) -> Ballot:
        """The highest range promise whose prefix starts ``key`` (ZERO if none). Costs one
        dict lookup per distinct prefix length held, not one per range."""
        best = ZERO
        get = self.by_prefix.get
        n = len(key)
        for length in self._lengths:
            if length > n:
                break
            b = get(key[:length])
            if b is not None and b > best:
                best = b
        return best

    def overlapping(self, prefix: str) -> Ballot:
        """The highest range promise that shares a key with ``prefix``'s range: one that
        covers it, or one inside it (a longer prefix that starts with it)."""
        best = self.covering(prefix)
        i = bisect.bisect_left(self._sorted, prefix)
        while i < len(self._sorted) and self._sorted[i].startswith(prefix):
            b = self.by_prefix[self._sorted[i]]
            if b > best:
                best = b
            i += 1
        return best

    def inside(self, prefix: str, ballot: Ballot) -> list[str]:
        """The promises that ``(prefix, ballot)`` would supersede: the longer prefixes
        that start with ``prefix`` whose ballot is not above ``ballot``."""
        i = bisect.bisect_right(self._sorted, prefix)
        out = []
        while i < len(self._sorted) and self._sorted[i].startswith(prefix):
            if self.by_prefix[self._sorted[i]] <= ballot:
                out.append(self._sorted[i])
            i += 1
        return out

    def put(self, prefix: str, ballot: Ballot) -> list[str]:
        """Hold ``(prefix, ballot)``; drop and return the promises it supersedes. (The
        caller grants only above every overlapping promise, so nothing supersedes it.)"""
        if prefix not in self.by_prefix:
            bisect.insort(self._sorted, prefix)
            if len(prefix) not in self._lengths:
                bisect.insort(self._lengths, len(prefix))
        self.by_prefix[prefix] = ballot
        dropped = self.inside(prefix, ballot)
        for p in dropped:
            del self.by_prefix[p]
            self._sorted.remove(p)
        if dropped:
            self._lengths = sorted({len(p) for p in self.by_prefix})
        return dropped


def busy_keys(prefix: str, ballot: Ballot, keys: Iterable[str],
              state: Callable[[str], tuple[Ballot, Ballot, bool]]) -> tuple[tuple[str, ...], bool]:
    """The keys of ``keys`` (the acceptor's keys from ``prefix`` on, in order) that are not
    fresh for ``ballot``: ``state(key)`` gives (promised, accepted, chosen?). Returns at most
    MAX_BUSY of them, and whether there are more (or more keys than MAX_SCAN to look at)."""
    busy: list[str] = []
    for scanned, key in enumerate(keys):
        if not key.startswith(prefix):
            break
        if scanned >= MAX_SCAN:
            return tuple(busy), True
        promised, accepted, chosen = state(key)
        if chosen or not accepted.is_zero or promised > ballot:
            if len(busy) >= MAX_BUSY:
                return tuple(busy), True
            busy.append(key)
    return tuple(busy), False


# --------------------------------------------------------------------------- proposer side

PENDING, HELD, LOST, FAILED = "pending", "held", "lost", "failed"


class Lease:
    """One proposer process's range promise: phase 1 for ``prefix`` at ``ballot``.

    PENDING until a quorum of acceptors grants it (HELD), any refuses it or the round
    times out (LOST: renew at a higher ballot), or a quorum granted it but named too many
    busy keys (FAILED: two phases for this range). ``take(key)`` gives the ballot for one
    fresh key, once."""

    def __init__(self, prefix: str, ballot: Ballot, acceptors: Sequence[Peer], quorum: int,
                 deadline: float) -> None:
        self.prefix = prefix
        self.ballot = ballot
        self.acceptors = tuple(acceptors)
        self.quorum = quorum
        self.deadline = deadline  # a PENDING lease that has no quorum by then is LOST
        self.state = PENDING
        self.granted: set[Peer] = set()
        self.busy: set[str] = set()
        self.used: set[str] = set()
        self.max_seen_round = ballot.round
        self.retired = False  # LOST by its own hand (it gave out MAX_USED keys), not taken
        self.held_at: float | None = None  # when its holder saw it granted (runtime time)
        self._more = False

    def prepare(self) -> list[tuple[Peer, RangePrepare]]:
        return [(a, RangePrepare(self.prefix, self.ballot)) for a in self.acceptors]

    @property
    def usable(self) -> bool:
        return self.state in (PENDING, HELD)

    def on_promise(self, src: Peer, msg: RangePromise) -> None:
        if msg.ballot != self.ballot or src not in self.acceptors:
            return
        # Every promise's busy keys count, even a late one's: more caution is never unsafe.
        self.busy.update(msg.busy)
        self._more = self._more or msg.more
        if self.state != PENDING:
            return
        self.granted.add(src)
        if len(self.granted) >= self.quorum:
            self.state = FAILED if self._more else HELD

    def on_nack(self, src: Peer, msg: RangeNack) -> None:
        if msg.ballot != self.ballot or src not in self.acceptors:
            return
        self.max_seen_round = max(self.max_seen_round, msg.promised.round)
        if self.state == PENDING:
            self.state = LOST if not msg.promised.is_zero else FAILED

    def tick(self, now: float) -> None:
        if self.state == PENDING and now >= self.deadline:
            self.state = LOST

    def lose(self, promised: Ballot) -> None:
        """An acceptor refused one of the lease's Accepts: it promised ``promised``."""
        self.max_seen_round = max(self.max_seen_round, promised.round)
        if self.state in (PENDING, HELD):
            self.state = LOST

    def take(self, key: str) -> Ballot | None:
        """The lease's ballot for ``key`` if phase 1 may be skipped for it: the lease is
        held, the key is in the range, no promise named it, and it was never taken."""
        if (self.state != HELD or not key.startswith(self.prefix) or key in self.busy
                or key in self.used):
            return None
        self.used.add(key)
        if len(self.used) >= MAX_USED:
            self.state = LOST  # bounded memory: the next lease starts with nothing used
            self.retired = True
        return self.ballot

