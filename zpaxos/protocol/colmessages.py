"""The hot path's messages as columns: many keys' Prepares (Accepts, Decides, and their
replies) to one peer in one message, one tuple per field.

A pass of a busy client sends each node hundreds of Accepts and Decides, and each node
answers with as many Accepteds: as one-key messages (messages.py) each is an object to
decode, dispatch and handle. As columns, msgspec decodes a whole run of them in one C call
into a few tuples, the acceptor applies its rules to them in one loop over plain tuples
(core.py's ``*_rows`` rules, which the one-key messages go through too), and its replies
go back the same way. Row ``i`` of a column message is the one-key message made of every
column's item ``i`` (:func:`zpaxos.protocol.columns.rows`): a column message means exactly
its rows, in order, and the one-key types stay on the wire for everything else.

Every column holds at most MAX_ROWS items (msgspec checks it as it decodes); that a
message's columns have one length, and what a ballot or a promise's value must be in each
row, wirerules.py checks before anything acts on the message.
"""

# No ``from __future__ import annotations``: msgspec reads these field types (as
# messages.py explains).
from typing import Annotated

from msgspec import Meta

from zpaxos.protocol.wiretypes import MAX_ROWS, Ballot, Key, RealBallot, Value, _Msg

__all__ = ["COLUMN_TYPES", "Accepteds", "Accepts", "ColumnMessage", "Decides", "Nacks",
           "Prepares", "Promises"]

Keys = Annotated[tuple[Key, ...], Meta(max_length=MAX_ROWS)]
RealBallots = Annotated[tuple[RealBallot, ...], Meta(max_length=MAX_ROWS)]
Ballots = Annotated[tuple[Ballot, ...], Meta(max_length=MAX_ROWS)]
Values = Annotated[tuple[Value, ...], Meta(max_length=MAX_ROWS)]
MaybeValues = Annotated[tuple[Value | None, ...], Meta(max_length=MAX_ROWS)]


class Prepares(_Msg, frozen=True, tag="PREPARES"):
    """Prepare, one row per key: ``(key, ballot)``."""

    keys: Keys
    ballots: RealBallots


class Promises(_Msg, frozen=True, tag="PROMISES"):
    """Promise, one row per key: ``(key, ballot, accepted, value)``."""

    keys: Keys
    ballots: RealBallots
    accepted: Ballots
    values: MaybeValues


class Accepts(_Msg, frozen=True, tag="ACCEPTS"):
    """Accept, one row per key: ``(key, ballot, value)``."""

    keys: Keys
    ballots: RealBallots
    values: Values


class Accepteds(_Msg, frozen=True, tag="ACCEPTEDS"):
    """Accepted, one row per key: ``(key, ballot, value)``."""

    keys: Keys
    ballots: RealBallots
    values: Values


class Nacks(_Msg, frozen=True, tag="NACKS"):
    """Nack, one row per key: ``(key, ballot, promised)``."""

    keys: Keys
    ballots: RealBallots
    promised: Ballots


class Decides(_Msg, frozen=True, tag="DECIDES"):
    """Decide, one row per key: ``(key, value, ballot)`` (ballot ZERO: not known)."""

    keys: Keys
    values: Values
    ballots: Ballots


ColumnMessage = Prepares | Promises | Accepts | Accepteds | Nacks | Decides
COLUMN_TYPES = (Prepares, Promises, Accepts, Accepteds, Nacks, Decides)
