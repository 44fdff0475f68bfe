"""Durable acceptor state in SQLite, fronted by the node's own journal, and an in-memory
twin for tests.

Each loop pass is made durable as one record of the journal
(:mod:`zpaxos.runtime.journal`: one write and one fdatasync); the records are folded
into ``state.db`` in bulk, a slice after each pass's replies (:meth:`SqliteStore.seal`,
:mod:`zpaxos.runtime.storage_fold`), and at start whatever the journals still hold is
checked and folded in.

The database is the source of truth for everything an acceptor promised, accepted and
learned. It is opened with ``journal_mode=WAL`` and ``synchronous=FULL``: every commit
is fsynced, because a commit that a power cut can undo is a promise the acceptor may
forget, and a forgotten promise lets two values be chosen.

``locking_mode=EXCLUSIVE`` is set before the first access: one process owns the database
(as the data directory lock says anyway), and SQLite then keeps the WAL index in heap
memory instead of the memory-mapped ``-shm`` file. A memory-mapped file that is truncated
or becomes unwritable under a running process kills it with SIGBUS; with no mapping
(``mmap_size=0`` too) every such fault comes back as an error the node reports.

Ballots are stored as two columns (round as a signed 64-bit INTEGER, which a round never
exceeds, and the proposer id as a BLOB) so their order and every byte survive the trip.
Every row carries a checksum (BLAKE2b-128 over an unambiguous encoding of the key and the
whole state), verified when the state is loaded: SQLite's own checks cannot see a byte
changed inside a value or a promised round turned from 7 into 1, and the node must never
vote on such a row. A row that fails stops the node at start (naming the key), rather
than quarantining the key: the simplest rule that is plainly safe.

Nothing is ever taken for a fresh node except a data directory that never held state (no
database, no write-ahead log, no ``state.marker``, see :mod:`zpaxos.runtime.datadir`).
A database that is missing, replaced or older than the marker stops the node with
:class:`StateLost`; starting empty on purpose is ``SqliteStore(dir, new=True)``, which
moves the old files aside. The errors are classified in :mod:`storage_errors`.

Schema versions: 1 (original); 2 adds the chosen ballot; 3 adds the row checksum and the
``incarnation`` and ``commit_seq`` meta rows; 4 adds the ``ranges`` table (range promises,
zpaxos/protocol/ranges.py: a prefix and its ballot, checksummed like every row). Older
databases are migrated when opened.

The store is one class in parts: here, opening the data directory and writing (save,
close); the fold (and seal) is a mixin of storage_fold.py, its reads one of
storage_reads.py, the learn log's reads one of storage_learn.py, and the schema (its
creation, checks and migrations) storage_schema.py.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn

from zpaxos.hosts.keyrange import SortedKeys
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import Ballot
from zpaxos.protocol.regmessages import REGISTER_PREFIX
from zpaxos.runtime.datadir import MARKER_NAME, DirLock, FileWatch, Marker, make_dir, retire
from zpaxos.runtime.faults import crash_point
from zpaxos.runtime.journal import JOURNAL_NAMES, Journal, Record, encode
from zpaxos.runtime.memstore import MemoryStore
from zpaxos.runtime.peers import LOST_NAME, read_lost
from zpaxos.runtime.rows import checksum
from zpaxos.runtime.storage_errors import (
    RESCUE,
    NotLost,
    StateDamaged,
    StateLost,
    StorageError,
    damaged,
    from_os_error,
    from_sqlite_error,
    rescue,
)
from zpaxos.runtime.storage_fold import FOLD_KEYS_HARD, FoldMixin
from zpaxos.runtime.storage_learn import LEARN_ROW_KEYS, LearnLogMixin
from zpaxos.runtime.storage_reads import ReadsMixin
from zpaxos.runtime.storage_schema import SCHEMA_VERSION, check, create_tables

DB_NAME = "state.db"

__all__ = ["DB_NAME", "LEARN_ROW_KEYS", "SCHEMA_VERSION", "MemoryStore", "SqliteStore",
           "StorageError", "checksum"]


class SqliteStore(FoldMixin, ReadsMixin, LearnLogMixin):
    """One node's acceptor state: ``load()`` at start, ``save(batch)`` once per loop pass.

    Holds the data directory's lock from construction to :meth:`close`. ``incarnation``
    (16 bytes, drawn when the database was created) and ``commit_seq`` (commits made by
    this incarnation) are what peers can remember to recognise a rolled-back node.
    ``new=True`` starts empty on purpose over lost or damaged state (the old files are
    moved to ``retired``); over a healthy state it raises :class:`NotLost`.
    """

    def __init__(self, data_dir: Path, new: bool = False) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / DB_NAME
        self.wal = self.dir / (DB_NAME + "-wal")
        self.incarnation = b""
        self.commit_seq = 0
        self.retired: Path | None = None
        self._db: sqlite3.Connection | None = None
        self._marker = Marker(self.dir)
        self._marker_seq = 0  # the commits state.marker records
        self._marker_synced = 0.0  # when it was last fdatasync'd (time.monotonic)
        self._journals = [Journal(self.dir, name) for name in JOURNAL_NAMES]
        self._active = 0  # the one the passes append to (the other is being folded)
        # What the active journal holds that state.db does not yet (latest state per key).
        self._pending: dict[str, KeyState] = {}
        self._pending_ranges: dict[str, Ballot] = {}
        # The learn log: its keys in state.db end at position _learn_db_end; the fold's
        # and the journal's (chosen keys and register slots its commits wrote, in order)
        # follow in memory.
        self._learn_db_end = 0
        self._pending_learn: list[str] = []
        self._pending_keys = SortedKeys()  # _pending's keys in order, for range lookups
        # The fold under way (storage_fold.py): none yet.
        self._folding: dict[str, KeyState] = {}
        self._folding_ranges: dict[str, Ballot] = {}
        self._folding_learn: list[str] = []
        self._folding_keys = SortedKeys()
        self._fold_rows: list[tuple[str, KeyState]] | None = None
        self._fold_at = self._fold_seq = 0
        self._fold_s = 0.0
        self._reset_due = self._checkpoint_due = False
        self._resetting: threading.Thread | None = None
        self._reset_error: StorageError | None = None
        self._saved_keys = self._saved_bytes = 0
        self._watch = FileWatch()
        self._on_fold: Callable[[float], None] | None = None
        self._opened = False  # close() folds the journal only into a database that opened
        self._lock = DirLock(self.dir)  # creates the directory; DataDirLocked if taken
        try:
            self._open(new)
        except BaseException:
            self.close()
            raise
        self._opened = True

    # ---- opening

    def _open(self, new: bool) -> None:
        if not new:
            self._open_existing_or_fresh()
            return
        try:
            self._open_existing_or_fresh()
        except (StateLost, StateDamaged):
            self._close_db()
            self._close_journals()
            self.retired = retire(self.dir, [DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm",
                                             *JOURNAL_NAMES, MARKER_NAME, LOST_NAME])
            self._create()
            return
        if self.commit_seq > 0:
            raise NotLost(f"{self.dir}: --new refused: this node's state is intact "
                          f"({self.commit_seq} commits) and starting it empty would throw "
                          f"away its promises; start it without --new")

    def _open_existing_or_fresh(self) -> None:
        lost = read_lost(self.dir)  # the peers refused this state (zpaxos.runtime.peers)
        if lost is not None:
            raise StateLost(f"{lost} (recorded in {LOST_NAME} when the peers refused it)")
        marker = self._marker.read()
        if (marker is None and self._empty(self.path) and self._empty(self.wal)
                and not self._journal_has_records()):
            # A crash while the very first database was being created: an empty file
            # holds no promise, so this is still a new node.
            self._remove(self.wal)
            self._remove(self.path)
        if not self.path.exists():
            if self.wal.exists():
                raise StateLost(rescue(f"{self.path}: missing, but its write-ahead log is "
                                       f"there (state lost)"))
            held = [j.path.name for j in self._journals if j.exists_with_records()]
            if held:
                raise StateLost(rescue(f"{self.path}: missing, but its journal "
                                       f"({held[0]}) holds state (state lost)"))
            if marker is not None and marker.commits > 0:
                raise StateLost(rescue(f"{self.path}: missing, but this directory held "
                                       f"zpaxos state ({marker.commits} commits; state lost)"))
            self._create()  # never held state (a marker at 0 commits promised nothing)
            return
        self._probe_writable()
        self._connect()
        assert self._db is not None
        try:
            inc, db_seq, self._learn_db_end = check(self._db)
        except sqlite3.Error as e:
            raise from_sqlite_error(self.path, e) from None
        records = self._read_journal(inc, db_seq)
        seq = records[-1].seq if records else db_seq
        if marker is None:
            # A database without a marker: an older zpaxos's, or a crash between creating
            # the database and its marker. Adopt it.
            self._marker.create(inc, seq)
        elif marker.incarnation != inc:
            raise StateLost(rescue(f"{self.path}: replaced: it is not the database this "
                                   f"directory held ({marker.commits} commits; state lost)"))
        elif seq < marker.commits:
            raise StateLost(rescue(
                f"{self.path}: rolled back: it holds {seq} commits but this node had made "
                f"{marker.commits} (restored from an old backup, or its journal or "
                f"write-ahead log was deleted)"))
        else:
            self._marker.open(inc)
        self.incarnation, self.commit_seq = inc, seq
        self._marker_seq = marker.commits if marker is not None else seq
        self._replay(records)
        self._watch_files()

    def _journal_has_records(self) -> bool:
        return any(j.exists_with_records() for j in self._journals)

    def _read_journal(self, inc: bytes, db_seq: int) -> list[Record]:
        """The journals' records that state.db does not hold yet, in order, checked to
        follow on from it without a gap (a fold under way at a crash leaves records in
        both files); an absent journal (a database from before journals) has none."""
        tagged = sorted(((r, j) for j in self._journals if j.path.exists()
                         for r in j.read(inc, RESCUE) if r.seq > db_seq),
                        key=lambda t: t[0].seq)
        for want, (r, j) in enumerate(tagged, db_seq + 1):
            if r.seq != want:
                raise StateLost(rescue(
                    f"{self.path}: rolled back: it holds {db_seq} commits but its journal "
                    f"({j.path.name}) goes on from commit {r.seq} (state.db was "
                    f"restored from an old backup)" if want == db_seq + 1 else
                    f"{j.path}: damaged: commit {want} is missing from the journals"))
        return [r for r, _ in tagged]

    def _replay(self, records: list[Record]) -> None:
        """Fold what the journals held into state.db (after the checks that they belong),
        then start them empty (or create them)."""
        for r in records:
            for key, pr, pid, ar, aid, v, ch, cr, cid in r.rows:
                self._pending[key] = KeyState(Ballot(pr, pid), Ballot(ar, aid), v, ch,
                                              Ballot(cr, cid))
                if ch is not None or key[:1] == REGISTER_PREFIX:
                    self._pending_learn.append(key)  # the same position as before the stop
            for prefix, rnd, pid in r.ranges:
                self._pending_ranges[prefix] = Ballot(rnd, pid)
        self._fold()
        for journal in self._journals:
            if journal.path.exists():
                journal.reset()
            else:
                journal.create(self.incarnation)
        self._active = 0

    @staticmethod
    def _empty(path: Path) -> bool:
        """True if ``path`` is missing or holds no bytes."""
        try:
            return path.stat().st_size == 0
        except FileNotFoundError:
            return True
        except OSError as e:
            raise from_os_error(path, e) from None

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise from_os_error(path, e) from None

    def _probe_writable(self) -> None:
        """Tell "cannot write" from "damaged" before SQLite blurs them. The descriptor is
        closed before SQLite opens the file (closing a descriptor would drop SQLite's
        POSIX locks if it were closed later)."""
        for p in (self.path, self.wal):
            try:
                fd = os.open(p, os.O_RDWR)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise from_os_error(p, e) from None
            os.close(fd)
        if not os.access(self.dir, os.W_OK):
            raise from_os_error(self.dir, PermissionError(13, "permission denied"))

    def _connect(self) -> None:
        try:
            # timeout=0: with node.lock held, a busy database means a second owner; say so
            # at once instead of waiting for it.
            self._db = sqlite3.connect(self.path, timeout=0, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")  # before the first access
            self._db.execute("PRAGMA mmap_size=0")
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()
            if not mode or mode[0].lower() != "wal":
                raise damaged(self.path, f"cannot use a write-ahead log (journal mode "
                                         f"{mode and mode[0]!r})")
            self._db.execute("PRAGMA synchronous=FULL")
            # Checkpoints are the fold's own step (storage_fold.py), not a commit's.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.Error as e:
            raise from_sqlite_error(self.path, e) from None

    def _create(self) -> None:
        """A new incarnation: the database first, then its marker. A crash in between
        leaves a database without a marker, which the next start adopts."""
        for leftover in (DB_NAME + "-wal", DB_NAME + "-shm", *JOURNAL_NAMES, MARKER_NAME):
            self._remove(self.dir / leftover)  # only ever empty or promise-free here
        make_dir(self.dir)
        inc = os.urandom(16)
        self._connect()
        assert self._db is not None
        try:
            create_tables(self._db, inc)
        except sqlite3.Error as e:
            raise from_sqlite_error(self.path, e) from None
        for journal in self._journals:
            journal.create(inc)
        self._marker.create(inc, 0)
        self.incarnation, self.commit_seq, self._marker_seq = inc, 0, 0
        self._watch_files()

    def _watch_files(self) -> None:
        assert self._db is not None
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            # Hold SQLite's exclusive lock from now on (locking_mode=EXCLUSIVE never lets
            # it go): a second process must fail on state.db even with node.lock deleted,
            # though this one may not write to state.db until its first fold.
            self._db.execute("BEGIN EXCLUSIVE")
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            raise from_sqlite_error(self.path, e) from None
        self._watch.add(self.path)
        self._watch.add(self.wal, check_size=False)
        self._watch.add(self._marker.path)
        for journal in self._journals:
            self._watch.add(journal.path, check_size=False)  # emptied at every fold
        self._watch.add(self._lock.path, check_size=False)  # deleted: a second owner could lock

    # ---- use (the reads: storage_reads.py; the learn log's: storage_learn.py)

    def timed(self, fsync: Callable[[float], None], fold: Callable[[float], None]) -> None:
        """Report, in seconds, each commit's fdatasync and each fold (the node's metrics)."""
        for journal in self._journals:
            journal.on_sync = fsync
        self._on_fold = fold

    def save(self, batch: Iterable[tuple[str, KeyState]],
             ranges: Iterable[tuple[str, Ballot]] = ()) -> None:
        """Make a whole loop pass (key states and range promises) durable: one journal
        record, fdatasync'd, when this returns. Raises a StorageError, never a signal.

        Call :meth:`seal` once the pass's replies are sent: it records the commit in
        state.marker and folds a slice of the journal into state.db, both off the
        replies' path (the next save records the marker otherwise)."""
        states = dict(batch)
        range_states = dict(ranges)
        if not states and not range_states:
            return
        self._seal_marker()  # the previous pass's marker: marker <= durable state, always
        self._watch.check()  # a deleted or replaced file would swallow this commit
        seq = self.commit_seq + 1
        rows = [(k, s.promised[0], s.promised[1], s.accepted[0], s.accepted[1], s.value,
                 s.chosen, s.chosen_ballot[0], s.chosen_ballot[1])
                for k, s in states.items()]
        record = encode(seq, rows, [(p, b[0], b[1]) for p, b in range_states.items()])
        crash_point("before_commit")  # tests only: a crash with the pass not yet durable
        self._journals[self._active].append(record)
        self.commit_seq = seq
        self._saved_keys += len(states)
        self._saved_bytes += len(record)
        self._pending.update(states)
        self._pending_learn += [k for k, st in states.items()
                                if st.chosen is not None or k[:1] == REGISTER_PREFIX]
        self._pending_ranges.update(range_states)
        if len(self._pending) >= FOLD_KEYS_HARD:
            self._fold()  # the slices fell behind (they never should): all of it, now

    def _rollback(self, e: sqlite3.Error) -> NoReturn:
        """A fold's write failed: roll its transaction back (the next slice starts it
        again from its first row) and stop the node with the storage error."""
        assert self._db is not None
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise from_sqlite_error(self.path, e, running=True) from None

    def close(self) -> None:
        """Fold the journal into state.db (a clean stop leaves it empty; if that fails,
        it keeps everything for the next start), then let go of every file."""
        if self._opened and self._db is not None:
            try:
                self._watch.check()  # never write through a file changed underneath
                self.seal()
                self._fold()
            except StorageError:
                pass
        self._close_db()
        self._close_journals()
        self._marker.close()
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()

    def _close_journals(self) -> None:
        thread = self._resetting  # (never close a file under the thread emptying it)
        if thread is not None:
            thread.join()
        for journal in self._journals:
            journal.close()

    def _close_db(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass
