"""What many watchers cost the writes: one register's write rate with 0 and 1,000 watchers.

    .venv/bin/python bench/watch_load.py [--watchers 1000] [--processes 4] [--seconds 2]
                                         [--rounds 6] [--full-reads] [--read-gap S]
                                         [--separate] [--all-first] [--settle S]
                                         [--messages]

A temporary 3-node cluster (fsync on). ``--processes`` watcher processes, each one Client
with one :class:`~zpaxos.runtime.watch.SharedWatch` of register ``watched`` and
``watchers / processes`` subscribers on it (a callback each, which counts the states it
is given): the nodes see one watcher per process, and each process confirms a change with
one read for all its subscribers. The writer (this process, its own Client) sets register
``watched``, one set at a time on the 1-RTT path, in phases of ``--seconds``: ``--rounds``
phases with no watcher process at all (``none``), then, with the watchers started and
watching, ``--rounds`` phases (``watched``), then, the watcher processes gone, ``--rounds``
phases again (``none``): the baseline brackets the watched phases, so a drift of the
machine's load shows as a difference between the two baselines. (Watchers that exist
but are not changing anything are not a baseline: a node's paced notifications owed to
them, and their reads, go on after the writes stop.)

Prints, per phase, the writes per second and their p50 / p99 latency, and the CPU time
the three nodes spent per write; then each round's ratio (its watched phase's rate over
the mean of the same round's two baseline phases: 1.0 is no slowdown; the target is at
least 0.9) as the median, the spread (min-max) and how many rounds met the target; the
nodes' CPU per write both ways (what the watchers cost the cluster, the noise-free
figure: a busy machine disturbs it far less than the rates) and the CPU the watcher
processes used, and how many states the watchers were given.
``--separate``: each watcher is a Client of its own with its own watch (one connection
per watcher and node: what a user with one watcher per process would have), spread over
the ``--processes``, a thread each; the nodes hold ``--watchers`` watches.
``--all-first``: the confirming reads ask every node at once (the way before the reads
asked a quorum first), the A/B of that lever;
``--full-reads``: the watchers confirm with a full round (a write of what they read, the
way before quorum reads), the A/B of that lever;
``--messages``: the nodes serve their metrics, and the messages they received per write
are printed by type and outcome, watched and not (what the watchers send them);
``--read-gap S``: the watchers' least time between two confirming reads (default
zpaxos.runtime.watch.READ_GAP_S; 0: read on every notification).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from msgspec.structs import replace
from prometheus_client.parser import text_string_to_metric_families

from zpaxos.client import Client, load_config
from zpaxos.hosts.watchers import WATCH_LEASE_S
from zpaxos.lab.launcher import LocalCluster, free_ports, write_config
from zpaxos.runtime import watch
from zpaxos.runtime.watch import SharedWatch, WatchState

WATCHED, NONE = "watched", "none"


def _options(c: Client, a: argparse.Namespace) -> Any:
    return replace(c.register_options(one_rtt=False), quorum_reads=not a.full_reads,
                   read_quorum_first=not a.all_first)


def _watcher(config: str, subscribers: int, a: argparse.Namespace, ready: Any,
             stop: Any, out: Any) -> None:
    watch.READ_GAP_S = a.read_gap  # this process's watches (a lever to compare)
    if a.nice:
        os.nice(a.nice)
    if a.separate:
        return _separate(config, subscribers, a, ready, stop, out)
    seen = [0] * subscribers
    with Client(load_config(config)) as c:
        shared = SharedWatch(c, WATCHED, options=_options(c, a))

        def counter(i: int) -> Any:
            def deliver(s: WatchState | BaseException) -> None:
                seen[i] += 1
            return deliver

        for i in range(subscribers):
            shared.add(counter(i))
        shared.start()
        while not any(seen):
            time.sleep(0.01)
        ready.put(1)
        stop.wait()
        shared.stop()
    out.put(sum(seen))


def _separate(config: str, watchers: int, a: argparse.Namespace, ready: Any, stop: Any,
              out: Any) -> None:
    """``watchers`` Clients in this process, each with its own watch on a thread."""
    cluster = load_config(config)
    seen = [0] * watchers
    clients = [Client(cluster) for _ in range(watchers)]

    def run(i: int) -> None:
        # No ``until``: a watch told when to stop wakes every STOP_CHECK_S to ask, and
        # 1,000 of them would cost the machine 5,000 wake-ups a second that a user's
        # ``for state in client.watch(...)`` does not have. The process ends instead.
        for _ in watch.watch(clients[i], WATCHED, options=_options(clients[i], a)):
            seen[i] += 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(watchers)]
    for t in threads:
        t.start()
    while not all(seen):
        time.sleep(0.05)
    ready.put(1)
    stop.wait()
    out.put(sum(seen))
    out.close()
    out.join_thread()  # the count is sent before the process ends
    os._exit(0)  # with its watches mid-poll: the sockets close with the process


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes ``pids`` used so far."""
    ticks = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _messages(ports: list[int]) -> dict[str, float]:
    """The nodes' received-message counters (zpaxos_node_messages), summed over nodes, by
    type and outcome."""
    out: dict[str, float] = {}
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            for family in text_string_to_metric_families(r.read().decode()):
                if family.name != "zpaxos_node_messages":
                    continue
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        k = f"{sample.labels['type']}/{sample.labels['outcome']}"
                        out[k] = out.get(k, 0.0) + sample.value
    return out


