"""Focused tests of the Paxos rules in zpaxos.protocol.core, one rule at a time, no network."""

from __future__ import annotations

import random

import pytest

from zpaxos.protocol.core import (
    Acceptor,
    KeyState,
    Learner,
    Peer,
    Proposer,
    ProposerOptions,
    Step,
    quorum_size,
)
from zpaxos.protocol.events import Adopted
from zpaxos.protocol.messages import (
    ZERO,
    Accept,
    Accepted,
    Ballot,
    Decide,
    Nack,
    Prepare,
    Promise,
    ProtocolMessage,
)

K = "k"
ACCEPTORS = ("A1", "A2", "A3")
B1, B2, B3 = Ballot(1, b"p"), Ballot(2, b"p"), Ballot(3, b"p")
INF = float("inf")


def proposer(value: bytes = b"mine", pid: bytes = b"p", acceptors: tuple[str, ...] = ACCEPTORS,
             seed: int = 0, **opts: object) -> Proposer:
    base: dict[str, object] = {"round_timeout_s": 1.0, "timeout_s": INF, "max_rounds": 10,
                               "backoff_s": 0.0}
    return Proposer(K, value, pid, acceptors, ProposerOptions(**{**base, **opts}),
                    random.Random(seed))


def sent(step: Step) -> list[tuple[Peer, ProtocolMessage]]:
    return list(step.send)


def promise(b: Ballot, accepted: Ballot = ZERO, value: bytes | None = None) -> Promise:
    return Promise(K, b, accepted, value)


# --------------------------------------------------------------------------- quorum, ballots


@pytest.mark.parametrize(("n", "q"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)])
def test_quorum_is_the_smallest_majority(n: int, q: int) -> None:
    assert quorum_size(n) == q
    assert 2 * q > n and 2 * (q - 1) <= n  # any two quorums meet; one fewer would not


def test_quorum_of_nobody_is_an_error() -> None:
    with pytest.raises(ValueError):
        quorum_size(0)


def test_ballots_order_by_round_then_proposer_and_zero_is_below_all() -> None:
    assert Ballot(1, b"b") > Ballot(1, b"a") and Ballot(2, b"a") > Ballot(1, b"z")
    assert Ballot(1, b"\x00") > ZERO and Ballot(0, b"\x00") > ZERO
    assert ZERO.is_zero and not Ballot(1, b"a").is_zero and str(ZERO) == "0"
    assert str(Ballot(2, b"\xb7\xc1\x00")) == "2.b7c1"
    assert sorted([B3, ZERO, B1, Ballot(1, b"q")]) == [ZERO, B1, Ballot(1, b"q"), B3]


def test_proposer_ids_must_be_non_empty_so_no_ballot_equals_zero() -> None:
    with pytest.raises(ValueError):
        proposer(pid=b"")


# --------------------------------------------------------------------------- acceptor


def test_acceptor_promises_a_higher_ballot_and_persists_it_first() -> None:
    a = Acceptor()
    step = a.on_prepare("P", Prepare(K, B1))
    assert step.persist == [(K, KeyState(promised=B1))]
    assert sent(step) == [("P", promise(B1))]


def test_acceptor_refuses_an_equal_or_lower_prepare_naming_its_promise() -> None:
    a = Acceptor({K: KeyState(promised=B2)})
    for b in (B1, B2):
        step = a.on_prepare("P", Prepare(K, b))
        assert sent(step) == [("P", Nack(K, b, B2))] and step.persist == []
    assert a.state(K).promised == B2


def test_promise_reports_the_highest_accepted_ballot_and_value() -> None:
    a = Acceptor({K: KeyState(promised=B1, accepted=B1, value=b"x")})
    assert sent(a.on_prepare("P", Prepare(K, B2))) == [("P", promise(B2, B1, b"x"))]


