"""``zpaxos bench --locks``: lock acquire and release latency, uncontended and contended.

Each lock user is a process of its own, with its own Client; a cycle is ``acquire()``
then ``release()`` at once (no think time), on a lock of TTL 10 s:

* uncontended: one process, N cycles one after another: acquire and release p50 / p99;
* contended: C processes (8 unless told) on one lock for S seconds: how long an acquire
  waits (p50 / p99), release p50 / p99, hand-overs per second, and the fewest and most
  cycles a process got (fairness: the queue is FIFO).

Without ``--config`` on a temporary 3-node cluster on loopback. The same cases beside
PySyncObj's ``ReplLockManager``, in one run: ``bench/locks.py``.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from zpaxos.lab.launcher import bench_cluster
from zpaxos.printable import printable
from zpaxos.runtime.config import load_config

__all__ = ["run_lock_bench", "report"]

TTL_S = 10.0
START_S = 2.0  # the contenders connect during this, then start together
RESULT_TIMEOUT_S = 120.0  # a contender that reports nothing this long after its end fails


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def _user(config: str, lock: str, cycles: int, until: float, start: Any, out: Any) -> None:
    """One lock user: ``cycles`` cycles (0: until ``until``); puts its latencies in ms."""
    from zpaxos.runtime.client import Client
    from zpaxos.runtime.log import null_log

    acquire: list[float] = []
    release: list[float] = []
    try:
        with Client(load_config(config), null_log("lockbench")) as c:
            c.get(lock)  # connected before the clock starts
            start.wait()
            while len(acquire) < cycles if cycles else time.monotonic() < until:
                held = c.lock(lock, ttl=TTL_S)
                t0 = time.perf_counter()
                held.acquire()
                t1 = time.perf_counter()
                held.release()
                acquire.append((t1 - t0) * 1000)
                release.append((time.perf_counter() - t1) * 1000)
    finally:
        out.put((acquire, release))


def _run(config: str, lock: str, users: int, cycles: int, seconds: float,
         ) -> list[tuple[list[float], list[float]]]:
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    until = time.monotonic() + START_S + seconds
    procs = [ctx.Process(target=_user, args=(config, lock, cycles, until, start, out),
                         daemon=True) for _ in range(users)]
    for p in procs:
        p.start()
    try:
        time.sleep(START_S)
        start.set()
        return [out.get(timeout=seconds + RESULT_TIMEOUT_S) for _ in procs]
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()


def _figures(got: list[tuple[list[float], list[float]]], seconds: float | None,
             ) -> dict[str, Any]:
    acquire = [x for a, _ in got for x in a]
    release = [x for _, r in got for x in r]
    counts = sorted(len(a) for a, _ in got)
    if not acquire:
        raise RuntimeError("no lock was acquired")
    f: dict[str, Any] = {
        "processes": len(got), "cycles": len(acquire),
        "acquire_p50_ms": round(pct(acquire, .5), 2), "acquire_p99_ms": round(pct(acquire, .99), 2),
        "release_p50_ms": round(pct(release, .5), 2), "release_p99_ms": round(pct(release, .99), 2),
        "cycles_min": counts[0], "cycles_median": statistics.median(counts),
        "cycles_max": counts[-1]}
    if seconds:
        f["seconds"] = seconds
        f["handovers_per_s"] = round(len(acquire) / seconds, 1)
    return f


def run_lock_bench(config: str | None, cycles: int, contenders: int, seconds: float,
                   ) -> dict[str, Any]:
    lock = f"lbench-{os.urandom(3).hex()}"
    with tempfile.TemporaryDirectory(prefix="zpaxos-lbench-") as tmp:
        with bench_cluster(config, Path(tmp)) as path:
            nodes = len(load_config(path).nodes)
            solo = _figures(_run(str(path), lock + "-solo", 1, cycles, 0.0), None)
            contended = _figures(_run(str(path), lock + "-contended", contenders, 0, seconds),
                                 seconds)
    return {"cluster": "temporary 3-node cluster on loopback" if config is None else str(path),
            "nodes": nodes, "ttl_s": TTL_S, "locks": f"{lock}-*",
            "uncontended": solo, "contended": contended}


def report(r: dict[str, Any]) -> str:
    u, c = r["uncontended"], r["contended"]
    rows = [("uncontended", f"1 process, {u['cycles']} cycles", u),
            ("contended", f"{c['processes']} processes, {c['seconds']:g} s", c)]
    lines = [f"cluster: {printable(r['cluster'])} ({r['nodes']} nodes); locks {r['locks']}, "
             f"TTL {r['ttl_s']:g} s; a cycle is acquire then release at once", ""]
    head = ("RUN", "USERS", "ACQUIRE P50 MS", "P99 MS", "RELEASE P50 MS", "P99 MS",
            "HAND-OVERS/S", "CYCLES PER PROCESS (MIN-MAX)")
    table = [head] + [(name, who, f"{f['acquire_p50_ms']:.2f}", f"{f['acquire_p99_ms']:.2f}",
                       f"{f['release_p50_ms']:.2f}", f"{f['release_p99_ms']:.2f}",
                       f"{f['handovers_per_s']:.1f}" if "handovers_per_s" in f else "-",
                       f"{f['cycles_min']}-{f['cycles_max']}") for name, who, f in rows]
    widths = [max(len(x[i]) for x in table) for i in range(len(head))]
    for row in table:
        lines.append("  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())
    lines += ["", "Beside PySyncObj's ReplLockManager, in one run: bench/locks.py."]
    return "\n".join(lines)
