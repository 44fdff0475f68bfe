"""Real clusters for end-to-end tests: node processes on free loopback ports.

Process handling lives in zpaxos.lab.launcher (shared with the scenario runner and the
benchmark); this adds what tests need: a cluster file on free ports in a temporary
directory, and helpers for the data directories. The fixture stops every process.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from zpaxos.lab.launcher import (
    PACKAGE_ROOT,
    LocalCluster,
    Result,
    child_env,
    free_ports,
    make_keys,
    wait_for,
    write_config,
    zpaxos_cmd,
)

ROOT = PACKAGE_ROOT
env = child_env
__all__ = ["ROOT", "Cluster", "Result", "bench_module", "env", "free_ports", "zpaxos_cmd"]


def bench_module(name: str) -> ModuleType:
    """A script of ``bench/`` imported as a module (to call its ``report``)."""
    bench = str(ROOT / "bench")
    sys.path.insert(0, bench)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(bench)


class Cluster(LocalCluster):
    """N nodes on free ports in ``workdir``; they log JSON to workdir/paxos.log."""

    def __init__(self, workdir: Path, n: int = 3, log_level: str = "INFO", secure: bool = False):
        self.ports = free_ports(n)
        config = write_config(workdir / "cluster.ini", [("127.0.0.1", p) for p in self.ports],
                              log_level=log_level, secure=secure)
        if secure:
            make_keys(workdir, n)
        super().__init__(config, workdir, range(n))
        self.n = n

    def stop_all(self) -> None:
        self.close()

    def node_state(self, i: int, key: str = "CISC5597") -> dict | None:
        return super().node_state(i, key)

    @staticmethod
    def wait_for(predicate, what: str, timeout_s: float = 20.0):
        return wait_for(predicate, what, timeout_s)

    def value_file(self, i: int, key: str = "CISC5597") -> Path:
        return self.dir / "data" / f"node{i}" / f"{key}.txt"
