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

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

PROPOSER_ID_BYTES = 16
DEFAULT_KEY = "CISC5597"
# An acceptor refuses a ballot whose round is this far beyond anything it has promised or
# accepted for the key. An honest proposer only ever goes one past the highest round it
# has seen, so this never bites it; but without it one message with round 2**63-1 would
# lock a key forever (nobody could outbid it). With it, pushing a key to the codec's
# limit (2**63-1) takes 2**43 accepted messages: years at any rate a node can serve.
MAX_ROUND_STEP = 1 << 20


class Ballot(NamedTuple):
    """A totally ordered, unique proposal number: compared by round, then proposer id.

    A named tuple, so that comparing two ballots (the acceptor's every decision) is the
    interpreter's own tuple comparison and the wire carries it as ``[round, proposer]``
    with no conversion."""

    round: int
    proposer: bytes

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


@dataclass(frozen=True, slots=True)
class Prepare:
    """Phase 1a: 'promise me you will ignore ballots below this one'."""

    key: str
    ballot: Ballot


@dataclass(frozen=True, slots=True)
class Promise:
    """Phase 1b: the promise, with the acceptor's highest accepted ballot and value.

    ``accepted`` is ZERO and ``value`` None when the acceptor has accepted nothing.
    """

    key: str
    ballot: Ballot
    accepted: Ballot
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Accept:
    """Phase 2a: 'accept this value under this ballot'."""

    key: str
    ballot: Ballot
    value: bytes


@dataclass(frozen=True, slots=True)
class Accepted:
    """Phase 2b: the acceptor accepted ``value`` under ``ballot``.

    It carries the value so that any learner can count it without knowing the proposer.
    """

    key: str
    ballot: Ballot
    value: bytes


@dataclass(frozen=True, slots=True)
class Nack:
    """A rejection of ``ballot`` (a Prepare or Accept), naming the ballot to beat."""

    key: str
    ballot: Ballot
    promised: Ballot


@dataclass(frozen=True, slots=True)
class Decide:
    """``value`` is chosen for ``key``.

    Sent by a proposer that saw a quorum accept (or that learned it from a Decide) to
    every acceptor, and by an acceptor that already knows the chosen value in reply to
    a Prepare or Accept, so that a late proposer finishes at once.
    """

    key: str
    value: bytes
    ballot: Ballot = ZERO  # the ballot a quorum accepted it at; ZERO when not known


ProtocolMessage = Prepare | Promise | Accept | Accepted | Nack | Decide


# --------------------------------------------------------------------------- range promises
# Phase 1 for a whole range of keys at once (zpaxos/protocol/ranges.py): a range is every
# key that starts with ``prefix``. A proposer process that holds a quorum's range promise
# at ballot B needs only phase 2 (Accept at B) for the range's fresh keys.


@dataclass(frozen=True, slots=True)
class RangePrepare:
    """Phase 1a for every key starting with ``prefix``: 'ignore ballots below this one'."""

    prefix: str
    ballot: Ballot


