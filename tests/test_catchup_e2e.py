"""Catching up, end to end: real node processes on free ports (docs/catching-up.md).

Each test shows a node learning what it missed *without* a new proposal of the key and
(but for the restart test) without a restart. Run them with catching up off to see each
fail: ``ZPAXOS_TEST_CATCH_UP_S=0 pytest tests/test_catchup_e2e.py``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.harness import Cluster
from tests.nemesis.loopback import LoopbackProxy
from zpaxos.lab.launcher import free_ports, write_config
from zpaxos.runtime.client import Client, options_from
from zpaxos.runtime.config import load_config
from zpaxos.runtime.log import null_log

pytestmark = pytest.mark.e2e

CATCH_UP_S = os.environ.get("ZPAXOS_TEST_CATCH_UP_S", "0.5")
LEARN_WITHIN_S = 10.0  # generous for a loaded CI machine; the design's figure is ~1-2 s


def with_catch_up(path: Path) -> None:
    path.write_text(path.read_text() + f"\n[node]\ncatch_up_s = {CATCH_UP_S}\n")


@pytest.fixture
def running(tmp_path):
    c = Cluster(tmp_path)
    with_catch_up(c.config)
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


def decided_on(c: Cluster, i: int, key: str) -> str | None:
    return (c.node_state(i, key) or {}).get("chosen")


def test_a_node_stopped_during_a_decision_learns_it_after_sigcont(running):
    """Node 2 is SIGSTOPped while Value_A is chosen (the proposer never reaches it and
    ends); after SIGCONT it learns the decision from its peers and writes CISC5597.txt,
    with no new proposal and no restart."""
    running.procs[2].send_signal(signal.SIGSTOP)
    try:
        assert running.propose("Value_A", "--timeout", "20").code == 0
        time.sleep(1.0)  # the proposer has gone; node 2 is still stopped
    finally:
        running.procs[2].send_signal(signal.SIGCONT)
    t0 = time.monotonic()
    running.wait_for(lambda: running.value_file(2).is_file(), "CISC5597.txt on node2",
                     LEARN_WITHIN_S)
    took = time.monotonic() - t0
    assert running.value_file(2).read_text() == "Value_A\n"
    caught = running.log().events(process="node2", name="caught_up")
    assert caught, "node 2 learned it some other way"
    print(f"node2 learned the decision {took:.2f} s after SIGCONT")


def test_a_restart_after_10000_missed_decisions_fetches_only_those(running):
    """Node 2 is stopped, 10,000 keys are decided, and it restarts: it fetches exactly
    the 10,000 values it missed (its cursors say where it stood), not every decision."""
    cfg = load_config(running.config)
    with Client(cfg, null_log("t")) as client:
        opts = options_from(cfg.proposer, timeout_s=60.0)
        before = [(f"old-{i}", b"x") for i in range(200)]
        assert all(o.chosen for _, o, _ in client.stream(before, 64, opts))
        running.wait_for(lambda: decided_on(running, 2, "old-199") == "x", "node2 has old keys")
        time.sleep(2.0)  # a catch-up period or two: its cursors are saved
        running.kill(2, signal.SIGTERM)
        missed = [(f"new-{i}", b"y") for i in range(10_000)]
        assert sum(o.chosen is not None for _, o, _ in client.stream(missed, 128, opts)) == 10_000
    running.start(2)

    def caught_up() -> int:
        return sum(e.fields.get("keys", 0)
                   for e in running.log().events(process="node2", name="caught_up"))
    running.wait_for(lambda: caught_up() >= 10_000, "node2 fetched the 10,000", 60)
    time.sleep(1.5)
    assert caught_up() == 10_000, "it fetched more than it missed"
    assert decided_on(running, 2, "new-9999") == "y"


def slot_ballot(c: Cluster, i: int, slot: str = "@r") -> object:
    """Node ``i``'s accepted ballot of a register slot (None: unreachable or none)."""
    with Client(load_config(c.config), null_log("t")) as client:
        for s in client.status(slot, timeout_s=1.0):
            if s.id == i and s.reachable:
                return next((k.accepted for k in s.keys if k.key == slot), None)
    return None


