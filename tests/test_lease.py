"""The pure lease rules (zpaxos/protocol/lease.py): each rule, at each boundary.

The safety check at the end drives a holder and a waiter with model clocks that drift
apart by up to MAX_DRIFT and asserts that the holder's command is dead (lease lost plus
its grace) before the waiter may take over, for TTLs from the smallest to the largest.
"""

from __future__ import annotations

import msgspec
import pytest

from zpaxos.protocol.lease import (
    FREE,
    MAX_DRIFT,
    MAX_HOLDER_CHARS,
    MAX_QUEUE,
    MAX_TTL_S,
    MIN_MARGIN_S,
    MIN_TTL_S,
    HolderLease,
    LockRecord,
    LockRecordError,
    Waiter,
    WaiterClock,
    acquired,
    decode_record,
    dequeued,
    encode_record,
    enqueued,
    grace_for,
    handed_over,
    margin_for,
    released,
    ttl_problem,
    wait_needed,
)

A, B, C = "a" * 32, "b" * 32, "c" * 32


def test_margin_has_a_floor_and_grows_with_the_ttl() -> None:
    assert margin_for(MIN_TTL_S) == MIN_MARGIN_S
    assert margin_for(10) == MIN_MARGIN_S  # 2% of 10 s is below the floor
    assert margin_for(100) == pytest.approx(2 * MAX_DRIFT * 100)
    assert grace_for(10) == MIN_MARGIN_S / 2


def test_ttl_bounds() -> None:
    assert ttl_problem(MIN_TTL_S) is None and ttl_problem(MAX_TTL_S) is None
    for bad in (MIN_TTL_S - 0.01, MAX_TTL_S + 1, float("nan"), -1):
        assert ttl_problem(bad) is not None


# ---- the holder


def test_holder_loses_its_lease_ttl_minus_margin_after_sending() -> None:
    lease = HolderLease(ttl=10, sent_at=100.0)
    m = margin_for(10)
    assert lease.lost_at == 100.0 + 10 - m
    assert lease.valid(100.0 + 10 - m - 1e-6)
    assert not lease.valid(100.0 + 10 - m)  # the boundary is lost


def test_holder_renews_a_few_times_per_lease() -> None:
    lease = HolderLease(ttl=10, sent_at=0.0)
    due = (10 - margin_for(10)) / 3
    assert not lease.renew_due(due - 1e-6)
    assert lease.renew_due(due)
    assert lease.renew_at < lease.lost_at


def test_a_renewal_counts_from_when_it_was_sent_never_backwards() -> None:
    lease = HolderLease(ttl=10, sent_at=5.0).renewed(8.0)
    assert lease.sent_at == 8.0
    assert lease.renewed(7.0).sent_at == 8.0  # an older send (a late answer) never moves it back


def test_holder_without_margin_is_the_broken_variant() -> None:
    assert HolderLease(ttl=10, sent_at=0.0, margin=0).lost_at == 10.0


# ---- the waiter


def test_waiter_clock_restarts_at_each_new_version() -> None:
    clock = WaiterClock()
    assert not clock.may_take_over(1000.0, 0.0)  # nothing observed yet
    clock.observe(4, 10.0)
    clock.observe(4, 12.0)  # the same version: the clock goes on
    assert clock.unchanged_for(15.0) == 5.0
    clock.observe(5, 15.0)  # a renewal: start again
    assert clock.unchanged_for(15.0) == 0.0
    wait = 10 + margin_for(10)
    assert not clock.may_take_over(15.0 + wait - 1e-6, wait)
    assert clock.may_take_over(15.0 + wait, wait)
    assert clock.take_over_at(wait) == 15.0 + wait


def test_wait_needed_free_lock_head_or_empty_queue_at_once() -> None:
    assert wait_needed(FREE, A) == 0
    q = LockRecord(queue=(Waiter(A, 5000), Waiter(B, 5000)))
    assert wait_needed(q, A) == 0


def test_wait_needed_held_lock_is_ttl_plus_margin() -> None:
    held = LockRecord("x", C, 7, 10_000)
    assert wait_needed(held, A) == 10 + margin_for(10)
    queued = LockRecord("x", C, 7, 10_000, (Waiter(A, 2000),))
    assert wait_needed(queued, A) == 10 + margin_for(10)


def test_wait_needed_behind_the_head_adds_the_heads_turn() -> None:
    held = LockRecord("x", C, 7, 10_000, (Waiter(A, 2000), Waiter(B, 3000)))
    assert wait_needed(held, B) == 10 + margin_for(10) + 2 + margin_for(2)
    free = LockRecord(queue=(Waiter(A, 2000), Waiter(B, 3000)))
    assert wait_needed(free, B) == 2 + margin_for(2)
    assert wait_needed(free, C) == 2 + margin_for(2)  # not queued (queue full): behind


# ---- the token and the record's changes


def test_token_is_the_version_of_the_acquiring_write() -> None:
    r = acquired(FREE, 41, "me", A, 10)
    assert r.token == 42 and r.holder == "me" and r.owner == A and r.ttl_ms == 10_000
    # The next holder, at a later version, gets a larger token, whatever came between.
    assert acquired(released(r), 45, "you", B, 10).token == 46
    assert released(r).token == 42 and not released(r).held


