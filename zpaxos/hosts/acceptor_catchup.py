"""The acceptor host's side of catching up (hosts/catchup.py): what a Fetch gets, which
listed keys this node lacks, and the fetched values applied (:class:`CatchUpMixin`).

Its own module because catching up is a protocol of its own beside Paxos: the
:class:`~zpaxos.hosts.catchup.Follower` keeps the cursors and the requests, and this
mixin is where its pages meet the host's states. The values it learns still go through
the core's rules (a key's as a Decide, a register slot's as a late Accept).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from zpaxos.hosts import catchup
from zpaxos.hosts.acceptor_ready import Ready, StateSource
from zpaxos.hosts.addresses import Src
from zpaxos.protocol.core import Acceptor
from zpaxos.protocol.events import Ignored
from zpaxos.protocol.messages import ZERO, Ballot, CatchUpReply, Decide, FetchReply
from zpaxos.protocol.registry import MAX_VALUE_BYTES
from zpaxos.protocol.regmessages import REGISTER_PREFIX, BadState, RAccept, decode_state

if TYPE_CHECKING:
    from zpaxos.protocol.messages import ProtocolMessage
    from zpaxos.protocol.regmessages import RegisterMessage


class CatchUpMixin:
    """Part of :class:`~zpaxos.hosts.acceptor_host.AcceptorHost`: catching up."""

    acceptor: Acceptor
    source: StateSource | None
    follower: catchup.Follower | None

    if TYPE_CHECKING:  # the host's own (acceptor_host.py)
        def _apply(self, src: Src, msg: ProtocolMessage, ready: Ready,
                   reply: bool = True) -> None: ...
        def _apply_register(self, src: Src, msg: RegisterMessage, ready: Ready) -> None: ...

    def _on_catch_up(self, src: int, msg: CatchUpReply | FetchReply, ready: Ready) -> None:
        """A peer's catch-up page (fetch what we lack) or fetched values (apply them)."""
        assert self.follower is not None
        if isinstance(msg, FetchReply):
            self._fetched(src, msg, ready)
            return
        sends, cursor = self.follower.on_page(src, msg, self._lacks)
        ready.send.extend(sends)
        if cursor is not None:
            ready.cursors[src] = cursor

    def _known(self, key: str) -> tuple[bytes, Ballot] | None:
        """What a Fetch gets for ``key``: its chosen value, or a register slot's accepted
        state (made durable in this pass before the reply leaves)."""
        s = self.acceptor.states.get(key)
        if s is None:
            return None
        if key[:1] == REGISTER_PREFIX:
            return None if s.value is None or s.accepted.is_zero else (s.value, s.accepted)
        return None if s.chosen is None else (s.chosen, s.chosen_ballot)

    def _lacks(self, keys: Sequence[str], slots: Mapping[str, Ballot]) -> set[str]:
        """A catch-up page lists ``keys`` (and its register ``slots`` at their ballots):
        those this node lacks (the pass read every one of them: _fetch)."""
        states = self.acceptor.states
        out = set()
        for key in keys:
            s = states.get(key)
            if s is None or s.chosen is None:
                if key[:1] != REGISTER_PREFIX:
                    out.add(key)
                elif s is None or s.accepted < slots.get(key, ZERO):
                    out.add(key)
        return out

    def _slot_ballots(self, slots: list[str]) -> list[Ballot]:
        """The accepted ballots of register slots, for a catch-up page."""
        states = self.acceptor.states
        if self.source is not None:
            missing = [k for k in slots if k not in states]
            if missing:
                states.update(self.source.get(missing))
        return [states[k].accepted if k in states else ZERO for k in slots]

    def _fetched(self, src: int, msg: FetchReply, ready: Ready) -> None:
        """The values a peer sent for the keys this node asked it for. A key's is applied
        as that peer's Decide (the core checks it as any other); a register slot's through
        the register acceptor's Accept rule, as the late Accept it is."""
        assert self.follower is not None
        take, sends, cursor = self.follower.on_fetched(src, msg)
        learned = 0
        for key, value, ballot in msg.known:
            if key not in take:
                continue  # not asked for from this peer: ignored, whatever it says
            if key[:1] == REGISTER_PREFIX:
                learned += self._learn_register(src, key, value, ballot, ready)
            elif len(value) <= MAX_VALUE_BYTES:
                n = len(ready.learned)
                self._apply(src, Decide(key, value, ballot), ready, reply=False)
                learned += len(ready.learned) - n
        ready.send.extend(sends)
        if cursor is not None:
            ready.cursors[src] = cursor
        if learned:
            self.follower.learned_total += learned
            ready.caught.append((src, learned))

    def _learn_register(self, src: int, slot: str, value: bytes, ballot: Ballot,
                        ready: Ready) -> int:
        s = self.acceptor.states.get(slot)
        if ballot.is_zero or (s is not None and ballot <= s.accepted):
            return 0
        try:
            state = decode_state(value)
        except BadState:
            ready.events.append((src, Ignored(slot, "FETCH_REPLY")))
            return 0
        scratch = Ready()  # the acceptor's reply (RACCEPTED) goes nowhere: nobody asked
        self._apply_register(src, RAccept(slot[len(REGISTER_PREFIX):], ballot, state),
                             scratch)
        ready.persist.update(scratch.persist)
        ready.events.extend(scratch.events)
        return len(scratch.persist)


__all__ = ["CatchUpMixin"]
