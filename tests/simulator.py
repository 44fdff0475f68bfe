"""A seeded, deterministic simulator for the pure Paxos core (zpaxos.protocol.core).

The tests own the network (STYLE.md, example 7): every in-flight message is plain data in
an event queue keyed by virtual time, and a ``random.Random(seed)`` decides how long each
message takes (so messages reorder), which ones are duplicated or lost, and when acceptors
crash and restart. A restarted acceptor is rebuilt from exactly what it persisted
(``Acceptor(states=disk)``); a crash may also strike between a step's persist and its
sends, which are then lost. Nothing sleeps: a whole schedule takes milliseconds.

After every step the simulator checks the safety invariants of the TLA+ spec of Paxos
against *ghost* state, which sees every vote ever cast and every promise ever sent:

* a ballot carries at most one value (OneValuePerBallot), and at most one value is
  chosen per key, where chosen means a quorum of acceptors voted for it in one ballot;
* a chosen value was proposed by someone;
* every decision reported (a proposer's ``Outcome.chosen``, an acceptor's
  ``KeyState.chosen``) is the chosen value;
* no acceptor votes below a promise it has sent, and none has accepted > promised.

After the chaos ends (no more drops or crashes, crashed acceptors restarted) every proposer
must finish within ``Scenario.bound_s`` of virtual time, and with a chosen value when the
scenario says so (``must_choose``).

Replay one seed:  ``python -m tests.simulator --seed 1234 --trace``
Soak many seeds:  ``python -m tests.simulator --seeds 100000 --workers 2``
A broken variant: add ``--mutant NAME`` (see MUTANTS in tests/test_simulator.py)
"""

from __future__ import annotations

import argparse
import heapq
import multiprocessing
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zpaxos.protocol.core import (
    Acceptor,
    Event,
    KeyState,
    Outcome,
    Proposer,
    ProposerOptions,
    Step,
    quorum_size,
)
from zpaxos.protocol.messages import ZERO, Accept, Accepted, Ballot, Decide, Nack, Prepare, Promise

INF = float("inf")
TRACE_TAIL_LINES = 60  # how much of the trace a failure message shows
REPLAY_CMD = "python -m tests.simulator --seed {seed} --trace"

ProposerFactory = Callable[..., Proposer]  # (key, value, id, acceptors, options, rng)
DropRule = Callable[[str, str, Any], bool]  # (src, dst, message) -> lose it


# --------------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class ProposerSpec:
    """One proposer: its network name, what it proposes, when it starts, how it paces."""

    name: str
    key: str
    value: bytes
    start_s: float
    options: ProposerOptions
    proposer_id: bytes = b""  # the ballot id; defaults to the name, so ids are distinct


@dataclass(frozen=True)
class Chaos:
    """What goes wrong until ``end_s``: lost messages and crashing acceptors."""

    end_s: float = 0.0
    drop_p: float = 0.0
    crash_gap_s: float = INF  # mean virtual time between two random crashes
    downtime_s: float = 0.1  # a crashed acceptor stays down up to this long
    crash_in_step_p: float = 0.0  # a step crashes after its persist, before its sends
    restart_all: bool = True  # at end_s restart every acceptor, else just a majority


