"""Where the CPU goes per decision: a temporary 3-node cluster with every node under
cProfile, one client process (this one, profiled too) running independent proposals.

    .venv/bin/python bench/profile_run.py --proposals 5000 --concurrency 64 [--top 15]
    .venv/bin/python bench/profile_run.py --calls --proposals 2000   # one Client.propose each
    .venv/bin/python bench/profile_run.py --no-profile --concurrency 256 \
        --proposals 20000 --catch-up-s 0 --settle-s 1.5

``--metrics``: every node serves its Prometheus metrics and is scraped once a second
(15 times Prometheus's default rate), and the client counts into a ClientMetrics; the
cost of metrics is this figure with and without it (bench/metrics_cost.py).

Prints decisions/s, CPU microseconds per decision for each process (user + system, from
the kernel's accounting) and each process's top functions by own time. Profiling slows
everything down (roughly 1.5-2x), so read the shares, not the absolute rate; the rate
without a profiler is `zpaxos bench`'s.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from zpaxos.lab.launcher import child_env, free_ports, write_config
from zpaxos.runtime.client import Client, options_from
from zpaxos.runtime.config import load_config
from zpaxos.runtime.log import null_log

NODE = ("import cProfile, sys; sys.argv = ['zpaxos', 'node', {i}, '--config', {cfg}, '-q']; "
        "from zpaxos.cli import main; cProfile.run('main()', {out})")


def cpu_s(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--proposals", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--no-profile", action="store_true", help="only the CPU accounting")
    ap.add_argument("--calls", action="store_true",
                    help="one Client.propose call per decision (the sequential path of "
                         "bench/compare.py), instead of one stream")
    ap.add_argument("--metrics", action="store_true",
                    help="nodes serve metrics, scraped every second; the client counts too")
    ap.add_argument("--catch-up-s", type=float, default=None,
                    help="the nodes' [node] catch_up_s (0: off; default: the default)")
    ap.add_argument("--settle-s", type=float, default=0.0,
                    help="wait this long after the last decision before reading the nodes' "
                         "CPU (work a node does later, such as catching up, is counted)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="zpaxos-prof-") as tmp:
        work = Path(tmp)
        ports = free_ports(6)
        cfg = write_config(work / "cluster.ini", [("127.0.0.1", p) for p in ports[:3]],
                           log_level="WARNING", value_files="",
                           metrics_ports=ports[3:] if a.metrics else ())
        if a.catch_up_s is not None:  # A/B of catching up (docs/catching-up.md)
            cfg.write_text(cfg.read_text() + f"\n[node]\ncatch_up_s = {a.catch_up_s:g}\n")
        procs = []
        for i in range(3):
            out = work / f"node{i}.prof"
            cmd = ([sys.executable, "-m", "zpaxos", "node", str(i), "--config", str(cfg), "-q"]
                   if a.no_profile else
                   [sys.executable, "-c", NODE.format(i=repr(str(i)), cfg=repr(str(cfg)),
                                                      out=repr(str(out)))])
            p = subprocess.Popen(cmd, cwd=work, env=child_env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            procs.append(p)
            assert p.stdout is not None
            line = p.stdout.readline()
            if "listening" not in line:
                err = p.stderr.read() if p.stderr else ""
                raise SystemExit(f"node{i} did not start: {line}{err}")
        try:
            cluster = load_config(cfg)
            items = [(f"prof-{i}", b"v" * 16) for i in range(a.proposals)]
            opts = options_from(cluster.proposer, timeout_s=60.0, max_rounds=1000)
            metrics = scraper = None
            done = threading.Event()
            if a.metrics:
                from zpaxos.runtime.metrics import ClientMetrics

                metrics = ClientMetrics()
                scraper = threading.Thread(target=scrape, args=(ports[3:], done), daemon=True)
            before = [cpu_s(p.pid) for p in procs]
            me0 = resource.getrusage(resource.RUSAGE_SELF)
            prof = cProfile.Profile()
            if scraper is not None:
                scraper.start()
            with Client(cluster, null_log("prof"), metrics=metrics) as client:
                t0 = time.perf_counter()
                if not a.no_profile:
                    prof.enable()
                if a.calls:
                    n = sum(client.propose(v, k, opts).chosen is not None for k, v in items)
                else:
                    n = sum(o.chosen is not None
                            for _, o, _ in client.stream(items, a.concurrency, opts))
                prof.disable()
                elapsed = time.perf_counter() - t0
            me1 = resource.getrusage(resource.RUSAGE_SELF)
            time.sleep(a.settle_s)
            after = [cpu_s(p.pid) for p in procs]
            done.set()
            if scraper is not None:
                scraper.join()
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(30)
        how = "one call each" if a.calls else f"{a.concurrency} in flight"
        print(f"{n} decisions in {elapsed:.2f} s: {n / elapsed:.0f}/s "
              f"({how}{'' if a.no_profile else ', profiled'}"
              f"{', metrics on' if a.metrics else ''})")
        rows = [("client", me1.ru_utime - me0.ru_utime, me1.ru_stime - me0.ru_stime)]
        rows += [(f"node{i}", c[0] - b[0], c[1] - b[1])
                 for i, (b, c) in enumerate(zip(before, after, strict=True))]
        rows.append(("all", sum(r[1] for r in rows), sum(r[2] for r in rows)))
        print("  CPU us per decision (user + system = total):")
        for name, user, system in rows:
            print(f"  {name:<7} {user / n * 1e6:6.0f} + {system / n * 1e6:6.0f} = "
                  f"{(user + system) / n * 1e6:6.0f}")
        if a.no_profile:
            return
        for name, stats in [("client", pstats.Stats(prof)),
                            ("node0", pstats.Stats(str(work / "node0.prof")))]:
            buf = io.StringIO()
            stats.stream = buf  # type: ignore[attr-defined]
            stats.sort_stats("tottime").print_stats(a.top)
            body = buf.getvalue()
            print(f"\n== {name}: top {a.top} by own time\n"
                  + body[body.index("ncalls"):].rstrip())


def scrape(ports: list[int], done: threading.Event) -> None:
    """Scrape every node's metrics once a second until ``done`` (its CPU is the client's)."""
    while not done.wait(1.0):
        for port in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                r.read()


if __name__ == "__main__":
    main()
