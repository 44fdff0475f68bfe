#!/usr/bin/env python3
"""The floor: how fast *any* design on zpaxos's fixed stack can be, on this machine.

    .venv/bin/python bench/floor.py            # about a minute
    .venv/bin/python bench/floor.py --quick    # a smoke run (the test suite's)

A skeleton with nothing of Paxos in it: 3 node processes, each a ZeroMQ ROUTER that, per
pass, decodes what arrived (msgpack), writes one record to a preallocated file,
``fdatasync``s it and answers each message; and a client of DEALER sockets that waits for
2 of the 3 answers. No ballots, no state, no logging, no checks. Whatever zpaxos does, it
does at least this, so the skeleton's figures bound what any target can ask of it here:

* sequential p50 from a separate client process, with one fsync'd round trip per decision
  (the phase-1 skip's shape) and with two (the lab's two phases);
* a whole short-lived process that does what ``zpaxos propose`` must: start Python, import
  pyzmq and msgpack, connect to 3 nodes, run two fsync'd round trips, exit (median of many,
  with ``python -c pass`` and ``import zmq, msgpack`` alone beside it).

When PySyncObj is installed (the ``bench`` extra, as for ``bench/compare.py``), its
sequential p50 is measured in the same run, interleaved, so a target stated as a ratio to
it can be checked against the floor. zpaxos itself is measured beside them, the same way
``compare.py`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout: the zpaxos package beside us
sys.path.insert(0, str(HERE))

PREALLOC = 64 << 20

# What a short-lived proposer process must do at the least (run with ``python -c``):
# argv: the 3 ports.
CLI = """
import sys, zmq, msgpack
ctx = zmq.Context()
socks = []
for port in sys.argv[1:4]:
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect("tcp://127.0.0.1:" + port)
    socks.append(s)
poller = zmq.Poller()
for s in socks:
    poller.register(s, zmq.POLLIN)
for phase in (1, 2):
    body = msgpack.packb([phase, "cli-key", 1, b"Value_A"])
    for s in socks:
        s.send(body)
    got = 0
    while got < 2:
        ready = poller.poll(5000)
        if not ready:
            sys.exit("a skeleton node did not answer")
        for s, _ in ready:
            msgpack.unpackb(s.recv())
            got += 1
for s in socks:
    s.close(0)
