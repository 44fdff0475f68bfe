"""Broken lease and token rules, each one mistake, that the lock simulator must catch.

Their entries (layer "lock") are in the one table of broken variants,
zpaxos/sim/mutants.py: the rules class (``rules_cls``) that plants the mistake in the lock
simulator (zpaxos/sim/locksim.py); tests/test_locksim.py runs each over seeds until an
invariant trips, and records the seed.
"""

from __future__ import annotations

import msgspec

from zpaxos.protocol.lease import HolderLease, LockRecord, WaiterClock
from zpaxos.sim.locksim import LockRules


class TrustsHoldersClock(LockRules):
    """The holder writes its expiry time (its clock + TTL) beside the record; a waiter
    takes over when its own clock passes that time. Clocks are not synchronized: a
    waiter whose clock is ahead takes over a live lease."""

    def stamp(self, ttl: float, now: float) -> float:
        return now + ttl

    def take_over_at(self, r: LockRecord, me: str, clock: WaiterClock, stamp: float) -> float:
        return stamp if r.held else clock.since


class RenewsWithoutMargin(LockRules):
    """A holder keeps its lease for the full TTL after it sent its last renewal: with a
    slow clock it believes longer than a fast-clocked waiter waits (the drift shows on
    long TTLs, where the margin is 2 * MAX_DRIFT * ttl)."""

    def lease(self, ttl: float, sent_at: float) -> HolderLease:
        return HolderLease(ttl, sent_at, margin=0.0)


class ReusesToken(LockRules):
    """A waiter that takes over an expired lease keeps its holder's token (the lock's
    "generation" is bumped only when it was free): two holders share one token, and the
    resource accepts the stale one's writes."""

    def acquire(self, r: LockRecord, version: int, me: str, ttl: float) -> LockRecord:
        new = super().acquire(r, version, me, ttl)
        return msgspec.structs.replace(new, token=r.token) if r.held else new


class CountsFromRelease(LockRules):
    """A waiter named holder by a release counts its lease from the releaser's write (the
    time the releaser wrote beside the record, on the releaser's clock) and holds at once,
    without a renewal of its own: a releaser's clock is not its clock, and a lease that
    counts from another process's reading runs out at the wrong moment."""

    def stamp(self, ttl: float, now: float) -> float:
        return now

    def named(self, ttl: float, stamp: float) -> HolderLease | None:
        return HolderLease(ttl, stamp)
