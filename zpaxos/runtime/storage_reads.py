"""The store's reads of ``state.db`` (:class:`ReadsMixin`): every state at start, and the
lazy reads a node with a million keys makes instead (a batch's keys, a page, a range),
each row's checksum verified, with what the journals hold laid over the database's rows
(the passes' journal over the fold under way, over state.db).

Its own module because reading is the store's other half: nothing here writes, and every
read goes through :meth:`ReadsMixin._verified`, so a row changed on disk stops the node
before anyone votes on it. :class:`~zpaxos.runtime.storage.SqliteStore` inherits the
mixin, so a read costs no extra call.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zpaxos.hosts.keyrange import SortedKeys, merge
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import Ballot
from zpaxos.protocol.ranges import prefix_end
from zpaxos.runtime.rows import checksum, state_of
from zpaxos.runtime.storage_errors import (
    StateDamaged,
    damaged,
    from_sqlite_error,
    rescue,
)
from zpaxos.runtime.storage_schema import COLUMNS
from zpaxos.runtime.valuefiles import glob_matcher, sql_glob

_SELECT = ", ".join(COLUMNS)
_IN_CHUNK = 500  # keys per "IN (...)" query (SQLite's variable limit is far above)


class ReadsMixin:
    """Part of :class:`~zpaxos.runtime.storage.SqliteStore`: its reads."""

    path: Path
    _db: sqlite3.Connection | None
    _pending: dict[str, KeyState]  # what the journal holds that state.db does not yet
    _pending_keys: SortedKeys
    _folding: dict[str, KeyState]  # the fold under way (older than _pending)
    _folding_keys: SortedKeys

    if TYPE_CHECKING:  # the store's own (storage.py)
        def _fold(self) -> None: ...

    def load(self) -> dict[str, KeyState]:
        """Every key's state, each row's checksum verified (StateDamaged names the key)."""
        self._fold()
        assert self._db is not None
        try:
            rows = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM acceptor").fetchall()
        except sqlite3.Error as e:
            raise from_sqlite_error(self.path, e) from None
        bad = [r[0] for r in rows if checksum(r[:-1]) != bytes(r[-1])]
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise StateDamaged(rescue(f"{self.path}: the state of key {bad[0]!r}{more} fails "
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
                raise StateDamaged(rescue(f"{self.path}: the state of key {r[0]!r} fails its "
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
        pending, folding = self._pending, self._folding
        out = {k: pending[k] for k in keys if k in pending}
        if folding:
            out.update({k: folding[k] for k in keys if k in folding and k not in out})
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
        # With what the journals hold (newer than the database's rows): the first
        # ``limit`` keys overall are among these sets. Merged rather than folded, so a
        # peer walking the pages does not cost a fold (three fsyncs) per page.
        extra = [(k, st) for d in (self._folding, self._pending) for k, st in d.items()
                 if k > after and (not chosen_only or st.chosen is not None)]
        if not extra:
            return rows
        merged = dict(rows)
        merged.update(extra)  # the fold's, then the newer journal's
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
        folding = self._folding_keys.prefixed(self._folding, prefix)
        if folding:
            states = merge(states, folding, len(states) + len(folding))
        extra = self._pending_keys.prefixed(self._pending, prefix)
        return merge(states, extra, limit) if extra else states[:limit]

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
            raise StateDamaged(rescue(f"{self.path}: the range promise for {bad[0]!r}* fails "
                                      f"its checksum (changed on disk)"))
        try:
            return {r[0]: Ballot(r[1], bytes(r[2])) for r in rows}
        except (TypeError, ValueError) as e:
            raise damaged(self.path, f"cannot read range promises: {e}") from None


__all__ = ["ReadsMixin"]
