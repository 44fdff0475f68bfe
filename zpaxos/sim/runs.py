"""Running many seeds of the write-once simulator, on one process or several."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from collections.abc import Iterable
from typing import Any

from zpaxos.sim.ghost import InvariantViolation
from zpaxos.sim.scenario import generate
from zpaxos.sim.simulator import SimResult, Simulation


def run_schedule(seed: int, trace: bool = False, **variant: Any) -> SimResult:
    """Generate and run the schedule of ``seed``; raise InvariantViolation on a failure.

    A failure found without a trace is re-run with one (the run is deterministic), so the
    error always carries the trace. ``variant``: see :class:`Simulation`.
    """
    try:
        return Simulation(generate(seed), trace=trace, **variant).run()
    except InvariantViolation:
        if trace:
            raise
    return Simulation(generate(seed), trace=True, **variant).run()  # raises again, traced


COVERED = ("crashes", "crash_in_step", "stayed_down", "dropped", "duplicated", "adopted",
           "retry", "gave_up", "chosen", "batched", "forged_sync", "status_checked", "learned",
           "forged_decide", "wire_batch", "lazy_commit", "range_promised", "fast_vote",
           "columns")


def check_seeds(seeds: Iterable[int], stop_at_first: bool = True,
                **variant: Any) -> tuple[list[InvariantViolation], Counter[str]]:
    """Run every seed; return the violations found and counters of what the runs covered."""
    failures: list[InvariantViolation] = []
    cover: Counter[str] = Counter()
    for seed in seeds:
        try:
            r = run_schedule(seed, **variant)
        except InvariantViolation as e:
            failures.append(e)
            if stop_at_first:
                break
            continue
        sc = r.scenario
        cover["schedules"] += 1
        cover[f"N={sc.n_acceptors}"] += 1
        cover["multi_key"] += len({p.key for p in sc.proposers}) > 1
        cover["shared_process"] += len({p.proc for p in sc.proposers}) < len(sc.proposers)
        cover["must_choose"] += sc.must_choose
        for name in COVERED:
            cover[f"with_{name}"] += r.stats[name] > 0
    return failures, cover


def _check_chunk(job: tuple[range, dict[str, Any]]) -> tuple[list[str], Counter[str]]:
    failures, cover = check_seeds(job[0], **job[1])
    return [str(e) for e in failures], cover  # strings: cheap to send between processes


def check_seeds_parallel(seeds: range, workers: int = 2, chunks: int = 16,
                         **variant: Any) -> tuple[list[str], Counter[str]]:
    """check_seeds on ``workers`` processes (forkserver: safe even if other tests left
    threads running); returns failure texts and coverage counts."""
    size = max(1, -(-len(seeds) // chunks))
    jobs = [(seeds[i:i + size], variant) for i in range(0, len(seeds), size)]
    if workers <= 1:
        results = [_check_chunk(job) for job in jobs]
    else:
        with multiprocessing.get_context("forkserver").Pool(workers) as pool:
            results = pool.map(_check_chunk, jobs, chunksize=1)
    failures: list[str] = []
    cover: Counter[str] = Counter()
    for f, c in results:
        failures += f
        cover += c
    return failures, cover
