"""A one-line progress bar for ``zpaxos bench``, drawn only on a terminal.

Written to stderr, redrawn at most ``every_s`` apart (a redraw per decision would cost
the run being measured), and wiped when done; when stderr is a pipe or a file it draws
nothing at all, so a report piped into a file or another program stays clean.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None,
                 every_s: float = 0.1, force: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.on = force or self.stream.isatty()
        # total 0: unknown (an export): the count and the rate, without a bar
        self.label, self.total, self.every_s = label, total, every_s
        self.done = 0
        self._next = 0.0
        self._t0 = time.monotonic()

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.on and (time.monotonic() >= self._next or self.done == self.total):
            self._draw()

    def _draw(self) -> None:
        now = time.monotonic()
        self._next = now + self.every_s
        rate = self.done / max(now - self._t0, 1e-9)
        if self.total <= 0:
            self.stream.write(f"\r{self.label} {self.done:,} ({rate:,.0f}/s)\x1b[K")
        else:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * WIDTH)
            self.stream.write(f"\r{self.label} [{bar:<{WIDTH}}] {self.done}/{self.total} "
                              f"({rate:,.0f}/s)\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.on:
            self.stream.write("\r\x1b[K")  # wipe the line: the report follows
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
