"""bench/register_calls.py runs end to end (a smoke run: a few calls); the figures are the
benchmark's, not a test's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "register_calls.py"


def test_the_register_calls_benchmark_runs_and_reports_each_kind() -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--calls", "20", "--rounds", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for kind in ("set", "get", "cas"):
        assert f"round 1 {kind}" in out.stdout and "us/call" in out.stdout
