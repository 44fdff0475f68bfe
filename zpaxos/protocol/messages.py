"""Protocol messages: the Paxos, range-promise and register messages, and the one union.

Every message names the *instance key* it is about: the cluster runs one independent
single-decree Paxos instance per key. Values are bytes; the CLI encodes text as UTF-8.

The wire's shared vocabulary (bounds, field types, :class:`Ballot` and why no two
proposers send the same one) is in wiretypes.py; the runtime messages (status, sync,
registers pages, catch-up, hello, checks, watch) are in runtime_messages.py. Both are
re-exported here, as are the hot path's column messages (colmessages.py: many keys'
Prepares, Accepts, Decides and their replies in one message), and :data:`Message` is the
union of all of them: the codec decodes it.
"""

# No ``from __future__ import annotations`` here: msgspec reads the field types of every
# Struct below, and string annotations would cost it a compile() each at import (about
# 100 of them in the three modules: most of their import time).
from typing import Annotated

from msgspec import Meta

from zpaxos.protocol.colmessages import (
    COLUMN_TYPES,
    Accepteds,
    Accepts,
    ColumnMessage,
    Decides,
    Nacks,
    Prepares,
    Promises,
)
from zpaxos.protocol.runtime_messages import (
    AcceptedAt,
    CatchUp,
    CatchUpReply,
    CheckAccepted,
    Fetch,
    FetchReply,
    Hello,
    HelloReply,
    KeyStatus,
    MembersAsk,
    MembersInfo,
    RegistersReply,
    RegistersRequest,
    RNotify,
    RuntimeMessage,
    RWatch,
    StatusReply,
    StatusRequest,
    SyncReply,
    SyncRequest,
    UndecidedReply,
    UndecidedRequest,
)
from zpaxos.protocol.wiretypes import (
    DEFAULT_KEY,
    KEY_MAX_LEN,
    MAX_BUSY,
    MAX_COUNTERS,
    MAX_ENTRIES,
    MAX_LEARN_ENTRIES,
    MAX_NAMES,
    MAX_RANGE_ENTRIES,
    MAX_ROUND,
    MAX_ROUND_STEP,
    MAX_SLOT_BYTES,
    MAX_VALUE_BYTES,
    NONE_YET,
    OP_ID_MAX_BYTES,
    PACK_SEP,
    PROPOSER_ID_BYTES,
    RECENT_OPS,
    STATE_OVERHEAD_BYTES,
    WRITER_BYTES,
    ZERO,
    After,
    Ballot,
    BootId,
    Count,
    Counter,
    Incarnation,
    Key,
    KnownEntry,
    Name,
    NodeId,
    OpId,
    PackedKeys,
    RangeEntry,
    RealBallot,
    RecentOp,
    SlotEntry,
    SlotValue,
    StatusKey,
    SyncEntry,
    Value,
    _Msg,
    _Record,
    key_problem,
)

__all__ = ["Accept", "Accepted", "Accepteds", "Accepts", "COLUMN_TYPES", "ColumnMessage",
           "Decides", "Nacks", "Prepares", "Promises",
           "AcceptedAt", "After", "Ballot", "BootId", "CatchUp",
           "CatchUpReply", "CheckAccepted", "Count", "Counter", "Decide", "DEFAULT_KEY", "Fetch",
           "FetchReply", "Hello", "HelloReply", "Incarnation", "Key", "KEY_MAX_LEN",
           "key_problem", "KeyStatus", "KnownEntry", "MembersAsk", "MembersInfo", "MAX_BUSY",
           "MAX_COUNTERS", "MAX_ENTRIES",
           "MAX_LEARN_ENTRIES", "MAX_NAMES", "MAX_RANGE_ENTRIES", "MAX_ROUND", "MAX_ROUND_STEP",
           "MAX_SLOT_BYTES", "MAX_VALUE_BYTES", "Message", "Nack", "Name", "NodeId", "NONE_YET",
           "OP_ID_MAX_BYTES", "OpId", "PACK_SEP", "PackedKeys", "Prepare", "Promise",
           "PROPOSER_ID_BYTES", "ProtocolMessage", "RAccept", "RAccepted", "RangeEntry",
           "RangeMessage", "RangeNack", "RangePrepare", "RangePromise", "RealBallot",
           "RECENT_OPS", "RecentOp", "RegisterMessage", "RegistersReply", "RegistersRequest",
           "RegState", "RNack", "RNotify", "RPrepare", "RPromise", "RRead", "RState",
           "RuntimeMessage", "RWatch",
           "SlotEntry", "SlotValue", "STATE_OVERHEAD_BYTES", "StatusKey", "StatusReply",
           "StatusRequest", "SyncEntry", "SyncReply", "SyncRequest", "UndecidedReply",
           "UndecidedRequest", "Value", "WRITER_BYTES",
           "ZERO"]


