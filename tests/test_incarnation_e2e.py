"""No silent amnesia, as only the peers can see it: a node whose *whole* data directory
(marker included) was restored from an older copy, or deleted, is refused by the peers
that remember its incarnation and commit count; ``--new`` rejoins it under a new
incarnation. Real ``zpaxos node`` processes on real sockets (tests/harness.py)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.harness import Cluster, env, zpaxos_cmd

pytestmark = pytest.mark.e2e

ERR = "zpaxos node: error: node2: "
ADVICE = ("it will not vote on state the cluster has seen it lose: put back this node's own "
          "latest files if you still have them, else follow 'Rejoining empty' in "
          "docs/operating.md to rejoin with --new")


@pytest.fixture
def c(tmp_path):
    cluster = Cluster(tmp_path, n=3)
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


def data(c: Cluster, i: int) -> Path:
    return c.dir / "data" / f"node{i}"


def peers_json(c: Cluster, i: int) -> dict:
    return json.loads((data(c, i) / "peers.json").read_text())


def remembered(c: Cluster, by: int, of: int) -> dict | None:
    try:
        return peers_json(c, by)["peers"].get(str(of))
    except (FileNotFoundError, ValueError):
        return None


def commits(d: Path) -> int:
    # immutable: read without creating a WAL index (-shm) in the copy
    con = sqlite3.connect(f"file:{d / 'state.db'}?immutable=1", uri=True)
    try:
        return int(con.execute("SELECT value FROM meta WHERE name='commit_seq'").fetchone()[0])
    finally:
        con.close()


def chosen(c: Cluster, value: str, key: str) -> None:
    r = c.propose(value, "--key", key)
    assert r.code == 0 and r.json["chosen"] == value, r.err


def run_node(c: Cluster, i: int, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run ``zpaxos node i`` until it exits by itself: its exit code and its stderr."""
    p = subprocess.Popen(zpaxos_cmd("node", str(i), "--config", str(c.config), "-q", *args),
                         cwd=c.dir, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        _, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert "Traceback" not in err
    return p.returncode, err.strip()


def commits_heard(c: Cluster, of: int, above: int) -> None:
    """Wait until both peers have written down more than ``above`` commits of node ``of``."""
    c.wait_for(lambda: all((remembered(c, p, of) or {}).get("commit_seq", -1) > above
                           for p in range(3) if p != of),
               f"the peers to remember node{of} past {above} commits")


def test_whole_data_dir_restored_from_an_older_copy_is_refused(c):
    chosen(c, "Value_A", "k1")
    c.stop(2)
    backup = c.dir / "backup-node2"
    shutil.copytree(data(c, 2), backup)  # the whole directory, marker and all, while stopped
    old = json.loads((backup / "peers.json").read_text())["self"]["incarnation"]
    c.start(2)
    for k in range(2, 6):
        chosen(c, f"v{k}", f"k{k}")
    commits_heard(c, 2, above=commits(backup))  # the peers heard of the later commits
    c.stop(2)
    shutil.rmtree(data(c, 2))
    shutil.copytree(backup, data(c, 2))  # restored: every local check passes
    code, err = run_node(c, 2)
    assert code == 4, err
    line = err.splitlines()[-1]
    assert line.startswith(f"{ERR}stopping: data/node2: rolled back: node")
    assert (f"has seen this incarnation ({old[:8]}) at " in line
            and "commits, but this data directory holds" in line
            and "(it was restored from an older copy); " + ADVICE in line), line
    # The refusal is recorded: the next start refuses at once, even with no peer up.
    c.stop(0)
    c.stop(1)
    code, err = run_node(c, 2, timeout=20)
    assert code == 4 and "(recorded in state.lost when the peers refused it)" in err, err
    c.start(0)
    c.start(1)
    rejoin_with_new(c)


def test_whole_data_dir_deleted_is_refused_by_the_peers(c):
    chosen(c, "Value_A", "k1")
    commits_heard(c, 2, above=0)
    old = peers_json(c, 2)["self"]["incarnation"]
    c.stop(2)
    shutil.rmtree(data(c, 2))  # state.db, its WAL, state.marker, peers.json: everything
    code, err = run_node(c, 2)
    assert code == 4, err
    line = err.splitlines()[-1]
    assert line.startswith(f"{ERR}stopping: data/node2: replaced: node")
    assert f"knows node2 as incarnation {old[:8]} (" in line
    assert "but this data directory holds another one" in line
    assert "its state was deleted or swapped, marker and all; " + ADVICE in line
    for p in (0, 1):  # the refused incarnation changed nobody's memory
        assert remembered(c, p, 2)["incarnation"] == old
    rejoin_with_new(c)


def rejoin_with_new(c: Cluster) -> None:
    """``--new``: a new incarnation the peers accept; it learns every decision, then votes
    (shown by a decision that needs it: node0 is stopped)."""
    p = subprocess.Popen(zpaxos_cmd("node", "2", "--config", str(c.config), "-q", "--new"),
                         cwd=c.dir, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert "listening on" in p.stdout.readline()
        new = peers_json(c, 2)["self"]
        c.wait_for(lambda: all((remembered(c, q, 2) or {}).get("incarnation")
                               == new["incarnation"] for q in (0, 1)),
                   "the peers to accept the new incarnation")
        c.wait_for(lambda: (c.node_state(2, "k1") or {}).get("chosen") is not None,
                   "node2 to learn the old decisions")
        # It learned from every peer before it voted; then its restarts are ordinary.
        c.wait_for(lambda: c.log().first(process="node2", name="voting"), "node2 to vote")
        admitted = [e.fields["phase"] for e in c.log().events(process="node2",
                                                               name="admitted")]
        assert admitted[-1] == "learning", admitted
        c.wait_for(lambda: peers_json(c, 2)["self"]["fresh"] is False, "fresh to be done")
        c.stop(0)
        chosen(c, "after", "k-new")  # nodes 1 and 2: node2 votes again
        for q in (0, 1):
            assert peers_json(c, q)["peers"]["2"]["past"]  # the old incarnation, retired
    finally:
        p.terminate()
        p.communicate(timeout=10)


def test_a_full_cluster_restart_needs_no_operator(c):
    chosen(c, "Value_A", "k1")
    for i in range(3):
        c.stop(i)
    for i in (2, 0, 1):
        c.start(i)
    chosen(c, "Value_B", "k2")
    assert c.node_state(2, "k1")["chosen"] == "Value_A"
