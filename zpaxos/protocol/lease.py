"""Leases for locks and elections, with no synchronized clocks (pure: time is an argument).

A lock is a register (zpaxos/protocol/register.py) holding a :class:`LockRecord`: who holds
it, its fencing token, its TTL, and a bounded FIFO queue of waiters. Every change of the
record is a compare-and-set on the register's version, and versions only go up.

**The clock assumption.** No two processes compare clock *readings*: each measures only
its own elapsed time on its own monotonic clock. What is assumed is that clock *rates*
differ by at most ``MAX_DRIFT`` (1%: a hundred times what a quartz clock drifts, and
twenty times NTP's largest slew, 500 ppm): while real time ``d`` passes, every process's
clock advances between ``d(1 - MAX_DRIFT)`` and ``d(1 + MAX_DRIFT)``. A paused process
(SIGSTOP, a long GC, a swapped-out VM) is fine: its clock goes on while it is paused.

**The two rules** (``m = margin_for(ttl)``):

* a holder treats its lease as lost ``ttl - m`` after it *sent* its last successful
  renewal or acquisition (:class:`HolderLease`); a write's effect cannot start before it
  was sent, so the holder's clock starts no later than any observer's;
* a waiter takes over only after it has *watched* the register's version stay unchanged
  for ``ttl + m`` of its own elapsed time (:class:`WaiterClock`), and then only by a
  compare-and-set at that version: if the holder renewed meanwhile the version moved and
  the take-over fails. The waiter first saw the version after the renewal that made it
  was sent, so its clock started no earlier than the holder's.

**The margin arithmetic.** With ``rho = MAX_DRIFT``, a holder that stops acting ``g``
(its grace) after its lease is lost stops no later than ``(ttl - m + g) / (1 - rho)`` of
real time after its last renewal was sent; a waiter takes over no earlier than
``(ttl + m) / (1 + rho)`` after it. The first is earlier when ``m > rho * ttl + g (1 + rho)
/ 2``, about. ``margin_for`` gives ``m = max(MIN_MARGIN_S, 2 * rho * ttl)`` and a stopper
that needs time (``zpaxos lock`` killing its command) gets ``g = grace_for(ttl) = m / 2``:
then ``rho * ttl + g (1 + rho) / 2 <= m / 2 + m (1 + rho) / 4 < m``, with about ``m / 4``
left for scheduling delays. Example, ttl 10 s: m = 0.5 s, the holder's command gets
SIGTERM at 9.5 s and SIGKILL at 9.75 s of the holder's clock (at most 9.85 s real); no
waiter acts before 10.5 s of its clock (at least 10.39 s real).

**Fencing tokens.** The token of a holding is the register version its acquiring write
made (:func:`acquired`: the write is a compare-and-set at version ``v``, so it makes
``v + 1``). Versions only go up, so tokens strictly increase across holders, and a
renewal (a write of the same holding) never changes the token.

The simulator drives these rules with a model clock; its broken variants replace one
piece each: a waiter that trusts an expiry time written by the holder (instead of
:class:`WaiterClock`), a holder renewing with no margin (``HolderLease(margin=0)``), a
token reused across holders (instead of :func:`acquired`'s ``version + 1``).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

__all__ = ["DEFAULT_TTL_S", "FREE", "GRACE_FRACTION", "MAX_DRIFT", "MAX_HOLDER_CHARS", "MAX_QUEUE",
           "MAX_TTL_S", "MIN_MARGIN_S", "MIN_TTL_S", "RENEWS_PER_LEASE", "HolderLease",
           "LockRecord", "LockRecordError", "Waiter", "WaiterClock", "acquired",
           "decode_record", "dequeued", "encode_record", "enqueued", "grace_for", "handed_over",
           "margin_for", "released", "ttl_problem", "wait_needed"]

DEFAULT_TTL_S = 10.0  # a lock's or a leadership's TTL unless told
MAX_DRIFT = 0.01  # bound on how much two clocks' rates differ (see the module doc)
MIN_MARGIN_S = 0.5  # the margin is never below this (scheduling delays, process exit)
GRACE_FRACTION = 0.5  # a holder's stopper (SIGTERM -> SIGKILL) gets this much of the margin
RENEWS_PER_LEASE = 3  # a holder renews this often in each lease (ttl - margin)
MIN_TTL_S = 1.5  # so that a lease (ttl - margin) lasts at least a second
MAX_TTL_S = 86_400.0
MAX_QUEUE = 64  # waiters in a lock's FIFO queue (more wait outside it, unordered)
MAX_HOLDER_CHARS = 128  # a holder's name (``zpaxos elect --id``)
OWNER_CHARS = 32  # an owner: 16 random bytes in hex, new for each acquisition attempt


def margin_for(ttl: float) -> float:
    """The margin ``m`` of a lease of ``ttl`` seconds (see the module doc)."""
    return max(MIN_MARGIN_S, 2 * MAX_DRIFT * ttl)


def grace_for(ttl: float) -> float:
    """How long a holder whose lease is lost may take to stop what it does (SIGTERM to
    SIGKILL) and still stop before any waiter may take over."""
    return GRACE_FRACTION * margin_for(ttl)


def ttl_problem(ttl: float) -> str | None:
    """Why ``ttl`` cannot be a lock's TTL (None: it can)."""
    if not MIN_TTL_S <= ttl <= MAX_TTL_S:  # NaN fails too
        return f"a TTL must be between {MIN_TTL_S:g} and {MAX_TTL_S:g} seconds, not {ttl!r}"
    return None


