"""What metrics cost: CPU per decision with metrics on and off, measured A/B, interleaved.

    .venv/bin/python bench/metrics_cost.py --pairs 4 --proposals 5000 --concurrency 64

Runs ``bench/profile_run.py --no-profile`` (a temporary 3-node cluster and one client,
CPU from the kernel's accounting) ``--pairs`` times without and with ``--metrics``
(nodes serve metrics and are scraped every second; the client counts into a
ClientMetrics), alternating so that drift in the machine's load hits both alike, and
prints each run's CPU microseconds per decision (all processes) and the median of each
side. The figure for docs/operating.md comes from here.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALL = re.compile(r"^\s*all\s+\d+ \+\s+\d+ =\s+(\d+)\s*$", re.M)
CLIENT = re.compile(r"^\s*client\s+\d+ \+\s+\d+ =\s+(\d+)\s*$", re.M)


def one_run(metrics: bool, proposals: int, concurrency: int) -> tuple[int, int]:
    """CPU us per decision of one run: (every process, the client alone)."""
    cmd = [sys.executable, str(HERE / "profile_run.py"), "--no-profile",
           "--proposals", str(proposals), "--concurrency", str(concurrency)]
    out = subprocess.run(cmd + (["--metrics"] if metrics else []), capture_output=True,
                         text=True, check=True, timeout=600).stdout
    total, client = ALL.search(out), CLIENT.search(out)
    if total is None or client is None:
        raise SystemExit(f"unexpected output from profile_run.py:\n{out}")
    return int(total.group(1)), int(client.group(1))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--proposals", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=64)
    a = ap.parse_args(argv)
    runs: dict[bool, list[tuple[int, int]]] = {False: [], True: []}
    for i in range(a.pairs):
        for metrics in ((False, True) if i % 2 == 0 else (True, False)):
            r = one_run(metrics, a.proposals, a.concurrency)
            runs[metrics].append(r)
            print(f"pair {i + 1}: metrics {'on ' if metrics else 'off'}: {r[0]} us per "
                  f"decision (client {r[1]})", flush=True)
    print(f"median CPU us per decision ({a.pairs} pairs, {a.proposals} proposals, "
          f"{a.concurrency} in flight):")
    for what, part in (("all processes", lambda t, c: t), ("the 3 nodes", lambda t, c: t - c),
                       ("the client", lambda t, c: c)):
        off = statistics.median(part(*r) for r in runs[False])
        on = statistics.median(part(*r) for r in runs[True])
        # (a run too short for the kernel's 10 ms ticks can count 0: no ratio then)
        change = f"{(on - off) / off * 100:+.1f}%" if off else "n/a (too short to measure)"
        print(f"  {what:<13} off {off:5.1f}, on {on:5.1f}: {change}")


if __name__ == "__main__":
    main()
