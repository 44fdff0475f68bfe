"""A lock's release whose compare-and-set ends with an unknown outcome (it collided with a
waiter queueing up, say) reads the record and tries again: left held, the lock would keep
every waiter out for its whole TTL and margin. Found by bench/locks.py: with only two
contenders, acquires took TTL + margin at p99 (docs/checking-locks.md)."""

from __future__ import annotations

import threading
import time
from typing import Any

from zpaxos.protocol.lease import HolderLease, LockRecord, Waiter, decode_record, encode_record
from zpaxos.protocol.regops import CAS, GET, OK, UNKNOWN, RegOp, RegResult
from zpaxos.runtime.locks import Lock
from zpaxos.runtime.log import null_log

MINE = LockRecord("A", "owner-a", 5, 10_000)


class Sockets:
    stop_requested = False


class Stub:
    """A client whose register operations answer from a script, recording each."""

    name = "stub"
    log = null_log("stub")
    sockets = Sockets()

    def __init__(self, answers: list[RegResult]) -> None:
        self.answers = answers
        self.ops: list[RegOp] = []

    def register_options(self, **kw: Any) -> None:
        return None

    def registers(self, items: Any, options: Any = None, concurrency: Any = None,
                  ) -> list[RegResult]:
        (_, op), = items
        self.ops.append(op)
        return [self.answers.pop(0)]


def held_lock(stub: Stub) -> Lock:
    lock = Lock(stub, "jobs", 10.0)  # type: ignore[arg-type]
    lock.owner = MINE.owner
    lock._record, lock._version = MINE, 7
    lock._lease = HolderLease(10.0, time.monotonic())
    return lock


def result(status: str, version: int = 0, rec: LockRecord | None = None) -> RegResult:
    return RegResult("jobs", CAS, status, version, None if rec is None else encode_record(rec))


def test_an_unknown_release_that_landed_is_read_and_done() -> None:
    stub = Stub([result(UNKNOWN), result(OK, 8, LockRecord(token=5))])
    held_lock(stub)._release_on(stub)  # type: ignore[arg-type]
    assert [op.kind for op in stub.ops] == [CAS, GET]


def test_an_unknown_release_that_did_not_land_is_tried_again() -> None:
    queued = LockRecord("A", "owner-a", 5, 10_000, ())  # a waiter came and went: version 9
    stub = Stub([result(UNKNOWN), result(OK, 9, queued), result(OK, 10, LockRecord(token=5))])
    held_lock(stub)._release_on(stub)  # type: ignore[arg-type]
    assert [op.kind for op in stub.ops] == [CAS, GET, CAS]
    assert stub.ops[2].expect_version == 9
    assert not decode_record(stub.ops[2].value).held


def test_a_release_hands_the_lock_over_to_the_head_of_the_queue() -> None:
    stub = Stub([result(OK, 8)])
    lock = held_lock(stub)
    lock._record = LockRecord("A", "owner-a", 5, 10_000, (Waiter("owner-b", 2_000, "B"),))
    lock._release_on(stub)  # type: ignore[arg-type]
    (op,) = stub.ops
    assert op.expect_version == 7
    assert decode_record(op.value) == LockRecord("B", "owner-b", 8, 2_000)


def renewer_that_did(lock: Lock, renewed: bool) -> None:
    """As if acquired: a renewer thread (here one that does nothing) that did, or did not,
    write since the acquisition."""
    lock._renewed = renewed
    lock._thread = threading.Thread(target=lambda: None)
    lock._thread.start()


def test_a_release_before_any_renewal_runs_on_the_callers_client() -> None:
    # The caller's Client made the last write (the acquisition): it holds the register's
    # 1-RTT promise, so the release is one round trip there, not a full round on the
    # renewer's Client.
    stub = Stub([result(OK, 8, LockRecord(token=5))])
    lock = held_lock(stub)
    renewer_that_did(lock, renewed=False)
    lock.release()
    assert [op.kind for op in stub.ops] == [CAS] and not lock._renewer_releases
    # Once the renewer wrote, it holds the promise: the release is its to do.
    stub = Stub([])
    lock = held_lock(stub)
    renewer_that_did(lock, renewed=True)
    lock.release()
    assert stub.ops == [] and lock._renewer_releases
