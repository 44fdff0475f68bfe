"""A seeded, deterministic simulator that runs the real hosts: the same AcceptorHost and
ProposerHost (zpaxos/runtime/) that the node and client loops run on sockets.

The tests own the network (STYLE.md, example 7): every in-flight message is plain data in
an event queue keyed by virtual time, and a ``random.Random(seed)`` decides how long each
message takes (so messages reorder), which ones are duplicated or lost, and when nodes
crash and restart. Nothing sleeps: a whole schedule takes milliseconds.

* A **node** is an AcceptorHost plus a disk. Messages land in its inbox; a *pass* a moment
  later hands the whole inbox to the host as one batch (several keys, several proposers,
  status and sync requests mixed), then does what the node's loop does with the Ready:
  persist, then send. A crash may strike between the two, and the sends are lost. A
  restarted node is rebuilt from exactly its disk and syncs from its peers (in small
  pages, so paging is exercised).
* A **proposer process** is a ProposerHost running one or more proposals (sometimes on
  the same key), routing replies by key, with staging, ticks and backoff.

After every pass and every proposer step the simulator checks the safety invariants of
the TLA+ spec of Paxos against *ghost* state, which sees every vote ever cast and every
promise ever sent:

* a ballot carries at most one value (OneValuePerBallot), and at most one value is
  chosen per key, where chosen means a quorum of acceptors voted for it in one ballot;
* a chosen value was proposed by someone;
* every decision reported (a proposal's ``Outcome.chosen``, a node's ``chosen``) is the
  chosen value;
* no acceptor votes below a promise it has sent (a range promise included: it promises
  every key of its range), and none has accepted > promised.

Some schedules run *fast* proposals (zpaxos/protocol/ranges.py): their process takes a
range promise for ``k*`` and skips phase 1 for fresh keys, among two-phase rivals on the
same keys; a node's range promises are on its disk like its key states.

After the chaos ends (no more drops or crashes, crashed nodes restarted) every proposal
must finish within ``Scenario.bound_s`` of virtual time, and with a chosen value when the
scenario says so (``must_choose``).

Replay one seed:  ``python -m zpaxos.sim --seed 1234 --trace``
Soak many seeds:  ``python -m zpaxos.sim --seeds 100000 --workers 2``
A broken variant: add ``--mutant NAME`` (see zpaxos/sim/mutants.py)
"""

from __future__ import annotations

import heapq
import multiprocessing
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from zpaxos.protocol.core import Acceptor, KeyState, Outcome, Proposer, ProposerOptions, quorum_size
from zpaxos.protocol.events import Event
from zpaxos.protocol.messages import (
    ZERO,
    Accepted,
    AcceptedAt,
    Ballot,
    Decide,
    Promise,
    RangePromise,
    StatusReply,
    StatusRequest,
    SyncReply,
)
from zpaxos.protocol.ranges import Lease, RangeTable
from zpaxos.protocol.registry import spec_of
from zpaxos.runtime import codec
from zpaxos.runtime.acceptor_host import AcceptorHost, Ready
from zpaxos.runtime.addresses import Caller
from zpaxos.runtime.proposer_host import Leases, ProposerHost
from zpaxos.runtime.proposer_host import Ready as ProposerReady
from zpaxos.runtime.staging import NO_STAGING, StagingOptions

INF = float("inf")
TRACE_TAIL_LINES = 60  # how much of the trace a failure message shows
REPLAY_CMD = "python -m zpaxos.sim --seed {seed} --trace"
SIM_SYNC_PAGE = 2  # tiny sync pages, so a restarted node always pages


# --------------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class ProposerSpec:
    """One proposal: its name, what it proposes, when it starts, how it paces.

    Proposals with the same ``process`` run in one ProposerHost (one client process);
    by default each proposal is a process of its own. Its ballots carry ``proposer_id``
    (default: the name), so ids are distinct."""

    name: str
    key: str
    value: bytes
    start_s: float
    options: ProposerOptions
    proposer_id: bytes = b""
    staging: StagingOptions = NO_STAGING
    process: str = ""
    fast: bool = False  # skip phase 1 through a range promise when it may

    @property
    def proc(self) -> str:
        return self.process or self.name


