"""The register bench's fairness case: do clients contending on a few registers all progress?

Five client processes (each its own :class:`~zpaxos.runtime.client.Client`, sockets and
interpreter) run get, set and cas on four shared registers, one operation at a time, with
no think time, for 30 s, with the cluster's own pacing options (``[proposer]``: its
deadline, rounds and backoff, as a user's client has). Each client picks the register and
the operation at random; a cas expects the version the client last saw there.

What it reports is the spread, not only the total: each client's rate of completed
operations (ok, or a cas whose comparison failed: both are answers), the min / median /
max of those rates, Jain's fairness index ``(sum x)^2 / (n * sum x^2)`` (1: all equal;
1/n: one client does everything) and the operations that failed (no quorum, unknown).
The target (issue 23): the slowest client at least 1/5 of the median.
"""

from __future__ import annotations

import multiprocessing
import random
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from zpaxos.protocol.register import CAS, CAS_FAILED, GET, OK, SET, RegOp
from zpaxos.runtime.client import Client
from zpaxos.runtime.config import ClusterConfig
from zpaxos.runtime.log import null_log

FAIR_CLIENTS = 5
FAIR_REGISTERS = 4
FAIR_SECONDS = 30.0


@dataclass
class FairRun:
    clients: int
    registers: int
    one_rtt: bool
    seconds: float
    ops: list[int]  # completed operations per client
    failed: list[int]  # operations that ended without an answer, per client
    rates: list[float]  # ops/s per client
    min_rate: float
    median_rate: float
    max_rate: float
    jain: float
    total_ops_per_s: float
    mean_rounds: float  # rounds per completed operation
    fast_pct: float  # completed on the 1-RTT path


def jain_index(xs: list[float]) -> float:
    """Jain's fairness index: 1 when all are equal, 1/n when one has everything."""
    total = sum(xs)
    squares = sum(x * x for x in xs)
    return 1.0 if squares == 0 else total * total / (len(xs) * squares)


def _client(cluster: ClusterConfig, names: list[str], seconds: float, one_rtt: bool,
            seed: int, start: Any, queue: Any) -> None:
    done = failed = rounds = fast = 0
    try:
        rng = random.Random(seed)
        with Client(cluster, null_log("rfair")) as c:
            opts = c.register_options(one_rtt=one_rtt)
            seen = dict.fromkeys(names, 0)
            start.wait()
            stop_at = time.monotonic() + seconds
            while time.monotonic() < stop_at:
                key = rng.choice(names)
                kind = rng.choice((GET, SET, CAS))
                value = b"w%d" % done
                op = (RegOp(GET) if kind == GET else RegOp(SET, value) if kind == SET
                      else RegOp(CAS, value, expect_version=seen[key]))
                r = c.registers([(key, op)], opts)[0]
                if r.status in (OK, CAS_FAILED):
                    done += 1
                    rounds += r.rounds
                    fast += r.fast
                    seen[key] = r.version
                else:
                    failed += 1
    finally:
        queue.put((done, failed, rounds, fast))


def measure_fairness(cluster: ClusterConfig, prefix: str, one_rtt: bool = True,
                     clients: int = FAIR_CLIENTS, registers: int = FAIR_REGISTERS,
                     seconds: float = FAIR_SECONDS) -> FairRun:
    from zpaxos.lab.launcher import join_all

    names = [f"{prefix}fair-{int(one_rtt)}-{i}" for i in range(registers)]
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(clients + 1)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(cluster, names, seconds, one_rtt, 1000 + i,
                                               start, queue), daemon=True)
             for i in range(clients)]
    for p in procs:
        p.start()
    try:
        start.wait(timeout=60)
        got = [queue.get(timeout=seconds + 120) for _ in procs]
    finally:
        join_all(procs)
    ops = [g[0] for g in got]
    n = max(1, sum(ops))
    rates = sorted(round(d / seconds, 1) for d in ops)
    return FairRun(clients, registers, one_rtt, seconds, ops, [g[1] for g in got], rates,
                   rates[0], round(statistics.median(rates), 1), rates[-1],
                   round(jain_index(rates), 3), round(sum(ops) / seconds, 1),
                   round(sum(g[2] for g in got) / n, 2),
                   round(100 * sum(g[3] for g in got) / n, 1))


def report_fairness(runs: list[dict[str, Any]]) -> list[str]:
    head = ("FAIRNESS", "1-RTT", "CLIENTS", "KEYS", "SECONDS", "MIN OPS/S", "MEDIAN", "MAX",
            "JAIN", "TOTAL OPS/S", "FAILED", "ROUNDS", "FAST %")
    rows = [("5 clients", "on" if r["one_rtt"] else "off", str(r["clients"]),
             str(r["registers"]), f"{r['seconds']:g}", f"{r['min_rate']:.1f}",
             f"{r['median_rate']:.1f}", f"{r['max_rate']:.1f}", f"{r['jain']:.3f}",
             f"{r['total_ops_per_s']:.0f}", str(sum(r["failed"])), f"{r['mean_rounds']:.2f}",
             f"{r['fast_pct']:.0f}") for r in runs]
    widths = [max(len(x[i]) for x in (head, *rows)) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in (head, *rows)]


def fairness_runs(cluster: ClusterConfig, prefix: str, seconds: float) -> list[dict[str, Any]]:
    return [asdict(measure_fairness(cluster, prefix, one_rtt, seconds=seconds))
            for one_rtt in (True, False)]


def main(argv: list[str] | None = None) -> None:
    """``python -m zpaxos.lab.regfair [SECONDS]``: the fairness case alone, on a
    temporary 3-node cluster (``zpaxos bench --registers`` runs it with the rest)."""
    import json
    import os
    import sys
    import tempfile
    from pathlib import Path

    from zpaxos.lab.launcher import LocalCluster, free_ports, write_config
    from zpaxos.runtime.config import load_config

    args = sys.argv[1:] if argv is None else argv
    seconds = float(args[0]) if args else FAIR_SECONDS
    with tempfile.TemporaryDirectory(prefix="zpaxos-rfair-") as tmp:
        path = write_config(Path(tmp) / "cluster.ini",
                            [("127.0.0.1", p) for p in free_ports(3)],
                            log_level="WARNING", value_files="")
        with LocalCluster(path, Path(tmp), range(3)) as local:
            local.start_all()
            runs = fairness_runs(load_config(path), f"rfair-{os.urandom(3).hex()}-", seconds)
    print("\n".join(report_fairness(runs)))
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
