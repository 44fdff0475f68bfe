"""The store's interface in memory: for tests and the simulator; what a crash keeps is what
was saved."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable

from zpaxos.hosts.keyrange import SortedKeys
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import Ballot
from zpaxos.protocol.regmessages import REGISTER_PREFIX
from zpaxos.runtime.valuefiles import glob_matcher


class MemoryStore:
    """The same interface in memory: for tests, and what a crash keeps is what was saved."""

    def __init__(self) -> None:
        self.saved: dict[str, KeyState] = {}
        self.saved_ranges: dict[str, Ballot] = {}
        self.commits = 0
        self._keys = SortedKeys()  # saved only ever gains keys
        self.incarnation = os.urandom(16)
        self.learn_log: list[str] = []  # chosen keys and slots as written (SqliteStore's)

    @property
    def commit_seq(self) -> int:
        return self.commits

    def load(self) -> dict[str, KeyState]:
        return dict(self.saved)

    def get(self, keys: Collection[str]) -> dict[str, KeyState]:
        return {k: self.saved[k] for k in keys if k in self.saved}

    def page(self, after: str, limit: int, chosen_only: bool = False
             ) -> list[tuple[str, KeyState]]:
        """In key order (sorted here: the in-memory twin is for tests, not for scale)."""
        keys = sorted(k for k, s in self.saved.items()
                      if k > after and (not chosen_only or s.chosen is not None))
        return [(k, self.saved[k]) for k in keys[:limit]]

    def prefixed(self, prefix: str, limit: int) -> list[tuple[str, KeyState]]:
        """Up to ``limit`` states of the keys that start with ``prefix``, in key order:
        only the range's keys (found in a sorted list of the keys, kept while no key is
        added)."""
        return self._keys.prefixed(self.saved, prefix)[:limit]

    def chosen_matching(self, pattern: str) -> list[tuple[str, bytes]]:
        match = glob_matcher(pattern)
        return [(k, s.chosen) for k, s in sorted(self.saved.items())
                if s.chosen is not None and match(k)]

    def count_chosen(self) -> int:
        return sum(1 for s in self.saved.values() if s.chosen is not None)

    def count(self, prefix: str = "") -> int:
        return sum(k.startswith(prefix) for k in self.saved) if prefix else len(self.saved)

    def timed(self, fsync: Callable[[float], None], fold: Callable[[float], None]) -> None:
        """Nothing is fsynced or folded in memory: nothing to report."""

    def learned_from(self, pos: int, limit: int) -> list[str]:
        """As SqliteStore.learned_from."""
        return self.learn_log[pos:pos + limit]

    def load_ranges(self) -> dict[str, Ballot]:
        return dict(self.saved_ranges)

    def save(self, batch: Iterable[tuple[str, KeyState]],
             ranges: Iterable[tuple[str, Ballot]] = ()) -> None:
        rows = list(batch)
        range_rows = list(ranges)
        if rows or range_rows:
            self.saved.update(rows)
            self.saved_ranges.update(range_rows)
            self.commits += 1
            self.learn_log += [k for k, st in rows
                               if st.chosen is not None or k[:1] == REGISTER_PREFIX]

    def seal(self) -> None:
        """Nothing to do: what save() keeps is all there is."""

    @property
    def folding(self) -> bool:
        """Nothing is ever folded in memory."""
        return False

    def close(self) -> None:
        pass


__all__ = ["MemoryStore"]
