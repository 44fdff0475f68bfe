"""Membership changes on real node processes, under load (64 proposals in flight): add,
remove and replace (a dead disk), and a crash of the command (SIGKILL) or of a node at
each step, followed by a rerun of the command. After each: every member is in the same
configuration, no proposal failed, and every decided key has the same value on every
member (read from each node's own database once the nodes are stopped)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zpaxos.lab.launcher import (
    LocalCluster,
    child_env,
    free_ports,
    make_keys,
    wait_for,
    write_config,
)
from zpaxos.protocol.core import Outcome
from zpaxos.runtime.client import Client
from zpaxos.runtime.config import load_config
from zpaxos.runtime.storage import SqliteStore

# Real clusters changing their members under load: about a minute each; CI runs them
# (tests/run.sh --slow). The default suite keeps test_members_runtime.py and
# test_settle_units.py, and run_scenarios.sh changes the members every run.
pytestmark = pytest.mark.slow


class Lab:
    """Nodes 0..2 from cluster.ini (the initial members); grow.ini also names nodes 3
    and 4 (what a new machine's file holds: itself, and seeds to ask)."""

    def __init__(self, workdir: Path, secure: bool = False) -> None:
        self.dir = workdir
        self.ports = free_ports(6)
        eps = [("127.0.0.1", p) for p in self.ports]
        self.config = write_config(workdir / "cluster.ini", eps[:3], log_level="WARNING",
                                   secure=secure)
        self.grow = write_config(workdir / "grow.ini", eps[:5], log_level="WARNING",
                                 secure=secure)
        # node 2 on another port, as a new machine that replaces a dead one says it
        self.moved = write_config(workdir / "moved.ini", [*eps[:2], eps[5]],
                                  log_level="WARNING", secure=secure)
        if secure:  # keys for nodes 0-4; only 0-2 are in the config file's cluster
            make_keys(workdir, 5)
        self.nodes = LocalCluster(self.config, workdir, range(3))
        self.outcomes: list[Outcome] = []
        self._load: threading.Thread | None = None

    def command(self, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
        """``zpaxos members ...`` in the background; its stderr lines, as they come."""
        from zpaxos.lab.launcher import zpaxos_cmd

        p = subprocess.Popen(zpaxos_cmd("members", *args, "--config", str(self.config)),
                             cwd=self.dir, env=child_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        lines: list[str] = []

        def read() -> None:
            assert p.stderr is not None
            for line in p.stderr:
                lines.append(line.rstrip("\n"))

        threading.Thread(target=read, daemon=True).start()
        return p, lines

    def run(self, *args: str, start_joining: dict[int, Path] | None = None) -> list[str]:
        """Run a members command to its end, starting each node it waits for (with
        --join and its own file); its lines."""
        p, lines = self.command(*args)
        deadline = time.monotonic() + 120
        while p.poll() is None:
            if time.monotonic() > deadline:
                p.kill()
                pytest.fail("the command did not finish:\n" + "\n".join(lines[-20:]))
            for node_id, config in (start_joining or {}).items():
                if not self.nodes.is_running(node_id) and any(
                        f"node{node_id} to start" in line for line in lines):
                    self.nodes.start(node_id, None, "--join", config=config)
            try:
                p.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
        wait_for(lambda: any("done:" in line or "error" in line for line in lines) or
                 p.returncode != 0, "the command's last line", 5)
        assert p.returncode == 0, "\n".join(lines)
        return lines

    def start_load(self, n: int, prefix: str) -> None:
        with contextlib.chdir(self.dir):  # the file's relative paths (CURVE keys) from there
            client = Client(load_config(self.config), fast=False)

        def go() -> None:
            with client as c:
                items = ((f"{prefix}-{i}", f"v{i}") for i in range(n))
                for _, outcome, _ in c.stream(items, 64):
                    self.outcomes.append(outcome)

        self._load = threading.Thread(target=go, daemon=True)
        self._load.start()

    def wait_load(self) -> None:
        assert self._load is not None
        self._load.join(timeout=180)
        assert not self._load.is_alive()
        failed = [o for o in self.outcomes if o.chosen is None]
        assert failed == [], failed[:3]

    def members(self) -> dict[str, Any]:
        import json

        r = self.nodes.run("members", "--json")
        assert r.code == 0, r.err
        doc: dict[str, Any] = json.loads(r.out)
        return doc

    def agree(self, ids: list[int]) -> None:
        """Every member in one configuration, holding every decided key, and the same
        value for each on every member (each node's database, once stopped)."""
        def settled() -> bool:
            doc = self.members()
            rows = [r for r in doc["members"] if r["id"] in ids]
            return (sorted(r["id"] for r in doc["members"]) == ids and
                    all(r["epoch"] == doc["epoch"] for r in rows) and
                    len({r["decided"] for r in rows}) == 1)

        wait_for(settled, "every member in one configuration with every decision", 60)
        self.nodes.close()
        values = []
        for i in ids:
            store = SqliteStore(self.dir / "data" / f"node{i}")
            try:
                values.append({k: s.chosen for k, s in store.page("", 10**6, True)})
            finally:
                store.close()
        assert all(v == values[0] for v in values[1:])
        for o in self.outcomes:
            assert values[0][o.key] == o.chosen


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    lab.nodes.start_all()
    try:
        yield lab
    finally:
        lab.nodes.close()


def test_add_then_remove_under_load(lab: Lab) -> None:
    from zpaxos.lab.launcher import NodeStartError

    with pytest.raises(NodeStartError, match="told a configuration|node3 is not a member"):
        lab.nodes.start(3, None, "--join", config=lab.grow)  # not added yet: refused
    lab.start_load(3000, "a")
    port = str(lab.ports[3])
    lines = lab.run("add", "3", "--host", "127.0.0.1", "--port", port,
                    start_joining={3: lab.grow})
    assert any("waiting for node3 to start" in line for line in lines)
    lab.wait_load()
    assert lab.members()["epoch"] >= 3
    lab.start_load(3000, "r")
    lab.run("remove", "0")
    lab.wait_load()
    wait_for(lambda: not lab.nodes.is_running(0), "the removed node to stop", 20)
    with pytest.raises(NodeStartError, match="node0 is not a member"):
        lab.nodes.start(0)  # its own chain says it was removed
    lab.agree([1, 2, 3])


def test_a_rerun_after_the_command_was_killed_at_each_step(lab: Lab) -> None:
    lab.start_load(2000, "k")
    add = ("add", "3", "--host", "127.0.0.1", "--port", str(lab.ports[3]))

    def proposing(lines: list[str], n: int) -> bool:
        return len([x for x in lines if "proposing" in x]) >= n

    # step 1 (node3 joins the accept side): killed as soon as it is proposed
    p, lines = lab.command(*add)
    wait_for(lambda: proposing(lines, 1), "step 1 to be proposed", 60)
    p.send_signal(signal.SIGKILL)  # chosen or not: the cluster is in one configuration
    p.wait()
    # rerun: it finds where the cluster is; node3 starts; step 2 killed as it is proposed
    p, lines = lab.command(*add)
    wait_for(lambda: any("node3 to start" in x for x in lines) or proposing(lines, 1),
             "the rerun to wait for node3", 60)
    if not lab.nodes.is_running(3):
        lab.nodes.start(3, None, "--join", config=lab.grow)
    wait_for(lambda: proposing(lines, 1) and "prepare side" in lines[-1] or
             p.poll() is not None, "step 2 to be proposed", 60)
    p.send_signal(signal.SIGKILL)
    p.wait()
    lab.nodes.kill(1)  # a node crashes too, and comes back
    lab.nodes.start(1)
    lab.run(*add)  # finishes the job
    lab.wait_load()
    lines = lab.run(*add)  # done: nothing left to do
    assert not any("proposing" in line for line in lines)
    lab.agree([0, 1, 2, 3])


def test_replace_a_node_whose_data_directory_was_deleted(lab: Lab) -> None:
    lab.start_load(2000, "d")
    lab.nodes.kill(2)
    shutil.rmtree(lab.dir / "data" / "node2")  # the dead disk
    lab.run("replace", "2", "--host", "127.0.0.1", "--port", str(lab.ports[5]),
            start_joining={2: lab.moved})
    lab.wait_load()
    doc = lab.members()
    assert [r["address"] for r in doc["members"] if r["id"] == 2] == \
        [f"127.0.0.1:{lab.ports[5]}"]
    lab.agree([0, 1, 2])


def test_with_curve_a_new_node_is_admitted_by_its_key_in_the_configuration(
        tmp_path: Path) -> None:
    lab = Lab(tmp_path, secure=True)
    lab.nodes.start_all()
    try:
        lab.start_load(1000, "c")
        lab.run("add", "3", "--host", "127.0.0.1", "--port", str(lab.ports[3]),
                "--public-key", "keys/node3.key", start_joining={3: lab.grow})
        lab.wait_load()
        doc = lab.members()
        assert [r["caught_up"] for r in doc["members"] if r["id"] == 3] == [True]
        lab.agree([0, 1, 2, 3])
    finally:
        lab.nodes.close()
