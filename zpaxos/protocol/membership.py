"""The cluster's membership: configurations and the safe steps between them (pure).

PROVISIONAL (wt-mrun): written to the shared contract (prompts/members_common.md) so the
runtime could be built before wt-msim's module landed; wt-msim's version replaces it.

A :class:`Config` says who the members are (with their addresses and CURVE keys) and
which of them count in each phase: ``prepare``/``prepare_quorum`` for phase 1,
``accept``/``accept_quorum`` for phase 2. Changes go one member at a time, staged as in
CASPaxos (Rystsov 2018, §2.3): an added member joins the accept side first, gets the
state, then joins the prepare side; a removed member leaves the prepare side first.
Any two adjacent configurations' quorums intersect (:func:`check_step`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Annotated

import msgspec
from msgspec import Meta

MAX_MEMBERS = 15
MAX_HOST_BYTES = 253
MAX_KEY_TEXT = 64  # a CURVE public key as Z85 text is 40 characters

__all__ = ["MAX_MEMBERS", "Config", "Member", "Step", "check_step", "intersect",
           "majority", "plan_add", "plan_remove", "plan_replace"]


class Member(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    id: Annotated[int, Meta(ge=0, le=9999)]
    host: Annotated[str, Meta(min_length=1, max_length=MAX_HOST_BYTES)]
    port: Annotated[int, Meta(ge=1, le=65535)]
    public_key: Annotated[str, Meta(max_length=MAX_KEY_TEXT)] | None = None


Ids = Annotated[tuple[Annotated[int, Meta(ge=0, le=9999)], ...], Meta(max_length=MAX_MEMBERS)]


def majority(n: int) -> int:
    return n // 2 + 1


def intersect(p: Collection[int], pq: int, a: Collection[int], aq: int) -> bool:
    """Does every ``pq`` of ``p`` meet every ``aq`` of ``a``? (The prepare quorum takes
    as many ids outside ``a`` as it can; the accept quorum must then avoid the rest.)"""
    p_set, a_set = set(p), set(a)
    outside = len(p_set - a_set)
    forced = max(0, pq - outside)  # prepare ids that must lie in a
    return aq > len(a_set) - forced


class Config(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    epoch: Annotated[int, Meta(ge=1, le=2**53)]
    members: Annotated[tuple[Member, ...], Meta(min_length=1, max_length=MAX_MEMBERS)]
    prepare: Ids
    prepare_quorum: Annotated[int, Meta(ge=1, le=MAX_MEMBERS)]
    accept: Ids
    accept_quorum: Annotated[int, Meta(ge=1, le=MAX_MEMBERS)]

    @classmethod
    def initial(cls, members: Iterable[Member]) -> Config:
        ms = tuple(sorted(members, key=lambda m: m.id))
        ids = tuple(m.id for m in ms)
        return cls(1, ms, ids, majority(len(ids)), ids, majority(len(ids)))

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(m.id for m in self.members)

    def member(self, node_id: int) -> Member | None:
        for m in self.members:
            if m.id == node_id:
                return m
        return None

    def prepare_ok(self, ids: Collection[int]) -> bool:
        return len(set(ids) & set(self.prepare)) >= self.prepare_quorum

    def accept_ok(self, ids: Collection[int]) -> bool:
        return len(set(ids) & set(self.accept)) >= self.accept_quorum

    def problem(self) -> str | None:
        """Why this configuration is not valid on its own (None if it is)."""
        ids = self.ids
        if len(set(ids)) != len(ids):
            return "a member id appears twice"
        if len({(m.host, m.port) for m in self.members}) != len(ids):
            return "two members share an address"
        if not set(self.prepare) <= set(ids) or not set(self.accept) <= set(ids):
            return "a voter is not a member"
        if self.prepare_quorum > len(set(self.prepare)) or \
                self.accept_quorum > len(set(self.accept)):
            return "a quorum is larger than its voters"
        if not intersect(self.prepare, self.prepare_quorum, self.accept, self.accept_quorum):
            return "a prepare quorum can miss an accept quorum"
        return None


class Step(msgspec.Struct, frozen=True):
    """One reconfiguration step: the next config and who must have caught up before it."""

    config: Config
    needs_caught_up: frozenset[int] = frozenset()
    what: str = ""


def check_step(old: Config, new: Config) -> str | None:
    """Why going straight from ``old`` to ``new`` is unsafe (None when it is safe)."""
    if new.epoch != old.epoch + 1:
        return f"epoch {new.epoch} does not follow {old.epoch}"
    problem = new.problem()
    if problem:
        return problem
    if not intersect(old.prepare, old.prepare_quorum, new.accept, new.accept_quorum):
        return "an old prepare quorum can miss a new accept quorum"
    if not intersect(new.prepare, new.prepare_quorum, old.accept, old.accept_quorum):
        return "a new prepare quorum can miss an old accept quorum"
    return None


def _next(cfg: Config, members: tuple[Member, ...], prepare: tuple[int, ...],
          accept: tuple[int, ...], steps: int) -> Config:
    return Config(cfg.epoch + steps, tuple(sorted(members, key=lambda m: m.id)),
                  tuple(sorted(prepare)), majority(len(prepare)),
                  tuple(sorted(accept)), majority(len(accept)))


def plan_add(cfg: Config, member: Member) -> list[Step]:
    """Grow the accept side, catch the new member up, then grow the prepare side."""
    if cfg.member(member.id) is not None:
        raise ValueError(f"node {member.id} is already a member")
    if len(cfg.members) >= MAX_MEMBERS:
        raise ValueError(f"a cluster has at most {MAX_MEMBERS} members")
    members = (*cfg.members, member)
    ids = tuple(m.id for m in members)
    first = _next(cfg, members, cfg.prepare, ids, 1)
    second = _next(cfg, members, ids, ids, 2)
    return [Step(first, frozenset(), f"node{member.id} joins the accept quorums"),
            Step(second, frozenset({member.id}), f"node{member.id} votes in phase 1 too")]


def plan_remove(cfg: Config, node_id: int) -> list[Step]:
    """Shrink the prepare side, then the accept side (and the member list)."""
    if cfg.member(node_id) is None:
        raise ValueError(f"node {node_id} is not a member")
    if len(cfg.members) <= 1:
        raise ValueError("the last member cannot be removed")
    rest = tuple(m for m in cfg.members if m.id != node_id)
    ids = tuple(m.id for m in rest)
    first = _next(cfg, cfg.members, ids, cfg.accept, 1)
    second = _next(cfg, rest, ids, ids, 2)
    return [Step(first, frozenset(), f"node{node_id} stops voting in phase 1"),
            Step(second, frozenset(), f"node{node_id} leaves")]


def plan_replace(cfg: Config, node_id: int, member: Member) -> list[Step]:
    """Remove the old node (its state may be gone), then add the new one in its place."""
    steps = plan_remove(cfg, node_id)
    steps += plan_add(steps[-1].config, member)
    return steps