@dataclass(frozen=True)
class Scenario:
    """Everything a run depends on besides the seed's random stream."""

    seed: int
    n_acceptors: int
    proposers: tuple[ProposerSpec, ...]
    min_delay_s: float = 0.001
    max_delay_s: float = 0.01
    dup_p: float = 0.0  # duplicates (and reordering) go on after the chaos
    chaos: Chaos = Chaos()
    must_choose: bool = False  # liveness: every proposer ends with a chosen value
    bound_s: float = 10.0  # ... within this virtual time after the chaos and last start
    drop_if: DropRule | None = None  # a test's rule for messages the network always loses

    def describe(self) -> str:
        c = self.chaos
        ps = ", ".join(
            f"{p.name}({p.key}={p.value.decode()} at {p.start_s:.3f}"
            f" max_rounds={p.options.max_rounds} timeout={p.options.timeout_s:g})"
            for p in self.proposers
        )
        return (
            f"N={self.n_acceptors}, delay {self.min_delay_s:g}..{self.max_delay_s:.3f} s,"
            f" dup {self.dup_p:.2f}; chaos until {c.end_s:.3f} s: drop {c.drop_p:.2f},"
            f" crash every ~{c.crash_gap_s:.3f} s, in-step crash {c.crash_in_step_p:.2f},"
            f" restart {'all' if c.restart_all else 'a majority'}; must_choose="
            f"{self.must_choose}; proposers: {ps}"
        )


def generate(seed: int) -> Scenario:
    """A random but modest schedule: small enough that 10,000 run in well under a minute,
    hostile enough (contention on one key, crashes, lost promises) to expose broken rules."""
    rng = random.Random(f"scenario/{seed}")
    n = rng.choice((3, 3, 5, 5, 7))
    keys = ("k0",) if rng.random() < 0.8 else ("k0", "k1")
    n_prop = rng.choice((2, 3, 3, 4)) if len(keys) == 1 else rng.choice((3, 4))
    max_delay = rng.uniform(0.003, 0.03)
    must_choose = rng.random() < 0.75
    spread = rng.choice((0.2, 1.0, 1.0, 4.0, 20.0)) * max_delay  # how far apart starts are
    proposers = []
    for i in range(n_prop):
        key = keys[0] if i < 2 else rng.choice(keys)  # the first two always conflict
        pause = rng.uniform(0, 3 * max_delay) if rng.random() < 0.3 else 0.0
        options = ProposerOptions(
            round_timeout_s=rng.uniform(2.5, 8) * max_delay,
            timeout_s=INF if must_choose else rng.uniform(0.1, 1.0),
            max_rounds=10**9 if must_choose else rng.randint(1, 6),
            backoff_s=rng.choice((0.0, 0.5, 1.0, 2.0)) * max_delay if not must_choose
            else rng.uniform(0.5, 2) * max_delay,
            backoff_max_s=20 * max_delay,
            pause_between_phases_s=pause,
        )
        proposers.append(ProposerSpec(f"P{i + 1}", key, f"v{i + 1}".encode(),
                                      rng.uniform(0, spread), options))
    chaos = Chaos(
        end_s=rng.uniform(0.02, 0.3),
        drop_p=rng.choice((0.0, rng.uniform(0, 0.3))),
        crash_gap_s=rng.choice((INF, rng.uniform(0.005, 0.1))),
        downtime_s=rng.uniform(0.005, 0.15),
        crash_in_step_p=rng.choice((0.0, rng.uniform(0, 0.15))),
        restart_all=rng.random() < 0.5,
    )
    return Scenario(seed, n, tuple(proposers), 0.0005, max_delay,
                    dup_p=rng.choice((0.0, rng.uniform(0, 0.2))), chaos=chaos,
                    must_choose=must_choose)


# --------------------------------------------------------------------------- formatting


def fb(b: Ballot) -> str:
    """A ballot as 'round.id', the id printed as text: '2.P1'."""
    return "0" if b.is_zero else f"{b.round}.{b.proposer.decode('ascii', 'backslashreplace')}"


def fv(v: bytes | None) -> str:
    return "-" if v is None else v.decode("utf-8", "backslashreplace")


def fmsg(m: Any) -> str:
    t = type(m)
    if t is Prepare:
        return f"Prepare({m.key}, {fb(m.ballot)})"
    if t is Promise:
        return f"Promise({m.key}, {fb(m.ballot)}, accepted={fb(m.accepted)}:{fv(m.value)})"
    if t is Accept or t is Accepted:
        return f"{t.__name__}({m.key}, {fb(m.ballot)}, {fv(m.value)})"
    if t is Nack:
        return f"Nack({m.key}, {fb(m.ballot)}, promised={fb(m.promised)})"
    if t is Decide:
        return f"Decide({m.key}, {fv(m.value)})"
    return repr(m)


