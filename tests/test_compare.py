"""bench/compare.py runs end to end (a --quick smoke run): it would fail here if the
comparison broke. PySyncObj is the ``bench`` extra, which tests/setup.sh installs; where it
is not installed the tests skip, saying so in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import bench_module
from zpaxos.lab.launcher import child_env

ROOT = Path(__file__).resolve().parent.parent


def test_without_pysyncobj_it_says_so_in_one_line_and_exits_3(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "--registers",
                        "--quick", "--venv", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=60, env=child_env())
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr == (f"compare.py: PySyncObj is not installed for the venv {tmp_path}/none: "
                        f"pip install -e '.[bench]' (tests/setup.sh does)\n")


def test_compare_quick_reports_both_systems_and_the_ratios():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "--quick", "--json"],
                       capture_output=True, text=True, timeout=900, env=child_env())
    if r.returncode == 3:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for system in ("zpaxos", "pysyncobj"):
        figures = out[system]
        assert figures["seq_p50_ms"] > 0 and figures["thr_client"] > 0
        assert figures["thr_best"] >= figures["thr_client"]
    for k, ratio in out["ratios"].items():
        assert ratio > 0, k
    assert "PySyncObj does not fsync" in out["note"]
    text = bench_module("compare").report(out)
    assert "sequential p50, separate client" in text and "PySyncObj does not fsync" in text


def test_compare_registers_quick_reports_set_get_cas_and_the_ratios():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "--registers",
                        "--quick", "--json"],
                       capture_output=True, text=True, timeout=900, env=child_env())
    if r.returncode == 3:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for system in ("zpaxos", "pysyncobj"):
        for k in ("set_p50_ms", "get_p50_ms", "cas_p50_ms", "set_thr"):
            assert out[system][k] > 0, (system, k)
    assert set(out["ratios"]) == {"set_p50_ms", "get_p50_ms", "cas_p50_ms", "set_thr"}
    assert "not linearizable" in out["note"] and "PySyncObj does not fsync" in out["note"]
    text = bench_module("compare_registers").report(out)
    assert "sequential cas p50" in text and "local read" in text


@pytest.mark.slow  # a benchmark's smoke run (CI runs it)
def test_locks_quick_reports_both_systems_contended_and_not():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "locks.py"), "--quick", "--json"],
                       capture_output=True, text=True, timeout=900, env=child_env())
    if r.returncode == 3:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for case in ("uncontended", "contended"):
        for system in ("zpaxos", "pysyncobj"):
            f = out[case][system]
            assert f["acquire_p50_ms"] > 0 and f["release_p99_ms"] >= f["release_p50_ms"] > 0
        assert all(ratio > 0 for ratio in out[case]["ratios"].values())
    # Every one of the 8 contenders got the lock at least once, in both systems.
    assert out["contended"]["zpaxos"]["fewest"] >= 1
    assert out["contended"]["pysyncobj"]["fewest"] >= 1
    assert "synchronized clocks" in out["note"]
    text = bench_module("locks").report(out)
    assert "8 processes, one lock: hand-overs" in text and "1 process: acquire p50" in text
