"""Fill one node's disk, then free space and restart it: run inside a mount namespace.

``unshare -m --propagation private python -m tests.diskfull_driver WORKDIR`` (as root).
The mount exists only in that namespace, so it goes away with it, whatever happens; the
test (tests/test_diskfull.py) reads the JSON line this prints last.

Steps (issue 27's reproduction): node0's data directory on a 512 KiB tmpfs, three nodes,
200-byte values proposed on distinct keys until node0 stops; then what its files hold
(the journal's records against its size, the marker against the records), a remount to
64 MiB, and node0 started again: it must start as the same node, with every decision it
had learned.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from zpaxos.lab.launcher import LocalCluster, NodeStartError, free_ports, write_config
from zpaxos.runtime.client import Client
from zpaxos.runtime.config import load_config
from zpaxos.runtime.datadir import Marker
from zpaxos.runtime.journal import HEADER_SIZE, JOURNAL_NAME, Journal

TMPFS_SIZE = "512k"
VALUE = "v" * 200
CHUNK = 64  # proposals per stream call; node0 is checked between calls
MAX_KEYS = 20_000  # gives up (and says so) if the disk never fills


def journal_facts(data: Path) -> dict[str, Any]:
    """The journal as a restart reads it: its size, its whole records' last byte and last
    commit, and the marker's commit count."""
    path = data / JOURNAL_NAME
    raw = path.read_bytes()
    incarnation = raw[5:21]
    j = Journal(data)
    records = j.read(incarnation, "(test)")
    j.close()
    marker = Marker(data).read()
    db = sqlite3.connect(data / "state.db")
    try:
        db_seq = int(db.execute("SELECT value FROM meta WHERE name='commit_seq'").fetchone()[0])
    finally:
        db.close()
    last_seq = records[-1].seq if records else None
    return {"size": len(raw), "records_end": j.end, "header": HEADER_SIZE,
            "last_seq": last_seq, "db_seq": db_seq,
            "durable": max(db_seq, last_seq or 0),
            "marker": marker.commits if marker else None}


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def main(workdir: Path) -> dict[str, Any]:
    data = workdir / "data" / "node0"
    data.mkdir(parents=True)
    mount("-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(data))
    config = write_config(workdir / "cluster.ini",
                          [("127.0.0.1", p) for p in free_ports(3)], log_level="INFO")
    out: dict[str, Any] = {}
    with LocalCluster(config, workdir, range(3)) as cluster:
        cluster.start_all()
        decided: list[str] = []
        with Client(load_config(config)) as client:
            n = 0
            while cluster.is_running(0) and n < MAX_KEYS:
                items = [(f"k{n + i}", VALUE) for i in range(CHUNK)]
                for index, outcome, _ in client.stream(items, concurrency=16):
                    if outcome.chosen is not None:
                        decided.append(items[index][0])
                n += CHUNK
        out["proposed"], out["decided"] = n, len(decided)
        p = cluster.procs[0]
        out["code"] = p.wait(timeout=30) if n < MAX_KEYS else None
        out["stderr"] = p.stderr.read() if p.stderr else ""
        cluster.kill(0)
        mount("-o", "remount,size=64m", str(data))  # (SQLite needs room to read a WAL)
        out["before"] = journal_facts(data)
        try:
            cluster.start(0)
            out["restarted"], out["restart_error"] = True, ""
        except NodeStartError as e:
            out["restarted"], out["restart_error"] = False, str(e)
        if out["restarted"]:
            # Every key node0 had learned is still there (a sample, by status).
            status = cluster.status(decided[0])
            out["first_key_on_node0"] = next(
                (nd["keys"].get(decided[0]) for nd in status["nodes"] if nd["id"] == 0), None)
            out["after"] = journal_facts_running(data)
    return out


def journal_facts_running(data: Path) -> dict[str, Any]:
    """What the restarted node's marker says (it folded the journal at start)."""
    marker = Marker(data).read()
    return {"marker": marker.commits if marker else None}


if __name__ == "__main__":
    result = main(Path(sys.argv[1]))
    print(json.dumps(result))