@dataclass(frozen=True, slots=True)
class RangePromise:
    """Phase 1b for the range: promised (durably) for every key of the range.

    ``busy`` names the range's keys that are not fresh here: an accepted value, a decision
    or a promise above ``ballot``. ``more``: there are more such keys than one reply
    carries (the proposer then uses two phases for the whole range)."""

    prefix: str
    ballot: Ballot
    busy: tuple[str, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class RangeNack:
    """A refused RangePrepare: ``promised`` is the highest overlapping range promise to
    beat, or ZERO when the node holds as many ranges as it may (no fast path there)."""

    prefix: str
    ballot: Ballot
    promised: Ballot


RangeMessage = RangePrepare | RangePromise | RangeNack


# --------------------------------------------------------------------------- registers
# Rewritable registers (CASPaxos, protocol/register.py, regmessages.py): a register's
# state and the messages of its rounds, their own types, so a key is never both.

RECENT_OPS = 16  # writers whose last change a register remembers (idempotent retries)
WRITER_BYTES = 8  # an op id starts with its writer's id


@dataclass(frozen=True, slots=True)
class RegState:
    """A register's value at some version: ``version`` counts its changes (0: never
    written), ``value`` None is absent (never set, or deleted: a tombstone keeps its
    version), ``recent`` holds the last change (op id, version) of each of the last
    RECENT_OPS writers, so a retried change is never applied twice (register.py)."""

    version: int = 0
    value: bytes | None = None
    recent: tuple[tuple[bytes, int], ...] = ()

    @property
    def exists(self) -> bool:
        return self.value is not None

    def changed(self, value: bytes | None, op_id: bytes) -> RegState:
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


@dataclass(frozen=True, slots=True)
class RPrepare:
    """Phase 1a for register ``key``."""

    key: str
    ballot: Ballot


@dataclass(frozen=True, slots=True)
class RPromise:
    """Phase 1b: the promise, with the register state accepted at ``accepted``
    (ZERO and the empty state when the acceptor has accepted nothing)."""

    key: str
    ballot: Ballot
    accepted: Ballot
    state: RegState


@dataclass(frozen=True, slots=True)
class RAccept:
    """Phase 2a: accept ``state`` at ``ballot``. ``next`` (ZERO: none) is the 1-RTT
    optimisation: the same proposer's next ballot, which the acceptor also promises, so
    the proposer's next change of this key can skip phase 1."""

    key: str
    ballot: Ballot
    state: RegState
    next: Ballot = ZERO


@dataclass(frozen=True, slots=True)
class RAccepted:
    """Phase 2b: ``ballot`` accepted; ``next`` promised too when it is not ZERO."""

    key: str
    ballot: Ballot
    next: Ballot = ZERO


@dataclass(frozen=True, slots=True)
class RNack:
    """A rejection of ``ballot``, naming the ballot to beat."""

    key: str
    ballot: Ballot
    promised: Ballot


RegisterMessage = RPrepare | RPromise | RAccept | RAccepted | RNack


# --------------------------------------------------------------------------- runtime messages
# Not Paxos: how a node reports its state and how a restarted node catches up on
# decisions it missed. The core never sees these; the node answers them from its state.

KEY_MAX_LEN = 128
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


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """Ask a node for its acceptor state; ``key`` None means every key (up to a limit)."""

    key: str | None


@dataclass(frozen=True, slots=True)
class KeyStatus:
    key: str
    promised: Ballot
    accepted: Ballot
    value: bytes | None
    chosen: bytes | None
    chosen_ballot: Ballot = ZERO


@dataclass(frozen=True, slots=True)
class StatusReply:
    node: int
    keys: tuple[KeyStatus, ...]
    truncated: bool  # more keys exist than one reply carries
    # The node's counters: malformed messages dropped, peers refused (CURVE), ...
    stats: tuple[tuple[str, int], ...] = ()
    # The node's range promises (protocol/ranges.py), prefix and ballot, in prefix order.
    ranges: tuple[tuple[str, Ballot], ...] = ()


@dataclass(frozen=True, slots=True)
class RegistersRequest:
    """A client (``zpaxos export --registers``) asks a node for the names of the registers
    it holds a state for, one page after name ``after`` ("" for the first). Names only:
    each register's state is then read through the protocol, never taken from a page."""

    after: str


@dataclass(frozen=True, slots=True)
class RegistersReply:
    after: str  # the request this answers
    names: tuple[str, ...]
    more: bool  # ask again after the last name of this page


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """A (re)started node asks a peer for chosen values, one page after key ``after``."""

    after: str


@dataclass(frozen=True, slots=True)
class SyncReply:
    after: str  # the request this answers
    chosen: tuple[tuple[str, bytes, Ballot], ...]  # (key, value, ballot that chose it)
    more: bool  # ask again after the last key of this page


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Node to node, every ``catch_up_s``: "which keys did you learn from position ``pos``
    of your learn log on?" (zpaxos/runtime/catchup.py). ``incarnation``: the database
    whose log the position counts in (empty: none yet); another one is answered from the
    start of the peer's log."""

    incarnation: bytes
    pos: int


@dataclass(frozen=True, slots=True)
class CatchUpReply:
    """A page of the answering node's learn log from the position asked for: the keys
    only (one packed field on the wire), and for a register's ``@slot`` among them the
    accepted ballot the peer holds. Values are fetched apart, only for what the asker
    lacks (:class:`Fetch`)."""

    incarnation: bytes  # the answering node's database: the positions count in it
    pos: int  # the request this answers (its position, as asked)
    end: int  # the position after this page's last entry: the asker's next cursor
    keys: tuple[str, ...]  # keys and @slots at positions [start, end), in log order
    slots: tuple[tuple[str, Ballot], ...]  # each @slot of ``keys``, at its accepted ballot
    more: bool  # ask again from ``end``


@dataclass(frozen=True, slots=True)
class Fetch:
    """Node to node: "send me what you know of these keys" (a catch-up page's keys this
    node lacks): chosen values, and registers' accepted states."""

    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FetchReply:
    """What the peer knows of the keys asked for: ``(key, value, ballot)``, the chosen
    value and its ballot for a key, the accepted state and ballot for a register's
    ``@slot``. ``more``: cut short by size; ask again for the rest."""

    known: tuple[tuple[str, bytes, Ballot], ...]
    more: bool


@dataclass(frozen=True, slots=True)
class CheckAccepted:
    """Node to node: "have you accepted ``ballot`` for ``key``, and with which value?"

    How a node checks a Decide it cannot take on trust (from a client, with CURVE on)
    before it records the value as chosen: a quorum that accepted one ballot with one
    value is what makes a value chosen."""

    key: str
    ballot: Ballot


@dataclass(frozen=True, slots=True)
class AcceptedAt:
    """The answer: ``value`` accepted (or chosen) at exactly ``ballot``, else None."""

    key: str
    ballot: Ballot
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Hello:
    """Node to node: "I am ``node``, incarnation ``incarnation``, at ``commit_seq`` commits".

    Sent when a node starts and, while its commits advance, about once a second: each peer
    remembers the latest it heard of every node (zpaxos.runtime.incarnation), so a node
    whose whole data directory was restored from an old copy, or deleted, is recognised.
    ``fresh``: this incarnation was started empty on purpose (``--new``). ``boot``: drawn
    by each process at start, so a peer can tell a delayed or duplicated Hello of the same
    process (ignored) from a restart that reports fewer commits (a rollback)."""

    node: int
    boot: bytes
    incarnation: bytes
    commit_seq: int
    fresh: bool


@dataclass(frozen=True, slots=True)
class HelloReply:
    """The peer's verdict on a Hello, with what it remembered before it (``incarnation``
    empty when it had never heard of that node). ``verdict``: see zpaxos.runtime.peers.VERDICTS."""

    node: int  # the peer answering
    boot: bytes  # the boot id of the Hello this answers
    verdict: int
    incarnation: bytes
    commit_seq: int


RuntimeMessage = (StatusRequest | StatusReply | SyncRequest | SyncReply | CheckAccepted
                  | RegistersRequest | RegistersReply | CatchUp | CatchUpReply | Fetch
                  | FetchReply
                  | AcceptedAt | Hello | HelloReply)
Message = ProtocolMessage | RangeMessage | RegisterMessage | RuntimeMessage
