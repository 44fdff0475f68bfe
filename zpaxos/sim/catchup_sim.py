"""Catching up in the simulator: a fault that makes a node deaf to learning, and a
liveness check that gives catching up teeth (docs/catching-up.md).

Decisions reach a node by many paths (the proposer's Decide, a sync at restart, the next
proposal of the key), so a broken catch-up can pass thousands of ordinary schedules. Here
each schedule of :func:`zpaxos.sim.simulator.generate` also gets:

* **a deaf node**: from the start until some time after the chaos, one node drops every
  Decide and every learn message (sync, catch-up pages and fetched values) that reaches
  it. It votes as usual; it just never hears what was chosen. Once it hears again, no
  Decide is ever sent again for those keys: only catching up can teach it.
* sometimes **a crash of that node** soon after its deafness ends, losing what it learned
  but had not committed (its cursors must never have moved past those values);
* **forged fetch replies** from a rogue client, naming made-up values.

The nodes run catching up (every CATCH_UP_S of virtual time, small pages so paging is
exercised), their learn index on their simulated disk, cursors saved as the node saves
them (only once the values they cover are durable). At the end, **every live node must
know every decision any live node knew CAUGHT_UP_S before the end**.

    python -m zpaxos.sim.catchup_sim --seeds 2000 [--mutant NAME]
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any

from zpaxos.hosts import catchup
from zpaxos.hosts.acceptor_host import AcceptorHost, Ready
from zpaxos.hosts.addresses import Src
from zpaxos.protocol.events import Learned
from zpaxos.protocol.messages import (
    Ballot,
    CatchUpReply,
    Decide,
    FetchReply,
    Message,
    SyncReply,
)
from zpaxos.protocol.regmessages import REGISTER_PREFIX
from zpaxos.protocol.state import KeyState
from zpaxos.sim.ghost import InvariantViolation
from zpaxos.sim.scenario import generate
from zpaxos.sim.seedcli import seeds_main
from zpaxos.sim.simulator import OTHER_KINDS, PASS, Simulation

TICK, FORGE_FETCH = OTHER_KINDS, OTHER_KINDS + 1
SIM_CATCH_UP_PAGE = 2  # tiny pages: a deaf node's catch-up always pages
# A decision a live node knew this long before the end must be on every live node: a lost
# request is asked again after RETRY_S, and a period passes between exchanges.
CAUGHT_UP_S = catchup.RETRY_S + 2 * catchup.CATCH_UP_S + 1.0
LEARN_TYPES = (Decide, SyncReply, CatchUpReply, FetchReply)
REPLAY = "python -m zpaxos.sim.catchup_sim --seed {seed}"


class SimLearn:
    """A node's learn log on its simulated disk (SqliteStore.learned_from's model)."""

    def __init__(self, node: int) -> None:
        self.incarnation = bytes([node + 1]) * 16
        self.log: list[str] = []
        self._seen: dict[str, KeyState] = {}

    def record(self, disk: dict[str, KeyState]) -> None:
        """A commit: chosen keys and register slots written since join the log."""
        for k, s in disk.items():
            if (s.chosen is not None or k[:1] == REGISTER_PREFIX) and self._seen.get(k) is not s:
                self.log.append(k)
                self._seen[k] = s

    def learned_from(self, pos: int, limit: int) -> list[str]:
        return self.log[pos:pos + limit]


class CatchUpSimulation(Simulation):
    def __init__(self, scenario: Any, **variant: Any) -> None:
        seed = scenario.seed
        n = scenario.n_acceptors
        self.learn = {a: SimLearn(a) for a in range(n)}
        self.disk_cursors: dict[int, dict[int, catchup.Cursor]] = {a: {} for a in range(n)}
        self.pending_cursors: dict[int, dict[int, catchup.Cursor]] = {a: {} for a in range(n)}
        self.tick_at: dict[int, float] = {}
        crng = random.Random(f"catchup/{seed}")
        last = max((p.start_s for p in scenario.proposers), default=0.0)
        self.deaf_node = crng.randrange(n)
        self.deaf_until = max(scenario.chaos.end_s, last) + crng.uniform(0.0, 2.0)
        self.crash_deaf_at = (self.deaf_until + crng.uniform(0, 3 * catchup.CATCH_UP_S)
                              if crng.random() < 0.5 else None)
        self.forged_fetches = crng.choice((0, 0, 3))
        self.crng = crng
        variant.setdefault("replay", REPLAY)
        super().__init__(scenario, **variant)

    def _host(self, a: int) -> AcceptorHost:
        sc = self.sc
        host = self.host_cls(a, dict(self.disk[a]), [b for b in self.ids if b != a],
                             sync_page=2, acceptor_cls=self.acceptor_cls,
                             check_client_decides=sc.check_client_decides,
                             ranges=dict(self.disk_ranges[a]),
                             catch_up_s=catchup.CATCH_UP_S, learn=self.learn[a],
                             cursors=dict(self.disk_cursors[a]))
        host.catch_up_page = SIM_CATCH_UP_PAGE
        return host

    # ---- the run

    def run(self) -> Any:
        sc = self.sc
        last = max((p.start_s for p in sc.proposers), default=0.0)
        for a in self.ids:
            self._schedule_tick(a)
        if self.crash_deaf_at is not None:
            self.push(self.crash_deaf_at, OTHER_KINDS + 2, self.deaf_node)
        for _ in range(self.forged_fetches):
            self.push(self.crng.uniform(0, last + sc.chaos.end_s + 0.05), FORGE_FETCH,
                       self.crng.choice(self.ids))
        result = super().run()
        self._check_caught_up(max(sc.chaos.end_s, last) + sc.bound_s)
        return result

    def _other(self, item: tuple[Any, ...]) -> None:
        kind, a = item[2], item[3]
        if kind == TICK:
            self._tick(a)
        elif kind == FORGE_FETCH:
            key = self.crng.choice(sorted({p.key for p in self.sc.proposers}))
            self.stats["forged_fetch"] += 1
            self._send("rogue", a, FetchReply(((key, b"made-up", Ballot(1, b"R")),), False))
        elif self.nodes[a] is not None:  # the deaf node's crash, soon after it hears again
            self.stats["deaf_crash"] += 1
            if self.tracing:
                self._log(f"CRASH n{a} (after its deafness)")
            self._crash(a)

    def _land(self, src: Any, dst: int, msg: Any) -> None:
        if dst == self.deaf_node and self.now < self.deaf_until and isinstance(msg, LEARN_TYPES):
            self.stats["deaf_dropped"] += 1
            if self.tracing:
                self._log(f"{src} -> n{dst} {type(msg).__name__} => n{dst} is deaf")
            return
        if isinstance(msg, (CatchUpReply, FetchReply)) and isinstance(src, int):
            # A reply on the node's own socket to a peer: the host sees the peer's id.
            self.land(PASS, dst, (src, msg), self.sc.pass_delay_s)
            return
        super()._land(src, dst, msg)

    # ---- the node's disk: learn index and cursors, as the node keeps them

    def _do_node(self, a: int, host: AcceptorHost, ready: Ready,
                 before: dict[str, KeyState | None], what: str) -> None:
        self.pending_cursors[a].update(ready.cursors)
        self.stats["caught_up"] += sum(n for _, n in ready.caught)
        super()._do_node(a, host, ready, before, what)
        if self.nodes[a] is None:
            return  # crashed in the step: its pending cursors are gone (_crash)
        self.learn[a].record(self.disk[a])
        self._save_cursors(a)
        self._schedule_tick(a)

    def _flush(self, a: int) -> None:
        super()._flush(a)
        if self.nodes[a] is not None:
            self.learn[a].record(self.disk[a])
            self._save_cursors(a)

    def _save_cursors(self, a: int) -> None:
        """The node's rule: cursors are saved once nothing it learned waits for a commit."""
        if self.pending_cursors[a] and not self.lazy[a]:
            self.disk_cursors[a].update(self.pending_cursors[a])
            self.pending_cursors[a] = {}

    def _crash(self, a: int) -> None:
        self.pending_cursors[a] = {}
        self.tick_at.pop(a, None)
        super()._crash(a)

    # ---- ticks

    def _schedule_tick(self, a: int) -> None:
        host = self.nodes[a]
        due = host.next_tick if host is not None else None
        if due is not None:
            at = max(due, self.now)
            if self.tick_at.get(a) != at:
                self.tick_at[a] = at
                self.push(at, TICK, a)

    def _tick(self, a: int) -> None:
        if self.tick_at.get(a) != self.now:
            return  # superseded
        del self.tick_at[a]
        host = self.nodes[a]
        if host is None:
            return
        self.stats["ticks"] += 1
        self._do_node(a, host, host.tick(self.now), dict(host.states),
                      "tick: catch up" if self.tracing else "")

    # ---- the liveness check

    def _check_caught_up(self, horizon: float) -> None:
        learned_at: dict[tuple[str, str], float] = {}
        for at, who, e in self.events:
            if type(e) is Learned:
                learned_at.setdefault((who, e.key), at)
        live = {a: h for a, h in self.nodes.items() if h is not None}
        for a, host in live.items():
            for key, s in host.states.items():
                t = learned_at.get((f"n{a}", key))
                if s.chosen is None or t is None or t > horizon - CAUGHT_UP_S:
                    continue
                for b, other in live.items():
                    o = other.states.get(key)
                    if o is None or o.chosen is None:
                        self._violate(f"liveness: n{b} never learned {key!r}, which n{a} "
                                      f"learned at t={t:.3f} (the run ends at t={horizon:.3f};"
                                      f" n{self.deaf_node} was deaf until "
                                      f"t={self.deaf_until:.3f})")


