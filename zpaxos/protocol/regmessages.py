"""Rewritable registers (CASPaxos): the register's value and the messages of its rounds.

A register is a key whose value can change, beside the write-once keys of the lab. Each
change is one Basic Paxos round (Rystsov, "CASPaxos: Replicated State Machines without
logs", 2018) whose Accept carries ``f(current state)``. The register messages are their
own types (``RPREPARE``...), and an acceptor keeps a register's state under its own
namespace (:func:`register_slot`), so one key is never both a write-once instance and a
register, and the write-once protocol is untouched.

The state a round reads and writes is a :class:`RegState`: the ``version`` (how many
changes the register has seen; 0 = never written), the ``value`` (None = absent: never
set, or deleted; a deleted register keeps its version as a tombstone) and ``recent``:
the ids of the last :data:`RECENT_OPS` changes with the version each produced. ``recent``
makes a change idempotent: a proposer that retries a change after a lost reply finds its
own op id in the state it reads and does not apply the change twice. An op id is the
writer (a proposer process: :data:`WRITER_BYTES` of its id) then a sequence number that
only grows; ``recent`` keeps the last change of each of the last :data:`RECENT_OPS`
writers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from zpaxos.protocol.messages import ZERO, Ballot

RECENT_OPS = 16  # writers whose last change a register remembers (idempotent retries)
WRITER_BYTES = 8  # an op id starts with its writer's id
OP_ID_MAX_BYTES = 32
REGISTER_PREFIX = "@"  # an acceptor's slot for register "x" is "@x"; no write-once key has "@"


def register_slot(key: str) -> str:
    """The acceptor-state slot of register ``key`` (write-once keys cannot contain "@")."""
    return REGISTER_PREFIX + key


def register_of_slot(slot: str) -> str | None:
    """The register a slot belongs to, or None for a write-once key."""
    return slot[1:] if slot.startswith(REGISTER_PREFIX) else None


@dataclass(frozen=True, slots=True)
class RegState:
    """A register's value at some version (see the module docstring)."""

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


EMPTY = RegState()


class BadState(ValueError):
    """Stored register bytes that do not decode (the row checksum makes this a bug)."""


def encode_state(s: RegState) -> bytes:
    """Bytes an acceptor stores in its key row: unambiguous, versioned ("R1")."""
    out = [b"R1", struct.pack(">QB", s.version, 0 if s.value is None else 1)]
    if s.value is not None:
        out.append(struct.pack(">I", len(s.value)) + s.value)
    out.append(struct.pack(">B", len(s.recent)))
    for op, v in s.recent:
        out.append(struct.pack(">B", len(op)) + op + struct.pack(">Q", v))
    return b"".join(out)


def decode_state(b: bytes) -> RegState:
    try:
        if b[:2] != b"R1":
            raise BadState("not a register state")
        version, has = struct.unpack_from(">QB", b, 2)
        i = 11
        value = None
        if has:
            (n,) = struct.unpack_from(">I", b, i)
            value = b[i + 4:i + 4 + n]
            if len(value) != n:
                raise BadState("truncated value")
            i += 4 + n
        (count,) = struct.unpack_from(">B", b, i)
        i += 1
        recent = []
        for _ in range(count):
            (n,) = struct.unpack_from(">B", b, i)
            op = b[i + 1:i + 1 + n]
            (v,) = struct.unpack_from(">Q", b, i + 1 + n)
            recent.append((op, v))
            i += 1 + n + 8
        if i != len(b):
            raise BadState("trailing bytes")
    except struct.error as e:
        raise BadState(f"truncated register state ({e})") from None
    return RegState(version, value, tuple(recent))


# --------------------------------------------------------------------------- messages


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
