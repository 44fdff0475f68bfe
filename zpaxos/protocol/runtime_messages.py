"""The runtime messages: not Paxos, how nodes and clients talk about their state.

How a node reports its state (status), lists its registers (registers pages), how a
restarted node catches up on decisions it missed (sync, catch-up, fetch), how a node
checks a client's Decide (check), how nodes recognise each other's incarnations (hello),
and the register watch (RWatch, RNotify). The core never sees these; the node answers
them from its state. Every one is also a member of messages.Message, the one union the
codec decodes.
"""

# No ``from __future__ import annotations`` here: msgspec reads the field types of every
# Struct below, and string annotations would cost it a compile() each at import.
from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta

from zpaxos.protocol.wiretypes import (
    MAX_COUNTERS,
    MAX_ENTRIES,
    MAX_LEARN_ENTRIES,
    MAX_NAMES,
    MAX_RANGE_ENTRIES,
    NONE_YET,
    PACK_SEP,
    ZERO,
    After,
    Ballot,
    BootId,
    Count,
    Counter,
    Cursor,
    Incarnation,
    Key,
    KnownEntry,
    NodeId,
    PackedKeys,
    RangeEntry,
    RealBallot,
    SlotEntry,
    SlotValue,
    StatusKey,
    SyncEntry,
    Value,
    _Msg,
    _Record,
)

# --------------------------------------------------------------------------- runtime messages
# Not Paxos: how a node reports its state and how a restarted node catches up on
# decisions it missed. The core never sees these; the node answers them from its state.


class StatusRequest(_Msg, frozen=True, tag="STATUS"):
    """Ask a node for its acceptor state; ``key`` None means every key (up to a limit)."""

    key: StatusKey | None


class KeyStatus(_Record, frozen=True):
    key: StatusKey
    promised: Ballot
    accepted: Ballot
    value: SlotValue | None
    chosen: Value | None
    chosen_ballot: Ballot = ZERO


class StatusReply(_Msg, frozen=True, tag="STATUS_REPLY"):
    node: NodeId
    keys: Annotated[tuple[KeyStatus, ...], Meta(max_length=MAX_ENTRIES)]
    truncated: bool  # more keys exist than one reply carries
    # The node's counters: malformed messages dropped, peers refused (CURVE), ...
    stats: Annotated[tuple[Counter, ...], Meta(max_length=MAX_COUNTERS)] = ()
    # The node's range promises (protocol/ranges.py), prefix and ballot, in prefix order.
    ranges: Annotated[tuple[RangeEntry, ...], Meta(max_length=MAX_RANGE_ENTRIES)] = NONE_YET


class RegistersRequest(_Msg, frozen=True, tag="REGISTERS"):
    """A client (``zpaxos export --registers``) asks a node for the names of the registers
    it holds a state for, one page after name ``after`` ("" for the first). Names only:
    each register's state is then read through the protocol, never taken from a page."""

    after: After


class RegistersReply(_Msg, frozen=True, tag="REGISTERS_REPLY"):
    after: After  # the request this answers
    names: Annotated[tuple[Key, ...], Meta(max_length=MAX_NAMES)]
    more: bool  # ask again after the last name of this page


class UndecidedRequest(_Msg, frozen=True, tag="UNDECIDED"):
    """A membership change (runtime/reconfig.py) asks a node for the write-once keys it
    holds a value accepted for but not known decided, one page: the node walks at most
    a page of its keys after ``after`` ("" for the first; a register's ``@slot`` may be a
    cursor). Names only: each key is then settled through the protocol."""

    after: Cursor


class UndecidedReply(_Msg, frozen=True, tag="UNDECIDED_REPLY"):
    after: Cursor  # the request this answers
    keys: Annotated[tuple[Key, ...], Meta(max_length=MAX_NAMES)]  # in order, after ``after``
    last: Cursor  # the last key the node walked: ask again after it
    more: bool


class SyncRequest(_Msg, frozen=True, tag="SYNC"):
    """A (re)started node asks a peer for chosen values, one page after key ``after``."""

    after: After


class SyncReply(_Msg, frozen=True, tag="SYNC_REPLY"):
    after: After  # the request this answers
    chosen: Annotated[tuple[SyncEntry, ...], Meta(max_length=MAX_ENTRIES)]
    more: bool  # ask again after the last key of this page


class CatchUp(_Msg, frozen=True, tag="CATCHUP"):
    """Node to node, every ``catch_up_s``: "which keys did you learn from position ``pos``
    of your learn log on?" (zpaxos/hosts/catchup.py). ``incarnation``: the database
    whose log the position counts in (empty: none yet); another one is answered from the
    start of the peer's log."""

    incarnation: Incarnation
    pos: Count


class CatchUpReply(_Msg, frozen=True, tag="CATCHUP_REPLY"):
    """A page of the answering node's learn log from the position asked for: the keys
    only, packed into one text on the wire (``"a\\nb\\n@r"``: checked by one regular
    expression and split in one call, wirerules.py), and for a register's ``@slot`` among
    them the accepted ballot the peer holds. Values are fetched apart, only for what the
    asker lacks (:class:`Fetch`). Build one with :meth:`of`."""

    incarnation: Incarnation  # the answering node's database: the positions count in it
    pos: Count  # the request this answers (its position, as asked)
    end: Count  # the position after this page's last entry: the asker's next cursor
    packed: PackedKeys  # keys and @slots at positions [start, end), in log order
    slots: Annotated[tuple[SlotEntry, ...], Meta(max_length=MAX_LEARN_ENTRIES)]
    more: bool  # ask again from ``end``

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.packed.split(PACK_SEP)) if self.packed else ()

    @classmethod
    def of(cls, incarnation: bytes, pos: int, end: int, keys: Sequence[str],
           slots: tuple[SlotEntry, ...], more: bool) -> "CatchUpReply":
        return cls(incarnation, pos, end, PACK_SEP.join(keys), slots, more)