def _write(c: Client, key: str, seconds: float) -> tuple[float, float, float]:
    lat: list[float] = []
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        t0 = time.perf_counter()
        r = c.set(key, b"v%d" % n)
        lat.append((time.perf_counter() - t0) * 1000)
        if r.status != "ok":
            raise SystemExit(f"a set failed: {r.status} {r.reason}")
        n += 1
    q = statistics.quantiles(lat, n=100)
    return n / seconds, q[49], q[98]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--full-reads", action="store_true")
    ap.add_argument("--separate", action="store_true")
    ap.add_argument("--all-first", action="store_true")
    ap.add_argument("--read-gap", type=float, default=watch.READ_GAP_S, metavar="S")
    ap.add_argument("--nice", type=int, default=0, metavar="N",
                    help="run the watcher processes at this niceness (19: they use only "
                         "what the cluster and writer leave of the cores)")
    ap.add_argument("--messages", action="store_true",
                    help="print the messages the nodes received per write, by type, "
                         "watched and not (from their metrics)")
    ap.add_argument("--settle", type=float, default=WATCH_LEASE_S, metavar="S",
                    help="wait between the watchers' end and the second baseline "
                         "(default: a watch's lease, so the nodes have forgotten them)")
    a = ap.parse_args()
    if a.processes < 1 or a.watchers < a.processes:
        ap.error("need at least one watcher per process")
    per = [a.watchers // a.processes + (i < a.watchers % a.processes)
           for i in range(a.processes)]
    rows: list[tuple[str, float, float, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="zpaxos-wload-") as tmp:
        ports = free_ports(6)
        path = write_config(Path(tmp) / "cluster.ini", [("127.0.0.1", p) for p in ports[:3]],
                            log_level="WARNING", value_files="",
                            metrics_ports=ports[3:] if a.messages else ())
        with LocalCluster(path, Path(tmp), range(3)) as local:
            local.start_all()
            ctx = multiprocessing.get_context("fork")
            ready, out, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
            procs = [ctx.Process(target=_watcher, daemon=True,
                                 args=(str(path), n, a, ready, stop, out))
                     for n in per]
            nodes = [p.pid for p in local.procs.values()]
            messages: dict[str, dict[str, float]] = {}

            def phases(c: Client, label: str, watchers: list[int]) -> None:
                for _ in range(a.rounds):
                    m0 = _messages(ports[3:]) if a.messages else {}
                    n0, w0 = _cpu_s(nodes), _cpu_s(watchers)
                    rate, p50, p99 = _write(c, WATCHED, a.seconds)
                    n1, w1 = _cpu_s(nodes), _cpu_s(watchers)
                    if a.messages:
                        m1, writes = _messages(ports[3:]), rate * a.seconds
                        per = messages.setdefault(label, {})
                        for k, v in m1.items():
                            per[k] = per.get(k, 0.0) + (v - m0.get(k, 0.0)) / writes / a.rounds
                    rows.append((label, rate, p50, p99,
                                 (n1 - n0) / (rate * a.seconds) * 1e6,
                                 (w1 - w0) / a.seconds))

            with Client(load_config(path)) as c:
                c.set(WATCHED, b"start")
                _write(c, WATCHED, 1.0)  # warm-up: connections, the 1-RTT promise
                phases(c, NONE, [])
                for p in procs:
                    p.start()
                try:
                    for _ in procs:
                        ready.get(timeout=180)
                    _write(c, WATCHED, 1.0)
                    phases(c, WATCHED, [p.pid for p in procs if p.pid is not None])
                    stop.set()
                    given = sum(out.get(timeout=30) for _ in procs)
                finally:
                    stop.set()
                    for p in procs:
                        p.join(10)
                        if p.is_alive():
                            p.kill()
                # The nodes forget the watches of the processes gone (their lease) and
                # have nothing more to tell: the second baseline.
                time.sleep(a.settle)
                phases(c, NONE, [])
    _report(a, rows, given)
    if a.messages:
        print("messages the nodes received per write (all three nodes; none: the mean of "
              "both baselines)")
        for k in sorted(set(messages.get(WATCHED, {})) | set(messages.get(NONE, {}))):
            w, n = messages.get(WATCHED, {}).get(k, 0.0), messages.get(NONE, {}).get(k, 0.0) / 2
            if w or n:
                print(f"  {k:28} {n:7.3f} none  {w:7.3f} watched")


def _report(a: argparse.Namespace, rows: list[tuple[str, float, float, float, float, float]],
            given: int) -> None:
    how = ("a Client and a watch each" if a.separate
           else "a shared watch per process")
    reads = ("full-round" if a.full_reads
             else "quorum (all nodes asked)" if a.all_first else "quorum (a quorum asked first)")
    print(f"{a.watchers} watchers in {a.processes} processes ({how}, {reads} reads, at most "
          f"one per {a.read_gap * 1000:g} ms); one writer, sets, {a.seconds:g} s per phase, "
          f"{a.rounds} rounds")
    for key, rate, p50, p99, node_us, _ in rows:
        print(f"  {key:8} {rate:7.0f} writes/s  p50 {p50:5.2f} ms  p99 {p99:5.2f} ms  "
              f"nodes' CPU {node_us:4.0f} us/write")

    def col(i: int, key: str) -> list[float]:
        return [r[i] for r in rows if r[0] == key]

    def median(i: int, key: str) -> float:
        return statistics.median(col(i, key))

    n = a.rounds
    before, after = col(1, NONE)[:n], col(1, NONE)[n:]
    base = [(b + f) / 2 for b, f in zip(before, after, strict=True)]
    ratios = [w / q for q, w in zip(base, col(1, WATCHED), strict=True)]
    cpu_base = [(b + f) / 2 for b, f in zip(col(4, NONE)[:n], col(4, NONE)[n:], strict=True)]
    cpu = [w / q for q, w in zip(cpu_base, col(4, WATCHED), strict=True)]
    print(f"write rate with {a.watchers} watchers / with none, per round: median "
          f"{statistics.median(ratios):.3f}, spread {min(ratios):.3f}-{max(ratios):.3f}, "
          f"{sum(r >= 0.9 for r in ratios)} of {len(ratios)} rounds at least 0.9 (target); "
          f"medians {median(1, WATCHED):.0f} / {statistics.median(before):.0f} before and "
          f"{statistics.median(after):.0f} after writes/s")
    print(f"nodes' CPU per write: {median(4, WATCHED):.0f} us watched, {median(4, NONE):.0f} "
          f"us with none; per round {statistics.median(cpu):.2f}x (spread "
          f"{min(cpu):.2f}-{max(cpu):.2f}x)")
    print(f"the watcher processes used {median(5, WATCHED):.2f} CPU s/s while the watched "
          f"register changed")
    print(f"states given to the watchers: {given} (each watcher sees coalesced changes)")


if __name__ == "__main__":
    main()
