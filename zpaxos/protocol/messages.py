"""Ballots and protocol messages: small immutable values, nothing else.

Every message names the *instance key* it is about: the cluster runs one independent
single-decree Paxos instance per key. Values are bytes; the CLI encodes text as UTF-8.

Ballot uniqueness (the lab's safety hole was two proposers using the same number):
a ballot is ``(round, proposer)`` and compares as that tuple. ``proposer`` is the
proposer's id, 16 bytes drawn from the operating system's CSPRNG (``os.urandom``) by
the runtime when a proposer is created; the core never invents one. Two proposers,
even started in the same microsecond on different machines, therefore share an id
with probability about n^2 / 2^129 (for a billion proposers, about 1e-21), and a
proposer never reuses a round of its own because its round only grows. So no two
proposers ever send the same ballot, and the acceptor rule "accept at or above my
promise" cannot accept two values under one ballot.
"""

# No ``from __future__ import annotations`` here: msgspec reads the field types of every
# Struct below, and string annotations would cost it a compile() each at import (about
# 100 of them: most of the import time of this module).
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, TypeAlias

from msgspec import Meta, Struct

PROPOSER_ID_BYTES = 16
DEFAULT_KEY = "CISC5597"
# An acceptor refuses a ballot whose round is this far beyond anything it has promised or
# accepted for the key. An honest proposer only ever goes one past the highest round it
# has seen, so this never bites it; but without it one message with round 2**63-1 would
# lock a key forever (nobody could outbid it). With it, pushing a key to the codec's
# limit (2**63-1) takes 2**43 accepted messages: years at any rate a node can serve.
MAX_ROUND_STEP = 1 << 20

# --------------------------------------------------------------------------- wire bounds
# Every message below is a msgspec Struct: its field types, with these bounds in ``Meta``,
# are what the decoder checks (in C, as it builds the message). What a type cannot say
# (a ballot is ZERO or real, cross-field rules) is in protocol/wirerules.py.

MAX_VALUE_BYTES = 1 << 20  # 1 MiB per value
MAX_ROUND = (1 << 63) - 1  # fits SQLite's signed 64-bit integers
MAX_ENTRIES = 100_000  # entries in one status or sync page
MAX_NAMES = 1000  # register names in one RegistersReply
MAX_RANGE_ENTRIES = 4096  # range promises in one status reply (ranges.MAX_RANGES)
MAX_BUSY = 1024  # keys a RangePromise names as not fresh (more: two phases for the range)
MAX_LEARN_ENTRIES = 4096  # keys in one catch-up page, and asked for in one Fetch
PACK_SEP = "\n"  # between a catch-up page's packed keys (no key may hold one)
MAX_COUNTERS = 64  # counters in one status reply
KEY_MAX_LEN = 128
RECENT_OPS = 16  # writers whose last change a register remembers (idempotent retries)
WRITER_BYTES = 8  # an op id starts with its writer's id
OP_ID_MAX_BYTES = 32
# What regmessages.encode_state adds to a value, at most: "R1", the version and flag, the
# value's length, the count of recent ops, and each op (its length, id and version). An
# acceptor's register slot holds value plus this: a status entry must carry that much.
STATE_OVERHEAD_BYTES = 2 + 9 + 4 + 1 + RECENT_OPS * (1 + OP_ID_MAX_BYTES + 8)
# A status entry's accepted value is what the acceptor holds: for a register's slot, its
# encoded state, a value of up to MAX_VALUE_BYTES and the state's own fields.
MAX_SLOT_BYTES = MAX_VALUE_BYTES + STATE_OVERHEAD_BYTES

_KEY = f"[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{KEY_MAX_LEN - 1}}}"  # see key_problem
# msgspec searches a pattern: anchored with \Z (``$`` would let a final newline through).
Key = Annotated[str, Meta(max_length=KEY_MAX_LEN, pattern=f"^{_KEY}\\Z")]
After = Annotated[str, Meta(max_length=KEY_MAX_LEN, pattern=f"^(?:{_KEY})?\\Z")]  # "" or a key
StatusKey = Annotated[str, Meta(max_length=KEY_MAX_LEN + 1, pattern=f"^@?{_KEY}\\Z")]  # or @reg
Name = Annotated[str, Meta(min_length=1, max_length=32, pattern="^[\\x00-\\x7f]*\\Z")]  # ASCII
Value = Annotated[bytes, Meta(max_length=MAX_VALUE_BYTES)]
SlotValue = Annotated[bytes, Meta(max_length=MAX_SLOT_BYTES)]  # a value, or a register state
Count = Annotated[int, Meta(ge=0, le=MAX_ROUND)]  # versions, sequence numbers, counters
NodeId = Annotated[int, Meta(ge=0, le=65535)]
BootId = Annotated[bytes, Meta(min_length=8, max_length=8)]
Incarnation = Annotated[bytes, Meta(max_length=16)]  # 16 bytes, or none known (wirerules)
OpId = Annotated[bytes, Meta(min_length=1, max_length=OP_ID_MAX_BYTES)]


class _Omitted(tuple):  # type: ignore[type-arg]
    """An empty tuple that is not ``()`` itself: the default of a trailing list field.

    msgspec fills a trailing field the wire left out with its default; the codec refuses
    such a message (every field travels), and tells by identity that one was left out:
    a decoded empty list is ``()``, never this object. Ballots do the same with ZERO."""

    __slots__ = ()


