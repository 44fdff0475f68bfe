"""bench/watch_load.py runs end to end (a smoke run: a few watchers, short phases) and
prints its verdict line; the figures themselves are the benchmark's, not a test's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "watch_load.py"


@pytest.mark.parametrize("how", [[], ["--separate", "--messages", "--nice", "5"]])
def test_the_watch_load_benchmark_runs_and_reports_its_ratio(how: list[str]) -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--watchers", "4", "--processes", "2",
                          "--seconds", "0.3", "--rounds", "1", "--settle", "0", *how],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "write rate with 4 watchers / with none, per round: median" in out.stdout
    assert "states given to the watchers:" in out.stdout
    if "--messages" in how:  # the nodes' counters, read from their metrics (the writes';
        # whether a watcher's RWATCH falls in a 0.3 s phase is chance: renewals are 30 s)
        assert "messages the nodes received per write" in out.stdout
        assert "raccept/accepted" in out.stdout
