"""What can go wrong with a node's stored state, told apart, each with its own exit code.

Every error here stops the node (it never votes on state it cannot trust or keep) and is
printed by ``zpaxos node`` as one line: what went wrong, where, and the safe recovery.
Only :class:`StateLost` and :class:`StateDamaged` mean the state itself is in doubt; the
others leave it intact, and their advice is to fix the cause and start the node again,
never to start it empty.

SQLite errors are classified by their (extended) result code, which Python 3.11 exposes as
``sqlite_errorcode``; older Pythons fall back to the message text. OS errors are classified
by errno.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from zpaxos.runtime.exits import Exit

REJOIN_DOCS = "'Rejoining empty' in docs/operating.md"


class StorageError(Exception):
    """The node's state cannot be trusted or written; the node must stop."""

    exit_code = Exit.FAILED


class DataDirLocked(StorageError):
    """Another process holds the data directory's lock (a second node on the same dir)."""

    exit_code = Exit.FAILED


class NotLost(StorageError):
    """``--new`` over a healthy state: refused, because it would throw away promises."""

    exit_code = Exit.USAGE


class StateDamaged(StorageError):
    """The files are there but are not a valid zpaxos state (corrupt, foreign, checksum)."""

    exit_code = Exit.STATE_DAMAGED


class StateLost(StorageError):
    """The state is missing, replaced, or older than what this node had already written."""

    exit_code = Exit.STATE_LOST


class NotWritable(StorageError):
    """Healthy state that cannot be written: read-only mount, permissions, immutable flag."""

    exit_code = Exit.NOT_WRITABLE


class DiskFull(StorageError):
    """The file system is full: the last commit failed, everything before it is intact."""

    exit_code = Exit.DISK_FULL


class ChangedUnderneath(StorageError):
    """The files were deleted, replaced or truncated under the running node, or an I/O
    error hit them: the node stops before a reply depends on a write that may be lost."""

    exit_code = Exit.CHANGED_UNDERNEATH


# SQLite primary result codes (https://www.sqlite.org/rescode.html).
SQLITE_PERM, SQLITE_BUSY, SQLITE_LOCKED = 3, 5, 6
SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT = 8, 10, 11
SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 13, 14, 26

_NOT_WRITABLE_ERRNOS = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                        errno.EPERM: "operation not permitted (immutable file?)"}


def not_writable(path: Path, why: str) -> NotWritable:
    return NotWritable(f"{path}: not writable ({why}); the stored state is intact: make it "
                       f"writable again (remount read-write, fix ownership or permissions, "
                       f"chattr -i) and start the node again")


def disk_full(path: Path, why: str = "no space left on device") -> DiskFull:
    return DiskFull(f"{path}: disk full ({why}); the state is intact up to the last commit: "
                    f"free space on that file system and start the node again")


# What a message about lost or damaged state tells the operator to do (the store's, and
# its reads': runtime/storage.py, runtime/storage_reads.py).
RESCUE = (f"the node will not vote on it: put back this node's own latest files if you "
          f"still have them, else follow {REJOIN_DOCS} to rejoin with --new")


def rescue(why: str) -> str:
    return f"{why}; {RESCUE}"


def damaged(path: Path, why: str) -> StateDamaged:
    return StateDamaged(f"{path}: damaged or unreadable state database ({why}); the node "
                        f"will not vote on it: put back this node's own intact files if you "
                        f"still have them, else follow {REJOIN_DOCS} to rejoin with --new")


def changed(path: Path, why: str) -> ChangedUnderneath:
    return ChangedUnderneath(f"{path}: changed underneath the running node ({why}); no reply "
                             f"depends on the failed write: find what touched the data "
                             f"directory, then start the node again (it checks its state)")


def from_os_error(path: Path, e: OSError, running: bool = False) -> StorageError:
    """An OSError on one of the node's files, as the StorageError that says what to do."""
    why = e.strerror or str(e)
    if e.errno in _NOT_WRITABLE_ERRNOS:
        return not_writable(path, _NOT_WRITABLE_ERRNOS[e.errno])
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return disk_full(path, why.lower())
    if running:
        return changed(path, why)
    return damaged(path, f"cannot be read: {why}")


def sqlite_code(e: sqlite3.Error) -> int | None:
    """The primary SQLite result code of ``e`` (None if unknown)."""
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF
    text = str(e).lower()  # Python < 3.11: only the message is there
    for needle, primary in (("readonly", SQLITE_READONLY), ("disk is full", SQLITE_FULL),
                            ("database is locked", SQLITE_BUSY),
                            ("malformed", SQLITE_CORRUPT), ("not a database", SQLITE_NOTADB),
                            ("disk i/o", SQLITE_IOERR), ("unable to open", SQLITE_CANTOPEN)):
        if needle in text:
            return primary
    return None


def from_sqlite_error(path: Path, e: sqlite3.Error, running: bool = False) -> StorageError:
    """A sqlite3 error on the node's database, classified.

    ``running``: the database passed every start-up check, so corruption or an I/O error
    now means something changed the files underneath us (or the disk is failing)."""
    code = sqlite_code(e)
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        # Only if someone bypassed node.lock (deleted it under a running node, say).
        return DataDirLocked(f"{path}: the database is locked by another process; stop the "
                             f"other node using this data_dir")
    if code in (SQLITE_READONLY, SQLITE_PERM):
        return not_writable(path, f"SQLite: {e}")
    if code == SQLITE_FULL:
        return disk_full(path, f"SQLite: {e}")
    if running and code in (SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_CANTOPEN):
        return changed(path, f"SQLite: {e}")
    return damaged(path, str(e))
