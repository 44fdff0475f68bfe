"""A key's state as a ``state.db`` row, and back, each row with its checksum.

The checksum (BLAKE2b-128 over an unambiguous encoding of the key and the whole state) is
what lets a node notice a row changed on disk, which SQLite's own checks cannot see.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import Ballot


def checksum(row: tuple[Any, ...]) -> bytes:
    """BLAKE2b-128 of a row's state columns, each tagged and length-prefixed so that no two
    different rows encode alike (None differs from b"", a byte cannot move between fields)."""
    h = hashlib.blake2b(digest_size=16, person=b"zpaxos-row-v3")
    for v in row:
        if v is None:
            h.update(b"N")
        elif isinstance(v, int):
            h.update(b"I" + struct.pack(">q", v))
        else:
            b = v.encode() if isinstance(v, str) else bytes(v)
            h.update(b"B" + struct.pack(">Q", len(b)) + b)
    return h.digest()


_LEN = struct.Struct(">Q").pack
_INT = struct.Struct(">q").pack


def row(key: str, s: KeyState) -> tuple[Any, ...]:
    """The row for ``key``, with its checksum: ``checksum(row)``, computed in one pass
    over the known column types (a node writes a row per key per commit)."""
    (pr, pid), (ar, aid), (cr, cid) = s.promised, s.accepted, s.chosen_ballot
    k = key.encode()
    v, ch = s.value, s.chosen
    data = b"".join((b"B", _LEN(len(k)), k, b"I", _INT(pr), b"B", _LEN(len(pid)), pid,
                     b"I", _INT(ar), b"B", _LEN(len(aid)), aid,
                     b"N" if v is None else b"B" + _LEN(len(v)) + v,
                     b"N" if ch is None else b"B" + _LEN(len(ch)) + ch,
                     b"I", _INT(cr), b"B", _LEN(len(cid)), cid))
    return (key, pr, pid, ar, aid, v, ch, cr, cid, _hash(data))


_HASH = hashlib.blake2b(digest_size=16, person=b"zpaxos-row-v3")


def _hash(data: bytes) -> bytes:
    h = _HASH.copy()  # cheaper than setting up the keyed hash again
    h.update(data)
    return h.digest()


def range_row(prefix: str, b: Ballot) -> tuple[Any, ...]:
    row = (prefix, b.round, b.proposer)
    return (*row, checksum(("range", *row)))  # tagged: never alike an acceptor row


def state_of(row: tuple[Any, ...]) -> KeyState:
    _, pr, pid, ar, aid, value, chosen, cr, cid = row[:9]
    return KeyState(Ballot(pr, bytes(pid)), Ballot(ar, bytes(aid)),
                    None if value is None else bytes(value),
                    None if chosen is None else bytes(chosen), Ballot(cr, bytes(cid)))


__all__ = ["checksum", "range_row", "row", "state_of"]
