"""The proposer host: many proposals in one process, pure (no sockets, no clock).

Like etcd's ``RawNode``, the host is driven from outside and answers with a
:class:`Ready`: the messages to send, the events to report and the proposals that
finished. The client's loop (:mod:`zpaxos.runtime.client`) feeds it what the sockets
received and the time; the simulator (zpaxos/sim/simulator.py) feeds it virtual time and its
own network. So the code that routes replies to proposals runs under the simulator too.

Routing: a reply names its key; it goes to every running proposal of that key (each
proposal ignores replies to ballots that are not its own). Proposals get a fresh
proposer id each from ``new_id``, which keeps every ballot unique (messages.py).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field

from zpaxos.protocol.core import Outcome, Proposer, ProposerOptions, Step
from zpaxos.protocol.events import Event
from zpaxos.protocol.messages import ProtocolMessage
from zpaxos.runtime.staging import NO_STAGING, Staged, StagingOptions

Token = Hashable  # the caller's handle for one proposal (an index, a future...)


@dataclass(slots=True)
class Ready:
    """What the host asks of the runtime: send these, report these; these finished."""

    send: list[tuple[int, ProtocolMessage]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    finished: list[tuple[Token, Outcome]] = field(default_factory=list)


class _Proposal:
    __slots__ = ("token", "core", "staged", "wake", "finished")

    def __init__(self, token: Token, core: Proposer, staged: Staged | Proposer) -> None:
        self.token = token
        self.core = core
        # What the host drives: the core itself, or the core behind staging when the
        # proposal stages its messages (the same start/receive/nudge/tick/next_wakeup).
        self.staged = staged
        self.wake: float | None = None
        self.finished = False


class ProposerHost:
    """Runs any number of proposals against the acceptors ``nodes`` (node ids)."""

    def __init__(self, nodes: Sequence[int], rng: random.Random,
                 new_id: Callable[[], bytes], proposer_cls: type[Proposer] = Proposer) -> None:
        self.nodes = tuple(nodes)
        self.proposer_cls = proposer_cls
        self.rng = rng
        self.new_id = new_id
        self._by_key: dict[str, list[_Proposal]] = {}
        self._wakeups: list[tuple[float, int, _Proposal]] = []  # a lazy heap
        self._seq = 0
        self.running = 0

    @property
    def next_wakeup(self) -> float | None:
        """When ``tick`` must next be called; None when nothing waits on the clock."""
        heap = self._wakeups
        while heap and heap[0][2].wake != heap[0][0]:
            heapq.heappop(heap)  # superseded by a later entry for the same proposal
        return heap[0][0] if heap else None

    def start(self, now: float, token: Token, key: str, value: bytes,
              options: ProposerOptions, staging: StagingOptions = NO_STAGING) -> Ready:
        """Start proposing ``value`` for ``key``; its outcome comes back with ``token``."""
        # The proposals share the process's seeded stream (a proposal draws from it only
        # for a backoff): seeding a generator of its own cost ~25 us per proposal.
        core = self.proposer_cls(key, value, self.new_id(), self.nodes, options, self.rng)
        staged = staging is not NO_STAGING and staging.active
        prop = _Proposal(token, core, Staged(core, staging) if staged else core)
        self._by_key.setdefault(key, []).append(prop)
        self.running += 1
        ready = Ready()
        self._after(prop, prop.staged.start(now), ready)
        return ready

    def receive(self, now: float, src: int, msg: ProtocolMessage) -> Ready:
        """A reply from node ``src``: to every running proposal of its key."""
        return self.receive_all(now, [(src, msg)])

    def receive_all(self, now: float, replies: Iterable[tuple[int, ProtocolMessage]]) -> Ready:
        """Every reply of one pass (many keys, many nodes; a batch off the wire), each to
        every running proposal of its key, in order: one Ready for the whole pass, so its
        sends leave as one frame per node."""
        ready = Ready()
        by_key = self._by_key
        for src, msg in replies:
            props = by_key.get(msg.key)
            if props:
                for prop in tuple(props):
                    self._after(prop, prop.staged.receive(now, src, msg), ready)
        return ready

    def nudge(self, now: float) -> Ready:
        """A node came back: every running proposal retries at once (Proposer.nudge)."""
        ready = Ready()
        for props in tuple(self._by_key.values()):
            for prop in tuple(props):
                self._after(prop, prop.staged.nudge(now), ready)
        return ready

    def tick(self, now: float) -> Ready:
        ready = Ready()
        heap = self._wakeups
        while heap and heap[0][0] <= now:
            wake, _, prop = heapq.heappop(heap)
            if prop.wake == wake:  # not superseded
                prop.wake = None
                self._after(prop, prop.staged.tick(now), ready)
        return ready

    def _after(self, prop: _Proposal, step: Step, ready: Ready) -> None:
        if step.send:
            ready.send.extend(step.send)  # type: ignore[arg-type]  # core peers: node ids
        if step.events:
            ready.events.extend(step.events)
        core = prop.core
        if core.outcome is not None:
            if not prop.finished:
                prop.finished = True
                self._remove(prop)
                ready.finished.append((prop.token, core.outcome))
            return
        wake = prop.staged.next_wakeup
        if wake is not None and wake != prop.wake and wake != float("inf"):
            prop.wake = wake
            self._seq += 1
            heapq.heappush(self._wakeups, (wake, self._seq, prop))

    def _remove(self, prop: _Proposal) -> None:
        prop.wake = None
        props = self._by_key.get(prop.core.key)
        if props is not None and prop in props:
            props.remove(prop)
            self.running -= 1
            if not props:
                del self._by_key[prop.core.key]
