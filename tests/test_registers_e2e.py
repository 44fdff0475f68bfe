"""Registers end to end: real node processes, the real CLI and Client, kill -9.

The last test is the real-process linearizability check: concurrent clients on their own
threads (each its own Client and sockets) run random operations on two registers while
nodes are killed with SIGKILL and restarted; the recorded history must be linearizable.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from tests.harness import Cluster
from zpaxos.client import Client, RegOp, load_config
from zpaxos.protocol.register import CAS, CAS_VALUE, DELETE, GET, NO_QUORUM, SET
from zpaxos.sim.lincheck import UNKNOWN, Op, check

pytestmark = pytest.mark.e2e


@pytest.fixture
def running(tmp_path: Path):
    c = Cluster(tmp_path)
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


def versions(c: Cluster, name: str) -> list[int]:
    doc = c.run("status", "--json", "--register", name).json
    return [n["keys"]["@" + name]["version"] for n in doc["nodes"]
            if n["reachable"] and "@" + name in n["keys"]]


def test_cli_get_set_cas_delete(running: Cluster) -> None:
    r = running.run("get", "cfg", "--json")
    assert r.code == 0 and r.json["exists"] is False and r.json["version"] == 0
    r = running.run("set", "cfg", "one")
    assert (r.code, r.out.strip()) == (0, "cfg = 'one' (version 1)")
    r = running.run("cas", "cfg", "two", "--expect-version", "1", "--json")
    assert r.code == 0 and (r.json["value"], r.json["version"]) == ("two", 2)
    r = running.run("cas", "cfg", "three", "--expect-version", "1")
    assert r.code == 4 and "cas failed: cfg = 'two' (version 2)" in r.err
    r = running.run("cas", "cfg", "three", "--expect-value", "one", "--json")
    assert r.code == 4 and r.json["status"] == "cas_failed"
    r = running.run("cas", "cfg", "three", "--expect-value", "two")
    assert r.code == 0 and "version 3" in r.out
    assert running.run("delete", "cfg").out.strip() == "cfg is absent (version 4)"
    r = running.run("get", "cfg")
    assert (r.code, r.out.strip()) == (0, "cfg is absent (version 4)")
    # The version is labelled: "v4 (absent)" read as if a value were there (issue 26.4).
    rows = [line for line in running.run("status", "--register", "cfg").out.splitlines()
            if "@cfg" in line]
    assert sum(line.endswith("version 4: deleted  (register)") for line in rows) >= 2, rows
    r = running.run("cas", "cfg", "back", "--expect-absent", "--json")
    assert r.code == 0 and r.json["version"] == 5  # a tombstone keeps the version
    # A write-once key of the same name is another thing entirely.
    assert running.propose("chosen-once", "--key", "cfg").json["chosen"] == "chosen-once"
    assert running.run("get", "cfg", "--json").json["value"] == "back"
    # Status shows each node's version of the register (a quorum has the latest).
    assert sorted(versions(running, "cfg"))[-2:] == [5, 5]
    table = running.run("status").out
    assert "@cfg" in table and "version 5: 'back'" in table
    # The log file has the register rounds, as it has propose's (zpaxos trace draws them).
    log = (running.dir / "paxos.log").read_text()
    assert '"type":"RACCEPT"' in log and '"state":"v5=back"' in log


def test_cli_usage_errors(running: Cluster) -> None:
    assert running.run("cas", "cfg", "x").code == 2  # no expectation given
    r = running.run("set", "bad key", "x")
    assert r.code == 2 and "\n" not in r.err.strip() and "Traceback" not in r.err


def all_voting(c: Cluster) -> None:
    """Wait until every node votes (a node just started waits for its peers first)."""
    c.wait_for(lambda: all(n["reachable"] and n["counters"].get("voting") == 1
                           for n in c.status()["nodes"]), "every node voting")


def test_no_quorum_is_its_own_exit_code(running: Cluster) -> None:
    all_voting(running)
    running.kill(1)
    running.kill(2)
    r = running.run("set", "r", "x", "--timeout", "1", "--json")
    assert r.code == 1 and r.json["status"] == NO_QUORUM
    assert r.json["no_reply_from"] == ["node1", "node2"]


def test_register_commands_explain_failures_as_propose_does(running: Cluster) -> None:
    """One explanation for every command: what did not happen, why, which nodes never
    answered (issue 26.6: the register commands did not name them)."""
    all_voting(running)
    running.kill(1)
    running.kill(2)
    p = running.run("propose", "x", "--key", "k", "--timeout", "1", "-q")
    assert (p.code, p.err) == (1, "no value chosen for k: no value chosen within the 1 s "
                                  "deadline; no reply from node1, node2\n")
    for args in (["get", "r"], ["set", "r", "x"], ["cas", "r", "x", "--expect-absent"],
                 ["delete", "r"]):
        r = running.run(*args, "--timeout", "1")
        assert (r.code, r.out) == (1, ""), (args, r.err)
        assert r.err == ("no quorum on register r, nothing written: no quorum within the 1 s "
                         "deadline; no reply from node1, node2\n"), args


def test_a_register_survives_kill9_and_never_goes_back(running: Cluster) -> None:
    assert running.run("set", "r", "v1").code == 0
    running.kill(0)
    assert running.run("set", "r", "v2").code == 0  # nodes 1 and 2
    running.start(0)
    running.kill(1)  # now nodes 0 (which missed v2) and 2
    r = running.run("get", "r", "--json")
    assert (r.code, r.json["value"], r.json["version"]) == (0, "v2", 2)
    running.kill(2)
    running.start(1)  # nodes 0 and 1: the read above wrote v2 back to node 0
    assert running.run("get", "r", "--json").json["value"] == "v2"


def test_deleted_value_is_not_resurrected_after_restarts(running: Cluster) -> None:
    assert running.run("set", "gone", "old").code == 0
    running.kill(2)  # node 2 keeps "old" on disk
    assert running.run("delete", "gone").code == 0
    running.kill(0)
    running.start(2)  # nodes 1 and 2: 1 holds the tombstone, 2 the old value
    r = running.run("get", "gone", "--json")
    assert (r.json["exists"], r.json["version"]) == (False, 2)


def test_client_api_many_in_flight(running: Cluster) -> None:
    with Client(load_config(str(running.config))) as c:
        res = c.registers([(f"k{i % 10}", RegOp(SET, f"x{i}".encode())) for i in range(100)])
        assert {r.status for r in res} == {"ok"}
        # One register's operations run in order: k0 saw x0, x10, ..., x90.
        assert [r.version for r in res if r.key == "k0"] == list(range(1, 11))
        assert sum(r.fast for r in res) >= 80  # the 1-RTT path after the first write
        assert c.get("k0").value == b"x90"
        assert c.cas("k0", "y", expect_version=10).status == "ok"
        assert c.cas("k0", "z", expect_version=10).status == "cas_failed"


# ---------------------------------------------------------------- linearizability, for real


def _worker(config: Path, name: str, rng: random.Random, stop: threading.Event,
            out: list[Op]) -> None:
    with Client(load_config(str(config))) as c:
        opts = c.register_options(timeout_s=1.5, round_timeout_s=0.2)
        seen: dict[str, tuple[int, bytes | None]] = {}
        n = 0
        while not stop.is_set():
            n += 1
            key = rng.choice(["a", "b"])
            v, val = seen.get(key, (0, None))
            x = rng.random()
            value = f"{name}.{n}".encode()
            op = (RegOp(GET) if x < 0.3 else RegOp(SET, value) if x < 0.55
                  else RegOp(CAS, value, expect_version=v) if x < 0.8
                  else RegOp(CAS_VALUE, value, expect_value=val) if x < 0.9 else RegOp(DELETE))
            t0 = time.monotonic()
            r = c.registers([(key, op)], opts)[0]
            t1 = time.monotonic()
            if r.status in ("ok", "cas_failed"):
                seen[key] = (r.version, r.value)
            if r.status == NO_QUORUM:
                continue  # nothing was written
            out.append(Op(name, key, op.kind, t0, None if r.status == UNKNOWN else t1,
                          r.status, r.version, r.value, op.value, op.expect_version,
                          op.expect_value))


def test_real_history_with_kill9_is_linearizable(running: Cluster) -> None:
    stop = threading.Event()
    histories: list[list[Op]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=_worker, args=(running.config, f"c{i}",
                                                      random.Random(i), stop, histories[i]))
               for i in range(4)]
    for t in threads:
        t.start()
    try:
        rng = random.Random(7)
        for _ in range(4):
            victim = rng.randrange(3)
            time.sleep(0.4)
            running.kill(victim)
            time.sleep(0.4)
            running.start(victim)
        time.sleep(0.4)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    history = [o for h in histories for o in h]
    done = [o for o in history if o.ret is not None]
    assert len(done) >= 40, f"too few operations completed: {len(done)}"
    assert {o.kind for o in done} >= {GET, SET, CAS}
    ok, why = check(history)
    assert ok, why


def test_status_shows_a_register_at_the_size_limit_shortened(running: Cluster) -> None:
    """A register holding exactly 1 MiB (the limit on a value): a node's status entry holds
    its state, the value and a few bytes more, and must still be read (issue 26.1: every
    node showed as down, exit 1, and nothing was logged)."""
    from zpaxos.protocol.registry import MAX_VALUE_BYTES

    big = running.dir / "v"
    big.write_bytes(b"b" * MAX_VALUE_BYTES)
    assert running.run("set", "bigreg", "--value-file", str(big)).code == 0
    r = running.run("status")
    assert r.code == 0, r.out
    assert "all 3 nodes reachable" in r.out.splitlines()
    rows = [line for line in r.out.splitlines() if "@bigreg" in line]
    assert len(rows) == 3 and all(" yes " in row for row in rows), r.out
    assert all(f"version 1: '{'b' * 20}'... ({MAX_VALUE_BYTES} bytes)" in row for row in rows)
    doc = running.run("status", "--json", "--register", "bigreg").json
    assert all(n["keys"]["@bigreg"]["value"] == "b" * MAX_VALUE_BYTES for n in doc["nodes"])


def test_trace_draws_a_register_run_from_the_proposers_side(running: Cluster) -> None:
    """Register rounds log their events as key rounds do (one machinery): the chart of a
    register run has each client's rounds, its retry after being outbid, and how each
    operation ended, not only the acceptors' side."""
    from zpaxos.pictures.chartmodel import select
    from zpaxos.pictures.logmodel import read_log

    assert running.run("set", "tr", "one").code == 0
    assert running.run("set", "tr", "two").code == 0  # outbid by the first's 1-RTT promise
    [chart] = [c for c in select(read_log(str(running.dir / "paxos.log"))) if c.key == "tr"]
    marks = [(m.kind, m.text) for m in chart.marks if m.process.startswith("proposer")]
    kinds = [k for k, _ in marks]
    assert kinds.count("round") >= 2 and "retry" in kinds, marks
    assert [t.split(" (")[0] for k, t in marks if k == "applied"] == [
        "set ok: version 1", "set ok: version 2"], marks
    assert not chart.faults  # the late RACCEPTED is "not read": its proposer was done
