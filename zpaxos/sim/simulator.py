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

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from zpaxos.hosts.acceptor_host import AcceptorHost, Ready
from zpaxos.hosts.addresses import Caller
from zpaxos.hosts.proposer_host import Leases, ProposerHost
from zpaxos.hosts.proposer_host import Ready as ProposerReady
from zpaxos.protocol.columns import expand, pack
from zpaxos.protocol.core import Acceptor, KeyState, Outcome, Proposer, quorum_size
from zpaxos.protocol.events import Event
from zpaxos.protocol.messages import (
    ZERO,
    Accepted,
    AcceptedAt,
    Ballot,
    Promise,
    RangePromise,
    StatusReply,
    StatusRequest,
    SyncReply,
)
from zpaxos.protocol.ranges import Lease, RangeTable
from zpaxos.runtime import codec
from zpaxos.sim.fmt import fb, fevent, fmsg, fsends, fstate, fv, reply_to, who
from zpaxos.sim.forgery import forged_decide, forged_sync
from zpaxos.sim.ghost import Ghost, InvariantViolation
from zpaxos.sim.scenario import INF, Chaos, ProposerSpec, Scenario, generate
from zpaxos.sim.world import World

REPLAY_CMD = "python -m zpaxos.sim --seed {seed} --trace"
SIM_SYNC_PAGE = 2  # tiny sync pages, so a restarted node always pages

__all__ = ["INF", "REPLAY_CMD", "Chaos", "InvariantViolation", "ProposerSpec", "Scenario",
           "SimResult", "Simulation", "fb", "fmsg", "fv", "generate"]


# --------------------------------------------------------------------------- simulation


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