class Prepare(_Msg, frozen=True, tag="PREPARE"):
    """Phase 1a: 'promise me you will ignore ballots below this one'."""

    key: Key
    ballot: RealBallot


class Promise(_Msg, frozen=True, tag="PROMISE"):
    """Phase 1b: the promise, with the acceptor's highest accepted ballot and value.

    ``accepted`` is ZERO and ``value`` None when the acceptor has accepted nothing.
    """

    key: Key
    ballot: RealBallot
    accepted: Ballot
    value: Value | None


class Accept(_Msg, frozen=True, tag="ACCEPT"):
    """Phase 2a: 'accept this value under this ballot'."""

    key: Key
    ballot: RealBallot
    value: Value


class Accepted(_Msg, frozen=True, tag="ACCEPTED"):
    """Phase 2b: the acceptor accepted ``value`` under ``ballot``.

    It carries the value so that any learner can count it without knowing the proposer.
    """

    key: Key
    ballot: RealBallot
    value: Value


class Nack(_Msg, frozen=True, tag="NACK"):
    """A rejection of ``ballot`` (a Prepare or Accept), naming the ballot to beat."""

    key: Key
    ballot: RealBallot
    promised: Ballot


class Decide(_Msg, frozen=True, tag="DECIDE"):
    """``value`` is chosen for ``key``.

    Sent by a proposer that saw a quorum accept (or that learned it from a Decide) to
    every acceptor, and by an acceptor that already knows the chosen value in reply to
    a Prepare or Accept, so that a late proposer finishes at once.
    """

    key: Key
    value: Value
    ballot: Ballot = ZERO  # the ballot a quorum accepted it at; ZERO when not known


ProtocolMessage = Prepare | Promise | Accept | Accepted | Nack | Decide


# --------------------------------------------------------------------------- range promises
# Phase 1 for a whole range of keys at once (zpaxos/protocol/ranges.py): a range is every
# key that starts with ``prefix``. A proposer process that holds a quorum's range promise
# at ballot B needs only phase 2 (Accept at B) for the range's fresh keys.


class RangePrepare(_Msg, frozen=True, tag="RANGE_PREPARE"):
    """Phase 1a for every key starting with ``prefix``: 'ignore ballots below this one'."""

    prefix: Key
    ballot: RealBallot


class RangePromise(_Msg, frozen=True, tag="RANGE_PROMISE"):
    """Phase 1b for the range: promised (durably) for every key of the range.

    ``busy`` names the range's keys that are not fresh here: an accepted value, a decision
    or a promise above ``ballot``. ``more``: there are more such keys than one reply
    carries (the proposer then uses two phases for the whole range)."""

    prefix: Key
    ballot: RealBallot
    busy: Annotated[tuple[Key, ...], Meta(max_length=MAX_BUSY)]
    more: bool


class RangeNack(_Msg, frozen=True, tag="RANGE_NACK"):
    """A refused RangePrepare: ``promised`` is the highest overlapping range promise to
    beat, or ZERO when the node holds as many ranges as it may (no fast path there)."""

    prefix: Key
    ballot: RealBallot
    promised: Ballot


RangeMessage = RangePrepare | RangePromise | RangeNack


