"""Staging (hosts/staging.py): messages held back on purpose for the textbook orderings,
around an unchanged core proposer."""

from __future__ import annotations

import pytest

from tests.test_core import ACCEPTORS, B1, B3, K, promise, proposer, sent
from zpaxos.hosts.staging import Staged, StagingOptions
from zpaxos.protocol.messages import Accept, Ballot, Decide, Nack, Prepare

STAGING_FIELDS = ("pause_between_phases_s", "prepare_delay_s", "accept_delay_s")


def staged(**opts: object) -> Staged:
    stage = {k: v for k, v in opts.items() if k in STAGING_FIELDS}
    core = {k: v for k, v in opts.items() if k not in STAGING_FIELDS}
    return Staged(proposer(**core), StagingOptions(**stage))  # type: ignore[arg-type]


def test_staged_prepares_leave_on_time_and_the_round_timeout_waits_for_them() -> None:
    p = staged(prepare_delay_s={"A3": 0.4}, round_timeout_s=0.5)
    step = p.start(0.0)
    assert [a for a, _ in sent(step)] == ["A1", "A2"]
    assert p.next_wakeup == 0.4
    assert p.tick(0.3).send == []
    assert sent(p.tick(0.4)) == [("A3", Prepare(K, B1))]
    assert p.next_wakeup == 0.9  # 0.5 after the last staged message


def test_the_pause_between_phases_holds_the_accepts_back() -> None:
    p = staged(pause_between_phases_s=0.25)
    p.start(0.0)
    p.receive(0.1, "A1", promise(B1))
    step = p.receive(0.1, "A2", promise(B1))
    assert step.send == [] and p.p.phase == "accept" and "pause" in [e.name for e in step.events]
    assert p.next_wakeup == pytest.approx(0.35)
    assert p.tick(0.3).send == []
    assert sent(p.tick(0.35)) == [(a, Accept(K, B1, b"mine")) for a in ACCEPTORS]


def test_a_rejection_during_the_pause_abandons_the_round() -> None:
    p = staged(pause_between_phases_s=0.25)
    p.start(0.0)
    p.receive(0.1, "A1", promise(B1))
    p.receive(0.1, "A2", promise(B1))
    step = p.receive(0.2, "A3", Nack(K, B1, B3))
    assert sent(step)[0] == ("A1", Prepare(K, Ballot(4, b"p")))


def test_staged_accepts_leave_on_time() -> None:
    p = staged(accept_delay_s={"A1": 0.5})
    p.start(0.0)
    p.receive(0.1, "A2", promise(B1))
    step = p.receive(0.1, "A3", promise(B1))
    assert [a for a, _ in sent(step)] == ["A2", "A3"]
    assert p.next_wakeup == pytest.approx(0.6)
    assert sent(p.tick(0.6)) == [("A1", Accept(K, B1, b"mine"))]


def test_a_finished_proposer_drops_its_staged_messages() -> None:
    p = staged(prepare_delay_s={"A3": 0.4})
    p.start(0.0)
    p.receive(0.1, "A1", Decide(K, b"x"))
    assert p.next_wakeup is None and p.tick(0.5).send == []
