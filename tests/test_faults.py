"""zpaxos.runtime.faults: crash points armed by the environment, inert without it."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import ROOT, env
from zpaxos.runtime import faults

PROGRAM = """
import sys
from zpaxos.runtime.faults import crash_point
for i in range(1, 6):
    crash_point("before_commit")
    crash_point("after_commit")
    print(i, flush=True)
"""


def run(extra: dict[str, str]) -> subprocess.CompletedProcess:
    e = env()
    e.update(extra)
    return subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=30)


def test_inert_without_the_environment(monkeypatch):
    monkeypatch.delenv(faults.ENV_AT, raising=False)
    for name in faults.CRASH_POINTS:
        faults.crash_point(name)  # returns


def test_crashes_at_the_named_point_after_n_hits():
    r = run({faults.ENV_AT: "after_commit", faults.ENV_AFTER: "3"})
    assert r.returncode == faults.CRASH_EXIT_CODE
    assert r.stdout.split() == ["1", "2"]  # the third after_commit never printed
    assert "crash point after_commit (hit 3)" in r.stderr


def test_first_hit_by_default_and_other_points_untouched():
    assert run({faults.ENV_AT: "before_commit"}).stdout == ""
    r = run({faults.ENV_AT: "mid_value_write"})
    assert r.returncode == 0 and r.stdout.split() == ["1", "2", "3", "4", "5"]
