"""``zpaxos bench --million N``: a node holding N decided keys, its memory and its restart.

1. Builds each node's database of a temporary 3-node cluster directly through
   :class:`~zpaxos.runtime.storage.SqliteStore` (``save`` in large batches: the same rows,
   checksums and commit counting as a running node writes, without the network).
2. Gives each node the catch-up cursors of a cluster that was running and caught up
   (``catchup.json``: each peer's log end), and starts nodes 1 and 2 only: node 0 is
   stopped while they decide ``missed`` fresh keys (default 10,000).
3. Times node 0's start (a restart over N keys: its database exists): from spawning the
   process to its first status reply for a key it holds (target <= 2 s), and to the
   moment it knows all N + ``missed`` decided keys, learned by catching up from its
   peers (target <= 10 s; polled in its status every 50 ms). Bytecode is cached, as an
   installed package's is.
4. Makes node 0 serve: proposals on old keys (answered from lazily read rows) and on fresh
   ones, while it syncs every decision from its two peers and they sync from it (a
   starting node always asks its peers), which walks all N keys through its cache.
5. Reports node 0's resident memory now and at its peak (``VmRSS``, ``VmHWM``).

Figures, not assertions: the targets (RSS <= 200 MB, restart <= 2 s, caught up <= 10 s)
are checked by
whoever reads the report, on a quiet machine.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from zpaxos.hosts.catchup import dump_cursors
from zpaxos.lab.launcher import (
    LocalCluster,
    cached_bytecode_env,
    free_ports,
    write_config,
    zpaxos_cmd,
)
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import Ballot
from zpaxos.runtime.client import Client, options_from
from zpaxos.runtime.config import load_config
from zpaxos.runtime.datadir import write_atomic
from zpaxos.runtime.log import null_log
from zpaxos.runtime.node import CURSORS_NAME
from zpaxos.runtime.storage import SqliteStore

PREFIX = "m"
PROPOSER = b"million-builder."  # 16 bytes: the proposer id of the built decisions
BUILD_BATCH = 50_000  # rows per transaction while building
IDLE_S = 1.5  # node 0 counts as done syncing after this long without using CPU
SYNC_LIMIT_S = 300.0
MISSED = 10_000  # decisions made while node 0 is stopped
CAUGHT_UP_LIMIT_S = 120.0


def key_of(i: int) -> str:
    return f"{PREFIX}{i:07d}"


def build(data_dir: Path, n: int) -> float:
    """A data directory holding ``n`` decided keys (checksummed rows); seconds taken."""
    t0 = time.perf_counter()
    store = SqliteStore(data_dir)
    b = Ballot(1, PROPOSER)
    try:
        for start in range(0, n, BUILD_BATCH):
            batch = []
            for i in range(start, min(n, start + BUILD_BATCH)):
                v = b"value-%d" % i
                batch.append((key_of(i), KeyState(b, b, v, v, b)))
            store.save(batch)
    finally:
        store.close()
    return time.perf_counter() - t0


def caught_up_cursors(dirs: list[Path]) -> None:
    """Each node's catchup.json as a cluster that was running and caught up leaves it:
    every peer's cursor at the end of that peer's learn log."""
    ends = []
    for d in dirs:
        store = SqliteStore(d)
        try:
            ends.append((store.incarnation, store.learn_end))
        finally:
            store.close()
    for i, d in enumerate(dirs):
        doc = {"incarnation": ends[i][0].hex(),
               "peers": dump_cursors({j: e for j, e in enumerate(ends) if j != i})}
        write_atomic(d / CURSORS_NAME, json.dumps(doc).encode() + b"\n")


def decided_on(client: Client, node: int, key: str) -> int | None:
    """How many decided keys ``node`` knows (its status counters), None if unreachable."""
    for s in client.status(key, timeout_s=0.5):
        if s.id == node and s.reachable:
            return dict(s.stats).get("decided")
    return None


def wait_caught_up(client: Client, node: int, key: str, want: int,
                   limit_s: float = CAUGHT_UP_LIMIT_S) -> bool:
    """Until ``node`` knows ``want`` decided keys (polled every 50 ms)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        got = decided_on(client, node, key)
        if got is not None and got >= want:
            return True
        time.sleep(0.05)
    return False


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in kB, and CPU ticks used."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(rest.split()[0])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    out["ticks"] = int(fields[11]) + int(fields[12])  # utime + stime
    return out


def wait_idle(pid: int, limit_s: float = SYNC_LIMIT_S) -> float | None:
    """Until the process stops using CPU (its start-up sync done); seconds waited, or
    None if it was still busy after ``limit_s``."""
    t0 = time.monotonic()
    last, since = proc_status(pid)["ticks"], time.monotonic()
    while time.monotonic() - t0 < limit_s:
        time.sleep(0.25)
        ticks = proc_status(pid)["ticks"]
        if ticks != last:
            last, since = ticks, time.monotonic()
        elif time.monotonic() - since >= IDLE_S:
            return round(time.monotonic() - t0 - IDLE_S, 1)
    return None


