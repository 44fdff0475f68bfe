"""Durable acceptor state in SQLite, fronted by the node's own journal, and an in-memory
twin for tests.

Each loop pass is made durable as one record of ``state.journal``
(:mod:`zpaxos.runtime.journal`: one write and one fdatasync); the records are folded
into ``state.db`` in bulk, after a pass's replies (:meth:`SqliteStore.seal`), and at
start whatever the journal still holds is checked and folded in.

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
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import Ballot
from zpaxos.protocol.ranges import prefix_end, superseded
from zpaxos.protocol.regmessages import REGISTER_PREFIX
from zpaxos.runtime.datadir import MARKER_NAME, DirLock, FileWatch, Marker, make_dir, retire
from zpaxos.runtime.faults import crash_point
from zpaxos.runtime.journal import JOURNAL_NAME, Journal, Record, encode
from zpaxos.runtime.keyrange import SortedKeys, merge
from zpaxos.runtime.memstore import MemoryStore
from zpaxos.runtime.peers import LOST_NAME, read_lost
from zpaxos.runtime.rows import checksum, range_row, row, state_of
from zpaxos.runtime.storage_errors import (
    REJOIN_DOCS,
    NotLost,
    StateDamaged,
    StateLost,
    StorageError,
    damaged,
    from_os_error,
    from_sqlite_error,
)
from zpaxos.runtime.valuefiles import glob_matcher, sql_glob

DB_NAME = "state.db"
SCHEMA_VERSION = "4"  # 2: chosen_round, chosen_id; 3: checksum, incarnation, commit_seq; 4: ranges

_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE acceptor (
    key            TEXT PRIMARY KEY,
    promised_round INTEGER NOT NULL,
    promised_id    BLOB NOT NULL,
    accepted_round INTEGER NOT NULL,
    accepted_id    BLOB NOT NULL,
    value          BLOB,
    chosen         BLOB,
    chosen_round   INTEGER NOT NULL,
    chosen_id      BLOB NOT NULL,
    checksum       BLOB NOT NULL
);
"""
_RANGES_SCHEMA = """
CREATE TABLE ranges (
    prefix   TEXT PRIMARY KEY,
    round    INTEGER NOT NULL,
    id       BLOB NOT NULL,
    checksum BLOB NOT NULL
);
"""
# Catching up (zpaxos/runtime/catchup.py): the learn log, every chosen key and every
# register slot in the order commits wrote them, numbered from 0 (its *position*). It is
# kept append-only and packed: one row per fold (``first``, the position of its first key;
# ``keys``, the fold's keys joined by newlines), so a fold adds one row to one table with
# no index but its rowid, and "what did this node learn from position p?" is one seek.
# Added in place (no new schema version): a database without it gets it, filled from its
# chosen keys and slots, when opened.
_LEARN_SCHEMA = """
CREATE TABLE learn_log (first INTEGER PRIMARY KEY, keys TEXT NOT NULL);
"""
LEARN_ROW_KEYS = 4096  # keys in one learn_log row at most (a fold writes several if more)
_STATE_COLUMNS = ["key", "promised_round", "promised_id", "accepted_round", "accepted_id",
                  "value", "chosen", "chosen_round", "chosen_id"]
_COLUMNS = [*_STATE_COLUMNS, "checksum"]
_SELECT = ", ".join(_COLUMNS)
_IN_CHUNK = 500  # keys per "IN (...)" query (SQLite's variable limit is far above)
_INSERT = (f"INSERT OR REPLACE INTO acceptor ({', '.join(_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(_COLUMNS))})")
_INSERT_RANGE = "INSERT OR REPLACE INTO ranges (prefix, round, id, checksum) VALUES (?, ?, ?, ?)"
# The journal is folded into state.db once this many keys wait in it (after a pass's
# replies, in seal()), or this many bytes; and within a pass past FOLD_KEYS_HARD.
FOLD_KEYS = 4096
FOLD_BYTES = 8 << 20
FOLD_KEYS_HARD = 4 * FOLD_KEYS
MARKER_SYNC_S = 0.05  # state.marker is fdatasync'd at most this often (datadir.Marker)

__all__ = ["DB_NAME", "SCHEMA_VERSION", "MemoryStore", "SqliteStore", "StorageError",
           "checksum"]


