"""Membership: who votes, how many votes a phase needs, and how to change that safely.

A :class:`Config` names the members (everyone with an address) and, for each phase of
Paxos, which of them count and how many are needed: ``prepare``/``prepare_quorum`` for
phase 1, ``accept``/``accept_quorum`` for phase 2. Every configuration has an ``epoch``;
the configuration of epoch e+1 is chosen by Paxos in epoch e, so they form a chain.

Why one configuration is safe on its own: every prepare quorum meets every accept quorum
(:func:`quorums_meet`), so a proposer's phase 1 always hears of a value a quorum accepted
(Flexible Paxos: phase-1 and phase-2 quorums need only meet each other).

Why a change is safe: it goes one small step at a time (the method of CASPaxos, Rystsov
2018, section 2.3), and :func:`check_step` admits a step only if every prepare quorum of
each of the two configurations meets every accept quorum of the other, both ways. Then
proposers of epoch e and of e+1 may run at the same time: together they form one quorum
system in which phase 1 always meets phase 2. A node joins the accept side first (it
receives every new write), is caught up (holds every key's state from before), and only
then counts in phase 1; a node leaves in the reverse order. The planner
(:func:`plan_add`, :func:`plan_remove`, :func:`plan_replace`) searches for the shortest
such chain, so every step of a plan passes :func:`check_step` by construction.

Three rules are the caller's, since no configuration can check them (the simulator,
zpaxos/sim/membersim.py, breaks the last two and sees two values chosen):

* a step to e+1 is over once so many nodes hold e+1 that no quorum of epoch e is left
  among the others (in either phase): only then may e+2 be proposed;
* after *every* step the state moves to e+1: each key's latest value is written again by
  an e+1 accept quorum (an identity round: read with e+1's prepare quorum, write back),
  because the quorums of e and e+2 may miss each other -- after a removal as well as an
  addition (variant ``moves-state-only-for-joins``);
* a step marked ``needs_caught_up`` is proposed only once those nodes accepted every one
  of those rounds (they hold every key's state).

Pure: no sockets, clock or disk. See docs/membership.md.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from msgspec import Struct

__all__ = ["MAX_MEMBERS", "Config", "Member", "Step", "check_step", "layout", "plan_add",
           "plan_remove", "plan_replace", "plan_search", "quorums_meet"]

MAX_MEMBERS = 15  # members one configuration holds; more is refused
MAX_NODE_ID = 65535  # the wire's NodeId bound (zpaxos/protocol/wiretypes.py)


class Member(Struct, frozen=True, forbid_unknown_fields=True):
    """One member: its node id, its address, and its CURVE public key (z85 text) if any."""

    id: int
    host: str
    port: int
    public_key: str | None = None


def layout(n: int) -> tuple[int, int]:
    """The quorums ``(prepare_quorum, accept_quorum)`` of ``n`` members that all vote.

    Phase 2 takes a majority; phase 1 the fewest that still meet every majority. For an odd
    ``n = 2F+1`` both are F+1 (plain majorities); for an even ``n = 2F+2``, phase 1 takes
    F+1 and phase 2 F+2 (CASPaxos section 2.3). That even layout is why a new node may not
    join in one step: 3 -> 4 members would let a phase 1 of {old, new} miss an old quorum
    that accepted a value (see :func:`check_step`)."""
    if n < 1:
        raise ValueError("a configuration needs at least one member")
    accept = n // 2 + 1
    return n - accept + 1, accept


class Config(Struct, frozen=True, forbid_unknown_fields=True):
    """One configuration: the members, and who counts how much in each phase."""

    epoch: int
    members: tuple[Member, ...]
    prepare: tuple[int, ...]
    prepare_quorum: int
    accept: tuple[int, ...]
    accept_quorum: int

    @classmethod
    def initial(cls, members: Iterable[Member]) -> Config:
        """Epoch 1, every member voting in both phases (the INI file's nodes)."""
        ms = tuple(sorted(members, key=lambda m: m.id))
        ids = tuple(m.id for m in ms)
        pq, aq = layout(len(ids)) if ids else (1, 1)
        cfg = cls(1, ms, ids, pq, ids, aq)
        problem = cfg.problem()
        if problem:
            raise ValueError(problem)
        return cfg

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(m.id for m in self.members)

    def member(self, node_id: int) -> Member | None:
        for m in self.members:
            if m.id == node_id:
                return m
        return None

    def prepare_ok(self, ids: Iterable[int]) -> bool:
        """Do ``ids`` (nodes that promised) make a phase-1 quorum?"""
        return len(set(ids).intersection(self.prepare)) >= self.prepare_quorum

    def accept_ok(self, ids: Iterable[int]) -> bool:
        """Do ``ids`` (nodes that accepted one ballot) make a phase-2 quorum?"""
        return len(set(ids).intersection(self.accept)) >= self.accept_quorum

    def problem(self) -> str | None:
        """Why this configuration is unusable on its own, or None."""
        ids = self.ids
        if self.epoch < 1:
            return f"epoch {self.epoch} is below 1"
        if not 1 <= len(ids) <= MAX_MEMBERS:
            return f"{len(ids)} members: a configuration holds 1 to {MAX_MEMBERS}"
        if len(set(ids)) != len(ids):
            return "a node id appears twice among the members"
        if any(not 0 <= i <= MAX_NODE_ID for i in ids):
            return f"a node id is outside 0..{MAX_NODE_ID}"
        if len({(m.host, m.port) for m in self.members}) != len(ids):
            return "two members share one address"
        for name, side, q in (("prepare", self.prepare, self.prepare_quorum),
                              ("accept", self.accept, self.accept_quorum)):
            if tuple(sorted(set(side))) != side:
                return f"the {name} side must list node ids once each, in order"
            if not set(side) <= set(ids):
                return f"the {name} side names a node that is not a member"
            if not 1 <= q <= len(side):
                return f"{name} quorum {q} is outside 1..{len(side)}"
        if not set(self.prepare) <= set(self.accept):
            return ("a node counts in phase 1 without receiving phase 2: "
                    "every prepare member must be an accept member")
        if not quorums_meet(self.prepare, self.prepare_quorum, self.accept, self.accept_quorum):
            return (f"a prepare quorum ({self.prepare_quorum} of {len(self.prepare)}) can miss "
                    f"an accept quorum ({self.accept_quorum} of {len(self.accept)})")
        return None

    def describe(self) -> str:
        """One line: ``epoch 2: prepare 2 of [1,2,3], accept 3 of [1,2,3,4]``."""
        return (f"epoch {self.epoch}: prepare {self.prepare_quorum} of {list(self.prepare)}, "
                f"accept {self.accept_quorum} of {list(self.accept)}")


def quorums_meet(prepare: Iterable[int], prepare_quorum: int,
                 accept: Iterable[int], accept_quorum: int) -> bool:
    """Does every ``prepare_quorum`` nodes of ``prepare`` share a node with every
    ``accept_quorum`` nodes of ``accept``?

    Two disjoint quorums exist exactly when the nodes of one side only, plus the shared
    nodes, can feed both: each quorum takes its own side's private nodes first and what it
    still lacks from the shared ones."""
    p, a = set(prepare), set(accept)
    shared = len(p & a)
    need_p = max(0, prepare_quorum - len(p - a))
    need_a = max(0, accept_quorum - len(a - p))
    return need_p + need_a > shared


class Step(Struct, frozen=True):
    """One step of a plan: the next configuration, and what must hold before it is proposed.

    ``needs_caught_up``: nodes that start counting in phase 1 at this step; each must first
    hold every key's and register's state (it has been on the accept side since an earlier
    step, so it already receives every new write)."""

    config: Config
    needs_caught_up: frozenset[int] = frozenset()
    why: str = ""


def check_step(old: Config, new: Config) -> str | None:
    """Why ``new`` may not directly follow ``old`` (None: it may).

    The step must raise the epoch by one, leave a usable configuration, change at most one
    node on each side, let no node count in phase 1 before it received phase 2 in ``old``,
    and keep phase 1 and phase 2 meeting across the two configurations, both ways."""
    if new.epoch != old.epoch + 1:
        return f"epoch {new.epoch} does not follow epoch {old.epoch}"
    problem = new.problem()
    if problem:
        return problem
    for name, a, b in (("members", old.ids, new.ids), ("prepare", old.prepare, new.prepare),
                       ("accept", old.accept, new.accept)):
        changed = set(a) ^ set(b)
        if len(changed) > 1:
            return f"{name} changes by {len(changed)} nodes at once: one step changes one"
    early = sorted(set(new.prepare) - set(old.accept))
    if early:
        return (f"node {early[0]} would count in phase 1 before it received phase 2 "
                "(grow the accept side first, catch it up, then the prepare side)")
    for side_p, side_a in ((old, new), (new, old)):
        if not quorums_meet(side_p.prepare, side_p.prepare_quorum,
                            side_a.accept, side_a.accept_quorum):
            return (f"a prepare quorum of epoch {side_p.epoch} ({side_p.prepare_quorum} of "
                    f"{list(side_p.prepare)}) can miss an accept quorum of epoch "
                    f"{side_a.epoch} ({side_a.accept_quorum} of {list(side_a.accept)}): "
                    "two values could be chosen")
    return None


# --------------------------------------------------------------------------- planning

_Shape = tuple[frozenset[int], int, frozenset[int], int]  # prepare, pq, accept, aq
MAX_PLAN_STATES = 200_000  # the search's bound (a plan among 15 members needs far fewer)


def _config(base: Config, shape: _Shape, epoch: int, members: tuple[Member, ...]) -> Config:
    p, pq, a, aq = shape
    keep = p | a
    ms = tuple(m for m in members if m.id in keep)
    return Config(epoch, ms, tuple(sorted(p)), pq, tuple(sorted(a)), aq)


def plan_search(cfg: Config, members: tuple[Member, ...],
                prepare_sets: list[frozenset[int]], accept_sets: list[frozenset[int]],
                goal: tuple[frozenset[int], int, frozenset[int], int],
                spare: int | None) -> list[Step]:
    """The best chain of steps from ``cfg`` to ``goal``, each passing check_step.

    A search over the shapes (prepare set, quorum, accept set, quorum) built from the given
    sets; a move changes one side (its set and/or its quorum). Best: fewest configurations
    whose quorums need node ``spare`` (a node being removed may be dead: the cluster must
    not wait for it), then fewest steps."""
    start: _Shape = (frozenset(cfg.prepare), cfg.prepare_quorum,
                     frozenset(cfg.accept), cfg.accept_quorum)
    parent: dict[_Shape, _Shape | None] = {start: None}
    cost: dict[_Shape, tuple[int, int]] = {start: (0, 0)}
    confs = {start: cfg}
    todo = [((0, 0), sorted(start[0]), sorted(start[2]), start)]
    while todo:
        c, _, _, shape = heapq.heappop(todo)
        if c != cost[shape]:
            continue  # a better way here was found after this entry was queued
        if shape == goal:
            chain = [shape]
            while (prev := parent[chain[-1]]) is not None:
                chain.append(prev)
            return _steps(cfg, members, chain[::-1][1:])
        conf = confs[shape]
        p, pq, a, aq = shape
        moves = [(p, pq, a2, q) for a2 in accept_sets for q in range(1, len(a2) + 1)]
        moves += [(p2, q, a, aq) for p2 in prepare_sets for q in range(1, len(p2) + 1)]
        for nxt in moves:
            new = _config(cfg, nxt, conf.epoch + 1, members)
            nc = (c[0] + _needs(nxt, spare), c[1] + 1)
            if nc >= cost.get(nxt, (MAX_PLAN_STATES, 0)) or check_step(conf, new) is not None:
                continue
            parent[nxt], cost[nxt], confs[nxt] = shape, nc, new
            if len(parent) > MAX_PLAN_STATES:
                raise ValueError("no plan found within the search's bound")
            heapq.heappush(todo, (nc, sorted(nxt[0]), sorted(nxt[2]), nxt))
    raise ValueError(f"no safe chain of steps leads from {cfg.describe()} to the goal")


def _needs(shape: _Shape, spare: int | None) -> int:
    """1 if a quorum of ``shape`` cannot be had without node ``spare``."""
    if spare is None:
        return 0
    p, pq, a, aq = shape
    return int(pq > len(p - {spare}) or aq > len(a - {spare}))


def _steps(cfg: Config, members: tuple[Member, ...], chain: list[_Shape]) -> list[Step]:
    out = []
    prev = cfg
    for shape in chain:
        new = _config(cfg, shape, prev.epoch + 1, members)
        joined = frozenset(new.prepare) - frozenset(prev.prepare)
        out.append(Step(new, joined, _why(prev, new)))
        prev = new
    return out


def _why(old: Config, new: Config) -> str:
    parts = []
    for name, a, b, qa, qb in (("accept", old.accept, new.accept, old.accept_quorum,
                                new.accept_quorum),
                               ("prepare", old.prepare, new.prepare, old.prepare_quorum,
                                new.prepare_quorum)):
        for i in sorted(set(b) - set(a)):
            parts.append(f"node {i} joins the {name} side")
        for i in sorted(set(a) - set(b)):
            parts.append(f"node {i} leaves the {name} side")
        if qa != qb:
            parts.append(f"{name} quorum {qa} -> {qb}")
    return "; ".join(parts)


def _goal(ids: Iterable[int]) -> _Shape:
    s = frozenset(ids)
    pq, aq = layout(len(s))
    return s, pq, s, aq


def plan_add(cfg: Config, member: Member) -> list[Step]:
    """The steps that make ``member`` a full member of ``cfg``: it joins the accept side,
    is caught up, then joins the prepare side (quorums adjusted on the way as needed)."""
    if cfg.member(member.id) is not None:
        raise ValueError(f"node {member.id} is already a member")
    if len(cfg.members) >= MAX_MEMBERS:
        raise ValueError(f"a configuration holds at most {MAX_MEMBERS} members")
    p, a = frozenset(cfg.prepare), frozenset(cfg.accept)
    members = cfg.members + (member,)
    return plan_search(cfg, members, [p, p | {member.id}], [a, a | {member.id}],
                 _goal(cfg.ids + (member.id,)), member.id)


def plan_remove(cfg: Config, node_id: int) -> list[Step]:
    """The steps that take ``node_id`` out of ``cfg``: it leaves the prepare side first,
    then the accept side, so its votes are never needed once it is gone."""
    if cfg.member(node_id) is None:
        raise ValueError(f"node {node_id} is not a member")
    if len(cfg.members) == 1:
        raise ValueError("the last member cannot be removed")
    p, a = frozenset(cfg.prepare), frozenset(cfg.accept)
    rest = tuple(i for i in cfg.ids if i != node_id)
    return plan_search(cfg, cfg.members, [p, p - {node_id}], [a, a - {node_id}],
                       _goal(rest), node_id)


def plan_replace(cfg: Config, node_id: int, member: Member) -> list[Step]:
    """The steps that put ``member`` in ``node_id``'s place (the dead-disk case).

    A new id joins before the old one leaves, so the cluster keeps its margin of failures.
    The same id (a node back with an empty data directory) must first leave entirely: its
    old votes are gone with its disk, so it comes back as a new node that is caught up
    before it counts."""
    if cfg.member(node_id) is None:
        raise ValueError(f"node {node_id} is not a member")
    if member.id == node_id:
        removed = plan_remove(cfg, node_id)
        return removed + plan_add(removed[-1].config, member)
    if cfg.member(member.id) is not None:
        raise ValueError(f"node {member.id} is already a member")
    p, a = frozenset(cfg.prepare), frozenset(cfg.accept)
    x, y = member.id, node_id
    members = cfg.members + (member,)
    rest = tuple(i for i in cfg.ids if i != y) + (x,)
    return plan_search(cfg, members, [p, p | {x}, (p | {x}) - {y}, p - {y}],
                 [a, a | {x}, (a | {x}) - {y}, a - {y}], _goal(rest), y)
