#!/usr/bin/env python3
"""zpaxos beside PySyncObj (a Python Raft library), on this machine, in one run.

    .venv/bin/python bench/compare.py            # about a minute or two
    .venv/bin/python bench/compare.py --quick    # a smoke run (the test suite's)
    .venv/bin/python bench/compare.py --registers [--quick]  # registers (compare_registers.py)

PySyncObj is a *benchmark* dependency, not a project one: the ``bench`` extra
(``pip install -e '.[bench]'``; tests/setup.sh, which tests/run.sh and run_scenarios.sh
call, installs it into .venv). Its nodes and clients (bench/pso_node.py,
bench/pso_client.py) run with this Python, or with the one of ``--venv``. Nothing is
installed here: a run needs no network and writes only to the temp directory.

Both clusters are 3 processes on loopback, up at the same time; the measurements are
interleaved round by round (each round runs both systems, alternating which goes first),
and each ratio reported is the median of the rounds' ratios:

* sequential latency: one proposal at a time from a separate client process (p50), zpaxos
  with the Python API's default (the phase-1 skip for fresh keys); its two-phase figure
  (the lab's path) is reported beside it;
* throughput from a separate client process, 64 in flight (the API's default again);
* throughput in each system's best configuration: for PySyncObj the best of its separate
  client and of the load generated inside the leader process (no client hop), batched
  (``appendEntriesUseBatch``) or not; for zpaxos the best of a separate client with 64
  and 256 in flight (and with the phase-1 skip, when this build's Client offers it).

PySyncObj runs two clusters side by side: unbatched (``appendEntriesUseBatch=False``: a
command wakes its Raft thread at once; its best latency, used for the sequential and
separate-client runs) and batched (commands wait for its next tick; its best throughput
with the load in the leader).

The two do not promise the same thing: zpaxos fsyncs every promise and acceptance before
replying; PySyncObj keeps its log in memory here and never fsyncs (not even with its
journal file on).

Exit status: 0, 1 when a run fails, 3 when PySyncObj is not installed (one line says how to
install it): the test suite then skips, saying so.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Client as RpcClient
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout: the zpaxos package beside us

AUTHKEY = b"zpaxos-compare"
EXIT_NO_PYSYNCOBJ = 3
INSTALL_HINT = "pip install -e '.[bench]' (tests/setup.sh does)"
NOTE = ("PySyncObj does not fsync: its log is in memory here (and its journal file, when "
        "on, is never fsynced); zpaxos fsyncs every promise and acceptance before replying.")


# ---------------------------------------------------------------- PySyncObj's Python


def pso_python(venv: Path | None = None) -> tuple[Path, str] | None:
    """The Python that runs PySyncObj's processes and PySyncObj's version there: ``venv``'s
    Python when given, else this one; None when PySyncObj cannot be imported there."""
    py = venv / "bin" / "python" if venv is not None else Path(sys.executable)
    if not py.exists():
        return None
    r = subprocess.run([str(py), "-c", "from importlib.metadata import version; "
                        "import pysyncobj; print(version('pysyncobj'))"],
                       capture_output=True, text=True)
    return (py, r.stdout.strip()) if r.returncode == 0 else None


def no_pso_reason(venv: Path | None) -> str:
    where = f"the venv {venv}" if venv is not None else sys.executable
    return f"PySyncObj is not installed for {where}: {INSTALL_HINT}"


# ---------------------------------------------------------------- the clusters


def free_ports(n: int) -> list[int]:
    from zpaxos.lab.launcher import free_ports as fp

    return fp(n)


class PsoCluster:
    def __init__(self, python: Path, batch: bool) -> None:
        self.python = python
        self.batch = batch
        raft, rpc = free_ports(3), free_ports(3)
        self.rpc = rpc
        self.procs = [subprocess.Popen([str(python), str(HERE / "pso_node.py"), str(i),
                                        ",".join(map(str, raft)), str(rpc[i]),
                                        "1" if batch else "0"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
                      for i in range(3)]
        for p in self.procs:
            if p.stdout is None or p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a PySyncObj node did not start: {self._errors()}")
        self.leader_port = self._leader()

    def _errors(self) -> str:
        self.close()
        return " ".join((p.stderr.read() if p.stderr else "").strip()[-300:] for p in self.procs)

    def _leader(self, timeout_s: float = 30.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for port in self.rpc:
                conn = RpcClient(("127.0.0.1", port), authkey=AUTHKEY)
                conn.send(("leader?",))
                leads = conn.recv()
                conn.close()
                if leads:
                    return port
            time.sleep(0.1)
        raise RuntimeError("PySyncObj elected no leader")

    def client(self, mode: str, n: int, prefix: str, window: int = 1) -> dict[str, Any]:
        r = subprocess.run([str(self.python), str(HERE / "pso_client.py"), str(self.leader_port),
                            mode, str(n), prefix, str(window)],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"PySyncObj client failed: {r.stderr.strip()[-400:]}")
        return json.loads(r.stdout)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def zpaxos_client(config: str, mode: str, n: int, prefix: str, window: int, fast: bool) -> None:
    """The separate client process for zpaxos (``compare.py --zpaxos-client ...``)."""
    from zpaxos.runtime.client import Client, options_from
    from zpaxos.runtime.config import load_config
    from zpaxos.runtime.log import null_log

    cluster = load_config(config)
    opts = options_from(cluster.proposer, timeout_s=60.0, max_rounds=1000)
    kw = {"fast": fast} if "fast" in inspect.signature(Client).parameters else {}
    with Client(cluster, null_log("compare"), **kw) as client:
        if mode == "seq":
            lat = []
            for i in range(n):
                t0 = time.perf_counter()
                o = client.propose(b"v%d" % i, f"{prefix}{i}", opts)
                lat.append((time.perf_counter() - t0) * 1000)
                assert o.chosen is not None, o
            print(json.dumps({"latencies_ms": lat}))
        else:
            items = [(f"{prefix}{i}", b"v%d" % i) for i in range(n)]
            t0 = time.perf_counter()
            chosen = sum(o.chosen is not None for _, o, _ in client.stream(items, window, opts))
            assert chosen == n, chosen
            print(json.dumps({"seconds": time.perf_counter() - t0}))


def fast_available() -> bool:
    from zpaxos.runtime.client import Client

    return "fast" in inspect.signature(Client).parameters


class ZpaxosCluster:
    def __init__(self, work: Path) -> None:
        from zpaxos.lab.launcher import LocalCluster, cached_bytecode_env, write_config

        self.config = write_config(work / "cluster.ini",
                                   [("127.0.0.1", p) for p in free_ports(3)],
                                   log_level="WARNING", value_files="",
                                   keys_dir=str(work / "keys"))
        self.env = cached_bytecode_env(work)
        self.local = LocalCluster(self.config, work, range(3), env=self.env)
        self.local.start_all()

    def client(self, mode: str, n: int, prefix: str, window: int = 1,
               fast: bool = False) -> dict[str, Any]:
        r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--zpaxos-client",
                            str(self.config), mode, str(n), prefix, str(window),
                            "1" if fast else "0"],
                           capture_output=True, text=True, timeout=600, env=self.env)
        if r.returncode != 0:
            raise RuntimeError(f"zpaxos client failed: {r.stderr.strip()[-400:]}")
        return json.loads(r.stdout)

    def close(self) -> None:
        self.local.close()


# ---------------------------------------------------------------- the runs


def run(rounds: int, seq_n: int, thr_n: int, pso: tuple[Path, str], progress: bool = True
        ) -> dict[str, Any]:
    python, version = pso
    tag = os.urandom(3).hex()
    best_z = [(64, False), (256, False)] + ([(64, True), (256, True)] if fast_available()
                                           else [])
    two_phase: list[float] = []  # zpaxos's sequential p50 without the phase-1 skip
    figures: dict[str, dict[str, list[float]]] = {
        "zpaxos": {"seq_p50_ms": [], "thr_client": [], "thr_best": []},
        "pysyncobj": {"seq_p50_ms": [], "thr_client": [], "thr_best": []}}
    best_cfg: list[str] = []
    pso_cfg: list[str] = []
    with tempfile.TemporaryDirectory(prefix="zpaxos-compare-") as tmp:
        z = ZpaxosCluster(Path(tmp))
        try:
            p = PsoCluster(python, batch=False)  # lowest latency: commands wake it at once
            pb = PsoCluster(python, batch=True)  # batched: its best throughput
            try:
                for r in range(rounds):
                    if progress:
                        print(f"round {r + 1}/{rounds} ...", file=sys.stderr, flush=True)
                    # Each zpaxos run's keys get a range of their own ("...-zs-17"): with
                    # the runs sharing one, each client process would first have to take
                    # the range from the one before, and a two-phase client's Prepares
                    # would meet the fast client's range promise.
                    pre = f"cmp-{tag}-{r}-"
                    order = [("zpaxos", z), ("pysyncobj", p)]
                    for name, _ in order if r % 2 == 0 else order[::-1]:
                        f = figures[name]
                        if name == "zpaxos":
                            fast = fast_available()
                            lat = z.client("seq", seq_n, pre + "zs-", 1, fast)["latencies_ms"]
                            two_phase.append(statistics.median(
                                z.client("seq", seq_n, pre + "z2-", 1)["latencies_ms"]))
                            thr = thr_n / z.client("thr", thr_n, pre + "zt-", 64,
                                                   fast)["seconds"]
                            best, cfg = thr, "64 in flight"  # the run above counts too
                            for window, fast in best_z:
                                s = z.client("thr", thr_n, f"{pre}zb{window}{int(fast)}-",
                                             window, fast)["seconds"]
                                if thr_n / s > best:
                                    best = thr_n / s
                                    cfg = f"{window} in flight{', phase-1 skip' if fast else ''}"
                            best_cfg.append(cfg)
                        else:
                            lat = p.client("seq", seq_n, pre + "ps")["latencies_ms"]
                            thr = thr_n / p.client("thr", thr_n, pre + "pt", 64)["seconds"]
                            best, cfg = thr, "separate client, unbatched"
                            for c, cl in (("load in the leader, batched", pb),
                                          ("load in the leader, unbatched", p)):
                                s = cl.client("leader", thr_n, f"{pre}pb{cl.batch}",
                                              1000)["seconds"]
                                if thr_n / s > best:
                                    best, cfg = thr_n / s, c
                            pso_cfg.append(cfg)
                        f["seq_p50_ms"].append(statistics.median(lat))
                        f["thr_client"].append(thr)
                        f["thr_best"].append(best)
            finally:
                p.close()
                pb.close()
        finally:
            z.close()
    zf, pf = figures["zpaxos"], figures["pysyncobj"]
    ratios = {k: statistics.median(a / b for a, b in zip(zf[k], pf[k], strict=True))
              for k in zf}
    return {"rounds": rounds, "sequential_proposals": seq_n, "throughput_proposals": thr_n,
            "pysyncobj_version": version, "zpaxos_best": best_cfg, "pysyncobj_best": pso_cfg,
            "zpaxos": {k: statistics.median(v) for k, v in zf.items()},
            "pysyncobj": {k: statistics.median(v) for k, v in pf.items()},
            "zpaxos_seq_two_phase_p50_ms": statistics.median(two_phase),
            "ratios": ratios, "per_round": figures, "note": NOTE}


def report(r: dict[str, Any]) -> str:
    z, p, q = r["zpaxos"], r["pysyncobj"], r["ratios"]

    def times(x: float, unit: str) -> str:
        return f"{x:.2f}x ({'faster' if x > 1 else 'slower'})" if unit == "/s" else (
            f"{x:.2f}x ({'slower' if x > 1 else 'faster'})")

    def most(xs: list[str]) -> str:
        return max(set(xs), key=xs.count) if xs else "?"

    best, pbest = most(r["zpaxos_best"]), most(r["pysyncobj_best"])
    rows = [
        ("RUN", "ZPAXOS", f"PYSYNCOBJ {r['pysyncobj_version']}", "RATIO (zpaxos vs PySyncObj)"),
        ("sequential p50, separate client", f"{z['seq_p50_ms']:.2f} ms",
         f"{p['seq_p50_ms']:.2f} ms", times(q["seq_p50_ms"], "ms")),
        ("  zpaxos with both phases (the lab's path)",
         f"{r['zpaxos_seq_two_phase_p50_ms']:.2f} ms", "", ""),
        ("throughput, separate client (64 in flight)", f"{z['thr_client']:,.0f}/s",
         f"{p['thr_client']:,.0f}/s", times(q["thr_client"], "/s")),
        (f"throughput, best (zpaxos: {best}; PySyncObj: {pbest})",
         f"{z['thr_best']:,.0f}/s", f"{p['thr_best']:,.0f}/s", times(q["thr_best"], "/s")),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    return "\n".join([
        f"3 nodes each on loopback, interleaved: {r['rounds']} rounds of "
        f"{r['sequential_proposals']} sequential and {r['throughput_proposals']} throughput "
        f"proposals; medians (ratios: median of the rounds' ratios)", "", *lines, "",
        r["note"]])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--zpaxos-client"]:
        config, mode, n, prefix, window, fast = args[1:7]
        zpaxos_client(config, mode, int(n), prefix, int(window), fast == "1")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 round, few proposals")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sequential", type=int, default=300, metavar="N")
    ap.add_argument("--throughput", type=int, default=4000, metavar="N")
    ap.add_argument("--venv", type=Path, default=None,
                    help="a venv with PySyncObj installed (default: this Python's, the "
                         "bench extra)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--registers", action="store_true",
                    help="compare rewritable registers (set/get/cas) instead")
    a = ap.parse_args(args)
    if a.quick:
        a.rounds, a.sequential, a.throughput = 1, 20, 200
    runner, text = run, report
    if a.registers:
        import compare_registers

        runner, text = compare_registers.run, compare_registers.report
    pso = pso_python(a.venv)
    if pso is None:
        print(f"compare.py: {no_pso_reason(a.venv)}", file=sys.stderr)
        return EXIT_NO_PYSYNCOBJ
    try:
        result = runner(a.rounds, a.sequential, a.throughput, pso, progress=not a.json)
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        print(f"compare.py: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if a.json else text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
