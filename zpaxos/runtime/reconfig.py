"""``zpaxos members add/remove/replace``: moving the cluster to a goal, one step at a time.

The plan is never stored: each pass asks the members which configuration the cluster is
in (the newest link of its chain, runtime/members.py) and computes the next step towards
the goal from there (:func:`plan_to`). Each step is ONE Paxos decision (the chain key of
the next epoch, proposed with the current epoch's quorums), so Ctrl-C or a crash at any
moment leaves the cluster in the old configuration or the new one, never in neither, and
running the command again finishes the job.

Before proposing a step the runner waits for three things, and says so:

* the members the step starts counting in phase 1 (``needs_caught_up``) have caught up:
  they vote, and have synced every decision from every peer (the ``--new`` machinery:
  a joining node is a fresh incarnation, docs/operating.md);
* the epoch before the current one is over: the nodes that have not moved on from it can
  no longer form either of its quorums, so none of its operations can still complete
  (its quorums need not meet the next epoch's);
* the state has moved into the current configuration (runtime/settle.py): every decided
  key held by an accept quorum of it, an identity round for every key accepted but not
  decided, and every register read and written back with its quorums. It is done again
  on every pass (a rerun redoes it for the configuration it finds), and once more when
  the goal is reached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from zpaxos.protocol.membership import (
    Config,
    Member,
    Step,
    layout,
    plan_add,
    plan_remove,
    plan_search,
)
from zpaxos.protocol.messages import MembersInfo
from zpaxos.runtime import members as chain
from zpaxos.runtime.client import Client, Interrupted
from zpaxos.runtime.settle import SettleError, settle

ASK_S = 0.5  # how long one round of MembersAsk waits for the members' answers
POLL_S = 0.2  # between two rounds while waiting


class ReconfigError(Exception):
    """The goal cannot be reached from here (the message says why, for the user)."""


@dataclass(frozen=True, slots=True)
class Waiting:
    """What the runner is waiting for, for the command to show: ``what`` in words, and
    for a catch-up the keys the new member holds of the most any member holds."""

    what: str
    done: int = 0
    total: int = 0


def plan_to(cfg: Config, goal: tuple[Member, ...]) -> list[Step]:
    """The steps from ``cfg`` to the members ``goal`` (each voting in both phases, the
    quorums of protocol/membership.layout); [] when ``cfg`` is the goal. A configuration
    half way through a change (a node on one side only, or other quorums) is first
    finished: forward for a node the goal keeps, backward for one it does not."""
    want = {m.id: m for m in goal}
    keep = tuple(m.id for m in cfg.members if want.get(m.id) == m)
    ids = set(cfg.ids)
    if set(cfg.prepare) != ids or set(cfg.accept) != ids:
        # Half way (someone on one side only): finish it with the planner's search. (Only
        # the sides count here: quorum sizes other than the layout's are a configuration
        # the planner starts from as well, and chasing them would undo its own steps.)
        p, a = frozenset(cfg.prepare), frozenset(cfg.accept)
        target = frozenset(keep)
        joining, leaving = target - p, frozenset(cfg.ids) - target
        sets = [p, p | joining, p - leaving, (p | joining) - leaving]
        accept = [a, a | joining, a - leaving, (a | joining) - leaving]
        spare = min(leaving) if leaving else None
        steps = plan_search(cfg, cfg.members, list(dict.fromkeys(sets)),
                            list(dict.fromkeys(accept)), _shape_of(keep), spare)
        return [*steps, *plan_to(steps[-1].config, goal)] if steps else []
    for m in cfg.members:
        if want.get(m.id) != m:  # leaves, or moves to another address (replace)
            steps = plan_remove(cfg, m.id)
            return [*steps, *plan_to(steps[-1].config, goal)]
    for m in goal:
        if cfg.member(m.id) is None:
            steps = plan_add(cfg, m)
            return [*steps, *plan_to(steps[-1].config, goal)]
    return []


def _shape_of(ids: tuple[int, ...]) -> tuple[frozenset[int], int, frozenset[int], int]:
    """Everyone in both phases, with the layout's quorums: where every change ends."""
    pq, aq = layout(len(ids))
    return frozenset(ids), pq, frozenset(ids), aq


