"""The register rules (zpaxos/protocol/register.py), one at a time, without a network."""

from __future__ import annotations

import random

import pytest
from msgspec.structs import replace

from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import ZERO, Ballot
from zpaxos.protocol.pacing import Step
from zpaxos.protocol.register import (
    CAS,
    CAS_FAILED,
    CAS_VALUE,
    DELETE,
    GET,
    OK,
    SET,
    UNKNOWN,
    RegAcceptor,
    RegisterOptions,
    RegisterProposer,
    RegOp,
    next_ballot,
)
from zpaxos.protocol.regmessages import (
    EMPTY,
    RECENT_OPS,
    BadState,
    RAccept,
    RAccepted,
    RegState,
    RNack,
    RPrepare,
    RPromise,
    RRead,
    decode_state,
    encode_state,
)
from zpaxos.runtime.codec import DecodeError, decode, encode

A, B = b"a" * 16, b"b" * 16
OPTS = RegisterOptions(backoff_s=0.0)


def b(r: int, who: bytes = A) -> Ballot:
    return Ballot(r, who)


# ---------------------------------------------------------------- acceptor


def test_promise_then_nack_below_and_at_it() -> None:
    states: dict[str, KeyState] = {}
    acc = RegAcceptor(states)
    step = acc.handle("p", RPrepare("r", b(2)))
    assert step.send == [("p", RPromise("r", b(2), ZERO, EMPTY))]
    assert step.persist == [("@r", KeyState(promised=b(2)))] and "@r" in states
    assert acc.handle("p", RPrepare("r", b(2))).send == [("p", RNack("r", b(2), b(2)))]
    assert acc.handle("p", RPrepare("r", b(1, B))).send == [("p", RNack("r", b(1, B), b(2)))]
    # The write-once key "r" is untouched: registers live in their own slot.
    assert "r" not in states


def test_accept_at_or_above_promise_only_and_the_next_ballot_promise() -> None:
    acc = RegAcceptor({})
    acc.handle("p", RPrepare("r", b(3)))
    s1 = RegState(1, b"x", ((A[:8] + bytes(8), 1),))
    assert acc.handle("p", RAccept("r", b(2, B), s1)).send == [("p", RNack("r", b(2, B), b(3)))]
    step = acc.handle("p", RAccept("r", b(3), s1, next_ballot(b(3))))
    assert step.send == [("p", RAccepted("r", b(3), b(4)))]
    promised = acc.state("r")[0].promised
    assert promised == b(4) and acc.state("r")[1] == s1
    # Only the proposer's own next round is promised along with an accept.
    acc2 = RegAcceptor({})
    step = acc2.handle("p", RAccept("r", b(1), s1, b(9)))
    assert step.send == [("p", RAccepted("r", b(1), ZERO))] and acc2.state("r")[0].promised == b(1)


def test_state_encoding_round_trips_and_refuses_garbage() -> None:
    s = RegState(7, b"v\x00", tuple((bytes([i]) * 16, i) for i in range(3)))
    assert decode_state(encode_state(s)) == s
    assert decode_state(encode_state(EMPTY)) == EMPTY
    for bad in (b"", b"R1", encode_state(s) + b"!", b"XX" + encode_state(s)[2:]):
        with pytest.raises(BadState):
            decode_state(bad)


def test_codec_checks_register_messages() -> None:
    s = RegState(1, b"x")
    for m in (RPrepare("r", b(1)), RPromise("r", b(2), b(1), s), RAccept("r", b(1), s, b(2)),
              RAccepted("r", b(1), ZERO), RNack("r", b(1), b(2))):
        assert decode(encode(m))[0] == m
    with pytest.raises(DecodeError, match="register state comes with"):
        decode(encode(RPromise("r", b(1), ZERO, s)))
    with pytest.raises(DecodeError):
        decode(encode(RPrepare("@r", b(1)), ))  # "@" is no register name either


# ---------------------------------------------------------------- operations


@pytest.mark.parametrize("op,start,after,ok", [
    (RegOp(GET), RegState(2, b"x"), RegState(2, b"x"), True),
    (RegOp(SET, b"y", op_id=A), RegState(2, b"x"), RegState(3, b"y", ((A, 3),)), True),
    (RegOp(CAS, b"y", expect_version=2, op_id=A), RegState(2, b"x"),
     RegState(3, b"y", ((A, 3),)), True),
    (RegOp(CAS, b"y", expect_version=1, op_id=A), RegState(2, b"x"), RegState(2, b"x"), False),
    (RegOp(CAS_VALUE, b"y", expect_value=b"x", op_id=A), RegState(2, b"x"),
     RegState(3, b"y", ((A, 3),)), True),
    (RegOp(CAS_VALUE, b"y", expect_value=None, op_id=A), RegState(2, b"x"),
     RegState(2, b"x"), False),
    (RegOp(DELETE, op_id=A), RegState(2, b"x"), RegState(3, None, ((A, 3),)), True),
    (RegOp(DELETE, op_id=A), RegState(3, None), RegState(3, None), True),
])
def test_the_changes(op: RegOp, start: RegState, after: RegState, ok: bool) -> None:
    assert op.apply(start) == (after, ok)


