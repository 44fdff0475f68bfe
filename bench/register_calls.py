"""Register calls as a program writes them: sequential ``c.set(name, value)``,
``c.get(name)`` and ``c.cas(...)`` with no options argument, and what each costs.

    .venv/bin/python bench/register_calls.py [--calls 3000] [--rounds 2]

A temporary 3-node cluster (fsync on), one Client in this process. Per kind of call and
round: calls a second and their p50, the CPU this process spent per call (its Python and
ZeroMQ's I/O thread), and the CPU the three nodes spent per call. ``compare.py
--registers`` passes options built once, as a tuned program would; this measures the
plain calls of the README's examples (each of which builds its options from the
config's [proposer] section).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from watch_load import _cpu_s  # (bench/ is this script's directory, first on sys.path)

from zpaxos.client import Client, load_config
from zpaxos.lab.launcher import LocalCluster, free_ports, write_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="zpaxos-regcalls-") as tmp:
        path = write_config(Path(tmp) / "cluster.ini",
                            [("127.0.0.1", p) for p in free_ports(3)],
                            log_level="WARNING", value_files="")
        with LocalCluster(path, Path(tmp), range(3)) as local:
            local.start_all()
            nodes = [p.pid for p in local.procs.values()]
            with Client(load_config(path)) as c:
                c.set("r", b"start")
                for i in range(200):  # warm-up: connections, the 1-RTT promise
                    c.set("r", b"w%d" % i)
                print(f"3 nodes on loopback, fsync on; {a.calls} sequential calls per row")
                for rnd in range(a.rounds):
                    for kind in ("set", "get", "cas"):
                        lat = []
                        n0, me0 = _cpu_s(nodes), time.process_time()
                        t0 = time.perf_counter()
                        for i in range(a.calls):
                            t = time.perf_counter()
                            if kind == "set":
                                r = c.set("r", b"v%d" % i)
                            elif kind == "get":
                                r = c.get("r")
                            else:
                                r = c.cas("r", b"c%d" % i, expect_version=c.get("r").version
                                          if i == 0 else r.version)
                            lat.append((time.perf_counter() - t) * 1000)
                            if r.status != "ok":
                                raise SystemExit(f"a {kind} failed: {r.status} {r.reason}")
                        dt = time.perf_counter() - t0
                        me = (time.process_time() - me0) / a.calls * 1e6
                        nodes_us = (_cpu_s(nodes) - n0) / a.calls * 1e6
                        print(f"  round {rnd + 1} {kind:3}  {a.calls / dt:6.0f} calls/s  p50 "
                              f"{statistics.median(lat):5.2f} ms  this process {me:4.0f} "
                              f"us/call  nodes {nodes_us:4.0f} us/call")


if __name__ == "__main__":
    main()