def fstate(s: KeyState) -> str:
    chosen = f" chosen={fv(s.chosen)}" if s.chosen is not None else ""
    return f"promised={fb(s.promised)} accepted={fb(s.accepted)}:{fv(s.value)}{chosen}"


def fevent(e: Event) -> str:
    def f(v: Any) -> str:
        if isinstance(v, Ballot):
            return fb(v)
        if isinstance(v, bytes):
            return fv(v)
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return f"[{e.name} {' '.join(f'{k}={f(v)}' for k, v in e.fields.items())}]"


def fstep(step: Step) -> str:
    parts = [f"persist {k}: {fstate(s)}" for k, s in step.persist]
    groups: dict[Any, list[str]] = {}
    for dst, m in step.send:
        groups.setdefault(m, []).append(str(dst))
    parts += [f"{fmsg(m)} -> {','.join(dsts)}" for m, dsts in groups.items()]
    parts += [fevent(e) for e in step.events]
    return "; ".join(parts)


# --------------------------------------------------------------------------- simulation


class InvariantViolation(AssertionError):
    """A safety or liveness property failed; the text says which seed and how to replay."""

    def __init__(self, seed: int, what: str, trace: list[str], replay: str,
                 scenario: str = "") -> None:
        self.seed, self.what, self.trace, self.replay = seed, what, trace, replay
        tail = trace[-TRACE_TAIL_LINES:]
        head = f"last {len(tail)} of {len(trace)} trace lines" if trace else "no trace recorded"
        super().__init__(
            f"seed {seed}: {what}\n  scenario: {scenario}\n  {head}:\n    "
            + "\n    ".join(tail)
            + f"\n  seed {seed}: {what}\n  replay the whole trace: {replay}"
        )


@dataclass
class SimResult:
    scenario: Scenario
    outcomes: dict[str, Outcome]  # by proposer name
    finished_at: dict[str, float]
    chosen: dict[str, bytes]  # the ghost's view: key -> the chosen value
    chosen_at: dict[str, float]
    events: list[tuple[float, str, Event]]  # (time, proposer name, event)
    votes: list[tuple[float, str, str, Ballot, bytes]]  # (time, acceptor, key, ballot, value)
    stats: Counter[str]
    trace: list[str] = field(default_factory=list)


DELIVER, WAKE, START, CRASH, RESTART, CHAOS_END = range(6)


