"""End-to-end: real node processes, real sockets on free loopback ports, the real CLI.

Only what the runtime alone is responsible for lives here (durability across kill -9,
sync, malformed frames, ports, damaged state, status). The lab's orderings run on a real
cluster through the scenarios (zpaxos/lab/scenarios.py), which tests/test_scenarios.py
runs and checks; they are not repeated here."""

from __future__ import annotations

import pytest
import zmq

from tests.harness import Cluster, Result
from zpaxos.runtime.exits import Exit

pytestmark = pytest.mark.e2e

STAGE_S = "2"  # how late staged messages arrive: far longer than a whole proposal takes


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


@pytest.fixture
def running(cluster):
    cluster.start_all()
    return cluster


def accepted_by(c: Cluster, i: int, value: str):
    return lambda: (c.node_state(i) or {}).get("value") == value


def chosen_on_every_node(c: Cluster, value: str, key: str = "CISC5597") -> None:
    """Every node records the decision, and writes the lab's value file."""
    def everywhere():
        return all((c.node_state(i, key) or {}).get("chosen") == value for i in range(c.n))
    c.wait_for(everywhere, f"{value} chosen on every node")
    c.wait_for(lambda: all(c.value_file(i, key).is_file() for i in range(c.n)), "value files")
    for i in range(c.n):
        assert c.value_file(i, key).read_text() == value + "\n"


# ---------------------------------------------------------------- durability and sync


def test_promise_survives_kill9(running):
    """A promise made before a crash still binds after it: node state is durable."""
    a = running.propose_bg("Value_A", "--pause-between-phases", "30", "--timeout", "60")
    running.wait_for(lambda: all((running.node_state(i) or {}).get("promised")
                                 for i in range(3)), "promises from every node")
    promised = running.node_state(0)["promised"]
    running.kill(0)
    a.kill()
    Cluster.finish(a)
    running.start(0)
    assert running.node_state(0)["promised"] == promised


def test_node_that_missed_a_decision_learns_it_from_peers(running):
    running.kill(2)
    assert running.propose("Value_A").code == 0
    running.start(2)
    chosen_on_every_node(running, "Value_A")


def test_malformed_frames_leave_node_serving(running):
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"tcp://127.0.0.1:{running.ports[0]}")
    head = b"ZPAXOS/3\x93\xa1x\x00\x91"  # protocol, [sender "x", seq 0, [one message]]
    garbage = [
        [b"hello"],
        [b"HTTP/1.1", b"GET", b"1", b"/"],
        [b"ZPAXOS/1\x93\xa1x\x00\x90"],  # another version
        [head + b"\x91\xa4NOPE"],
        [head + b"\xc1\xc1"],
        [head + b"\x93\xa7PREPARE\xa1k\x92\x01\xc4\x00"],  # ballot id empty
        [head + b"\x93\xa7PREPARE\xa3../\x92\x01\xc4\x01x"],  # bad key
        [head + b"\x94\xa6ACCEPT\xa1k\x92\xc3\xc4\x01x\xc4\x01v"],  # bool round
        [b"ZPAXOS/3\x93\xa1\xff\x00\x90"],  # sender not ASCII
        [head + b"\x95\xa7PROMISE\xa1k\x92\x01\xc4\x01x\x92\x00\xc4\x00\xc0"],
        [head + b"\x93\xa7PREPARE\xa1k\x92\x01\xc4\x01x", b"second frame"],
    ]
    try:
        for frames in garbage:
            s.send_multipart(frames)
        r = running.propose("Value_A")
        assert r.code == 0 and r.json["chosen"] == "Value_A"
    finally:
        s.close()
        ctx.term()
    log = running.log()
    malformed = log.events(name="malformed", process="node0")
    assert len(malformed) == len(garbage) - 1  # the PROMISE is well formed, just not for us
    assert all(e.fields["peer"].startswith("unknown") for e in malformed)
    assert log.events(name="ignored")


def test_node_refuses_a_port_in_use(cluster):
    import subprocess

    from tests.harness import env, zpaxos_cmd

    cluster.start(0)
    elsewhere = cluster.dir / "elsewhere"  # its own data_dir (relative to its cwd), same port
    elsewhere.mkdir()
    p = subprocess.run(zpaxos_cmd("node", "0", "-q", "--config", str(cluster.config)),
                       cwd=elsewhere, env=env(), capture_output=True, text=True, timeout=30)
    r = Result(p.returncode, p.stdout, p.stderr)
    assert r.code == 1
    assert "address already in use" in r.err and len(r.err.strip().splitlines()) == 1


def test_damaged_state_stops_the_node(cluster):
    cluster.start(0)
    cluster.stop(0)
    db = cluster.dir / "data" / "node0" / "state.db"
    db.write_bytes(b"this is not a database" * 100)
    r = cluster.run("node", "0", "-q", timeout=30)
    assert r.code == 3 and "Traceback" not in r.err  # 3: damaged (storage_errors)
    assert "damaged or unreadable" in r.err and len(r.err.strip().splitlines()) == 1


def test_status_reports_unreachable_nodes(running):
    running.kill(1)
    doc = running.status()
    assert [n["reachable"] for n in doc["nodes"]] == [True, False, True]
    r = running.run("status")
    assert r.code == Exit.DEGRADED and "unreachable: node1" in r.out
    assert running.propose("Value_A", "--key", "other").code == 0
    r = running.run("status", "--key", "other")
    rows = [line for line in r.out.splitlines() if line.startswith("node")]
    assert len(rows) == 3 and all("other" in line or "NO (down?)" in line for line in rows)
    assert "CISC5597" not in r.out
