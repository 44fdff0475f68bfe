"""The learn log in ``state.db``: what a node learned, in order, for the peers that catch
up from it (zpaxos/hosts/catchup.py): its table, its packed rows, the filling of a
database from before it, and :class:`LearnLogMixin`, the store's reads of it.

Its own module because the learn log is a structure of its own beside the key states,
with its own positions: :class:`~zpaxos.runtime.storage.SqliteStore` appends to it as it
commits and folds (with :func:`learn_rows`), and reads it only here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from zpaxos.runtime.storage_errors import from_sqlite_error

# Catching up (zpaxos/hosts/catchup.py): the learn log, every chosen key and every
# register slot in the order commits wrote them, numbered from 0 (its *position*). It is
# kept append-only and packed: one row per fold (``first``, the position of its first key;
# ``keys``, the fold's keys joined by newlines), so a fold adds one row to one table with
# no index but its rowid, and "what did this node learn from position p?" is one seek.
# Added in place (no new schema version): a database without it gets it, filled from its
# chosen keys and slots, when opened.
LEARN_SCHEMA = """
CREATE TABLE learn_log (first INTEGER PRIMARY KEY, keys TEXT NOT NULL);
"""
LEARN_ROW_KEYS = 4096  # keys in one learn_log row at most (a fold writes several if more)


def learn_rows(first: int, keys: list[str]) -> list[tuple[int, str]]:
    """The learn_log rows for ``keys`` from position ``first``: packed, LEARN_ROW_KEYS a row."""
    return [(first + i, "\n".join(keys[i:i + LEARN_ROW_KEYS]))
            for i in range(0, len(keys), LEARN_ROW_KEYS)]


def open_learn_log(db: sqlite3.Connection, tables: set[str]) -> int:
    """Check the learn log of a database being opened (``tables``: the ones it has),
    adding it first to one from before catching up; the position after its last key."""
    if "learn_log" not in tables:
        # From before catching up: every chosen key and register slot, in key order.
        keys = [r[0] for r in db.execute(
            "SELECT key FROM acceptor WHERE chosen IS NOT NULL OR substr(key, 1, 1) = '@' "
            "ORDER BY key")]
        db.executescript("BEGIN;" + LEARN_SCHEMA)
        db.executemany("INSERT INTO learn_log (first, keys) VALUES (?, ?)",
                       learn_rows(0, keys))
        db.execute("COMMIT")
    cols = [r[1] for r in db.execute("PRAGMA table_info(learn_log)")]
    if cols != ["first", "keys"]:
        raise sqlite3.DatabaseError("the learn_log table has the wrong columns")
    last = db.execute("SELECT first, keys FROM learn_log ORDER BY first DESC "
                      "LIMIT 1").fetchone()
    return 0 if last is None else int(last[0] + last[1].count("\n") + 1)


class LearnLogMixin:
    """Part of :class:`~zpaxos.runtime.storage.SqliteStore`: the learn log's reads."""

    path: Path
    _db: sqlite3.Connection | None
    # The learn log: its keys in state.db end at position _learn_db_end; the fold's
    # under way and the journal's (chosen keys and register slots its commits wrote, in
    # order) follow in memory.
    _learn_db_end: int
    _folding_learn: list[str]
    _pending_learn: list[str]

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
                # (first < db_end: the rows of a fold's open transaction are listed from
                # memory, below)
                for first, keys in self._db.execute(
                        "SELECT first, keys FROM learn_log WHERE first >= ? AND first < ? "
                        "ORDER BY first", (start, db_end)):
                    chunk = keys.split("\n")
                    out += chunk[max(0, pos - first):max(0, pos - first) + limit - len(out)]
                    if len(out) >= limit:
                        break
            except sqlite3.Error as e:
                raise from_sqlite_error(self.path, e, running=True) from None
        at = db_end
        for mem in (self._folding_learn, self._pending_learn):
            if len(out) < limit:
                i = max(0, pos - at)
                out += mem[i:i + limit - len(out)]
            at += len(mem)
        return out

    @property
    def learn_end(self) -> int:
        """The position after the learn log's last key (durable ones only)."""
        return self._learn_db_end + len(self._folding_learn) + len(self._pending_learn)


__all__ = ["LEARN_ROW_KEYS", "LEARN_SCHEMA", "LearnLogMixin", "learn_rows", "open_learn_log"]