@dataclass(frozen=True)
class Chaos:
    """What goes wrong until ``end_s``: lost messages and crashing nodes."""

    end_s: float = 0.0
    drop_p: float = 0.0
    crash_gap_s: float = INF  # mean virtual time between two random crashes
    downtime_s: float = 0.1  # a crashed node stays down up to this long
    crash_in_step_p: float = 0.0  # a pass crashes after its persist, before its sends
    restart_all: bool = True  # at end_s restart every node, else just a majority
    forge_sync_p: float = 0.0  # a sync reply also names a wrong value for a decided key
    forge_decides: int = 0  # a rogue (authorized) client's Decides for values not chosen


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
    must_choose: bool = False  # liveness: every proposal ends with a chosen value
    bound_s: float = 10.0  # ... within this virtual time after the chaos and last start
    drop_if: Any = None  # a test's rule (src, dst, msg) -> bool for messages always lost
    pass_delay_s: float = 0.0  # a node's pass runs up to this long after a message lands
    status_probes: int = 0  # status requests sent to random nodes during the run
    check_client_decides: bool = False  # nodes check clients' Decides (CURVE roles)
    lease_tag: bytes = b"Q"  # leases' ballot ids: b"Q<name>" sorts above b"P<n>", b"A<name>" below
    lease_after: int = 1  # a process asks for a range from this proposal of it on
    # The batched wire: what one pass (a node's, or a proposer process's) sends to one
    # destination travels as one frame, through the real codec, and is delayed, lost or
    # duplicated whole; off, every message travels on its own.
    batch_wire: bool = False

    def describe(self) -> str:
        c = self.chaos
        ps = ", ".join(
            f"{p.name}@{p.proc}({p.key}={p.value.decode()} at {p.start_s:.3f}"
            f"{' fast' if p.fast else ''}"
            f" max_rounds={p.options.max_rounds} timeout={p.options.timeout_s:g})"
            for p in self.proposers
        )
        return (
            f"N={self.n_acceptors}, delay {self.min_delay_s:g}..{self.max_delay_s:.3f} s,"
            f" pass delay {self.pass_delay_s:.4f} s, dup {self.dup_p:.2f}; chaos until"
            f" {c.end_s:.3f} s: drop {c.drop_p:.2f}, crash every ~{c.crash_gap_s:.3f} s,"
            f" in-step crash {c.crash_in_step_p:.2f}, forged sync {c.forge_sync_p:.2f},"
            f" forged decides {c.forge_decides} (checked: {self.check_client_decides}),"
            f" restart {'all' if c.restart_all else 'a majority'};"
            f" batched wire: {self.batch_wire};"
            f" must_choose={self.must_choose}; proposals: {ps}"
        )


def generate(seed: int) -> Scenario:
    """A random but modest schedule: small enough that 10,000 run in well under a minute,
    hostile enough (contention on one key, crashes, lost promises, batched passes,
    several proposals per process) to expose broken rules."""
    rng = random.Random(f"scenario/{seed}")
    n = rng.choice((3, 3, 5, 5, 7))
    keys = ("k0",) if rng.random() < 0.7 else ("k0", "k1")
    n_prop = rng.choice((2, 3, 3, 4)) if len(keys) == 1 else rng.choice((3, 4))
    max_delay = rng.uniform(0.003, 0.03)
    must_choose = rng.random() < 0.75
    spread = rng.choice((0.2, 1.0, 1.0, 4.0, 20.0)) * max_delay  # how far apart starts are
    n_procs = rng.choice((n_prop, n_prop, max(1, n_prop - 1), max(1, n_prop - 2)))
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
        )
        staging = StagingOptions(pause_between_phases_s=pause) if pause else NO_STAGING
        proc = f"C{i % n_procs + 1}"
        proposers.append(ProposerSpec(f"P{i + 1}", key, f"v{i + 1}".encode(),
                                      rng.uniform(0, spread), options, staging=staging,
                                      process=proc))
    chaos = Chaos(
        end_s=rng.uniform(0.02, 0.3),
        drop_p=rng.choice((0.0, rng.uniform(0, 0.3))),
        crash_gap_s=rng.choice((INF, rng.uniform(0.005, 0.1))),
        downtime_s=rng.uniform(0.005, 0.15),
        crash_in_step_p=rng.choice((0.0, rng.uniform(0, 0.15))),
        restart_all=rng.random() < 0.5,
        forge_sync_p=rng.choice((0.0, 0.0, 0.5)),
        forge_decides=rng.choice((0, 0, 3)),
    )
    checked = chaos.forge_decides > 0 or rng.random() < 0.3
    # The fast path, from a stream of its own (the schedules above stay as they were): in
    # half the schedules some proposals are fast, and a fast process may also propose a few
    # fresh keys of the range after its first, so its lease serves several keys.
    frng = random.Random(f"fast/{seed}")
    lease_tag = frng.choice((b"A", b"Q"))
    lease_after = frng.choice((1, 1, 2))
    if frng.random() < 0.5:
        fast = [replace(p, fast=frng.random() < 0.6) for p in proposers]
        if not any(p.fast for p in fast):
            fast[0] = replace(fast[0], fast=True)
        extra = frng.choice((0, 1, 3))
        base = next(p for p in fast if p.fast)
        for j in range(extra):
            i = len(fast) + 1
            fast.append(replace(base, name=f"P{i}", key=f"k{2 + j}", value=f"v{i}".encode(),
                                start_s=base.start_s + frng.uniform(0, spread + 4 * max_delay),
                                staging=NO_STAGING))
        proposers = fast
    return Scenario(seed, n, tuple(proposers), 0.0005, max_delay,
                    dup_p=rng.choice((0.0, rng.uniform(0, 0.2))), chaos=chaos,
                    must_choose=must_choose,
                    pass_delay_s=rng.choice((0.0, 0.3 * max_delay, max_delay)),
                    status_probes=rng.choice((0, 0, 1, 3)), check_client_decides=checked,
                    lease_tag=lease_tag, lease_after=lease_after,
                    # its own stream: the rest of a seed's schedule is as it was before
                    batch_wire=random.Random(f"wire/{seed}").random() < 0.7)


