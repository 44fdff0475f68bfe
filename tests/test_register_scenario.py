"""The lab's register scenario (10, cas-race) on a real cluster: it passes, its chart
shows the versions, and the default lab run is still the nine write-once scenarios."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import env
from tests.test_scenarios import config, leftovers  # noqa: F401  (the fixture)

pytestmark = pytest.mark.e2e


def test_cas_race_passes_and_its_chart_shows_versions(tmp_path, config):  # noqa: F811
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "zpaxos", "scenarios", "--config", str(config),
                        "--out", str(out), "10"], cwd=tmp_path, env=env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 of 1 scenarios passed" in r.stdout and "one per version" in r.stdout
    chart = (out / "10-cas-race.svg").read_text()
    assert "RACCEPT" in chart and "v1=" in chart and "v2=" in chart
    assert not leftovers(config)


def test_every_run_lists_the_lab_the_register_the_catch_up_the_lock_and_the_member_scenarios(
        tmp_path):
    run = [sys.executable, "-m", "zpaxos", "scenarios", "--list"]
    listed = subprocess.run(run, env=env(), capture_output=True, text=True, timeout=60).stdout
    lines = listed.splitlines()
    assert len(lines) == 15 and lines[0].startswith("1  single")
    assert lines[9].startswith("10  cas-race") and lines[10].startswith("11  paused-catch-up")
    assert lines[11].startswith("12  lock-handover")
    assert [line.split()[1] for line in lines[12:]] == ["grow", "remove", "replace"]