def test_recent_keeps_the_last_change_of_each_writer() -> None:
    s = EMPTY
    for i in range(RECENT_OPS + 3):
        s = s.changed(b"v", bytes([i]) * 8 + bytes(8))
    s = s.changed(b"w", bytes([RECENT_OPS + 2]) * 8 + b"\x01" * 8)  # a writer's second change
    assert len(s.recent) == RECENT_OPS
    assert [op[:8] for op, _ in s.recent].count(bytes([RECENT_OPS + 2]) * 8) == 1
    assert not s.knows_writer(bytes([0]) * 8 + bytes(8))  # pushed out of a full list
    assert EMPTY.knows_writer(b"anything" * 2)  # a list never full never pushed anyone out


# ---------------------------------------------------------------- proposer


def run_round(p: RegisterProposer, acceptors: dict[int, RegAcceptor], step, now=0.0) -> None:
    """Deliver every message until quiet (no loss)."""
    queue = list(step.send)
    while queue:
        dst, msg = queue.pop(0)
        for _, reply in acceptors[dst].handle("p", msg).send:
            queue += p.receive(now, dst, reply).send


def cluster() -> dict[int, RegAcceptor]:
    return {i: RegAcceptor({}) for i in range(3)}


def test_a_set_is_two_phases_then_one_round_trip_with_1rtt() -> None:
    accs = cluster()
    p = RegisterProposer("r", A, list(accs), random.Random(1))
    step = p.start(0.0, RegOp(SET, b"x", op_id=A[:8] + bytes(8)), OPTS)
    assert {type(m) for _, m in step.send} == {RPrepare}
    run_round(p, accs, step)
    assert p.result is not None and (p.result.status, p.result.version) == (OK, 1)
    assert not p.result.fast and p.cache is not None
    step = p.start(0.0, RegOp(SET, b"y", op_id=A[:8] + (1).to_bytes(8, "big")), OPTS)
    assert {type(m) for _, m in step.send} == {RAccept}  # phase 1 skipped
    run_round(p, accs, step)
    assert (p.result.status, p.result.version, p.result.value, p.result.fast) == (OK, 2, b"y",
                                                                                  True)


def test_another_proposer_outbids_the_1rtt_promise_and_reads_the_latest() -> None:
    accs = cluster()
    p = RegisterProposer("r", A, list(accs), random.Random(1))
    run_round(p, accs, p.start(0.0, RegOp(SET, b"x", op_id=A[:8] + bytes(8)), OPTS))
    q = RegisterProposer("r", B, list(accs), random.Random(2))
    run_round(q, accs, q.start(0.0, RegOp(GET), replace(OPTS, quorum_reads=False)))
    assert (q.result.version, q.result.value) == (1, b"x")
    # p's cached promise is gone: its 1-RTT Accept is refused and it goes back to phase 1.
    step = p.start(0.0, RegOp(CAS, b"z", expect_version=1, op_id=A[:8] + b"\x00" * 7 + b"\x01"),
                   OPTS)
    run_round(p, accs, step)
    while p.result is None:  # the retry after the Nack (no backoff in OPTS)
        run_round(p, accs, p.tick(10.0), 10.0)
    assert (p.result.status, p.result.version, p.result.fast) == (OK, 2, False)


def test_a_quorum_read_writes_nothing_and_leaves_the_writers_promise() -> None:
    accs = cluster()
    p = RegisterProposer("r", A, list(accs), random.Random(1))
    run_round(p, accs, p.start(0.0, RegOp(SET, b"x", op_id=A[:8] + bytes(8)), OPTS))
    before = {i: dict(a.states) for i, a in accs.items()}
    q = RegisterProposer("r", B, list(accs), random.Random(2))
    step = q.start(0.0, RegOp(GET), OPTS)
    assert {type(m) for _, m in step.send} == {RRead}
    assert accs[0].handle("q", RRead("r", 7)).persist == []  # promises nothing: no fsync
    run_round(q, accs, step)
    assert q.result is not None and (q.result.version, q.result.value) == (1, b"x")
    assert q.result.rounds == 0 and {i: a.states for i, a in accs.items()} == before
    # The writer's 1-RTT promise survived the read: its next change is one round trip.
    step = p.start(0.0, RegOp(SET, b"y", op_id=A[:8] + (1).to_bytes(8, "big")), OPTS)
    run_round(p, accs, step)
    assert (p.result.status, p.result.version, p.result.fast) == (OK, 2, True)