# --------------------------------------------------------------------------- broken variants


class _OffByOne:
    """A learn index whose seek starts one entry past the cursor."""

    def __init__(self, inner: catchup.LearnSource) -> None:
        self.inner = inner

    @property
    def incarnation(self) -> bytes:
        return self.inner.incarnation

    def learned_from(self, pos: int, limit: int) -> list[str]:
        return self.inner.learned_from(pos + 1, limit)


class CursorOffByOne(AcceptorHost):
    """Answers a catch-up request from one entry past the cursor."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        if self.learn is not None:
            self.learn = _OffByOne(self.learn)


class LearnsNothing(AcceptorHost):
    """Asks, fetches, and moves its cursors on, but applies none of the values."""

    def _fetched(self, src: int, msg: FetchReply, ready: Ready) -> None:
        super()._fetched(src, FetchReply((), False), ready)


class _EagerFollower(catchup.Follower):
    def on_page(self, peer: int, msg: CatchUpReply, lacks: Any
                ) -> tuple[catchup.Sends, catchup.Cursor | None]:
        sends, cursor = super().on_page(peer, msg, lacks)
        f = self.fetching.get(peer)
        return sends, (f.end if f is not None else cursor)  # before the values are in


class CursorBeforeValues(AcceptorHost):
    """Hands out a cursor as soon as the page of keys arrives, before the values it
    covers were fetched, let alone made durable."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        if self.follower is not None:
            f = self.follower
            self.follower = _EagerFollower(f.peers, f.every, f.retry, at=f.at)


