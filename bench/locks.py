#!/usr/bin/env python3
"""Locks: zpaxos's ``client.lock`` beside PySyncObj's ``ReplLockManager``, in one run.

    .venv/bin/python bench/locks.py              # about a minute
    .venv/bin/python bench/locks.py --quick      # a smoke run (the test suite's)

Both clusters are 3 processes on loopback, up at the same time (bench/compare.py's), and
the runs alternate which system goes first, round by round. Each lock user is a separate
process; a cycle is acquire, then release at once:

* uncontended: one process, N cycles one after another: acquire and release p50 / p99;
* contended: 8 processes on one lock for S seconds: how long an acquire waits (p50 / p99),
  release p50 / p99, hand-overs per second, and the fewest and most cycles a process got
  (fairness).

zpaxos: ``with client.lock(name, ttl=10)`` (zpaxos/runtime/locks.py): a waiter queues
(FIFO), is told of each change by the nodes and confirms by a read; every step is a
linearizable register operation, made durable (fsync) on a quorum. PySyncObj: the
replicated part of ``ReplLockManager`` (auto-unlock after 10 s) called by each process with
its own client id through the leader (bench/pso_node.py, pso_client.py): it has no
waiting, so a refused ``tryAcquire`` is tried again 1 ms later; its expiry compares
``time.time()`` readings of different processes (synchronized clocks), and it does not
fsync. The figures are of one machine and move with its load: say what ran beside them.

Exit status: 0, 1 when a run fails, 3 when PySyncObj is not installed.
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

import compare

TTL_S = 10.0  # both systems' lock TTL (PySyncObj's auto-unlock time: pso_node.AUTO_UNLOCK_S)
CONTENDERS = 8
ACQUIRE_TIMEOUT_S = 60.0  # an acquire that takes longer fails (counted)
WORKER_TIMEOUT_S = 300.0  # a worker process that runs longer: the run fails
NOTE = ("PySyncObj's lock expiry compares time.time() of different processes (it assumes "
        "synchronized clocks) and its waiters poll (tryAcquire again 1 ms after a refusal); "
        "zpaxos's waiters queue and are told of changes, and its expiry uses only local "
        "elapsed time. " + compare.NOTE)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def zpaxos_worker(config: str, n: int, lock: str, seconds: float, start_at: float) -> None:
    """One zpaxos lock user (``locks.py --zpaxos-worker ...``): prints its latencies."""
    from zpaxos.runtime.client import Client
    from zpaxos.runtime.config import load_config
    from zpaxos.runtime.locks import LockTimeout
    from zpaxos.runtime.log import null_log

    with Client(load_config(config), null_log("locks")) as c:
        c.get(lock)  # connected before the clock starts
        time.sleep(max(0.0, start_at - time.time()))
        acquire: list[float] = []
        release: list[float] = []
        end = time.monotonic() + seconds
        failed = attempts = 0
        # ``n`` attempts (an acquire that timed out is one, counted as failed), or until
        # ``end``: never for ever, whatever the cluster does.
        while (attempts < n) if n else time.monotonic() < end:
            attempts += 1
            held = c.lock(lock, ttl=TTL_S, timeout=ACQUIRE_TIMEOUT_S)
            t0 = time.perf_counter()
            try:
                held.acquire()
            except LockTimeout:
                failed += 1
                continue
            t1 = time.perf_counter()
            held.release()
            acquire.append((t1 - t0) * 1000)
            release.append((time.perf_counter() - t1) * 1000)
    print(json.dumps({"acquire_ms": acquire, "release_ms": release, "failed": failed}))


def _workers(cmds: list[list[str]], env: dict[str, str] | None, system: str,
             ) -> list[dict[str, Any]]:
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for cmd in cmds]
    out = []
    try:
        for p in procs:
            try:
                stdout, stderr = p.communicate(timeout=WORKER_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"a {system} lock worker ran over {WORKER_TIMEOUT_S:g} s"
                                   ) from None
            if p.returncode != 0:
                raise RuntimeError(f"a {system} lock worker failed: {stderr.strip()[-400:]}")
            out.append(json.loads(stdout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def _zpaxos(z: compare.ZpaxosCluster, procs: int, n: int, lock: str,
            seconds: float) -> list[dict[str, Any]]:
    start_at = time.time() + 1.5  # every process connected by then
    cmd = [sys.executable, str(Path(__file__).resolve()), "--zpaxos-worker", str(z.config),
           str(n), lock, str(seconds), str(start_at)]
    return _workers([cmd] * procs, z.env, "zpaxos")


def _pso(p: compare.PsoCluster, procs: int, n: int, lock: str,
         seconds: float) -> list[dict[str, Any]]:
    cmd = [str(p.python), str(compare.HERE / "pso_client.py"), str(p.leader_port), "lock",
           str(n), lock, str(seconds)]
    return _workers([cmd] * procs, None, "PySyncObj")


def figures(runs: list[dict[str, Any]], seconds: float | None) -> dict[str, float]:
    acq = [x for r in runs for x in r["acquire_ms"]]
    rel = [x for r in runs for x in r["release_ms"]]
    f = {"acquire_p50_ms": pct(acq, 0.5), "acquire_p99_ms": pct(acq, 0.99),
         "release_p50_ms": pct(rel, 0.5), "release_p99_ms": pct(rel, 0.99),
         "failed": float(sum(r.get("failed", 0) for r in runs))}
    if seconds is not None:
        counts = [len(r["acquire_ms"]) for r in runs]
        f.update(handovers_per_s=sum(counts) / seconds, fewest=min(counts), most=max(counts))
    return f


def run(rounds: int, n: int, seconds: float, pso: tuple[Path, str],
        progress: bool = True) -> dict[str, Any]:
    python, version = pso
    tag = os.urandom(3).hex()
    per_round: dict[str, dict[str, list[dict[str, float]]]] = {
        s: {"uncontended": [], "contended": []} for s in ("zpaxos", "pysyncobj")}
    with tempfile.TemporaryDirectory(prefix="zpaxos-locks-") as tmp:
        z = compare.ZpaxosCluster(Path(tmp))
        try:
            p = compare.PsoCluster(python, batch=False)  # its lowest latency
            try:
                for r in range(rounds):
                    if progress:
                        print(f"locks round {r + 1}/{rounds} ...", file=sys.stderr, flush=True)
                    order = ["zpaxos", "pysyncobj"]
                    for name in order if r % 2 == 0 else order[::-1]:
                        go = _zpaxos if name == "zpaxos" else _pso
                        cluster: Any = z if name == "zpaxos" else p
                        one = go(cluster, 1, n, f"lk-{tag}-{r}-one", 0.0)
                        many = go(cluster, CONTENDERS, 0, f"lk-{tag}-{r}-many", seconds)
                        per_round[name]["uncontended"].append(figures(one, None))
                        per_round[name]["contended"].append(figures(many, seconds))
            finally:
                p.close()
        finally:
            z.close()

    def med(name: str, case: str) -> dict[str, float]:
        rs = per_round[name][case]
        return {k: statistics.median(x[k] for x in rs) for k in rs[0]}

    out: dict[str, Any] = {"rounds": rounds, "cycles": n, "seconds": seconds,
                           "contenders": CONTENDERS, "ttl_s": TTL_S,
                           "pysyncobj_version": version, "note": NOTE, "per_round": per_round}
    for case in ("uncontended", "contended"):
        zf, pf = med("zpaxos", case), med("pysyncobj", case)
        out[case] = {"zpaxos": zf, "pysyncobj": pf,
                     "ratios": {k: zf[k] / pf[k] if pf[k] else float("nan") for k in zf
                                if k not in ("fewest", "most", "failed")}}
    return out


def report(r: dict[str, Any]) -> str:
    rows = [("RUN", "ZPAXOS", f"PYSYNCOBJ {r['pysyncobj_version']}", "RATIO (zpaxos / PySyncObj)")]
    for case, label in (("uncontended", "1 process"),
                        ("contended", f"{r['contenders']} processes, one lock")):
        z, p, q = r[case]["zpaxos"], r[case]["pysyncobj"], r[case]["ratios"]
        for k in ("acquire_p50_ms", "acquire_p99_ms", "release_p50_ms", "release_p99_ms"):
            what = k.replace("_ms", "").replace("_", " ")
            rows.append((f"{label}: {what}", f"{z[k]:.2f} ms", f"{p[k]:.2f} ms", f"{q[k]:.2f}"))
        if "handovers_per_s" in z:
            rows.append((f"{label}: hand-overs", f"{z['handovers_per_s']:.1f}/s",
                         f"{p['handovers_per_s']:.1f}/s", f"{q['handovers_per_s']:.2f}"))
            rows.append((f"{label}: cycles per process (fewest-most)",
                         f"{z['fewest']:.0f}-{z['most']:.0f}", f"{p['fewest']:.0f}-{p['most']:.0f}",
                         ""))
        rows.append((f"{label}: failed calls (timed out, retried)", f"{z['failed']:.0f}",
                     f"{p['failed']:.0f}", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    return "\n".join([
        f"3 nodes each on loopback, interleaved: {r['rounds']} rounds of {r['cycles']} "
        f"uncontended cycles and {r['seconds']:g} s of {r['contenders']} contenders; TTL "
        f"{r['ttl_s']:g} s; medians over the rounds", "", *lines, "", r["note"]])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--zpaxos-worker"]:
        config, n, lock, seconds, start_at = args[1:6]
        zpaxos_worker(config, int(n), lock, float(seconds), float(start_at))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 round, short")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cycles", type=int, default=100, metavar="N",
                    help="uncontended acquire/release cycles per round")
    ap.add_argument("--seconds", type=float, default=10.0, metavar="S",
                    help="how long the contenders run per round")
    ap.add_argument("--venv", type=Path, default=None,
                    help="a venv with PySyncObj installed (default: this Python's)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(args)
    if a.quick:
        a.rounds, a.cycles, a.seconds = 1, 10, 2.0
    pso = compare.pso_python(a.venv)
    if pso is None:
        print(f"locks.py: {compare.no_pso_reason(a.venv)}", file=sys.stderr)
        return compare.EXIT_NO_PYSYNCOBJ
    try:
        r = run(a.rounds, a.cycles, a.seconds, pso, progress=not a.json)
    except RuntimeError as e:
        print(f"locks.py: {e}", file=sys.stderr)
        return 1
    print(json.dumps(r) if a.json else report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
