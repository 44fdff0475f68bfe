"""The lock simulator: leases and fencing tokens on a register, seeded and deterministic.

Processes contend for one lock kept in a register, following the lease rules of
zpaxos/protocol/lease.py (called through :class:`LockRules`, which each broken variant
overrides): a holder treats its lease as lost at TTL - margin after it *sent* its last
successful renewal; a waiter takes over only after it has watched the holder's register
version stay unchanged for TTL + margin of its own elapsed time; the fencing token is the
register version of the acquiring write. Nothing reads a shared clock. (Waiters here do
not queue up: the lock's FIFO queue is for fairness, and safety rests on the rules above.)

The register is a faithful model of zpaxos's (a linearizable compare-and-set register
whose every write makes the next version): each operation takes effect at one instant
between its request's arrival and its reply, which may be lost, so a client that times
out does not know whether its write happened. On top of the simulated world
(zpaxos/sim/world.py: virtual time, a seeded network), a ``random.Random(seed)`` decides
everything else:

* each process's clock runs at its own *rate*, within the drift bound the rules assume
  (``drift``), from its own arbitrary origin (clocks are not synchronized at all);
* processes pause (a holder stopped past its TTL, as by SIGSTOP or a long GC), crash
  (memory lost; a new incarnation starts later), lose and wait for messages, and the
  register is sometimes out of reach (no quorum);
* a holder writes to a **fenced resource**, which accepts a write only with a token at
  least the highest it has accepted. A holder checks its lease, then sends: a pause in
  between sends a stale write, which only the token can refuse.

Invariants, checked on every run: at every moment at most one process believes it holds
a valid lease; tokens grow strictly from holder to holder; the resource never accepts a
write with a token below one it accepted, nor one token from two holders.

    zpaxos sim --lock                          # 200 seeded runs, every invariant checked
    zpaxos sim --lock --seed 7                 # one run, summarized
    zpaxos sim --break lock-token-reused       # the first seed that catches a broken rule
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from zpaxos.protocol.lease import (
    MAX_DRIFT,
    HolderLease,
    LockRecord,
    Waiter,
    WaiterClock,
    acquired,
    handed_over,
    released,
    wait_needed,
)
from zpaxos.sim.world import World

TWO_HOLDERS = "two holders"  # what a broken lease's violation says
TOKEN = "token"  # what a broken token's violation says


class LockRules:
    """The rules of zpaxos/protocol/lease.py as the simulated processes call them. Each
    broken variant (zpaxos/sim/mutants.py, layer "lock") overrides one method."""

    def lease(self, ttl: float, sent_at: float) -> HolderLease:
        """A holder's lease after a write it sent at ``sent_at`` (its clock) succeeded."""
        return HolderLease(ttl, sent_at)

    def stamp(self, ttl: float, now: float) -> float:
        """What a holder's write puts beside the record for waiters to read: nothing (a
        holder's clock reading means nothing to another process)."""
        return 0.0

    def take_over_at(self, r: LockRecord, me: str, clock: WaiterClock, stamp: float) -> float:
        """When (the waiter's clock) it may take ``r`` over, having watched its version
        since ``clock.since``; the take-over is a compare-and-set at that version."""
        return clock.take_over_at(wait_needed(r, me))

    def acquire(self, r: LockRecord, version: int, me: str, ttl: float) -> LockRecord:
        """The record a compare-and-set at ``version`` writes to take the lock."""
        return acquired(r, version, me, me, ttl)

    def named(self, ttl: float, stamp: float) -> HolderLease | None:
        """A waiter that reads a record naming it holder (a release handed the lock over
        to it; ``stamp`` is what the releaser wrote beside it): None, it holds nothing
        until its first renewal, a compare-and-set at that version, succeeds, and its
        lease counts from when it sent that (:meth:`lease`)."""
        return None


