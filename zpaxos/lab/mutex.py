"""A mutual-exclusion checker on real processes: lock holders writing to a fenced resource.

A **fenced resource** (one process) accepts a write only with a fencing token at least
the highest it has accepted, and records every attempt: when, the token, the holding
that sent it, accepted or not. **Workers** (each a process group) contend for one lock
against a real cluster, and while they hold it write to the resource, again and again,
with the lock's token:

* ``cli`` workers run ``zpaxos lock NAME --ttl S -- python -m zpaxos.lab.mutex writer ...``
  in a loop: the writer takes ``$ZPAXOS_FENCING_TOKEN`` and writes until it is stopped;
  ``zpaxos lock`` stops it when the lease is lost;
* ``api`` workers hold ``client.lock(NAME, ttl=S)`` in-process and, while ``valid()``,
  do some work and then write (a pause in between sends a stale write: the token must
  refuse it). ``--break token-reused`` makes such a worker keep the previous holder's
  token when it takes over an expired lease (the broken variant the check must catch).

Faults hit the current holder (the resource knows who wrote last): SIGKILL (then a new
worker), SIGSTOP past the TTL (then SIGCONT), or, given a ``cut`` callable (the test's
loopback proxy, tests/nemesis/), its links to the cluster cut past the TTL.

The check (:func:`check`), over the resource's record: no token accepted from two
holdings; holdings never interleave (once another holding's write is accepted, an older
one is never accepted again); each holding's token is above the one before; and a holder
cut off from the cluster (not paused: it runs, and its lease tells it when to stop) makes
no write attempt once the next holding's first write was accepted.

    python -m zpaxos.lab.mutex run --seconds 40            # a run with kill and stop faults
    python -m zpaxos.lab.mutex run --break token-reused    # the check must fail
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Client as Conn
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

AUTHKEY = b"zpaxos-mutex"
WORK_S = 0.02  # between a holder's lease check and its write: the work it does
HOLD_S = (0.3, 1.5)  # how long a worker keeps the lock each time
FAULT_TTLS = 2.0  # a stop or a cut lasts this many TTLs
BREAKS = ("token-reused",)


# ---------------------------------------------------------------- the fenced resource


def serve_resource(port: int, log: Path) -> None:
    """Accept a write iff its token >= the highest accepted; record every attempt."""
    lock = threading.Lock()
    state: dict[str, Any] = {"highest": 0, "last": None}
    out = open(log, "a", encoding="utf-8")  # noqa: SIM115 - for the process's life

    def serve(conn: Connection) -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] == "last":
                with lock:
                    conn.send(state["last"])
                continue
            _, token, holder = msg
            with lock:
                ok = token >= state["highest"]
                if ok:
                    state["highest"], state["last"] = token, (holder, time.monotonic())
                out.write(json.dumps({"t": time.monotonic(), "token": token,
                                      "holder": holder, "accepted": ok}) + "\n")
                out.flush()
            conn.send(ok)

    listener = Listener(("127.0.0.1", port), authkey=AUTHKEY)
    print("ready", flush=True)
    while True:
        threading.Thread(target=serve, args=(listener.accept(),), daemon=True).start()


def resource(port: int) -> Connection:
    return Conn(("127.0.0.1", port), authkey=AUTHKEY)


def write(conn: Connection, token: int, holder: str) -> bool:
    conn.send(("write", token, holder))
    return bool(conn.recv())


# ---------------------------------------------------------------- the workers


def writer(port: int, holder: str, seconds: float) -> int:
    """``zpaxos lock``'s command: write with $ZPAXOS_FENCING_TOKEN until ``seconds`` are
    up (exit 0) or a write is refused (exit 3: a newer holder exists)."""
    token = int(os.environ["ZPAXOS_FENCING_TOKEN"])
    conn = resource(port)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(WORK_S)
        if not write(conn, token, holder):
            return 3
    return 0


def cli_worker(config: str, name: str, ttl: float, port: int, me: str, seconds: float) -> None:
    rng = random.Random(me)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        hold = rng.uniform(*HOLD_S)
        subprocess.run([sys.executable, "-m", "zpaxos", "lock", name, "--ttl", str(ttl),
                        "--config", config, "--timeout", str(max(1.0, end - time.monotonic())),
                        "--", sys.executable, "-m", "zpaxos.lab.mutex", "writer", str(port),
                        f"{me}.{n}", str(hold)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def _break_token(kind: str | None) -> None:
    """Plant a broken variant in this process's lock (a worker's, never the library's
    code): ``token-reused``: a take-over keeps the expired holder's token."""
    if kind != "token-reused":
        return
    import msgspec

    from zpaxos.protocol import lease
    from zpaxos.runtime import locks
    right = lease.acquired

    def reused(r: lease.LockRecord, version: int, holder: str, owner: str,
               ttl: float) -> lease.LockRecord:
        new = right(r, version, holder, owner, ttl)
        return msgspec.structs.replace(new, token=r.token) if r.held else new

    locks.acquired = reused  # type: ignore[attr-defined]  # looked up at each call


