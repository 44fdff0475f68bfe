"""``zpaxos propose`` with only node0 up: node0 answers but does not vote yet (it waits
for its peers to confirm it lost no state). The failure says so, as ``zpaxos status``
does, instead of "no reply" from a node that is running (issue 26, item 10)."""

from __future__ import annotations

import pytest

from tests.harness import Cluster

pytestmark = pytest.mark.e2e


def test_propose_says_a_running_node_does_not_vote_yet(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        cluster.start(0)
        r = cluster.run("propose", "Value_A", "-q", "--timeout", "1")
        j = cluster.propose("Value_A", "--timeout", "1")  # --json
    finally:
        cluster.stop_all()
    assert r.code == 1 and r.out == ""
    assert r.err == ("no value chosen for CISC5597: no value chosen within the 1 s deadline;"
                     " no reply from node1, node2; node0 is up but not voting yet (waiting for"
                     " its peers to confirm it lost no state, or learning every decision after"
                     " --new)\n")
    assert j.code == 1
    assert j.json["no_reply_from"] == ["node0", "node1", "node2"]  # a fact, as before
    assert j.json["elapsed_ms"] < 1500  # the status check after the failure is not counted
