"""The identity round of a write-once key: how a membership change moves a key's
accepted-but-undecided value to the new configuration (docs/membership.md, rule 3).

Phase 1 with the new configuration's prepare quorum. If a promise in it carries an
accepted value, the round is an ordinary Paxos round from there: it accepts that value
(the highest ballot's) with the new accept quorum, and the learner decides it. If none
does, no value can have been chosen in the old configuration (its accept quorums meet
the new prepare quorums), and the round ends without proposing anything: an identity
round never invents a value. A key some acceptor knows decided answers with the decision.
"""

from __future__ import annotations

from zpaxos.protocol.core import Outcome, Peer, Proposer
from zpaxos.protocol.messages import Ballot
from zpaxos.protocol.pacing import PREPARE, Step

NOTHING_ACCEPTED = "nothing accepted: no value to move"


class IdentityProposer(Proposer):
    """A :class:`~zpaxos.protocol.core.Proposer` whose own value is never proposed: a
    quorum of promises without an accepted value ends it (outcome: chosen None,
    reason :data:`NOTHING_ACCEPTED`)."""

    def _promise_row(self, now: float, src: Peer, ballot: Ballot, accepted: Ballot,
                     value: bytes | None, step: Step | None) -> Step | None:
        """The core's rule for one promise (a Promise, or a row of a Promises), but a
        quorum of promises with nothing accepted ends the round instead of phase 2."""
        if ballot == self.ballot and self.phase == PREPARE and src in self._prepare_to:
            promises = {**self._promises, src: (accepted, value)}
            if len(promises) >= self.quorum and all(
                    v is None or a.is_zero for a, v in promises.values()):
                self._answered.add(src)
                self._promises[src] = (accepted, value)
                self._end(None, NOTHING_ACCEPTED, None)
                return Step() if step is None else step  # the host sees it is done
        return super()._promise_row(now, src, ballot, accepted, value, step)


def moved(outcome: Outcome) -> bool:
    """Did the identity round end well: the key decided, or nothing there to move."""
    return outcome.chosen is not None or outcome.reason == NOTHING_ACCEPTED


__all__ = ["NOTHING_ACCEPTED", "IdentityProposer", "moved"]