class Fetch(_Msg, frozen=True, tag="FETCH"):
    """Node to node: "send me what you know of these keys" (a catch-up page's keys this
    node lacks): chosen values, and registers' accepted states."""

    keys: Annotated[tuple[StatusKey, ...], Meta(max_length=MAX_LEARN_ENTRIES)]


class FetchReply(_Msg, frozen=True, tag="FETCH_REPLY"):
    """What the peer knows of the keys asked for: ``(key, value, ballot)``, the chosen
    value and its ballot for a key, the accepted state and ballot for a register's
    ``@slot``. ``more``: cut short by size; ask again for the rest."""

    known: Annotated[tuple[KnownEntry, ...], Meta(max_length=MAX_LEARN_ENTRIES)]
    more: bool


class CheckAccepted(_Msg, frozen=True, tag="CHECK"):
    """Node to node: "have you accepted ``ballot`` for ``key``, and with which value?"

    How a node checks a Decide it cannot take on trust (from a client, with CURVE on)
    before it records the value as chosen: a quorum that accepted one ballot with one
    value is what makes a value chosen."""

    key: Key
    ballot: RealBallot


class AcceptedAt(_Msg, frozen=True, tag="CHECKED"):
    """The answer: ``value`` accepted (or chosen) at exactly ``ballot``, else None."""

    key: Key
    ballot: RealBallot
    value: Value | None


class Hello(_Msg, frozen=True, tag="HELLO"):
    """Node to node: "I am ``node``, incarnation ``incarnation``, at ``commit_seq`` commits".

    Sent when a node starts and, while its commits advance, about once a second: each peer
    remembers the latest it heard of every node (zpaxos.runtime.incarnation), so a node
    whose whole data directory was restored from an old copy, or deleted, is recognised.
    ``fresh``: this incarnation was started empty on purpose (``--new``). ``boot``: drawn
    by each process at start, so a peer can tell a delayed or duplicated Hello of the same
    process (ignored) from a restart that reports fewer commits (a rollback)."""

    node: NodeId
    boot: BootId
    incarnation: Incarnation
    commit_seq: Count
    fresh: bool


class HelloReply(_Msg, frozen=True, tag="HELLO_REPLY"):
    """The peer's verdict on a Hello, with what it remembered before it (``incarnation``
    empty when it had never heard of that node). ``verdict``: see zpaxos.runtime.peers.VERDICTS."""

    node: NodeId  # the peer answering
    boot: BootId  # the boot id of the Hello this answers
    verdict: Annotated[int, Meta(ge=0, le=15)]
    incarnation: Incarnation
    commit_seq: Count


# --------------------------------------------------------------------------- membership
# The cluster's configuration (zpaxos/runtime/members.py): asked of any member, and
# sent unasked as the refusal of a frame from an older epoch.

MAX_CONFIG_BYTES = 16 << 10  # an encoded configuration (protocol/membership.py's Config)


class MembersAsk(_Msg, frozen=True, tag="MEMBERS_ASK"):
    """"Which configuration are you in?" ``epoch``: the asker's (0: it has none)."""

    epoch: Count


class MembersInfo(_Msg, frozen=True, tag="MEMBERS"):
    """A node's current configuration, msgpack-encoded (protocol/membership.Config),
    with its epoch. The answer to MembersAsk; also the refusal of a Paxos message whose
    frame carried an older epoch (``refused``: how many of the frame's messages were
    dropped), so the sender retries at once with the right members. ``config`` empty:
    the node holds no configuration chain yet (it runs on its INI file's nodes)."""

    node: NodeId
    epoch: Count
    config: Annotated[bytes, Meta(max_length=MAX_CONFIG_BYTES)]
    refused: Count
    caught_up: bool  # the node votes and has caught up with every peer since it started
    decided: Count  # decided keys it holds (a joining node's progress)


# --------------------------------------------------------------------------- register watch
# A client watching a register for changes (zpaxos/runtime/watch.py): not a Paxos
# message either; the node answers it from the states it accepts.


class RWatch(_Msg, frozen=True, tag="RWATCH"):
    """A watcher's interest in register ``key``: "send me an RNotify when you accept a new
    state of it". Held for a lease (acceptor_host.WATCH_LEASE_S); sent again to renew it."""

    key: Key


class RNotify(_Msg, frozen=True, tag="RNOTIFY"):
    """This node accepted ``version`` of register ``key`` (answering an RWatch: the
    version it holds). ``watching`` False: it refused the watch (its table is full).
    (A renewal of a watch the node owes a notification gets no answer of its own: the
    notification, paced, answers it; hosts/watchers.py.)"""

    key: Key
    version: Count
    watching: bool


RuntimeMessage = (StatusRequest | StatusReply | SyncRequest | SyncReply | CheckAccepted
                  | RegistersRequest | RegistersReply | CatchUp | CatchUpReply | Fetch
                  | FetchReply
                  | AcceptedAt | Hello | HelloReply | RWatch | RNotify | MembersAsk
                  | MembersInfo | UndecidedRequest | UndecidedReply)
