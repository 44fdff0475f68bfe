"""A node's data directory: one owner at a time, and evidence that outlives the database.

Three things live next to ``state.db``:

``node.lock``
    ``flock(LOCK_EX | LOCK_NB)`` on this file is held for the node's whole life. A second
    process on the same directory fails at once, naming the PID written in the file. The
    kernel drops the lock when the holder dies, even by ``kill -9``, so a stale lock can
    never block a restart; the PID in the file is only informative.

``state.marker``
    The incarnation id of the database (16 random bytes drawn when it was created) and the
    number of commits it has made. It is written after every commit (once that commit's
    replies have left: off their path), so at every instant ``marker <= durable state``
    (a crash in between leaves it one commit behind, never ahead), and state with *fewer*
    commits than the marker has lost something a peer may already rely on: it was
    restored from an old backup, or its journal or write-ahead log was deleted after a
    crash. A marker without a database means the database was deleted. Neither is ever
    mistaken for a new node.

    Each write reaches the kernel at once (so a killed process loses none), but is
    fdatasync'd at most every ``MARKER_SYNC_S`` (and at every fold and clean stop): three
    nodes flushing one disk queue behind each other made a second flush per pass the
    largest cost of a sequential decision. A power cut can therefore leave the marker up
    to that long behind the state (never ahead of it: no false alarm); it then misses
    only a rollback that *also* happened to those last commits after the power cut.

    What it cannot see: a *whole* data directory restored from a backup (marker and all)
    looks exactly like the old node. Only the peers can tell that (they saw later commits
    of this incarnation): see :mod:`zpaxos.runtime.peers` and :mod:`.admission`.

    Two 512-byte slots, written alternately, each with a CRC: a write torn by a crash
    leaves the other slot valid (one commit older, which is still ``<= database``).

``retired-<UTC time>/``
    Where ``zpaxos node ID --new`` moves the old state files: starting empty on purpose
    never deletes anything.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from zpaxos.runtime.storage_errors import (
    REJOIN_DOCS,
    DataDirLocked,
    StateDamaged,
    StorageError,
    changed,
    from_os_error,
)

LOCK_NAME = "node.lock"
MARKER_NAME = "state.marker"
_MAGIC = b"ZPAXOSM1"
_SLOT = 512
_RECORD = struct.Struct(">8s16sQ")  # magic, incarnation, commit count; then a CRC32


datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset``, or raise OSError. ``os.pwrite`` may write less
    than it was given (a full disk, a signal); a caller that fsyncs and then replies must
    know the whole record is there, so a short count is retried from where it stopped,
    and a write that makes no progress is the disk being full (ENOSPC)."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(errno.ENOSPC, "no space left on device (a write made no progress)")
        done += n


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` whole or not at all, durably: a temporary file, fsynced,
    renamed over it, then the directory fsynced. Raises OSError."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise from_os_error(path, e) from None


class DirLock:
    """The exclusive lock on a data directory (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        make_dir(self.path.parent)
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise from_os_error(self.path, e) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._fd)
            self._fd = None
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise from_os_error(self.path, e) from None
            pid = self._holder()
            who = f"process {pid}" if pid else "another process"
            raise DataDirLocked(f"{self.path.parent}: data directory is in use by {who} "
                                f"(another node on the same data_dir?); stop it first, or give "
                                f"this node its own data_dir") from None
        try:
            os.ftruncate(self._fd, 0)
            pwrite_all(self._fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            self.release()
            raise from_os_error(self.path, e) from None

    def _holder(self) -> int | None:
        try:
            text = self.path.read_text().strip()
            return int(text) if text.isdigit() else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


@dataclass
class MarkerState:
    incarnation: bytes
    commits: int


class Marker:
    """``state.marker``: the incarnation and commit count, fsynced after every commit."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / MARKER_NAME
        self._fd: int | None = None
        self.incarnation = b""

    @staticmethod
    def _slot(incarnation: bytes, commits: int) -> bytes:
        rec = _RECORD.pack(_MAGIC, incarnation, commits)
        return (rec + struct.pack(">I", zlib.crc32(rec))).ljust(_SLOT, b"\0")

    def read(self) -> MarkerState | None:
        """The newest valid slot; None if there is no marker. A marker with no valid slot
        is damage (StateDamaged): it is never taken for "no marker"."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise from_os_error(self.path, e) from None
        best: MarkerState | None = None
        for off in (0, _SLOT):
            rec = data[off:off + _RECORD.size]
            crc = data[off + _RECORD.size:off + _RECORD.size + 4]
            if len(rec) < _RECORD.size or len(crc) < 4:
                continue
            magic, inc, commits = _RECORD.unpack(rec)
            if magic == _MAGIC and struct.unpack(">I", crc)[0] == zlib.crc32(rec):
                if best is None or commits > best.commits:
                    best = MarkerState(inc, commits)
        if best is None:
            raise StateDamaged(f"{self.path}: damaged (no valid record); the node will not "
                               f"vote without it: if you are sure state.db is this node's "
                               f"latest, move {MARKER_NAME} away and the node adopts the "
                               f"database; else follow {REJOIN_DOCS} to rejoin with --new")
        return best

    def create(self, incarnation: bytes, commits: int) -> None:
        """Write a new marker atomically (temp file, fsync, rename, fsync the directory)."""
        try:
            write_atomic(self.path, self._slot(incarnation, commits) * 2)
        except OSError as e:
            raise from_os_error(self.path, e) from None
        self.open(incarnation)

    def open(self, incarnation: bytes) -> None:
        """Keep the marker open for the per-commit updates."""
        self.incarnation = incarnation
        try:
            self._fd = os.open(self.path, os.O_RDWR)
        except OSError as e:
            raise from_os_error(self.path, e) from None

    def write(self, commits: int, sync: bool = True) -> None:
        """Record ``commits`` (durably if ``sync``); only ever after those commits are
        durable themselves."""
        assert self._fd is not None
        try:
            pwrite_all(self._fd, self._slot(self.incarnation, commits), (commits % 2) * _SLOT)
            if sync:
                datasync(self._fd)
        except OSError as e:
            raise from_os_error(self.path, e, running=True) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FileWatch:
    """Notices, cheaply (one stat per file per commit), that a file was deleted, replaced
    or truncated under the running node. Without this, a node whose state.db was deleted
    while it ran would go on writing to the orphaned file and lose it all at exit.

    Only shrinking is checked for size: SQLite never shrinks ``state.db`` without VACUUM
    (which zpaxos never runs), and the WAL's size is not checked at all (SQLite may reset
    it)."""

    def __init__(self) -> None:
        self._files: dict[Path, tuple[int, int, int | None]] = {}

    def add(self, path: Path, check_size: bool = True) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        self._files[path] = (st.st_dev, st.st_ino, st.st_size if check_size else None)

    def check(self) -> None:
        for path, (dev, ino, size) in list(self._files.items()):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise changed(path, "the file was deleted") from None
            except OSError as e:
                raise from_os_error(path, e, running=True) from None
            if (st.st_dev, st.st_ino) != (dev, ino):
                raise changed(path, "the file was replaced by another one")
            if size is not None:
                if st.st_size < size:
                    raise changed(path, f"the file was truncated from {size} to "
                                        f"{st.st_size} bytes")
                self._files[path] = (dev, ino, st.st_size)


def retire(data_dir: Path, names: list[str]) -> Path | None:
    """Move the named files that exist into ``data_dir/retired-<UTC time>/`` (for --new)."""
    present = [n for n in names if (Path(data_dir) / n).exists()]
    if not present:
        return None
    stamp = time.strftime("retired-%Y%m%dT%H%M%SZ", time.gmtime())
    dest = Path(data_dir) / stamp
    try:
        for i in range(2, 1000):
            try:
                dest.mkdir()
                break
            except FileExistsError:
                dest = Path(data_dir) / f"{stamp}-{i}"
        for n in present:
            os.replace(Path(data_dir) / n, dest / n)
        fsync_dir(dest)
        fsync_dir(Path(data_dir))
    except OSError as e:
        raise from_os_error(dest, e) from None
    return dest


__all__ = ["DirLock", "FileWatch", "Marker", "MarkerState", "StorageError", "pwrite_all",
           "retire"]
