"""Real clusters for end-to-end tests: node processes on free loopback ports.

Process handling lives in zpaxos.launcher (shared with the scenario runner); this adds
what tests need: free ports, a generated cluster file in a temporary directory, and
helpers to read the JSON log. The fixture stops every process, pass or fail.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from zpaxos.launcher import PACKAGE_ROOT, LocalCluster, Result, child_env, wait_for, zpaxos_cmd

ROOT = PACKAGE_ROOT
env = child_env
__all__ = ["ROOT", "Cluster", "Result", "env", "free_ports", "zpaxos_cmd"]


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


def write_config(workdir: Path, n: int, proposer: str = "", log_level: str = "INFO") -> Path:
    lines = []
    for i, port in enumerate(free_ports(n)):
        lines += [f"[node.{i}]", "host = 127.0.0.1", f"port = {port}",
                  f"data_dir = data/node{i}", ""]
    lines += ["[proposer]", proposer or "timeout_s = 5\nround_timeout_s = 0.5\n"
              "max_rounds = 10\nbackoff_s = 0.05", "",
              "[log]", "file = paxos.log", f"level = {log_level}", "format = json", ""]
    path = workdir / "cluster.ini"
    path.write_text("\n".join(lines))
    return path


class Cluster(LocalCluster):
    """N nodes on free ports in ``workdir``; they log JSON to workdir/paxos.log."""

    def __init__(self, workdir: Path, n: int = 3, proposer: str = "", log_level: str = "INFO"):
        super().__init__(write_config(workdir, n, proposer, log_level), workdir, range(n))
        self.n = n
        from zpaxos.config import load_config

        self.ports = [node.port for node in load_config(self.config).nodes]

    def stop_all(self) -> None:
        self.close()

    def node_state(self, i: int, key: str = "CISC5597") -> dict | None:
        return super().node_state(i, key)

    @staticmethod
    def wait_for(predicate, what: str, timeout_s: float = 20.0):
        return wait_for(predicate, what, timeout_s)

    def log_events(self) -> list[dict]:
        path = self.dir / "paxos.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def value_file(self, i: int, key: str = "CISC5597") -> Path:
        return self.dir / "data" / f"node{i}" / f"{key}.txt"
