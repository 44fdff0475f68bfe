"""The wire's shared vocabulary: bounds, field types, the ballot, the message bases.

What every message module uses (messages.py for the Paxos, range and register messages,
runtime_messages.py for the rest): the limits the decoder enforces, the annotated field
types that carry them (Key, Value, Count...), :class:`Ballot` and :data:`ZERO`, and the
two msgspec bases every message and record derive from.

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
# Struct (and of Ballot), and string annotations would cost it a compile() each at import.
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
# Every message (messages.py, runtime_messages.py) is a msgspec Struct: its field types,
# with these bounds in ``Meta``, are what the decoder checks (in C, as it builds the
# message). What a type cannot say (a ballot is ZERO or real, cross-field rules) is in
# protocol/wirerules.py.

MAX_VALUE_BYTES = 1 << 20  # 1 MiB per value
MAX_ROUND = (1 << 63) - 1  # fits SQLite's signed 64-bit integers
MAX_ENTRIES = 100_000  # entries in one status or sync page
MAX_ROWS = 10_000  # rows of one column message (colmessages.py): keys in one run of a pass
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

KEY_PATTERN = f"[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{KEY_MAX_LEN - 1}}}"  # see key_problem
_KEY = KEY_PATTERN
# msgspec searches a pattern: anchored with \Z (``$`` would let a final newline through).
Key = Annotated[str, Meta(max_length=KEY_MAX_LEN, pattern=f"^{_KEY}\\Z")]
After = Annotated[str, Meta(max_length=KEY_MAX_LEN, pattern=f"^(?:{_KEY})?\\Z")]  # "" or a key
# A page cursor over every key a node holds: "", a key, or a register's @slot.
Cursor = Annotated[str, Meta(max_length=KEY_MAX_LEN + 1, pattern=f"^(?:@?{_KEY})?\\Z")]
StatusKey = Annotated[str, Meta(max_length=KEY_MAX_LEN + 1, pattern=f"^@?{_KEY}\\Z")]  # or @reg
Name = Annotated[str, Meta(min_length=1, max_length=32, pattern="^[\\x00-\\x7f]*\\Z")]  # ASCII
Value = Annotated[bytes, Meta(max_length=MAX_VALUE_BYTES)]
SlotValue = Annotated[bytes, Meta(max_length=MAX_SLOT_BYTES)]  # a value, or a register state
Count = Annotated[int, Meta(ge=0, le=MAX_ROUND)]  # versions, sequence numbers, counters
NodeId = Annotated[int, Meta(ge=0, le=65535)]
BootId = Annotated[bytes, Meta(min_length=8, max_length=8)]
Incarnation = Annotated[bytes, Meta(max_length=16)]  # 16 bytes, or none known (wirerules)
OpId = Annotated[bytes, Meta(min_length=1, max_length=OP_ID_MAX_BYTES)]

_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid instance key (keys become file names), or None."""
    if not isinstance(key, str):  # (a caller's bytes key: said, not a TypeError inside)
        return f"a key is a str, not {type(key).__name__}"
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