def test_acquiring_takes_the_waiter_and_those_it_passed_off_the_queue() -> None:
    q = (Waiter(A, 1000), Waiter(B, 1000), Waiter(C, 1000))
    rec = LockRecord(queue=q)
    assert acquired(rec, 3, "a", A, 2).queue == q[1:]
    assert acquired(rec, 3, "b", B, 2).queue == q[2:]  # passed A (presumed gone)
    assert acquired(rec, 3, "d", "d" * 32, 2).queue == q[1:]  # outside: passed the head


def test_enqueue_and_dequeue() -> None:
    r = enqueued(FREE, A, 5)
    assert r is not None and r.queue == (Waiter(A, 5000),)
    assert enqueued(r, A, 5) is None  # already there
    assert dequeued(r, A) == FREE
    assert dequeued(FREE, A) is None
    full = LockRecord(queue=tuple(Waiter(f"{i:032x}", 1000) for i in range(MAX_QUEUE)))
    assert enqueued(full, A, 5) is None


def test_record_round_trip_and_absent_is_free() -> None:
    r = LockRecord("me", A, 3, 2500, (Waiter(B, 1500),))
    assert decode_record(encode_record(r)) == r
    assert decode_record(None) == FREE
    assert encode_record(FREE) == b"{}"


@pytest.mark.parametrize("raw", [
    b"v1",  # not JSON: an ordinary register
    b"[]",
    b'{"token": -1}',
    b'{"holder": "' + b"x" * (MAX_HOLDER_CHARS + 1) + b'"}',
    b'{"owner": "' + b"a" * 33 + b'"}',
    b'{"holder": "x", "owner": "a", "ttl_ms": 0}',  # held with no TTL
    b'{"owner": "a", "ttl_ms": 5000}',  # held by nobody
    b'{"ttl_ms": 99999999999}',
])
def test_decode_refuses_what_is_not_a_bounded_lock_record(raw: bytes) -> None:
    with pytest.raises(LockRecordError):
        decode_record(raw)


def test_decode_refuses_a_queue_over_its_bound() -> None:
    queue = [[f"{i:032x}", 1000] for i in range(MAX_QUEUE + 1)]
    with pytest.raises(LockRecordError):
        decode_record(msgspec.json.encode({"queue": queue}))


# ---- the safety arithmetic, with drifting model clocks


@pytest.mark.parametrize("ttl", [MIN_TTL_S, 2.0, 10.0, 60.0, 3600.0, MAX_TTL_S])
@pytest.mark.parametrize("holder_rate,waiter_rate", [
    (1 - MAX_DRIFT, 1 + MAX_DRIFT), (1.0, 1.0), (1 + MAX_DRIFT, 1 - MAX_DRIFT)])
def test_holder_stops_before_any_waiter_may_take_over(
        ttl: float, holder_rate: float, waiter_rate: float) -> None:
    """Real time 0: the holder sends its last renewal (its clock reads 0). The waiter
    first reads the new version at real time >= 0 (worst case: 0). Each clock runs at its
    rate. The holder's command is killed at lost_at + grace of the holder's clock; the
    waiter may act at ttl + margin of its own. The first must come first in real time."""
    lease = HolderLease(ttl, sent_at=0.0)
    killed_real = (lease.lost_at + lease.grace) / holder_rate
    clock = WaiterClock()
    clock.observe(9, 0.0)
    wait = wait_needed(LockRecord("h", A, 9, round(ttl * 1000)), B)
    take_over_real = clock.take_over_at(wait) / waiter_rate
    assert killed_real < take_over_real


def test_a_release_hands_the_lock_to_the_named_head_of_the_queue() -> None:
    mine = LockRecord("me", A, 5, 10_000, (Waiter(B, 2_000, "bee"), Waiter(C, 3_000, "sea")))
    new = handed_over(mine, 7)
    # Held by the head, with the token of this very write (version 8), its own TTL; the
    # rest of the queue stays in order.
    assert new == LockRecord("bee", B, 8, 2_000, (Waiter(C, 3_000, "sea"),))
    assert handed_over(new, 9).token == 10 > new.token  # tokens grow from holder to holder
    # Nobody named waits (an empty queue; a head without a name, as in records written
    # before hand-overs): free, as a plain release.
    assert handed_over(LockRecord("me", A, 5, 10_000), 7) == released(
        LockRecord("me", A, 5, 10_000))
    unnamed = LockRecord("me", A, 5, 10_000, (Waiter(B, 2_000),))
    assert handed_over(unnamed, 7) == released(unnamed)


def test_a_waiter_without_a_name_decodes_as_before() -> None:
    old = b'{"holder":"me","owner":"%s","token":5,"ttl_ms":10000,"queue":[["%s",2000]]}' % (
        A.encode(), B.encode())
    assert decode_record(old).queue == (Waiter(B, 2_000),)
    assert enqueued(FREE, B, 2.0, "bee") == LockRecord(queue=(Waiter(B, 2_000, "bee"),))
    with pytest.raises(LockRecordError):
        decode_record(encode_record(LockRecord(queue=(Waiter(B, 2_000, "x" * (
            MAX_HOLDER_CHARS + 1)),))))
