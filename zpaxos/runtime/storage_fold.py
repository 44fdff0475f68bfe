"""Folding the journal into ``state.db`` a slice at a time (:class:`FoldMixin`), so that
no loop pass stalls for the whole fold.

Folding 4,096 keys in one go held the node's loop for about 20 ms alone and 35 ms on a
busy cluster (building each row and its checksum, SQLite's inserts, the commit, the
journal's reset). Now a fold runs over several passes:

1. **Start** (after a pass's replies, once enough waits): what the journal holds is frozen
   (``_folding``: the latest state per key, the range promises, the learn log's keys, and
   ``_fold_seq``, its last commit), and the passes from now on append to the *other*
   journal file (emptied by the previous fold). One write transaction is opened.
2. **Slices**: each pass, after its replies, writes the next rows of the frozen set, at
   least ``FOLD_SLICE_KEYS`` and at least twice what that pass committed, so a fold
   always finishes before the next is due. An idle node goes on with it at once
   (:attr:`folding`: the loop does not sleep while it is true).
3. **Commit**: the range promises, the learn log's rows and ``commit_seq = _fold_seq``
   are written and the transaction committed (fsynced: ``synchronous=FULL``); then, each
   a step of its own, the frozen journal file is emptied and the marker written, and
   state.db's write-ahead log is checkpointed.

Safety, a crash at any moment keeping every acknowledged promise:
* until the commit, the transaction is not in ``state.db`` at all (SQLite drops an
  uncommitted transaction's frames), and both journal files hold every record: a restart
  reads both, checks that their commits follow on from ``state.db``'s without a gap, and
  replays them;
* after the commit and before the frozen file is emptied, that file's records are
  commits ``state.db`` holds (``<= commit_seq``): a restart skips them;
* reads meanwhile see the newest state: the passes' journal (``_pending``) over the
  frozen set (``_folding``) over ``state.db`` (whose rows the open transaction may have
  written already: they are the frozen set's own).
A failed slice or commit raises a StorageError (the transaction rolled back): the node
stops, as for any failed write, and the journals still hold everything.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from zpaxos.hosts.keyrange import SortedKeys
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import Ballot
from zpaxos.protocol.ranges import superseded
from zpaxos.runtime.datadir import FileWatch, Marker
from zpaxos.runtime.faults import crash_point
from zpaxos.runtime.journal import Journal
from zpaxos.runtime.rows import checksum, range_row, row
from zpaxos.runtime.storage_errors import StorageError, from_sqlite_error
from zpaxos.runtime.storage_learn import learn_rows
from zpaxos.runtime.storage_schema import COLUMNS

_INSERT = (f"INSERT OR REPLACE INTO acceptor ({', '.join(COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(COLUMNS))})")
_INSERT_RANGE = "INSERT OR REPLACE INTO ranges (prefix, round, id, checksum) VALUES (?, ?, ?, ?)"
# A fold starts once this many keys wait in the journal (after a pass's replies), or this
# many bytes; a pass that finds FOLD_KEYS_HARD waiting (the slices fell behind: they
# never should) folds everything at once.
FOLD_KEYS = 4096
FOLD_BYTES = 8 << 20
FOLD_KEYS_HARD = 4 * FOLD_KEYS
# A slice writes at least this many keys (about 1-1.5 ms of the loop), or this many bytes
# of values, and at least twice what its pass committed.
FOLD_SLICE_KEYS = 256
FOLD_SLICE_BYTES = 1 << 20
FOLD_SLICE_FACTOR = 2  # "twice what its pass committed"
MARKER_SYNC_S = 0.05  # state.marker is fdatasync'd at most this often (datadir.Marker)


class FoldMixin:
    """Part of :class:`~zpaxos.runtime.storage.SqliteStore`: the fold."""

    path: Path
    _db: sqlite3.Connection | None
    commit_seq: int
    _journals: list[Journal]
    _active: int  # the journal the passes append to
    _marker: Marker
    _marker_seq: int
    _marker_synced: float
    _watch: FileWatch
    _on_fold: Callable[[float], None] | None
    _pending: dict[str, KeyState]
    _pending_ranges: dict[str, Ballot]
    _pending_learn: list[str]
    _pending_keys: SortedKeys
    _learn_db_end: int
    # The fold under way (see the module docstring); empty when none is.
    _folding: dict[str, KeyState]
    _folding_ranges: dict[str, Ballot]
    _folding_learn: list[str]
    _folding_keys: SortedKeys
    _fold_rows: list[tuple[str, KeyState]] | None
    _fold_at: int
    _fold_seq: int
    _fold_s: float  # the loop's time spent on it so far
    _reset_due: bool  # a fold committed: the journal it came from to empty, next step
    _checkpoint_due: bool  # and then state.db's WAL to checkpoint
    _resetting: threading.Thread | None  # emptying that journal (see _empty_folded)
    _reset_error: StorageError | None
    _saved_keys: int  # keys and bytes committed since the last seal (for the slice's size)
    _saved_bytes: int

    if TYPE_CHECKING:  # the store's own (storage.py)
        def _rollback(self, e: sqlite3.Error) -> NoReturn: ...

    @property
    def folding(self) -> bool:
        """A fold is under way (or its last steps): the loop should give it a step even
        with nothing to do."""
        return self._fold_rows is not None or self._reset_due or self._checkpoint_due

    def seal(self) -> None:
        """After a pass's replies: state.marker records the commit (marker <= durable
        state: a crash before this leaves it one commit behind, never ahead), and the
        fold goes on by one step (or starts, once enough waits in the journal)."""
        self._seal_marker()
        keys, size = self._saved_keys, self._saved_bytes
        self._saved_keys = self._saved_bytes = 0
        if self._fold_rows is None:
            if self._reset_due:
                self._empty_folded()
                return
            if self._checkpoint_due:
                self._checkpoint()
                return
            if len(self._pending) < FOLD_KEYS and self._journals[self._active].end < FOLD_BYTES:
                return
            self._start_fold()
        self._fold_step(max(FOLD_SLICE_KEYS, FOLD_SLICE_FACTOR * keys),
                        max(FOLD_SLICE_BYTES, FOLD_SLICE_FACTOR * size))

    def _seal_marker(self) -> None:
        """state.marker counts every commit made (written at once; fdatasync'd at most
        every MARKER_SYNC_S, and at every fold)."""
        if self._marker_seq < self.commit_seq:
            now = time.monotonic()
            sync = now - self._marker_synced >= MARKER_SYNC_S
            self._marker.write(self.commit_seq, sync)
            self._marker_seq = self.commit_seq
            if sync:
                self._marker_synced = now

    def _fold(self) -> None:
        """Fold everything the journals hold, now (at start, for the reads that scan
        state.db, at a clean stop, and when the slices fell behind)."""
        while self._fold_rows is not None:
            self._fold_step(None, None)
        if self._reset_due:
            self._empty_folded()
        if self._pending or self._pending_ranges:
            self._start_fold()
            self._fold_step(None, None)
            self._empty_folded()
        if self._checkpoint_due:
            self._checkpoint()
        self._join_reset()

    def _start_fold(self) -> None:
        """Freeze what the journal holds and switch the passes to the other journal."""
        assert not self._reset_due  # (the other journal must be empty)
        self._join_reset()
        self._folding, self._pending = self._pending, {}
        self._folding_ranges, self._pending_ranges = self._pending_ranges, {}
        self._folding_learn, self._pending_learn = self._pending_learn, []
        self._folding_keys, self._pending_keys = self._pending_keys, SortedKeys()
        self._fold_seq = self.commit_seq
        self._fold_rows = list(self._folding.items())
        self._fold_at, self._fold_s = 0, 0.0
        # The other journal was emptied when the last fold committed.
        self._active ^= 1

    def _fold_step(self, keys: int | None, size: int | None) -> None:
        """The fold's next step: write its next ``keys`` rows (or ``size`` bytes of
        values; None: all of them), or, once all are written, commit it (a step of its
        own: the commit's fsync is the step's largest cost)."""
        rows = self._fold_rows
        assert rows is not None and self._db is not None
        t0 = time.perf_counter()
        if not self._db.in_transaction:  # the first slice (or the first after a failure)
            self._fold_at = 0
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                self._rollback(e)
        if self._fold_at == len(rows):
            self._finish_fold(t0)
            return
        start = at = self._fold_at
        stop = len(rows) if keys is None else min(len(rows), at + keys)
        if size is not None:  # big values: fewer keys
            n = 0
            for i in range(at, stop):
                s = rows[i][1]
                n += len(s.value or b"") + len(s.chosen or b"")
                if n >= size:
                    stop = i + 1
                    break
        try:
            self._db.executemany(_INSERT, [row(k, s) for k, s in rows[start:stop]])
        except sqlite3.Error as e:
            self._rollback(e)
        self._fold_at = stop
        crash_point("mid_fold")  # tests only: a slice written, nothing committed
        if keys is None:  # all at once: commit now too
            self._finish_fold(t0)
        else:
            self._fold_s += time.perf_counter() - t0

    def _join_reset(self) -> None:
        """Wait for the journal being emptied; its StorageError, if it failed."""
        thread = self._resetting
        if thread is None:
            return
        thread.join()
        self._resetting = None
        error, self._reset_error = self._reset_error, None
        if error is not None:
            raise error

    def _checkpoint(self) -> None:
        """Copy the last fold's pages from state.db's write-ahead log into the database:
        a step of its own after each fold (SQLite's automatic checkpoint, every 1,000
        pages inside a commit, held one pass for about 8 ms; one fold's pages take 1-3)."""
        assert self._db is not None
        self._checkpoint_due = False
        try:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as e:
            raise from_sqlite_error(self.path, e, running=True) from None

    def _finish_fold(self, t0: float) -> None:
        """Commit the fold (``t0``: when this step began, for the fold's time); emptying
        the journal it came from is the next step."""
        assert self._db is not None
        try:
            range_rows = [range_row(p, b) for p, b in self._folding_ranges.items()]
            self._db.executemany(_INSERT_RANGE, range_rows)
            learn = learn_rows(self._learn_db_end, self._folding_learn)
            self._db.executemany("INSERT INTO learn_log (first, keys) VALUES (?, ?)", learn)
            if range_rows:
                self._drop_superseded()
            self._db.execute("UPDATE meta SET value=? WHERE name='commit_seq'",
                             (str(self._fold_seq),))
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback(e)
        crash_point("after_fold")  # tests only: committed, its journal not yet emptied
        self._learn_db_end += len(self._folding_learn)
        self._folding, self._folding_ranges, self._folding_learn = {}, {}, []
        self._folding_keys = SortedKeys()
        self._fold_rows = None
        self._reset_due = True
        if self._on_fold is not None:
            self._on_fold(self._fold_s + time.perf_counter() - t0)

    def _empty_folded(self) -> None:
        """The step after a fold's commit: empty the journal it came from (its records are
        commits state.db holds now: a crash before this only has a restart skip them),
        then state.marker, fdatasync'd (at least at every fold).

        The journal is emptied in a thread of its own: truncating it, setting its space
        aside again and flushing that (file system metadata) took 1-20 ms of the loop on
        a busy disk, all in system calls that let go of the GIL, and nothing touches that
        file until the next fold starts, which waits for it (:meth:`_join_reset`, as does
        the end of every fold all at once and :meth:`close`)."""
        journal = self._journals[self._active ^ 1]

        def reset() -> None:
            try:
                journal.reset()
            except StorageError as e:
                self._reset_error = e

        self._resetting = threading.Thread(target=reset, name="zpaxos-journal-reset",
                                           daemon=True)
        self._resetting.start()
        self._reset_due = False
        self._checkpoint_due = True
        self._marker.write(self.commit_seq)
        self._marker_seq, self._marker_synced = self.commit_seq, time.monotonic()

    def _drop_superseded(self) -> None:
        """Delete the range promises another one implies (protocol/ranges.superseded: the
        rule is the core's; the core's table dropped them already). In the transaction
        that writes the new ones, so a row goes only with what supersedes it."""
        assert self._db is not None
        rows = self._db.execute("SELECT prefix, round, id, checksum FROM ranges").fetchall()
        if any(checksum(("range", *r[:3])) != bytes(r[3]) for r in rows):
            return  # a damaged row: decide nothing from it (the next start reports it)
        gone = superseded({r[0]: Ballot(r[1], bytes(r[2])) for r in rows})
        self._db.executemany("DELETE FROM ranges WHERE prefix = ?", [(p,) for p in gone])


__all__ = ["FOLD_BYTES", "FOLD_KEYS", "FOLD_KEYS_HARD", "FOLD_SLICE_KEYS", "FoldMixin"]