class Simulation:
    """Runs one scenario on the pure core, checking the invariants after every step."""

    def __init__(self, scenario: Scenario, *, trace: bool = False,
                 acceptor_cls: type[Acceptor] = Acceptor,
                 proposer_factory: ProposerFactory = Proposer, replay: str = "") -> None:
        """``replay`` is the command that reproduces the run, with ``{seed}`` in it."""
        sc = self.sc = scenario
        self.rng = random.Random(sc.seed)  # the network's and the crashes' randomness
        self.tracing = trace
        self.trace: list[str] = []
        self.replay = (replay or REPLAY_CMD).format(seed=sc.seed)
        self.now = 0.0
        self.acceptor_cls = acceptor_cls
        self.names = tuple(f"A{i}" for i in range(1, sc.n_acceptors + 1))
        self.quorum = quorum_size(sc.n_acceptors)
        self.acceptors: dict[str, Acceptor | None] = {a: acceptor_cls() for a in self.names}
        self.disk: dict[str, dict[str, KeyState]] = {a: {} for a in self.names}
        self.stay_down: set[str] = set()
        self.proposers: dict[str, Proposer] = {}
        for p in sc.proposers:
            rng = random.Random(self.rng.getrandbits(64))  # each its own stream, from the seed
            self.proposers[p.name] = proposer_factory(
                p.key, p.value, p.proposer_id or p.name.encode(), self.names, p.options, rng)
        self.chaos_on = sc.chaos.end_s > 0
        self.queue: list[tuple[Any, ...]] = []
        self.seq = 0
        self.wake_at: dict[str, float] = {}
        # ghost state: everything that ever happened, for the invariants
        self.proposed: dict[str, set[bytes]] = {}
        for p in sc.proposers:
            self.proposed.setdefault(p.key, set()).add(p.value)
        self.max_promise: dict[tuple[str, str], Ballot] = {}  # (acceptor, key) -> max sent
        self.votes: dict[tuple[str, Ballot, bytes], set[str]] = {}
        self.ballot_value: dict[tuple[str, Ballot], bytes] = {}
        self.chosen: dict[str, bytes] = {}
        self.chosen_at: dict[str, float] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.finished_at: dict[str, float] = {}
        self.events: list[tuple[float, str, Event]] = []
        self.vote_log: list[tuple[float, str, str, Ballot, bytes]] = []
        self.stats: Counter[str] = Counter()

    # ---- bookkeeping

    def _push(self, t: float, kind: int, *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (t, self.seq, kind, *args))

    def _log(self, text: str) -> None:
        self.trace.append(f"t={self.now:.4f} {text}")

    def _violate(self, what: str) -> None:
        if self.tracing:
            self._log(f"!! VIOLATION: {what}")
        raise InvariantViolation(self.sc.seed, what, self.trace, self.replay, self.sc.describe())

    # ---- the run

    def run(self) -> SimResult:
        sc = self.sc
        for p in sc.proposers:
            self._push(p.start_s, START, p.name)
        if self.chaos_on:
            self._push(sc.chaos.end_s, CHAOS_END)
            if sc.chaos.crash_gap_s < INF:
                self._push(self.rng.expovariate(1 / sc.chaos.crash_gap_s), CRASH, None)
        last_start = max((p.start_s for p in sc.proposers), default=0.0)
        horizon = max(sc.chaos.end_s, last_start) + sc.bound_s
        queue = self.queue
        while queue:
            item = heapq.heappop(queue)
            if item[0] > horizon:
                break
            self.now, kind = item[0], item[2]
            if kind == DELIVER:
                self._deliver(*item[3:])
            elif kind == WAKE:
                name = item[3]
                if self.wake_at.get(name) == self.now:  # else superseded by a later wakeup
                    del self.wake_at[name]
                    p = self.proposers[name]
                    self._after_proposer(name, p, p.tick(self.now), f"tick {name}")
            elif kind == START:
                p = self.proposers[item[3]]
                self._after_proposer(item[3], p, p.start(self.now),
                                     f"start {item[3]} {p.key}={fv(p.proposed)}")
            elif kind == CRASH:
                self._random_crash()
            elif kind == RESTART:
                self._restart(item[3])
            else:
                self._end_chaos()
        for name, p in self.proposers.items():
            if not p.done:
                state = f"phase {p.phase}, ballot {fb(p.ballot)}, {p.rounds} rounds"
                self._violate(f"liveness: {name} has not finished by t={horizon:.3f}"
                              f" ({sc.bound_s:g} s after the chaos and the last start; {state})")
            if sc.must_choose and p.outcome is not None and p.outcome.chosen is None:
                self._violate(f"liveness: {name} ended without a value ({p.outcome.reason})")
        return SimResult(sc, self.outcomes, self.finished_at, self.chosen, self.chosen_at,
                         self.events, self.vote_log, self.stats, self.trace)

    # ---- network

    def _send(self, src: str, dst: str, msg: Any) -> None:
        rng = self.rng
        if self.chaos_on and rng.random() < self.sc.chaos.drop_p:
            self.stats["dropped"] += 1
            if self.tracing:
                self._log(f"drop {src} -> {dst} {fmsg(msg)}")
            return
        if self.sc.drop_if is not None and self.sc.drop_if(src, dst, msg):
            if self.tracing:
                self._log(f"drop (rule) {src} -> {dst} {fmsg(msg)}")
            return
        lo, hi = self.sc.min_delay_s, self.sc.max_delay_s
        self._push(self.now + rng.uniform(lo, hi), DELIVER, src, dst, msg)
        if self.sc.dup_p and rng.random() < self.sc.dup_p:
            self.stats["duplicated"] += 1
            self._push(self.now + rng.uniform(lo, hi), DELIVER, src, dst, msg)

    def _deliver(self, src: str, dst: str, msg: Any) -> None:
        p = self.proposers.get(dst)
        if p is not None:
            self._after_proposer(dst, p, p.receive(self.now, src, msg),
                                 f"{src} -> {dst} {fmsg(msg)}")
            return
        acc = self.acceptors[dst]
        if acc is None:
            if self.tracing:
                self._log(f"{src} -> {dst} {fmsg(msg)} => lost: {dst} is down")
            return
        key = msg.key
        before = acc.states.get(key)
        step = acc.handle(src, msg)
        disk = self.disk[dst]
        # Persist, then send: the step's state is durable before any reply can leave.
        for k, s in step.persist:
            disk[k] = s
            self._check_state(dst, k, s, "on disk")
        sends = step.send
        if self.chaos_on and self.rng.random() < self.sc.chaos.crash_in_step_p:
            self.stats["crash_in_step"] += 1
            if self.tracing:
                done = fstep(Step(persist=step.persist)) or "nothing to persist"
                lost = fstep(Step(send=sends)) or "nothing"
                self._log(f"{src} -> {dst} {fmsg(msg)} => {done}; CRASH {dst} after persist,"
                          f" before send: lost {lost}")
            sends = []
            self._crash(dst)
        elif self.tracing:
            self._log(f"{src} -> {dst} {fmsg(msg)} => {fstep(step) or 'nothing'}")
        after = acc.states.get(key)
        if after is not None and after is not before:
            if not after.accepted.is_zero and (
                before is None or after.accepted != before.accepted or after.value != before.value
            ):
                self._vote(dst, key, after.accepted, after.value)
            self._check_state(dst, key, after, "in memory")
        for to, m in sends:
            t = type(m)
            if t is Promise:
                mk = (dst, m.key)
                if m.ballot > self.max_promise.get(mk, ZERO):
                    self.max_promise[mk] = m.ballot
            elif t is Accepted:
                self._vote(dst, m.key, m.ballot, m.value)
            self._send(dst, to, m)

    # ---- proposers

    def _after_proposer(self, name: str, p: Proposer, step: Step, what: str) -> None:
        if self.tracing and (step.send or step.events or what[:4] != "tick"):
            self._log(f"{what} => {fstep(step) or 'nothing'}")
        for e in step.events:
            self.events.append((self.now, name, e))
            self.stats[e.name] += 1
        oc = p.outcome
        if oc is not None and name not in self.outcomes:
            self.outcomes[name] = oc
            self.finished_at[name] = self.now
            if oc.chosen is not None and oc.chosen != self.chosen.get(oc.key):
                self._violate(f"{name} reports {oc.key}={fv(oc.chosen)} but the chosen value is"
                              f" {fv(self.chosen.get(oc.key))}")
            if oc.own != (oc.chosen is not None and oc.chosen == oc.proposed):
                self._violate(f"{name} reports own={oc.own} for chosen={fv(oc.chosen)}")
        for to, m in step.send:
            self._send(name, to, m)
        nw = p.next_wakeup
        if nw is not None and nw < INF and self.wake_at.get(name) != nw:
            nw = max(nw, self.now)
            self.wake_at[name] = nw
            self._push(nw, WAKE, name)

    # ---- crashes

    def _random_crash(self) -> None:
        if not self.chaos_on:
            return
        a = self.rng.choice(self.names)
        if self.acceptors[a] is not None:
            if self.tracing:
                self._log(f"CRASH {a}")
            self._crash(a)
        self._push(self.now + self.rng.expovariate(1 / self.sc.chaos.crash_gap_s), CRASH, None)

    def _crash(self, a: str) -> None:
        self.stats["crashes"] += 1
        self.acceptors[a] = None  # memory is gone; only self.disk[a] survives
        self._push(self.now + self.rng.uniform(0, self.sc.chaos.downtime_s), RESTART, a)

    def _restart(self, a: str) -> None:
        if self.acceptors[a] is not None or a in self.stay_down:
            return
        disk = self.disk[a]
        self.acceptors[a] = self.acceptor_cls(states=dict(disk))  # exactly what was persisted
        if self.tracing:
            self._log(f"restart {a} from disk: "
                      + ("; ".join(f"{k}: {fstate(s)}" for k, s in disk.items()) or "empty"))

    def _end_chaos(self) -> None:
        self.chaos_on = False
        down = [a for a in self.names if self.acceptors[a] is None]
        if not self.sc.chaos.restart_all:
            # Leave as many down as a majority allows: liveness must not need them.
            spare = len(self.names) - self.quorum
            self.stay_down = set(self.rng.sample(down, min(spare, len(down))))
            self.stats["stayed_down"] += len(self.stay_down)
        if self.tracing:
            self._log(f"chaos ends: no more drops or crashes; down: {down or 'none'};"
                      f" staying down: {sorted(self.stay_down) or 'none'}")
        for a in down:
            self._restart(a)

    # ---- invariants

    def _vote(self, a: str, key: str, b: Ballot, v: bytes) -> None:
        """Record that ``a`` voted (b, v) for ``key``: the ghost history of the TLA+ spec."""
        voters = self.votes.get((key, b, v))
        if voters is not None and a in voters:
            return
        promised = self.max_promise.get((a, key), ZERO)
        if b < promised:
            self._violate(f"{a} accepted {key}={fv(v)} at ballot {fb(b)} below the promise"
                          f" {fb(promised)} it had sent")
        self.max_promise[(a, key)] = b  # voting for b promises b
        other = self.ballot_value.setdefault((key, b), v)
        if other != v:
            self._violate(f"ballot {fb(b)} carries two values for {key}: {fv(other)} and {fv(v)}")
        if voters is None:
            voters = self.votes[(key, b, v)] = set()
        voters.add(a)
        self.vote_log.append((self.now, a, key, b, v))
        if len(voters) < self.quorum:
            return
        prev = self.chosen.get(key)
        if prev is None:
            if v not in self.proposed.get(key, ()):
                self._violate(f"{key}={fv(v)} is chosen but nobody proposed it")
            self.chosen[key] = v
            self.chosen_at[key] = self.now
            if self.tracing:
                self._log(f"** {key}={fv(v)} is chosen: ballot {fb(b)} by {sorted(voters)}")
        elif prev != v:
            self._violate(f"two values chosen for {key}: {fv(prev)}, then {fv(v)} at ballot"
                          f" {fb(b)} by {sorted(voters)}")

    def _check_state(self, a: str, key: str, s: KeyState, where: str) -> None:
        if s.accepted > s.promised:
            self._violate(f"{a} {where}: {key} accepted {fb(s.accepted)} above its promise"
                          f" {fb(s.promised)}")
        if s.chosen is not None and s.chosen != self.chosen.get(key):
            self._violate(f"{a} {where}: {key} chosen={fv(s.chosen)} but the chosen value is"
                          f" {fv(self.chosen.get(key))}")