@dataclass(frozen=True)
class LockScenario:
    processes: int = 4
    ttls: tuple[float, ...] = (1.5, 10.0, 600.0)  # each run draws its lock's TTL
    drift: float = MAX_DRIFT  # every clock's rate is within 1 +- drift
    delay_s: tuple[float, float] = (0.0005, 0.005)
    drop: float = 0.05
    op_timeout_s: float = 0.2  # a register operation without a reply by then: unknown
    # In TTLs:
    backstop: float = 0.25  # a waiter also reads the register this often (lost notices)
    work_every: float = 0.05  # a holder writes to the resource this often
    hold: tuple[float, float] = (0.2, 2.0)  # how long a holder keeps the lock
    handover: float = 0.6  # how often a release names a next holder (the queue's head)
    pause: tuple[float, float] = (0.2, 3.0)  # how long a pause lasts
    duration: float = 20.0
    pauses: int = 6
    crashes: int = 2
    outages: int = 2  # windows (0.1-2 s) in which the register is out of reach
    rules_cls: type[LockRules] = LockRules


@dataclass(frozen=True)
class Episode:
    """One holder's lease, in real (virtual) time: from the acquiring write's reply to
    when its holder stops believing it holds the lock."""

    holder: str
    token: int
    start: float
    end: float


@dataclass(frozen=True)
class Write:
    at: float
    holder: str
    token: int
    accepted: bool


@dataclass
class LockRun:
    seed: int
    episodes: list[Episode] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    takeovers: int = 0  # acquisitions of a lease that expired (was not released)
    handovers: int = 0  # leases begun by a waiter a release named holder
    stale_refused: int = 0  # writes the resource refused by their token
    ttl: float = 0.0  # the run's lock TTL
    paused_holders: int = 0  # holders paused past their TTL


Reg = tuple[int, LockRecord, float]  # the register: version, record, a holder's stamp


@dataclass
class _Proc:
    """One process: its clock, and its state as a waiter or a holder."""

    name: str
    rate: float  # its clock's rate against real time
    origin: float  # its clock's reading at real time 0
    incarnation: int = 0
    paused_until: float = 0.0
    op: int = 0  # the register operation awaited (0: none)
    op_sent: float = 0.0  # local time it was sent
    op_kind: str = ""
    clock: WaiterClock = field(default_factory=WaiterClock)
    lease: HolderLease | None = None  # while it holds the lock
    version: int = 0  # the register version the holder last wrote
    record: LockRecord = field(default_factory=LockRecord)  # the holder's record
    start: float = 0.0  # real time the lease began
    release_at: float = 0.0  # local time the holder lets go
    pause_next: float = 0.0  # pause this long after its next write (0: no)
    taking: bool = False  # its acquiring write takes over a lease that was not released
    held_token: int = 0  # the token of its last holding (a record with it is not new)

    @property
    def who(self) -> str:
        return f"{self.name}.{self.incarnation}"

    @property
    def holding(self) -> bool:
        return self.lease is not None

    def local(self, t: float) -> float:
        return self.origin + self.rate * t

    def real(self, local: float) -> float:
        return (local - self.origin) / self.rate


def run(seed: int, sc: LockScenario = LockScenario()) -> LockRun:
    return _Sim(seed, sc).run()