def test_acceptor_accepts_at_or_above_its_promise_and_raises_the_promise() -> None:
    a = Acceptor({K: KeyState(promised=B1)})
    step = a.on_accept("P", Accept(K, B1, b"x"))
    assert sent(step) == [("P", Accepted(K, B1, b"x"))]
    step = a.on_accept("P", Accept(K, B2, b"y"))
    new = KeyState(promised=B2, accepted=B2, value=b"y")
    assert step.persist == [(K, new)] and a.state(K) == new
    assert a.state(K).accepted <= a.state(K).promised


def test_acceptor_rejects_an_accept_below_its_promise() -> None:
    a = Acceptor({K: KeyState(promised=B2)})
    step = a.on_accept("P", Accept(K, B1, b"x"))
    assert sent(step) == [("P", Nack(K, B1, B2))] and step.persist == []
    assert a.state(K) == KeyState(promised=B2)


def test_a_repeated_accept_is_answered_without_another_fsync() -> None:
    a = Acceptor()
    a.on_accept("P", Accept(K, B1, b"x"))
    step = a.on_accept("P", Accept(K, B1, b"x"))
    assert step.persist == [] and sent(step) == [("P", Accepted(K, B1, b"x"))]


def test_keys_are_independent_instances() -> None:
    a = Acceptor()
    a.on_prepare("P", Prepare("other", B3))
    assert sent(a.on_prepare("P", Prepare(K, B1))) == [("P", promise(B1))]


def test_a_decided_acceptor_answers_prepare_and_accept_with_the_decision() -> None:
    a = Acceptor()
    step = a.on_decide("P", Decide(K, b"x", B1))
    assert step.persist == [(K, KeyState(chosen=b"x", chosen_ballot=B1))]
    assert step.events[0].name == "learned"
    # The Decide names the ballot that chose the value, so a late proposer can say so.
    assert sent(a.on_prepare("Q", Prepare(K, B3))) == [("Q", Decide(K, b"x", B1))]
    assert sent(a.on_accept("Q", Accept(K, B3, b"y"))) == [("Q", Decide(K, b"x", B1))]
    assert a.state(K).promised == ZERO  # a decided key needs no more promises


def test_a_conflicting_decide_never_overwrites_and_raises_the_alarm() -> None:
    a = Acceptor({K: KeyState(chosen=b"x")})
    step = a.on_decide("P", Decide(K, b"y"))
    assert step.persist == [] and [e.name for e in step.events] == ["conflict"]
    assert a.state(K).chosen == b"x"
    assert a.on_decide("P", Decide(K, b"x")).persist == []  # the same decision again
    # ... but the same decision with its ballot fills in what was unknown.
    assert a.on_decide("P", Decide(K, b"x", B1)).persist == [
        (K, KeyState(chosen=b"x", chosen_ballot=B1))]


def test_a_restarted_acceptor_keeps_exactly_what_was_persisted() -> None:
    a = Acceptor()
    disk: dict[str, KeyState] = {}
    for msg in (Prepare(K, B2), Accept(K, B2, b"x")):
        disk.update(a.handle("P", msg).persist)
    b = Acceptor(disk)
    assert sent(b.on_accept("P", Accept(K, B1, b"y"))) == [("P", Nack(K, B1, B2))]
    assert sent(b.on_prepare("P", Prepare(K, B3))) == [("P", promise(B3, B2, b"x"))]


def test_messages_meant_for_proposers_are_ignored_by_acceptors() -> None:
    step = Acceptor().handle("P", Promise(K, B1, ZERO, None))
    assert step.send == [] and step.persist == [] and step.events[0].name == "ignored"


# --------------------------------------------------------------------------- learner


def test_learner_needs_a_quorum_of_distinct_acceptors_for_one_ballot() -> None:
    ln = Learner(ACCEPTORS)
    assert ln.on_accepted("A1", Accepted(K, B1, b"x")) is None
    assert ln.on_accepted("A1", Accepted(K, B1, b"x")) is None  # a duplicate counts once
    assert ln.on_accepted("X9", Accepted(K, B1, b"x")) is None  # not an acceptor
    assert ln.on_accepted("A2", Accepted(K, B2, b"x")) is None  # another ballot
    assert ln.on_accepted("A3", Accepted(K, B1, b"x")) == b"x"
    assert ln.on_decide(Decide(K, b"y")) == b"x"  # the first decision stands


