"""What ``zpaxos sim`` reports: many schedules summed up, or one schedule told."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from zpaxos.sim.schedules import scenario
from zpaxos.sim.simulator import InvariantViolation, fv
from zpaxos.sim.tape import TapedSimulation, summary

INVARIANTS = (
    "a ballot carries one value",
    "at most one value is chosen per key",
    "a chosen value was proposed",
    "every decision reported is the chosen value",
    "no node votes below a promise it sent",
    "no node has accepted above its promise",
    "after the faults, every proposal ends with the chosen value (liveness)",
)


def check_many(seeds: Iterable[int], nodes: int, proposers: int,
               faults: frozenset[str]) -> tuple[str, int]:
    """Run every seed with the rules intact; the report, and how many failed."""
    seeds = list(seeds)
    total: Counter[str] = Counter()
    rounds: list[int] = []
    failures: list[str] = []
    for seed in seeds:
        sim = TapedSimulation(scenario(seed, nodes, proposers, faults), one_process_each=True)
        try:
            r = sim.run()
        except InvariantViolation as e:
            failures.append(f"seed {seed}: {e.what}  (replay: zpaxos sim --seed {seed}"
                            f" --nodes {nodes} --proposers {proposers} --faults"
                            f" {','.join(sorted(faults)) or 'none'} --out seed{seed}.svg)")
            continue
        total += Counter(summary(sim))
        total["passes"] += sim.stats["passes"]
        total["decided_keys"] += len(r.chosen)
        for o in r.outcomes.values():
            rounds.append(o.rounds)
            total["proposals"] += 1
            total["own"] += o.own
            total["chosen"] += o.chosen is not None
    ok = len(seeds) - len(failures)
    shape = (f"{nodes} nodes, {proposers} proposer{'s' if proposers != 1 else ''}, faults:"
             f" {', '.join(sorted(faults)) or 'none'}")
    lines = [f"{len(seeds)} schedules ({shape}), seeds {seeds[0]}..{seeds[-1]}:"
             f" {ok} safe, {len(failures)} broke an invariant"]
    if ok:
        lines += [
            f"decisions: {total['decided_keys']} keys decided; {total['chosen']} of"
            f" {total['proposals']} proposals ended with the chosen value ({total['own']} their"
            f" own, {total['chosen'] - total['own']} another's)",
            f"rounds per proposal: mean {sum(rounds) / max(len(rounds), 1):.2f}, max"
            f" {max(rounds, default=0)}",
            f"messages: {total['sent']} sent, {total['delivered']} delivered (duplicates"
            f" counted once), {total['sent'] - total['delivered']} lost; crashes:"
            f" {total['crashes']}",
            f"invariants checked after each of {total['steps'] + total['passes']} steps"
            f" ({total['steps']} deliveries, {total['passes']} node passes):",
            *(f"  - {i}" for i in INVARIANTS),
        ]
    lines += failures[:20]
    return "\n".join(lines), len(failures)


def run_one(seed: int, nodes: int, proposers: int,
            faults: frozenset[str]) -> tuple[str, str, bool]:
    """One schedule: what happened (text), its JSON log, and whether it was safe."""
    sc = scenario(seed, nodes, proposers, faults)
    sim = TapedSimulation(sc, log=True, strict=False, one_process_each=True)
    r = sim.run()
    lines = [f"seed {seed}: {sc.describe()}"]
    for name, o in r.outcomes.items():
        lines.append(f"  {name} at t={r.finished_at[name] * 1000:.1f} ms: chosen={fv(o.chosen)}"
                     f" own={o.own} rounds={o.rounds}")
    s = summary(sim)
    lines.append(f"  {s['sent']} messages sent, {s['delivered']} delivered, {s['crashes']}"
                 f" crashes; invariants checked after each of {s['steps'] + sim.stats['passes']}"
                 f" steps")
    for _, what in sim.violations:
        lines.append(f"  VIOLATION: {what}")
    lines.append(f"seed {seed}: {'ok' if not sim.violations else 'BROKEN'}")
    return "\n".join(lines), sim.log_text(), not sim.violations