class _Sim(World):
    def __init__(self, seed: int, sc: LockScenario) -> None:
        World.__init__(self, random.Random(seed), (), _no_nodes)
        self.sc = sc
        self.out = LockRun(seed)
        self.rules = sc.rules_cls()
        rng = self.rng
        self.ttl = rng.choice(sc.ttls)
        self.out.ttl = self.ttl
        # Clocks run at the edges of the drift bound (the worst case), some in between,
        # each from its own origin.
        lo, hi = 1 - sc.drift, 1 + sc.drift
        self.procs = [_Proc(f"p{i}", rng.choice((lo, hi, lo, hi, rng.uniform(lo, hi))),
                            rng.uniform(-1000.0, 1000.0)) for i in range(sc.processes)]
        self.reg: Reg = (0, LockRecord(), 0.0)
        self.out_of_reach = 0.0  # the register is unreachable until then
        self.ops = 0
        self.highest = 0  # the resource's highest accepted token
        self.owner: dict[int, str] = {}  # token -> the holder whose writes used it
        self.last_token = 0

    # ---- the run

    def run(self) -> LockRun:
        sc, rng, horizon = self.sc, self.rng, self.sc.duration * self.ttl
        for i in range(sc.processes):
            self.push(rng.uniform(0, 0.1), "poll", i, 0)
        for kind, count in (("pause", sc.pauses), ("crash", sc.crashes),
                            ("outage", sc.outages)):
            for _ in range(count):
                self.push(rng.uniform(0, horizon), kind, rng.randrange(sc.processes))
        while (item := self.pop(horizon)) is not None:
            kind, args = item[2], item[3:]
            if kind in ("pause", "crash", "outage", "register", "write"):
                getattr(self, "_" + kind)(*args)
                continue
            p = self.procs[args[0]]
            if args[1] != p.incarnation:
                continue  # for a process that crashed since
            if self.now < p.paused_until:  # a paused process does nothing until it wakes
                self.push(p.paused_until, kind, *args)
                continue
            getattr(self, "_" + kind)(p, *args[2:])
        for p in self.procs:
            if p.lease is not None:
                self._end(p, self.now)
        self._check_episodes()
        return self.out

    def at_local(self, p: _Proc, local_delay: float, kind: str, *args: Any) -> None:
        """Wake ``p`` after ``local_delay`` seconds of its own clock."""
        self.push(self.now + max(local_delay, 0.0) / p.rate, kind, self.procs.index(p),
                  p.incarnation, *args)

    # ---- faults

    def _pause(self, i: int) -> None:
        """Pause a process; a holder at the worst moment: just after it wrote (a renewal
        sent, or a lease checked and the resource write not yet sent)."""
        holders = [p for p in self.procs if p.holding]
        p = self.rng.choice(holders) if holders else self.procs[i]
        length = self.rng.uniform(*self.sc.pause) * self.ttl
        if p.holding:
            p.pause_next = length
        else:
            self._stop(p, length)

    def _stop(self, p: _Proc, length: float) -> None:
        p.pause_next = 0.0
        p.paused_until = max(p.paused_until, self.now + length)
        if p.holding and length > self.ttl:
            self.out.paused_holders += 1

    def _crash(self, i: int) -> None:
        p = self.procs[i]
        if p.lease is not None:
            self._end(p, self.now)
        self.procs[i] = q = _Proc(p.name, p.rate, p.origin, p.incarnation + 1)
        self.push(self.now + self.rng.uniform(0.1, 1.0), "poll", i, q.incarnation)

    def _outage(self, _: int) -> None:
        self.out_of_reach = max(self.out_of_reach, self.now + self.rng.uniform(0.1, 2.0))

    # ---- the register (a linearizable CAS register, reached over a lossy network)

    def call(self, p: _Proc, kind: str, expect: int = 0,
             record: LockRecord | None = None) -> None:
        self.ops += 1
        p.op, p.op_kind, p.op_sent = self.ops, kind, p.local(self.now)
        stamp = self.rules.stamp(self.ttl, p.op_sent)
        if not self.lost(self.sc.drop):
            self.push(self.now + self.rng.uniform(*self.sc.delay_s), "register",
                      (self.procs.index(p), p.incarnation, self.ops, expect, record, stamp))
        self.at_local(p, self.sc.op_timeout_s, "timeout", self.ops)
        if p.pause_next and kind == "renew" and self.rng.random() < 0.5:
            self._stop(p, p.pause_next)

    def _register(self, req: tuple[Any, ...]) -> None:
        i, inc, op, expect, record, stamp = req
        if self.now < self.out_of_reach:
            return  # no quorum: the operation fails, its client times out
        version = self.reg[0]
        ok = record is None or version == expect
        if record is not None and ok:
            self.reg = (version + 1, record, stamp)
            for j, q in enumerate(self.procs):  # watchers are told (and confirm by a read)
                if j != i and not self.lost(self.sc.drop):
                    self.push(self.now + self.rng.uniform(*self.sc.delay_s), "changed", j,
                              q.incarnation)
        if not self.lost(self.sc.drop):
            self.push(self.now + self.rng.uniform(*self.sc.delay_s), "reply", i, inc, op, ok,
                      self.reg)

    def _timeout(self, p: _Proc, op: int) -> None:
        if p.op == op:
            p.op = 0
            self._next(p)

    # ---- a process

    def _next(self, p: _Proc) -> None:
        """What a process does when it has no operation in flight."""
        if p.lease is None:
            self.at_local(p, self.rng.uniform(0.5, 1.0) * self.sc.backstop * self.ttl, "poll")
        elif p.local(self.now) >= p.release_at:
            self._end(p, self.now)
            self.call(p, "release", p.version, self._released(p))
        else:
            self.at_local(p, p.lease.renew_at - p.local(self.now), "renew")

    def _released(self, p: _Proc) -> LockRecord:
        """What a release writes: free, or (as when a named waiter heads the queue)
        handed over to another process, which may be dead or a crashed incarnation."""
        others = [q for q in self.procs if q is not p]
        if not others or self.rng.random() >= self.sc.handover:
            return released(p.record)
        q = self.rng.choice(others)
        head = Waiter(q.who, round(self.ttl * 1000), q.who)
        return handed_over(LockRecord(token=p.record.token, queue=(head,)), p.version)

    def _poll(self, p: _Proc) -> None:
        if p.lease is None and p.op == 0:
            self.call(p, "get")

    _changed = _poll
    _check = _poll

    def _renew(self, p: _Proc) -> None:
        if p.lease is not None and p.op == 0 and not self._lapse(p):
            self.call(p, "renew", p.version, p.record)

    def _reply(self, p: _Proc, op: int, ok: bool, reg: Reg) -> None:
        if p.op != op:
            return  # timed out already
        p.op = 0
        if p.op_kind == "get":
            self._saw(p, reg)
        elif p.op_kind in ("acquire", "renew"):
            self._wrote(p, ok, reg)
        if p.op == 0:
            self._next(p)

    def _saw(self, p: _Proc, reg: Reg) -> None:
        version, record, stamp = reg
        now = p.local(self.now)
        p.clock.observe(version, now)  # a new version restarts the clock, now
        if record.owner == p.who and record.token != p.held_token:  # a release named it
            lease = self.rules.named(self.ttl, stamp)
            if lease is None:  # it renews at once, and holds once that succeeds
                self.call(p, "acquire", version, record)
                p.record, p.taking = record, False
            elif lease.valid(now):
                p.record = record
                self._hold(p, lease, version)
            return
        at = self.rules.take_over_at(record, p.who, p.clock, stamp)
        if now < at:
            self.at_local(p, at - now, "check")  # (or a notice of a change comes first)
            return
        new = self.rules.acquire(record, version, p.who, self.ttl)
        self.call(p, "acquire", version, new)
        p.record, p.taking = new, record.held

    def _wrote(self, p: _Proc, ok: bool, reg: Reg) -> None:
        version, record, _ = reg
        now = p.local(self.now)
        lease = self.rules.lease(self.ttl, p.op_sent)
        if ok and p.op_kind == "acquire" and lease.valid(now):
            self._hold(p, lease, version)
        elif ok and p.lease is not None and not p.lease.valid(now):
            self._end(p, p.real(p.lease.lost_at))  # too late: the lease ran out before
        elif ok and p.lease is not None:
            p.lease, p.version = p.lease.renewed(p.op_sent), version
        elif p.lease is not None and record.owner == p.who:
            p.version = version  # an earlier renewal did land: no extension without its time
        elif p.lease is not None:
            self._end(p, self.now)  # someone else holds it now

    def _hold(self, p: _Proc, lease: HolderLease, version: int) -> None:
        """``p`` holds the lock from now (its record written at ``version``)."""
        p.lease, p.version, p.start = lease, version, self.now
        p.held_token = p.record.token
        p.release_at = p.local(self.now) + self.rng.uniform(*self.sc.hold) * self.ttl
        self._acquired(p)
        self.out.takeovers += p.taking
        self.out.handovers += p.record.token < version  # its token: the release's write
        self.at_local(p, 0.0, "work")

    def _lapse(self, p: _Proc) -> bool:
        """Has the holder's lease run out (at its deadline, by its own clock)?"""
        if p.lease is None or p.lease.valid(p.local(self.now)):
            return False
        self._end(p, p.real(p.lease.lost_at))
        if p.op == 0:
            self._next(p)  # back to waiting
        return True

    def _work(self, p: _Proc) -> None:
        if p.lease is not None and not self._lapse(p):
            # The lease is valid now; the write leaves a moment later.
            self.at_local(p, 0.002, "emit", p.record.token)
            if p.pause_next:
                self._stop(p, p.pause_next)
            self.at_local(p, self.sc.work_every * self.ttl, "work")

    def _emit(self, p: _Proc, token: int) -> None:
        # (Delivered whatever becomes of its sender: a write in flight outlives a crash.)
        self.push(self.now + self.rng.uniform(*self.sc.delay_s), "write", p.who, token)

    def _write(self, who: str, token: int) -> None:
        accepted = token >= self.highest
        if accepted:
            if self.owner.setdefault(token, who) != who:
                self.out.violations.append(f"t={self.now:.4f} the resource accepted {TOKEN} "
                                           f"{token} from two holders: {self.owner[token]} "
                                           f"and {who}")
            self.highest = token
        else:
            self.out.stale_refused += 1
        self.out.writes.append(Write(self.now, who, token, accepted))

    # ---- the invariants

    def _acquired(self, p: _Proc) -> None:
        token = p.record.token
        if token <= self.last_token:
            self.out.violations.append(f"t={self.now:.4f} {p.who} acquired with {TOKEN} "
                                       f"{token}, not above the last holder's {self.last_token}")
        self.last_token = max(self.last_token, token)

    def _end(self, p: _Proc, real_end: float) -> None:
        """``p`` stops believing it holds the lock (at the latest when its lease is lost)."""
        assert p.lease is not None
        end = min(real_end, p.real(p.lease.lost_at), self.now)
        self.out.episodes.append(Episode(p.who, p.record.token, p.start, max(end, p.start)))
        p.lease = None

    def _check_episodes(self) -> None:
        eps = sorted(self.out.episodes, key=lambda e: e.start)
        latest: Episode | None = None  # of the leases begun so far, the last to end
        for b in eps:
            if latest is not None and b.start < latest.end:
                self.out.violations.append(
                    f"t={b.start:.4f} {TWO_HOLDERS} believe they hold the lock: "
                    f"{latest.holder} (token {latest.token}, until t={latest.end:.4f}) and "
                    f"{b.holder} (token {b.token})")
            if latest is None or b.end > latest.end:
                latest = b


def _no_nodes(n: int) -> Any:
    raise AssertionError("the lock simulator's register is a model: no nodes")


def summary(r: LockRun) -> str:
    """One run in one line."""
    return (f"seed {r.seed}: TTL {r.ttl:g} s, {len(r.episodes)} leases, {r.takeovers} taken "
            f"over, {r.paused_holders} holders paused past the TTL, {len(r.writes)} writes, "
            f"{r.stale_refused} refused by their token")
