"""``zpaxos bench --registers``: register throughput and latency on real sockets.

For each operation (set, cas, get), uncontended and contended, with the 1-RTT path on
and off:

* **uncontended**: one client, ``keys`` registers, one operation per register in flight
  (a wave of one operation on every register, then the next wave). A client that writes
  a register again skips phase 1 (1-RTT on), so this is the path the optimisation is for.
* **contended**: two clients (processes, each its own Client and sockets) on the same few
  registers, waves as above: their rounds collide, Nacks send them back to phase 1 and
  to backoff.

A cas expects the version its client last saw on that register (in the contended runs
the other client often moved it first: the cas fails, which is counted, not an error).
Registers are named ``rbench-<run id>-...``; a tombstone-free write-only benchmark leaves
them in the cluster's state, as ``zpaxos bench`` does with its keys.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zpaxos.lab import regfair
from zpaxos.lab.launcher import bench_cluster, join_all
from zpaxos.printable import printable
from zpaxos.protocol.register import CAS, GET, SET, RegOp, RegResult
from zpaxos.runtime.client import Client
from zpaxos.runtime.config import ClusterConfig, load_config
from zpaxos.runtime.log import null_log

OPS = (SET, CAS, GET)


@dataclass
class RegRun:
    op: str
    contended: bool
    one_rtt: bool
    clients: int
    keys: int
    ops: int
    seconds: float
    ops_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_rounds: float
    fast_pct: float  # finished on the 1-RTT path
    ok_pct: float  # ok (a failed cas, or no quorum, is not)


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def _client_waves(cluster: ClusterConfig, op: str, names: list[str], waves: int,
                  one_rtt: bool, value: bytes, start: Any, queue: Any) -> None:
    """One client process: ``waves`` waves of ``op`` on every register of ``names``."""
    out: list[tuple[float, RegResult]] = []
    try:
        _waves(cluster, op, names, waves, one_rtt, value, start, out)
    finally:
        queue.put(out)


def _waves(cluster: ClusterConfig, op: str, names: list[str], waves: int, one_rtt: bool,
           value: bytes, start: Any, out: list[tuple[float, RegResult]]) -> None:
    with Client(cluster, null_log("rbench")) as c:
        opts = c.register_options(one_rtt=one_rtt, timeout_s=60.0, max_rounds=1000)
        seen = {k: r.version for k, r in zip(names, c.registers(
            [(k, RegOp(GET)) for k in names], opts), strict=True)}
        start.wait()
        for w in range(waves):
            if op == SET:
                items = [(k, RegOp(SET, value + str(w).encode())) for k in names]
            elif op == CAS:
                items = [(k, RegOp(CAS, value + str(w).encode(), expect_version=seen[k]))
                         for k in names]
            else:
                items = [(k, RegOp(GET)) for k in names]
            for i, r, seconds in c.register_stream(items, len(items), opts):
                out.append((seconds * 1000, r))
                seen[items[i][0]] = r.version


def measure(cluster: ClusterConfig, op: str, contended: bool, one_rtt: bool, ops: int,
            keys: int, contended_keys: int, value_size: int, prefix: str) -> RegRun:
    clients = 2 if contended else 1
    n_keys = contended_keys if contended else keys
    names = [f"{prefix}{op}-{'c' if contended else 'u'}-{int(one_rtt)}-{i}"
             for i in range(n_keys)]
    waves = max(1, ops // (n_keys * clients))
    value = b"v" * value_size
    # Each client is its own process (its own interpreter and sockets), so two contending
    # clients really run at once.
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(clients + 1)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_client_waves, args=(
        cluster, op, names, waves, one_rtt, value, start, queue), daemon=True)
        for _ in range(clients)]
    for p in procs:
        p.start()
    try:
        start.wait(timeout=60)
        t0 = time.perf_counter()
        results = [x for _ in procs for x in queue.get(timeout=600)]
        elapsed = time.perf_counter() - t0
    finally:
        join_all(procs)
    if len(results) != waves * n_keys * clients:
        raise RuntimeError(f"register bench: a client stopped early ({len(results)} of "
                           f"{waves * n_keys * clients} operations)")
    lat = sorted(ms for ms, _ in results)
    rs = [r for _, r in results]
    n = len(rs)
    return RegRun(op, contended, one_rtt, clients, n_keys, n, round(elapsed, 3),
                  round(n / elapsed, 1), round(_pct(lat, 0.5), 2), round(_pct(lat, 0.9), 2),
                  round(_pct(lat, 0.99), 2), round(statistics.fmean(r.rounds for r in rs), 2),
                  round(100 * sum(r.fast for r in rs) / n, 1),
                  round(100 * sum(r.status == "ok" for r in rs) / n, 1))


def run_register_bench(config: str | None, ops: int, keys: int, contended_keys: int,
                       value_size: int) -> dict[str, Any]:
    prefix = f"rbench-{os.urandom(3).hex()}-"
    runs: list[RegRun] = []
    with tempfile.TemporaryDirectory(prefix="zpaxos-rbench-") as tmp:
        with bench_cluster(config, Path(tmp)) as path:
            cluster = load_config(path)
            for op in OPS:
                for contended in (False, True):
                    for one_rtt in (True, False):
                        runs.append(measure(cluster, op, contended, one_rtt, ops, keys,
                                            contended_keys, value_size, prefix))
            # The fairness case (issue 23): 5 clients, 4 registers, no think time, 30 s.
            fairness = regfair.fairness_runs(cluster, prefix, regfair.FAIR_SECONDS)
    return {"cluster": "temporary 3-node cluster on loopback" if config is None else str(path),
            "nodes": len(cluster.nodes), "value_bytes": value_size, "registers": f"{prefix}*",
            "runs": [asdict(r) for r in runs], "fairness": fairness}


def report(result: dict[str, Any]) -> str:
    lines = [f"cluster: {printable(result['cluster'])} ({result['nodes']} nodes), values of "
             f"about {result['value_bytes']} bytes; registers {result['registers']}", ""]
    head = ("OP", "RUN", "1-RTT", "CLIENTS", "KEYS", "OPS", "OPS/S", "P50 MS", "P90 MS",
            "P99 MS", "ROUNDS", "FAST %", "OK %")
    rows = [(r["op"], "contended" if r["contended"] else "uncontended",
             "on" if r["one_rtt"] else "off", str(r["clients"]), str(r["keys"]),
             str(r["ops"]), f"{r['ops_per_s']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}",
             f"{r['p99_ms']:.2f}", f"{r['mean_rounds']:.2f}", f"{r['fast_pct']:.0f}",
             f"{r['ok_pct']:.0f}") for r in result["runs"]]
    widths = [max(len(x[i]) for x in (head, *rows)) for i in range(len(head))]
    for r in (head, *rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    lines += ["", *regfair.report_fairness(result["fairness"])]
    lines += ["", "Beside PySyncObj's replicated dict: bench/compare.py --registers."]
    return "\n".join(lines)
