"""The register simulator: seeded, deterministic, running the real hosts.

It runs on the same simulated world as the write-once simulator (zpaxos/sim/world.py).
The nodes are the real :class:`~zpaxos.hosts.acceptor_host.AcceptorHost` (which routes
register messages to the register rules), each with a "disk" that holds exactly what the
host asked to persist; the clients are the real
:class:`~zpaxos.hosts.register_host.RegisterHost`. A ``random.Random(seed)`` owns the
network: message delays (so messages reorder), losses, duplicates, partitions between
clients and nodes, and node crashes (also between a pass's persist and its sends) with
restarts from the disk. Each client runs a random mix of get, set, compare-and-set (on
the version it last saw, or on a value) and delete over a few keys, with up to two
operations in flight.

A run records the **history**: every operation's call and return in virtual time and its
result. The tests check it with the linearizability checker (zpaxos/sim/lincheck.py); the run
itself checks an acceptor invariant (no acceptor accepts below a promise it made) and,
after the chaos window, liveness: every operation called once the faults are over ends
with a result (not "no quorum").

    python -m zpaxos.sim.regsim --seed 7            # one run, its history's summary
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from msgspec.structs import replace as struct_replace

from zpaxos.hosts.acceptor_host import AcceptorHost
from zpaxos.hosts.addresses import Caller
from zpaxos.hosts.register_host import RegisterHost
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.register import (
    CAS,
    CAS_FAILED,
    CAS_VALUE,
    DELETE,
    GET,
    NO_QUORUM,
    OK,
    SET,
    UNKNOWN,
    RegAcceptor,
    RegisterOptions,
    RegisterProposer,
    RegOp,
    RegResult,
)
from zpaxos.protocol.regmessages import REGISTER_PREFIX
from zpaxos.sim.world import World

INF = float("inf")
PASS_DELAY_S = 0.0005  # a node's pass runs this long after a message lands


@dataclass(frozen=True)
class RegScenario:
    nodes: int = 3
    clients: int = 3
    keys: tuple[str, ...] = ("r0", "r1")
    ops_per_client: int = 25
    inflight: int = 2  # operations in flight per client
    drop: float = 0.05
    dup: float = 0.03
    delay_s: tuple[float, float] = (0.001, 0.03)
    crashes: bool = True
    partitions: bool = True
    chaos_s: float = 2.0  # faults happen only before this virtual time
    think_s: float = 0.02  # mean pause between a client's operations
    one_rtt: bool = True
    options: RegisterOptions = RegisterOptions(round_timeout_s=0.2, timeout_s=10.0,
                                               max_rounds=40, backoff_s=0.02,
                                               backoff_max_s=0.5)
    bound_s: float = 60.0  # every operation ends by chaos_s + bound_s
    # Operations called after the faults must end with a result. Off for impatient
    # clients (small timeouts), which give up under contention: outcome unknown.
    check_liveness: bool = True
    proposer_cls: type[RegisterProposer] = RegisterProposer
    register_cls: type[RegAcceptor] = RegAcceptor


@dataclass(frozen=True)
class HistoryEntry:
    """One operation as the checker sees it (the fields of zpaxos.sim.lincheck.Op)."""

    process: str
    key: str
    kind: str
    call: float
    ret: float | None
    status: str
    version: int = 0
    value: bytes | None = None
    arg: bytes | None = None
    expect_version: int = 0
    expect_value: bytes | None = None


@dataclass
class RegRun:
    seed: int
    history: list[HistoryEntry] = field(default_factory=list)
    no_quorum: int = 0  # operations that ended "no quorum" (nothing written: not in history)
    violations: list[str] = field(default_factory=list)
    messages: int = 0
    fast: int = 0  # operations finished on the 1-RTT path
    end: float = 0.0


class _Client:
    def __init__(self, name: str, host: RegisterHost) -> None:
        self.name = name
        self.host = host
        self.started = 0
        self.running = 0
        self.seen: dict[str, tuple[int, bytes | None]] = {}
        self.calls: dict[int, tuple[float, str, RegOp]] = {}
        self.wake: float | None = None


def run(seed: int, sc: RegScenario = RegScenario()) -> RegRun:
    return _Sim(seed, sc).run()


class _Sim(World):
    def __init__(self, seed: int, sc: RegScenario) -> None:
        self.sc = sc
        self.out = RegRun(seed)
        World.__init__(self, random.Random(seed), range(1, sc.nodes + 1), self._boot)
        self.blocked: set[tuple[int, int]] = set()  # (client index, node) pairs cut off
        self.clients = [
            _Client(f"c{i}", RegisterHost(self.ids, random.Random(self.rng.random()),
                                          self.rng.randbytes(16), sc.proposer_cls))
            for i in range(sc.clients)]
        self.token = 0
        self.opts = struct_replace(sc.options, one_rtt=sc.one_rtt)

    def _boot(self, n: int) -> AcceptorHost:
        return AcceptorHost(n, dict(self.disk[n]), [p for p in range(1, self.sc.nodes + 1)
                                                    if p != n],
                            register_cls=self.sc.register_cls)

    def at(self, t: float, kind: str, payload: Any) -> None:
        self.push(t, kind, payload)

    # ---- the run

    def run(self) -> RegRun:
        sc = self.sc
        for i in range(len(self.clients)):
            for _ in range(sc.inflight):
                self.at(self.rng.uniform(0, 0.05), "op", i)
        if sc.crashes:
            for _ in range(self.rng.randint(1, 3)):
                self.at(self.rng.uniform(0, sc.chaos_s), "crash", self.rng.choice(self.ids))
        if sc.partitions:
            for _ in range(self.rng.randint(1, 3)):
                self.at(self.rng.uniform(0, sc.chaos_s), "cut", None)
        self.at(sc.chaos_s, "calm", None)
        limit = sc.chaos_s + sc.bound_s
        while (item := self.pop(limit)) is not None:
            getattr(self, "_" + item[2])(*item[3:])
        if self.queue:
            running = sum(c.running for c in self.clients)
            self.out.violations.append(f"liveness: {running} operations still running "
                                       f"at t={limit:g}")
        self.out.end = self.now
        return self.out

    def chaos(self) -> bool:
        return self.now < self.sc.chaos_s

    # ---- network

    def send(self, src: Any, dst: Any, msg: Any) -> None:
        self.out.messages += 1
        chaos = self.chaos()
        if not self.lost(self.sc.drop if chaos else None):
            self.carry("deliver", src, dst, msg, self.sc.delay_s, self.sc.dup if chaos else None)

    def _deliver(self, src: Any, dst: Any, msg: Any) -> None:
        if isinstance(dst, str):  # a client
            i = int(dst[1:])
            if (i, src) in self.blocked:
                return
            c = self.clients[i]
            self._client_ready(c, c.host.receive(self.now, src, msg))
            return
        if self.nodes[dst] is None:
            return  # down
        if isinstance(src, Caller) and (int(src.ident[1:]), dst) in self.blocked:
            return
        self.land("pass", dst, (src, msg), PASS_DELAY_S, jitter=False)

    def _pass(self, n: int) -> None:
        host = self.nodes[n]
        batch = self.take_inbox(n)
        if host is None or not batch:
            return
        ready = host.handle(batch)
        for slot, new in ready.persist.items():
            old = self.disk[n].get(slot, KeyState())
            if slot.startswith(REGISTER_PREFIX) and new.accepted != old.accepted \
                    and new.accepted < old.promised:
                self.out.violations.append(
                    f"t={self.now:.4f} node {n} accepted {new.accepted} for {slot} below its "
                    f"promise {old.promised}")
            self.disk[n][slot] = new
        if self.chaos() and self.sc.crashes and self.rng.random() < 0.01:
            self._crash(n)  # persisted, the replies never left
            return
        for dst, msg in ready.send:
            to = dst.ident.decode() if isinstance(dst, Caller) else dst
            self.send(n, to, msg)

    # ---- faults

    def _crash(self, n: int) -> None:
        if self.nodes[n] is not None:
            self.crash(n, "restart", self.now + self.rng.uniform(0.05, 0.5))

    def _restart(self, n: int) -> None:
        if self.restart(n) is not None:
            self._nudge()

    def _cut(self, _: None) -> None:
        node = self.rng.choice(self.ids)
        cut = {(i, node) for i in range(len(self.clients)) if self.rng.random() < 0.7}
        self.blocked |= cut
        self.at(self.now + self.rng.uniform(0.1, 0.8), "heal", frozenset(cut))

    def _heal(self, cut: frozenset[tuple[int, int]]) -> None:
        self.blocked -= cut
        self._nudge()

    def _calm(self, _: None) -> None:
        self.blocked.clear()
        for n in self.ids:
            self._restart(n)
        self._nudge()

    def _nudge(self) -> None:
        for c in self.clients:
            self._client_ready(c, c.host.nudge(self.now))

    # ---- clients

    def _op(self, i: int) -> None:
        c = self.clients[i]
        if c.started >= self.sc.ops_per_client:
            return
        c.started += 1
        c.running += 1
        key = self.rng.choice(self.sc.keys)
        r = self.rng.random()
        value = f"{c.name}.{c.started}".encode()
        seen_version, seen_value = c.seen.get(key, (0, None))
        if r < 0.3:
            op = RegOp(GET)
        elif r < 0.55:
            op = RegOp(SET, value)
        elif r < 0.8:
            op = RegOp(CAS, value, expect_version=seen_version)
        elif r < 0.9:
            op = RegOp(CAS_VALUE, value, expect_value=seen_value)
        else:
            op = RegOp(DELETE)
        self.token += 1
        c.calls[self.token] = (self.now, key, op)
        self._client_ready(c, c.host.submit(self.now, self.token, key, op, self.opts))

    def _tick(self, i: int) -> None:
        c = self.clients[i]
        c.wake = None
        self._client_ready(c, c.host.tick(self.now))

    def _client_ready(self, c: _Client, ready: Any) -> None:
        for dst, msg in ready.send:
            self.send(Caller(c.name.encode()), dst, msg)
        for token, result in ready.finished:
            self._finished(c, token, result)
        wake = c.host.next_wakeup
        if wake is not None and wake != c.wake:
            c.wake = wake
            self.at(max(wake, self.now), "tick", int(c.name[1:]))

    def _finished(self, c: _Client, token: int, res: RegResult) -> None:
        call, key, op = c.calls.pop(token)
        c.running -= 1
        if res.fast:
            self.out.fast += 1
        if res.status in (OK, CAS_FAILED):
            c.seen[key] = (res.version, res.value)
        if res.status == NO_QUORUM:
            self.out.no_quorum += 1
            if call >= self.sc.chaos_s and self.sc.check_liveness:
                self.out.violations.append(f"liveness: {c.name} {op.kind} {key} called at "
                                           f"{call:.3f}, after the faults, found no quorum")
        else:
            if res.status == UNKNOWN and call >= self.sc.chaos_s and self.sc.check_liveness:
                self.out.violations.append(f"liveness: {c.name} {op.kind} {key} called at "
                                           f"{call:.3f}, after the faults, ended unknown")
            self.out.history.append(HistoryEntry(
                c.name, key, op.kind, call, None if res.status == UNKNOWN else self.now,
                res.status, res.version, res.value, op.value, op.expect_version,
                op.expect_value))
        pause = self.rng.expovariate(1 / self.sc.think_s) if self.sc.think_s > 0 else 0.0
        self.at(self.now + pause, "op", int(c.name[1:]))


def main() -> None:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    r = run(args.seed)
    print(f"seed {r.seed}: {len(r.history)} operations, {r.no_quorum} without quorum, "
          f"{r.fast} on the 1-RTT path, {r.messages} messages, virtual {r.end:.2f} s; "
          f"violations: {r.violations or 'none'}")


if __name__ == "__main__":
    main()
