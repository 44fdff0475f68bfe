"""Broken register rules, each one mistake, that the linearizability checker must catch.

Their entries (layer "register") are in the one table of broken variants,
zpaxos/sim/mutants.py: the scenario overrides (``proposer_cls`` / ``register_cls``) that
plant the mistake in the register simulator (zpaxos/sim/regsim.py); tests/test_regsim.py
runs each over seeds until the checker reports a history that is not linearizable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from msgspec.structs import replace

from zpaxos.protocol.core import KeyState
from zpaxos.protocol.events import Peer
from zpaxos.protocol.messages import ZERO
from zpaxos.protocol.pacing import QUERY
from zpaxos.protocol.register import (
    GET,
    OK,
    RegAcceptor,
    RegisterProposer,
    RegResult,
    Step,
    next_ballot,
)
from zpaxos.protocol.regmessages import (
    EMPTY,
    RAccept,
    RAccepted,
    RegState,
    RPromise,
    RState,
    encode_state,
)


class ReadSkipsQuorum(RegisterProposer):
    """A read answers with the first promise's state: no quorum, no write-back."""

    def _on_promise(self, now: float, src: Peer, msg: RPromise, step: Step) -> None:
        if self._op is not None and self._op.kind == GET and msg.ballot == self.ballot:
            s = msg.state if not msg.accepted.is_zero else EMPTY
            self.result = RegResult(self.key, GET, OK, s.version, s.value, self.rounds)
            self._idle()
            return
        super()._on_promise(now, src, msg, step)

    def start(self, now: float, op: Any, options: Any) -> Step:
        if op.kind == GET:
            self.cache = None  # reads always go through phase 1, where the mistake is
            options = replace(options, quorum_reads=False)
        return super().start(now, op, options)


class QuorumReadTrustsOneAnswer(RegisterProposer):
    """A quorum read answers with the first acceptor's state, without a quorum agreeing
    on it: a lagging acceptor's old state, or one only a minority accepted. (Taking the
    highest of a quorum's answers when they disagree is the same mistake, rarer: the
    checker finds it too, at seed 68 of the default scenario.)"""

    def _on_state(self, now: float, src: Peer, msg: RState, step: Step) -> None:
        if self.phase == QUERY:
            self._answer_read(msg.accepted, msg.state, step)


class StaleValue(RegisterProposer):
    """The change is applied to the state of the *lowest* accepted ballot among the
    quorum's promises, not the highest: a state that may have been overwritten."""

    @staticmethod
    def current(promises: Iterable[RPromise]) -> RegState:
        best = min(promises, key=lambda p: p.accepted)
        return best.state if not best.accepted.is_zero else EMPTY


class AcceptBelowPromise(RegAcceptor):
    """An acceptor accepts any ballot, even one below the ballot it promised."""

    def on_accept(self, src: Peer, msg: RAccept) -> Step:
        s, _ = self.state(msg.key)
        nxt = msg.next if msg.next == next_ballot(msg.ballot) else ZERO
        new = KeyState(promised=max(s.promised, msg.ballot, nxt), accepted=msg.ballot,
                       value=encode_state(msg.state))
        return Step(persist=self._update(msg.key, new),
                    send=[(src, RAccepted(msg.key, msg.ballot, nxt))])
