"""Lock latency and fairness, on loopback.

    .venv/bin/python bench/lock_fairness.py [SECONDS] [CONTENDERS]

A temporary 3-node cluster. First, uncontended: one process acquires and releases
``client.lock("solo")`` 200 times; prints the p50 / p99 of acquire and of release in ms.
Then contended: CONTENDERS (default 8) processes, each with its own Client, loop
``with client.lock("fair", ttl=5): pass`` for SECONDS (default 20) with no think time;
prints each contender's acquisitions, min / median / max, the Jain fairness index
(1.0: all equal) and hand-overs per second. The lock's queue is FIFO by arrival, so
every contender should get about the same share.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from zpaxos.client import Client, load_config
from zpaxos.lab.launcher import LocalCluster, free_ports, write_config


def _contend(config: str, until: float, start: Any, out: Any) -> None:
    n = 0
    with Client(load_config(config)) as c:
        start.wait(30)
        while time.monotonic() < until:
            with c.lock("fair", ttl=5):
                n += 1
    out.put(n)


def solo(config: Path, runs: int = 200) -> tuple[list[float], list[float]]:
    acquire, release = [], []
    with Client(load_config(config)) as c:
        for _ in range(runs):
            lock = c.lock("solo", ttl=5)
            t0 = time.perf_counter()
            lock.acquire()
            t1 = time.perf_counter()
            lock.release()
            acquire.append((t1 - t0) * 1000)
            release.append((time.perf_counter() - t1) * 1000)
    return acquire, release


def jain(xs: list[int]) -> float:
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs)) if any(xs) else 0.0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    contenders = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    with tempfile.TemporaryDirectory(prefix="zpaxos-lockb-") as tmp:
        path = write_config(Path(tmp) / "cluster.ini", [("127.0.0.1", p) for p in free_ports(3)],
                            log_level="WARNING", value_files="")
        with LocalCluster(path, Path(tmp), range(3)) as local:
            local.start_all()
            acquire, release = solo(path)
            print(f"uncontended: acquire p50 {pct(acquire, .5):.1f} ms, p99 "
                  f"{pct(acquire, .99):.1f} ms; release p50 {pct(release, .5):.1f} ms, "
                  f"p99 {pct(release, .99):.1f} ms ({len(acquire)} runs)")
            ctx = multiprocessing.get_context("fork")
            start, out = ctx.Event(), ctx.Queue()
            until = time.monotonic() + 3 + seconds  # (3 s for the processes to start)
            procs = [ctx.Process(target=_contend, args=(str(path), until, start, out))
                     for _ in range(contenders)]
            for p in procs:
                p.start()
            time.sleep(3)
            start.set()
            try:
                counts = sorted(out.get(timeout=seconds + 60) for _ in procs)
            finally:
                for p in procs:
                    p.join(10)
                    if p.is_alive():
                        p.kill()
    print(f"{contenders} contenders, {seconds:g} s: acquisitions per contender {counts}")
    print(f"min / median / max {counts[0]} / {statistics.median(counts):g} / {counts[-1]}; "
          f"Jain index {jain(counts):.3f}; {sum(counts) / seconds:.1f} hand-overs/s")


if __name__ == "__main__":
    main()
