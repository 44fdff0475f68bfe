"""What the acceptor host and its parts share: :class:`Ready` (one pass's work), the
:class:`StateSource` it reads instead of holding every key, and the outcomes it counts.

Its own module so the host's parts (acceptor_pages.py, acceptor_catchup.py,
acceptor_checks.py, acceptor_ranges.py) can build a Ready and name an outcome without
importing the host itself (no import cycle).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from zpaxos.hosts import catchup
from zpaxos.hosts.addresses import Src
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.events import Conflict, Event, Ignored, Learned
from zpaxos.protocol.messages import (
    Accepted,
    Ballot,
    Decide,
    Message,
    Nack,
    Promise,
    RAccepted,
    RangeNack,
    RangePromise,
    RNack,
    RPromise,
)

# What became of each message the host handled, as the node's metrics count it (the
# outcome label of zpaxos_node_messages_total): for the Paxos messages, the core's reply
# or event says it; the rest are answered (status, sync, checks), handled (replies to
# this node's own requests) or ignored. Admission adds "refused" (hosts/admission.py).
PROMISED, ACCEPTED, NACKED, DECIDED = "promised", "accepted", "nacked", "decided"
LEARNED, KNOWN, CONFLICT = "learned", "known", "conflict"
ANSWERED, HANDLED, IGNORED, CHECKING = "answered", "handled", "ignored", "checking"
_REPLY_OUTCOME: dict[type, str] = {
    Promise: PROMISED, RPromise: PROMISED, RangePromise: PROMISED,
    Accepted: ACCEPTED, RAccepted: ACCEPTED,
    Nack: NACKED, RNack: NACKED, RangeNack: NACKED,
    Decide: DECIDED,  # the key was chosen already: the sender is told the value
}
_EVENT_OUTCOME: dict[type, str] = {Learned: LEARNED, Conflict: CONFLICT, Ignored: IGNORED}


def outcome_of(send: Sequence[tuple[object, object]], events: Sequence[Event]) -> str:
    """What a message came to, from what the core did with it: its reply, else its first
    event, else nothing (a Decide this node knew already)."""
    if send:
        return _REPLY_OUTCOME.get(type(send[0][1]), ANSWERED)
    if events:
        return _EVENT_OUTCOME.get(type(events[0]), HANDLED)
    return KNOWN


@dataclass(slots=True)
class Ready:
    """One pass's work, in the order it must be done: persist, send, then the rest.

    ``lazy`` holds states whose only change is a learned decision (a Decide, a sync page,
    a confirmed client Decide). No reply waits on them: a chosen value stays chosen whether
    or not this node remembers it (a quorum's accepted state, durable elsewhere, is what
    makes it chosen), so forgetting one in a crash only means learning it again (the sync
    at start). The runtime may make them durable with its next commit, or when idle,
    instead of paying a commit of their own; ``learned`` values are handed to the value
    files once their state is durable. A key with a change in ``persist`` has its whole
    latest state there.
    """

    persist: dict[str, KeyState] = field(default_factory=dict)
    ranges: dict[str, Ballot] = field(default_factory=dict)  # range promises, persisted alike
    send: list[tuple[Src, Message]] = field(default_factory=list)
    learned: list[tuple[str, bytes]] = field(default_factory=list)
    events: list[tuple[Src | None, Event]] = field(default_factory=list)
    lazy: dict[str, KeyState] = field(default_factory=dict)
    # Catching up (hosts/catchup.py): each peer's cursor to save, only with or after the
    # commit that makes this pass's persist and every earlier lazy state durable (the
    # values it covers); and (peer, keys learned from it) for the log.
    cursors: dict[int, catchup.Cursor] = field(default_factory=dict)
    caught: list[tuple[int, int]] = field(default_factory=list)
    # What admission (hosts/admission.py) hands the loop: notes to log; a peer's refusal
    # (the node must stop, never vote on state the cluster saw it lose); and whether what
    # it remembers of the peers changed (peers.json, saved before this pass's replies).
    notes: list[Note] = field(default_factory=list)
    refusal: str | None = None
    peers_changed: bool = False


@dataclass
class Note:
    """Something the node should log: ``name`` and its fields."""

    name: str
    fields: dict[str, Any]


class StateSource(Protocol):
    """The read side of durable storage (``SqliteStore``, ``MemoryStore``): what the host
    reads instead of holding every key. Reads only; the loop still does every write."""

    def get(self, keys: Collection[str]) -> Mapping[str, KeyState]:
        """The durable states of ``keys``; a key never written is absent."""
        ...

    def page(self, after: str, limit: int, chosen_only: bool = False
             ) -> list[tuple[str, KeyState]]:
        """Up to ``limit`` (key, state) after ``after``, in key order."""
        ...

    def prefixed(self, prefix: str, limit: int) -> list[tuple[str, KeyState]]:
        """Up to ``limit`` (key, state) of the keys starting with ``prefix``, in key order;
        reads only those keys (an index seek, not a walk past the range)."""
        ...


__all__ = ["ACCEPTED", "ANSWERED", "CHECKING", "CONFLICT", "DECIDED", "HANDLED", "IGNORED",
           "KNOWN", "LEARNED", "NACKED", "PROMISED", "Ready", "StateSource", "outcome_of"]