# --------------------------------------------------------------------------- proposer


def started(**kw: object) -> tuple[Proposer, list[tuple[Peer, ProtocolMessage]]]:
    p = proposer(**kw)  # type: ignore[arg-type]
    return p, sent(p.start(0.0))


def test_proposer_starts_with_round_one_to_every_acceptor() -> None:
    p, out = started()
    assert out == [(a, Prepare(K, B1)) for a in ACCEPTORS] and p.ballot == B1
    with pytest.raises(RuntimeError):
        p.start(0.0)


def test_proposer_proposes_its_own_value_when_nothing_was_accepted() -> None:
    p, _ = started()
    assert sent(p.receive(0.1, "A1", promise(B1))) == []
    step = p.receive(0.1, "A2", promise(B1))
    assert sent(step) == [(a, Accept(K, B1, b"mine")) for a in ACCEPTORS]
    assert "adopted" not in [e.name for e in step.events]


def test_proposer_adopts_the_value_of_the_highest_accepted_ballot() -> None:
    p, _ = started(pid=b"z")
    low, high = Ballot(1, b"a"), Ballot(1, b"b")
    p.receive(0.1, "A1", Promise(K, p.ballot, high, b"high"))
    step = p.receive(0.1, "A2", Promise(K, p.ballot, low, b"low"))
    assert sent(step)[0] == ("A1", Accept(K, p.ballot, b"high"))
    [adopted] = [e for e in step.events if e.name == "adopted"]
    assert isinstance(adopted, Adopted)
    assert (adopted.value, adopted.from_ballot) == (b"high", high)


def test_duplicate_and_stale_promises_do_not_make_a_quorum() -> None:
    p, _ = started()
    p.receive(0.1, "A1", promise(B1))
    assert sent(p.receive(0.1, "A1", promise(B1))) == []  # duplicate
    assert sent(p.receive(0.1, "A2", promise(Ballot(0, b"p")))) == []  # another round
    assert sent(p.receive(0.1, "NOT-AN-ACCEPTOR", promise(B1))) == []
    assert sent(p.receive(0.1, "A2", Promise("other", B1, ZERO, None))) == []
    assert p.phase == "prepare"


def to_accept_phase(**kw: object) -> Proposer:
    p, _ = started(**kw)
    p.receive(0.1, "A1", promise(p.ballot))
    p.receive(0.1, "A2", promise(p.ballot))
    return p


def test_a_quorum_of_accepted_chooses_and_tells_every_acceptor() -> None:
    p = to_accept_phase()
    assert p.receive(0.2, "A1", Accepted(K, B1, b"mine")).send == []
    assert p.receive(0.2, "A1", Accepted(K, B1, b"mine")).send == []  # duplicate
    assert p.receive(0.2, "A2", Accepted(K, Ballot(0, b"p"), b"mine")).send == []  # stale
    step = p.receive(0.2, "A2", Accepted(K, B1, b"mine"))
    assert sent(step) == [(a, Decide(K, b"mine", B1)) for a in ACCEPTORS]
    o = p.outcome
    assert o is not None and (o.chosen, o.own, o.rounds, o.ballot) == (b"mine", True, 1, B1)
    assert (o.chosen_ballot, o.how) == (B1, "proposed")
    assert p.done and p.next_wakeup is None and o.silent == ("A3",)


def test_a_quorum_for_an_abandoned_round_still_counts_as_chosen() -> None:
    """A Nack from one acceptor abandons the round, but if the others accept it anyway
    the value is chosen: the proposer must notice instead of running more rounds."""
    p = proposer(backoff_s=0.5)
    p.start(0.0)
    p.receive(0.1, "A1", promise(B1))
    p.receive(0.1, "A2", promise(B1))
    p.receive(0.2, "A3", Nack(K, B1, Ballot(4, b"q")))
    assert p.phase == "backoff"
    p.receive(0.3, "A1", Accepted(K, B1, b"mine"))
    step = p.receive(0.3, "A2", Accepted(K, B1, b"mine"))
    assert p.outcome is not None and p.outcome.chosen == b"mine" and p.rounds == 1
    assert sent(step) == [(a, Decide(K, b"mine", B1)) for a in ACCEPTORS]