NONE_YET: tuple[Any, ...] = _Omitted()


class Ballot(NamedTuple):
    """A totally ordered, unique proposal number: compared by round, then proposer id.

    A named tuple, so that comparing two ballots (the acceptor's every decision) is the
    interpreter's own tuple comparison and the wire carries it as ``[round, proposer]``
    with no conversion. On the wire a ballot is ZERO or real (wirerules.py); a field that
    must hold a real one is typed :data:`RealBallot`."""

    round: Annotated[int, Meta(ge=0, le=MAX_ROUND)]
    proposer: Annotated[bytes, Meta(max_length=2 * PROPOSER_ID_BYTES)]

    def __str__(self) -> str:
        # Short human form used in logs and charts: "2.b7c1" (round, first id bytes).
        if self.round == 0 and not self.proposer:
            return "0"
        return f"{self.round}.{self.proposer[:2].hex()}"

    @property
    def is_zero(self) -> bool:
        return self.round == 0 and not self.proposer


# Below every real ballot (real rounds start at 1), so no code ever compares with None.
ZERO = Ballot(0, b"")

if TYPE_CHECKING:
    RealBallot: TypeAlias = Ballot
else:
    class RealBallot(Ballot):
        """A ballot someone proposes, never ZERO: what msgspec checks for such a field.

        A Ballot in every other way (equal, ordered and hashed as one); to mypy it is one."""

        __slots__ = ()
        round: Annotated[int, Meta(ge=1, le=MAX_ROUND)]
        proposer: Annotated[bytes, Meta(min_length=1, max_length=2 * PROPOSER_ID_BYTES)]

        def __repr__(self) -> str:
            return f"Ballot(round={self.round!r}, proposer={self.proposer!r})"


RangeEntry = tuple[Key, RealBallot]  # a range promise: prefix, ballot
SyncEntry = tuple[Key, Value, Ballot]  # a chosen value: key, value, the ballot that chose it
Counter = tuple[Name, Count]  # a node's counter: name, count
RecentOp = tuple[OpId, Count]  # a register's recent change: op id, the version it made
SlotEntry = tuple[StatusKey, Ballot]  # a register's @slot, at the ballot its state holds
KnownEntry = tuple[StatusKey, SlotValue, Ballot]  # a key's chosen value, or a slot's state
# A catch-up page's keys, packed (each key at most KEY_MAX_LEN + 1 characters, and a "\n")
PackedKeys = Annotated[str, Meta(max_length=MAX_LEARN_ENTRIES * (KEY_MAX_LEN + 2))]


class _Msg(Struct, frozen=True, array_like=True, gc=False, forbid_unknown_fields=True):
    """A wire type: immutable, carried as ``[TAG, field, ...]`` (its tag first, then its
    fields in declared order), every field checked as msgspec decodes it. ``gc=False``:
    messages hold only strings, bytes, numbers and tuples of them, so never a cycle."""


class _Record(Struct, frozen=True, array_like=True, gc=False, forbid_unknown_fields=True):
    """A record inside a message (a status entry, a register state): ``[field, ...]``."""


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


RegisterMessage = RPrepare | RPromise | RAccept | RAccepted | RNack


class RWatch(_Msg, frozen=True, tag="RWATCH"):
    """A watcher's interest in register ``key``: "send me an RNotify when you accept a new
    state of it". Held for a lease (acceptor_host.WATCH_LEASE_S); sent again to renew it."""

    key: Key


class RNotify(_Msg, frozen=True, tag="RNOTIFY"):
    """This node accepted ``version`` of register ``key`` (answering an RWatch: the
    version it holds). ``watching`` False: it refused the watch (its table is full)."""

    key: Key
    version: Count
    watching: bool


# --------------------------------------------------------------------------- runtime messages
# Not Paxos: how a node reports its state and how a restarted node catches up on
# decisions it missed. The core never sees these; the node answers them from its state.

_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid instance key (keys become file names), or None."""
    if not key:
        return "a key must not be empty"
    if len(key) > KEY_MAX_LEN:
        return f"a key has at most {KEY_MAX_LEN} characters (this one has {len(key)})"
    if key[0] == ".":
        return "a key must not start with a dot"
    bad = sorted(set(key) - _KEY_CHARS)
    if bad:
        return f"a key may hold only letters, digits, '.', '_' and '-' (not {''.join(bad)!r})"
    return None


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


class SyncRequest(_Msg, frozen=True, tag="SYNC"):
    """A (re)started node asks a peer for chosen values, one page after key ``after``."""

    after: After


class SyncReply(_Msg, frozen=True, tag="SYNC_REPLY"):
    after: After  # the request this answers
    chosen: Annotated[tuple[SyncEntry, ...], Meta(max_length=MAX_ENTRIES)]
    more: bool  # ask again after the last key of this page


class CatchUp(_Msg, frozen=True, tag="CATCHUP"):
    """Node to node, every ``catch_up_s``: "which keys did you learn from position ``pos``
    of your learn log on?" (zpaxos/runtime/catchup.py). ``incarnation``: the database
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


RuntimeMessage = (StatusRequest | StatusReply | SyncRequest | SyncReply | CheckAccepted
                  | RegistersRequest | RegistersReply | CatchUp | CatchUpReply | Fetch
                  | FetchReply
                  | AcceptedAt | Hello | HelloReply | RWatch | RNotify)
Message = ProtocolMessage | RangeMessage | RegisterMessage | RuntimeMessage
