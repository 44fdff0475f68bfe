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

# The state and the messages live in messages.py with every other message (one Message
# union); this module adds what only registers need.
from zpaxos.protocol.messages import (
    OP_ID_MAX_BYTES,
    RECENT_OPS,
    STATE_OVERHEAD_BYTES,
    WRITER_BYTES,
    RAccept,
    RAccepted,
    RegisterMessage,
    RegState,
    RNack,
    RPrepare,
    RPromise,
    RRead,
    RState,
)

__all__ = ["EMPTY", "OP_ID_MAX_BYTES", "RECENT_OPS", "REGISTER_PREFIX", "STATE_OVERHEAD_BYTES",
           "WRITER_BYTES",
           "BadState", "RAccept", "RAccepted", "RNack", "RPrepare", "RPromise", "RRead", "RState",
           "RegState",
           "RegisterMessage", "decode_state", "encode_state", "register_of_slot",
           "register_slot"]

REGISTER_PREFIX = "@"  # an acceptor's slot for register "x" is "@x"; no write-once key has "@"


def register_slot(key: str) -> str:
    """The acceptor-state slot of register ``key`` (write-once keys cannot contain "@")."""
    return REGISTER_PREFIX + key


def register_of_slot(slot: str) -> str | None:
    """The register a slot belongs to, or None for a write-once key."""
    return slot[1:] if slot.startswith(REGISTER_PREFIX) else None


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
