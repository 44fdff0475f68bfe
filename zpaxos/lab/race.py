"""A contended run that really contends: several proposer processes race on the same
fresh keys at the same moment.

Each of ``proposers`` processes (its own Client, its own proposer id) proposes its own
value for every one of ``keys`` fresh keys, in the same order, with ``concurrency`` in
flight, all released together by a barrier. Every key is therefore fought over from the
start: Prepares cross, ballots get Nacked, proposers back off and retry, and the rounds
histogram shows it. (Proposals on keys decided *earlier* are no contest: the first
Prepare is answered with the decision, so they finish in one round.)

It also checks agreement: every proposer must report the same chosen value per key.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zpaxos.lab.launcher import join_all
from zpaxos.lab.progress import Progress

START_TIMEOUT_S = 60.0


@dataclass
class RaceRun:
    name: str
    proposers: int
    keys: int
    concurrency: int
    seconds: float
    decided: int  # keys every proposer saw chosen
    decisions_per_s: float
    p50_ms: float
    p90_ms: float
    mean_rounds: float
    rounds: dict[int, int]  # rounds taken -> proposals
    won: dict[str, int]  # proposer -> keys chosen with its own value


def _proposer(config: str, index: int, keys: list[str], concurrency: int,
              barrier: Any, out: Any, fast: bool) -> None:
    from zpaxos.runtime.client import Client, options_from
    from zpaxos.runtime.config import load_config
    from zpaxos.runtime.log import null_log

    cluster = load_config(config)
    items = [(k, f"p{index}-{k}".encode()) for k in keys]
    opts = options_from(cluster.proposer, timeout_s=60.0, max_rounds=1000)
    results = []
    with Client(cluster, null_log(f"race{index}"), fast=fast) as client:
        barrier.wait(START_TIMEOUT_S)
        t0 = time.perf_counter()
        for i, o, seconds in client.stream(items, concurrency, opts):
            results.append((keys[i], o.chosen, o.rounds, seconds))
        elapsed = time.perf_counter() - t0
    out.put((index, elapsed, results))


def race(config: Path, prefix: str, proposers: int, keys: int, concurrency: int,
         progress: bool = True, fast: bool = False) -> RaceRun:
    """``fast``: the proposers may skip phase 1 through range promises (they then race
    for the range itself)."""
    names = [f"{prefix}{i}" for i in range(keys)]
    ctx = mp.get_context("spawn")  # a clean interpreter each: no inherited ZeroMQ state
    barrier = ctx.Barrier(proposers)
    out = ctx.Queue()
    procs = [ctx.Process(target=_proposer, args=(str(config), i, names, concurrency,
                                                  barrier, out, fast), daemon=True)
             for i in range(proposers)]
    for p in procs:
        p.start()
    got: dict[int, tuple[float, list[Any]]] = {}
    try:
        with Progress(f"race ({proposers} proposers)", proposers, force=False) as bar:
            if not progress:
                bar.on = False
            while len(got) < proposers:
                index, elapsed, results = out.get(timeout=600)
                got[index] = (elapsed, results)
                bar.step()
    finally:
        join_all(procs, 10.0)
    chosen: dict[str, set[bytes | None]] = {}
    rounds: Counter[int] = Counter()
    lat: list[float] = []
    won: Counter[str] = Counter()
    for index, (_, results) in got.items():
        for key, value, r, seconds in results:
            chosen.setdefault(key, set()).add(value)
            rounds[r] += 1
            lat.append(seconds * 1000)
            if value == f"p{index}-{key}".encode():
                won[f"proposer {index}"] += 1
    split = [k for k, v in chosen.items() if len(v) != 1]
    if split:  # never: two values chosen for one key would be a safety violation
        raise RuntimeError(f"proposers disagree on what was chosen for {split[0]}")
    decided = sum(1 for v in chosen.values() if None not in v)
    seconds = max(e for e, _ in got.values())
    lat.sort()
    total = sum(rounds.values())
    return RaceRun(f"race: {proposers} proposers on the same fresh keys", proposers, keys,
                   concurrency, round(seconds, 3), decided, round(decided / seconds, 1),
                   round(statistics.median(lat), 2), round(lat[int(0.9 * (len(lat) - 1))], 2),
                   round(sum(r * n for r, n in rounds.items()) / total, 2),
                   dict(sorted(rounds.items())), dict(sorted(won.items())))


def as_dict(r: RaceRun) -> dict[str, Any]:
    return asdict(r)


def histogram(rounds: dict[int, int], width: int = 40) -> list[str]:
    """``rounds -> proposals`` as text bars."""
    if not rounds:
        return []
    top = max(rounds.values())
    total = sum(rounds.values())
    lines = []
    for r, n in sorted(rounds.items()):
        bar = "#" * max(1, round(n / top * width))
        lines.append(f"  {r:>3} round{'s' if r != 1 else ' '}  {bar:<{width}}  {n} "
                     f"({100 * n / total:.0f}%)")
    return lines
