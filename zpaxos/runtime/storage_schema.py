"""The schema of ``state.db``: its tables, creating them, and checking (and migrating) a
database when it is opened.

Its own module because the schema's versions and their migrations are history the store's
daily work never needs: :class:`~zpaxos.runtime.storage.SqliteStore` calls
:func:`create_tables` for a new incarnation and :func:`check` once when it opens an
existing database; the column lists its queries share are here too. The learn log's
table is the learn log's (storage_learn.py).

Schema versions: 1 (original); 2 adds the chosen ballot; 3 adds the row checksum and the
``incarnation`` and ``commit_seq`` meta rows; 4 adds the ``ranges`` table.
"""

from __future__ import annotations

import os
import sqlite3

from zpaxos.runtime.rows import checksum
from zpaxos.runtime.storage_learn import LEARN_SCHEMA, open_learn_log

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
STATE_COLUMNS = ["key", "promised_round", "promised_id", "accepted_round", "accepted_id",
                 "value", "chosen", "chosen_round", "chosen_id"]
COLUMNS = [*STATE_COLUMNS, "checksum"]


def create_tables(db: sqlite3.Connection, inc: bytes) -> None:
    """The tables of a new database, and its meta rows: incarnation ``inc``, no commit."""
    db.executescript(
        "BEGIN;" + _SCHEMA + _RANGES_SCHEMA + LEARN_SCHEMA +
        f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
        f"INSERT INTO meta VALUES ('incarnation', '{inc.hex()}');"
        "INSERT INTO meta VALUES ('commit_seq', '0'); COMMIT;")


def check(db: sqlite3.Connection) -> tuple[bytes, int, int]:
    """Integrity, schema (migrating 1 -> 2 -> 3), incarnation and commit count; and where
    the learn log ends (storage_learn.open_learn_log)."""
    result = db.execute("PRAGMA quick_check").fetchone()
    if not result or result[0] != "ok":
        raise sqlite3.DatabaseError(f"integrity check failed: {result and result[0]}")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"meta", "acceptor"} <= tables:
        raise sqlite3.DatabaseError("the zpaxos schema is missing")
    version = db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
    if version and version[0] in ("1", "2", "3"):
        migrate(db, version[0])
        version = (SCHEMA_VERSION,)
    if not version or version[0] != SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"unknown schema version {version and version[0]!r}")
    cols = [r[1] for r in db.execute("PRAGMA table_info(acceptor)")]
    if cols != COLUMNS:
        raise sqlite3.DatabaseError("the acceptor table has the wrong columns")
    cols = [r[1] for r in db.execute("PRAGMA table_info(ranges)")]
    if cols != ["prefix", "round", "id", "checksum"]:
        raise sqlite3.DatabaseError("the ranges table is missing or has the wrong columns")
    learn_end = open_learn_log(db, tables)
    meta = dict(db.execute("SELECT name, value FROM meta "
                           "WHERE name IN ('incarnation', 'commit_seq')").fetchall())
    try:
        inc = bytes.fromhex(meta["incarnation"])
        seq = int(meta["commit_seq"])
        if len(inc) != 16 or seq < 0:
            raise ValueError
    except (KeyError, ValueError, TypeError):
        raise sqlite3.DatabaseError("bad incarnation or commit_seq in meta") from None
    return inc, seq, learn_end


def migrate(db: sqlite3.Connection, version: str) -> None:
    """Versions 1, 2 and 3 to 4, in one transaction. Version 1 did not record the ballot
    that chose a value (ZERO means "unknown"); rows from before version 3 are trusted
    as they are when their checksums are first computed. Version 4 adds the (empty)
    ranges table: no range promise was ever made before it."""
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
        rows = db.execute(f"SELECT {', '.join(STATE_COLUMNS)} FROM acceptor").fetchall()
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


__all__ = ["COLUMNS", "SCHEMA_VERSION", "STATE_COLUMNS", "check", "create_tables", "migrate"]