class Simulation(Ghost, World):
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
                 replay: str = "", batch_wire: bool | None = None) -> None:
        """``replay`` is the command that reproduces the run, with ``{seed}`` in it.
        ``batch_wire``: frames (hot messages as column runs) or not, whatever the seed's."""
        sc = self.sc = scenario if batch_wire is None else replace(scenario, batch_wire=batch_wire)
        self.tracing = trace
        self.trace: list[str] = []
        self.replay = (replay or REPLAY_CMD).format(seed=sc.seed)
        self.acceptor_cls = acceptor_cls
        self.host_cls = host_cls
        self.quorum = quorum_size(sc.n_acceptors)
        self.disk_ranges: dict[int, dict[str, Ballot]] = {a: {} for a in range(sc.n_acceptors)}
        # The network's and the crashes' randomness: the seed's.
        World.__init__(self, random.Random(sc.seed), range(sc.n_acceptors), self._host)
        # Learned decisions a node has not committed yet (Ready.lazy): they reach the disk
        # with its next commit, or when it goes idle (FLUSH), and a crash loses them.
        self.lazy: dict[int, dict[str, KeyState]] = {a: {} for a in self.ids}
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
            self.push(p.start_s, START, p.name)
        if self.chaos_on:
            self.push(sc.chaos.end_s, CHAOS_END)
            if sc.chaos.crash_gap_s < INF:
                self.push(self.rng.expovariate(1 / sc.chaos.crash_gap_s), CRASH, None)
        last_start = max((p.start_s for p in sc.proposers), default=0.0)
        for _ in range(sc.status_probes):
            self.push(self.rng.uniform(0, last_start + sc.chaos.end_s + 0.05), PROBE,
                       self.rng.choice(self.ids))
        if sc.check_client_decides:
            for _ in range(sc.chaos.forge_decides):
                self.push(self.rng.uniform(0, last_start + sc.chaos.end_s + 0.05), FORGE,
                           self.rng.choice(self.ids))
        horizon = max(sc.chaos.end_s, last_start) + sc.bound_s
        while (item := self.pop(horizon)) is not None:
            kind = item[2]
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
        if self.lost(self.sc.chaos.drop_p if self.chaos_on else None):
            self.stats["dropped"] += 1
            if self.tracing:
                shown = " ".join(map(fmsg, msg)) if isinstance(msg, list) else fmsg(msg)
                self._log(f"{who(src)} -> {who(dst)} {shown} => dropped")
            return
        if (self.sc.drop_if is not None and not isinstance(msg, list)
                and self.sc.drop_if(src, dst, msg)):
            return  # (a batch's messages met the rule one by one, in _send_pass)
        copies = self.carry(DELIVER, src, dst, msg, (self.sc.min_delay_s, self.sc.max_delay_s),
                            self.sc.dup_p)
        self.stats["duplicated"] += copies - 1

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
            packed, count = pack(msgs)  # hot runs as column messages, as wire.py sends them
            self.stats["wire_batch"] += count > 1
            self.stats["columns"] += len(packed) < len(msgs)  # a run made one message
            for frame, _ in codec.encode_batch(who(src)[:32] or "x", 0, packed):
                # Through the real codec: what arrives is what the decoder makes of it.
                batch = codec.decode_batch(frame).messages
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
                self._log(f"{who(src)} -> n{dst} {' '.join(fmsg(m) for m in msgs)}"
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
        self.land(PASS, dst, (origin, msg), self.sc.pass_delay_s)

    def _forge_decide(self, dst: int) -> None:
        """A buggy but authorized client tells ``dst`` that a value was chosen."""
        self.stats["forged_decide"] += 1
        self._send("rogue", dst, forged_decide(self.rng, self.votes, self.chosen,
                                               [p.key for p in self.sc.proposers]))

    def _forge(self, dst: int, msg: SyncReply) -> SyncReply:
        """A faulty peer: also name another value for a key ``dst`` has decided."""
        node = self.nodes[dst]
        forged = forged_sync(self.rng, node.states if node else {}, msg)
        if forged is not msg:
            self.stats["forged_sync"] += 1
        return forged

    # ---- nodes

    def _pass(self, a: int) -> None:
        host = self.nodes[a]
        batch = self.take_inbox(a)
        if host is None or not (batch or host.deferred):
            return
        self.stats["passes"] += 1
        self.stats["batched"] += len(batch) > 1
        before: dict[str, KeyState | None] = dict(host.states)
        ready = host.handle(batch)
        if host.deferred and a not in self.pass_due:  # RangePrepares left for the next pass
            due = self.now + self.rng.uniform(0, self.sc.pass_delay_s)
            self.pass_due[a] = due
            self.push(due, PASS, a)
        self._do_node(a, host, ready, before,
                      "; ".join(f"{who(s)}:{fmsg(m)}" for s, m in batch)
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
            self.push(self.now + self.rng.uniform(0, self.sc.max_delay_s), FLUSH, a)
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
            for m in expand(m for _, m in sends):  # (a column message: its rows)
                if isinstance(m, Promise):
                    mk = (a, m.key)
                    if m.ballot > self.max_promise.get(mk, ZERO):
                        self.max_promise[mk] = m.ballot
                elif isinstance(m, Accepted):
                    self._vote(a, m.key, m.ballot, m.value)
                elif isinstance(m, RangePromise):
                    table = self.range_promise[a]
                    if m.ballot > table.by_prefix.get(m.prefix, ZERO):
                        table.put(m.prefix, m.ballot)
                    self.stats["range_promised"] += 1
                elif isinstance(m, StatusReply):
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
        self._send_pass(a, [(reply_to(dst), m) for dst, m in sends])

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
            self.push(nw, WAKE, proc)

    # ---- crashes

    def _random_crash(self) -> None:
        if not self.chaos_on:
            return
        a = self.rng.choice(self.ids)
        if self.nodes[a] is not None:
            if self.tracing:
                self._log(f"CRASH n{a}")
            self._crash(a)
        self.push(self.now + self.rng.expovariate(1 / self.sc.chaos.crash_gap_s), CRASH, None)

    def _crash(self, a: int) -> None:
        self.stats["crashes"] += 1
        self.lazy[a] = {}  # learned but not yet committed: lost
        self.crash(a, RESTART, self.now + self.rng.uniform(0, self.sc.chaos.downtime_s))

    def _flush(self, a: int) -> None:
        """The node went idle: its learned decisions are committed."""
        if self.nodes[a] is None:
            return
        for k, s in self.lazy[a].items():
            self.disk[a][k] = s
            self._check_state(a, k, s, "on disk")
        self.lazy[a] = {}

    def _restart(self, a: int) -> None:
        if a in self.stay_down:
            return
        host = self.restart(a)  # exactly what was persisted
        if host is None:
            return
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
