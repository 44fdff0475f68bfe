"""Staging: holding a proposer's messages back, to stage the textbook orderings.

The lab's scenarios need messages that arrive late on purpose: "B's Prepare reaches
node0 after A's Accept", "A pauses between its phases while B overtakes it". None of
that is a Paxos rule, so it is not in the core. A :class:`Staged` proposer wraps a core
:class:`~zpaxos.protocol.core.Proposer` and holds some of its sends in an outbox:

* ``prepare_delay_s`` / ``accept_delay_s``: per acceptor, how late its Prepare / Accept
  leaves;
* ``pause_between_phases_s``: every Accept leaves this much later (after a quorum of
  promises), with a ``pause`` event so charts can show it.

Held messages of a round the proposer has left (a retry, the end) are dropped: they
would only be stale. The round timeout of a phase counts from its last held message
(``Proposer.hold_phase``), so staging never causes a retry by itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from msgspec import field

from zpaxos.protocol.core import ACCEPT, PREPARE, Peer, Proposer, Step
from zpaxos.protocol.events import Pause
from zpaxos.protocol.messages import (
    Accept,
    Ballot,
    Prepare,
    ProtocolMessage,
)
from zpaxos.protocol.pacing import Outgoing


class StagingOptions(msgspec.Struct, frozen=True):
    pause_between_phases_s: float = 0.0
    prepare_delay_s: Mapping[Peer, float] = field(default_factory=dict)
    accept_delay_s: Mapping[Peer, float] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.pause_between_phases_s > 0 or any(self.prepare_delay_s.values())
                    or any(self.accept_delay_s.values()))


NO_STAGING = StagingOptions()


class Staged:
    """A proposer whose Prepares and Accepts may leave late (see the module doc)."""

    def __init__(self, proposer: Proposer, options: StagingOptions) -> None:
        self.p = proposer
        self.opts = options
        self._active = options.active  # checked per message: computed once
        self._outbox: list[tuple[float, Peer, Outgoing]] = []

    @property
    def next_wakeup(self) -> float | None:
        wake = self.p.next_wakeup
        if not self._outbox or wake is None:
            return wake
        return min(wake, min(due for due, _, _ in self._outbox))

    def start(self, now: float, fast: Ballot | None = None) -> Step:
        return self._stage(now, self.p.start(now, fast))

    def receive(self, now: float, src: Peer, msg: ProtocolMessage) -> Step:
        return self._stage(now, self.p.receive(now, src, msg))

    def nudge(self, now: float) -> Step:
        return self._stage(now, self.p.nudge(now))

    def tick(self, now: float) -> Step:
        step = self._stage(now, self.p.tick(now))
        if self._outbox:
            self._drop_stale()
            due = sorted((m for m in self._outbox if m[0] <= now), key=lambda m: m[0])
            if due:
                self._outbox = [m for m in self._outbox if m[0] > now]
                step.send.extend((a, m) for _, a, m in due)
        return step

    def _drop_stale(self) -> None:
        p = self.p
        self._outbox = [m for m in self._outbox
                        if p.phase in (PREPARE, ACCEPT) and isinstance(m[2], (Prepare, Accept))
                        and m[2].ballot == p.ballot]

    def _stage(self, now: float, step: Step) -> Step:
        if not self._active:
            return step
        self._drop_stale()
        keep: list[tuple[Peer, Outgoing]] = []
        last = None
        paused = False
        for dst, msg in step.send:
            if isinstance(msg, Prepare):
                delay = self.opts.prepare_delay_s.get(dst, 0.0)
            elif isinstance(msg, Accept):
                pause = self.opts.pause_between_phases_s
                if pause > 0 and not paused:
                    paused = True
                    step.events.append(Pause(msg.key, msg.ballot, pause))
                delay = pause + self.opts.accept_delay_s.get(dst, 0.0)
            else:
                delay = 0.0
            if delay > 0:
                self._outbox.append((now + delay, dst, msg))
                last = max(last or now, now + delay)
            else:
                keep.append((dst, msg))
        step.send = keep
        if last is not None:
            self.p.hold_phase(last)
        return step
