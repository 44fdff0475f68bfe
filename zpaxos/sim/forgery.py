"""What faulty or hostile parties send in a simulated run: a buggy but authorized client's
Decide for a value no quorum chose, and a faulty peer's sync page naming another value for
a decided key. The hosts must never believe either (the simulator's invariants check it).
Pure: the simulation passes its random stream and what it knows."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import Ballot, Decide, SyncReply


def forged_decide(rng: random.Random, votes: Mapping[tuple[str, Ballot, bytes], Any],
                  chosen: Mapping[str, bytes], keys: Iterable[str]) -> Decide:
    """A Decide for a vote some acceptor cast that no quorum (yet) shares, or for a value
    nobody proposed."""
    unchosen = [(k, b, v) for (k, b, v) in votes if chosen.get(k) != v]
    if unchosen and rng.random() < 0.7:
        key, ballot, value = rng.choice(sorted(unchosen))
    else:
        key = rng.choice(sorted(set(keys)))
        ballot, value = Ballot(1, b"R"), b"made-up"
    return Decide(key, value, ballot)


def forged_sync(rng: random.Random, states: Mapping[str, KeyState],
                msg: SyncReply) -> SyncReply:
    """``msg`` with another value added for a key the receiver has decided (``msg``
    itself when it has decided none)."""
    decided = sorted(k for k, s in states.items() if s.chosen is not None)
    if not decided:
        return msg
    key = rng.choice(decided)
    return SyncReply(msg.after, (*msg.chosen, (key, b"forged", Ballot(1, b"F"))), msg.more)
