"""The simulator suite: thousands of hostile seeded schedules on the real hosts (and the
pure core inside them), the broken variants of both they must catch (zpaxos/sim/mutants.py),
and Ousterhout's textbook orderings driven step by step.

Every run is virtual time; nothing sleeps. A failure prints the seed, the trace tail and
the command that replays it (``python -m zpaxos.sim --seed N --trace``).
"""

from __future__ import annotations

import os

import pytest

from zpaxos.hosts.staging import StagingOptions
from zpaxos.protocol.core import ProposerOptions
from zpaxos.protocol.events import Adopted, Event, Retry
from zpaxos.protocol.messages import Ballot, Decide
from zpaxos.sim.__main__ import main
from zpaxos.sim.mutants import KEY_MUTANTS as MUTANTS
from zpaxos.sim.mutants import RepromisingAcceptor
from zpaxos.sim.runs import check_seeds, check_seeds_parallel, run_schedule
from zpaxos.sim.simulator import (
    INF,
    Chaos,
    InvariantViolation,
    ProposerSpec,
    Scenario,
    SimResult,
    Simulation,
)

MUTANT_SEEDS = 10_000  # the default seed count: every mutant must be caught within it


# --------------------------------------------------------------------------- seeded runs


def test_default_schedules_keep_every_invariant(sim_seeds: int) -> None:
    """Safety after every step, liveness after the chaos, on N=3/5/7 and 2-4 proposers."""
    workers = min(2, os.cpu_count() or 1)
    failures, cover = check_seeds_parallel(range(sim_seeds), workers=workers)
    if failures:
        pytest.fail(f"{failures[0]}\n({len(failures)} chunk(s) of seeds failed)", pytrace=False)
    assert cover["schedules"] == sim_seeds
    if sim_seeds < 1000:
        return  # too few schedules for the coverage counts below to mean anything
    # The generator must keep exercising what makes Paxos hard, or the run proves little.
    for what in ("N=3", "N=5", "N=7", "multi_key", "shared_process", "must_choose",
                 "with_crashes", "with_crash_in_step", "with_dropped", "with_duplicated",
                 "with_adopted", "with_retry", "with_gave_up", "with_stayed_down", "with_batched",
                 "with_forged_sync", "with_status_checked", "with_learned",
                 "with_forged_decide", "with_range_promised", "with_fast_vote",
                 "with_columns"):  # the column runs: the acceptor's row rules at work
        assert cover[what] >= 0.03 * sim_seeds, f"too few schedules {what}: {dict(cover)}"


@pytest.mark.parametrize("name", MUTANTS)
def test_mutant_is_caught(name: str, sim_seeds: int) -> None:
    """Each must fall within the default seed count (the first 1-126 seeds do it today)."""
    seeds = max(sim_seeds, MUTANT_SEEDS)
    failures, _ = check_seeds(range(seeds), **MUTANTS[name].variant)  # stops at the first
    assert failures, f"mutant {name} survived {seeds} schedules"
    v = failures[0]
    assert any(c in v.what for c in MUTANTS[name].caught_by.split("|")), str(v)
    text = str(v)
    assert f"seed {v.seed}: " in text and f"--seed {v.seed} --trace --mutant {name}" in text
    assert len(v.trace) > 0 and v.trace[-1] in text


@pytest.mark.parametrize("variant", [{"shared_ids": True, "one_process_each": True},
                                     {"acceptor_cls": RepromisingAcceptor}],
                         ids=["shared-ids-alone", "repromise-alone"])
def test_halves_of_the_ballot_reuse_mutant_are_safe_alone(variant: dict[str, object]) -> None:
    """Pins why mutant 4 needs both halves: the core's strict '>' on Prepare is what makes
    it immune to shared ids (if that rule ever becomes '>=', the first case fails) --
    as long as each proposer is a process of its own."""
    failures, cover = check_seeds(range(1000), **variant)
    assert not failures, str(failures[0])


def test_shared_ids_inside_one_process_choose_two_values() -> None:
    """...but two proposals of one key in one process share the replies to a shared
    ballot (replies are routed by key), so a shared id alone breaks safety there. This is
    why the client draws a fresh id for every proposal."""
    failures, _ = check_seeds(range(1000), shared_ids=True)
    assert failures and "carries two values" in failures[0].what


def test_a_seed_replays_exactly() -> None:
    a, b = run_schedule(41, trace=True), run_schedule(41, trace=True)
    assert a.trace == b.trace and len(a.trace) > 20
    c = run_schedule(41)  # untraced runs take the same path
    assert c.outcomes == a.outcomes and c.chosen == a.chosen and not c.trace


