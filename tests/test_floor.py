"""bench/floor.py runs end to end (a --quick smoke run): the skeleton on zpaxos's stack,
zpaxos beside it, and whole short-lived processes; it would fail here if the floor
benchmark broke. PySyncObj is measured only when its venv is there (compare.py's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.harness import bench_module
from zpaxos.lab.launcher import child_env

ROOT = Path(__file__).resolve().parent.parent


def test_floor_quick_reports_the_skeleton_beside_zpaxos(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "floor.py"), "--quick", "--json",
                        "--venv", str(tmp_path / "no-pysyncobj-here")],
                       capture_output=True, text=True, timeout=600, env=child_env())
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    m = out["medians"]
    for k in ("floor_1phase_p50_ms", "floor_2phase_p50_ms", "zpaxos_fast_p50_ms",
              "zpaxos_2phase_p50_ms", "python_ms", "imports_ms", "floor_cli_ms",
              "zpaxos_propose_ms"):
        assert m[k] is not None and m[k] > 0, k
    assert m["pysyncobj_p50_ms"] is None  # no venv given: skipped, not invented
    text = bench_module("floor").report(out)
    assert "SKELETON (the floor)" in text and "whole propose process" in text
