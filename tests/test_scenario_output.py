"""The scenario runner's output: a summary that fits 100 columns, and charts that
survive runs of other scenarios."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import env
from zpaxos.lab.launcher import free_ports, write_config
from zpaxos.lab.scenarios import SCENARIOS, Row, fresh_workdir, summary


def test_summary_fits_100_columns_and_cuts_nothing_off():
    happened = ("Value_A chosen; the later proposer adopted it: already chosen (told by node0); "
                "and a note long enough to need a second line, and a third one, too, to be "
                "sure: with every word of it kept")
    rows = [Row(i, slug, title, happened + f" #{i}", "Value_A", "1+2", 12.25, i != 8,
                f"out/scenarios/{i}-{slug}.svg")
            for i, (slug, title, _) in enumerate(SCENARIOS, 1)]
    text = summary(rows)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert lines[0] == "#  SCENARIO       CHOSEN   ROUNDS  TIME   RESULT"
    assert lines[1] == "1  single         Value_A  1+2     12.2s  pass"
    assert [line.split()[-1] for line in lines[1:10]] == ["pass"] * 7 + ["FAIL", "pass"]
    flat = " ".join(text.split())
    for i in range(1, 10):
        assert f"{i} {happened} #{i}" in flat and f"out/scenarios/{i}-" in flat
    assert lines[-1] == "8 of 9 scenarios passed"


def test_a_fresh_workdir_keeps_the_charts(tmp_path):
    (tmp_path / "data" / "node0").mkdir(parents=True)
    for name in ("paxos.log", "cluster.ini", "1-single.svg", "5-page25.svg"):
        (tmp_path / name).write_text("old")
    fresh_workdir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1-single.svg", "5-page25.svg"]


@pytest.mark.e2e
def test_running_one_scenario_keeps_the_other_charts(tmp_path):
    config = write_config(tmp_path / "cluster.ini", [("127.0.0.1", p) for p in free_ports(3)])
    out = tmp_path / "out"
    out.mkdir()
    for name in ("1-single.svg", "5-page25.svg"):
        (out / name).write_text("old")
    r = subprocess.run([sys.executable, "-m", "zpaxos", "scenarios", "--config", str(config),
                        "--out", str(out), "1"], cwd=tmp_path, env=env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "5-page25.svg").read_text() == "old"
    assert (out / "1-single.svg").read_text().startswith("<svg")
    table = r.stdout.split("\n#  SCENARIO")[1].split("charts:")[0]  # the paths are tmp's
    assert max(len(line) for line in table.splitlines()) <= 100