def test_a_register_changed_while_a_node_was_stopped_is_current_on_it(running):
    assert running.run("set", "r", "v1").code == 0
    running.wait_for(lambda: all(slot_ballot(running, i) for i in range(3)), "v1 everywhere")
    running.procs[2].send_signal(signal.SIGSTOP)
    try:
        assert running.run("set", "r", "v2").code == 0
        time.sleep(1.0)
    finally:
        running.procs[2].send_signal(signal.SIGCONT)
    want = slot_ballot(running, 0)
    running.wait_for(lambda: slot_ballot(running, 2) == want,
                     "node2 holds the register's current state", LEARN_WITHIN_S)
    # and a read answers it, with node 2 in the quorum
    running.kill(1)
    r = running.run("get", "r", "--json")
    assert (r.code, r.json["value"]) == (0, "v2")


# ---------------------------------------------------------------- cut off by the proxy


def test_a_node_cut_off_by_the_proxy_learns_everything_decided_meanwhile(tmp_path):
    """Every link to and from node 2 runs through the proxy: everyone reaches node 2 at
    its proxied address, and node 2 (with a config file of its own) reaches its peers
    through proxied addresses too. Cut, 50 keys are decided without it; healed, it
    learns all 50 with no new proposal."""
    real = free_ports(3)
    px = free_ports(3)  # px[2]: node2's inbound; px[0], px[1]: node2's way to nodes 0, 1
    main = write_config(tmp_path / "cluster.ini", [("127.0.0.1", real[0]),
                                                   ("127.0.0.1", real[1]),
                                                   ("127.0.0.1", px[2])],
                        binds=[None, None, "127.0.0.1"])
    with_catch_up(main)
    text = main.read_text()
    # node 2's own file: the same cluster, its peers at their proxied addresses
    mine = tmp_path / "node2.ini"
    mine.write_text(text.replace(f"port = {real[0]}", f"port = {px[0]}")
                        .replace(f"port = {real[1]}", f"port = {px[1]}")
                        .replace(f"port = {px[2]}", f"port = {real[2]}")
                        .replace("bind = 127.0.0.1\n", ""))
    proxy = LoopbackProxy({"to2": (px[2], real[2]), "2to0": (px[0], real[0]),
                           "2to1": (px[1], real[1])})
    proxy.start()
    c = Cluster.__new__(Cluster)
    from zpaxos.lab.launcher import LocalCluster
    LocalCluster.__init__(c, main, tmp_path, range(3))
    c.n = 3
    try:
        c.start(0)
        c.start(1)
        c.config = mine.resolve()
        c.start(2)
        c.config = main.resolve()
        assert c.propose("first", "--key", "k0").code == 0
        c.wait_for(lambda: decided_on(c, 2, "k0") == "first", "node2 reachable before")
        proxy.cut(["to2", "2to0", "2to1"])
        cfg = load_config(main)
        with Client(cfg, null_log("t")) as client:
            opts = options_from(cfg.proposer, timeout_s=30.0)
            items = [(f"cut-{i}", b"v") for i in range(50)]
            assert all(o.chosen for _, o, _ in client.stream(items, 16, opts))
        time.sleep(2.0)
        st = {n["id"]: n for n in c.status("cut-0")["nodes"]}
        assert not st[2]["reachable"], "the cut did not cut"
        proxy.heal()
        t0 = time.monotonic()

        def knows_all() -> bool:
            status = {n["id"]: n for n in c.status()["nodes"]}
            keys = status[2].get("keys", {}) if status[2]["reachable"] else {}
            return all(keys.get(f"cut-{i}", {}).get("chosen") == "v" for i in range(50))
        c.wait_for(knows_all, "node2 learned all 50", LEARN_WITHIN_S + 10)
        print(f"node2 learned 50 decisions {time.monotonic() - t0:.2f} s after the heal")
    finally:
        c.close()
        proxy.stop()
        json.dumps(proxy.stats)
