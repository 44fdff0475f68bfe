"""The keys of a range (every key that starts with a prefix), found by a seek, not a walk.

A RangePrepare must look at every key of its range that a node holds (the acceptor rule in
:mod:`zpaxos.protocol.ranges`), and at nothing else: a walk from the prefix on reads
every key that merely sorts after it, thousands of rows per request. The stores read their
rows with ``prefix <= key < prefix_end(prefix)`` down the primary key's index; the states
that wait in memory (the journal's, the learned decisions waiting for a commit) are found
through :class:`SortedKeys`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from typing import TypeVar

from zpaxos.protocol.ranges import prefix_end

V = TypeVar("V")


def span(sorted_keys: list[str], prefix: str) -> tuple[int, int]:
    """Where the keys that start with ``prefix`` lie in ``sorted_keys``: two binary
    searches (``lo:hi``; a lone surrogate there would not start with it, see in_range)."""
    lo = bisect.bisect_left(sorted_keys, prefix)
    end = prefix_end(prefix)
    return lo, len(sorted_keys) if end is None else bisect.bisect_left(sorted_keys, end, lo)


def in_range(sorted_keys: list[str], prefix: str) -> list[str]:
    """The keys of ``sorted_keys`` that start with ``prefix``."""
    lo, hi = span(sorted_keys, prefix)
    # Every key in [prefix, end) starts with prefix; the test keeps that exact even for
    # a key no store can hold (a lone surrogate, which prefix_end skips).
    return [k for k in sorted_keys[lo:hi] if k.startswith(prefix)]


class SortedKeys:
    """A sorted list of a dict's keys, for range lookups in it, sorted again only when the
    dict changed: another dict, or another size. That is exact for the dicts it serves,
    which only ever gain keys until they are replaced whole or emptied, and an owner that
    empties one calls :meth:`reset`."""

    def __init__(self) -> None:
        self._of: Mapping[str, object] | None = None  # kept alive, so never a reused id
        self._len = -1
        self._keys: list[str] = []

    def reset(self) -> None:
        self._of, self._len, self._keys = None, -1, []

    def prefixed(self, d: Mapping[str, V], prefix: str) -> list[tuple[str, V]]:
        """The (key, value) pairs of ``d`` whose key starts with ``prefix``, in key order."""
        if not d:
            return []
        if d is not self._of or len(d) != self._len:
            self._of, self._len, self._keys = d, len(d), sorted(d)
        return [(k, d[k]) for k in in_range(self._keys, prefix)]


def merge(rows: Iterable[tuple[str, V]], newer: Iterable[tuple[str, V]],
          limit: int) -> list[tuple[str, V]]:
    """``rows`` with ``newer`` laid over them (a key's newer state wins), the first
    ``limit`` in key order."""
    merged = dict(rows)
    merged.update(newer)
    return sorted(merged.items())[:limit]


__all__ = ["SortedKeys", "in_range", "merge", "span"]
