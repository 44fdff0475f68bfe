"""What one acceptor remembers about one key: the state the rules read and persist.

Its own module so that the pacing shared by both proposers (zpaxos.protocol.pacing) can
name it in a Step without importing the rules that use it (zpaxos.protocol.core
re-exports both names).
"""

from __future__ import annotations

import msgspec

from zpaxos.protocol.messages import ZERO, Ballot

__all__ = ["EMPTY", "KeyState"]


class KeyState(msgspec.Struct, frozen=True, gc=False):
    """What one acceptor must remember about one key, across crashes."""

    promised: Ballot = ZERO
    accepted: Ballot = ZERO
    value: bytes | None = None
    chosen: bytes | None = None
    chosen_ballot: Ballot = ZERO  # the ballot that chose ``chosen``; ZERO when not known


EMPTY = KeyState()  # a key the acceptor has never heard of (immutable, so shared)