def test_a_quorum_read_of_answers_that_disagree_asks_again_then_runs_a_round() -> None:
    accs = cluster()
    p = RegisterProposer("r", A, list(accs), random.Random(1))
    run_round(p, accs, p.start(0.0, RegOp(SET, b"x", op_id=A[:8] + bytes(8)), OPTS))
    # Changes in flight: acceptor 0 accepted version 2, acceptor 1 holds version 1, and
    # acceptor 2 (its disk replaced) nothing. No two answers agree.
    assert p.cache is not None
    nxt = p.cache[1].changed(b"y", A[:8] + (1).to_bytes(8, "big"))
    accs[0].handle("p", RAccept("r", p.cache[0], nxt))
    accs[2] = RegAcceptor({})
    q = RegisterProposer("r", B, list(accs), random.Random(2))
    step = q.start(0.0, RegOp(GET), OPTS)
    for _ in range(2):  # QUERY_TRIES
        assert {type(m) for _, m in step.send} == {RRead}
        answers = [(i, accs[i].handle("q", m).send[0][1]) for i, m in step.send]
        assert len({m.accepted for _, m in answers}) == 3
        step = Step()
        for i, msg in answers:
            step.extend(q.receive(0.0, i, msg))
        assert q.result is None
    assert {type(m) for _, m in step.send} == {RPrepare}  # then a round, as a read was
    run_round(q, accs, step)
    assert q.result is not None and (q.result.version, q.result.value) == (2, b"y")


def test_a_quorum_read_takes_no_answer_to_an_earlier_question() -> None:
    accs = cluster()
    p = RegisterProposer("r", A, list(accs), random.Random(1))
    run_round(p, accs, p.start(0.0, RegOp(SET, b"x", op_id=A[:8] + bytes(8)), OPTS))
    q = RegisterProposer("r", B, list(accs), random.Random(2))
    step = q.start(0.0, RegOp(GET), OPTS)
    old = [(i, accs[i].handle("q", m).send[0][1]) for i, m in step.send]  # version 1
    for i, msg in old:
        q.receive(0.0, i, msg)
    assert q.result is not None and q.result.version == 1
    run_round(p, accs, p.start(0.0, RegOp(SET, b"y", op_id=A[:8] + (1).to_bytes(8, "big")),
                               OPTS))  # version 2 is chosen; then q reads again
    step = q.start(0.0, RegOp(GET), OPTS)
    for i, msg in old:  # the first read's answers, delayed and duplicated: not this read's
        assert q.receive(0.0, i, msg).send == [] and q.result is None
    run_round(q, accs, step)
    assert q.result is not None and q.result.version == 2


def test_a_retried_change_is_not_applied_twice() -> None:
    accs = cluster()
    p = RegisterProposer("r", A, list(accs), random.Random(1))
    op = RegOp(SET, b"x", op_id=A[:8] + bytes(8))
    step = p.start(0.0, op, OPTS)
    run_round(p, accs, step)
    # Pretend the Accepteds were lost: a new attempt of the same op reads its own change.
    p2 = RegisterProposer("r", A, list(accs), random.Random(1))
    p2._round = 5
    run_round(p2, accs, p2.start(0.0, op, OPTS))
    assert (p2.result.status, p2.result.version) == (OK, 1)
    assert accs[0].state("r")[1].version == 1


def test_cas_failure_reports_the_state_and_writes_nothing_new() -> None:
    accs = cluster()
    p = RegisterProposer("r", A, list(accs), random.Random(1))
    run_round(p, accs, p.start(0.0, RegOp(SET, b"x", op_id=A[:8] + bytes(8)), OPTS))
    run_round(p, accs, p.start(0.0, RegOp(CAS, b"y", expect_version=0,
                                          op_id=A[:8] + b"\x00" * 7 + b"\x01"), OPTS))
    assert (p.result.status, p.result.version, p.result.value) == (CAS_FAILED, 1, b"x")
    assert accs[1].state("r")[1].version == 1


def test_giving_up_after_a_change_was_sent_is_unknown() -> None:
    accs = cluster()
    p = RegisterProposer("r", A, list(accs), random.Random(1))
    opts = RegisterOptions(max_rounds=1, backoff_s=0.0)
    step = p.start(0.0, RegOp(SET, b"x", op_id=A[:8] + bytes(8)), opts)
    # Promises arrive; the Accepts are lost; the round times out.
    for dst, msg in step.send:
        for _, reply in accs[dst].handle("p", msg).send:
            p.receive(0.0, dst, reply)
    p.tick(100.0)
    assert p.result is not None and p.result.status == UNKNOWN
