"""The state moves into the new configuration after every step of a membership change
(runtime/settle.py), on real node processes.

Each test leaves a state that only the nodes of an OLD accept quorum hold (a value
accepted by nodes 1 and 2 and never decided: a proposer that stopped after its Accepts;
registers written while node 0 was down), adds node 3 (epoch 3: prepare 2 of [0, 1, 2, 3],
so a phase 1 of nodes 0 and 3 misses {1, 2}), then runs that phase 1 by hand. With the
identity rounds the state is there; without them (``settle.ENABLED`` off, the
``*_without_*`` tests) nodes 0 and 3 promise with nothing accepted: a second value is
chosen, a register reads empty. Catch-up is off in these clusters (``catch_up_s = 0``), so
nothing but the change itself can have moved the state."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_members_e2e import Lab
from zpaxos.protocol.messages import (
    Accept,
    Accepted,
    Ballot,
    Decide,
    Prepare,
    Promise,
    RNack,
    RPrepare,
    RPromise,
)
from zpaxos.protocol.register import OK
from zpaxos.protocol.regmessages import RegState
from zpaxos.runtime import settle
from zpaxos.runtime.client import Client
from zpaxos.runtime.config import load_config
from zpaxos.runtime.reconfig import Runner

# Real clusters changing their members under load: about a minute each; CI runs them
# (tests/run.sh --slow). The default suite keeps test_members_runtime.py and
# test_settle_units.py, and run_scenarios.sh changes the members every run.
pytestmark = pytest.mark.slow

KEY = "held-by-1-and-2"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    for f in (lab.config, lab.grow, lab.moved):
        f.write_text(f.read_text() + "\n[node]\ncatch_up_s = 0\n")
    lab.nodes.start_all()
    try:
        yield lab
    finally:
        lab.nodes.close()


def exchange(c: Client, to: list[int], msg: object, want: tuple[type, ...]) -> dict[int, object]:
    """Send ``msg`` to ``to``; the first reply of a ``want`` type from each."""
    c.sockets.send_all((i, msg) for i in to)  # type: ignore[misc]
    got: dict[int, object] = {}
    if not want:
        return got
    deadline = time.monotonic() + 20
    while set(to) - got.keys():
        assert time.monotonic() < deadline, f"no answer from {set(to) - got.keys()}"
        for src, reply in c.sockets.poll(0.2):
            if type(src) is int and src in to and isinstance(reply, want):
                got.setdefault(src, reply)
    return got


def change(lab: Lab, goal_ids: list[int], extra: dict[int, tuple[int, Path]] | None = None,
           ) -> None:
    """Run the members change in this process (so a test can turn settling off); start
    each node ``extra`` names (id: (port, config file)) with --join when it is waited for."""
    from zpaxos.protocol.membership import Member

    with Client(load_config(lab.config), fast=False) as c:
        def wait(w: object) -> None:
            for node_id, (_, f) in (extra or {}).items():
                if f"node{node_id} to start" in getattr(w, "what", "") and \
                        not lab.nodes.is_running(node_id):
                    lab.nodes.start(node_id, None, "--join", config=f)

        runner = Runner(c, lambda line: None, wait)
        cfg = runner.current()
        keep = [m for m in cfg.members if m.id in goal_ids and m.id not in (extra or {})]
        new = [Member(i, "127.0.0.1", port) for i, (port, _) in (extra or {}).items()]
        runner.run(tuple(sorted([*keep, *new], key=lambda m: m.id)))


def phase1_on_0_and_3(lab: Lab, key: str, value: bytes) -> bytes:
    """A proposer of the configuration after adding node 3 (prepare 2 of [0, 1, 2, 3],
    accept 3 of them) whose phase 1 reached nodes 0 and 3 only (a prepare quorum),
    proposing ``value``: what it gets chosen."""
    with Client(load_config(lab.grow), fast=False) as c:
        c.ask_members()
        cfg = c.members
        assert cfg is not None and cfg.prepare_ok([0, 3]) and cfg.epoch == 3
        b = Ballot(100, c.id)
        replies = exchange(c, [0, 3], Prepare(key, b), (Promise, Decide))
        for reply in replies.values():
            if isinstance(reply, Decide):
                return reply.value
        best = max((r for r in replies.values() if isinstance(r, Promise)),
                   key=lambda p: p.accepted)
        v = best.value if best.value is not None and not best.accepted.is_zero else value
        got = exchange(c, list(cfg.accept), Accept(key, b, v), (Accepted, Decide))
        assert all(isinstance(r, Accepted) for r in got.values()), got
        return v  # accepted by an accept quorum of the configuration: chosen


def accept_on_1_and_2(lab: Lab, key: str, value: bytes) -> None:
    """A proposer whose Prepare and Accept reached nodes 1 and 2 (a quorum of three) and
    that stopped before it sent a Decide: ``value`` is chosen, and no node knows it."""
    with Client(load_config(lab.config), fast=False) as c:
        c.ask_members()
        b = Ballot(5, c.id)
        promises = exchange(c, [1, 2], Prepare(key, b), (Promise,))
        assert all(isinstance(p, Promise) and p.accepted.is_zero for p in promises.values())
        got = exchange(c, [1, 2], Accept(key, b, value), (Accepted,))
        assert len(got) == 2


def test_a_value_chosen_but_never_decided_survives_adding_and_removing_nodes(
        lab: Lab) -> None:
    accept_on_1_and_2(lab, KEY, b"original")
    change(lab, [0, 1, 2], {3: (lab.ports[3], lab.grow)})  # add node 3: epochs 2, 3
    assert phase1_on_0_and_3(lab, KEY, b"other") == b"original"
    change(lab, [0, 2, 3])  # remove node 1 (of the quorum that chose it)
    with Client(load_config(lab.config), fast=False) as c:
        assert c.propose(b"other", KEY).chosen == b"original"
    # The fast path within the epoch: one call at a time, a range promise granted by a
    # prepare quorum of this configuration serves every key of "fast-" after the first.
    with Client(load_config(lab.config)) as c:
        for i in range(6):
            assert c.propose(f"v{i}", f"fast-{i}").chosen == f"v{i}".encode()
        assert c.members is not None and c.members.epoch > 1
        ballots = {k.key: k.accepted for st in c.status() if st.id == 0 for k in st.keys
                   if k.key.startswith("fast-")}
    assert len(ballots) == 6 and len(set(ballots.values())) == 2, ballots


class Stop(Exception):
    """Stands for Ctrl-C or a crash of the command."""


def test_a_rerun_after_a_stop_mid_way_redoes_the_identity_rounds(lab: Lab) -> None:
    accept_on_1_and_2(lab, KEY, b"original")
    from zpaxos.protocol.membership import Member

    def say(line: str) -> None:
        if "identity rounds" in line:
            raise Stop(line)  # epoch 2 is chosen; its identity rounds have not run

    with Client(load_config(lab.config), fast=False) as c:
        runner = Runner(c, say, lambda w: None)
        goal = (*runner.current().members, Member(3, "127.0.0.1", lab.ports[3]))
        with pytest.raises(Stop, match="epoch 2: identity rounds for 1 keys"):
            runner.run(goal)
    change(lab, [0, 1, 2], {3: (lab.ports[3], lab.grow)})  # the rerun finishes the job
    assert phase1_on_0_and_3(lab, KEY, b"other") == b"original"


def test_without_the_identity_rounds_a_second_value_is_chosen(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settle, "ENABLED", False)
    accept_on_1_and_2(lab, KEY, b"original")
    change(lab, [0, 1, 2], {3: (lab.ports[3], lab.grow)})
    assert phase1_on_0_and_3(lab, KEY, b"other") == b"other"  # two values chosen


def register_on_0_and_3(lab: Lab, name: str) -> RegState | None:
    """Phase 1 of a register read after adding node 3, on nodes 0 and 3 alone (a prepare
    quorum): the state they show, None for nothing accepted."""
    with Client(load_config(lab.grow), fast=False) as c:
        c.ask_members()
        assert c.members is not None and c.members.prepare_ok([0, 3])
        b = Ballot(100, c.id)
        replies = exchange(c, [0, 3], RPrepare(name, b), (RPromise, RNack))
        while any(isinstance(r, RNack) for r in replies.values()):  # promised higher: above it
            b = Ballot(max(r.promised.round for r in replies.values()
                           if isinstance(r, RNack)) + 1, c.id)
            replies = exchange(c, [0, 3], RPrepare(name, b), (RPromise, RNack))
        best = max((r for r in replies.values() if isinstance(r, RPromise)),
                   key=lambda p: p.accepted)
        return None if best.accepted.is_zero else best.state


def write_while_node0_is_down(lab: Lab) -> dict[str, bytes]:
    lab.nodes.kill(0)
    values = {f"reg{i}": f"v{i}".encode() for i in range(20)}
    with Client(load_config(lab.config), fast=False) as c:
        for name, v in values.items():
            assert c.set(name, v).status == OK
    lab.nodes.start(0)
    return values


def test_registers_read_back_after_add_remove_and_replace(lab: Lab) -> None:
    values = write_while_node0_is_down(lab)
    change(lab, [0, 1, 2], {3: (lab.ports[3], lab.grow)})  # add node 3
    for name, v in values.items():
        state = register_on_0_and_3(lab, name)
        assert state is not None and state.value == v, name
    change(lab, [0, 2, 3])  # remove node 1
    lab.nodes.kill(3)
    shutil.rmtree(lab.dir / "data" / "node3")  # node 3's disk dies: replaced elsewhere
    grow = lab.dir / "grow2.ini"
    grow.write_text(lab.grow.read_text().replace(str(lab.ports[3]), str(lab.ports[5])))
    change(lab, [0, 2, 3], {3: (lab.ports[5], grow)})
    with Client(load_config(lab.config), fast=False) as c:
        for name, v in values.items():
            r = c.get(name)
            assert (r.status, r.value) == (OK, v)


def test_without_the_identity_rounds_a_register_read_misses_its_state(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settle, "ENABLED", False)
    values = write_while_node0_is_down(lab)
    change(lab, [0, 1, 2], {3: (lab.ports[3], lab.grow)})
    assert all(register_on_0_and_3(lab, name) is None for name in values)



def test_status_asks_the_members_and_nodes_catch_up_from_a_new_one(tmp_path: Path) -> None:
    import json

    from zpaxos.lab.launcher import wait_for

    lab = Lab(tmp_path)  # catch-up on (every 0.5 s)
    lab.nodes.start_all()
    try:
        change(lab, [0, 1, 2], {3: (lab.ports[3], lab.grow)})
        r = lab.nodes.run("status", "--json")  # the config file names nodes 0-2 only
        assert r.code == 0, r.err
        assert [n["id"] for n in json.loads(r.out)["nodes"]] == [0, 1, 2, 3]
        with Client(load_config(lab.config), fast=False) as c:
            c.ask_members()
            exchange(c, [3], Decide("only-on-3", b"x", Ballot(1, c.id)), ())  # no reply
            c.sockets.poll(0.2)

            def learned() -> bool:
                return all(k.chosen == b"x" for st in c.status("only-on-3") if st.id == 0
                           for k in st.keys) and any(
                    st.id == 0 and st.keys for st in c.status("only-on-3"))

            wait_for(learned, "node 0 to catch up from node 3 (added while it ran)", 20)
    finally:
        lab.nodes.close()
