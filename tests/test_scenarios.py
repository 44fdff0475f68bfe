"""The scenario runner behind run_scenarios.sh: every scenario passes on a real cluster,
and it leaves nothing running, whether it finishes or is interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT, env
from zpaxos.lab.launcher import free_ports, write_config

pytestmark = pytest.mark.e2e


def runner(config: Path, out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "zpaxos", "scenarios", "--config", str(config),
            "--out", str(out), *args]


def leftovers(config: Path) -> list[str]:
    """zpaxos processes still running from this test's directory (the runner writes its
    own copy of the config there)."""
    ps = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines()
            if str(config.parent) in line and "zpaxos" in line]


@pytest.fixture
def config(tmp_path):
    path = write_config(tmp_path / "cluster.ini",
                        [("127.0.0.1", p) for p in free_ports(3)])
    yield path
    for line in leftovers(path):  # never leave a node behind, even if the test failed
        os.kill(int(line.split()[0]), signal.SIGKILL)


@pytest.mark.slow  # a minute: ./run_scenarios.sh runs them all anyway
def test_every_scenario_passes_and_nothing_is_left_running(tmp_path, config):
    out = tmp_path / "out"
    r = subprocess.run(runner(config, out), cwd=tmp_path, env=env(), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "15 of 15 scenarios passed" in r.stdout
    table = r.stdout.split("\nwhat happened:")[0].rsplit("SCENARIO", 1)[1]
    for line in table.strip().splitlines()[1:16]:
        assert line.rstrip().endswith("pass"), line
    for i in range(3):
        assert (out / "data" / f"node{i}" / "CISC5597.txt").read_text() == "Value_A\n"
        # scenario 11's key (scenario 1 chose CISC5597): node2 caught up on it
        assert (out / "data" / f"node{i}" / "CISC5597-paused.txt").read_text() == "Value_A\n"
    charts = sorted(p.name for p in out.glob("*.svg"))
    assert len(charts) == 15 and "5-page25.svg" in charts and "10-cas-race.svg" in charts
    assert "12-lock-handover.svg" in charts
    assert "13-grow.svg" in charts
    assert "caught up: 1 key from" in (out / "11-paused-catch-up.svg").read_text()
    assert not leftovers(config)


def _as_from_a_terminal() -> None:
    """Ctrl-C as a terminal delivers it: a test suite started in the background (``cmd &``
    in a script, nohup) ignores SIGINT, and its children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal_state(pid: int) -> str:
    """The runner's (and this process's) blocked, ignored and caught signals."""
    out = []
    for who in (str(pid), "self"):
        try:
            lines = Path(f"/proc/{who}/status").read_text().splitlines()
        except OSError:
            continue
        out += [f"{who}: {ln}" for ln in lines if ln.startswith(("State", "Sig"))]
    return "\n".join(out) + "\n"


def test_ctrl_c_stops_every_node(tmp_path, config):
    p = subprocess.Popen(runner(config, tmp_path / "out", "6", "--no-charts"), cwd=tmp_path,
                         env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, preexec_fn=_as_from_a_terminal)
    try:
        assert p.stdout is not None
        for line in p.stdout:  # wait until the cluster is up and the duel has begun
            if line.startswith("[6]"):
                break
        assert len(leftovers(config)) >= 3  # three nodes (and proposers) are running
        signals = _signal_state(p.pid)  # shown if it does not stop
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        # Read both pipes while waiting: a runner blocked writing to a full pipe is not a
        # runner that ignored Ctrl-C.
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            pytest.fail("the runner did not stop within 60 s of Ctrl-C:\n" + signals
                        + out[-2000:] + err[-4000:])
    finally:
        if p.poll() is None:  # the test failed: take down the runner and its nodes at once
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 130, out[-2000:] + err[-4000:]
    assert "interrupted" in err
    assert not leftovers(config)


def test_list_and_bad_numbers(tmp_path, config):
    script = ROOT / "run_scenarios.sh"
    r = subprocess.run([str(script), "--list"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 15 and "page25" in r.stdout
    r = subprocess.run(runner(config, tmp_path / "out", "16"), env=env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "no scenario 16" in r.stderr
