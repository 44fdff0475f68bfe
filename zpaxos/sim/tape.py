"""A simulation whose choices are recorded on a tape, so a run can be replayed with some of
them changed (the shrinker's need), and which writes the JSON log real nodes write.

:class:`Simulation` draws every choice from one seeded stream, so dropping one message
shifts every later draw and the rest of the run changes beyond recognition. Here the
choices a shrinker wants to take away are kept apart, keyed by what they are about:

* **the network**: for every message, the delay of each copy that arrives (none: lost),
  keyed by :data:`MsgId` -- sender, receiver, the message itself, and how many identical
  messages went that way before. Recording draws these from a stream of their own;
* **crashes**: when each node crashed and how long it stayed down.

Replaying a :class:`Tape` delivers exactly the messages on it, with their recorded
delays, and crashes the nodes at the recorded times; a message the tape does not know
(the run took another turn) is lost, or with ``unknown_delay_s`` delivered after that
long. Everything else (the proposers' jitter, a node's pass) is drawn as when recording,
so replaying a whole tape reproduces the run, and a tape with deliveries taken away is
still one deterministic run: what delta debugging needs (shrink.py). A crash inside a
node's pass (``crash_in_step_p``) is not replayable; schedules.py never asks for one.

The log (``log=True``): one JSON object per event, as runtime/log.py writes them for real
nodes and proposers -- ``send``/``recv`` with ``type``, ``msg_id`` and ``peer``, the
hosts' events, ``start``/``stop`` -- at ``BASE_TS`` plus virtual time, so ``zpaxos
trace`` and the charts read a simulated run like a real one. Ballots are written as
``round.name`` (``2.P1``) instead of the runtime's hex id prefix, for people. A node
restarted from its disk also logs ``recovered`` per key (what it reloaded), which the
step-through page shows; a crash is logged (``crash``) when it happens, so the chart
puts the cross where the crash was, and a message the network loses is logged
(``dropped``, under its sender, right after its ``send``), so the chart calls it lost
rather than guessing; real nodes log none of these (a killed process, a network, cannot).
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict, deque
from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import Any

from zpaxos.hosts.addresses import Caller
from zpaxos.naming import node_name
from zpaxos.protocol.events import Chosen
from zpaxos.protocol.messages import Ballot
from zpaxos.protocol.registry import log_fields, type_name
from zpaxos.sim.simulator import (
    CRASH,
    DELIVER,
    INF,
    RESTART,
    Scenario,
    SimResult,
    Simulation,
    fb,
    fv,
)

BASE_TS = 1767258000.0  # 2026-01-01 09:00 UTC: virtual time 0 in a simulated log
MsgId = tuple[Any, Any, Any, int]  # (src, dst, message, how many identical ones before)
CrashAt = tuple[float, int, float]  # (virtual time, node, downtime)


@dataclass(frozen=True)
class Tape:
    """The choices of one run: each message's delivery delays, and the crashes."""

    deliveries: dict[MsgId, tuple[float, ...]]
    crashes: tuple[CrashAt, ...] = ()

    @property
    def delivered(self) -> list[MsgId]:
        return [m for m, d in self.deliveries.items() if d]

    def keeping(self, messages: set[MsgId], crashes: set[CrashAt]) -> Tape:
        """This tape with every other delivery lost and every other crash gone."""
        return Tape({m: (d if m in messages else ()) for m, d in self.deliveries.items()},
                    tuple(c for c in self.crashes if c in crashes))


@dataclass
class Decision:
    """A proposal that reported ``value`` chosen for ``key``."""

    key: str
    value: bytes
    proposal: str
    at: float


def proc_name(p: Any) -> str:
    """How a simulated process is named in the log: ``node1``, ``proposer P1``."""
    if isinstance(p, int):
        return node_name(p)
    if isinstance(p, Caller):
        p = p.ident.decode()
        if p[:1] == "n" and p[1:].isdigit():
            return node_name(int(p[1:]))
    return f"proposer {p}"


def _show(v: Any) -> Any:
    if isinstance(v, Ballot):
        return fb(v)
    if isinstance(v, bytes):
        return fv(v)
    if isinstance(v, (list, tuple)):
        return [_show(x) for x in v]
    if isinstance(v, float):
        return round(v, 6)
    return v


