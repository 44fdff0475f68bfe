"""Registers under the seeded simulator: histories checked for linearizability, mutants caught.

The simulator (zpaxos/sim/regsim.py) runs the real AcceptorHost and RegisterHost with
losses, duplicates, reordering, partitions and crashes (also between persist and send);
each run's history goes through the checker (zpaxos/sim/lincheck.py).
"""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest
from msgspec.structs import replace as struct_replace

from zpaxos.protocol.register import RegisterOptions
from zpaxos.sim import regsim
from zpaxos.sim.lincheck import Op, check
from zpaxos.sim.mutants import REGISTER_MUTANTS as MUTANTS

# One register run costs about as much as 40 write-once schedules: run 1/40 as many.
RUNS_PER_SIM_SEED = 1 / 40
MUTANT_SEEDS = 60  # a mutant must be caught within this many seeds

VARIANTS = {
    "3 nodes, 1-RTT": regsim.RegScenario(),
    "3 nodes, no 1-RTT": regsim.RegScenario(one_rtt=False),
    "5 nodes, 4 clients, 1 key": regsim.RegScenario(nodes=5, clients=4, keys=("r0",)),
    # Reads ask a quorum first (the watchers' reads), the others when it disagrees or is slow.
    "reads ask a quorum first": regsim.RegScenario(
        options=struct_replace(regsim.RegScenario().options, read_quorum_first=True)),
    # Clients that give up early: many operations end with their outcome unknown.
    "impatient clients": regsim.RegScenario(
        options=RegisterOptions(round_timeout_s=0.05, timeout_s=0.4, max_rounds=4,
                                backoff_s=0.01, backoff_max_s=0.1), check_liveness=False),
}


def history(run: regsim.RegRun) -> list[Op]:
    return [Op(**asdict(e)) for e in run.history]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_register_histories_are_linearizable(variant: str, sim_seeds: int) -> None:
    sc = VARIANTS[variant]
    runs = max(30, int(sim_seeds * RUNS_PER_SIM_SEED))
    ops = fast = unknown = 0
    for seed in range(runs):
        r = regsim.run(seed, sc)
        assert not r.violations, f"seed {seed}: {r.violations}"
        ok, why = check(history(r))
        assert ok, f"seed {seed} ({variant}): {why}"
        ops += len(r.history)
        fast += r.fast
        unknown += sum(1 for e in r.history if e.ret is None)
    # The runs exercise what they claim to: many operations, some with unknown outcome
    # (faults), and the 1-RTT path exactly when it is on.
    assert ops >= 50 * runs
    if not sc.check_liveness:
        assert unknown > 0
    # (A fair share hands a contended register from client to client, and each handover
    # is a full round: about a fifth of the operations stay on the 1-RTT path here.)
    assert (fast > ops // 8) if sc.one_rtt else fast == 0


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_the_checker_catches_every_mutant(mutant: str) -> None:
    sc = replace(regsim.RegScenario(), **MUTANTS[mutant].variant)
    for seed in range(MUTANT_SEEDS):
        ok, why = check(history(regsim.run(seed, sc)))
        if not ok:
            assert MUTANTS[mutant].caught_by in why
            return
    pytest.fail(f"mutant {mutant} not caught in {MUTANT_SEEDS} seeds")


def test_a_run_is_deterministic() -> None:
    a, b = regsim.run(11), regsim.run(11)
    assert a.history == b.history and a.messages == b.messages


def test_the_simulator_sees_an_acceptor_accept_below_its_promise() -> None:
    sc = replace(regsim.RegScenario(), **MUTANTS["accept-below-promise"].variant)
    assert any(regsim.run(seed, sc).violations for seed in range(20))
