"""``<data_dir>/<key>.txt``: a readable view of chosen values, like the lab's CISC5597.txt.

The database is the source of truth; these files are derived from it (and rebuilt from it
when the node starts), so they need no fsync and are written by a background thread,
off the node's event loop. ``value_files`` (a glob) picks which keys get a file.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import queue
import threading
from collections.abc import Iterable
from pathlib import Path

from zpaxos.runtime.faults import crash_point
from zpaxos.runtime.log import EventLog


def value_file(data_dir: Path, key: str) -> Path:
    return Path(data_dir) / f"{key}.txt"


class ValueFiles:
    def __init__(self, data_dir: Path, pattern: str, log: EventLog) -> None:
        self.data_dir = Path(data_dir)
        self.pattern = pattern
        self.log = log
        self.written = 0
        self._q: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="value-files", daemon=True)
        self._thread.start()

    def wants(self, key: str) -> bool:
        return bool(self.pattern) and fnmatch.fnmatchcase(key, self.pattern)

    def submit(self, key: str, value: bytes) -> None:
        if self.wants(key):
            self._q.put((key, value))

    def rebuild(self, chosen: Iterable[tuple[str, bytes]]) -> None:
        """At start: make every file agree with the database (done off the loop)."""
        for key, value in chosen:
            self.submit(key, value)

    def close(self) -> None:
        """Write what is pending, then stop the thread."""
        self._q.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:  # close() asked us to stop
                return
            self._write(*item)

    def _write(self, key: str, value: bytes) -> None:
        path = value_file(self.data_dir, key)
        content = value + b"\n"
        try:
            if path.is_file() and path.read_bytes() == content:
                return
            tmp = path.with_name(f".{key}.txt.tmp")
            with open(tmp, "wb") as f:
                half = len(content) // 2
                f.write(content[:half])
                crash_point("mid_value_write")  # tests only: a half-written temporary copy
                f.write(content[half:])
            os.replace(tmp, path)  # atomic: a reader sees the old file or the new one
            self.written += 1
            self.log.event("value_file", key=key, file=str(path), value=value)
        except OSError as e:
            self.log.event("value_file_failed", str(e), logging.ERROR, key=key, file=str(path))
