"""The simulator with admission in every node and a node whose whole disk comes back from
an older copy (zpaxos/sim/amnesia.py): the restored node is refused before it votes and
every invariant holds; without admission the same schedules break Paxos."""

from __future__ import annotations

from zpaxos.sim.amnesia import check, main

AMNESIA_SEEDS = 300  # enough for dozens of restored nodes; the CLI runs any number


def test_restored_nodes_are_refused_and_every_invariant_holds(sim_seeds: int) -> None:
    seeds = min(sim_seeds, AMNESIA_SEEDS)
    failures, cover = check(range(seeds))
    assert not failures, str(failures[0])
    assert cover["schedules"] == seeds
    if seeds >= AMNESIA_SEEDS:
        assert cover["restored"] >= 10, dict(cover)  # the fault must really happen
    # Each restored node that came back was refused (none was refused otherwise: the
    # simulation calls that a violation); one may still be down when its run ends.
    assert cover["restored"] - 2 <= cover["refused"] <= cover["restored"]


def test_without_admission_a_restored_node_breaks_paxos() -> None:
    failures, _ = check(range(2000), admission=False)  # stops at the first
    assert failures, "a node restored from an old copy voted, and nothing noticed"
    v = failures[0]
    assert "below the promise" in v.what or "two values chosen" in v.what, str(v)
    assert f"python -m zpaxos.sim.amnesia --seed {v.seed} --no-admission" in str(v)


def test_cli_replays_a_seed(capsys) -> None:
    assert main(["--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == "seed 3: ok"