class TapedSimulation(Simulation):
    """A :class:`Simulation` that records (``tape=None``) or replays a :class:`Tape`.

    ``strict=False`` notes violations in ``violations`` and goes on instead of raising;
    ``stop_at_split`` ends the run the moment two proposals have reported different
    values for one key (the lessons: the picture ends where safety did)."""

    def __init__(self, scenario: Scenario, *, tape: Tape | None = None, log: bool = False,
                 strict: bool = True, stop_at_split: bool = False,
                 unknown_delay_s: float | None = None, **variant: Any) -> None:
        # Crashes come from a stream of their own when recording and from the tape when
        # replaying, so the simulator's own stream (a pass's delay, a commit's) is drawn
        # alike in both: a whole tape replays the very run.
        self.crash_gap_s = scenario.chaos.crash_gap_s
        in_step = scenario.chaos.crash_in_step_p if tape is None else 0.0
        scenario = replace(scenario, chaos=replace(scenario.chaos, crash_gap_s=INF,
                                                   crash_in_step_p=in_step))
        super().__init__(scenario, **variant)
        self.net = random.Random(f"network/{scenario.seed}")
        self.crash_rng = random.Random(f"crashes/{scenario.seed}")
        self.tape = tape
        self.unknown_delay_s = unknown_delay_s
        self.strict = strict
        self.stop_at_split = stop_at_split
        self.stopped = False
        self.violations: list[tuple[float, str]] = []
        self.decisions: list[Decision] = []
        self.split: str | None = None  # the key two values were decided for
        self.recorded: dict[MsgId, tuple[float, ...]] = {}
        self.crashed: list[CrashAt] = []
        self.steps = 0
        self._links: Counter[tuple[Any, Any, Any]] = Counter()
        self._ids: dict[tuple[Any, Any, Any], deque[str]] = defaultdict(deque)
        self._sent_by: Counter[str] = Counter()
        self._started: set[str] = set()
        self._stopped_procs: set[str] = set()
        self.logging = log
        self.lines: list[dict[str, Any]] = []
        if tape is not None:
            for c in sorted(tape.crashes):
                self.push(c[0], CRASH, None)
            self._plan = deque(sorted(tape.crashes))
        elif self.crash_gap_s < INF and self.chaos_on:
            self.push(self.crash_rng.expovariate(1 / self.crash_gap_s), CRASH, None)

    # ---- what the run recorded

    @property
    def recording(self) -> Tape:
        return Tape(dict(self.recorded), tuple(self.crashed))

    def log_text(self) -> str:
        return "".join(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"
                       for obj in self.lines)

    def run(self) -> SimResult:
        for a in self.ids:
            self._emit(node_name(a), "start", role="node", keys=0)
        return super().run()

    def push(self, t: float, kind: Hashable, *args: Any) -> None:
        if not self.stopped:
            super().push(t, kind, *args)

    def _violate(self, what: str) -> None:
        if self.strict:
            super()._violate(what)
        self.violations.append((self.now, what))

    # ---- the log

    def _emit(self, process: str, event: str, **fields: Any) -> None:
        if not self.logging:
            return
        obj: dict[str, Any] = {"ts": round(BASE_TS + self.now, 6), "process": process,
                               "level": "INFO", "event": event}
        for k, v in fields.items():
            if v is not None:
                obj[k] = _show(v)
        self.lines.append(obj)

    def _msg_fields(self, msg: Any) -> dict[str, Any]:
        out = log_fields(msg)
        for k in out:
            v = getattr(msg, k)
            if isinstance(v, Ballot):
                out[k] = fb(v)
        return out

    # ---- the network, from the tape

    def _send(self, src: Any, dst: Any, msg: Any) -> None:
        if self.stopped:
            return
        link = (src, dst, msg)
        mid: MsgId = (src, dst, msg, self._links[link])
        self._links[link] += 1
        if self.tape is None:
            delays = self._draw(src, dst, msg)
        else:
            known = self.tape.deliveries.get(mid)
            delays = known if known is not None else (
                () if self.unknown_delay_s is None else (self.unknown_delay_s,))
        self.recorded[mid] = delays
        if not delays:
            self.stats["dropped"] += 1
        self.stats["duplicated"] += max(0, len(delays) - 1)
        logged = src not in ("probe", "rogue") and dst not in ("probe", "rogue")
        sender = proc_name(src)
        self._sent_by[sender] += 1
        msg_id = f"{sender.replace('proposer ', '')}:{self._sent_by[sender]}"
        if logged:
            fields = self._msg_fields(msg)
            self._emit(sender, "send", type=type_name(msg), msg_id=msg_id,
                       peer=proc_name(dst), **fields)
            if not delays:  # the network lost it: real logs cannot say so, this one does
                self._emit(sender, "dropped", type=type_name(msg), msg_id=msg_id,
                           peer=proc_name(dst), **fields)
        for d in delays:
            self._ids[link].append(msg_id)
            self.push(self.now + d, DELIVER, src, dst, msg)

    def _draw(self, src: Any, dst: Any, msg: Any) -> tuple[float, ...]:
        net, sc = self.net, self.sc
        if self.chaos_on and net.random() < sc.chaos.drop_p:
            return ()
        if sc.drop_if is not None and sc.drop_if(src, dst, msg):
            return ()
        copies = 2 if net.random() < sc.dup_p else 1
        return tuple(net.uniform(sc.min_delay_s, sc.max_delay_s) for _ in range(copies))

    def _deliver(self, src: Any, dst: Any, msg: Any) -> None:
        self.steps += 1
        link = (src, dst, msg)
        msg_id = self._ids[link].popleft() if self._ids[link] else "?"
        if src not in ("probe", "rogue") and dst not in ("probe", "rogue"):
            receiver = proc_name(dst)
            up = (receiver not in self._stopped_procs if isinstance(dst, str)
                  else self.nodes[dst] is not None)
            if up:
                self._emit(receiver, "recv", type=type_name(msg), msg_id=msg_id,
                           peer=proc_name(src), **self._msg_fields(msg))
        super()._deliver(src, dst, msg)

    # ---- crashes, from the tape

    def _random_crash(self) -> None:
        if self.tape is None:
            if not self.chaos_on:
                return
            a = self.crash_rng.choice(self.ids)
            if self.nodes[a] is not None:
                self._crash(a)
            self.push(self.now + self.crash_rng.expovariate(1 / self.crash_gap_s), CRASH, None)
            return
        if self._plan:
            _, a, down = self._plan.popleft()
            if self.nodes[a] is not None:
                self._crash_for(a, down)

    def _crash(self, a: int) -> None:
        self._crash_for(a, self.crash_rng.uniform(0, self.sc.chaos.downtime_s))

    def _crash_for(self, a: int, down: float) -> None:
        self.crashed.append((self.now, a, down))
        self._emit(node_name(a), "crash")  # real nodes cannot log this; charts read it
        self.stats["crashes"] += 1
        self.nodes[a] = None  # memory and inbox are gone; only self.disk[a] survives
        self.inbox[a] = []
        self.lazy[a] = {}  # learned but not yet committed: lost
        self.push(self.now + down, RESTART, a)

    def _restart(self, a: int) -> None:
        if self.nodes[a] is None and a not in self.stay_down and not self.stopped:
            name = node_name(a)
            disk = self.disk[a]
            self._emit(name, "start", role="node", keys=len(disk))
            # Every key proposed, so a key the disk does not hold shows as forgotten.
            for k in sorted(set(disk) | set(self.proposed)):
                s = disk.get(k)
                if s is None:
                    self._emit(name, "recovered", key=k)
                    continue
                self._emit(name, "recovered", key=k,
                           promised=None if s.promised.is_zero else s.promised,
                           accepted=None if s.accepted.is_zero else s.accepted,
                           value=s.value, chosen=s.chosen)
        super()._restart(a)

    # ---- the hosts' events

    def _do_node(self, a: int, host: Any, ready: Any, before: Any, what: str) -> None:
        super()._do_node(a, host, ready, before, what)
        if self.nodes[a] is host:  # not crashed between its persist and its sends
            for src, ev in ready.events:
                peer = None if src is None else proc_name(src)
                self._emit(node_name(a), ev.name, peer=peer, **ev.fields(node_name))

    def _start(self, name: str) -> None:
        spec = self.specs[name]
        proc = proc_name(spec.proc)
        if proc not in self._started:
            self._started.add(proc)
            self._emit(proc, "start", role="proposer", key=spec.key, value=spec.value)
        super()._start(name)

    def _after_proc(self, proc: str, ready: Any, what: str) -> None:
        name = proc_name(proc)
        if name in self._stopped_procs:
            return
        split = False
        for ev in ready.events:  # events first: a round starts before its Prepares leave
            self._emit(name, ev.name, **ev.fields(node_name))
            if isinstance(ev, Chosen):
                split |= self._decided(ev.key, ev.value, proc)
        if split and self.stop_at_split:
            self.stopped = True
            self.queue.clear()
        super()._after_proc(proc, ready, what)
        if ready.finished and self.procs[proc].running == 0:
            self._stopped_procs.add(name)
            key, rounds = ready.finished[-1][1].key, ready.finished[-1][1].rounds
            self._emit(name, "stop", key=key, rounds=rounds)

    def _decided(self, key: str, value: bytes, proposal: str) -> bool:
        """Note a reported decision; True when it makes two values for one key."""
        others = {d.value for d in self.decisions if d.key == key}
        self.decisions.append(Decision(key, value, proposal, self.now))
        if others and value not in others and self.split is None:
            self.split = key
            return True
        return False


def summary(sim: TapedSimulation) -> dict[str, int]:
    """How big a run was: messages sent and delivered, crashes, simulator steps."""
    return {"sent": len(sim.recorded), "delivered": sum(1 for d in sim.recorded.values() if d),
            "crashes": len(sim.crashed), "steps": sim.steps}


