"""Durable acceptor state in SQLite, and an in-memory twin for tests.

The database is the source of truth for everything an acceptor promised, accepted and
learned. It is opened with ``journal_mode=WAL`` and ``synchronous=FULL``: every commit
is fsynced, because a commit that a power cut can undo is a promise the acceptor may
forget, and a forgotten promise lets two values be chosen.

Ballots are stored as two columns (round as a signed 64-bit INTEGER, which a round never
exceeds, and the proposer id as a BLOB) so their order and every byte survive the trip.

A damaged database stops the node (:class:`StorageError`); it never starts empty over
it. "Fresh" means exactly one thing: the database file does not exist.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import Ballot

DB_NAME = "state.db"
SCHEMA_VERSION = "2"  # 2: chosen_round, chosen_id (the ballot that chose the value)

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
    chosen_id      BLOB NOT NULL
);
"""
_COLUMNS = ["key", "promised_round", "promised_id", "accepted_round", "accepted_id", "value",
            "chosen", "chosen_round", "chosen_id"]


class StorageError(Exception):
    """The node's state cannot be trusted or written; the node must stop."""


def _row(key: str, s: KeyState) -> tuple:
    return (key, s.promised.round, s.promised.proposer, s.accepted.round, s.accepted.proposer,
            s.value, s.chosen, s.chosen_ballot.round, s.chosen_ballot.proposer)


def _state(row: tuple) -> KeyState:
    _, pr, pid, ar, aid, value, chosen, cr, cid = row
    return KeyState(Ballot(pr, bytes(pid)), Ballot(ar, bytes(aid)),
                    None if value is None else bytes(value),
                    None if chosen is None else bytes(chosen), Ballot(cr, bytes(cid)))


class SqliteStore:
    """One node's acceptor state: ``load()`` at start, ``save(batch)`` once per loop pass."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / DB_NAME
        fresh = not self.path.exists()
        if fresh and Path(str(self.path) + "-wal").exists():
            raise StorageError(f"{self.path}: missing, but its write-ahead log is there; "
                               f"refusing to start empty over lost state")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"{self.path.parent}: cannot create data directory ({e})") from None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            if fresh:
                self._db.executescript("BEGIN;" + _SCHEMA +
                                       f"INSERT INTO meta VALUES ('schema_version', "
                                       f"'{SCHEMA_VERSION}'); COMMIT;")
            else:
                self._check()
        except StorageError:
            self._close_quietly()
            raise
        except sqlite3.Error as e:
            self._close_quietly()
            raise StorageError(f"{self.path}: damaged or unreadable state database ({e}); "
                               f"the node will not start over it (restore it, or move the "
                               f"data directory away to start this node empty)") from None

    def _check(self) -> None:
        result = self._db.execute("PRAGMA quick_check").fetchone()
        if not result or result[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {result and result[0]}")
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master "
                                                 "WHERE type='table'")}
        if not {"meta", "acceptor"} <= tables:
            raise sqlite3.DatabaseError("the zpaxos schema is missing")
        version = self._db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        if version and version[0] == "1":
            # Version 1 did not record the ballot that chose a value: ZERO means "unknown".
            self._db.executescript(
                "BEGIN; ALTER TABLE acceptor ADD COLUMN chosen_round INTEGER NOT NULL DEFAULT 0;"
                " ALTER TABLE acceptor ADD COLUMN chosen_id BLOB NOT NULL DEFAULT x'';"
                f" UPDATE meta SET value='{SCHEMA_VERSION}' WHERE name='schema_version'; COMMIT;")
            version = (SCHEMA_VERSION,)
        if not version or version[0] != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"unknown schema version {version and version[0]!r}")
        cols = [r[1] for r in self._db.execute("PRAGMA table_info(acceptor)")]
        if cols != _COLUMNS:
            raise sqlite3.DatabaseError("the acceptor table has the wrong columns")

    def load(self) -> dict[str, KeyState]:
        try:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM acceptor").fetchall()
            return {r[0]: _state(r) for r in rows}
        except (sqlite3.Error, TypeError, ValueError) as e:
            raise StorageError(f"{self.path}: cannot read state ({e})") from None

    def save(self, batch: Iterable[tuple[str, KeyState]]) -> None:
        """Write a whole loop pass in one transaction; fsynced when this returns."""
        rows = [_row(k, s) for k, s in batch]
        if not rows:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                f"INSERT OR REPLACE INTO acceptor ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})", rows)
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            raise StorageError(f"{self.path}: cannot write state ({e})") from None

    def close(self) -> None:
        self._close_quietly()

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass
            self._db = None


class MemoryStore:
    """The same interface in memory: for tests, and what a crash keeps is what was saved."""

    def __init__(self) -> None:
        self.saved: dict[str, KeyState] = {}
        self.commits = 0

    def load(self) -> dict[str, KeyState]:
        return dict(self.saved)

    def save(self, batch: Iterable[tuple[str, KeyState]]) -> None:
        rows = list(batch)
        if rows:
            self.saved.update(rows)
            self.commits += 1

    def close(self) -> None:
        pass
