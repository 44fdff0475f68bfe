"""An SVG or HTML chart is not poured onto a terminal (issue 26, item 5).

``zpaxos sim --format html`` and ``zpaxos trace --format svg|html`` without ``--out`` are
refused with one line when stdout is a terminal, and still write to a pipe or a redirect.
The commands run as processes with stdout on a real pseudo-terminal, so the check under
test is the one the command makes, not a stand-in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pty = pytest.importorskip("pty")  # POSIX only

LOG = str(Path(__file__).parent / "data" / "trace_fixed.jsonl")
CASES = [
    (["sim", "--seed", "7", "--format", "html"], "html", "<!doctype html>"),
    (["sim", "--seed", "7", "--format", "svg"], "svg", "<svg"),
    (["trace", LOG, "--format", "html"], "html", "<!doctype html>"),
    (["trace", LOG, "--format", "svg"], "svg", "<svg"),
]
COMMAND = [sys.executable, "-c", "from zpaxos.cli import main; main()"]


def _on_terminal(args: list[str]) -> tuple[int, str, str]:
    """Run the command with stdout on a pseudo-terminal: exit code, what reached the
    terminal, and stderr. The terminal is read while the command runs, as a terminal
    would be, so a command that floods it does not block on a full buffer."""
    master, slave = pty.openpty()
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other end is closed and drained
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        p = subprocess.run(COMMAND + args, stdout=slave, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=120)
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    return p.returncode, shown.decode(errors="replace"), p.stderr.decode()


@pytest.mark.parametrize("args,fmt,head", CASES, ids=[" ".join(c[0][:1] + c[0][-2:])
                                                      for c in CASES])
def test_refused_on_a_terminal(args, fmt, head):
    code, shown, err = _on_terminal(args)
    ext = ".html" if fmt == "html" else ".svg"
    assert code == 2, (code, err)
    [line] = err.strip().splitlines()
    assert line.startswith(
        f"zpaxos {args[0]}: error: --format {fmt}: not printed on a terminal; add --out"
        f" chart{ext} (or redirect: > chart{ext})"), line
    assert "Traceback" not in err and head not in shown and len(shown) < 200


@pytest.mark.parametrize("args,fmt,head", CASES[::2], ids=["sim", "trace"])
def test_written_to_a_pipe(args, fmt, head):
    p = subprocess.run(COMMAND + args, capture_output=True, stdin=subprocess.DEVNULL,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().lstrip().startswith(head)