# --------------------------------------------------------------------------- formatting


def fb(b: Ballot) -> str:
    """A ballot as 'round.id', the id printed as text: '2.P1'."""
    return "0" if b.is_zero else f"{b.round}.{b.proposer.decode('ascii', 'backslashreplace')}"


def fv(v: bytes | None) -> str:
    return "-" if v is None else v.decode("utf-8", "backslashreplace")


def _fany(v: Any) -> str:
    if isinstance(v, Ballot):
        return fb(v)
    if v is None or isinstance(v, bytes):
        return fv(v)
    if isinstance(v, tuple):
        return "[" + ", ".join(":".join(map(_fany, x))
                               if isinstance(x, tuple) and not isinstance(x, Ballot)
                               else _fany(x) for x in v) + "]"
    return str(v) if v != "" else "-"


def fmsg(m: Any) -> str:
    """``Prepare(k0, 2.P1)``, ``Nack(k0, 1.P1, promised=2.P2)``: any message, from its
    registry declaration (the first two fields bare, the rest named)."""
    spec = spec_of(m)
    parts = [(name, _fany(getattr(m, name))) for name, _ in spec.fields]
    shown = [v if i < 2 else f"{n}={v}" for i, (n, v) in enumerate(parts)]
    return f"{spec.cls.__name__}({', '.join(shown)})"


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

    fields = e.fields()
    fields.pop("key", None)
    return f"[{e.name} {' '.join(f'{k}={f(v)}' for k, v in fields.items())}]"


def fsends(sends: Iterable[tuple[Any, Any]]) -> str:
    groups: dict[Any, list[str]] = {}
    for dst, m in sends:
        groups.setdefault(m, []).append(str(dst.ident.decode() if isinstance(dst, Caller)
                                            else f"n{dst}"))
    return "; ".join(f"{fmsg(m)} -> {','.join(dsts)}" for m, dsts in groups.items())


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
    outcomes: dict[str, Outcome]  # by proposal name
    finished_at: dict[str, float]
    chosen: dict[str, bytes]  # the ghost's view: key -> the chosen value
    chosen_at: dict[str, float]
    events: list[tuple[float, str, Event]]  # (time, proposal name or node, event)
    votes: list[tuple[float, int, str, Ballot, bytes]]  # (time, node, key, ballot, value)
    stats: Counter[str]
    trace: list[str] = field(default_factory=list)


DELIVER, PASS, WAKE, START, CRASH, RESTART, CHAOS_END, PROBE, FORGE, FLUSH = range(10)
OTHER_KINDS = 100  # subclasses number their own event kinds from here


