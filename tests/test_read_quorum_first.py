"""A quorum read that asks a quorum first (RegisterOptions.read_quorum_first): fewer
questions, the same answers (the watchers' confirming reads use it: runtime/watch.py)."""

from __future__ import annotations

import random

from msgspec.structs import replace

from zpaxos.protocol.pacing import Step
from zpaxos.protocol.register import (
    GET,
    OK,
    READ_WIDEN_S,
    SET,
    RegAcceptor,
    RegisterOptions,
    RegisterProposer,
    RegOp,
)
from zpaxos.protocol.regmessages import RAccept, RRead

A, B = b"a" * 16, b"b" * 16
OPTS = RegisterOptions(backoff_s=0.0)
FIRST = replace(OPTS, read_quorum_first=True)


def deliver(p: RegisterProposer, accs: dict[int, RegAcceptor], step: Step,
            now: float = 0.0, drop: frozenset[int] = frozenset()) -> list[int]:
    """Deliver every message until quiet, none to or from ``drop``; who was sent what."""
    queue, sent_to = list(step.send), []
    while queue:
        dst, msg = queue.pop(0)
        sent_to.append(dst)
        if dst in drop:
            continue
        for _, reply in accs[dst].handle("p", msg).send:
            queue += p.receive(now, dst, reply).send
    return sent_to


def written(versions: int = 1) -> tuple[dict[int, RegAcceptor], RegisterProposer]:
    accs = {i: RegAcceptor({}) for i in range(3)}
    w = RegisterProposer("r", A, list(accs), random.Random(1))
    for n in range(versions):
        deliver(w, accs, w.start(0.0, RegOp(SET, b"v%d" % n, op_id=A[:8] + bytes([n]) * 8),
                                 OPTS))
    return accs, w


def test_a_read_asks_only_a_quorum_first() -> None:
    accs, _ = written()
    q = RegisterProposer("r", B, list(accs), random.Random(2))
    step = q.start(0.0, RegOp(GET), FIRST)
    assert len(step.send) == 2 and {type(m) for _, m in step.send} == {RRead}
    assert deliver(q, accs, step) == [0, 1]  # two questions, two answers: done
    assert q.result is not None and (q.result.status, q.result.version) == (OK, 1)
    # Without the option, every acceptor is asked, as before.
    assert len(q.start(0.0, RegOp(GET), OPTS).send) == 3


def test_a_quorum_that_disagrees_asks_the_others_the_same_question() -> None:
    accs, w = written()
    # A change in flight: acceptor 0 accepted version 2, which 1 and 2 have not.
    assert w.cache is not None
    accs[0].handle("w", RAccept("r", w.cache[0], w.cache[1].changed(b"new", A[:8] + b"x" * 8)))
    q = RegisterProposer("r", B, list(accs), random.Random(2))
    step = q.start(0.0, RegOp(GET), FIRST)
    answers = [(i, accs[i].handle("q", m).send[0][1]) for i, m in step.send]
    more = Step()
    for i, msg in answers:
        more.extend(q.receive(0.0, i, msg))
    # Not a new question to all: the same one, to the acceptor not asked yet.
    assert [(i, m) for i, m in more.send] == [(2, step.send[0][1])]
    deliver(q, accs, more)
    # 1 and 2 agree on version 1: the state chosen (version 2 is only at acceptor 0).
    assert q.result is not None and (q.result.version, q.result.value) == (1, b"v0")


def test_a_slow_quorum_gets_help_and_the_fast_one_is_asked_first_next() -> None:
    accs, _ = written()
    q = RegisterProposer("r", B, list(accs), random.Random(2))
    step = q.start(0.0, RegOp(GET), FIRST)
    assert deliver(q, accs, step, drop=frozenset({1})) == [0, 1] and q.result is None
    assert q.next_wakeup is not None and q.next_wakeup <= READ_WIDEN_S  # it will widen
    assert q.tick(READ_WIDEN_S / 2).send == []
    widen = q.tick(READ_WIDEN_S)
    assert [i for i, _ in widen.send] == [2]
    deliver(q, accs, widen, READ_WIDEN_S)
    assert q.result is not None and q.result.version == 1
    # Acceptor 1 was slow: the next read asks the two that answered.
    assert sorted(i for i, _ in q.start(1.0, RegOp(GET), FIRST).send) == [0, 2]
