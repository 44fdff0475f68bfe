"""Real clusters for end-to-end tests: node processes on free loopback ports.

Every process a test starts is registered here and stopped when the test ends, whether it
passed, failed or was interrupted (the pytest fixture's finalizer, plus an atexit hook as
a last resort).
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 15.0

_live: set[subprocess.Popen] = set()


def _reap_all() -> None:
    for p in list(_live):
        if p.poll() is None:
            p.kill()
            p.wait()
        _live.discard(p)


atexit.register(_reap_all)


def free_ports(n: int) -> list[int]:
    """Ports the kernel just handed out as free (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def zpaxos_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "zpaxos", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("ZPAXOS_CONFIG", None)
    return e


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        return json.loads(self.out)


class Cluster:
    """N nodes described by an INI file in ``workdir``; logs in JSON to workdir/paxos.log."""

    def __init__(self, workdir: Path, n: int = 3, proposer: str = "", log_level: str = "INFO"):
        self.dir = workdir
        self.n = n
        self.ports = free_ports(n)
        self.procs: dict[int, subprocess.Popen] = {}
        lines = []
        for i, port in enumerate(self.ports):
            lines += [f"[node.{i}]", "host = 127.0.0.1", f"port = {port}",
                      f"data_dir = data/node{i}", ""]
        lines += ["[proposer]", proposer or "timeout_s = 5\nround_timeout_s = 0.5\n"
                  "max_rounds = 10\nbackoff_s = 0.05", "",
                  "[log]", "file = paxos.log", f"level = {log_level}", "format = json", ""]
        self.config = workdir / "cluster.ini"
        self.config.write_text("\n".join(lines))

    # ---- nodes

    def start(self, i: int) -> subprocess.Popen:
        """Start node i and wait until it says it is listening."""
        assert i not in self.procs or self.procs[i].poll() is not None, f"node{i} is running"
        p = subprocess.Popen(zpaxos_cmd("node", str(i), "--config", str(self.config), "-q"),
                             cwd=self.dir, env=env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        _live.add(p)
        self.procs[i] = p
        line = self._read_line(p, START_TIMEOUT_S)
        if "listening on" not in line:
            p.kill()
            _, err = p.communicate()
            raise AssertionError(f"node{i} did not start: {line!r} {err}")
        return p

    def start_all(self) -> None:
        for i in range(self.n):
            self.start(i)

    @staticmethod
    def _read_line(p: subprocess.Popen, timeout_s: float) -> str:
        assert p.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout_s):
                return ""
            return p.stdout.readline()
        finally:
            sel.close()

    def kill(self, i: int, sig: int = signal.SIGKILL) -> int:
        p = self.procs[i]
        if p.poll() is None:
            p.send_signal(sig)
        code = p.wait(timeout=10)
        _live.discard(p)
        if p.stdout:
            p.stdout.close()
        if p.stderr:
            p.stderr.close()
        return code

    def stop(self, i: int) -> int:
        return self.kill(i, signal.SIGTERM)

    def stop_all(self) -> None:
        for i, p in list(self.procs.items()):
            if p.poll() is None:
                try:
                    self.stop(i)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            _live.discard(p)
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()

    # ---- commands

    def run(self, *args: str, timeout: float = 60) -> Result:
        r = subprocess.run(zpaxos_cmd(*args, "--config", str(self.config)), cwd=self.dir,
                           env=env(), capture_output=True, text=True, timeout=timeout)
        return Result(r.returncode, r.stdout, r.stderr)

    def propose(self, value: str, *args: str, timeout: float = 60) -> Result:
        return self.run("propose", value, "--json", "-q", *args, timeout=timeout)

    def propose_bg(self, value: str, *args: str) -> subprocess.Popen:
        p = subprocess.Popen(zpaxos_cmd("propose", value, "--json", "-q", *args,
                                        "--config", str(self.config)),
                             cwd=self.dir, env=env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        _live.add(p)
        return p

    @staticmethod
    def finish(p: subprocess.Popen, timeout: float = 60) -> Result:
        out, err = p.communicate(timeout=timeout)
        _live.discard(p)
        return Result(p.returncode, out, err)

    def status(self, key: str | None = None) -> dict:
        args = ["status", "--json"] + (["--key", key] if key else [])
        r = self.run(*args)
        assert r.code == 0, r.err
        return r.json

    def node_state(self, i: int, key: str = "CISC5597") -> dict | None:
        for node in self.status(key)["nodes"]:
            if node["id"] == i:
                return node["keys"].get(key) if node["reachable"] else None
        return None

    def wait_for(self, predicate, what: str, timeout_s: float = 20.0, every_s: float = 0.05):
        """Poll until ``predicate()`` is truthy (an awaited event, not a fixed sleep)."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(every_s)

    def log_events(self) -> list[dict]:
        path = self.dir / "paxos.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def value_file(self, i: int, key: str = "CISC5597") -> Path:
        return self.dir / "data" / f"node{i}" / f"{key}.txt"