def api_worker(config: str, name: str, ttl: float, port: int, me: str, seconds: float,
               broken: str | None) -> None:
    from zpaxos.runtime.client import Client
    from zpaxos.runtime.config import load_config
    from zpaxos.runtime.locks import LockTimeout
    from zpaxos.runtime.log import null_log

    _break_token(broken)
    rng = random.Random(me)
    conn = resource(port)
    end = time.monotonic() + seconds
    with Client(load_config(config), null_log("mutex")) as c:
        n = 0
        while time.monotonic() < end:
            n += 1
            held = c.lock(name, ttl=ttl, timeout=max(1.0, end - time.monotonic()))
            try:
                token = held.acquire()
            except (LockTimeout, ConnectionError):
                continue
            stop = time.monotonic() + rng.uniform(*HOLD_S)
            while time.monotonic() < stop and held.valid():
                time.sleep(WORK_S)  # the work between the check and the write
                if not write(conn, token, f"{me}.{n}"):
                    break
            held.release()


def scenario_holder(config: str, name: str, ttl: float, port: int, me: str, work_s: float,
                    for_s: float) -> int:
    """Scenario 12's holders (the lock's holder named ``me``; the cluster's log): take
    the lock and, for ``for_s`` while the lease is valid, work ``work_s`` then write,
    checking the lease *before* the work; then release (exit 0). One paused in the
    middle of its work past the TTL wakes and writes with its old token: exit 3 when the
    resource refuses it. It prints ``holding TOKEN``, then ``done``, ``refused TOKEN``
    or ``lost TOKEN`` (paused between a write and its check)."""
    from zpaxos.naming import proposer_name
    from zpaxos.runtime.client import Client
    from zpaxos.runtime.config import load_config
    from zpaxos.runtime.locks import Lock
    from zpaxos.runtime.log import setup_logging

    conn = resource(port)
    cluster, cid = load_config(config), os.urandom(16)
    log = setup_logging(cluster.log, proposer_name(cid), stderr=False)
    with Client(cluster, log, client_id=cid) as c:
        held = Lock(c, name, ttl, holder=me)
        with held as token:
            print(f"holding {token}", flush=True)
            end = time.monotonic() + for_s
            while held.valid():
                if time.monotonic() >= end:
                    print("done", flush=True)
                    return 0
                time.sleep(work_s)  # the lease was valid when the work began
                if not write(conn, token, me):
                    print(f"refused {token}", flush=True)
                    return 3
            print(f"lost {token}", flush=True)
            return 4


# ---------------------------------------------------------------- the check


@dataclass(frozen=True)
class Attempt:
    t: float
    token: int
    holder: str
    accepted: bool


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    attempts: int = 0
    accepted: int = 0
    refused: int = 0  # stale writes the token refused
    holdings: int = 0  # holdings that had a write accepted


def read_log(path: Path) -> list[Attempt]:
    return [Attempt(**json.loads(line)) for line in path.read_text().splitlines() if line]


def check(attempts: Iterable[Attempt], cut: Iterable[str] = ()) -> Verdict:
    """The resource's record, in the order it took the writes (``cut``: holdings that
    were cut off from the cluster while they held the lock)."""
    v = Verdict()
    owner: dict[int, str] = {}  # token -> the holding it was accepted from
    order: list[tuple[str, int, float]] = []  # holdings as accepted: holder, token, first
    done: set[str] = set()  # holdings another holding's accepted write came after
    seen: set[tuple[int, str]] = set()  # (token, holder) pairs already reported
    for a in attempts:
        v.attempts += 1
        if not a.accepted:
            v.refused += 1
            continue
        v.accepted += 1
        if owner.setdefault(a.token, a.holder) != a.holder and (a.token, a.holder) not in seen:
            seen.add((a.token, a.holder))
            v.violations.append(f"token {a.token} accepted from two holders: "
                                f"{owner[a.token]} and {a.holder}")
        if order and order[-1][0] == a.holder:
            continue
        if a.holder in done:
            v.violations.append(f"t={a.t:.3f} {a.holder} (token {a.token}) accepted again "
                                f"after {order[-1][0]} (token {order[-1][1]})")
        elif order and a.token <= order[-1][1]:
            v.violations.append(f"{a.holder}'s token {a.token} is not above the last "
                                f"holder's, {order[-1][0]}'s {order[-1][1]}")
        if order:
            done.add(order[-1][0])
        order.append((a.holder, a.token, a.t))
    v.holdings = len({h for h, _, _ in order})
    v.violations += _cut_holders_stopped(list(attempts), order, set(cut))
    return v


