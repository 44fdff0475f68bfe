"""Export and import rates, and what a key and a register tombstone cost on disk.

    .venv/bin/python bench/transfer.py --keys 100000 --registers 10000

Two temporary 3-node clusters on free loopback ports (nodes logging at WARNING, no value
files). It decides N keys (16-byte values, keys ``item-<i>``) in the first through a
Client, runs ``zpaxos export --out`` and ``zpaxos import`` (the real commands, whole
processes) into the second, and times both. Disk: node 0's ``state.db`` + WAL + journal
after a clean stop (the journal folded), before and after the keys, and again after R
registers were set then deleted (their tombstones), divided by N and by R.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zpaxos.client import Client, RegOp, load_config
from zpaxos.lab.launcher import LocalCluster, child_env, free_ports, write_config, zpaxos_cmd
from zpaxos.protocol.register import DELETE, SET


def disk(node_dir: Path) -> int:
    return sum(p.stat().st_size for p in node_dir.iterdir()
               if p.name.startswith(("state.db", "state.journal")))


def cluster(root: Path, name: str) -> LocalCluster:
    d = root / name
    d.mkdir()
    cfg = write_config(d / "cluster.ini", [("127.0.0.1", p) for p in free_ports(3)],
                       log_level="WARNING", value_files="")
    return LocalCluster(cfg, d, range(3))


def restart(c: LocalCluster) -> None:
    """Stop every node (a clean stop folds the journal into state.db) and start again."""
    for i in range(3):
        c.stop(i)
    c.start_all()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--registers", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src, dst = cluster(root, "src"), cluster(root, "dst")
        with src, dst:
            src.start_all()
            dst.start_all()
            restart(src)
            empty = disk(src.dir / "data/node0")
            with Client(load_config(src.config)) as c:
                t0 = time.monotonic()
                items = ((f"item-{i}", f"value-{i:010d}") for i in range(args.keys))
                bad = sum(o.chosen is None for _, o, _ in c.stream(items, 256))
                load_s = time.monotonic() - t0
            assert bad == 0, f"{bad} proposals chose nothing"
            restart(src)
            with_keys = disk(src.dir / "data/node0")
            out = root / "export.jsonl"
            t0 = time.monotonic()
            r = subprocess.run(zpaxos_cmd("export", "--out", str(out), "--config",
                                          str(src.config)), cwd=src.dir, env=child_env(),
                               capture_output=True, text=True)
            export_s = time.monotonic() - t0
            assert r.returncode == 0, r.stderr
            lines = sum(1 for _ in open(out))
            t0 = time.monotonic()
            r = subprocess.run(zpaxos_cmd("import", str(out), "--config", str(dst.config)),
                               cwd=dst.dir, env=child_env(), capture_output=True, text=True)
            import_s = time.monotonic() - t0
            assert r.returncode == 0, r.stderr
            import_line = r.stderr.strip().splitlines()[-1]
            with Client(load_config(src.config)) as c:
                names = [f"reg-{i}" for i in range(args.registers)]
                for op in (SET, DELETE):
                    res = c.registers([(n, RegOp(op, b"x" * 16 if op == SET else None))
                                       for n in names], concurrency=256)
                    assert all(x.status == "ok" for x in res)
            restart(src)
            with_tombstones = disk(src.dir / "data/node0")
    report = {
        "keys": args.keys, "load_per_s": round(args.keys / load_s),
        "export_lines": lines, "export_s": round(export_s, 2),
        "export_per_s": round(lines / export_s), "import_s": round(import_s, 2),
        "import_per_s": round(lines / import_s), "import_summary": import_line,
        "disk_empty_bytes": empty, "disk_with_keys_bytes": with_keys,
        "bytes_per_key": round((with_keys - empty) / args.keys, 1),
        "registers": args.registers,
        "bytes_per_tombstone": round((with_tombstones - with_keys) / max(1, args.registers), 1),
    }
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
