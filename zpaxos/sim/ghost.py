"""The ghost: what the write-once simulator checks after every step, against everything
that ever happened (every vote cast, every promise sent), as the TLA+ spec of Paxos does."""

from __future__ import annotations

from collections import Counter
from typing import Any

from zpaxos.hosts.acceptor_host import AcceptorHost
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import ZERO, Ballot, StatusReply
from zpaxos.protocol.ranges import RangeTable
from zpaxos.sim.fmt import fb, fv

TRACE_TAIL_LINES = 60  # how much of the trace a failure message shows


class InvariantViolation(AssertionError):
    """A safety or liveness property failed; the text says which seed and how to replay."""

    def __init__(self, seed: int, what: str, trace: list[str], replay: str,
                 scenario: str = "") -> None:
        self.seed, self.what, self.trace, self.replay = seed, what, trace, replay
        tail = trace[-TRACE_TAIL_LINES:]
        head = f"last {len(tail)} of {len(trace)} trace lines" if trace else "no trace recorded"
        super().__init__(
            f"seed {seed}: {what}\n  scenario: {scenario}\n  {head}:\n    "
            + "\n    ".join(tail)
            + f"\n  seed {seed}: {what}\n  replay the whole trace: {replay}"
        )



class Ghost:
    """The invariants of :class:`~zpaxos.sim.simulator.Simulation` (a mixin)."""

    sc: Any
    now: float
    quorum: int
    tracing: bool
    stats: Counter[str]
    max_promise: dict[tuple[int, str], Ballot]
    range_promise: dict[int, RangeTable]
    votes: dict[tuple[str, Ballot, bytes], set[int]]
    ballot_value: dict[tuple[str, Ballot], bytes]
    chosen: dict[str, bytes]
    chosen_at: dict[str, float]
    proposed: dict[str, set[bytes]]
    vote_log: list[tuple[float, int, str, Ballot, bytes]]

    def _violate(self, what: str) -> None:
        raise NotImplementedError

    def _log(self, text: str) -> None:
        raise NotImplementedError

    def _vote(self, a: int, key: str, b: Ballot, v: bytes) -> None:
        """Record that ``a`` voted (b, v) for ``key``: the ghost history of the TLA+ spec."""
        voters = self.votes.get((key, b, v))
        if voters is not None and a in voters:
            return
        promised = max(self.max_promise.get((a, key), ZERO),
                       self.range_promise[a].covering(key))  # a range promise counts too
        if b.proposer[:1] == self.sc.lease_tag and len(b.proposer) > 1:
            self.stats["fast_vote"] += 1
        if b < promised:
            self._violate(f"n{a} accepted {key}={fv(v)} at ballot {fb(b)} below the promise"
                          f" {fb(promised)} it had sent")
        self.max_promise[(a, key)] = b  # voting for b promises b
        other = self.ballot_value.setdefault((key, b), v)
        if other != v:
            self._violate(f"ballot {fb(b)} carries two values for {key}: {fv(other)} and {fv(v)}")
        if voters is None:
            voters = self.votes[(key, b, v)] = set()
        voters.add(a)
        self.vote_log.append((self.now, a, key, b, v))
        if len(voters) < self.quorum:
            return
        prev = self.chosen.get(key)
        if prev is None:
            if v not in self.proposed.get(key, ()):
                self._violate(f"{key}={fv(v)} is chosen but nobody proposed it")
            self.chosen[key] = v
            self.chosen_at[key] = self.now
            if self.tracing:
                self._log(f"** {key}={fv(v)} is chosen: ballot {fb(b)} by {sorted(voters)}")
        elif prev != v:
            self._violate(f"two values chosen for {key}: {fv(prev)}, then {fv(v)} at ballot"
                          f" {fb(b)} by {sorted(voters)}")

    def _check_state(self, a: int, key: str, s: KeyState, where: str) -> None:
        if s.accepted > s.promised:
            self._violate(f"n{a} {where}: {key} accepted {fb(s.accepted)} above its promise"
                          f" {fb(s.promised)}")
        if s.chosen is not None and s.chosen != self.chosen.get(key):
            self._violate(f"n{a} {where}: {key} chosen={fv(s.chosen)} but the chosen value is"
                          f" {fv(self.chosen.get(key))}")

    def _check_status(self, a: int, host: AcceptorHost, reply: StatusReply) -> None:
        """The reply was built mid-pass: later messages of the pass may have moved the
        state on since, but only forwards."""
        got = [k.key for k in reply.keys]
        states = host.states
        if got != sorted(set(got)):
            self._violate(f"n{a}'s status reply is not in key order: {got}")
        for k in reply.keys:
            now = states.get(k.key)
            if now is None or k.promised > now.promised or (
                    k.chosen is not None and k.chosen != now.chosen):
                self._violate(f"n{a}'s status reply for {k.key} is not its state")
        self.stats["status_checked"] += 1