def test_violation_message_and_cli_replay(capsys: pytest.CaptureFixture[str]) -> None:
    failures, _ = check_seeds(range(100), **MUTANTS["accepts-below-promise"].variant)
    v = failures[0]
    assert isinstance(v, InvariantViolation)
    text = str(v)
    assert text.startswith(f"seed {v.seed}: ") and "scenario: N=" in text
    assert "VIOLATION" in v.trace[-1] and "trace lines" in text
    assert main(["--seed", str(v.seed), "--trace", "--mutant", "accepts-below-promise"]) == 1
    err = capsys.readouterr().err
    assert f"seed {v.seed}: VIOLATION: {v.what}" in err and "t=0." in err
    assert main(["--seed", str(v.seed)]) == 0  # the real core passes the same schedule
    assert f"seed {v.seed}: ok" in capsys.readouterr().out


def test_crash_between_persist_and_send_loses_the_sends_only() -> None:
    """Every acceptor step crashes after its fsync: no Promise ever leaves during the
    chaos, yet each restarted acceptor still holds the promise it persisted."""
    spec = ProposerSpec("P1", "k", b"X", 0.0, ProposerOptions(
        round_timeout_s=0.05, timeout_s=INF, max_rounds=10**6, backoff_s=0.01))
    sc = Scenario(7, 3, (spec,), chaos=Chaos(end_s=0.2, crash_in_step_p=1.0, downtime_s=0.01),
                  must_choose=True)
    r = Simulation(sc, trace=True).run()
    lost = [line for line in r.trace if "CRASH n" in line and "lost Promise(k, 1.P1" in line]
    assert lost, "\n".join(r.trace)
    assert any("restart n" in line and "promised=1.P1" in line for line in r.trace)
    assert r.outcomes["P1"].chosen == b"X" and r.chosen == {"k": b"X"}
    assert r.finished_at["P1"] > 0.2  # nothing could be chosen before the chaos ended


# --------------------------------------------------------------------------- textbook
# Ousterhout's Paxos lecture, on 3 acceptors. Every message takes exactly D seconds, so the
# orderings come from start times and the proposers' staging options alone.

D = 0.01
X, Y = b"X", b"Y"
B1_P1, B1_P2 = Ballot(1, b"P1"), Ballot(1, b"P2")


def stage(**kw: object) -> StagingOptions:
    return StagingOptions(**kw)  # type: ignore[arg-type]


def opts(**kw: object) -> ProposerOptions:
    base: dict[str, object] = {"round_timeout_s": 1.0, "timeout_s": INF, "max_rounds": 10,
                               "backoff_s": 0.0}
    return ProposerOptions(**{**base, **kw})


def textbook(*proposers: ProposerSpec, basic: bool = True, seed: int = 0) -> SimResult:
    """``basic`` drops every Decide, as in the lecture's basic Paxos: acceptors never learn
    the outcome, so a later proposer must find the value through the Promises."""
    rule = (lambda src, dst, msg: isinstance(msg, Decide)) if basic else None
    return Simulation(Scenario(seed, 3, proposers, D, D, drop_if=rule), trace=True).run()


def events(r: SimResult, proposer: str, name: str) -> list[Event]:
    """The events of one proposal (each textbook proposal runs in a process of its own)."""
    return [e for _, p, e in r.events if p == proposer and e.name == name]


def votes_before(r: SimResult, t: float) -> list[tuple[int, Ballot, bytes]]:
    return [(a, b, v) for when, a, _, b, v in r.votes if when < t]


def test_a_chosen_value_is_found_and_kept() -> None:
    r = textbook(ProposerSpec("P1", "k", X, 0.0, opts()), ProposerSpec("P2", "k", Y, 1.0, opts()))
    trace = "\n".join(r.trace)
    assert r.chosen == {"k": X} and r.chosen_at["k"] < 1.0, trace
    p1, p2 = r.outcomes["P1"], r.outcomes["P2"]
    assert (p1.chosen, p1.own) == (X, True), trace
    assert (p2.chosen, p2.own, p2.rounds) == (X, False, 1), trace
    [adopted] = events(r, "P2", "adopted")
    assert isinstance(adopted, Adopted) and (adopted.value, adopted.from_ballot) == (X, B1_P1)
    # With Decide messages the acceptors know the outcome and tell P2 at once.
    r = textbook(ProposerSpec("P1", "k", X, 0.0, opts()), ProposerSpec("P2", "k", Y, 1.0, opts()),
                 basic=False)
    p2 = r.outcomes["P2"]
    assert (p2.chosen, p2.own) == (X, False) and p2.reason.startswith("already chosen")
    assert not [v for v in r.votes if v[3] == B1_P2]  # P2 sent no Accept at all


def test_b_value_accepted_by_a_minority_is_adopted() -> None:
    # P1's Accept reaches A1 at once, A2 and A3 only after a second; P2 prepares in
    # between and its quorum {A1, A2} includes A1 (its Prepare to A3 is held back).
    p1 = ProposerSpec("P1", "k", X, 0.0, opts(), staging=stage(accept_delay_s={1: 1.0, 2: 1.0}))
    p2 = ProposerSpec("P2", "k", Y, 0.1, opts(), staging=stage(prepare_delay_s={2: 0.5}))
    r = textbook(p1, p2)
    trace = "\n".join(r.trace)
    assert votes_before(r, 0.1) == [(0, B1_P1, X)], trace  # a minority only
    [adopted] = events(r, "P2", "adopted")
    assert isinstance(adopted, Adopted) and (adopted.value, adopted.from_ballot) == (X, B1_P1)
    assert r.chosen == {"k": X}, trace
    assert (r.outcomes["P2"].chosen, r.outcomes["P2"].own) == (X, False), trace
    assert (r.outcomes["P1"].chosen, r.outcomes["P1"].own) == (X, True), trace


