"""End-to-end: real node processes, real sockets on free loopback ports, the real CLI."""

from __future__ import annotations

import time

import pytest
import zmq

from tests.harness import Cluster, Result

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


# ---------------------------------------------------------------- the lab's scenarios


def test_single_proposer(running):
    r = running.propose("Value_A")
    assert r.code == 0, r.err
    assert r.json["chosen"] == "Value_A" and r.json["own"] is True
    assert r.json["rounds"] == 1 and r.json["key"] == "CISC5597"
    chosen_on_every_node(running, "Value_A")


@pytest.mark.parametrize("first,second", [("Value_A", "Value_B"), ("Value_B", "Value_A")])
def test_first_proposer_wins_and_second_adopts(running, first, second):
    a = running.propose_bg(first)
    b = running.propose_bg(second, "--delay", "1")
    ra, rb = Cluster.finish(a), Cluster.finish(b)
    assert ra.code == 0 and rb.code == 0, (ra.err, rb.err)
    assert ra.json["chosen"] == first and ra.json["own"] is True
    assert rb.json["chosen"] == first and rb.json["own"] is False
    assert rb.json["proposed"] == second
    chosen_on_every_node(running, first)


# ---------------------------------------------------------------- textbook orderings


def test_later_proposer_finds_value_already_chosen(running):
    assert running.propose("Value_A").code == 0
    r = running.propose("Value_B")
    assert r.code == 0 and r.json["chosen"] == "Value_A" and r.json["own"] is False
    chosen_on_every_node(running, "Value_A")


def test_minority_accepted_value_is_seen_and_adopted(running):
    """Ousterhout p.24: A's Accept reaches node0 only; B's Prepare finds it there."""
    a = running.propose_bg("Value_A", "--accept-delay", f"1:{STAGE_S}",
                           "--accept-delay", f"2:{STAGE_S}")
    running.wait_for(accepted_by(running, 0, "Value_A"), "node0 to accept Value_A")
    rb = running.propose("Value_B", "--prepare-delay", f"2:{STAGE_S}")
    ra = Cluster.finish(a)
    assert rb.code == 0 and ra.code == 0, (ra.err, rb.err)
    assert rb.json["chosen"] == "Value_A" and rb.json["own"] is False
    assert ra.json["chosen"] == "Value_A" and ra.json["own"] is True
    adopted = [e for e in running.log_events() if e["event"] == "adopted"]
    assert adopted and adopted[0]["value"] == "Value_A"
    chosen_on_every_node(running, "Value_A")


def test_new_proposer_misses_minority_value_and_wins(running):
    """Ousterhout p.25: B's higher Prepare overtakes A's Accepts; A's Accepts fail."""
    a = running.propose_bg("Value_A", "--accept-delay", f"1:{STAGE_S}",
                           "--accept-delay", f"2:{STAGE_S}")
    running.wait_for(accepted_by(running, 0, "Value_A"), "node0 to accept Value_A")
    rb = running.propose("Value_B", "--prepare-delay", f"0:{STAGE_S}")
    ra = Cluster.finish(a)
    assert rb.code == 0 and ra.code == 0, (ra.err, rb.err)
    assert rb.json["chosen"] == "Value_B" and rb.json["own"] is True
    assert ra.json["chosen"] == "Value_B" and ra.json["own"] is False
    # Nodes 1 and 2 never accepted A's ballot: A's late Accepts were turned down.
    events = running.log_events()
    a_ballot = next(e["ballot"] for e in events if e["event"] == "send" and
                    e["type"] == "ACCEPT" and e.get("value") == "Value_A")
    for node in ("node1", "node2"):
        assert not [e for e in events if e["process"] == node and e["event"] == "send"
                    and e["type"] == "ACCEPTED" and e["ballot"] == a_ballot]
        answers = [e for e in events if e["process"] == node and e["event"] == "send"
                   and e.get("ballot", a_ballot) == a_ballot and e["type"] in ("NACK", "DECIDE")
                   and e["peer"].startswith("proposer")]
        assert answers, f"{node} did not turn down A's Accept"
    chosen_on_every_node(running, "Value_B")


# ---------------------------------------------------------------- failures


def test_one_node_killed_two_still_decide(running):
    running.kill(2)
    r = running.propose("Value_A")
    assert r.code == 0 and r.json["chosen"] == "Value_A"


def test_two_nodes_down_fails_within_timeout_then_recovers(running):
    running.kill(1)
    running.kill(2)
    t0 = time.monotonic()
    r = running.run("propose", "Value_A", "-q", "--timeout", "1.5")
    elapsed = time.monotonic() - t0
    assert r.code == 1
    assert "no value chosen" in r.err and "node1" in r.err and "node2" in r.err
    assert "node0" not in r.err.split("no reply from")[-1]
    assert elapsed < 1.5 + 10  # the deadline, plus process start-up on a loaded machine
    running.start(1)
    running.start(2)
    r = running.propose("Value_B")
    assert r.code == 0 and r.json["chosen"] in ("Value_A", "Value_B"), r.err
    chosen_on_every_node(running, r.json["chosen"])


def test_value_survives_kill9_of_every_node(running):
    assert running.propose("Value_A").code == 0
    for i in range(3):
        running.kill(i)
    running.start_all()
    r = running.propose("Value_B")
    assert r.code == 0 and r.json["chosen"] == "Value_A" and r.json["own"] is False


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
    garbage = [
        [b"hello"],
        [b"HTTP/1.1", b"GET", b"1", b"/"],
        [b"ZPAXOS/1", b"NOPE", b"1", b"\x90"],
        [b"ZPAXOS/1", b"PREPARE", b"1", b"\xc1\xc1"],
        [b"ZPAXOS/1", b"PREPARE", b"1", b"\x92\xa1k\x92\x01\xc4\x00"],  # ballot id empty
        [b"ZPAXOS/1", b"PREPARE", b"1", b"\x92\xa3../\x92\x01\xc4\x01x"],  # bad key
        [b"ZPAXOS/1", b"ACCEPT", b"1", b"\x93\xa1k\x92\xc3\xc4\x01x\xc4\x01v"],  # bool round
        [b"ZPAXOS/1", b"PREPARE", b"\xff" * 100, b"\x90"],
        [b"ZPAXOS/1", b"PROMISE", b"1", b"\x94\xa1k\x92\x01\xc4\x01x\x92\x00\xc4\x00\xc0"],
    ]
    try:
        for frames in garbage:
            s.send_multipart(frames)
        r = running.propose("Value_A")
        assert r.code == 0 and r.json["chosen"] == "Value_A"
    finally:
        s.close()
        ctx.term()
    malformed = [e for e in running.log_events()
                 if e["event"] == "malformed" and e["process"] == "node0"]
    assert len(malformed) == len(garbage) - 1  # the PROMISE is well formed, just not for us
    assert all(e["peer"].startswith("unknown") for e in malformed)
    assert [e for e in running.log_events() if e["event"] == "ignored"]


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
    assert r.code == 0 and "unreachable: node1" in r.out
    assert running.propose("Value_A", "--key", "other").code == 0
    r = running.run("status", "--key", "other")
    rows = [line for line in r.out.splitlines() if line.startswith("node")]
    assert len(rows) == 3 and all("other" in line or "NO (down?)" in line for line in rows)
    assert "CISC5597" not in r.out
