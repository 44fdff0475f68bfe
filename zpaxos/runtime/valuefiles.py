"""``<data_dir>/<key>.txt``: a readable view of chosen values, like the lab's CISC5597.txt.

The database is the source of truth; these files are derived from it (and rebuilt from it
when the node starts), so they need no fsync and are written by a background thread,
off the node's event loop. ``value_files`` (a glob) picks which keys get a file.

Off the hot path, in two ways:

* a key outside the glob costs one precompiled match (an empty glob: one truth test), and
  at start only the keys matching the glob are read from the database
  (:meth:`rebuild` is given just those);
* a key inside it is *coalesced*: :meth:`submit` only records the latest value per key in
  a pending table; the writer thread takes the whole table in one pass and writes each
  file once, however many decisions (or a start's rebuild and a decision) named it
  meanwhile. At thousands of decisions per second the loop never waits on a file, and a
  file is never rewritten with the content it already holds.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from zpaxos.runtime.faults import crash_point
from zpaxos.runtime.log import EventLog

_GLOB_CHARS = frozenset("*?[")


def value_file(data_dir: Path, key: str) -> Path:
    return Path(data_dir) / f"{key}.txt"


def glob_matcher(pattern: str) -> Callable[[str], bool]:
    """``fnmatchcase(key, pattern)``, compiled once: an empty glob matches nothing, a glob
    without wildcards is one string comparison."""
    if not pattern:
        return lambda key: False
    if not _GLOB_CHARS & set(pattern):
        return pattern.__eq__
    match = re.compile(fnmatch.translate(pattern)).match
    return lambda key: match(key) is not None


def sql_glob(pattern: str) -> str | None:
    """A SQLite GLOB that selects a superset of the keys ``pattern`` matches (SQLite can
    use the key index for its literal prefix), or None for "no key at all". The caller
    still filters with :func:`glob_matcher`: the two glob dialects differ on ``[!...]``."""
    if not pattern:
        return None
    cut = min((i for i, c in enumerate(pattern) if c in _GLOB_CHARS), default=len(pattern))
    prefix = pattern[:cut]
    if cut == len(pattern):
        return prefix.replace("[", "[[]")  # exact key (no wildcard here anyway)
    return "".join(f"[{c}]" if c in "*?[]" else c for c in prefix) + "*"


class ValueFiles:
    def __init__(self, data_dir: Path, pattern: str, log: EventLog) -> None:
        self.data_dir = Path(data_dir)
        self.pattern = pattern
        self.log = log
        self.written = 0  # files written (a file already holding its value is not)
        self.passes = 0  # writer passes that wrote at least one file
        self.wants = glob_matcher(pattern)
        self._pending: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        if pattern:
            self._thread = threading.Thread(target=self._run, name="value-files", daemon=True)
            self._thread.start()

    @property
    def backlog(self) -> int:
        """Files waiting to be written."""
        return len(self._pending)

    def submit(self, key: str, value: bytes) -> None:
        if self.wants(key):
            with self._lock:
                self._pending[key] = value
            self._wake.set()

    def rebuild(self, chosen: Iterable[tuple[str, bytes]]) -> None:
        """At start: make every file agree with the database (done off the loop)."""
        for key, value in chosen:
            self.submit(key, value)

    def close(self) -> None:
        """Write what is pending, then stop the thread."""
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._pending = self._pending, {}
            wrote = sum(self._write(k, v) for k, v in batch.items())
            self.passes += wrote > 0
            if self._closing and not self._pending:
                return

    def _write(self, key: str, value: bytes) -> bool:
        path = value_file(self.data_dir, key)
        content = value + b"\n"
        try:
            try:
                if path.stat().st_size == len(content) and path.read_bytes() == content:
                    return False
            except FileNotFoundError:
                pass
            tmp = path.with_name(f".{key}.txt.tmp")
            with open(tmp, "wb") as f:
                half = len(content) // 2
                f.write(content[:half])
                crash_point("mid_value_write")  # tests only: a half-written temporary copy
                f.write(content[half:])
            os.replace(tmp, path)  # atomic: a reader sees the old file or the new one
            self.written += 1
            self.log.event("value_file", key=key, file=str(path), value=value)
            return True
        except OSError as e:
            self.log.event("value_file_failed", str(e), logging.ERROR, key=key, file=str(path))
            return False
