"""docs/locks.md is true: its commands print what its output block shows, and its Python
runs as shown, on a fresh cluster of the shipped configs/cluster.ini (on free ports, run
from a directory holding it at the same relative path, as a reader's checkout does)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT, env, free_ports
from zpaxos.lab.launcher import LocalCluster, zpaxos_cmd

pytestmark = pytest.mark.e2e

PAGE = (ROOT / "docs" / "locks.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", PAGE, re.M | re.S)


def block(lang: str) -> str:
    found = [code for kind, code in BLOCKS if kind == lang]
    assert len(found) == 1, f"docs/locks.md has {len(found)} {lang} blocks"
    return found[0]


def numbers(text: str) -> str:
    """``text`` as a pattern in which every number may be any number (tokens and terms
    depend on the cluster's history)."""
    return re.sub(r"\d+", r"\\d+", re.escape(text))


@pytest.fixture
def reader_dir(tmp_path: Path) -> Iterator[Path]:
    text = (ROOT / "configs" / "cluster.ini").read_text()
    for old, new in zip((5001, 5002, 5003), free_ports(3), strict=True):
        text = text.replace(f"port = {old}", f"port = {new}")
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "cluster.ini"
    config.write_text(text)
    with LocalCluster(config, tmp_path, range(3)) as c:
        c.start_all()
        yield tmp_path


def test_commands_print_what_the_page_shows(reader_dir: Path) -> None:
    out = []
    for line in block("bash").splitlines():
        args = shlex.split(line)
        assert args[0] == "zpaxos"
        r = subprocess.run(zpaxos_cmd(*args[1:]), cwd=reader_dir, env=env(),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (line, r.stderr)
        out.append(r.stdout)
    shown = block("text")
    assert re.fullmatch(numbers(shown), "".join(out)), "".join(out)


def test_python_runs_as_shown(reader_dir: Path) -> None:
    r = subprocess.run([sys.executable, "-c", block("python")], cwd=reader_dir, env=env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # What the comments say it prints.
    assert re.fullmatch(r"token (\d+) refused: (\d+) was seen\nTrue\nNone\n", r.stdout), \
        r.stdout
    first, later = map(int, re.findall(r"\d+", r.stdout))
    assert later > first


def test_the_number_pattern_can_fail() -> None:
    assert re.fullmatch(numbers("term 3)\n"), "term 12)\n")
    assert not re.fullmatch(numbers("term 3)\n"), "term x)\n")