_RESCUE = (f"the node will not vote on it: put back this node's own latest files if you "
           f"still have them, else follow {REJOIN_DOCS} to rejoin with --new")


def _rescue(why: str) -> str:
    return f"{why}; {_RESCUE}"


class SqliteStore:
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
        self._journal = Journal(self.dir)
        # What the journal holds that state.db does not yet (latest state per key).
        self._pending: dict[str, KeyState] = {}
        self._pending_ranges: dict[str, Ballot] = {}
        # The learn log: its keys in state.db end at position _learn_db_end; the journal's
        # (chosen keys and register slots its commits wrote, in order) follow in memory.
        self._learn_db_end = 0
        self._pending_learn: list[str] = []
        self._pending_keys = SortedKeys()  # _pending's keys in order, for range lookups
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
            self._journal.close()
            self.retired = retire(self.dir, [DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm",
                                             JOURNAL_NAME, MARKER_NAME, LOST_NAME])
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
                and not self._journal.exists_with_records()):
            # A crash while the very first database was being created: an empty file
            # holds no promise, so this is still a new node.
            self._remove(self.wal)
            self._remove(self.path)
        if not self.path.exists():
            if self.wal.exists():
                raise StateLost(_rescue(f"{self.path}: missing, but its write-ahead log is "
                                        f"there (state lost)"))
            if self._journal.exists_with_records():
                raise StateLost(_rescue(f"{self.path}: missing, but its journal "
                                        f"({JOURNAL_NAME}) holds state (state lost)"))
            if marker is not None and marker.commits > 0:
                raise StateLost(_rescue(f"{self.path}: missing, but this directory held "
                                        f"zpaxos state ({marker.commits} commits; state lost)"))
            self._create()  # never held state (a marker at 0 commits promised nothing)
            return
        self._probe_writable()
        self._connect()
        try:
            inc, db_seq = self._check()
        except sqlite3.Error as e:
            raise from_sqlite_error(self.path, e) from None
        records = self._read_journal(inc, db_seq)
        seq = records[-1].seq if records else db_seq
        if marker is None:
            # A database without a marker: an older zpaxos's, or a crash between creating
            # the database and its marker. Adopt it.
            self._marker.create(inc, seq)
        elif marker.incarnation != inc:
            raise StateLost(_rescue(f"{self.path}: replaced: it is not the database this "
                                    f"directory held ({marker.commits} commits; state lost)"))
        elif seq < marker.commits:
            raise StateLost(_rescue(
                f"{self.path}: rolled back: it holds {seq} commits but this node had made "
                f"{marker.commits} (restored from an old backup, or its journal or "
                f"write-ahead log was deleted)"))
        else:
            self._marker.open(inc)
        self.incarnation, self.commit_seq = inc, seq
        self._marker_seq = marker.commits if marker is not None else seq
        self._replay(records)
        self._watch_files()

    def _read_journal(self, inc: bytes, db_seq: int) -> list[Record]:
        """The journal's records that state.db does not hold yet, checked to follow on
        from it; an absent journal (a database from before journals) has none."""
        if not self._journal.path.exists():
            return []
        records = [r for r in self._journal.read(inc, _RESCUE) if r.seq > db_seq]
        for want, r in enumerate(records, db_seq + 1):
            if r.seq != want:
                raise StateLost(_rescue(
                    f"{self.path}: rolled back: it holds {db_seq} commits but its journal "
                    f"({JOURNAL_NAME}) goes on from commit {records[0].seq} (state.db was "
                    f"restored from an old backup)" if want == db_seq + 1 else
                    f"{self._journal.path}: damaged: commit {want} is missing from it"))
        return records

    def _replay(self, records: list[Record]) -> None:
        """Fold what the journal held into state.db (after the checks that it belongs),
        then start the journal empty (or create it)."""
        for r in records:
            for key, pr, pid, ar, aid, v, ch, cr, cid in r.rows:
                self._pending[key] = KeyState(Ballot(pr, pid), Ballot(ar, aid), v, ch,
                                              Ballot(cr, cid))
                if ch is not None or key[:1] == REGISTER_PREFIX:
                    self._pending_learn.append(key)  # the same position as before the stop
            for prefix, rnd, pid in r.ranges:
                self._pending_ranges[prefix] = Ballot(rnd, pid)
        if self._journal.path.exists():
            self._fold()
            self._journal.reset()
        else:
            self._journal.create(self.incarnation)

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
        except sqlite3.Error as e:
            raise from_sqlite_error(self.path, e) from None

    def _create(self) -> None:
        """A new incarnation: the database first, then its marker. A crash in between
        leaves a database without a marker, which the next start adopts."""
        for leftover in (DB_NAME + "-wal", DB_NAME + "-shm", JOURNAL_NAME, MARKER_NAME):
            self._remove(self.dir / leftover)  # only ever empty or promise-free here
        make_dir(self.dir)
        inc = os.urandom(16)
        self._connect()
        assert self._db is not None
        try:
            self._db.executescript(
                "BEGIN;" + _SCHEMA + _RANGES_SCHEMA + _LEARN_SCHEMA +
                f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
                f"INSERT INTO meta VALUES ('incarnation', '{inc.hex()}');"
                "INSERT INTO meta VALUES ('commit_seq', '0'); COMMIT;")
        except sqlite3.Error as e:
            raise from_sqlite_error(self.path, e) from None
        self._journal.create(inc)
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
        self._watch.add(self._journal.path, check_size=False)  # emptied at every fold
        self._watch.add(self._lock.path, check_size=False)  # deleted: a second owner could lock

    def _check(self) -> tuple[bytes, int]:
        """Integrity, schema (migrating 1 -> 2 -> 3), incarnation and commit count."""
        assert self._db is not None
        db = self._db
        result = db.execute("PRAGMA quick_check").fetchone()
        if not result or result[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {result and result[0]}")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "acceptor"} <= tables:
            raise sqlite3.DatabaseError("the zpaxos schema is missing")
        version = db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        if version and version[0] in ("1", "2", "3"):
            self._migrate(version[0])
            version = (SCHEMA_VERSION,)
        if not version or version[0] != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"unknown schema version {version and version[0]!r}")
        cols = [r[1] for r in db.execute("PRAGMA table_info(acceptor)")]
        if cols != _COLUMNS:
            raise sqlite3.DatabaseError("the acceptor table has the wrong columns")
        cols = [r[1] for r in db.execute("PRAGMA table_info(ranges)")]
        if cols != ["prefix", "round", "id", "checksum"]:
            raise sqlite3.DatabaseError("the ranges table is missing or has the wrong columns")
        if "learn_log" not in tables:
            # From before catching up: every chosen key and register slot, in key order.
            keys = [r[0] for r in db.execute(
                "SELECT key FROM acceptor WHERE chosen IS NOT NULL OR substr(key, 1, 1) = '@' "
                "ORDER BY key")]
            db.executescript("BEGIN;" + _LEARN_SCHEMA)
            db.executemany("INSERT INTO learn_log (first, keys) VALUES (?, ?)",
                           _learn_rows(0, keys))
            db.execute("COMMIT")
        cols = [r[1] for r in db.execute("PRAGMA table_info(learn_log)")]
        if cols != ["first", "keys"]:
            raise sqlite3.DatabaseError("the learn_log table has the wrong columns")
        last = db.execute("SELECT first, keys FROM learn_log ORDER BY first DESC "
                          "LIMIT 1").fetchone()
        self._learn_db_end = 0 if last is None else last[0] + last[1].count("\n") + 1
        meta = dict(db.execute("SELECT name, value FROM meta "
                               "WHERE name IN ('incarnation', 'commit_seq')").fetchall())
        try:
            inc = bytes.fromhex(meta["incarnation"])
            seq = int(meta["commit_seq"])
            if len(inc) != 16 or seq < 0:
                raise ValueError
        except (KeyError, ValueError, TypeError):
            raise sqlite3.DatabaseError("bad incarnation or commit_seq in meta") from None
        return inc, seq

    def _migrate(self, version: str) -> None:
        """Versions 1, 2 and 3 to 4, in one transaction. Version 1 did not record the ballot
        that chose a value (ZERO means "unknown"); rows from before version 3 are trusted
        as they are when their checksums are first computed. Version 4 adds the (empty)
        ranges table: no range promise was ever made before it."""
        assert self._db is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_RANGES_SCHEMA)
            if version == "3":
                db.execute("UPDATE meta SET value=? WHERE name='schema_version'",
                           (SCHEMA_VERSION,))
                db.execute("COMMIT")
                return
            if version == "1":
                db.execute("ALTER TABLE acceptor ADD COLUMN chosen_round INTEGER NOT NULL "
                           "DEFAULT 0")
                db.execute("ALTER TABLE acceptor ADD COLUMN chosen_id BLOB NOT NULL "
                           "DEFAULT x''")
            db.execute("ALTER TABLE acceptor ADD COLUMN checksum BLOB NOT NULL DEFAULT x''")
            rows = db.execute(f"SELECT {', '.join(_STATE_COLUMNS)} FROM acceptor").fetchall()
            db.executemany("UPDATE acceptor SET checksum=? WHERE key=?",
                           [(checksum(r), r[0]) for r in rows])
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           [("schema_version", SCHEMA_VERSION),
                            ("incarnation", os.urandom(16).hex()),
                            # Rows mean promises: never let a marker say "nothing to lose".
                            ("commit_seq", "1" if rows else "0")])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # ---- use

    def load(self) -> dict[str, KeyState]:
        """Every key's state, each row's checksum verified (StateDamaged names the key)."""
        self._fold()
        assert self._db is not None
        try:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM acceptor").fetchall()
        except sqlite3.Error as e:
            raise from_sqlite_error(self.path, e) from None
        bad = [r[0] for r in rows if checksum(r[:-1]) != bytes(r[-1])]
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise StateDamaged(_rescue(f"{self.path}: the state of key {bad[0]!r}{more} fails "
                                       f"its checksum (changed on disk)"))
        try:
            return {r[0]: state_of(r) for r in rows}
        except (TypeError, ValueError) as e:
            raise damaged(self.path, f"cannot read state: {e}") from None

    # ---- lazy access: what a node with a million keys reads instead of load()

    def _verified(self, rows: list[Any]) -> list[tuple[str, KeyState]]:
        """Rows as states, each checksum verified: a row changed on disk stops the node
        (StateDamaged names the key) before anyone votes on it, exactly as load() does."""
        for r in rows:
            if checksum(r[:-1]) != bytes(r[-1]):
                raise StateDamaged(_rescue(f"{self.path}: the state of key {r[0]!r} fails its "
                                           f"checksum (changed on disk)"))
        try:
            return [(r[0], state_of(r)) for r in rows]
        except (TypeError, ValueError) as e:
            raise damaged(self.path, f"cannot read state: {e}") from None

    def _select(self, where: str, args: tuple[Any, ...]) -> list[Any]:
        assert self._db is not None
        try:
            return self._db.execute(f"SELECT {_SELECT} FROM acceptor {where}", args).fetchall()
        except sqlite3.Error as e:
            raise from_sqlite_error(self.path, e, running=True) from None

    def get(self, keys: Collection[str]) -> dict[str, KeyState]:
        """The durable states of ``keys`` (a key never written is absent), verified."""
        pending = self._pending
        out = {k: pending[k] for k in keys if k in pending}
        keys = [k for k in keys if k not in out] if out else list(keys)
        for i in range(0, len(keys), _IN_CHUNK):
            chunk = keys[i:i + _IN_CHUNK]
            rows = self._select(f"WHERE key IN ({', '.join('?' * len(chunk))})", tuple(chunk))
            out.update(self._verified(rows))
        return out

    def page(self, after: str, limit: int, chosen_only: bool = False
             ) -> list[tuple[str, KeyState]]:
        """Up to ``limit`` states of the keys after ``after``, in key order, verified: a
        walk down the primary key's index, never a sort (SQLite's BINARY order of UTF-8
        text is Python's order of str)."""
        cond = " AND chosen IS NOT NULL" if chosen_only else ""
        rows = self._verified(self._select(f"WHERE key > ?{cond} ORDER BY key LIMIT ?",
                                           (after, limit)))
        # With what the journal holds (newer than the database's rows): the first
        # ``limit`` keys overall are among these two sets. Merged rather than folded, so a
        # peer walking the pages does not cost a fold (three fsyncs) per page.
        extra = [(k, st) for k, st in self._pending.items()
                 if k > after and (not chosen_only or st.chosen is not None)]
        if not extra:
            return rows
        merged = dict(rows)
        merged.update(extra)
        return sorted(merged.items())[:limit]

    def prefixed(self, prefix: str, limit: int) -> list[tuple[str, KeyState]]:
        """Up to ``limit`` states of the keys that start with ``prefix``, in key order,
        verified: a seek down the primary key's index to ``prefix``, stopping at the first
        key past the range (``prefix_end``), so it reads only the range's rows, however
        many keys sort after it. With what the journal holds, as :meth:`page`."""
        end = prefix_end(prefix)
        if end is None:
            rows = self._select("WHERE key >= ? ORDER BY key LIMIT ?", (prefix, limit))
        else:
            rows = self._select("WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
                                (prefix, end, limit))
        states = self._verified([r for r in rows if r[0].startswith(prefix)])
        extra = self._pending_keys.prefixed(self._pending, prefix)
        return merge(states, extra, limit) if extra else states

    def learned_from(self, pos: int, limit: int) -> list[str]:
        """Up to ``limit`` keys of the learn log from position ``pos`` on, in log order:
        what this node learned since, durable (the journal's included; never the node's
        uncommitted learned decisions). A key can appear more than once (a register slot
        at each write)."""
        out: list[str] = []
        db_end = self._learn_db_end
        if pos < db_end:
            assert self._db is not None
            try:
                start = self._db.execute("SELECT coalesce(max(first), 0) FROM learn_log "
                                         "WHERE first <= ?", (pos,)).fetchone()[0]
                for first, keys in self._db.execute(
                        "SELECT first, keys FROM learn_log WHERE first >= ? ORDER BY first",
                        (start,)):
                    chunk = keys.split("\n")
                    out += chunk[max(0, pos - first):max(0, pos - first) + limit - len(out)]
                    if len(out) >= limit:
                        break
            except sqlite3.Error as e:
                raise from_sqlite_error(self.path, e, running=True) from None
        if len(out) < limit:
            i = max(0, pos - db_end)
            out += self._pending_learn[i:i + limit - len(out)]
        return out

    @property
    def learn_end(self) -> int:
        """The position after the learn log's last key (durable ones only)."""
        return self._learn_db_end + len(self._pending_learn)

    def chosen_matching(self, pattern: str) -> list[tuple[str, bytes]]:
        """The chosen values of the keys ``pattern`` (a value_files glob) matches, read
        through the index where the glob has a literal prefix."""
        match, sql = glob_matcher(pattern), sql_glob(pattern)
        if sql is None:
            return []
        self._fold()
        rows = self._select("WHERE key GLOB ? AND chosen IS NOT NULL", (sql,))
        return [(k, s.chosen) for k, s in self._verified([r for r in rows if match(r[0])])
                if s.chosen is not None]

    def count_chosen(self) -> int:
        """How many keys this node knows chosen (a scan: at start only)."""
        self._fold()
        assert self._db is not None
        try:
            return int(self._db.execute("SELECT count(*) FROM acceptor WHERE chosen IS NOT "
                                        "NULL").fetchone()[0])
        except sqlite3.Error as e:
            raise from_sqlite_error(self.path, e, running=True) from None

    def timed(self, fsync: Callable[[float], None], fold: Callable[[float], None]) -> None:
        """Report, in seconds, each commit's fdatasync and each fold (the node's metrics)."""
        self._journal.on_sync = fsync
        self._on_fold = fold

    def count(self, prefix: str = "") -> int:
        """How many keys the database holds (those starting with ``prefix``)."""
        self._fold()
        assert self._db is not None
        try:
            if prefix:
                return int(self._db.execute(
                    "SELECT count(*) FROM acceptor WHERE key GLOB ?",
                    (sql_glob(prefix + "*"),)).fetchone()[0])
            return int(self._db.execute("SELECT count(*) FROM acceptor").fetchone()[0])
        except sqlite3.Error as e:
            raise from_sqlite_error(self.path, e, running=True) from None

    def load_ranges(self) -> dict[str, Ballot]:
        """Every range promise, prefix -> ballot, each row's checksum verified."""
        self._fold()
        assert self._db is not None
        try:
            rows = self._db.execute("SELECT prefix, round, id, checksum FROM ranges").fetchall()
        except sqlite3.Error as e:
            raise from_sqlite_error(self.path, e) from None
        bad = [r[0] for r in rows if checksum(("range", *r[:3])) != bytes(r[3])]
        if bad:
            raise StateDamaged(_rescue(f"{self.path}: the range promise for {bad[0]!r}* fails "
                                       f"its checksum (changed on disk)"))
        try:
            return {r[0]: Ballot(r[1], bytes(r[2])) for r in rows}
        except (TypeError, ValueError) as e:
            raise damaged(self.path, f"cannot read range promises: {e}") from None

    def save(self, batch: Iterable[tuple[str, KeyState]],
             ranges: Iterable[tuple[str, Ballot]] = ()) -> None:
        """Make a whole loop pass (key states and range promises) durable: one journal
        record, fdatasync'd, when this returns. Raises a StorageError, never a signal.

        Call :meth:`seal` once the pass's replies are sent (the next save does it
        otherwise): it records the commit in state.marker and folds the journal into
        state.db when enough waits there, both off the replies' path."""
        states = dict(batch)
        range_states = dict(ranges)
        if not states and not range_states:
            return
        self.seal()  # the previous pass's marker: marker <= durable state, always
        self._watch.check()  # a deleted or replaced file would swallow this commit
        seq = self.commit_seq + 1
        rows = [(k, s.promised[0], s.promised[1], s.accepted[0], s.accepted[1], s.value,
                 s.chosen, s.chosen_ballot[0], s.chosen_ballot[1])
                for k, s in states.items()]
        record = encode(seq, rows, [(p, b[0], b[1]) for p, b in range_states.items()])
        crash_point("before_commit")  # tests only: a crash with the pass not yet durable
        self._journal.append(record)
        self.commit_seq = seq
        self._pending.update(states)
        self._pending_learn += [k for k, st in states.items()
                                if st.chosen is not None or k[:1] == REGISTER_PREFIX]
        self._pending_ranges.update(range_states)
        if len(self._pending) >= FOLD_KEYS_HARD:
            self._fold()

    def seal(self) -> None:
        """After a pass's replies: state.marker records the commit (marker <= durable
        state: a crash before this leaves it one commit behind, never ahead), and the
        journal is folded into state.db once enough waits there."""
        if self._marker_seq < self.commit_seq:
            now = time.monotonic()
            sync = now - self._marker_synced >= MARKER_SYNC_S
            self._marker.write(self.commit_seq, sync)
            self._marker_seq = self.commit_seq
            if sync:
                self._marker_synced = now
        if len(self._pending) >= FOLD_KEYS or self._journal.end >= FOLD_BYTES:
            self._fold()

    def _fold(self) -> None:
        """Write what the journal holds into state.db in one transaction (a key's latest
        state once, however many passes wrote it), then empty the journal. A crash
        between the two leaves records the database holds already: replay skips them."""
        if not self._pending and not self._pending_ranges:
            return
        t0 = time.perf_counter()
        assert self._db is not None
        rows = [row(k, s) for k, s in self._pending.items()]
        range_rows = [range_row(p, b) for p, b in self._pending_ranges.items()]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(_INSERT, rows)
            self._db.executemany(_INSERT_RANGE, range_rows)
            learn = _learn_rows(self._learn_db_end, self._pending_learn)
            self._db.executemany("INSERT INTO learn_log (first, keys) VALUES (?, ?)", learn)
            if range_rows:
                self._drop_superseded()
            self._db.execute("UPDATE meta SET value=? WHERE name='commit_seq'",
                             (str(self.commit_seq),))
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise from_sqlite_error(self.path, e, running=True) from None
        self._journal.reset()
        self._pending.clear()
        self._learn_db_end += len(self._pending_learn)
        self._pending_learn = []
        self._pending_keys.reset()
        self._pending_ranges.clear()
        self._marker.write(self.commit_seq)  # fdatasync'd: at least at every fold
        self._marker_seq, self._marker_synced = self.commit_seq, time.monotonic()
        if self._on_fold is not None:
            self._on_fold(time.perf_counter() - t0)

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
        self._journal.close()
        self._marker.close()
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()

    def _close_db(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass


def _learn_rows(first: int, keys: list[str]) -> list[tuple[int, str]]:
    """The learn_log rows for ``keys`` from position ``first``: packed, LEARN_ROW_KEYS a row."""
    return [(first + i, "\n".join(keys[i:i + LEARN_ROW_KEYS]))
            for i in range(0, len(keys), LEARN_ROW_KEYS)]
