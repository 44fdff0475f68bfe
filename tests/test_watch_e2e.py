"""Watch end to end: a real `zpaxos watch` process, a writer with its own Client, kill -9.

The watch's reports are checked against the writer's history with the extended checker
(lincheck.check_watch): versions go up, every state reported was written, every gap is
declared; and the watch reaches the last version although a node was killed meanwhile.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.harness import Cluster
from zpaxos.client import Client, load_config
from zpaxos.lab.launcher import zpaxos_cmd
from zpaxos.runtime.watch import READ_GAP_S
from zpaxos.sim.lincheck import Op, Seen, check, check_watch

pytestmark = pytest.mark.e2e


class Watcher:
    """``zpaxos watch NAME --json`` in its own process; its lines, timed as they arrive."""

    def __init__(self, cluster: Cluster, name: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            zpaxos_cmd("watch", name, "--json", *args, "--config", str(cluster.config)),
            cwd=cluster.dir, env=cluster.env, stdout=subprocess.PIPE, text=True)
        self.seen: list[Seen] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            d = json.loads(line)
            self.seen.append(Seen(time.monotonic(), d["version"],
                                  None if d["value"] is None else d["value"].encode(),
                                  tuple(d["skipped"]) if d["skipped"] else None))

    def wait_version(self, version: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not (self.seen and self.seen[-1].version >= version):
            assert time.monotonic() < deadline, f"watch stuck at {self.seen[-1:]}"
            time.sleep(0.01)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(5)


@pytest.fixture
def running(tmp_path: Path):
    c = Cluster(tmp_path, log_level="WARNING")
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


def write(c: Cluster, name: str, n: int, history: list[Op], kill_at: int = -1,
          gap_s: float = 0.0) -> None:
    with Client(load_config(c.config)) as client:
        for i in range(n):
            if i == kill_at:
                c.kill(1)  # kill -9 a node in the middle of the changes
            if kill_at >= 0 and i == kill_at + n // 3:
                c.start(1)
            value = f"v{i}".encode()
            t0 = time.monotonic()
            r = client.set(name, value)
            history.append(Op("writer", name, "set", t0, time.monotonic(), r.status,
                              r.version, r.value, value))
            time.sleep(gap_s)


def test_watch_reports_every_change_in_order_through_kill_9(running: Cluster) -> None:
    w = Watcher(running, "cfg")
    try:
        w.wait_version(0)  # the current state (absent) first
        history: list[Op] = []
        # Changes a little slower than a watcher reads (it coalesces faster ones).
        write(running, "cfg", 60, history, kill_at=20, gap_s=2 * READ_GAP_S)
        last = history[-1].version
        assert last == 60 and all(op.status == "ok" for op in history)
        w.wait_version(last)
    finally:
        code = w.stop()
    assert code == 130
    assert check(history) == (True, "")
    assert check_watch(history, w.seen, "cfg") == (True, "")
    assert len(w.seen) > 10  # it reported changes as they happened, not only the last


def test_from_version_reports_what_it_skipped(running: Cluster) -> None:
    history: list[Op] = []
    write(running, "fv", 5, history)
    w = Watcher(running, "fv", "--from-version", "2")
    try:
        w.wait_version(5)
    finally:
        w.stop()
    assert w.seen[0].version == 5 and w.seen[0].skipped == (2, 4)
    assert check_watch(history, w.seen, "fv", from_version=2) == (True, "")
