"""The nemesis's node processes: one per network namespace, started, killed, paused and
watched for exits nobody asked for.

Every child process is tracked and killed at interpreter exit, whatever happened.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.nemesis.crashnode import MUTANT_ENV
from tests.nemesis.netns import Topology

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0

_children: set[subprocess.Popen] = set()


def _reap() -> None:
    for p in list(_children):
        with contextlib.suppress(OSError):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.wait(5)
        _children.discard(p)


atexit.register(_reap)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZPAXOS_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


class Nodes:
    """Node processes, each in its own namespace."""

    def __init__(self, topo: Topology, workdir: Path, mutant: str | None = None) -> None:
        self.topo = topo
        self.mutant = mutant
        self.dir = workdir
        self.procs: dict[int, subprocess.Popen] = {}
        self.expected_exit: dict[int, bool] = {}
        self.unexpected: list[str] = []
        self.starts = 0
        self.peak_rss_kb: dict[int, int] = {}
        self.lock = threading.Lock()

    def config(self, i: int) -> Path:
        return self.dir / f"node{i}.ini"

    def start(self, i: int, env: dict[str, str] | None = None, wait: bool = True) -> None:
        self.reap(i)
        self.starts += 1
        out = open(self.dir / f"node{i}.out", "a")
        out.write(f"--- start {time.time():.3f} env={env or {}}\n")
        out.flush()
        # A crash point (or a mutant) needs the shim until the runtime places crash points.
        module = "tests.nemesis.crashnode" if env or self.mutant else "zpaxos"
        extra = {**({MUTANT_ENV: self.mutant} if self.mutant else {}), **(env or {})}
        p = subprocess.Popen(
            [*self.topo.exec_prefix(self.topo.node_ns(i)), sys.executable, "-m", module,
             "node", str(i), "--config", str(self.config(i)), "-q"],
            cwd=self.dir, env=child_env(extra), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
        out.close()
        _children.add(p)
        with self.lock:
            self.procs[i] = p
            self.expected_exit[i] = bool(env)  # a crash point exits on purpose
        if wait:
            self.wait_listening(i, p)

    def wait_listening(self, i: int, p: subprocess.Popen) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        path = self.dir / f"node{i}.out"
        while time.monotonic() < deadline:
            tail = path.read_text(errors="replace").rsplit("--- start", 1)[-1]
            if "listening on" in tail:
                return
            if p.poll() is not None:
                if self.expected_exit.get(i):
                    return
                raise RuntimeError(f"node{i} exited at start ({p.returncode}): {tail[-500:]}")
            time.sleep(0.05)
        raise RuntimeError(f"node{i} did not start within {START_TIMEOUT_S:g} s")

    def running(self, i: int) -> bool:
        p = self.procs.get(i)
        return p is not None and p.poll() is None

    def signal(self, i: int, sig: int) -> None:
        p = self.procs.get(i)
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, sig)

    def sample_rss(self) -> None:
        """Note each running node's peak resident memory (VmHWM)."""
        for i, p in list(self.procs.items()):
            if p.poll() is None:
                with contextlib.suppress(OSError, ValueError):
                    for line in open(f"/proc/{p.pid}/status"):
                        if line.startswith("VmHWM:"):
                            kb = int(line.split()[1])
                            self.peak_rss_kb[i] = max(self.peak_rss_kb.get(i, 0), kb)

    def kill(self, i: int) -> None:
        self.sample_rss()
        with self.lock:
            self.expected_exit[i] = True
        self.signal(i, signal.SIGKILL)
        self.reap(i)

    def reap(self, i: int) -> None:
        p = self.procs.get(i)
        if p is None:
            return
        if p.poll() is None and self.expected_exit.get(i):
            p.wait(10)
        if p.poll() is not None:
            if not self.expected_exit.get(i) and p.returncode not in (0, -signal.SIGKILL):
                self.unexpected.append(f"node{i} exited with {p.returncode}")
            _children.discard(p)

    def check_unexpected(self) -> None:
        for i, p in list(self.procs.items()):
            if p.poll() is not None and not self.expected_exit.get(i):
                self.unexpected.append(f"node{i} exited with {p.returncode} (see node{i}.out)")
                self.expected_exit[i] = True  # report once

    def stop_all(self) -> None:
        for i in list(self.procs):
            self.signal(i, signal.SIGCONT)
            self.kill(i)
