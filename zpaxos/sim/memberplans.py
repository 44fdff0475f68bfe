"""The membership simulator's schedules and plans: what changes, who writes what, when
(zpaxos/sim/membersim.py runs them), the safe plans of zpaxos/protocol/membership.py, and
the broken planners of two of the broken variants."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from zpaxos.protocol.membership import (
    Config,
    Member,
    layout,
    plan_add,
    plan_remove,
    plan_replace,
)
from zpaxos.protocol.membership import Step as PlanStep
from zpaxos.sim.memberproc import FAST, GET, SET, WRITE, Op

SPARES = (4, 5, 6)


def member(i: int) -> Member:
    return Member(i, "127.0.0.1", 7000 + i)


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class MemberScenario:
    seed: int
    changes: tuple[tuple[str, int, int], ...]  # (add|remove|replace, node, new node)
    change_at: float
    ops: tuple[tuple[float, str, Op], ...]  # (start time, client, operation)
    drop_p: float = 0.05
    dup_p: float = 0.03
    delay_s: tuple[float, float] = (0.001, 0.03)
    crashes: tuple[tuple[float, int, float], ...] = ()  # (at, node, down for)
    cuts: tuple[tuple[float, str, int, float], ...] = ()  # (at, client, node, for)
    chaos_s: float = 2.0
    bound_s: float = 60.0

    def describe(self) -> str:
        return (f"changes {list(self.changes)} from t={self.change_at:.3f}, {len(self.ops)} "
                f"operations, {len(self.crashes)} crashes, {len(self.cuts)} cuts, "
                f"drop {self.drop_p:g}")


CHANGES: list[tuple[tuple[str, int, int], ...]] = [
    (("add", 4, 0),), (("add", 4, 0), ("add", 5, 0)), (("remove", 1, 0),),
    (("replace", 1, 4),), (("replace", 2, 4), ("replace", 3, 5)),
    (("add", 4, 0), ("remove", 1, 0)), (("remove", 3, 0), ("add", 4, 0)),
    (("replace", 1, 4), ("replace", 2, 5), ("replace", 3, 6)),
]


def generate(seed: int) -> MemberScenario:
    rng = random.Random(f"members/{seed}")
    changes = rng.choice(CHANGES)
    change_at = rng.uniform(0.05, 1.0)
    ops: list[tuple[float, str, Op]] = []
    for c in range(3):
        t = rng.uniform(0, 0.1)
        for i in range(rng.randint(4, 10)):
            t += rng.expovariate(1 / 0.3)
            kind = rng.choice((WRITE, WRITE, SET, GET, FAST, FAST))
            key = {WRITE: rng.choice(("k0", "k1")), SET: "r0", GET: "r0",
                   FAST: f"f-{rng.randrange(4)}"}[kind]
            at = t
            if kind == FAST and c != 0:
                # A rival of the lease holder writes a fresh key of its range with two
                # phases, once the membership is changing.
                kind, at = WRITE, change_at + rng.uniform(0, 16.0)
                key = f"f-{rng.randrange(4, 8)}"
            ops.append((at, f"c{c}", Op(f"c{c}.{i}", kind, key, f"c{c}v{i}".encode())))
    for i in range(3):  # the lease holder again, late: maybe a few epochs on
        ops.append((change_at + rng.uniform(2.0, 20.0), "c0",
                    Op(f"c0.late{i}", FAST, f"f-{rng.randrange(4, 8)}", f"c0late{i}".encode())))
    nodes = (1, 2, 3) + SPARES
    crashes = tuple((rng.uniform(0, 2.0), rng.choice(nodes), rng.uniform(0, 0.3))
                    for _ in range(rng.randint(0, 3)))
    cuts = tuple((rng.uniform(0, 2.0), f"c{rng.randrange(3)}", rng.choice(nodes),
                  rng.uniform(0, 0.5)) for _ in range(rng.randint(0, 2)))
    return MemberScenario(seed, changes, change_at, tuple(sorted(
        ops, key=lambda o: o[0])), drop_p=rng.choice((0.0, 0.05, 0.1)), crashes=crashes,
        cuts=cuts)


# --------------------------------------------------------------------------- the plans


Planner = Callable[[Config, str, int, int], list[PlanStep]]


def safe_plan(cfg: Config, what: str, node: int, new: int) -> list[PlanStep]:
    if what == "add":
        return plan_add(cfg, member(node))
    if what == "remove":
        return plan_remove(cfg, node)
    return plan_replace(cfg, node, member(new))


def one_step_plan(cfg: Config, what: str, node: int, new: int) -> list[PlanStep]:
    """Broken: a node joins in one step, straight into the final configuration (3 -> 4
    nodes: a prepare quorum of two may be the new node and one that missed a value)."""
    if what == "add":
        return _jump(cfg, what, node, new)
    if what == "replace":
        steps = _jump(cfg, "add", new, 0)
        return steps + plan_remove(steps[-1].config, node)
    return safe_plan(cfg, what, node, new)


def _jump(cfg: Config, what: str, node: int, new: int) -> list[PlanStep]:
    """One step straight to the final configuration, whatever it takes."""
    ids = set(cfg.ids)
    ids = ids | {node} if what == "add" else ids - {node} | ({new} if new else set())
    ms = tuple(member(i) for i in sorted(ids))
    pq, aq = layout(len(ms))
    side = tuple(sorted(ids))
    return [PlanStep(Config(cfg.epoch + 1, ms, side, pq, side, aq))]


def remove_at_once_plan(cfg: Config, what: str, node: int, new: int) -> list[PlanStep]:
    """Broken: a node leaves both sides in one step (adding is done safely)."""
    if what == "add":
        return safe_plan(cfg, what, node, new)
    if what == "replace":
        steps = plan_add(cfg, member(new))
        return steps + _jump(steps[-1].config, "remove", node, 0)
    return _jump(cfg, what, node, new)
