"""How a proposal ended: :class:`Outcome`, what the proposer (core.py) hands back.

A record, not a rule: its own module so that the rules' file (core.py) holds the rules.
core.py re-exports it, as it always did.
"""

from __future__ import annotations

import msgspec

from zpaxos.protocol.events import Peer
from zpaxos.protocol.messages import ZERO, Ballot

__all__ = ["Outcome"]


class Outcome(msgspec.Struct, frozen=True, gc=False):
    """How a proposal ended. ``chosen`` is None when no value could be chosen in time."""

    key: str
    proposed: bytes
    chosen: bytes | None
    own: bool  # True exactly when chosen == proposed
    rounds: int
    ballot: Ballot  # this proposer's last ballot
    reason: str
    silent: tuple[Peer, ...]  # acceptors that never answered this proposer
    # The ballot a quorum accepted the chosen value at (ZERO when not known), and how it
    # came to be: "proposed" (chosen now, our value), "adopted" (chosen now, an earlier
    # proposer's value we adopted), "already" (chosen before we came; told by a Decide).
    chosen_ballot: Ballot = ZERO
    how: str = ""
    told_by: Peer | None = None  # the acceptor whose Decide told us, if one did

    @property
    def chosen_text(self) -> str | None:
        """The chosen value as text (values are bytes; undecodable bytes escaped)."""
        return None if self.chosen is None else self.chosen.decode("utf-8", "backslashreplace")
