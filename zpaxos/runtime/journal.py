"""``state.journal``: the node's own write-ahead log, in front of ``state.db``.

A loop pass's state changes (every key it wrote, every range promise) become durable as
one record appended here and ``fdatasync``'d: one small write and one flush, about 50 us
on the project's machine, where a SQLite transaction on ``state.db`` costs two to three
times that and its row writes about 10-15 us each. The records are folded into
``state.db`` in bulk (one transaction for thousands of passes, a key written by many of
them written once) and the journal then starts again empty. There are two journal files,
``state.journal`` and ``state.journal2``, used in turn: a fold is written a slice per loop
pass, and the passes meanwhile append to the other file; see
:mod:`zpaxos.runtime.storage_fold`.

The layout::

    header   "ZPXJ" 0x01, the incarnation (16 bytes), CRC32 of those 21 bytes
    record   length (4 bytes), CRC32 of the payload (4 bytes), payload
             payload: msgpack [commit seq, [[key, promised round, promised id,
                      accepted round, accepted id, value, chosen, chosen round,
                      chosen id], ...], [[prefix, round, id], ...]]
    zeros    the rest of the preallocated file

The file is preallocated (``posix_fallocate``) so that appending a record changes no
file size and ``fdatasync`` has no metadata to flush. The records' sequence numbers run on
from ``state.db``'s ``commit_seq``: those the database already holds (a crash between a
fold and the journal's reset) are skipped on replay, and a gap means the database is older
than its journal (a restored backup): that is lost state, never replayed over.

Reading stops at the first record that is not whole and valid: a record torn by a crash
was never acknowledged (its fdatasync had not returned, so no reply depended on it). A
record damaged *after* it was acknowledged looks the same, exactly as a damaged frame
at the end of SQLite's own WAL does; ``state.marker`` (written after every pass's replies)
then holds more commits than the journal and the node refuses to start, as for any
rollback. A damaged record followed by a valid one is damage, never a tail.
"""

from __future__ import annotations

import errno
import os
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from zpaxos.runtime.datadir import datasync, pwrite_all, write_atomic
from zpaxos.runtime.storage_errors import StateDamaged, StateLost, from_os_error

JOURNAL_NAME = "state.journal"
# Two journals, used in turn: while one's records are folded into state.db (a slice per
# loop pass, zpaxos/runtime/storage_fold.py), the passes append to the other.
JOURNAL_NAMES = (JOURNAL_NAME, "state.journal2")
_MAGIC = b"ZPXJ\x01"
_HEAD = struct.Struct(">5s16s")
HEADER_SIZE = _HEAD.size + 4
_REC = struct.Struct(">II")  # payload length, CRC32 of the payload
PREALLOC = 4 << 20  # bytes set aside at a time (a pass bigger than that extends it)
MAX_RECORD = 1 << 30  # no pass writes more (values are at most 512 KiB each)
MAX_JOURNAL = 2 * MAX_RECORD  # folded past 8 MB, so one pass's record is all it can add


