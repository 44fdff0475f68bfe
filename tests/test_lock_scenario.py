"""Scenario 12 (lock-handover) on a real cluster: the paused holder is taken over, its
stale write is refused by its fencing token, and the chart shows the hand-over."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import env
from tests.test_scenarios import config, leftovers  # noqa: F401  (the fixture)

pytestmark = pytest.mark.e2e


def test_lock_handover_passes_and_its_chart_shows_the_holders(tmp_path, config):  # noqa: F811
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "zpaxos", "scenarios", "--config", str(config),
                        "--out", str(out), "12"], cwd=tmp_path, env=env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 of 1 scenarios passed" in r.stdout
    assert "refused by the resource" in r.stdout
    chart = (out / "12-lock-handover.svg").read_text()
    # Each RACCEPT of the lock's register says what it writes: A's holding, B waiting
    # behind it, then B's holding with its higher token.
    assert "=lock A #" in chart and "+1 waiting" in chart and "=lock B #" in chart
    assert "fate-lost\"" not in chart  # both holders log their side: no reply "lost"
    assert not leftovers(config)