class Runner:
    """Drives one reconfiguration through ``client`` (one process's connection).
    ``say``: each line for the user; ``wait``: what it waits for (called each round)."""

    def __init__(self, client: Client, say: Callable[[str], None],
                 wait: Callable[[Waiting], None]) -> None:
        self.client = client
        self.say = say
        self.wait = wait
        self.infos: dict[int, MembersInfo] = {}
        self.seen: set[int] = set()  # nodes that answered once (a busy one may miss a round)

    def current(self) -> Config:
        """The cluster's configuration: the newest any member reports; epoch 1 (the
        config file's nodes) is first made a decision when no member holds a chain."""
        self.infos = self.client.ask_members(ASK_S)
        if self.client.members is not None:
            return self.client.members
        if not self.infos:
            raise ReconfigError("no node answered: is the cluster running? (the config "
                                "file's nodes are asked)")
        first = chain.initial(self.client.cluster)
        self.say(f"recording the config file's nodes as the cluster's configuration: "
                 f"{chain.describe(first)}")
        got = self._decide(first)
        self.client.members = None
        self.infos = self.client.ask_members(ASK_S)
        return self.client.members or got

    def _decide(self, cfg: Config) -> Config:
        """Propose ``cfg`` as the next link; the configuration chosen (another
        command's, when two raced)."""
        outcome = self.client.propose(chain.encode(cfg), chain.key_of(cfg.epoch))
        if outcome.chosen is None:
            raise ReconfigError(f"could not propose epoch {cfg.epoch}: {outcome.reason} "
                                f"(is a quorum of {chain.describe(self.client.members or cfg)}"
                                f" running?)")
        return chain.decode(outcome.chosen)

    def run(self, goal: tuple[Member, ...]) -> Config:
        """Move the cluster to ``goal``; the configuration it ends in."""
        while True:
            cfg = self.current()
            self._old_epoch_over(cfg)
            self._settle(cfg)
            steps = plan_to(cfg, goal)
            if not steps:
                return cfg
            step = steps[0]
            self._caught_up(step)
            self.say(f"epoch {step.config.epoch}: {step.why}: proposing "
                     f"{chain.describe(step.config)}")
            self.client.log.event("members_step", step.why, epoch=step.config.epoch,
                                  members=list(step.config.ids),
                                  prepare=list(step.config.prepare),
                                  accept=list(step.config.accept))
            chosen = self._decide(step.config)
            if chosen.epoch > self.client.epoch:
                self.client.use(chosen)
            if chosen != step.config:
                self.say(f"epoch {chosen.epoch} was taken by another change: "
                         f"{chain.describe(chosen)}; planning again")

    def _settle(self, cfg: Config) -> None:
        """Move every key's and register's state into ``cfg`` (runtime/settle.py)."""
        def wait(what: str, done: int, total: int) -> None:
            self.wait(Waiting(what, done, total))
            self._pause()
        try:
            keys, registers = settle(self.client, cfg, self.say, wait)
        except SettleError as e:
            raise ReconfigError(str(e)) from None
        if cfg.epoch > 1:
            self.client.log.event("members_settled", epoch=cfg.epoch, identity_rounds=keys,
                                  registers=registers)

    def _caught_up(self, step: Step) -> None:
        for node_id in sorted(step.needs_caught_up):
            while True:
                info = self.infos.get(node_id)
                most = max((i.decided for i in self.infos.values()), default=0)
                if info is not None and info.caught_up and info.epoch >= self.client.epoch:
                    break
                if info is not None:
                    self.seen.add(node_id)
                what = (f"node{node_id} to catch up" if node_id in self.seen else
                        f"node{node_id} to start (zpaxos node {node_id} --join) and catch up")
                self.wait(Waiting(what, info.decided if info else 0, most))
                self._pause()

    def _old_epoch_over(self, cfg: Config) -> None:
        """Wait until the nodes still in an epoch before ``cfg``'s cannot form a quorum
        of the previous configuration (so none of its operations can still complete)."""
        if cfg.epoch <= 1:
            return
        prev = self._config_at(cfg.epoch - 1)
        while True:
            behind = {i for i in prev.ids
                      if i not in self.infos or self.infos[i].epoch < cfg.epoch}
            if not prev.prepare_ok(behind) and not prev.accept_ok(behind):
                return
            names = ", ".join(f"node{i}" for i in sorted(behind))
            self.wait(Waiting(f"epoch {cfg.epoch - 1} to be over ({names} not yet in "
                              f"epoch {cfg.epoch})"))
            self._pause()

    def _config_at(self, epoch: int) -> Config:
        for st in self.client.status(chain.key_of(epoch)):
            for k in st.keys:
                if k.chosen is not None:
                    return chain.decode(k.chosen)
        raise ReconfigError(f"no member holds epoch {epoch}'s configuration any more")

    def _pause(self) -> None:
        time.sleep(POLL_S)
        if self.client.sockets.stop_requested:
            raise Interrupted(self.client.sockets.wakeup.signal_name
                              if self.client.sockets.wakeup else "")
        self.infos = self.client.ask_members(ASK_S)