ctx.term()
"""


# ---------------------------------------------------------------- the skeleton's processes


def node(port: int, path: str) -> None:
    """One skeleton node: per pass, decode, one fdatasync'd write, one answer per message.
    Exits when its parent goes (checked once a second)."""
    import msgpack
    import zmq

    parent = os.getppid()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(f"tcp://127.0.0.1:{port}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, PREALLOC)
    except OSError:
        pass
    off = 0
    print("ready", flush=True)
    while os.getppid() == parent:
        if not sock.poll(1000):
            continue
        batch: list[list[bytes]] = []
        while len(batch) < 256:
            try:
                batch.append(sock.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
        record = b"".join(frames[-1] for frames in batch)
        for frames in batch:
            msgpack.unpackb(frames[-1])
        if off + len(record) > PREALLOC:
            off = 0
        os.pwrite(fd, record, off)
        off += len(record)
        os.fdatasync(fd)
        for frames in batch:
            sock.send_multipart([frames[0], msgpack.packb([True, 1])])


def client(ports: list[int], n: int, phases: int) -> None:
    """One decision at a time, each ``phases`` round trips to a quorum of 2: prints the
    latencies (ms) as JSON."""
    import msgpack
    import zmq

    ctx = zmq.Context()
    socks = []
    for port in ports:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(f"tcp://127.0.0.1:{port}")
        socks.append(s)
    poller = zmq.Poller()
    for s in socks:
        poller.register(s, zmq.POLLIN)
    lat = []
    pending = [0, 0, 0]  # answers each node still owes (a late third answer is drained)
    for i in range(-20, n):  # the first 20: connections and caches warm up, untimed
        t0 = time.perf_counter()
        for phase in range(phases):
            body = msgpack.packb([phase, f"k{i}", 1, b"v%d" % i])
            for j, s in enumerate(socks):
                s.send(body)
                pending[j] += 1
            got = 0
            while got < 2:
                ready = poller.poll(5000)
                if not ready:
                    raise SystemExit("a skeleton node did not answer")
                for s, _ in ready:
                    j = socks.index(s)
                    while True:
                        try:
                            msgpack.unpackb(s.recv(zmq.NOBLOCK))
                        except zmq.Again:
                            break
                        pending[j] -= 1
                        # an answer to this phase once every older one is in
                        if pending[j] == 0:
                            got += 1
        if i >= 0:
            lat.append((time.perf_counter() - t0) * 1000)
    for s in socks:
        s.close(0)
    ctx.term()
    print(json.dumps({"latencies_ms": lat}))


class Skeleton:
    def __init__(self, work: Path) -> None:
        from zpaxos.lab.launcher import free_ports

        self.ports = free_ports(3)
        self.procs: list[subprocess.Popen[str]] = []
        try:
            for i, port in enumerate(self.ports):
                p = subprocess.Popen([sys.executable, __file__, "--node", str(port),
                                      str(work / f"skeleton{i}.dat")],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                self.procs.append(p)
                if p.stdout is None or p.stdout.readline().strip() != "ready":
                    raise RuntimeError("a skeleton node did not start: "
                                       + (p.stderr.read() if p.stderr else "")[-300:])
        except BaseException:
            self.close()
            raise

    def seq(self, n: int, phases: int) -> list[float]:
        r = subprocess.run([sys.executable, __file__, "--client", ",".join(map(str, self.ports)),
                            str(n), str(phases)], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"skeleton client failed: {r.stderr.strip()[-400:]}")
        lat: list[float] = json.loads(r.stdout)["latencies_ms"]
        return lat

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def process_ms(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    """Median wall time (ms) of whole processes ``cmd`` (one untimed run first)."""
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, env=env, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"{cmd[:3]} failed: {r.stderr.decode().strip()[-300:]}")
        if i:
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


# ---------------------------------------------------------------- the run


def run(rounds: int, seq_n: int, cli_runs: int, pso_python: Path | None) -> dict[str, Any]:
    import compare

    from zpaxos.lab.launcher import cached_bytecode_env

    fig: dict[str, list[float]] = {k: [] for k in (
        "floor_1phase_p50_ms", "floor_2phase_p50_ms", "zpaxos_fast_p50_ms",
        "zpaxos_2phase_p50_ms", "pysyncobj_p50_ms", "python_ms", "imports_ms", "floor_cli_ms",
        "zpaxos_propose_ms")}
    tag = os.urandom(3).hex()
    with tempfile.TemporaryDirectory(prefix="zpaxos-floor-") as tmp:
        work = Path(tmp)
        env = cached_bytecode_env(work)
        sk = Skeleton(work)
        z = p = None
        try:
            z = compare.ZpaxosCluster(work)
            p = compare.PsoCluster(pso_python, batch=False) if pso_python else None
            for r in range(rounds):
                print(f"round {r + 1}/{rounds} ...", file=sys.stderr, flush=True)
                pre = f"floor-{tag}-{r}-"
                fig["floor_1phase_p50_ms"].append(statistics.median(sk.seq(seq_n, 1)))
                fig["floor_2phase_p50_ms"].append(statistics.median(sk.seq(seq_n, 2)))
                fig["zpaxos_fast_p50_ms"].append(statistics.median(
                    z.client("seq", seq_n, pre + "zs-", 1, True)["latencies_ms"]))
                fig["zpaxos_2phase_p50_ms"].append(statistics.median(
                    z.client("seq", seq_n, pre + "z2-", 1, False)["latencies_ms"]))
                if p is not None:
                    fig["pysyncobj_p50_ms"].append(statistics.median(
                        p.client("seq", seq_n, pre + "ps")["latencies_ms"]))
                me = [sys.executable]
                fig["python_ms"].append(process_ms(me + ["-c", "pass"], cli_runs, env))
                fig["imports_ms"].append(process_ms(me + ["-c", "import zmq, msgpack"],
                                                    cli_runs, env))
                fig["floor_cli_ms"].append(process_ms(
                    me + ["-c", CLI, *map(str, sk.ports)], cli_runs, env))
                fig["zpaxos_propose_ms"].append(process_ms(
                    me + ["-m", "zpaxos", "propose", "v", "--key", pre + "cli", "-q",
                          "--config", str(z.config)], cli_runs, env))
        finally:
            sk.close()
            if p is not None:
                p.close()
            if z is not None:
                z.close()
    med = {k: statistics.median(v) if v else None for k, v in fig.items()}
    return {"rounds": rounds, "sequential_proposals": seq_n, "process_runs": cli_runs,
            "medians": med, "per_round": fig}


def report(r: dict[str, Any]) -> str:
    m = r["medians"]
    pso = m["pysyncobj_p50_ms"]

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f} ms"

    def ratio(z: float | None, f: float | None) -> str:
        return "-" if z is None or not f else f"{z / f:.2f}x"

    def at_most(k: float, f: float | None) -> str:
        return f"<= {k:g}x the floor" + ("" if f is None else f" = {k * f:.2f} ms")

    # The speed issue's targets, as ratios to the floor (and to PySyncObj) in this run.
    f1, f2, fcli = m["floor_1phase_p50_ms"], m["floor_2phase_p50_ms"], m["floor_cli_ms"]
    rows = [("", "SKELETON (the floor)", "ZPAXOS", "ZPAXOS / FLOOR", "TARGET")]
    rows.append(("sequential p50, one round trip (phase-1 skip)", ms(f1),
                 ms(m["zpaxos_fast_p50_ms"]), ratio(m["zpaxos_fast_p50_ms"], f1),
                 at_most(1.5, f1) + (f"; <= 0.8x PySyncObj = {0.8 * pso:.2f} ms" if pso
                                     else "")))
    rows.append(("sequential p50, two round trips (the lab's)", ms(f2),
                 ms(m["zpaxos_2phase_p50_ms"]), ratio(m["zpaxos_2phase_p50_ms"], f2),
                 at_most(1.5, f2)))
    rows.append(("whole propose process", ms(fcli), ms(m["zpaxos_propose_ms"]),
                 ratio(m["zpaxos_propose_ms"], fcli), at_most(1.3, fcli)))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    return "\n".join([
        f"3 nodes on loopback, fsync on; medians of {r['rounds']} interleaved rounds of "
        f"{r['sequential_proposals']} sequential decisions and {r['process_runs']} processes",
        "", *lines, "",
        f"PySyncObj sequential p50 (no fsync), same run: {ms(pso)}",
        f"of a whole process: python -c pass {ms(m['python_ms'])}; "
        f"import zmq, msgpack {ms(m['imports_ms'])}",
        "The skeleton has nothing of Paxos: it decodes, fsyncs one record per pass and "
        "answers. A target below its figure cannot be met by any design on this stack here."])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--node"]:
        node(int(args[1]), args[2])
        return 0
    if args[:1] == ["--client"]:
        client([int(x) for x in args[1].split(",")], int(args[2]), int(args[3]))
        return 0
    import compare

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 round, few proposals")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sequential", type=int, default=500, metavar="N")
    ap.add_argument("--processes", type=int, default=10, metavar="N",
                    help="whole processes timed per round and kind")
    ap.add_argument("--venv", type=Path, default=None,
                    help="a venv with PySyncObj installed (default: this Python's, the bench "
                         "extra; PySyncObj is skipped where it is not installed)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(args)
    if a.quick:
        a.rounds, a.sequential, a.processes = 1, 20, 2
    try:
        pso = compare.pso_python(a.venv)
        if pso is None:
            print(f"floor.py: not measuring PySyncObj: {compare.no_pso_reason(a.venv)}",
                  file=sys.stderr)
        result = run(a.rounds, a.sequential, a.processes, pso[0] if pso else None)
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        print(f"floor.py: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if a.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