# --------------------------------------------------------------------------- running seeds


def run_schedule(seed: int, trace: bool = False, **variant: Any) -> SimResult:
    """Generate and run the schedule of ``seed``; raise InvariantViolation on a failure.

    A failure found without a trace is re-run with one (the run is deterministic), so the
    error always carries the trace. ``variant``: acceptor_cls, proposer_factory, replay.
    """
    try:
        return Simulation(generate(seed), trace=trace, **variant).run()
    except InvariantViolation:
        if trace:
            raise
    return Simulation(generate(seed), trace=True, **variant).run()  # raises again, traced


def check_seeds(seeds: Iterable[int], stop_at_first: bool = True,
                **variant: Any) -> tuple[list[InvariantViolation], Counter[str]]:
    """Run every seed; return the violations found and counters of what the runs covered."""
    failures: list[InvariantViolation] = []
    cover: Counter[str] = Counter()
    for seed in seeds:
        try:
            r = run_schedule(seed, **variant)
        except InvariantViolation as e:
            failures.append(e)
            if stop_at_first:
                break
            continue
        sc = r.scenario
        cover["schedules"] += 1
        cover[f"N={sc.n_acceptors}"] += 1
        cover["multi_key"] += len({p.key for p in sc.proposers}) > 1
        cover["must_choose"] += sc.must_choose
        for name in ("crashes", "crash_in_step", "stayed_down", "dropped", "duplicated",
                     "adopted", "retry", "gave_up", "chosen"):
            cover[f"with_{name}"] += r.stats[name] > 0
    return failures, cover