class Simulation:
    """Runs one scenario on the real hosts, checking the invariants after every step.

    Variants (the mutants in zpaxos/sim/mutants.py): ``acceptor_cls`` and ``proposer_cls`` for
    the core, ``host_cls`` and ``proposer_host_cls`` for the hosts, ``shared_ids`` for
    the lab's ballot bug; ``one_process_each`` runs every proposal in a process of its
    own."""

    def __init__(self, scenario: Scenario, *, trace: bool = False,
                 acceptor_cls: type[Acceptor] = Acceptor,
                 proposer_cls: type[Proposer] = Proposer,
                 host_cls: type[AcceptorHost] = AcceptorHost,
                 proposer_host_cls: type[ProposerHost] = ProposerHost,
                 lease_cls: type[Lease] = Lease,
                 shared_ids: bool = False, one_process_each: bool = False,
                 replay: str = "") -> None:
        """``replay`` is the command that reproduces the run, with ``{seed}`` in it."""
        sc = self.sc = scenario
        self.rng = random.Random(sc.seed)  # the network's and the crashes' randomness
        self.tracing = trace
        self.trace: list[str] = []
        self.replay = (replay or REPLAY_CMD).format(seed=sc.seed)
        self.now = 0.0
        self.acceptor_cls = acceptor_cls
        self.host_cls = host_cls
        self.ids = tuple(range(sc.n_acceptors))
        self.quorum = quorum_size(sc.n_acceptors)
        self.disk: dict[int, dict[str, KeyState]] = {a: {} for a in self.ids}
        self.disk_ranges: dict[int, dict[str, Ballot]] = {a: {} for a in self.ids}
        self.nodes: dict[int, AcceptorHost | None] = {a: self._host(a) for a in self.ids}
        self.inbox: dict[int, list[tuple[Any, Any]]] = {a: [] for a in self.ids}
        # Learned decisions a node has not committed yet (Ready.lazy): they reach the disk
        # with its next commit, or when it goes idle (FLUSH), and a crash loses them.
        self.lazy: dict[int, dict[str, KeyState]] = {a: {} for a in self.ids}
        self.pass_due: dict[int, float] = {}
        self.stay_down: set[int] = set()
        if one_process_each:
            sc = self.sc = replace(sc, proposers=tuple(replace(p, process="")
                                                       for p in sc.proposers))
        self.specs = {p.name: p for p in sc.proposers}
        self.procs: dict[str, ProposerHost] = {}
        self._next_id = b""
        for p in sc.proposers:
            if p.proc not in self.procs:
                rng = random.Random(self.rng.getrandbits(64))  # its own stream, from the seed
                self.procs[p.proc] = proposer_host_cls(
                    self.ids, rng, (lambda: b"P") if shared_ids else (lambda: self._next_id),
                    proposer_cls, new_lease_id=lambda: sc.lease_tag + self._next_id,
                    lease_cls=lease_cls, leases=Leases(sc.lease_after))
        self.chaos_on = sc.chaos.end_s > 0
        self.queue: list[tuple[Any, ...]] = []
        self.seq = 0
        self.wake_at: dict[str, float] = {}
        # ghost state: everything that ever happened, for the invariants
        self.proposed: dict[str, set[bytes]] = {}
        for p in sc.proposers:
            self.proposed.setdefault(p.key, set()).add(p.value)
        self.max_promise: dict[tuple[int, str], Ballot] = {}  # (node, key) -> max sent
        self.range_promise: dict[int, RangeTable] = {a: RangeTable() for a in self.ids}
        self.votes: dict[tuple[str, Ballot, bytes], set[int]] = {}
        self.ballot_value: dict[tuple[str, Ballot], bytes] = {}
        self.chosen: dict[str, bytes] = {}
        self.chosen_at: dict[str, float] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.finished_at: dict[str, float] = {}
        self.events: list[tuple[float, str, Event]] = []
        self.vote_log: list[tuple[float, int, str, Ballot, bytes]] = []
        self.stats: Counter[str] = Counter()

    def _host(self, a: int) -> AcceptorHost:
        return self.host_cls(a, dict(self.disk[a]), [b for b in self.ids if b != a],
                             sync_page=SIM_SYNC_PAGE, acceptor_cls=self.acceptor_cls,
                             check_client_decides=self.sc.check_client_decides,
                             ranges=dict(self.disk_ranges[a]))

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
        for _ in range(sc.status_probes):
            self._push(self.rng.uniform(0, last_start + sc.chaos.end_s + 0.05), PROBE,
                       self.rng.choice(self.ids))
        if sc.check_client_decides:
            for _ in range(sc.chaos.forge_decides):
                self._push(self.rng.uniform(0, last_start + sc.chaos.end_s + 0.05), FORGE,
                           self.rng.choice(self.ids))
        horizon = max(sc.chaos.end_s, last_start) + sc.bound_s
        queue = self.queue
        while queue:
            item = heapq.heappop(queue)
            if item[0] > horizon:
                break
            self.now, kind = item[0], item[2]
            if kind == DELIVER:
                self._deliver(*item[3:])
            elif kind == PASS:
                self._pass(item[3])
            elif kind == WAKE:
                name = item[3]
                if self.wake_at.get(name) == self.now:  # else superseded by a later wakeup
                    del self.wake_at[name]
                    host = self.procs[name]
                    self._after_proc(name, host.tick(self.now), f"tick {name}")
            elif kind == START:
                self._start(item[3])
            elif kind == CRASH:
                self._random_crash()
            elif kind == RESTART:
                self._restart(item[3])
            elif kind == PROBE:
                self._send("probe", item[3], StatusRequest(None))
            elif kind == FORGE:
                self._forge_decide(item[3])
            elif kind == FLUSH:
                self._flush(item[3])
            elif kind == CHAOS_END:
                self._end_chaos()
            else:
                self._other(item)  # a subclass's own kinds (zpaxos/sim/catchup_sim.py)
        for spec in sc.proposers:
            o = self.outcomes.get(spec.name)
            if o is None:
                self._violate(f"liveness: {spec.name} has not finished by t={horizon:.3f}"
                              f" ({sc.bound_s:g} s after the chaos and the last start)")
            elif sc.must_choose and o.chosen is None:
                self._violate(f"liveness: {spec.name} ended without a value ({o.reason})")
        return SimResult(sc, self.outcomes, self.finished_at, self.chosen, self.chosen_at,
                         self.events, self.vote_log, self.stats, self.trace)

    def _other(self, item: tuple[Any, ...]) -> None:
        """An event of a kind a subclass added (``item[2]``, numbered from OTHER_KINDS)."""
        raise AssertionError(f"unknown event kind {item[2]}")

    # ---- network

    def _send(self, src: Any, dst: Any, msg: Any) -> None:
        """``src``/``dst``: a node id (int) or a process name (str); ``msg`` one message
        or a batch (a list: lost, delayed or duplicated whole, as one frame is)."""
        rng = self.rng
        if self.chaos_on and rng.random() < self.sc.chaos.drop_p:
            self.stats["dropped"] += 1
            if self.tracing:
                shown = " ".join(map(fmsg, msg)) if isinstance(msg, list) else fmsg(msg)
                self._log(f"{_who(src)} -> {_who(dst)} {shown} => dropped")
            return
        if (self.sc.drop_if is not None and not isinstance(msg, list)
                and self.sc.drop_if(src, dst, msg)):
            return  # (a batch's messages met the rule one by one, in _send_pass)
        lo, hi = self.sc.min_delay_s, self.sc.max_delay_s
        copies = 2 if rng.random() < self.sc.dup_p else 1
        self.stats["duplicated"] += copies - 1
        for _ in range(copies):
            self._push(self.now + rng.uniform(lo, hi), DELIVER, src, dst, msg)

    def _send_pass(self, src: Any, sends: Iterable[tuple[Any, Any]]) -> None:
        """What one pass sends: with the batched wire, one frame per destination."""
        if not self.sc.batch_wire:
            for dst, m in sends:
                self._send(src, dst, m)
            return
        by_dst: dict[Any, list[Any]] = {}
        for dst, m in sends:
            if self.sc.drop_if is None or not self.sc.drop_if(src, dst, m):
                by_dst.setdefault(dst, []).append(m)
        for dst, msgs in by_dst.items():
            # Through the real codec: what arrives is what the decoder makes of the frame.
            for frame, _ in codec.encode_batch(_who(src)[:32] or "x", 0, msgs):
                batch = codec.decode_batch(frame).messages
                self.stats["wire_batch"] += len(batch) > 1
                self._send(src, dst, batch)

    def _deliver(self, src: Any, dst: Any, msg: Any) -> None:
        """``msg``: one message, or a list (a batch that traveled as one frame)."""
        msgs = msg if isinstance(msg, list) else [msg]
        if isinstance(dst, str):
            if dst in ("probe", "rogue"):
                return
            host = self.procs[dst]
            if isinstance(src, int):
                self._after_proc(dst, host.receive_all(self.now, [(src, m) for m in msgs]),
                                 f"n{src} -> {dst} {' '.join(fmsg(m) for m in msgs)}")
            return
        if self.nodes[dst] is None:
            if self.tracing:
                self._log(f"{_who(src)} -> n{dst} {' '.join(fmsg(m) for m in msgs)}"
                          f" => lost: n{dst} is down")
            return
        for m in msgs:
            self._land(src, dst, m)

    def _land(self, src: Any, dst: int, msg: Any) -> None:
        # The node sees a routed caller for whatever reached its ROUTER, and a node id for
        # a reply on its own socket to a peer (a SyncReply): as on real sockets.
        if isinstance(msg, (SyncReply, AcceptedAt)) and isinstance(src, int):
            origin: Any = src  # a reply on the node's own socket to a peer
            if (isinstance(msg, SyncReply) and self.chaos_on
                    and self.rng.random() < self.sc.chaos.forge_sync_p):
                msg = self._forge(dst, msg)
        else:
            origin = Caller(src.encode() if isinstance(src, str) else f"n{src}".encode())
        self.inbox[dst].append((origin, msg))
        if dst not in self.pass_due:
            due = self.now + self.rng.uniform(0, self.sc.pass_delay_s)
            self.pass_due[dst] = due
            self._push(due, PASS, dst)

    def _forge_decide(self, dst: int) -> None:
        """A buggy but authorized client tells ``dst`` that a value was chosen: a vote
        some acceptor cast that no quorum (yet) shares, or a value nobody proposed."""
        unchosen = [(k, b, v) for (k, b, v), voters in self.votes.items()
                    if self.chosen.get(k) != v]
        if unchosen and self.rng.random() < 0.7:
            key, ballot, value = self.rng.choice(sorted(unchosen))
        else:
            key = self.rng.choice(sorted({p.key for p in self.sc.proposers}))
            ballot, value = Ballot(1, b"R"), b"made-up"
        self.stats["forged_decide"] += 1
        self._send("rogue", dst, Decide(key, value, ballot))

    def _forge(self, dst: int, msg: SyncReply) -> SyncReply:
        """A faulty peer: also name another value for a key ``dst`` has decided. The
        host must never let it replace the decision."""
        node = self.nodes[dst]
        decided = sorted(k for k, s in node.states.items() if s.chosen is not None) if node else []
        if not decided:
            return msg
        self.stats["forged_sync"] += 1
        key = self.rng.choice(decided)
        return SyncReply(msg.after, (*msg.chosen, (key, b"forged", Ballot(1, b"F"))), msg.more)

    # ---- nodes

    def _pass(self, a: int) -> None:
        self.pass_due.pop(a, None)
        host = self.nodes[a]
        batch, self.inbox[a] = self.inbox[a], []
        if host is None or not (batch or host.deferred):
            return
        self.stats["passes"] += 1
        self.stats["batched"] += len(batch) > 1
        before: dict[str, KeyState | None] = dict(host.states)
        ready = host.handle(batch)
        if host.deferred and a not in self.pass_due:  # RangePrepares left for the next pass
            due = self.now + self.rng.uniform(0, self.sc.pass_delay_s)
            self.pass_due[a] = due
            self._push(due, PASS, a)
        self._do_node(a, host, ready, before,
                      "; ".join(f"{_who(s)}:{fmsg(m)}" for s, m in batch)
                      if self.tracing else "")  # (only a trace shows it)

    def _do_node(self, a: int, host: AcceptorHost, ready: Ready,
                 before: dict[str, KeyState | None], what: str) -> None:
        disk = self.disk[a]
        lazy = self.lazy[a]
        lazy.update(ready.lazy)
        if ready.persist or ready.ranges:
            # Persist, then send: the pass's state is durable before any reply can leave
            # (and what was learned before rides along, as in the node's commit).
            lazy.update(ready.persist)
            for k, s in lazy.items():
                disk[k] = s
                self._check_state(a, k, s, "on disk")
            lazy.clear()
            self.disk_ranges[a].update(ready.ranges)  # range promises: durable alike
        elif ready.lazy:
            self.stats["lazy_commit"] += 1
            self._push(self.now + self.rng.uniform(0, self.sc.max_delay_s), FLUSH, a)
        sends = ready.send
        crash = self.chaos_on and self.rng.random() < self.sc.chaos.crash_in_step_p
        if self.tracing:
            persisted = "; ".join([f"persist {k}: {fstate(s)}" for k, s in ready.persist.items()]
                                  + [f"persist range {p}*: {fb(b)}"
                                     for p, b in ready.ranges.items()])
            evs = " ".join(fevent(e) for _, e in ready.events)
            out = fsends(sends) or "nothing"
            tail = (f"CRASH n{a} after persist, before send: lost {out}" if crash else out)
            self._log(f"n{a} pass [{what}] => {'; '.join(x for x in (persisted, evs) if x)}"
                      f"{'; ' if persisted or evs else ''}{tail}")
        for _, e in ready.events:
            self.events.append((self.now, f"n{a}", e))
            self.stats[e.name] += 1
        # The ghost learns the pass's promises and votes in the order they were made (the
        # order of the replies), then any vote the replies do not show (a crash lost them).
        if not crash:
            for _, m in sends:
                t = type(m)
                if t is Promise:
                    mk = (a, m.key)
                    if m.ballot > self.max_promise.get(mk, ZERO):
                        self.max_promise[mk] = m.ballot
                elif t is Accepted:
                    self._vote(a, m.key, m.ballot, m.value)
                elif t is RangePromise:
                    table = self.range_promise[a]
                    if m.ballot > table.by_prefix.get(m.prefix, ZERO):
                        table.put(m.prefix, m.ballot)
                    self.stats["range_promised"] += 1
                elif t is StatusReply:
                    self._check_status(a, host, m)
        for key, new in host.states.items():
            old = before.get(key)
            if new is not old:
                if not new.accepted.is_zero and (
                    old is None or new.accepted != old.accepted or new.value != old.value
                ):
                    self._vote(a, key, new.accepted, new.value)  # type: ignore[arg-type]
                self._check_state(a, key, new, "in memory")
        if crash:
            self.stats["crash_in_step"] += 1
            self._crash(a)
            return
        self._send_pass(a, [(_dst(dst), m) for dst, m in sends])

    def _check_status(self, a: int, host: AcceptorHost, reply: StatusReply) -> None:
        """The reply was built mid-pass: later messages of the pass may have moved the
        state on since, but only forwards."""
        got = [k.key for k in reply.keys]
        states = host.states
        if got != sorted(set(got)):
            self._violate(f"n{a}'s status reply is not in key order: {got}")
        for k in reply.keys:
            now = states.get(k.key)
            if now is None or k.promised > now.promised or (
                    k.chosen is not None and k.chosen != now.chosen):
                self._violate(f"n{a}'s status reply for {k.key} is not its state")
        self.stats["status_checked"] += 1

    # ---- proposers

    def _start(self, name: str) -> None:
        spec = self.specs[name]
        self._next_id = spec.proposer_id or name.encode()
        host = self.procs[spec.proc]
        ready = host.start(self.now, name, spec.key, spec.value, spec.options, spec.staging,
                           spec.fast)
        self._after_proc(spec.proc, ready, f"start {name}@{spec.proc} {spec.key}={fv(spec.value)}")

    def _after_proc(self, proc: str, ready: ProposerReady, what: str) -> None:
        if self.tracing and (ready.send or ready.events or what[:4] != "tick"):
            parts = [fsends(ready.send), " ".join(fevent(e) for e in ready.events)]
            self._log(f"{what} => {'; '.join(p for p in parts if p) or 'nothing'}")
        for e in ready.events:
            self.events.append((self.now, proc, e))
            self.stats[e.name] += 1
        for token, oc in ready.finished:
            name = str(token)
            if name in self.outcomes:
                self._violate(f"{name} finished twice")
            self.outcomes[name] = oc
            self.finished_at[name] = self.now
            spec = self.specs[name]
            if oc.key != spec.key or oc.proposed != spec.value:
                self._violate(f"{name} got the outcome of another proposal ({oc.key}="
                              f"{fv(oc.proposed)})")
            if oc.chosen is not None and oc.chosen != self.chosen.get(oc.key):
                self._violate(f"{name} reports {oc.key}={fv(oc.chosen)} but the chosen value is"
                              f" {fv(self.chosen.get(oc.key))}")
            if oc.own != (oc.chosen is not None and oc.chosen == oc.proposed):
                self._violate(f"{name} reports own={oc.own} for chosen={fv(oc.chosen)}")
        self._send_pass(proc, ready.send)
        nw = self.procs[proc].next_wakeup
        if nw is not None and nw < INF and self.wake_at.get(proc) != nw:
            nw = max(nw, self.now)
            self.wake_at[proc] = nw
            self._push(nw, WAKE, proc)

    # ---- crashes

    def _random_crash(self) -> None:
        if not self.chaos_on:
            return
        a = self.rng.choice(self.ids)
        if self.nodes[a] is not None:
            if self.tracing:
                self._log(f"CRASH n{a}")
            self._crash(a)
        self._push(self.now + self.rng.expovariate(1 / self.sc.chaos.crash_gap_s), CRASH, None)

    def _crash(self, a: int) -> None:
        self.stats["crashes"] += 1
        self.nodes[a] = None  # memory and inbox are gone; only self.disk[a] survives
        self.inbox[a] = []
        self.lazy[a] = {}  # learned but not yet committed: lost
        self._push(self.now + self.rng.uniform(0, self.sc.chaos.downtime_s), RESTART, a)

    def _flush(self, a: int) -> None:
        """The node went idle: its learned decisions are committed."""
        if self.nodes[a] is None:
            return
        for k, s in self.lazy[a].items():
            self.disk[a][k] = s
            self._check_state(a, k, s, "on disk")
        self.lazy[a] = {}

    def _restart(self, a: int) -> None:
        if self.nodes[a] is not None or a in self.stay_down:
            return
        host = self.nodes[a] = self._host(a)  # exactly what was persisted
        if self.tracing:
            self._log(f"restart n{a} from disk: "
                      + ("; ".join(f"{k}: {fstate(s)}" for k, s in self.disk[a].items())
                         or "empty"))
        self._do_node(a, host, host.start(), {}, "start: sync from peers")
        # Each client's socket monitor sees the node come back: its proposals retry now.
        for name, proc in self.procs.items():
            if proc.running:
                self._after_proc(name, proc.nudge(self.now), f"nudge {name}: n{a} is back")

    def _end_chaos(self) -> None:
        self.chaos_on = False
        down = [a for a in self.ids if self.nodes[a] is None]
        if not self.sc.chaos.restart_all:
            # Leave as many down as a majority allows: liveness must not need them.
            spare = len(self.ids) - self.quorum
            self.stay_down = set(self.rng.sample(down, min(spare, len(down))))
            self.stats["stayed_down"] += len(self.stay_down)
        if self.tracing:
            self._log(f"chaos ends: no more drops or crashes; down: {down or 'none'};"
                      f" staying down: {sorted(self.stay_down) or 'none'}")
        for a in down:
            self._restart(a)

    # ---- invariants

    def _vote(self, a: int, key: str, b: Ballot, v: bytes) -> None:
        """Record that ``a`` voted (b, v) for ``key``: the ghost history of the TLA+ spec."""
        voters = self.votes.get((key, b, v))
        if voters is not None and a in voters:
            return
        promised = max(self.max_promise.get((a, key), ZERO),
                       self.range_promise[a].covering(key))  # a range promise counts too
        if b.proposer[:1] == self.sc.lease_tag and len(b.proposer) > 1:
            self.stats["fast_vote"] += 1
        if b < promised:
            self._violate(f"n{a} accepted {key}={fv(v)} at ballot {fb(b)} below the promise"
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

    def _check_state(self, a: int, key: str, s: KeyState, where: str) -> None:
        if s.accepted > s.promised:
            self._violate(f"n{a} {where}: {key} accepted {fb(s.accepted)} above its promise"
                          f" {fb(s.promised)}")
        if s.chosen is not None and s.chosen != self.chosen.get(key):
            self._violate(f"n{a} {where}: {key} chosen={fv(s.chosen)} but the chosen value is"
                          f" {fv(self.chosen.get(key))}")


def _who(x: Any) -> str:
    if isinstance(x, Caller):
        return x.ident.decode()
    return f"n{x}" if isinstance(x, int) else str(x)


def _dst(dst: Any) -> Any:
    """Where a node's reply goes: a Caller's ident names a process or another node."""
    if isinstance(dst, Caller):
        name = dst.ident.decode()
        return int(name[1:]) if name[0] == "n" and name[1:].isdigit() else name
    return dst


# --------------------------------------------------------------------------- running seeds


def run_schedule(seed: int, trace: bool = False, **variant: Any) -> SimResult:
    """Generate and run the schedule of ``seed``; raise InvariantViolation on a failure.

    A failure found without a trace is re-run with one (the run is deterministic), so the
    error always carries the trace. ``variant``: see :class:`Simulation`.
    """
    try:
        return Simulation(generate(seed), trace=trace, **variant).run()
    except InvariantViolation:
        if trace:
            raise
    return Simulation(generate(seed), trace=True, **variant).run()  # raises again, traced


COVERED = ("crashes", "crash_in_step", "stayed_down", "dropped", "duplicated", "adopted",
           "retry", "gave_up", "chosen", "batched", "forged_sync", "status_checked", "learned",
           "forged_decide", "wire_batch", "lazy_commit", "range_promised", "fast_vote")


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
        cover["shared_process"] += len({p.proc for p in sc.proposers}) < len(sc.proposers)
        cover["must_choose"] += sc.must_choose
        for name in COVERED:
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
