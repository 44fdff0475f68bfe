"""Membership changes in the simulator (zpaxos/sim/membersim.py): seeded schedules that add,
remove and replace nodes while clients write keys, registers and range-promised keys,
under loss, duplication, delay, crashes and cuts; and the broken variants they must catch
(layer "membership" of zpaxos/sim/mutants.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from zpaxos.protocol.membership import check_step
from zpaxos.sim import membersim
from zpaxos.sim.memberproc import FAST, ROUND_TIMEOUT_S, WRITE, Op
from zpaxos.sim.mutants import MEMBER_MUTANTS

MUTANT_SEEDS = 3_000  # every membership mutant must be caught within it (all in < 700 today)
# The seed that catches each first (the closing note's list; a change that moves one is
# fine, one that loses a catch is not: test_member_mutant_is_caught says so).
FIRST_SEEDS = {"one-step-reconfig": 27, "counted-before-caught-up": 26,
               "removed-while-needed": 8, "ignores-epoch": 15, "range-across-epochs": 632,
               "moves-state-only-for-joins": 57}


def test_default_schedules_keep_every_invariant(sim_seeds: int) -> None:
    seeds = min(sim_seeds, 2_000)
    failures, cover = membersim.check_seeds(range(seeds))
    assert not failures, str(failures[0])
    assert cover["schedules"] == seeds
    # Every fault and every kind of key, in the middle of membership changes.
    for what in ("with_crashes", "with_cuts", "with_done_fast", "with_done_set",
                 "with_done_get", "with_done_write"):
        assert cover[what] >= 0.3 * seeds, f"too few schedules {what}: {dict(cover)}"
    assert cover["steps"] >= 3 * seeds


@pytest.mark.parametrize("name", MEMBER_MUTANTS)
def test_member_mutant_is_caught(name: str) -> None:
    m = MEMBER_MUTANTS[name]
    failures, _ = membersim.check_seeds(range(MUTANT_SEEDS), **m.variant)
    assert failures, f"{name} was not caught in {MUTANT_SEEDS} seeds"
    v = failures[0]
    assert any(c in v.what for c in m.caught_by.split("|")), str(v)
    assert f"--mutant {name}" in v.replay
    assert v.seed == FIRST_SEEDS[name], f"{name} now first caught at seed {v.seed}"


def test_every_configuration_a_run_installs_follows_its_predecessor_safely() -> None:
    r = membersim.run_schedule(7)
    assert len(r.configs) > 2
    for prev, cfg in zip(r.configs, r.configs[1:], strict=False):
        assert check_step(prev, cfg) is None
    # The broken planners' steps are exactly the ones check_step refuses.
    initial = r.configs[0]
    for planner, what in ((membersim.one_step_plan, "add"),
                          (membersim.remove_at_once_plan, "remove")):
        steps = planner(initial, what, 4 if what == "add" else 1, 0)
        assert len(steps) == 1 and check_step(initial, steps[0].config) is not None


def test_a_seed_replays_exactly() -> None:
    a, b = membersim.run_schedule(11), membersim.run_schedule(11)
    assert a.votes == b.votes and a.history == b.history and a.configs == b.configs


def stale_lease_scenario() -> membersim.MemberScenario:
    """The lease holder takes a range in epoch 1; every node is replaced; a rival writes a
    fresh key of the range on the new nodes; then the holder writes it by its old lease."""
    ops = ((0.01, "c0", Op("a", FAST, "f-0", b"a")), (0.3, "c0", Op("b", FAST, "f-1", b"b")),
           (15.0, "c1", Op("c", WRITE, "f-5", b"c")), (16.0, "c0", Op("d", FAST, "f-5", b"d")))
    return membersim.MemberScenario(1, (("replace", 1, 4), ("replace", 2, 5), ("replace", 3, 6)),
                                    0.5, ops, drop_p=0.0, dup_p=0.0)


def test_a_range_promise_never_skips_phase_1_in_a_later_epoch() -> None:
    sim = membersim.MemberSimulation(stale_lease_scenario())
    sim.run()
    assert sim.procs["c0"].stats["lease_dropped"] >= 1
    assert sim.told["f-5"] == b"c"
    with pytest.raises(membersim.InvariantViolation, match="two values chosen for f-5"):
        membersim.MemberSimulation(stale_lease_scenario(), keeps_lease=True).run()


def test_a_stale_proposer_is_told_the_configuration_and_retries_at_once() -> None:
    sc = replace(stale_lease_scenario(), ops=((16.0, "c1", Op("c", WRITE, "k0", b"c")),))
    sim = membersim.MemberSimulation(sc)
    sim.run()
    c1 = sim.procs["c1"]
    assert c1.cfg == sim.out.configs[-1] and c1.stats["stale"] >= 1
    votes = [(t, a) for t, a, _, k, _, _ in sim.out.votes if k == "k0"]
    assert {a for _, a in votes} <= {4, 5, 6}
    # Retried on the refusal itself, not after a round timeout (virtual time).
    assert max(t for t, _ in votes) < 16.0 + ROUND_TIMEOUT_S


def test_the_docs_list_the_seed_each_variant_took() -> None:
    """docs/membership.md's table of broken variants names the seeds FIRST_SEEDS holds."""
    import re

    from tests.harness import ROOT

    text = (ROOT / "docs" / "membership.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([\w-]+)` \|.*\| (\d+) \|$", text, re.M))
    assert {k: int(v) for k, v in rows.items()} == FIRST_SEEDS
