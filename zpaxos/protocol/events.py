"""Typed events: what the core and the hosts report besides messages.

An event is data, never a sentence: the node branches on ``isinstance(ev, Learned)``, a
chart reads ``Retry.acceptor`` and ``Retry.promised``, and only the log and the charts
turn an event into text. Each event names its ``key`` and lists which of its fields
are peers (``peer_fields``), so the runtime can name them ("node1") when it logs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, ClassVar

import msgspec

from zpaxos.protocol.messages import ZERO, Ballot

Peer = Hashable  # an acceptor id, a routing id...: whatever the runtime addresses


class Event(msgspec.Struct, frozen=True):
    """Base of every event; ``name`` is what the log calls it. Frozen msgspec Structs, as
    the messages are: every process imports these, and creating one such class costs
    about 0.05 ms where a slotted dataclass cost 0.5 ms (5 ms of a ``zpaxos propose``)."""

    name: ClassVar[str] = "event"
    peer_fields: ClassVar[tuple[str, ...]] = ()
    key: str

    def fields(self, name_peer: Callable[[Any], Any] = lambda p: p) -> dict[str, Any]:
        """The event's fields (key included), peers passed through ``name_peer``;
        None-valued optional fields and ZERO ballots meaning "unknown" are left out."""
        out: dict[str, Any] = {}
        for name in self.__struct_fields__:
            v = getattr(self, name)
            if v is None or (isinstance(v, Ballot) and v.is_zero and name != "ballot"):
                continue
            if name in self.peer_fields:
                v = [name_peer(p) for p in v] if isinstance(v, tuple) else name_peer(v)
            out[name] = v
        return out


# --------------------------------------------------------------------------- proposer


class Round(Event, frozen=True):
    """A proposer starts its ``round``-th ballot (phase 1; ``fast``: phase 2 at once, at a
    range promise's ballot, see zpaxos/protocol/ranges.py)."""

    name: ClassVar[str] = "round"
    ballot: Ballot
    round: int
    fast: bool | None = None  # None (not logged) for an ordinary round


class Adopted(Event, frozen=True):
    """A quorum's promises reported an accepted value: phase 2 proposes it, not ours."""

    name: ClassVar[str] = "adopted"
    value: bytes
    from_ballot: Ballot
    ballot: Ballot


class Pause(Event, frozen=True):
    """Staging: the proposer waits ``seconds`` between its phases."""

    name: ClassVar[str] = "pause"
    ballot: Ballot
    seconds: float


REJECTED, TIMEOUT = "rejected", "timeout"


class Retry(Event, frozen=True):
    """A round failed: ``cause`` is REJECTED (``acceptor`` promised ``promised``, above our
    ballot) or TIMEOUT (no quorum in ``phase`` before the round timeout). The next round
    starts after ``backoff_s``."""

    name: ClassVar[str] = "retry"
    peer_fields: ClassVar[tuple[str, ...]] = ("acceptor", "no_reply_from")
    ballot: Ballot
    cause: str
    phase: str
    backoff_s: float
    acceptor: Peer | None = None
    promised: Ballot | None = None
    no_reply_from: tuple[Peer, ...] | None = None


PROPOSED, ADOPTED, ALREADY = "proposed", "adopted", "already"


class Chosen(Event, frozen=True):
    """The proposal ended with ``value`` chosen. ``how``: PROPOSED (chosen now, our value),
    ADOPTED (chosen now, an earlier value we adopted) or ALREADY (chosen before we came;
    ``told_by`` an acceptor's Decide). ``chosen_ballot`` is the ballot a quorum accepted
    it at (ZERO when not known); ``ballot`` is this proposer's own last ballot."""

    name: ClassVar[str] = "chosen"
    peer_fields: ClassVar[tuple[str, ...]] = ("told_by",)
    value: bytes
    ballot: Ballot
    own: bool
    rounds: int
    how: str
    chosen_ballot: Ballot = ZERO
    told_by: Peer | None = None


DEADLINE, MAX_ROUNDS = "deadline", "max_rounds"


class GaveUp(Event, frozen=True):
    """The proposal ended with nothing chosen: ``cause`` is DEADLINE or MAX_ROUNDS."""

    name: ClassVar[str] = "gave_up"
    ballot: Ballot
    rounds: int
    cause: str
    reason: str  # the same, as a sentence for people


class Applied(Event, frozen=True):
    """A register operation ended with a quorum's acceptance at ``ballot``: ``status`` is
    "ok" (the register is now at ``version``) or "cas_failed" (the comparison failed; the
    state was written back unchanged). Registers only: nothing is chosen for good, the
    next operation overwrites the state (``fast``: it ran on the 1-RTT path)."""

    name: ClassVar[str] = "applied"
    ballot: Ballot
    rounds: int
    op: str
    status: str
    version: int
    fast: bool | None = None  # None (not logged) for an ordinary round


# --------------------------------------------------------------------------- acceptor


class Learned(Event, frozen=True):
    """An acceptor recorded ``value`` as chosen (from a Decide or a peer's sync)."""

    name: ClassVar[str] = "learned"
    value: bytes
    chosen_ballot: Ballot = ZERO


class Conflict(Event, frozen=True):
    """A Decide named another value than the one recorded as chosen: a safety violation
    somewhere, or a rogue peer. The recorded decision stands."""

    name: ClassVar[str] = "conflict"
    chosen: bytes
    value: bytes


class Ignored(Event, frozen=True):
    """A message that makes no sense where it arrived (a reply sent to an acceptor), or
    one past a per-pass limit (more status pages than a pass builds)."""

    name: ClassVar[str] = "ignored"
    type: str
