"""The simulator's catching-up schedules (zpaxos/sim/catchup_sim.py): a node deaf to
every Decide and learn message for a while, a liveness check that every live node ends
up knowing every decision, and the broken variants it must catch."""

from __future__ import annotations

import pytest

from zpaxos.sim.catchup_sim import MUTANTS, check_seeds

SEEDS = 300


def test_catching_up_passes_the_deaf_node_schedules():
    failures, cover = check_seeds(range(SEEDS))
    assert not failures, str(failures[0])
    assert cover["schedules"] == SEEDS
    for what in ("with_deaf_dropped", "with_caught_up", "with_deaf_crash", "with_forged_fetch"):
        assert cover[what] > SEEDS // 10, (what, dict(cover))


# The first seed that catches each (python -m zpaxos.sim.catchup_sim --mutant NAME).
FIRST_SEED = {
    "catch-up-cursor-off-by-one": 0,
    "catch-up-learns-nothing": 0,
    "catch-up-cursor-before-values": 65,
    "catch-up-trusts-any-fetch-reply": 0,
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_each_broken_variant_is_caught(name):
    failures, _ = check_seeds(range(2000), host_cls=MUTANTS[name])
    assert failures, f"{name} passed 2000 schedules"
    assert failures[0].seed == FIRST_SEED[name]
