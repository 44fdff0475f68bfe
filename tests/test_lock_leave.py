"""A waiter that gives up (timeout, Ctrl-C) leaves the lock's queue, and frees the lock if
an acquisition whose answer was lost took it after all: left behind, either would keep
the others waiting out a TTL and margin. The end-to-end side (a real `zpaxos lock`
stopped by Ctrl-C while queued) is in tests/test_locks_e2e.py."""

from __future__ import annotations

from typing import Any

from zpaxos.protocol.lease import LockRecord, Waiter, decode_record, encode_record
from zpaxos.protocol.regops import CAS, GET, OK, RegOp, RegResult
from zpaxos.runtime.locks import Lock
from zpaxos.runtime.log import null_log

ME, OTHER = "m" * 32, "o" * 32


class Stub:
    """A client (and its own sibling) whose register operations answer from a script."""

    name = "stub"
    log = null_log("stub")

    def __init__(self, answers: list[RegResult]) -> None:
        self.answers = answers
        self.ops: list[RegOp] = []
        self.given_back = 0

    def sibling(self) -> Stub:
        return self

    def give_back(self, sibling: Any) -> None:
        self.given_back += 1

    def register_options(self, **kw: Any) -> None:
        return None

    def registers(self, items: Any, options: Any = None, concurrency: Any = None,
                  ) -> list[RegResult]:
        (_, op), = items
        self.ops.append(op)
        return [self.answers.pop(0)]


def read(rec: LockRecord, version: int) -> RegResult:
    return RegResult("jobs", GET, OK, version, encode_record(rec))


def leave(answers: list[RegResult]) -> Stub:
    stub = Stub(answers)
    lock = Lock(stub, "jobs", 10.0)  # type: ignore[arg-type]
    lock.owner = ME
    lock._leave_queue()
    assert stub.given_back == 1
    return stub


def test_a_waiter_that_gives_up_leaves_the_queue() -> None:
    rec = LockRecord("x", OTHER, 3, 10_000, (Waiter(ME, 10_000), Waiter("w" * 32, 5000)))
    stub = leave([read(rec, 7), RegResult("jobs", CAS, OK, 8)])
    assert [op.kind for op in stub.ops] == [GET, CAS] and stub.ops[1].expect_version == 7
    assert decode_record(stub.ops[1].value).queue == (Waiter("w" * 32, 5000),)


def test_a_waiter_whose_lost_acquisition_took_the_lock_frees_it() -> None:
    stub = leave([read(LockRecord("me", ME, 7, 10_000), 7), RegResult("jobs", CAS, OK, 8)])
    assert [op.kind for op in stub.ops] == [GET, CAS]
    assert not decode_record(stub.ops[1].value).held


def test_a_waiter_not_queued_writes_nothing() -> None:
    stub = leave([read(LockRecord("x", OTHER, 3, 10_000), 7)])
    assert [op.kind for op in stub.ops] == [GET]
