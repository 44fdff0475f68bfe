"""Registers: zpaxos's rewritable registers (CASPaxos) beside a PySyncObj replicated dict.

    .venv/bin/python bench/compare.py --registers [--quick]

Same clusters and interleaving as bench/compare.py (3 nodes each on loopback, rounds
alternate which system goes first, ratios are medians of the rounds' ratios), from a
separate client process:

* sequential set, get and cas p50 (one operation at a time, each on a register of its own;
  the cas expects the version the set left);
* throughput of set, 64 in flight.

PySyncObj's side is what a PySyncObj user writes: a dict kept by ``@replicated`` set and
compare-and-set methods on a SyncObj subclass (the cas is atomic because it is one
replicated command), as ``pysyncobj.batteries.ReplDict`` keeps its dict. Its get is a
**local read of one replica** (the leader's), not through the log: not linearizable.
zpaxos's get is a linearizable quorum round. PySyncObj does not fsync.
"""

from __future__ import annotations

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

NOTE = ("PySyncObj's get is a local read of one replica (the leader's), not through its "
        "log: not linearizable; zpaxos's get is a linearizable quorum round. " + compare.NOTE)
OPS = ("set", "get", "cas")


def zpaxos_client(config: str, mode: str, n: int, prefix: str, window: int) -> None:
    """The separate zpaxos client process (``compare_registers.py --zpaxos-client ...``)."""
    from zpaxos.protocol.register import SET, RegOp
    from zpaxos.runtime.client import Client
    from zpaxos.runtime.config import load_config
    from zpaxos.runtime.log import null_log

    with Client(load_config(config), null_log("compare")) as c:
        opts = c.register_options(one_rtt=True, timeout_s=60.0, max_rounds=1000)
        if mode == "reg":
            out: dict[str, list[float]] = {}
            for op in OPS:
                lat = []
                for i in range(n):
                    key = f"{prefix}{i}"
                    t0 = time.perf_counter()
                    if op == "set":
                        r = c.set(key, b"v%d" % i, opts)
                    elif op == "get":
                        r = c.get(key, opts)
                    else:
                        r = c.cas(key, b"w%d" % i, expect_version=1, options=opts)
                    lat.append((time.perf_counter() - t0) * 1000)
                    assert r.status == "ok", (op, r)
                out[op] = lat
            print(json.dumps(out))
        else:
            items = [(f"{prefix}{i}", RegOp(SET, b"v%d" % i)) for i in range(n)]
            t0 = time.perf_counter()
            ok = sum(r.status == "ok" for _, r, _ in c.register_stream(items, window, opts))
            assert ok == n, ok
            print(json.dumps({"seconds": time.perf_counter() - t0}))


def _zclient(z: compare.ZpaxosCluster, mode: str, n: int, prefix: str,
             window: int = 1) -> dict[str, Any]:
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--zpaxos-client",
                        str(z.config), mode, str(n), prefix, str(window)],
                       capture_output=True, text=True, timeout=600, env=z.env)
    if r.returncode != 0:
        raise RuntimeError(f"zpaxos register client failed: {r.stderr.strip()[-400:]}")
    return json.loads(r.stdout)


def run(rounds: int, seq_n: int, thr_n: int, pso: tuple[Path, str], progress: bool = True
        ) -> dict[str, Any]:
    python, version = pso
    tag = os.urandom(3).hex()
    keys = [f"{op}_p50_ms" for op in OPS] + ["set_thr"]
    figures: dict[str, dict[str, list[float]]] = {
        s: {k: [] for k in keys} for s in ("zpaxos", "pysyncobj")}
    with tempfile.TemporaryDirectory(prefix="zpaxos-compare-reg-") as tmp:
        z = compare.ZpaxosCluster(Path(tmp))
        try:
            p = compare.PsoCluster(python, batch=False)
            try:
                for r in range(rounds):
                    if progress:
                        print(f"registers round {r + 1}/{rounds} ...", file=sys.stderr,
                              flush=True)
                    pre = f"reg-{tag}-{r}-"
                    order = ["zpaxos", "pysyncobj"]
                    for name in order if r % 2 == 0 else order[::-1]:
                        if name == "zpaxos":
                            lat = _zclient(z, "reg", seq_n, pre + "zs")
                            s = _zclient(z, "thr", thr_n, pre + "zt", 64)["seconds"]
                        else:
                            lat = p.client("reg", seq_n, pre + "ps")
                            s = p.client("regthr", thr_n, pre + "pt", 64)["seconds"]
                        f = figures[name]
                        for op in OPS:
                            f[f"{op}_p50_ms"].append(statistics.median(lat[op]))
                        f["set_thr"].append(thr_n / s)
            finally:
                p.close()
        finally:
            z.close()
    zf, pf = figures["zpaxos"], figures["pysyncobj"]
    ratios = {k: statistics.median(a / b for a, b in zip(zf[k], pf[k], strict=True))
              for k in zf}
    return {"rounds": rounds, "sequential_ops": seq_n, "throughput_ops": thr_n,
            "pysyncobj_version": version,
            "zpaxos": {k: statistics.median(v) for k, v in zf.items()},
            "pysyncobj": {k: statistics.median(v) for k, v in pf.items()},
            "ratios": ratios, "per_round": figures, "note": NOTE}


def report(r: dict[str, Any]) -> str:
    z, p, q = r["zpaxos"], r["pysyncobj"], r["ratios"]

    def ms(k: str) -> tuple[str, str, str]:
        x = q[k]
        return (f"{z[k]:.2f} ms", f"{p[k]:.2f} ms",
                f"{x:.2f}x ({'slower' if x > 1 else 'faster'})")

    x = q["set_thr"]
    rows = [("RUN", "ZPAXOS", f"PYSYNCOBJ {r['pysyncobj_version']}",
             "RATIO (zpaxos vs PySyncObj)"),
            ("sequential set p50", *ms("set_p50_ms")),
            ("sequential get p50 (PySyncObj: local read)", *ms("get_p50_ms")),
            ("sequential cas p50", *ms("cas_p50_ms")),
            ("set throughput, 64 in flight", f"{z['set_thr']:,.0f}/s",
             f"{p['set_thr']:,.0f}/s", f"{x:.2f}x ({'faster' if x > 1 else 'slower'})")]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    return "\n".join([
        f"registers, 3 nodes each on loopback, separate client, interleaved: {r['rounds']} "
        f"rounds of {r['sequential_ops']} sequential set/get/cas and {r['throughput_ops']} "
        f"sets; medians (ratios: median of the rounds' ratios)", "", *lines, "", r["note"]])


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[:1] == ["--zpaxos-client"]:
        zpaxos_client(a[1], a[2], int(a[3]), a[4], int(a[5]))
    else:
        sys.exit(compare.main(["--registers", *a]))
