"""The worst stall of a node's loop: how long a message can wait behind one pass (a fold
of the journal into state.db used to hold a pass for tens of milliseconds).

    .venv/bin/python bench/loop_stall.py --proposals 30000 --concurrency 256
    .venv/bin/python bench/loop_stall.py --store --passes 400 --keys 64

Default: a temporary 3-node cluster serving metrics, one client running independent
proposals; then each node's passes as its metrics give them: how many, how many took
longer than 5/10/25/50 ms (``zpaxos_node_pass_duration_seconds``), the longest
(``zpaxos_node_longest_pass_seconds``, n/a on a release without it), and its folds.

``--store``: one SqliteStore alone (no sockets): ``--passes`` passes of ``--keys`` fresh
keys, each a save and a seal as the node's loop makes them; prints the longest
save+seal and the 99th percentile. Runs the same against an older release (only the
store's save/seal are used), so the two can be compared A/B. ``--steps`` (this release
only): the seals also by what they did of the fold (its start and first slice, a slice,
the commit, emptying the folded journal, the checkpoint, or nothing).
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from zpaxos.lab.launcher import child_env, free_ports, write_config
from zpaxos.runtime.client import Client, options_from
from zpaxos.runtime.config import load_config
from zpaxos.runtime.log import null_log

_SAMPLE = re.compile(r'^(\w+)(?:\{([^}]*)\})? (\S+)$')
STALLS_MS = (5, 10, 25, 50)


def parse(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def node_report(name: str, m: dict[tuple[str, str], float]) -> str:
    passes = m.get(("zpaxos_node_pass_duration_seconds_count", ""), 0)
    buckets = {float(labels.split('"')[1]): n for (k, labels), n in m.items()
               if k == "zpaxos_node_pass_duration_seconds_bucket" and "+Inf" not in labels}
    over = []
    for ms in STALLS_MS:
        le = max((b for b in buckets if b <= ms / 1000), default=None)
        over.append(f">{ms}ms {passes - buckets[le]:.0f}" if le is not None else "")
    longest = m.get(("zpaxos_node_longest_pass_seconds", ""))
    folds = m.get(("zpaxos_node_fold_duration_seconds_count", ""), 0)
    fold_s = m.get(("zpaxos_node_fold_duration_seconds_sum", ""), 0.0)
    return (f"  {name}: {passes:.0f} passes, {' '.join(over)}; longest "
            f"{'n/a' if longest is None else f'{longest * 1000:.1f} ms'}; {folds:.0f} folds, "
            f"{1000 * fold_s / folds if folds else 0:.1f} ms each (all slices)")


def cluster(a: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="zpaxos-stall-") as tmp:
        work = Path(tmp)
        ports = free_ports(6)
        cfg = write_config(work / "cluster.ini", [("127.0.0.1", p) for p in ports[:3]],
                           log_level="WARNING", value_files="", metrics_ports=ports[3:])
        procs = []
        try:
            for i in range(3):
                p = subprocess.Popen([sys.executable, "-m", "zpaxos", "node", str(i),
                                      "--config", str(cfg), "-q"], cwd=work, env=child_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                procs.append(p)
                assert p.stdout is not None
                if "listening" not in p.stdout.readline():
                    raise SystemExit(f"node{i} did not start")
            items = [(f"stall-{i}", b"v" * 16) for i in range(a.proposals)]
            opts = options_from(load_config(cfg).proposer, timeout_s=60.0, max_rounds=1000)
            with Client(load_config(cfg), null_log("stall")) as client:
                t0 = time.perf_counter()
                n = sum(o.chosen is not None for _, o, _ in client.stream(items, a.concurrency,
                                                                            opts))
                elapsed = time.perf_counter() - t0
            time.sleep(0.5)  # an idle node finishes its fold
            texts = []
            for port in ports[3:]:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    texts.append(r.read().decode())
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(30)
    print(f"{n} decisions in {elapsed:.2f} s: {n / elapsed:.0f}/s ({a.concurrency} in flight)")
    for i, text in enumerate(texts):
        print(node_report(f"node{i}", parse(text)))


def store(a: argparse.Namespace) -> None:
    from zpaxos.protocol.core import KeyState
    from zpaxos.protocol.messages import Ballot
    from zpaxos.runtime.storage import SqliteStore

    b = Ballot(1, bytes(range(16)))
    steps: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="zpaxos-stall-") as tmp:
        s = SqliteStore(Path(tmp))
        took = []
        n = 0
        for _ in range(a.passes):
            batch = [(f"k{n + i:09}", KeyState(b, b, b"v" * 16, b"v" * 16, b))
                     for i in range(a.keys)]
            n += a.keys
            t0 = time.perf_counter()
            s.save(batch)
            t1 = time.perf_counter()
            kind = step_kind(s) if a.steps else ""
            s.seal()
            t2 = time.perf_counter()
            took.append(t2 - t0)
            if a.steps:
                kind = "start+slice" if kind == "none" and s.folding else kind
                steps.setdefault(kind, []).append(t2 - t1)
        s.close()
    took.sort()
    print(f"{a.passes} passes of {a.keys} keys: save+seal longest {took[-1] * 1000:.1f} ms, "
          f"p99 {took[int(len(took) * 0.99)] * 1000:.2f} ms, median "
          f"{took[len(took) // 2] * 1000:.2f} ms, total {sum(took):.2f} s")
    for kind, t in steps.items():
        t.sort()
        print(f"  seal: {kind:<11} {len(t):5} times, median {t[len(t) // 2] * 1000:.2f} ms, "
              f"longest {t[-1] * 1000:.2f} ms")


def step_kind(s: Any) -> str:
    """What the next seal will do of the fold (zpaxos/runtime/storage_fold.py)."""
    if s._fold_rows is not None:
        return "slice" if s._fold_at < len(s._fold_rows) else "commit"
    return "reset" if s._reset_due else "checkpoint" if s._checkpoint_due else "none"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--proposals", type=int, default=30000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--store", action="store_true", help="one store alone, no cluster")
    ap.add_argument("--passes", type=int, default=400)
    ap.add_argument("--keys", type=int, default=64, help="fresh keys per pass (--store)")
    ap.add_argument("--steps", action="store_true",
                    help="--store: the seals by fold step too (this release only)")
    a = ap.parse_args()
    (store if a.store else cluster)(a)


if __name__ == "__main__":
    main()
