"""Watch latency: from a change's acknowledgement to the watch reporting it, on loopback.

    .venv/bin/python bench/watch_latency.py [CHANGES [GAP_MS]]

A temporary 3-node cluster; one watcher process (Client.watch); the writer (this
process) sets the register every GAP_MS (default 20 ms: faster than a watch's confirming
reads, READ_GAP_S, so some changes are coalesced; 100: each change after a quiet moment)
to the time.monotonic() it is sent at (the clock
is the machine's, the same in both processes). The watcher reports, per state, how long
after that time it yielded it. Prints p50 / p99 / max in ms, and how many changes were
reported (the others were overwritten before the watcher read: reported as skipped).
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


def _watch(config: str, n: int, ready: Any, out: Any) -> None:
    lat: list[float] = []
    with Client(load_config(config)) as c:
        for s in c.watch("lat"):
            if s.version == 0:
                ready.set()
                continue
            lat.append((s.at - float((s.value or b"0").decode())) * 1000)
            if s.version >= n:
                break
    out.put(lat)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    gap_s = (float(sys.argv[2]) if len(sys.argv) > 2 else 20.0) / 1000
    with tempfile.TemporaryDirectory(prefix="zpaxos-wlat-") as tmp:
        path = write_config(Path(tmp) / "cluster.ini", [("127.0.0.1", p) for p in free_ports(3)],
                            log_level="WARNING", value_files="")
        with LocalCluster(path, Path(tmp), range(3)) as local:
            local.start_all()
            ctx = multiprocessing.get_context("fork")
            ready, out = ctx.Event(), ctx.Queue()
            p = ctx.Process(target=_watch, args=(str(path), n, ready, out), daemon=True)
            p.start()
            try:
                ready.wait(30)
                with Client(load_config(path)) as c:
                    for _ in range(n):
                        c.set("lat", repr(time.monotonic()))
                        time.sleep(gap_s)
                lat = sorted(out.get(timeout=60))
            finally:
                p.join(5)
                if p.is_alive():
                    p.kill()
    q = statistics.quantiles(lat, n=100)
    print(f"watch latency over {len(lat)} reported changes of {n}, {gap_s * 1000:g} ms apart: "
          f"p50 {q[49]:.1f} ms, "
          f"p99 {q[98]:.1f} ms, max {lat[-1]:.1f} ms")


if __name__ == "__main__":
    main()
