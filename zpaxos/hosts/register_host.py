"""The register host: operations on many registers in one process, pure (no sockets, clock).

Like :mod:`zpaxos.hosts.proposer_host`, it is driven from outside (``submit``,
``receive_all``, ``tick``, ``nudge``) and answers with the same
:class:`~zpaxos.hosts.proposing.Ready` (sends, events, finished operations); the client
loop (:mod:`zpaxos.runtime.loop`) and the register simulator (zpaxos/sim/regsim.py) both
drive it.

Each register gets one :class:`~zpaxos.protocol.register.RegisterProposer`, kept for the
host's life, so the 1-RTT promise it holds carries from one operation to the next.
Operations on one register run one at a time, in the order submitted (a queue per key);
operations on different registers run at once. One proposer id per host, a round that
only grows per register, and one operation at a time per register keep ballots unique.
Each operation gets a unique op id (the host's id and a counter): the change's identity,
which makes retrying it safe (regmessages.RegState.recent).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import replace

from zpaxos.hosts.proposing import Ready as _Ready
from zpaxos.hosts.proposing import Token, Wakeups
from zpaxos.protocol.core import Quorums
from zpaxos.protocol.pacing import Step
from zpaxos.protocol.register import RegisterOptions, RegisterProposer, RegOp, RegResult
from zpaxos.protocol.regmessages import RegisterMessage

__all__ = ["RegReady", "RegisterHost", "Token"]


class RegReady(_Ready[RegResult]):
    """What the host asks of the runtime (proposing.Ready): finished operations' RegResults."""


class _Reg:
    __slots__ = ("core", "queue", "token", "wake")

    def __init__(self, core: RegisterProposer) -> None:
        self.core = core
        self.queue: deque[tuple[Token, RegOp, RegisterOptions]] = deque()
        self.token: Token | None = None  # the running operation's
        self.wake: float | None = None


class RegisterHost:
    """Runs register operations against the acceptors ``nodes`` (node ids)."""

    def __init__(self, nodes: Sequence[int], rng: random.Random, proposer_id: bytes,
                 proposer_cls: type[RegisterProposer] = RegisterProposer) -> None:
        if not proposer_id:
            raise ValueError("proposer_id must be non-empty")
        self.nodes = tuple(nodes)
        self.rng = rng
        self.id = proposer_id
        self.proposer_cls = proposer_cls
        self._regs: dict[str, _Reg] = {}
        self._wakeups: Wakeups[_Reg] = Wakeups()
        self._ops = 0
        self.running = 0  # submitted and not finished (queued ones included)
        # The cluster's configuration when it has one (protocol/membership.Config):
        # who counts in each phase; None: ``nodes``, majorities.
        self.quorums: Quorums | None = None

    @property
    def next_wakeup(self) -> float | None:
        return self._wakeups.next

    def submit(self, now: float, token: Token, key: str, op: RegOp,
               options: RegisterOptions) -> RegReady:
        """Queue ``op`` on register ``key``; its result comes back with ``token``."""
        self._ops += 1
        op = replace(op, op_id=self.id[:8] + self._ops.to_bytes(8, "big"))
        reg = self._regs.get(key)
        if reg is None:
            reg = self._regs[key] = _Reg(self.proposer_cls(
                key, self.id, self.nodes, random.Random(self.rng.random()), self.quorums))
        reg.queue.append((token, op, options))
        self.running += 1
        ready = RegReady()
        if reg.token is None:
            self._next(now, reg, ready)
        return ready

    def receive(self, now: float, src: int, msg: RegisterMessage) -> RegReady:
        return self.receive_all(now, [(src, msg)])

    def receive_all(self, now: float, replies: Iterable[tuple[int, RegisterMessage]],
                    ) -> RegReady:
        """Every reply of one pass, each to its register's running operation."""
        ready = RegReady()
        for src, msg in replies:
            reg = self._regs.get(msg.key)
            if reg is not None and reg.token is not None:
                self._after(now, reg, reg.core.receive(now, src, msg), ready)
        return ready

    def tick(self, now: float) -> RegReady:
        ready = RegReady()
        for reg in self._wakeups.due(now):
            self._after(now, reg, reg.core.tick(now), ready)
        return ready

    def reconfigure(self, now: float, quorums: Quorums) -> RegReady:
        """The cluster is in another configuration: every register counts its voters,
        drops its 1-RTT promise (the old configuration's), and a running operation
        starts a new round with them at once."""
        self.quorums = quorums
        self.nodes = tuple(dict.fromkeys((*quorums.prepare, *quorums.accept)))
        ready = RegReady()
        for reg in tuple(self._regs.values()):
            step = reg.core.reconfigure(now, quorums)
            if reg.token is not None:
                self._after(now, reg, step, ready)
        return ready

    def nudge(self, now: float) -> RegReady:
        ready = RegReady()
        for reg in tuple(self._regs.values()):
            if reg.token is not None:
                self._after(now, reg, reg.core.nudge(now), ready)
        return ready

    def _next(self, now: float, reg: _Reg, ready: RegReady) -> None:
        if not reg.queue:
            return
        token, op, options = reg.queue.popleft()
        reg.token = token
        self._after(now, reg, reg.core.start(now, op, options), ready)

    def _after(self, now: float, reg: _Reg, step: Step, ready: RegReady) -> None:
        ready.send.extend(step.send)  # type: ignore[arg-type]  # core peers are node ids here
        ready.events.extend(step.events)
        core = reg.core
        if core.result is not None and not core.busy and reg.token is not None:
            ready.finished.append((reg.token, core.result))
            core.result = None
            reg.token = None
            reg.wake = None
            self.running -= 1
            self._next(now, reg, ready)
            return
        self._wakeups.schedule(reg, core.next_wakeup)
