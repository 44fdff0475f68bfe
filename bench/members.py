"""Membership changes under load, and adding a node to a cluster that holds many keys.

    .venv/bin/python bench/members.py                    # both parts
    .venv/bin/python bench/members.py --load 1000000     # part 1 only (at most N proposals)
    .venv/bin/python bench/members.py --keys 100000      # part 2 only: decided keys

Part 1: a 3-node cluster on free loopback ports (nodes logging at WARNING), one Client
proposing fresh keys with 64 in flight until a second after the changes; meanwhile
``zpaxos members add 3`` (node 3 started with --join when the command waits for it), then
``zpaxos members remove 0``. It reports the proposals that failed (target: none) and the
longest gap between two decisions while a change ran, beside the round timeout (target: at
most one).

Part 2: three data directories built with ``--keys`` decided keys each (as ``zpaxos bench
--million`` builds them), the nodes started, then ``zpaxos members add 3`` timed from its
start to its last line, node 3 started empty with --join when the command waits for it
(target: within 30 s for 100,000 keys).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from zpaxos.lab.launcher import LocalCluster, child_env, free_ports, write_config, zpaxos_cmd
from zpaxos.runtime.client import Client
from zpaxos.runtime.config import load_config

IN_FLIGHT = 64


def command(c: LocalCluster, grow: Path, *args: str) -> float:
    """Run ``zpaxos members ARGS`` to its end (starting node 3 when it waits for it);
    the seconds it took."""
    t0 = time.monotonic()
    p = subprocess.Popen(zpaxos_cmd("members", *args, "--config", str(c.config)), cwd=c.dir,
                         env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    assert p.stderr is not None
    for line in p.stderr:
        if "node3 to start" in line and not c.is_running(3):
            c.start(3, None, "--join", config=grow)
    if p.wait() != 0:
        raise SystemExit(f"zpaxos members {' '.join(args)} failed")
    return time.monotonic() - t0


def lab(root: Path, name: str) -> tuple[LocalCluster, Path]:
    d = root / name
    d.mkdir()
    eps = [("127.0.0.1", p) for p in free_ports(4)]
    cfg = write_config(d / "cluster.ini", eps[:3], log_level="WARNING", value_files="")
    grow = write_config(d / "grow.ini", eps, log_level="WARNING", value_files="")
    return LocalCluster(cfg, d, range(3)), grow


def under_load(root: Path, n: int) -> dict[str, Any]:
    c, grow = lab(root, "load")
    stamps: list[float] = []
    failed: list[str] = []
    with c:
        c.start_all()

        stop = threading.Event()

        def keys() -> Any:
            for i in range(n):
                if stop.is_set():
                    return
                yield f"b-{i}", f"v{i}"

        def go() -> None:
            with Client(load_config(c.config), fast=False) as client:
                items = keys()
                for _, o, _ in client.stream(items, IN_FLIGHT):
                    stamps.append(time.monotonic())
                    if o.chosen is None:
                        failed.append(o.reason)

        t = threading.Thread(target=go)
        t.start()
        while len(stamps) < 200:
            time.sleep(0.01)
        windows = []
        for args in (("add", "3", "--host", "127.0.0.1",
                      "--port", str(load_config(grow).node(3).port)), ("remove", "0")):
            t0 = time.monotonic()
            took = command(c, grow, *args)
            windows.append((args[0], t0, t0 + took))
        time.sleep(1.0)  # decisions after the last change, then the load stops
        stop.set()
        t.join()
    gaps, during = {}, {}
    for what, a, b in windows:
        inside = [s for s in stamps if a <= s <= b]
        during[what] = len(inside)
        if not stamps or stamps[-1] < b:
            raise SystemExit(f"the load ended before the {what} did: give --load more")
        # from the last decision before the change to the first after it, too
        edge = [max(s for s in stamps if s < a), *inside, min(s for s in stamps if s > b)]
        gaps[what] = max(y - x for x, y in zip(edge, edge[1:], strict=False))
    return {"proposals": len(stamps), "failed": len(failed), "gaps": gaps, "during": during,
            "changes": {w: b - a for w, a, b in windows},
            "round_timeout_s": load_config(c.config).proposer.round_timeout_s}


def big_add(root: Path, keys: int) -> dict[str, Any]:
    from zpaxos.lab.million import build, caught_up_cursors

    c, grow = lab(root, "big")
    dirs = [c.dir / "data" / f"node{i}" for i in range(3)]
    t0 = time.monotonic()
    for d in dirs:
        build(d, keys)
    caught_up_cursors(dirs)
    built = time.monotonic() - t0
    with c:
        c.start_all()
        took = command(c, grow, "add", "3", "--host", "127.0.0.1",
                       "--port", str(load_config(grow).node(3).port))
        with Client(load_config(c.config), fast=False) as client:
            held = client.ask_members().get(3)
    if held is None or held.decided < keys:
        raise SystemExit(f"node 3 holds {held.decided if held else 'no'} decided keys")
    return {"keys": keys, "built_s": built, "add_s": took, "held": held.decided}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load", type=int, default=None,
                    help="at most this many proposals in part 1 (it stops 1 s after the changes)")
    ap.add_argument("--keys", type=int, default=None, help="decided keys of part 2")
    a = ap.parse_args()
    both = a.load is None and a.keys is None
    with tempfile.TemporaryDirectory(prefix="zpaxos-members-") as tmp:
        if both or a.load:
            r = under_load(Path(tmp), a.load or 1_000_000)
            print(f"under load ({IN_FLIGHT} in flight): {r['proposals']} proposals, "
                  f"{r['failed']} failed; add took {r['changes']['add']:.1f} s "
                  f"({r['during']['add']} decisions), longest gap "
                  f"{r['gaps']['add'] * 1000:.0f} ms; remove took {r['changes']['remove']:.1f}"
                  f" s ({r['during']['remove']} decisions), longest gap "
                  f"{r['gaps']['remove'] * 1000:.0f} ms (round timeout "
                  f"{r['round_timeout_s'] * 1000:.0f} ms)")
        if both or a.keys:
            r = big_add(Path(tmp), a.keys or 100_000)
            print(f"add to a cluster of {r['keys']:,} decided keys: {r['add_s']:.1f} s, node 3 "
                  f"then holds {r['held']:,} (building the three data directories took "
                  f"{r['built_s']:.1f} s)")


if __name__ == "__main__":
    main()