# --------------------------------------------------------------------------- registers
# Rewritable registers (CASPaxos, protocol/register.py, regmessages.py): a register's
# state and the messages of its rounds, their own types, so a key is never both.


class RegState(_Record, frozen=True):
    """A register's value at some version: ``version`` counts its changes (0: never
    written), ``value`` None is absent (never set, or deleted: a tombstone keeps its
    version), ``recent`` holds the last change (op id, version) of each of the last
    RECENT_OPS writers, so a retried change is never applied twice (register.py)."""

    version: Count = 0
    value: Value | None = None
    recent: Annotated[tuple[RecentOp, ...], Meta(max_length=RECENT_OPS)] = NONE_YET

    @property
    def exists(self) -> bool:
        return self.value is not None

    def changed(self, value: bytes | None, op_id: bytes) -> "RegState":
        """The next version: ``value`` (None deletes), written by op ``op_id``."""
        v = self.version + 1
        w = op_id[:WRITER_BYTES]
        others = tuple(e for e in self.recent if e[0][:WRITER_BYTES] != w)
        return RegState(v, value, (*others, (op_id, v))[-RECENT_OPS:])

    def knows_writer(self, op_id: bytes) -> bool:
        """Whether ``recent`` holds a change by the writer of ``op_id``. When it does not
        and ``recent`` is not full, that writer never changed this register: writers are
        only ever pushed out of a full list."""
        w = op_id[:WRITER_BYTES]
        return len(self.recent) < RECENT_OPS or any(e[0][:WRITER_BYTES] == w
                                                    for e in self.recent)

    def applied(self, op_id: bytes) -> int | None:
        """The version op ``op_id`` produced, if it is among the recent changes."""
        for op, v in self.recent:
            if op == op_id:
                return v
        return None


class RPrepare(_Msg, frozen=True, tag="RPREPARE"):
    """Phase 1a for register ``key``."""

    key: Key
    ballot: RealBallot


class RPromise(_Msg, frozen=True, tag="RPROMISE"):
    """Phase 1b: the promise, with the register state accepted at ``accepted``
    (ZERO and the empty state when the acceptor has accepted nothing)."""

    key: Key
    ballot: RealBallot
    accepted: Ballot
    state: RegState


class RAccept(_Msg, frozen=True, tag="RACCEPT"):
    """Phase 2a: accept ``state`` at ``ballot``. ``next`` (ZERO: none) is the 1-RTT
    optimisation: the same proposer's next ballot, which the acceptor also promises, so
    the proposer's next change of this key can skip phase 1."""

    key: Key
    ballot: RealBallot
    state: RegState
    next: Ballot = ZERO


class RAccepted(_Msg, frozen=True, tag="RACCEPTED"):
    """Phase 2b: ``ballot`` accepted; ``next`` promised too when it is not ZERO."""

    key: Key
    ballot: RealBallot
    next: Ballot = ZERO


class RNack(_Msg, frozen=True, tag="RNACK"):
    """A rejection of ``ballot``, naming the ballot to beat."""

    key: Key
    ballot: RealBallot
    promised: Ballot


class RRead(_Msg, frozen=True, tag="RREAD"):
    """A read-only question for register ``key``: "what have you accepted?" Unlike an
    RPrepare it promises nothing, so it changes nothing and outbids no one (a writer's
    1-RTT promise survives it). See RegisterProposer's quorum read. ``read`` names this
    question among its proposer's (a counter): the answer carries it back, so an answer
    to an earlier question (delayed, duplicated) is never taken for one to this."""

    key: Key
    read: Count


class RState(_Msg, frozen=True, tag="RSTATE"):
    """The answer to RRead ``read``: the state this acceptor accepted at ``accepted``
    (ZERO and the empty state when it has accepted nothing)."""

    key: Key
    read: Count
    accepted: Ballot
    state: RegState


RegisterMessage = RPrepare | RPromise | RAccept | RAccepted | RNack | RRead | RState


# The hot path's column messages (colmessages.py): runs of the Paxos messages above.
Message = (ProtocolMessage | ColumnMessage | RangeMessage | RegisterMessage
           | RuntimeMessage)