def serving(client: Client, key: str, node: int, timeout_s: float = 60.0) -> None:
    """Until ``node`` answers a status request with ``key``'s chosen value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for s in client.status(key, timeout_s=0.2):
            if s.id == node and s.reachable and any(k.chosen for k in s.keys):
                return
    raise RuntimeError(f"node {node} did not serve {key} within {timeout_s} s")


def _warm_bytecode(work: Path) -> None:
    """Node 0's modules compiled and cached before its timed start (nodes 1 and 2 did
    it for the rest), as an installed package's are."""
    subprocess.run(zpaxos_cmd("node", "--help"), env=cached_bytecode_env(work), cwd=work,
                   capture_output=True, timeout=60)
    subprocess.run([sys.executable, "-c", "import zpaxos.runtime.node"],
                   env=cached_bytecode_env(work), cwd=work, capture_output=True, timeout=60)


def run_million(n: int, proposals: int = 2000, missed: int = MISSED) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="zpaxos-million-") as tmp:
        work = Path(tmp)
        path = write_config(work / "cluster.ini", [("127.0.0.1", p) for p in free_ports(3)],
                            log_level="WARNING", value_files="", keys_dir=str(work / "keys"))
        cluster = load_config(path)
        dirs = [work / "data" / f"node{i}" for i in range(3)]  # as write_config names them
        build_s = [round(build(d, n), 1) for d in dirs]
        db_mb = round((dirs[0] / "state.db").stat().st_size / 2**20, 1)
        caught_up_cursors(dirs)
        with LocalCluster(path, work, range(3), env=cached_bytecode_env(work)) as local:
            local.start(1)
            local.start(2)
            _warm_bytecode(work)
            with Client(cluster, null_log("million")) as client:
                opts = options_from(cluster.proposer, timeout_s=60.0)
                # Node 0 is stopped while nodes 1 and 2 decide ``missed`` fresh keys.
                gone = [(f"missed-{i}", b"missed") for i in range(missed)]
                made = sum(o.chosen is not None for _, o, _ in client.stream(gone, 64, opts))
                # Node 0's start is a restart over N keys: its database exists.
                t0 = time.perf_counter()
                local.start(0)
                listening_s = time.perf_counter() - t0
                serving(client, key_of(n // 2), 0)
                restart_s = time.perf_counter() - t0
                caught = wait_caught_up(client, 0, key_of(0), n + made)
                caught_up_s = time.perf_counter() - t0 if caught else None
                pid = local.procs[0].pid
                after_restart = proc_status(pid)
                rng = random.Random(n)
                old = [(key_of(rng.randrange(n)), b"late") for _ in range(proposals // 2)]
                new = [(f"fresh-{i}", b"new") for i in range(proposals - len(old))]
                chosen_before = sum(o.chosen is not None and o.chosen != b"late"
                                    for _, o, _ in client.stream(old, 32, opts))
                fresh = sum(o.chosen == b"new" for _, o, _ in client.stream(new, 32, opts))
                sync_s = wait_idle(pid)
                end = proc_status(pid)
    return {
        "keys": n, "db_mb": db_mb, "build_s": build_s,
        "restart_listening_s": round(listening_s, 3), "restart_serving_s": round(restart_s, 3),
        "missed": made, "caught_up_s": None if caught_up_s is None else round(caught_up_s, 3),
        "rss_after_restart_mb": round(after_restart["VmRSS"] / 1024, 1),
        "rss_mb": round(end["VmRSS"] / 1024, 1), "rss_peak_mb": round(end["VmHWM"] / 1024, 1),
        "old_keys_answered": chosen_before, "fresh_keys_chosen": fresh,
        "proposals": proposals, "sync_after_restart_s": sync_s,
    }


def report(r: dict[str, Any]) -> str:
    return "\n".join([
        f"a node with {r['keys']:,} decided keys (database {r['db_mb']} MB, built in "
        f"{', '.join(map(str, r['build_s']))} s per node through SqliteStore)",
        f"  restart to listening:  {r['restart_listening_s']:.3f} s",
        f"  restart to serving:    {r['restart_serving_s']:.3f} s   (target <= 2 s: its first "
        f"status reply for an old key)",
        "  caught up:             " + (
            f"{r['caught_up_s']:.3f} s   (target <= 10 s: from its start until it knew the "
            f"{r['missed']:,} decisions made while it was stopped)"
            if r["caught_up_s"] is not None else
            f"not within {CAUGHT_UP_LIMIT_S:.0f} s ({r['missed']:,} decisions missed)"),
        f"  RSS after restart:     {r['rss_after_restart_mb']} MB",
        f"  RSS after serving:     {r['rss_mb']} MB, peak {r['rss_peak_mb']} MB   (target <= "
        f"200 MB; {r['proposals']} proposals, half on old keys, and the sync with both peers, "
        + (f"done in {r['sync_after_restart_s']} s)" if r["sync_after_restart_s"] is not None
           else f"still walking the keys after {SYNC_LIMIT_S:.0f} s)"),
        f"  old keys answered with their decision: {r['old_keys_answered']}, fresh keys "
        f"chosen: {r['fresh_keys_chosen']}",
    ])
