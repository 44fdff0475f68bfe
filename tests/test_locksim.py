"""Locks under the seeded lock simulator: the lease rules keep one holder at a time and
tokens growing; each broken variant of them is caught.

The simulator (zpaxos/sim/locksim.py) drives the rules of zpaxos/protocol/lease.py with
clocks at the edges of the drift bound, holders paused past their TTL (just after they
wrote), crashes, lost and delayed messages and register outages, and a fenced resource.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from zpaxos.sim import locksim
from zpaxos.sim.mutants import LOCK_MUTANTS as MUTANTS

MUTANT_SEEDS = 300  # a mutant must be caught within this many seeds
# The first seed that catches each variant, recorded (the runs are deterministic: a
# change here means the simulator or the rules changed; look, then update it).
FIRST_CAUGHT = {
    "lock-waiter-trusts-holders-clock": 0,
    "lock-renews-without-margin": 6,
    "lock-token-reused": 0,
    "lock-handover-lease-from-release": 0,
}


def test_the_lease_rules_keep_one_holder_and_growing_tokens(sim_seeds: int) -> None:
    runs = max(200, sim_seeds // 10)
    leases = takeovers = paused = refused = handovers = 0
    ttls = set()
    for seed in range(runs):
        r = locksim.run(seed)
        assert not r.violations, (f"seed {seed}: {r.violations[0]}\n  replay: python -m "
                                  f"zpaxos.sim.locksim --seed {seed}")
        leases += len(r.episodes)
        takeovers += r.takeovers
        handovers += r.handovers
        paused += r.paused_holders
        refused += r.stale_refused
        ttls.add(r.ttl)
    # The runs exercise what they claim to: many hand-overs (of them, many named by the
    # release, the named waiter holding once its own renewal succeeded), leases taken over
    # from holders paused past their TTL, paused holders' stale writes refused by their
    # token, and every TTL (the long ones are where clock drift shows).
    assert leases >= 10 * runs and handovers >= 3 * runs
    assert takeovers >= runs and paused >= runs
    assert refused > runs // 2
    assert ttls == set(locksim.LockScenario().ttls)


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_the_lock_simulator_catches_every_mutant(mutant: str) -> None:
    sc = replace(locksim.LockScenario(), **MUTANTS[mutant].variant)
    for seed in range(MUTANT_SEEDS):
        r = locksim.run(seed, sc)
        if r.violations:
            assert MUTANTS[mutant].caught_by in r.violations[0]
            assert seed == FIRST_CAUGHT[mutant], f"{mutant} now first caught by seed {seed}"
            return
    pytest.fail(f"mutant {mutant} not caught in {MUTANT_SEEDS} seeds")


def test_a_run_is_deterministic() -> None:
    a, b = locksim.run(11), locksim.run(11)
    assert a.episodes == b.episodes and a.writes == b.writes


def test_the_invariants_see_two_holders_and_a_shared_token() -> None:
    # The checks themselves, on a run doctored by hand: overlapping leases; one token
    # written by two holders.
    sim = locksim._Sim(0, locksim.LockScenario())
    sim.out.episodes += [locksim.Episode("a", 1, 0.0, 2.0), locksim.Episode("b", 2, 1.0, 3.0)]
    sim._check_episodes()
    sim._write("a", 5)
    sim._write("b", 5)
    sim._write("a", 4)
    assert [v.split(" ", 1)[1] for v in sim.out.violations] == [
        "two holders believe they hold the lock: a (token 1, until t=2.0000) and b (token 2)",
        "the resource accepted token 5 from two holders: a and b"]
    assert [w.accepted for w in sim.out.writes] == [True, True, False]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from zpaxos.cli.app import main
    with pytest.raises(SystemExit) as e:
        main(["sim", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(e.value.code or 0), out, err


def test_zpaxos_sim_breaks_a_lock_rule_and_replays_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--break", "lock-renews-without-margin")
    assert code == 0
    assert "two holders believe they hold the lock" in out
    assert out.splitlines()[-1] == ("replay: zpaxos sim --lock --seed 6 --break "
                                    "lock-renews-without-margin")
    code, again, _ = run_cli(capsys, "--lock", "--seed", "6", "--break",
                             "lock-renews-without-margin")
    assert code == 0 and again == out


def test_zpaxos_sim_lock_runs_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--lock", "--seeds", "10")
    assert (code, err) == (0, "")
    assert out == ("10 lock runs: at most one holder at a time, tokens grew, no stale write"
                   " accepted\n")
