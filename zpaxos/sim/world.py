"""The simulated world under both simulators: a virtual clock and its event queue, a
seeded network, and nodes (the real AcceptorHost) with disks that crash and restart.

The write-once simulator (zpaxos/sim/simulator.py) and the register simulator
(zpaxos/sim/regsim.py) each add their clients, their faults' schedule and their oracle
(the ghost invariants; the linearizability checker); the world is the same. Every
random draw comes from the one ``random.Random`` the run was seeded with, in the order
the run makes them, so a seed replays exactly.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from zpaxos.hosts.acceptor_host import AcceptorHost
from zpaxos.protocol.core import KeyState

INF = float("inf")


class World:
    """Virtual time, in-flight messages as plain data, nodes and their disks.

    ``boot(node)`` makes a node's host from exactly its disk (at the start and at each
    restart). An event is ``(time, seq, kind, *args)``: ``kind`` is the simulator's own."""

    def __init__(self, rng: random.Random, ids: Iterable[int],
                 boot: Callable[[int], AcceptorHost]) -> None:
        self.rng = rng
        self.now = 0.0
        self.queue: list[tuple[Any, ...]] = []
        self.seq = 0
        self.ids = tuple(ids)
        self.disk: dict[int, dict[str, KeyState]] = {a: {} for a in self.ids}
        self.inbox: dict[int, list[tuple[Any, Any]]] = {a: [] for a in self.ids}
        self.pass_due: dict[int, float] = {}  # a node's next pass, when one is due
        self.boot = boot
        self.nodes: dict[int, AcceptorHost | None] = {a: boot(a) for a in self.ids}

    # ---- time

    def push(self, t: float, kind: Hashable, *args: Any) -> None:
        self.seq += 1  # ties in time go in the order they were pushed
        heapq.heappush(self.queue, (t, self.seq, kind, *args))

    def pop(self, horizon: float) -> tuple[Any, ...] | None:
        """The next event by ``horizon`` (the clock moves to it); None when there is none."""
        if not self.queue or self.queue[0][0] > horizon:
            return None
        item = heapq.heappop(self.queue)
        self.now = item[0]
        return item

    # ---- network

    def lost(self, drop_p: float | None) -> bool:
        """Is a message lost? (None: no faults now, and no draw.)"""
        return drop_p is not None and self.rng.random() < drop_p

    def carry(self, kind: Hashable, src: Any, dst: Any, msg: Any, delay_s: tuple[float, float],
              dup_p: float | None) -> int:
        """Deliver ``msg`` after a random delay, sometimes twice (None: no duplicates now,
        and no draw); return the number of copies."""
        rng = self.rng
        copies = 2 if dup_p is not None and rng.random() < dup_p else 1
        lo, hi = delay_s
        for _ in range(copies):
            self.push(self.now + rng.uniform(lo, hi), kind, src, dst, msg)
        return copies

    def land(self, kind: Hashable, dst: int, item: tuple[Any, Any], pass_delay_s: float,
             jitter: bool = True) -> None:
        """``item`` (origin, message) reaches node ``dst``'s inbox; its next pass (``kind``)
        runs ``pass_delay_s`` later (up to that long, with ``jitter``) unless one is due."""
        self.inbox[dst].append(item)
        if dst not in self.pass_due:
            due = self.now + (self.rng.uniform(0, pass_delay_s) if jitter else pass_delay_s)
            self.pass_due[dst] = due
            self.push(due, kind, dst)

    def take_inbox(self, a: int) -> list[tuple[Any, Any]]:
        """A pass starts: the whole inbox, as one batch."""
        self.pass_due.pop(a, None)
        batch, self.inbox[a] = self.inbox[a], []
        return batch

    # ---- crashes

    def crash(self, a: int, restart_kind: Hashable, restart_at: float) -> None:
        """Node ``a`` loses its memory and its inbox; only ``disk[a]`` survives."""
        self.nodes[a] = None
        self.inbox[a] = []
        self.push(restart_at, restart_kind, a)

    def restart(self, a: int) -> AcceptorHost | None:
        """Boot a node that is down from its disk; None when it was up."""
        if self.nodes[a] is not None:
            return None
        host = self.nodes[a] = self.boot(a)
        return host