def test_a_single_acceptor_is_its_own_quorum() -> None:
    p = proposer(acceptors=("A1",))
    p.start(0.0)
    assert sent(p.receive(0.1, "A1", promise(B1))) == [("A1", Accept(K, B1, b"mine"))]
    p.receive(0.2, "A1", Accepted(K, B1, b"mine"))
    assert p.outcome is not None and p.outcome.chosen == b"mine"


def test_a_nack_naming_our_own_ballot_is_not_a_rejection() -> None:
    p = to_accept_phase()
    assert p.receive(0.2, "A3", Nack(K, B1, B1)).events == [] and p.phase == "accept"


def test_a_nack_for_an_earlier_round_is_ignored_but_remembered() -> None:
    p = to_accept_phase()
    assert p.receive(0.2, "A3", Nack(K, Ballot(0, b"p"), Ballot(7, b"q"))).events == []
    assert p.phase == "accept"
    step = p.receive(0.2, "A3", Nack(K, B1, Ballot(2, b"q")))
    assert sent(step)[0] == ("A1", Prepare(K, Ballot(8, b"p")))  # above all it has seen


def test_a_rejection_starts_a_round_above_the_promise_it_names() -> None:
    p = to_accept_phase()
    step = p.receive(0.2, "A3", Nack(K, B1, Ballot(4, b"q")))
    assert [e.name for e in step.events] == ["retry", "round"]
    assert sent(step) == [(a, Prepare(K, Ballot(5, b"p"))) for a in ACCEPTORS]
    assert p.rounds == 2 and p.value == b"mine"


def test_a_decide_from_an_acceptor_ends_the_proposal() -> None:
    p, _ = started()
    earlier = Ballot(7, b"q")
    step = p.receive(0.1, "A2", Decide(K, b"theirs", earlier))
    assert sent(step) == [("A1", Decide(K, b"theirs", earlier)),
                          ("A3", Decide(K, b"theirs", earlier))]
    o = p.outcome
    assert o is not None and (o.chosen, o.own) == (b"theirs", False)
    assert (o.chosen_ballot, o.how) == (earlier, "already")
    assert p.receive(0.2, "A1", Decide(K, b"other")).send == []  # done means done


def test_backoff_is_random_below_its_cap_and_seeded() -> None:
    def backoff(seed: int) -> float:
        p = to_accept_phase(backoff_s=0.2, seed=seed)
        p.receive(1.0, "A3", Nack(K, B1, B2))
        assert p.phase == "backoff"
        return p.next_wakeup - 1.0  # type: ignore[operator]

    draws = [backoff(s) for s in range(20)]
    assert all(0 <= d <= 0.2 for d in draws) and len(set(draws)) == 20
    assert backoff(3) == backoff(3)


def test_a_proposer_without_a_deadline_can_retry_for_ever() -> None:
    """Thousands of rounds (a long partition) must not overflow the exponential backoff."""
    p = proposer(max_rounds=10**6, backoff_s=0.05, backoff_max_s=2.0, round_timeout_s=0.5)
    p.start(0.0)
    while p.rounds < 1500:
        now = p.next_wakeup
        assert now is not None
        p.tick(now)
        if p.phase == "backoff":
            assert 0 <= p.next_wakeup - now <= 2.0  # type: ignore[operator]
    assert p.outcome is None


def test_round_timeout_retries_and_max_rounds_gives_a_not_chosen_outcome() -> None:
    p, _ = started(max_rounds=2, round_timeout_s=0.5)
    assert p.next_wakeup == 0.5
    assert p.tick(0.4).send == []  # too early: nothing happens
    step = p.tick(0.5)
    assert sent(step)[0] == ("A1", Prepare(K, B2)) and p.rounds == 2
    assert p.next_wakeup == 1.0
    step = p.tick(1.0)
    o = p.outcome
    assert o is not None and o.chosen is None and not o.own and o.rounds == 2
    assert "2 rounds" in o.reason and [e.name for e in step.events] == ["gave_up"]
    assert o.silent == ACCEPTORS and step.send == []