class TrustsAnyFetchReply(AcceptorHost):
    """Takes a fetch reply's values from anyone, asked for or not."""

    def handle(self, batch: Iterable[tuple[Src, Message]]) -> Ready:
        batch = list(batch)
        ready = super().handle(batch)
        for src, msg in batch:
            if isinstance(msg, FetchReply):
                for key, value, ballot in msg.known:
                    if key[:1] != REGISTER_PREFIX:
                        self._apply(src, Decide(key, value, ballot), ready, reply=False)
        return ready


MUTANTS: dict[str, type[AcceptorHost]] = {
    "catch-up-cursor-off-by-one": CursorOffByOne,
    "catch-up-learns-nothing": LearnsNothing,
    "catch-up-cursor-before-values": CursorBeforeValues,
    "catch-up-trusts-any-fetch-reply": TrustsAnyFetchReply,
}


def run_schedule(seed: int, trace: bool = False, **variant: Any) -> Any:
    try:
        return CatchUpSimulation(generate(seed), trace=trace, **variant).run()
    except InvariantViolation:
        if trace:
            raise
    return CatchUpSimulation(generate(seed), trace=True, **variant).run()


def check_seeds(seeds: Iterable[int], stop_at_first: bool = True, **variant: Any
                ) -> tuple[list[InvariantViolation], Counter[str]]:
    failures: list[InvariantViolation] = []
    cover: Counter[str] = Counter()
    for seed in seeds:
        try:
            r = CatchUpSimulation(generate(seed), **variant).run()
        except InvariantViolation as e:
            failures.append(e)
            if stop_at_first:
                break
            continue
        cover["schedules"] += 1
        for name in ("deaf_dropped", "caught_up", "deaf_crash", "forged_fetch", "ticks"):
            cover[f"with_{name}"] += r.stats[name] > 0
    return failures, cover


def main(argv: list[str] | None = None) -> int:
    return seeds_main("catching up in the simulator", 1000, MUTANTS,
                      lambda m: {"host_cls": MUTANTS[m]}, run_schedule, check_seeds, argv)


if __name__ == "__main__":
    sys.exit(main())