def _check_chunk(job: tuple[range, dict[str, Any]]) -> tuple[list[str], Counter[str]]:
    failures, cover = check_seeds(job[0], **job[1])
    return [str(e) for e in failures], cover  # strings: cheap to send between processes


def check_seeds_parallel(seeds: range, workers: int = 2, chunks: int = 16,
                         **variant: Any) -> tuple[list[str], Counter[str]]:
    """check_seeds on ``workers`` processes (forkserver: safe even if other tests left
    threads running); returns failure texts and coverage counts."""
    size = max(1, -(-len(seeds) // chunks))
    jobs = [(seeds[i:i + size], variant) for i in range(0, len(seeds), size)]
    if workers <= 1:
        results = [_check_chunk(job) for job in jobs]
    else:
        with multiprocessing.get_context("forkserver").Pool(workers) as pool:
            results = pool.map(_check_chunk, jobs, chunksize=1)
    failures: list[str] = []
    cover: Counter[str] = Counter()
    for f, c in results:
        failures += f
        cover += c
    return failures, cover


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.simulator", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, help="replay this one seed")
    ap.add_argument("--trace", action="store_true", help="print the schedule's trace")
    ap.add_argument("--seeds", type=int, default=1000, help="how many seeds to check")
    ap.add_argument("--start", type=int, default=0, help="first seed to check")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mutant", help="run a broken variant: a name in test_simulator.MUTANTS")
    args = ap.parse_args(argv)
    variant: dict[str, Any] = {}
    if args.mutant:
        from tests.test_simulator import MUTANTS  # the broken variants live with the tests

        variant = MUTANTS[args.mutant]
    if args.seed is not None:
        try:
            r = Simulation(generate(args.seed), trace=args.trace, **variant).run()
        except InvariantViolation as e:
            print("\n".join(e.trace) if args.trace else "", file=sys.stderr)
            print(f"seed {e.seed}: VIOLATION: {e.what}", file=sys.stderr)
            return 1
        print(f"scenario: {r.scenario.describe()}")
        if args.trace:
            print("\n".join(r.trace))
        for name, o in r.outcomes.items():
            print(f"{name} at t={r.finished_at[name]:.4f}: chosen={fv(o.chosen)} own={o.own}"
                  f" rounds={o.rounds} ({o.reason})")
        print(f"seed {args.seed}: ok")
        return 0
    failures, cover = check_seeds_parallel(range(args.start, args.start + args.seeds),
                                           args.workers, **variant)
    print(dict(sorted(cover.items())))
    for f in failures:
        print(f, file=sys.stderr)
    print(f"{cover['schedules']} schedules ok, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