def test_the_deadline_gives_a_not_chosen_outcome_even_mid_round() -> None:
    p, _ = started(timeout_s=0.3, round_timeout_s=1.0)
    p.receive(0.1, "A1", promise(B1))
    assert p.next_wakeup == 0.3
    p.tick(0.3)
    o = p.outcome
    assert o is not None and o.chosen is None and "deadline" in o.reason and o.silent == (
        "A2", "A3")


def test_own_is_true_exactly_when_the_chosen_value_is_ours() -> None:
    p = to_accept_phase()
    p.receive(0.2, "A1", Decide(K, b"mine"))  # learned from a Decide: still our value
    assert p.outcome is not None and (p.outcome.chosen, p.outcome.own) == (b"mine", True)
    q, _ = started()
    q.receive(0.1, "A1", promise(B1, Ballot(1, b"a"), b"old"))
    q.receive(0.1, "A2", promise(B1))
    q.receive(0.2, "A1", Accepted(K, B1, b"old"))
    q.receive(0.2, "A2", Accepted(K, B1, b"old"))  # chosen by our ballot, but adopted
    assert q.outcome is not None and (q.outcome.chosen, q.outcome.own) == (b"old", False)
    r, _ = started(max_rounds=1)
    r.tick(1.0)
    assert r.outcome is not None and (r.outcome.chosen, r.outcome.own) == (None, False)


def test_first_round_stages_who_holds_the_higher_ballot() -> None:
    p = proposer(first_round=3)
    step = p.start(0.0)
    assert sent(step) == [(a, Prepare(K, Ballot(3, b"p"))) for a in ACCEPTORS]


def test_a_round_far_beyond_anything_seen_cannot_lock_a_key() -> None:
    """One forged Prepare with the largest round the codec carries would otherwise leave
    no ballot to outbid it: the acceptor refuses it, and honest proposers go on."""
    from zpaxos.protocol.messages import MAX_ROUND_STEP
    from zpaxos.runtime.codec import MAX_ROUND

    a = Acceptor()
    huge = Ballot(MAX_ROUND, b"evil")
    assert sent(a.on_prepare("X", Prepare(K, huge))) == [("X", Nack(K, huge, ZERO))]
    assert sent(a.on_accept("X", Accept(K, huge, b"bad"))) == [("X", Nack(K, huge, ZERO))]
    assert a.state(K) == KeyState()  # no state change at all
    step = Ballot(MAX_ROUND_STEP, b"p")  # the furthest jump allowed
    assert sent(a.on_prepare("P", Prepare(K, step))) == [("P", Promise(K, step, ZERO, None))]
    p, _ = started()  # an honest proposer still outbids the highest real promise
    retry = p.receive(0.1, "A1", Nack(K, B1, step))
    assert p.phase == "prepare" and sent(retry)[0][1] == Prepare(K, Ballot(step.round + 1, b"p"))


def test_a_nudge_retries_at_once_when_a_node_comes_back() -> None:
    """The runtime saw an acceptor reconnect: a phase in progress resends to those that have
    not answered (same ballot), and a backoff ends with the next round at once."""
    p, _ = started()
    p.receive(0.1, "A1", promise(B1))
    step = p.nudge(0.2)
    assert sent(step) == [("A2", Prepare(K, B1)), ("A3", Prepare(K, B1))]
    assert p.next_wakeup == pytest.approx(0.2 + 1.0)  # the round timeout starts again
    q = proposer(backoff_s=5.0)
    q.start(0.0)
    q.receive(0.1, "A1", Nack(K, B1, B3))
    assert q.phase == "backoff"
    assert sent(q.nudge(0.2)) == [(a, Prepare(K, Ballot(4, b"p"))) for a in ACCEPTORS]