def test_c_later_proposer_misses_it_and_the_earlier_accepts_are_rejected() -> None:
    # Same as (b), but P2 holds back its Prepare to A1, so its quorum {A2, A3} has seen
    # nothing: P2 chooses Y, and P1's late Accepts meet P2's promise.
    p1 = ProposerSpec("P1", "k", X, 0.0, opts(), staging=stage(accept_delay_s={1: 1.0, 2: 1.0}))
    p2 = ProposerSpec("P2", "k", Y, 0.1, opts(), staging=stage(prepare_delay_s={0: 0.5}))
    r = textbook(p1, p2)
    trace = "\n".join(r.trace)
    assert votes_before(r, 0.1) == [(0, B1_P1, X)], trace
    assert not events(r, "P2", "adopted"), trace
    assert r.chosen == {"k": Y} and r.chosen_at["k"] < 1.0, trace
    assert (r.outcomes["P2"].chosen, r.outcomes["P2"].own) == (Y, True), trace
    [rejected] = events(r, "P1", "retry")
    assert isinstance(rejected, Retry), trace
    assert (rejected.promised, rejected.ballot, rejected.cause) == (B1_P2, B1_P1, "rejected")
    assert any("Nack(k, 1.P1, promised=1.P2)" in line for line in r.trace), trace
    assert (r.outcomes["P1"].chosen, r.outcomes["P1"].own) == (Y, False), trace


PAUSE = 0.1  # each proposer waits this long between its phases: the duel's window
ROUNDS = 5


def duel(p2_timeout_s: float = INF, backoff_s: float = 0.0, seed: int = 0) -> SimResult:
    """P2 starts 0.05 s after P1. A round takes 2D to gather promises, PAUSE, then 2D to
    hear back, so each proposer's Prepare lands in the middle of the other's pause and
    the other's Accepts are then rejected: each Nack starts a higher round at once."""
    p1 = ProposerSpec("P1", "k", X, 0.0, opts(max_rounds=ROUNDS, backoff_s=backoff_s),
                      staging=stage(pause_between_phases_s=PAUSE))
    p2 = ProposerSpec("P2", "k", Y, 0.05, opts(max_rounds=ROUNDS, backoff_s=backoff_s,
                                                 timeout_s=p2_timeout_s),
                      staging=stage(pause_between_phases_s=PAUSE))
    return textbook(p1, p2, basic=False, seed=seed)


def test_d_duel_without_backoff_livelocks_for_the_allowed_rounds() -> None:
    r = duel()
    trace = "\n".join(r.trace)
    p1, p2 = r.outcomes["P1"], r.outcomes["P2"]
    # Every round of both was rejected by the other's Prepare, for all the rounds allowed.
    assert p1.chosen is None and p1.rounds == ROUNDS and f"in {ROUNDS} rounds" in p1.reason
    assert len(events(r, "P1", "retry")) == ROUNDS - 1, trace
    assert all(isinstance(e, Retry) and e.cause == "rejected"
               for e in events(r, "P1", "retry")), trace
    assert len(events(r, "P2", "retry")) == ROUNDS - 1, trace
    # The rival that holds the highest ballot is never rejected again once P1 stops, so with
    # max_rounds alone it wins its very last round: nothing was chosen before that.
    assert p2.rounds == ROUNDS and p2.chosen == Y and r.chosen_at["k"] > r.finished_at["P1"]
    # With a deadline that falls in that last round too, both give up and nothing is chosen.
    r = duel(p2_timeout_s=0.67)
    trace = "\n".join(r.trace)
    p1, p2 = r.outcomes["P1"], r.outcomes["P2"]
    assert (p1.chosen, p1.own, p1.rounds) == (None, False, ROUNDS), trace
    assert (p2.chosen, p2.own, p2.rounds) == (None, False, ROUNDS), trace
    assert "deadline" in p2.reason and r.chosen == {} and not r.votes, trace


def test_d_duel_with_randomized_backoff_finishes_with_one_value() -> None:
    for seed in range(20):  # each seed gives the proposers other backoff draws
        r = duel(backoff_s=0.2, seed=seed)
        trace = "\n".join(r.trace)
        assert len(r.chosen) == 1, trace
        value = r.chosen["k"]
        assert {o.chosen for o in r.outcomes.values()} == {value}, trace
        assert sum(o.own for o in r.outcomes.values()) == 1, trace
        assert events(r, "P1", "retry") or events(r, "P2", "retry"), trace  # a real duel