def _cut_holders_stopped(attempts: list[Attempt], order: list[tuple[str, int, float]],
                         cut: set[str]) -> list[str]:
    """A holder cut off from the cluster runs on: its lease must stop it before the next
    holding begins (no attempt after the next holding's first accepted write)."""
    out = []
    for i, (holder, _, _) in enumerate(order[:-1]):
        if holder not in cut:
            continue
        nxt, start = order[i + 1][0], order[i + 1][2]
        late = [a for a in attempts if a.holder == holder and a.t > start]
        if late:
            out.append(f"{holder}, cut off, still wrote at t={late[0].t:.3f} after {nxt} "
                       f"began at t={start:.3f}")
    return out


# ---------------------------------------------------------------- the lab


class MutexLab:
    """The resource and the workers (each in a process group of its own), for a cluster
    whose clients' config is ``configs[k]`` for worker k."""

    def __init__(self, workdir: Path, configs: list[Path], kinds: list[str], lock: str,
                 ttl: float, broken: str | None = None) -> None:
        from zpaxos.lab.launcher import child_env, free_ports

        self.dir, self.configs, self.kinds = workdir, configs, kinds
        self.lock, self.ttl, self.broken = lock, ttl, broken
        self.env = child_env()
        self.port = free_ports(1)[0]
        self.log = workdir / "resource.jsonl"
        self.res = subprocess.Popen([sys.executable, "-m", "zpaxos.lab.mutex", "resource",
                                     str(self.port), str(self.log)], stdout=subprocess.PIPE,
                                    text=True, env=self.env)
        if self.res.stdout is None or self.res.stdout.readline().strip() != "ready":
            self.res.kill()
            self.res.wait()
            raise RuntimeError("the fenced resource did not start")
        self.conn = resource(self.port)
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        self.born: dict[int, int] = {}  # worker -> how many times it was started
        self.cut_holdings: list[str] = []
        self.faults: list[str] = []

    def start(self, k: int, seconds: float) -> None:
        self.born[k] = self.born.get(k, 0) + 1
        me = f"w{k}-{self.born[k]}"
        args = [self.kinds[k] + "-worker", str(self.configs[k]), self.lock, str(self.ttl),
                str(self.port), me, str(seconds)]
        if self.kinds[k] == "api" and self.broken:
            args.append(self.broken)
        self.workers[k] = subprocess.Popen([sys.executable, "-m", "zpaxos.lab.mutex", *args],
                                           env=self.env, cwd=self.dir, start_new_session=True,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def holder(self, kind: str = "", timeout_s: float = 20.0) -> tuple[int, str] | None:
        """The worker holding the lock now (of ``kind``, if given), and its holding: the
        last one the resource accepted a write from, if that was just now and by a worker
        still running."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.conn.send(("last",))
            last = self.conn.recv()
            if last is not None and time.monotonic() - last[1] < 2 * WORK_S:
                worker = last[0].split(".")[0]  # "w<k>-<incarnation>"
                k = int(worker.split("-")[0][1:])
                if worker == f"w{k}-{self.born[k]}" and self.workers[k].poll() is None \
                        and kind in ("", self.kinds[k]):
                    return k, last[0]
            time.sleep(0.005)
        return None

    def signal(self, k: int, sig: int) -> None:
        try:
            os.killpg(self.workers[k].pid, sig)
        except ProcessLookupError:
            pass

    def fault(self, kind: str, seconds: float, cut: Callable[[int, bool], None] | None,
              ) -> None:
        """Hit the current holder: "kill", "stop" or "cut" (past the TTL); "stop-api" and
        "stop-cli" wait for a holder of that kind of worker."""
        kind, _, of = kind.partition("-")
        found = self.holder(of)
        if found is None:
            self.faults.append(f"{kind}: no holder")
            return
        k, holding = found
        self.faults.append(f"{kind} {holding}")
        if kind == "kill":
            self.signal(k, signal.SIGKILL)
            self.workers[k].wait()
            self.start(k, seconds)
            return
        if kind == "cut":
            assert cut is not None
            self.cut_holdings.append(holding)
            cut(k, True)
        else:
            self.signal(k, signal.SIGSTOP)
        time.sleep(FAULT_TTLS * self.ttl)
        if kind == "cut":
            assert cut is not None
            cut(k, False)
        else:
            self.signal(k, signal.SIGCONT)

    def verdict(self) -> Verdict:
        return check(read_log(self.log), self.cut_holdings)

    def close(self) -> None:
        for k, p in self.workers.items():
            if p.poll() is None:
                self.signal(k, signal.SIGCONT)
                self.signal(k, signal.SIGKILL)
            p.wait()
        self.conn.close()
        self.res.kill()
        self.res.wait()


def run(workdir: Path, kinds: list[str], faults: list[str], ttl: float = 1.5,
        broken: str | None = None, configs: list[Path] | None = None,
        cut: Callable[[int, bool], None] | None = None,
        cluster_config: Path | None = None) -> tuple[Verdict, list[str]]:
    """A 3-node cluster (``cluster_config``'s, else a new one on free ports), one worker
    of each of ``kinds``, the ``faults`` one after another on the holder of the moment;
    then the check. ``configs``: each worker's client config (default: the cluster's)."""
    from zpaxos.lab.launcher import LocalCluster, free_ports, write_config

    main_cfg = cluster_config or write_config(
        workdir / "cluster.ini", [("127.0.0.1", p) for p in free_ports(3)],
        log_level="WARNING", value_files="")
    cfgs = configs or [main_cfg] * len(kinds)
    seconds = len(faults) * (FAULT_TTLS + 2.5) * ttl + 8.0  # the workers' lifetime
    with LocalCluster(main_cfg, workdir, range(3)) as cluster:
        cluster.start_all()
        lab = MutexLab(workdir, cfgs, kinds, "mutex", ttl, broken)
        try:
            for k in range(len(kinds)):
                lab.start(k, seconds)
            time.sleep(2 * ttl)
            for kind in faults:
                lab.fault(kind, seconds, cut)
                time.sleep(1.5 * ttl)  # a hand-over or two between faults
            for p in lab.workers.values():
                p.wait(timeout=seconds + 60)
            return lab.verdict(), lab.faults
        finally:
            lab.close()


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["resource"]:
        serve_resource(int(args[1]), Path(args[2]))
    if args[:1] == ["writer"]:
        return writer(int(args[1]), args[2], float(args[3]))
    if args[:1] == ["cli-worker"]:
        cli_worker(args[1], args[2], float(args[3]), int(args[4]), args[5], float(args[6]))
        return 0
    if args[:1] == ["scenario-holder"]:
        return scenario_holder(args[1], args[2], float(args[3]), int(args[4]), args[5],
                               float(args[6]), float(args[7]))
    if args[:1] == ["api-worker"]:
        api_worker(args[1], args[2], float(args[3]), int(args[4]), args[5], float(args[6]),
                   args[7] if len(args) > 7 else None)
        return 0
    ap = argparse.ArgumentParser(prog="python -m zpaxos.lab.mutex",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["run"])
    ap.add_argument("--workers", default="cli,api,cli,api", help="kinds, comma-separated")
    ap.add_argument("--faults", default="stop-api,kill,stop-cli,kill",
                    help="kill, stop, stop-api, stop-cli (comma-separated; cut needs the proxy)")
    ap.add_argument("--ttl", type=float, default=1.5)
    ap.add_argument("--break", dest="broken", choices=BREAKS, default=None)
    a = ap.parse_args(args)
    kinds = a.workers.split(",")
    if a.broken:
        kinds = ["api"] * len(kinds)  # the broken variant lives in the api workers
    with tempfile.TemporaryDirectory(prefix="zpaxos-mutex-") as d:
        v, done = run(Path(d), kinds, a.faults.split(","), a.ttl, a.broken)
    print(f"faults: {', '.join(done)}")
    print(f"{v.attempts} write attempts, {v.accepted} accepted, {v.refused} refused by their "
          f"token, {v.holdings} holdings")
    for line in v.violations[:10]:
        print(f"VIOLATION: {line}")
    return 1 if v.violations else 0


if __name__ == "__main__":
    sys.exit(main())
