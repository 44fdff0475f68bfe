"""Membership changes in the middle of seeded schedules, under every fault the simulator has.

A run starts with three nodes (1, 2, 3) and spares (4, 5, 6) with empty disks. Clients write
write-once keys (``k0``, ``k1``), registers (``r0``: set and get) and fresh keys of a range
through a range promise (``f-0``...; phase 1 skipped, zpaxos/protocol/ranges.py), while a
*reconfigurer* adds, removes or replaces nodes (zpaxos/protocol/membership.py), each change
a chain of small steps. Messages are delayed, reordered, lost and duplicated, clients are
cut off from nodes for a while, and nodes crash and restart from their disks.

A step from epoch e to e+1, as the runtime takes it (docs/membership.md):

1. the new configuration is chosen by Paxos *in epoch e*, as the write-once key
   ``~members/<e+1>``;
2. it is installed: sent to the members of both; each node adopts it on disk and says so.
   The step is over once so many nodes moved that no quorum of epoch e is left (so no
   operation of epoch e can still succeed);
3. the state moves: an identity round (read with e+1's prepare quorum, write back with its
   accept quorum) for every key, so every value chosen so far sits on an accept quorum of
   e+1; a node that joins the prepare side next must accept each of them (caught up).

The proposers follow the epoch rules of zpaxos/sim/memberproc.py. The ghost sees every
vote with the epoch it was cast in and checks, after every step: no two values chosen for
one key across all configurations (chosen: an accept quorum *of the vote's epoch*); every
value a client is told was chosen is the chosen one; every configuration installed passes
``check_step`` after its predecessor. At the end the registers' history must be
linearizable (zpaxos/sim/lincheck.py), and after the chaos every operation and the whole
change must finish.

    python -m zpaxos.sim.membersim --seeds 300 [--mutant NAME]
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from zpaxos.hosts.acceptor_host import AcceptorHost
from zpaxos.protocol.membership import Config, check_step
from zpaxos.protocol.membership import Step as PlanStep
from zpaxos.protocol.messages import Ballot
from zpaxos.sim import lincheck
from zpaxos.sim.ghost import InvariantViolation
from zpaxos.sim.memberplans import (
    SPARES,
    MemberScenario,
    Planner,
    generate,
    member,
    one_step_plan,
    remove_at_once_plan,
    safe_plan,
)
from zpaxos.sim.memberproc import (
    FAST,
    IDENTITY,
    SET,
    WRITE,
    Disk,
    Install,
    Installed,
    Op,
    Proposer,
    node_handle,
    reg_state,
)
from zpaxos.sim.seedcli import seeds_main
from zpaxos.sim.world import World

__all__ = ["MUTANTS", "REPLAY", "InvariantViolation", "MemberRun", "MemberScenario",
           "MemberSimulation", "check_seeds", "generate", "one_step_plan",
           "remove_at_once_plan", "run_schedule", "safe_plan"]

REPLAY = "python -m zpaxos.sim.membersim --seed {seed}"
ADMIN = "admin"
INSTALL_RETRY_S = 0.1
MEMBERS_KEY = "~members/"
# --------------------------------------------------------------------------- the run


@dataclass
class MemberRun:
    seed: int
    configs: list[Config] = field(default_factory=list)
    history: list[lincheck.Op] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    votes: list[tuple[float, int, int, str, Ballot, bytes]] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)


def _boot(a: int) -> AcceptorHost:
    raise AssertionError("membersim keeps its own nodes")


class MemberSimulation(World):
    def __init__(self, sc: MemberScenario, *, planner: Planner = safe_plan,
                 moves_state: bool = True, moves_only_for_joins: bool = False,
                 ignores_epoch: bool = False,
                 keeps_lease: bool = False, trace: bool = False, replay: str = REPLAY) -> None:
        World.__init__(self, random.Random(sc.seed), (), _boot)
        self.sc, self.planner, self.moves_state, self.tracing = sc, planner, moves_state, trace
        self.moves_only_for_joins = moves_only_for_joins
        self.replay = replay.format(seed=sc.seed)
        initial = Config.initial(member(i) for i in (1, 2, 3))
        self.out = MemberRun(sc.seed, [initial])
        self.disks = {a: Disk(initial) for a in (1, 2, 3) + SPARES}
        self.up = {a: True for a in self.disks}
        self.cut: set[tuple[str, int]] = set()
        self.procs: dict[str, Proposer] = {}
        for name in ("c0", "c1", "c2"):
            self.procs[name] = Proposer(name.encode(), initial,
                                        random.Random(self.rng.getrandbits(32)),
                                        ignores_epoch=ignores_epoch, keeps_lease=keeps_lease)
        self.procs[ADMIN] = Proposer(b"A", initial, random.Random(self.rng.getrandbits(32)))
        self.queued: dict[str, list[Op]] = {n: [] for n in self.procs}
        self.calls: dict[str, tuple[float, Op]] = {}
        self.wakes: dict[str, float] = {}
        # the reconfigurer
        self.todo = list(sc.changes)
        self.plan: list[PlanStep] = []
        self.stage = "idle"
        self.acks: set[int] = set()
        self.moving: list[str] = []
        # the ghost
        self.by_epoch = {1: initial}
        self.voters: dict[tuple[str, int, Ballot, bytes], set[int]] = {}
        self.chosen: dict[str, bytes] = {}
        self.told: dict[str, bytes] = {}

    # ---- bookkeeping

    def log(self, text: str) -> None:
        if self.tracing:
            self.out.trace.append(f"t={self.now:.4f} {text}")

    def violate(self, what: str) -> None:
        raise InvariantViolation(self.sc.seed, what, self.out.trace, self.replay,
                                 self.sc.describe())

    # ---- the run

    def run(self) -> MemberRun:
        sc = self.sc
        self.unstarted = len(sc.ops)
        for t, client, op in sc.ops:
            self.push(t, "op", client, op)
        self.push(sc.change_at, "admin")
        for t, a, down in sc.crashes:
            self.push(t, "crash", a, down)
        for t, client, a, span in sc.cuts:
            self.push(t, "cut", client, a, span)
        horizon = sc.chaos_s + sc.bound_s
        while (item := self.pop(horizon)) is not None:
            getattr(self, "_" + item[2])(*item[3:])
            if self.stage == "done" and self.unstarted == 0 and self.now > sc.chaos_s \
                    and not any(p.op or self.queued[n] for n, p in self.procs.items()):
                break
        self._check_end(horizon)
        return self.out

    def chaos(self) -> bool:
        return self.now < self.sc.chaos_s

    # ---- network

    def send(self, src: Any, dst: Any, msg: Any) -> None:
        self.out.stats["messages"] += 1
        if self.lost(self.sc.drop_p if self.chaos() else None):
            return
        self.carry("deliver", src, dst, msg, self.sc.delay_s,
                   self.sc.dup_p if self.chaos() else None)

    def _deliver(self, src: Any, dst: Any, msg: Any) -> None:
        if isinstance(dst, int):
            if not self.up[dst] or (src, dst) in self.cut:
                return
            reply, vote = node_handle(self.disks[dst], msg)  # durable, then answered
            if self.tracing:
                self.log(f"{src} -> n{dst} {_show(msg)} => {_show(reply)}")
            if vote is not None:
                self._vote(dst, *vote)
            self.send(dst, src, reply)
            return
        if (dst, src) in self.cut:
            return
        if isinstance(msg, Installed):
            if self.stage == "install" and msg.epoch >= self.plan[0].config.epoch:
                self.acks.add(src)
            return
        self._at_proc(dst, lambda p: p.receive(self.now, src, msg))

    def _at_proc(self, name: str, act: Callable[[Proposer], None]) -> None:
        p = self.procs[name]
        act(p)
        for dst, m in p.send:
            self.send(name, dst, m)
        p.send = []
        finished, p.done = p.done, []
        for token, state in finished:
            self._finished(name, token, state)
        if p.op is None and self.queued[name]:
            op = self.queued[name].pop(0)
            self.calls[op.token] = (self.now, op)
            self._at_proc(name, lambda q: q.start(self.now, op))
            return
        if p.wake < float("inf") and self.wakes.get(name) != p.wake:
            self.wakes[name] = p.wake
            self.push(max(p.wake, self.now), "wake", name)

    def _wake(self, name: str) -> None:
        if self.wakes.get(name) == self.now:
            del self.wakes[name]
            self._at_proc(name, lambda p: p.tick(self.now))

    def _op(self, client: str, op: Op) -> None:
        self.unstarted -= 1
        self.queued[client].append(op)
        if self.procs[client].op is None:
            self._at_proc(client, lambda p: None)

    # ---- faults

    def _crash(self, a: int, down: float) -> None:
        if self.up[a]:
            self.up[a] = False
            self.out.stats["crashes"] += 1
            self.log(f"CRASH n{a}")
            self.push(self.now + down, "restart", a)

    def _restart(self, a: int) -> None:
        self.up[a] = True  # from its disk: the disk is all it ever had
        self.log(f"restart n{a} at epoch {self.disks[a].cfg.epoch}")

    def _cut(self, client: str, a: int, span: float) -> None:
        self.cut.add((client, a))
        self.out.stats["cuts"] += 1
        self.push(self.now + span, "heal", client, a)

    def _heal(self, client: str, a: int) -> None:
        self.cut.discard((client, a))

    # ---- the reconfigurer

    def _admin(self) -> None:
        cfg = self.procs[ADMIN].cfg
        if self.stage == "idle":
            if not self.plan:
                if not self.todo:
                    self.stage = "done"
                    return
                what, node, new = self.todo.pop(0)
                self.plan = self.planner(cfg, what, node, new)
                self.log(f"admin: {what} {node} {new or ''}: {len(self.plan)} steps")
            step = self.plan[0]
            if step.config.epoch != cfg.epoch + 1:
                self.violate(f"admin: step to epoch {step.config.epoch} after {cfg.epoch}")
            self.stage = "propose"
            self.queued[ADMIN].append(Op(f"admin.{step.config.epoch}", WRITE,
                                         f"{MEMBERS_KEY}{step.config.epoch}",
                                         msgspec.json.encode(step.config)))
            self._at_proc(ADMIN, lambda p: None)
        elif self.stage == "install":
            nxt = self.plan[0].config
            old = self.by_epoch[nxt.epoch - 1]
            left = {a for a in set(old.ids) | set(nxt.ids) if a not in self.acks}
            if (len(left & set(old.prepare)) < old.prepare_quorum
                    and len(left & set(old.accept)) < old.accept_quorum):
                self._installed(nxt)
                return
            for a in sorted(left):
                self.send(ADMIN, a, Install(nxt))
            self.push(self.now + INSTALL_RETRY_S, "admin")

    def _installed(self, new: Config) -> None:
        """Epoch e is over; move the state to e+1 (its joining nodes must take it).

        After every step, not only before a node joins the prepare side: a removal lowers
        quorums too, and epoch e+2's phase 1 may miss epoch e's accept quorums."""
        step = self.plan.pop(0)
        self.out.stats["steps"] += 1
        self.log(f"admin: epoch {new.epoch - 1} is over: {new.describe()}")
        nxt = self.plan[0].needs_caught_up if self.plan else frozenset()
        keys = sorted({k for d in self.disks.values() for k in d.keys})  # (the nodes say)
        if not self.moves_state or (self.moves_only_for_joins and not nxt):
            keys = []
        self.moving = [f"move.{new.epoch}.{k}" for k in keys]
        self.queued[ADMIN].extend(Op(f"move.{new.epoch}.{k}", IDENTITY, k, must=nxt)
                                  for k in keys)
        del step
        self.stage = "move"
        if not self.moving:
            self.stage = "idle"
            self.push(self.now, "admin")
        else:
            self._at_proc(ADMIN, lambda p: None)

    def _admin_done(self, token: str, state: bytes | None) -> None:
        if self.stage == "propose":
            cfg = msgspec.json.decode(state or b"", type=Config)
            prev = self.procs[ADMIN].cfg
            if cfg != self.plan[0].config:
                self.violate(f"admin: epoch {cfg.epoch} was chosen as another configuration")
            if self.planner is safe_plan and check_step(prev, cfg) is not None:
                self.violate(f"admin: an unsafe step: {check_step(prev, cfg)}")
            self.by_epoch[cfg.epoch] = cfg
            self.out.configs.append(cfg)
            self.procs[ADMIN].learn(cfg)
            self.stage, self.acks = "install", set()
            self.push(self.now, "admin")
        elif self.stage == "move":
            self.moving.remove(token)
            if not self.moving:
                self.stage = "idle"
                self.push(self.now, "admin")

    def _finished(self, proc: str, token: str, state: bytes | None) -> None:
        if proc == ADMIN:
            self._admin_done(token, state)
            return
        call, op = self.calls.pop(token)
        self.out.stats[f"done_{op.kind}"] += 1
        if op.kind in (WRITE, FAST):
            assert state is not None
            self.told.setdefault(op.key, state)
            if self.told[op.key] != state or self.chosen.get(op.key, state) != state:
                self.violate(f"two values chosen for {op.key}: {proc} was told {state!r}, "
                             f"but {self.chosen.get(op.key, self.told[op.key])!r} was chosen")
        else:
            version, done, value = reg_state(state)
            if op.kind == SET:
                version, value = next(v for t, v in done if t == token), op.arg
            self.out.history.append(lincheck.Op(proc, op.key, op.kind, call, self.now,
                                                version=version, value=value, arg=op.arg))

    # ---- the ghost

    def _vote(self, a: int, epoch: int, key: str, ballot: Ballot, value: bytes) -> None:
        self.out.votes.append((self.now, a, epoch, key, ballot, value))
        cfg = self.by_epoch.get(epoch)
        if cfg is None:
            return  # (only a broken proposer can send an epoch the ghost has not seen)
        voters = self.voters.setdefault((key, epoch, ballot, value), set())
        voters.add(a)
        if cfg.accept_ok(voters) and not key.startswith("r"):
            first = self.chosen.setdefault(key, value)
            if first != value:
                self.violate(f"two values chosen for {key}: {first!r}, then {value!r} by "
                             f"{sorted(voters)} at ballot {ballot} in {cfg.describe()}")
            told = self.told.get(key)
            if told is not None and told != value:
                self.violate(f"two values chosen for {key}: a client was told {told!r}, "
                             f"then {value!r} was chosen by {sorted(voters)} in epoch {epoch}")

    def _check_end(self, horizon: float) -> None:
        if self.queue and self.now >= horizon:
            self.violate(f"liveness: not finished by t={horizon:g} (stage {self.stage})")
        for key, ops in _by_key(self.out.history).items():
            ok, why = lincheck.check_key(ops)
            if not ok:
                self.violate(f"no linearization of register {key}: {why}")


def _show(msg: Any) -> str:
    """A message in a trace line: its type, epoch and fields, configurations named."""
    parts = [type(msg).__name__.upper()]
    for k, v in vars(msg).items():
        if isinstance(v, Config):
            parts.append(f"epoch={v.epoch}")
        elif v is not None:
            parts.append(f"{k}={v!s}" if not isinstance(v, bytes) else f"{k}={v!r}")
    return " ".join(parts)


def _by_key(history: Iterable[lincheck.Op]) -> dict[str, list[lincheck.Op]]:
    out: dict[str, list[lincheck.Op]] = {}
    for o in history:
        out.setdefault(o.key, []).append(o)
    return out


# --------------------------------------------------------------------------- broken variants

# name -> (what MemberSimulation takes, what the violation says); their entries in the one
# table of broken variants (zpaxos/sim/mutants.py, layer "membership") are made from these.
CAUGHT_BY = "two values chosen|no linearization"
MUTANTS: dict[str, tuple[dict[str, Any], str]] = {
    "one-step-reconfig": ({"planner": one_step_plan}, CAUGHT_BY),
    "counted-before-caught-up": ({"moves_state": False}, CAUGHT_BY),
    "moves-state-only-for-joins": ({"moves_only_for_joins": True}, CAUGHT_BY),
    "removed-while-needed": ({"planner": remove_at_once_plan}, CAUGHT_BY),
    "ignores-epoch": ({"ignores_epoch": True}, CAUGHT_BY),
    "range-across-epochs": ({"keeps_lease": True}, CAUGHT_BY),
}


def run_schedule(seed: int, trace: bool = False, **variant: Any) -> MemberRun:
    return MemberSimulation(generate(seed), trace=trace, **variant).run()


def check_seeds(seeds: Iterable[int], stop_at_first: bool = True, **variant: Any
                ) -> tuple[list[InvariantViolation], Counter[str]]:
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
        cover["schedules"] += 1
        cover["steps"] += r.stats["steps"]
        for name in ("crashes", "cuts", "done_fast", "done_set", "done_get", "done_write"):
            cover[f"with_{name}"] += r.stats[name] > 0
    return failures, cover


def main(argv: list[str] | None = None) -> int:
    return seeds_main("membership changes in the simulator", 300, MUTANTS,
                      lambda m: {**MUTANTS[m][0], "replay": f"{REPLAY} --mutant {m}"},
                      run_schedule, check_seeds, argv)


if __name__ == "__main__":
    sys.exit(main())