# ---------------------------------------------------------------- the holder's side


class HolderLease(msgspec.Struct, frozen=True):
    """A holder's lease: ``sent_at`` is when (on the holder's monotonic clock) it sent the
    last acquisition or renewal that succeeded. Renewals whose outcome is unknown never
    move it (one may have taken effect, but only a later time than ``sent_at``)."""

    ttl: float
    sent_at: float
    margin: float | None = None  # None: margin_for(ttl); the simulator's variant gives 0

    @property
    def m(self) -> float:
        return margin_for(self.ttl) if self.margin is None else self.margin

    @property
    def lost_at(self) -> float:
        """From this moment on the holder must act as if it did not hold the lock."""
        return self.sent_at + self.ttl - self.m

    def valid(self, now: float) -> bool:
        return now < self.lost_at

    @property
    def renew_at(self) -> float:
        """When to send the next renewal: a few tries fit in each lease."""
        return self.sent_at + (self.ttl - self.m) / RENEWS_PER_LEASE

    def renew_due(self, now: float) -> bool:
        return now >= self.renew_at

    @property
    def grace(self) -> float:
        return GRACE_FRACTION * self.m

    def renewed(self, sent_at: float) -> HolderLease:
        """The lease after a renewal sent at ``sent_at`` succeeded."""
        return HolderLease(self.ttl, max(self.sent_at, sent_at), self.margin)


# ---------------------------------------------------------------- the waiter's side


class WaiterClock:
    """How long a waiter has watched the register's version stay unchanged, on its own
    clock. ``observe`` each version as a linearizable read (or a compare-and-set's
    answer) returns it, with the time it returned: the clock restarts at each new
    version, so it always starts after the write that made the version was sent."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.since = 0.0

    def observe(self, version: int, now: float) -> None:
        if version != self.version:
            self.version = version
            self.since = now

    def unchanged_for(self, now: float) -> float:
        return 0.0 if self.version is None else now - self.since

    def may_take_over(self, now: float, wait_s: float) -> bool:
        """Whether the version has stayed unchanged for ``wait_s`` (:func:`wait_needed`)."""
        return self.version is not None and now - self.since >= wait_s

    def take_over_at(self, wait_s: float) -> float:
        return self.since + wait_s


# ---------------------------------------------------------------- the record


Owner = Annotated[str, Meta(max_length=OWNER_CHARS)]
TtlMs = Annotated[int, Meta(ge=0, le=int(MAX_TTL_S * 1000))]


class Waiter(msgspec.Struct, frozen=True, array_like=True):
    """A waiter in a lock's queue: its owner id, its TTL (which says how long it may
    sit at the head of the queue without acting before the next ones pass it, and its
    lease if the lock is handed over to it) and its name ("": it is not handed the lock,
    it takes it; records written before hand-overs have none)."""

    owner: Owner
    ttl_ms: TtlMs
    holder: Annotated[str, Meta(max_length=MAX_HOLDER_CHARS)] = ""

    @property
    def ttl(self) -> float:
        return self.ttl_ms / 1000


class LockRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a lock's register holds (JSON, so ``zpaxos get NAME`` shows it).

    ``holder`` is who holds it ("" when free; an election's candidate id), ``owner`` the
    holding's own random id (two campaigners may share a name; a holding never does),
    ``token`` its fencing token (when free: the last holder's), ``ttl_ms`` its lease."""

    holder: Annotated[str, Meta(max_length=MAX_HOLDER_CHARS)] = ""
    owner: Owner = ""
    token: Annotated[int, Meta(ge=0)] = 0
    ttl_ms: TtlMs = 0
    queue: Annotated[tuple[Waiter, ...], Meta(max_length=MAX_QUEUE)] = ()

    @property
    def held(self) -> bool:
        return self.owner != ""

    @property
    def ttl(self) -> float:
        return self.ttl_ms / 1000

    def position(self, owner: str) -> int | None:
        for i, w in enumerate(self.queue):
            if w.owner == owner:
                return i
        return None


