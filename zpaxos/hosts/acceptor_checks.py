"""The acceptor host's checks of a client's Decide (:class:`ChecksMixin`): with
``check_client_decides`` on, a Decide from a client is recorded only once a quorum of
nodes confirms it accepted that very ballot with that very value.

Its own module because it is the one place the host trusts nobody's word for a chosen
value: the rule (and its bound, MAX_CHECKS) reads best on its own. A peer's check is
answered with the read-only pages (acceptor_pages.py); its answers come back through the
host's ``_on_reply``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zpaxos.hosts.acceptor_ready import Ready
from zpaxos.hosts.addresses import Src
from zpaxos.protocol.core import Acceptor, Learner
from zpaxos.protocol.messages import Accepted, Ballot, CheckAccepted, Decide

if TYPE_CHECKING:
    from zpaxos.protocol.messages import ProtocolMessage

MAX_CHECKS = 10_000  # client Decides being checked with the peers at once


class ChecksMixin:
    """Part of :class:`~zpaxos.hosts.acceptor_host.AcceptorHost`: client Decides checked."""

    node_id: int
    peers: tuple[int, ...]
    acceptor: Acceptor
    _checks: dict[tuple[str, Ballot, bytes], None]
    _learner: Learner

    if TYPE_CHECKING:  # the host's own (acceptor_host.py)
        def _apply(self, src: Src, msg: ProtocolMessage, ready: Ready,
                   reply: bool = True) -> None: ...

    def _check_decide(self, msg: Decide, ready: Ready) -> None:
        """A client says ``msg.value`` was chosen at ``msg.ballot``. Believe it only when a
        quorum of nodes (this one included) confirms it accepted exactly that ballot with
        exactly that value: an acceptor's accepted ballot only grows, so each of them did
        accept it at some point, and a quorum accepting one ballot is what chosen means.
        A buggy client's claim for a minority's value, or a made-up one, never gets there."""
        s = self.acceptor.state(msg.key)
        if s.chosen is not None or msg.ballot.is_zero:
            return  # nothing to learn, or nothing to check it against
        entry = (msg.key, msg.ballot, msg.value)
        if entry in self._checks:
            return
        if len(self._checks) >= MAX_CHECKS:  # bounded, whatever clients send
            oldest = next(iter(self._checks))
            del self._checks[oldest]
            self._learner.forget(oldest[0])
        self._checks[entry] = None
        ready.send.extend((p, CheckAccepted(msg.key, msg.ballot)) for p in self.peers)
        if s.accepted == msg.ballot and s.value == msg.value:
            self._confirmed_by(self.node_id, Accepted(msg.key, msg.ballot, msg.value), ready)

    def _confirmed_by(self, node: int, vote: Accepted, ready: Ready) -> None:
        """``node`` accepted exactly this ballot and value: one vote for the core's Learner;
        once a quorum voted, the value is chosen and recorded as any Decide is."""
        chosen = self._learner.on_accepted(node, vote)
        if chosen is not None:
            self._checks = {e: None for e in self._checks if e[0] != vote.key}
            self._apply(self.node_id, Decide(vote.key, chosen, vote.ballot), ready, reply=False)


__all__ = ["MAX_CHECKS", "ChecksMixin"]