def _allocate(fd: int, offset: int, length: int) -> bool:
    """Set ``length`` bytes at ``offset`` aside. False where the system cannot (no
    posix_fallocate, or a file system without it): records then grow the file, and a write
    that finds the disk full reports that. A full disk raises OSError (ENOSPC): the space
    is *not* there, and a record written into it could be torn."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is None:
        return False
    try:
        fallocate(fd, offset, length)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            return False
        raise
    return True


Row = tuple[str, int, bytes, int, bytes, bytes | None, bytes | None, int, bytes]
RangeRow = tuple[str, int, bytes]


class Record:
    __slots__ = ("seq", "rows", "ranges")

    def __init__(self, seq: int, rows: list[Row], ranges: list[RangeRow]) -> None:
        self.seq, self.rows, self.ranges = seq, rows, ranges


def encode(seq: int, rows: list[Row], ranges: list[RangeRow]) -> bytes:
    """One record, framed: length, CRC32, payload."""
    payload: bytes = msgpack.packb([seq, rows, ranges], use_bin_type=True)
    return _REC.pack(len(payload), zlib.crc32(payload)) + payload


def _header(incarnation: bytes) -> bytes:
    head = _HEAD.pack(_MAGIC, incarnation)
    return head + struct.pack(">I", zlib.crc32(head))


def _bytes(v: Any) -> bytes:
    if not isinstance(v, bytes):
        raise ValueError("a bytes field is not bytes")
    return v


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not -2**63 <= v < 2**63:
        raise ValueError("an integer field is not a signed 64-bit integer")
    return v


def _decode(payload: bytes) -> Record:
    """A payload whose CRC matched, checked field by field (ValueError if malformed)."""
    try:
        seq, rows, ranges = msgpack.unpackb(payload, raw=False, use_list=True)
    except Exception as e:  # noqa: BLE001 - msgpack raises many types for garbage
        raise ValueError(f"unreadable payload ({type(e).__name__})") from None
    out: list[Row] = []
    for r in rows:
        key, pr, pid, ar, aid, v, ch, cr, cid = r
        if not isinstance(key, str):
            raise ValueError("a key is not text")
        out.append((key, _int(pr), _bytes(pid), _int(ar), _bytes(aid),
                    None if v is None else _bytes(v), None if ch is None else _bytes(ch),
                    _int(cr), _bytes(cid)))
    rng: list[RangeRow] = []
    for prefix, rnd, pid in ranges:
        if not isinstance(prefix, str):
            raise ValueError("a range prefix is not text")
        rng.append((prefix, _int(rnd), _bytes(pid)))
    return Record(_int(seq), out, rng)


class Journal:
    """One data directory's journal: :meth:`read` (or :meth:`create`) once, then
    :meth:`append` per pass and :meth:`reset` after each fold into the database."""

    def __init__(self, data_dir: Path, name: str = JOURNAL_NAME) -> None:
        self.path = Path(data_dir) / name
        self._fd: int | None = None
        self.end = HEADER_SIZE  # where the next record goes
        self._allocated = 0
        # Told how long each append's fdatasync took, in seconds (the node's metrics);
        # None: not timed.
        self.on_sync: Callable[[float], None] | None = None

    def exists_with_records(self) -> bool:
        """True if the file holds anything past an empty header (for "is this a new
        node?": a journal with records is state, whatever else is missing)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(HEADER_SIZE)
                rec = f.read(_REC.size)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise from_os_error(self.path, e) from None
        return len(rec) == _REC.size and rec != bytes(_REC.size)

    def create(self, incarnation: bytes) -> None:
        """A new, empty journal (its header written atomically), space set aside."""
        try:
            write_atomic(self.path, _header(incarnation))
            self._fd = os.open(self.path, os.O_RDWR)
            self._preallocate()  # lost in a crash: appends grow the file
        except OSError as e:
            raise from_os_error(self.path, e) from None

    def read(self, incarnation: bytes, rescue: str) -> list[Record]:
        """Every whole, valid record, in order; opens the journal for appending after
        them. StateLost if it belongs to another database; StateDamaged if its header or
        a record that is not the last is damaged. ``rescue``: what to do, for errors."""
        try:
            self._fd = os.open(self.path, os.O_RDWR)
            size = os.fstat(self._fd).st_size
            if size > MAX_JOURNAL:  # folded every few MB: this is not one we wrote
                raise StateDamaged(f"{self.path}: damaged ({size} bytes, more than a "
                                   f"journal ever holds); {rescue}")
            with open(self.path, "rb") as f:  # (a read loop: one read stops short at 2 GB)
                data = f.read(size)
        except OSError as e:
            raise from_os_error(self.path, e) from None
        head = data[:_HEAD.size]
        crc = data[_HEAD.size:HEADER_SIZE]
        if (len(crc) < 4 or struct.unpack(">I", crc)[0] != zlib.crc32(head)
                or head[:len(_MAGIC)] != _MAGIC):
            raise StateDamaged(f"{self.path}: damaged (no valid header); {rescue}")
        if head[len(_MAGIC):] != incarnation:
            raise StateLost(f"{self.path}: belongs to another database than state.db "
                            f"(replaced; state lost); {rescue}")
        records: list[Record] = []
        off = HEADER_SIZE
        while True:
            rec = self._record_at(data, off)
            if rec is None:
                break
            records.append(rec[0])
            off = rec[1]
        self._check_tail(data, off, rescue)
        self.end, self._allocated = off, max(len(data), off)
        return records

    def _record_at(self, data: bytes, off: int) -> tuple[Record, int] | None:
        """The record at ``off`` and where the next one starts; None if there is no
        whole record with a matching CRC there."""
        if off + _REC.size > len(data):
            return None
        length, crc = _REC.unpack_from(data, off)
        start, stop = off + _REC.size, off + _REC.size + length
        if length == 0 or length > MAX_RECORD or stop > len(data):
            return None
        payload = data[start:stop]
        if zlib.crc32(payload) != crc:
            return None
        try:
            return _decode(payload), stop
        except (ValueError, TypeError) as e:  # the CRC matched: written so, not torn
            raise StateDamaged(f"{self.path}: damaged (the record at byte {off} is "
                               f"malformed: {e})") from None

    def _check_tail(self, data: bytes, off: int, rescue: str) -> None:
        """Where reading stopped: zeros (the end), or a record torn by a crash. If a valid
        record follows the bad one, the bad one was damaged, not torn."""
        if off + _REC.size > len(data):
            return
        length, _ = _REC.unpack_from(data, off)
        if length == 0 or length > MAX_RECORD:
            return
        if self._record_at(data, off + _REC.size + length) is not None:
            raise StateDamaged(f"{self.path}: damaged (a record at byte {off} fails its "
                               f"check, and a valid one follows it); {rescue}")

    def _preallocate(self) -> None:
        """Set the first PREALLOC bytes aside for an empty journal, where there is room:
        only a saving (each append reserves what it needs if this could not)."""
        assert self._fd is not None
        self.end, self._allocated = HEADER_SIZE, HEADER_SIZE
        try:
            _allocate(self._fd, 0, PREALLOC)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            return
        self._allocated = PREALLOC

    def _reserve(self, need: int) -> None:
        """Make sure the file has space up to ``need``: PREALLOC more at a time, or, on a
        disk too full for that, exactly what this record needs. OSError (ENOSPC) if even
        that is not there."""
        assert self._fd is not None
        grow = max(PREALLOC, need - self._allocated)
        try:
            _allocate(self._fd, self._allocated, grow)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            grow = need - self._allocated
            _allocate(self._fd, self._allocated, grow)  # ENOSPC again: the disk is full
        self._allocated += grow

    def append(self, record: bytes) -> None:
        """Write ``record`` after the last one and make it durable; a StorageError if any
        part of that failed.

        Safety: the caller counts the record as committed, and replies that depend on it
        leave, only once this returns; so every byte of it must be on disk by then. Space
        that could not be set aside is an error, a short write is continued (and one that
        makes no progress is a full disk), and ``end`` moves past the record only after its
        fdatasync returned: a failed append leaves at most a torn tail, which a restart
        reads as never written, exactly as a crash in mid-write."""
        assert self._fd is not None
        try:
            need = self.end + len(record)
            if need > self._allocated:
                self._reserve(need)
            pwrite_all(self._fd, record, self.end)
            if self.on_sync is None:
                datasync(self._fd)
            else:
                t0 = time.perf_counter()
                datasync(self._fd)
                self.on_sync(time.perf_counter() - t0)
        except OSError as e:
            raise from_os_error(self.path, e, running=True) from None
        self.end += len(record)

    def reset(self) -> None:
        """Empty the journal (its records are in the database now), durably."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, HEADER_SIZE)
            self._preallocate()
            datasync(self._fd)
        except OSError as e:
            raise from_os_error(self.path, e, running=True) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


__all__ = ["HEADER_SIZE", "JOURNAL_NAME", "JOURNAL_NAMES", "Journal", "Record", "encode"]