FREE = LockRecord()


class LockRecordError(ValueError):
    """The register holds something that is not a lock record."""


_decoder = msgspec.json.Decoder(LockRecord)
_encoder = msgspec.json.Encoder()


def decode_record(value: bytes | None) -> LockRecord:
    """The record a register holds (absent or deleted: free). Bounds (queue length,
    name and owner lengths, TTL) are checked here, before anything uses the record."""
    if value is None:
        return FREE
    try:
        r = _decoder.decode(value)
    except msgspec.DecodeError as e:
        raise LockRecordError(f"not a lock record ({e})") from None
    if r.held and (not r.holder or ttl_problem(r.ttl)):
        raise LockRecordError("not a lock record (held, but no holder or a bad TTL)")
    return r


def encode_record(r: LockRecord) -> bytes:
    return _encoder.encode(r)


# ---------------------------------------------------------------- changes


def acquired(r: LockRecord, version: int, holder: str, owner: str, ttl: float) -> LockRecord:
    """The record after ``owner`` takes the lock by a compare-and-set at ``version``. Its
    token is ``version + 1``: the version that very write makes. Waiters ahead of it in
    the queue are dropped: it passed them because they did not act in time (see
    :func:`wait_needed`); one not in the queue passed the head only."""
    pos = r.position(owner)
    queue = r.queue[1:] if pos is None else r.queue[pos + 1:]
    return LockRecord(holder, owner, version + 1, round(ttl * 1000), queue)


def released(r: LockRecord) -> LockRecord:
    """Free, keeping the queue and the last token (for show)."""
    return LockRecord(token=r.token, queue=r.queue)


def handed_over(r: LockRecord, version: int) -> LockRecord:
    """The record a holder's release writes by a compare-and-set at ``version``: held by
    the head of the queue (its token ``version + 1``, the version this write makes), or
    free when nobody named waits.

    The named waiter does not hold the lock yet: it counts itself holder only once its
    own first renewal (a compare-and-set at the version this write made) succeeded, and
    its lease counts from when *it sent* that renewal, never from this write. Until then
    nobody acts: the releaser has stopped, and any other waiter treats the record as a
    held lock (its holder's ``ttl + m`` of unchanged version first; a named waiter that
    died is passed so)."""
    if not r.queue or not r.queue[0].holder:
        return released(r)
    w = r.queue[0]
    return LockRecord(w.holder, w.owner, version + 1, w.ttl_ms, r.queue[1:])


def enqueued(r: LockRecord, owner: str, ttl: float, holder: str = "") -> LockRecord | None:
    """The record with ``owner`` at the end of the queue (None: already there, or full);
    with ``holder``, a release may hand the lock over to it (:func:`handed_over`)."""
    if r.position(owner) is not None or len(r.queue) >= MAX_QUEUE:
        return None
    return msgspec.structs.replace(r, queue=(*r.queue, Waiter(owner, round(ttl * 1000),
                                                               holder)))


def dequeued(r: LockRecord, owner: str) -> LockRecord | None:
    """The record without ``owner`` in the queue (None: it was not there)."""
    if r.position(owner) is None:
        return None
    return msgspec.structs.replace(r, queue=tuple(w for w in r.queue if w.owner != owner))


def wait_needed(r: LockRecord, owner: str) -> float:
    """How long ``owner`` must watch the version stay unchanged before it may take the
    lock (0: at once).

    * free, and ``owner`` heads the queue (or the queue is empty): at once;
    * held, and ``owner`` heads the queue (or it is empty): the holder's ``ttl + m``;
    * otherwise the head goes first: ``owner`` also waits the head's ``ttl + m`` (a head
      that did not act in that time is presumed gone, and passed).

    Safety needs only that a held lock is never taken before its holder's ``ttl + m``;
    the rest is fairness (FIFO by arrival) and liveness (a dead waiter is passed)."""
    hold = r.ttl + margin_for(r.ttl) if r.held else 0.0
    if not r.queue or r.queue[0].owner == owner:
        return hold
    head = r.queue[0].ttl
    return hold + head + margin_for(head)
