"""The register host: operations on many registers in one process, pure (no sockets, clock).

Like :mod:`zpaxos.runtime.proposer_host`, it is driven from outside (``submit``,
``receive``, ``tick``, ``nudge``) and answers with a :class:`RegReady`; the client loop
(:mod:`zpaxos.runtime.register_client`) and the register simulator (zpaxos/sim/regsim.py)
both drive it.

Each register gets one :class:`~zpaxos.protocol.register.RegisterProposer`, kept for the
host's life, so the 1-RTT promise it holds carries from one operation to the next.
Operations on one register run one at a time, in the order submitted (a queue per key);
operations on different registers run at once. One proposer id per host, a round that
only grows per register, and one operation at a time per register keep ballots unique.
Each operation gets a unique op id (the host's id and a counter): the change's identity,
which makes retrying it safe (regmessages.RegState.recent).
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace

from zpaxos.protocol.events import Peer
from zpaxos.protocol.register import RegisterOptions, RegisterProposer, RegOp, RegResult
from zpaxos.protocol.regmessages import RegisterMessage

Token = Hashable

__all__ = ["RegReady", "RegisterHost", "Token"]


@dataclass(slots=True)
class RegReady:
    send: list[tuple[int, RegisterMessage]] = field(default_factory=list)
    finished: list[tuple[Token, RegResult]] = field(default_factory=list)


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
        self._wakeups: list[tuple[float, int, str]] = []
        self._seq = 0
        self._ops = 0
        self.running = 0  # submitted and not finished (queued ones included)

    @property
    def next_wakeup(self) -> float | None:
        heap = self._wakeups
        while heap:
            wake, _, key = heap[0]
            reg = self._regs.get(key)
            if reg is not None and reg.wake == wake:
                return wake
            heapq.heappop(heap)  # superseded
        return None

    def submit(self, now: float, token: Token, key: str, op: RegOp,
               options: RegisterOptions) -> RegReady:
        """Queue ``op`` on register ``key``; its result comes back with ``token``."""
        self._ops += 1
        op = replace(op, op_id=self.id[:8] + self._ops.to_bytes(8, "big"))
        reg = self._regs.get(key)
        if reg is None:
            reg = self._regs[key] = _Reg(self.proposer_cls(key, self.id, self.nodes,
                                                           random.Random(self.rng.random())))
        reg.queue.append((token, op, options))
        self.running += 1
        ready = RegReady()
        if reg.token is None:
            self._next(now, reg, ready)
        return ready

    def receive(self, now: float, src: int, msg: RegisterMessage) -> RegReady:
        ready = RegReady()
        reg = self._regs.get(msg.key)
        if reg is not None and reg.token is not None:
            self._after(now, reg, reg.core.receive(now, src, msg).send, ready)
        return ready

    def tick(self, now: float) -> RegReady:
        ready = RegReady()
        heap = self._wakeups
        while heap and heap[0][0] <= now:
            wake, _, key = heapq.heappop(heap)
            reg = self._regs.get(key)
            if reg is not None and reg.wake == wake:
                reg.wake = None
                self._after(now, reg, reg.core.tick(now).send, ready)
        return ready

    def nudge(self, now: float) -> RegReady:
        ready = RegReady()
        for reg in tuple(self._regs.values()):
            if reg.token is not None:
                self._after(now, reg, reg.core.nudge(now).send, ready)
        return ready

    def _next(self, now: float, reg: _Reg, ready: RegReady) -> None:
        if not reg.queue:
            return
        token, op, options = reg.queue.popleft()
        reg.token = token
        self._after(now, reg, reg.core.start(now, op, options).send, ready)

    def _after(self, now: float, reg: _Reg, send: list[tuple[Peer, RegisterMessage]],
               ready: RegReady) -> None:
        ready.send.extend(send)  # type: ignore[arg-type]  # core peers are node ids here
        core = reg.core
        if core.result is not None and not core.busy and reg.token is not None:
            ready.finished.append((reg.token, core.result))
            core.result = None
            reg.token = None
            reg.wake = None
            self.running -= 1
            self._next(now, reg, ready)
            return
        wake = core.next_wakeup
        if wake is not None and wake != reg.wake and wake != float("inf"):
            reg.wake = wake
            self._seq += 1
            heapq.heappush(self._wakeups, (wake, self._seq, core.key))
