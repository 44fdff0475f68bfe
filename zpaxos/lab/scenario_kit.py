"""What a scenario may use: its context (the running cluster), its row of the summary,
and the checks that fail it.

The scenarios themselves are in scenario_defs.py; the runner that starts the cluster,
runs them and prints the summary is scenarios.py.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpaxos.lab.launcher import LocalCluster, Result, wait_for
from zpaxos.naming import node_name
from zpaxos.pictures.logmodel import LogModel, read_log
from zpaxos.protocol.core import quorum_size
from zpaxos.runtime.config import ClusterConfig


class Failed(Exception):
    """A scenario's outcome contradicts what Paxos guarantees (or what it staged)."""


def check(ok: bool, why: str) -> None:
    if not ok:
        raise Failed(why)


@dataclass
class Row:
    number: int
    slug: str
    title: str
    happened: str = ""
    chosen: str = "-"
    rounds: str = "-"
    seconds: float = 0.0
    passed: bool = False
    chart: str = ""


@dataclass
class Ctx:
    """What a scenario may use: the running cluster and facts about it."""

    cluster: LocalCluster
    cfg: ClusterConfig
    workdir: Path
    row: Row
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.cfg.nodes)

    @property
    def quorum(self) -> int:
        return quorum_size(self.n)

    def propose(self, value: str, key: str, *args: str) -> dict[str, Any]:
        return outcome(self.cluster.propose(value, "--key", key, *args), value)

    def propose_bg(self, value: str, key: str, *args: str) -> subprocess.Popen[str]:
        return self.cluster.propose_bg(value, "--key", key, *args)

    def chosen_everywhere(self, key: str, value: str) -> None:
        """Every node records the decision (a node that missed it learns it from peers)."""
        def everywhere() -> bool:
            nodes = self.cluster.status(key)["nodes"]
            return all(n["reachable"] and n["keys"].get(key, {}).get("chosen") == value
                       for n in nodes)
        try:
            wait_for(everywhere, f"{value} recorded as chosen on every node", 20)
        except TimeoutError as e:
            raise Failed(str(e)) from None

    def accepted_by(self, i: int, key: str, value: str) -> None:
        try:
            wait_for(lambda: (self.cluster.node_state(i, key) or {}).get("value") == value,
                     f"{node_name(i)} to accept {value}", 20)
        except TimeoutError as e:
            raise Failed(str(e)) from None

    def log(self) -> LogModel:
        """The cluster's JSON log as the charts read it: query it with ``.events(...)``."""
        return read_log(self.workdir / "paxos.log")


def outcome(r: Result, value: str) -> dict[str, Any]:
    try:
        doc = r.json
    except ValueError:
        raise Failed(f"propose {value} printed no JSON (exit {r.code}): {r.err.strip()}") from None
    doc["exit"] = r.code
    return doc


def finish(ctx: Ctx, proc: subprocess.Popen[str], value: str) -> dict[str, Any]:
    return outcome(ctx.cluster.finish(proc), value)


def won(doc: dict[str, Any], value: str, own: bool) -> None:
    who = doc.get("proposed")
    check(doc["exit"] == 0, f"proposer of {who} failed: {doc.get('reason')}")
    check(doc["chosen"] == value, f"proposer of {who} reports {doc['chosen']}, expected {value}")
    check(doc["own"] is own, f"proposer of {who}: own={doc['own']}, expected {own}")

