"""The learner: which value is chosen for a key, from a quorum of Accepted for one
ballot or from a Decide (used by the proposer, protocol/core.py, and by the acceptor host)."""

from __future__ import annotations

from collections.abc import Sequence

from zpaxos.protocol.events import Peer
from zpaxos.protocol.messages import Accepted, Ballot, Decide
from zpaxos.protocol.pacing import quorum_size


class Learner:
    """Learns chosen values: a quorum of Accepted for one ballot, or a Decide."""

    def __init__(self, acceptors: Sequence[Peer], quorum: int | None = None) -> None:
        """``quorum``: how many of ``acceptors`` must accept (default: a majority)."""
        self.acceptors = frozenset(acceptors)
        self.quorum = quorum if quorum is not None else quorum_size(len(self.acceptors))
        self.chosen: dict[str, bytes] = {}
        self.chosen_ballot: dict[str, Ballot] = {}  # when known
        self._votes: dict[tuple[str, Ballot, bytes], set[Peer]] = {}

    def on_accepted(self, src: Peer, msg: Accepted) -> bytes | None:
        """Count one Accepted; return the value if it is (now) known to be chosen."""
        return self.vote(src, msg.key, msg.ballot, msg.value)

    def vote(self, src: Peer, key: str, ballot: Ballot, value: bytes) -> bytes | None:
        """Count ``src``'s Accepted (or Accepteds row); the value if it is now chosen."""
        if key in self.chosen:
            return self.chosen[key]
        if src not in self.acceptors:
            return None
        voters = self._votes.setdefault((key, ballot, value), set())
        voters.add(src)  # a set: a duplicated Accepted counts once
        if len(voters) >= self.quorum:
            self.chosen[key] = value
            self.chosen_ballot[key] = ballot
            self._votes = {k: v for k, v in self._votes.items() if k[0] != key}
            return value
        return None

    def forget(self, key: str) -> None:
        """Drop the votes counted for an undecided key (the caller bounds its memory)."""
        self._votes = {k: v for k, v in self._votes.items() if k[0] != key}

    def on_decide(self, msg: Decide) -> bytes:
        if msg.key not in self.chosen and not msg.ballot.is_zero:
            self.chosen_ballot[msg.key] = msg.ballot
        return self.chosen.setdefault(msg.key, msg.value)
