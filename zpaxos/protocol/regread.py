"""A register's quorum read: a ``get`` that promises and writes nothing (the argument is in
protocol/register.py's docstring and docs/coordination.md, "A read that writes nothing").

The answers that agree must hold a quorum of *both* sides of the configuration: the
prepare side (so the read meets every write a quorum accepted before it began) and the
accept side (so the state they agree on is chosen). Without a membership change the two
sides are the same acceptors, by majorities, and one quorum does both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from zpaxos.protocol.events import Applied, Peer
from zpaxos.protocol.messages import Ballot
from zpaxos.protocol.pacing import INF, QUERY, PacedProposer, Step
from zpaxos.protocol.regmessages import EMPTY, RegState, RRead, RState
from zpaxos.protocol.regops import GET, OK, RegisterOptions, RegResult

# A quorum read whose answers did not agree (a change was in flight) asks again this many
# times in all before it falls back to a full round (which outbids the writer).
QUERY_TRIES = 2
# A read asking a quorum first (RegisterOptions.read_quorum_first) asks the other
# acceptors too when no agreeing quorum answered within this long.
READ_WIDEN_S = 0.02


class QuorumReader(PacedProposer):
    """The quorum read of :class:`~zpaxos.protocol.register.RegisterProposer`, which
    sets these fields and falls back to its rounds (``_round_or_fast``)."""

    key: str
    quorum: int  # the prepare side's
    accept_quorum: int
    _prepare_to: frozenset[Peer]
    _accept_to: frozenset[Peer]
    opts: RegisterOptions
    result: RegResult | None
    _states: dict[Peer, RState]
    _queries: int
    _read_id: int
    _asked: tuple[Peer, ...]
    _widen_at: float
    _first: tuple[Peer, ...]

    if TYPE_CHECKING:
        def _round_or_fast(self, now: float, step: Step) -> None: ...
        def _idle(self) -> None: ...

    @property
    def _simple(self) -> bool:
        """One side, majorities: any quorum of answers is a quorum of both sides."""
        return self._prepare_to == self._accept_to and self.quorum == self.accept_quorum

    def _enough(self, voters: Iterable[Peer]) -> bool:
        """Do ``voters`` hold a quorum of the prepare side and one of the accept side?"""
        v = set(voters)
        return (len(v & self._prepare_to) >= self.quorum
                and len(v & self._accept_to) >= self.accept_quorum)

    def _query(self, now: float, step: Step) -> None:
        self._queries += 1
        self._read_id += 1
        self._states.clear()
        self.phase = QUERY
        self._phase_started(now)
        msg = RRead(self.key, self._read_id)
        # Asking a quorum first is as safe as asking all: what counts is a quorum of
        # answers to this question that agree, whoever gives them.
        first = self.opts.read_quorum_first and self._queries == 1 and self._simple
        self._asked = self._first if first else self.acceptors
        self._widen_at = now + READ_WIDEN_S if first else INF
        step.send.extend((a, msg) for a in self._asked)

    def _widen(self, step: Step) -> None:
        """Ask the current question of the acceptors not asked yet."""
        msg = RRead(self.key, self._read_id)
        step.send.extend((a, msg) for a in self.acceptors if a not in self._asked)
        self._asked = self.acceptors
        self._widen_at = INF

    def _on_state(self, now: float, src: Peer, msg: RState, step: Step) -> None:
        if self.phase != QUERY or msg.read != self._read_id:
            # Only an answer to this very question counts: one given before this read
            # began (a delayed or duplicated answer to an earlier one) may be older than
            # a state chosen since, and the argument's step 2 needs answers given after.
            return
        self._answered.add(src)
        self._states[src] = msg
        agree: dict[Ballot, list[Peer]] = {}
        for p, m in self._states.items():
            agree.setdefault(m.accepted, []).append(p)
        for ballot, voters in agree.items():
            if self._enough(voters):
                # A quorum accepted this one state at one ballot: it is chosen, and
                # nothing newer was chosen before we asked (register.py's docstring).
                self._phase_done(now)
                if len(self._states) == self.quorum:  # the fastest: ask it first next
                    self._first = tuple(self._states)
                state = next(m.state for m in self._states.values() if m.accepted == ballot)
                self._answer_read(ballot, state, step)
                return
        asked = [a for a in self._asked if a not in self._states]
        pending = [a for a in self.acceptors if a not in self._states]
        if (len(self._asked) < len(self.acceptors)
                and not any(self._enough(v + asked) for v in agree.values())):
            self._widen(step)  # the quorum asked first cannot agree: ask the others
        elif not any(self._enough(v + pending) for v in agree.values()):
            # No quorum can agree any more: a change is in flight. Ask again, then run
            # the operation as a round (the 1-RTT one if we hold the promise).
            if self._queries < QUERY_TRIES:
                self._query(now, step)
            else:
                self._round_or_fast(now, step)

    def _answer_read(self, ballot: Ballot, state: RegState, step: Step) -> None:
        if ballot.is_zero:
            state = EMPTY
        self.result = RegResult(self.key, GET, OK, state.version, state.value, self.rounds)
        step.events.append(Applied(self.key, ballot, self.rounds, GET, OK, state.version))
        self._idle()
