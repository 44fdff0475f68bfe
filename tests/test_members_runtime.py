"""Membership in the runtime, without processes: the epoch on the wire, the chain of
configurations in a store, admission's fence and its refusal, proposers counting a
configuration's quorums, and the runner's plan recomputed from any configuration.

The real-process tests (add, remove, replace under load; crashes and reruns) are in
tests/test_members_e2e.py."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from zpaxos.hosts.acceptor_host import AcceptorHost
from zpaxos.hosts.addresses import Caller
from zpaxos.hosts.admission import Admission
from zpaxos.hosts.proposer_host import ProposerHost
from zpaxos.protocol.core import KeyState, Proposer, ProposerOptions
from zpaxos.protocol.membership import Config, Member, check_step, plan_add
from zpaxos.protocol.messages import (
    Accept,
    Accepted,
    Ballot,
    Decide,
    MembersAsk,
    MembersInfo,
    Prepare,
    Promise,
)
from zpaxos.runtime import codec
from zpaxos.runtime import members as chain
from zpaxos.runtime.memstore import MemoryStore
from zpaxos.runtime.reconfig import plan_to

B1 = Ballot(1, b"\x01" * 16)


def members(n: int) -> tuple[Member, ...]:
    return tuple(Member(i, "127.0.0.1", 5001 + i) for i in range(n))


# ---------------------------------------------------------------- the wire


def test_a_frame_carries_its_epoch_and_an_old_frame_reads_as_epoch_0() -> None:
    msgs = [Prepare("k", B1), Decide("k", b"v", B1)]
    assert codec.decode_batch(codec.encode_frame("p1", 0, msgs, 7)).epoch == 7
    old = codec.decode_batch(codec.encode_frame("p1", 0, msgs))
    assert old.epoch == 0 and old.messages == msgs
    # a batch over the body limit is split; every frame carries the epoch
    big = [Accept(f"k{i}", B1, b"x" * 100_000) for i in range(100)]
    frames = list(codec.encode_batch("p1", 0, big, 9))
    assert len(frames) > 1
    assert {codec.decode_batch(f).epoch for f, _ in frames} == {9}


# ---------------------------------------------------------------- the chain


def test_the_chain_is_read_back_newest_first_and_bounded() -> None:
    store = MemoryStore()
    one = Config.initial(members(3))
    two = plan_add(one, Member(3, "127.0.0.1", 5004))[0].config
    store.save([(chain.key_of(1), KeyState(chosen=chain.encode(one))),
                (chain.key_of(2), KeyState(chosen=chain.encode(two))),
                (chain.key_of(3), KeyState(value=b"accepted, not chosen")),
                (chain.PREFIX + "junk", KeyState(chosen=b"not a config"))], [])
    assert chain.latest(store) == two
    assert chain.epoch_of(chain.key_of(12)) == 12 and chain.epoch_of("x") is None
    with pytest.raises(ValueError, match="over"):
        chain.decode(b"\x00" * (chain.MAX_CONFIG_BYTES + 1))
    with pytest.raises(ValueError):
        chain.decode(b"garbage")


def test_a_configuration_is_applied_over_the_config_file(tmp_path: Path) -> None:
    from zpaxos.lab.launcher import write_config
    from zpaxos.runtime.config import load_config

    path = write_config(tmp_path / "c.ini", [("127.0.0.1", 5001 + i) for i in range(3)])
    cluster = load_config(path)
    cfg = plan_add(chain.initial(cluster), Member(3, "127.0.0.1", 6004))[-1].config
    moved = chain.apply(cluster, cfg)
    assert [n.id for n in moved.nodes] == [0, 1, 2, 3]
    assert moved.node(3).port == 6004 and moved.node(0).data_dir == cluster.node(0).data_dir


# ---------------------------------------------------------------- admission's fence


def _admission(epoch: int) -> tuple[Admission, Config]:
    cfg = plan_add(Config.initial(members(3)), Member(3, "127.0.0.1", 5004))[0].config
    adm = Admission(AcceptorHost(0, {}, [1, 2]), 0, [1, 2], os.urandom(16), 0, False, {},
                    boot=b"12345678")
    adm.phase = "voting"
    adm.epoch, adm.config = epoch, chain.encode(cfg)
    return adm, cfg


def test_a_stale_epoch_is_refused_with_the_configuration() -> None:
    adm, cfg = _admission(cfg_epoch := 2)
    stale = Caller(b"p:aa:0", epoch=1)
    ready = adm.handle([(stale, Prepare("k", B1)), (stale, Accept("k", B1, b"v"))])
    assert ready.persist == {}  # no vote
    [(dst, info)] = ready.send
    assert dst == stale and isinstance(info, MembersInfo)
    assert info.refused == 2 and info.epoch == cfg_epoch
    assert chain.decode(info.config) == cfg
    assert adm.dropped_by["stale_epoch"] == 2


def test_the_current_epoch_votes_and_a_decide_always_passes() -> None:
    adm, _ = _admission(2)
    ready = adm.handle([(Caller(b"p:bb:0", epoch=2), Prepare("k", B1))])
    assert [type(m) for _, m in ready.send] == [Promise]
    ready = adm.handle([(Caller(b"p:cc:0", epoch=1), Decide("d", b"v", B1))])
    assert "d" in ready.lazy or "d" in ready.persist
    asked = adm.handle([(Caller(b"p:dd:0"), MembersAsk(0))])
    assert [type(m) for _, m in asked.send] == [MembersInfo]


def test_without_a_chain_nothing_is_fenced() -> None:
    adm, _ = _admission(0)
    ready = adm.handle([(Caller(b"p:ee:0"), Prepare("k", B1))])
    assert [type(m) for _, m in ready.send] == [Promise]


# ---------------------------------------------------------------- proposers


def test_a_proposer_counts_each_phase_by_the_configuration() -> None:
    one = Config.initial(members(3))
    cfg = plan_add(one, Member(3, "127.0.0.1", 5004))[0].config  # accept 3 of 0..3
    p = Proposer("k", b"v", b"\x02" * 16, [0, 1, 2], ProposerOptions(), random.Random(1),
                 quorums=cfg)
    step = p.start(0.0)
    assert sorted(dst for dst, _ in step.send) == list(cfg.prepare)
    # an accept-only node's promise does not count in phase 1
    early = p.receive(0.0, 3, Promise("k", p.ballot, Ballot(0, b""), None)).send
    early += p.receive(0.0, 0, Promise("k", p.ballot, Ballot(0, b""), None)).send
    assert cfg.prepare_quorum == 2 and early == []
    sends = []
    for src in cfg.prepare[1:cfg.prepare_quorum]:
        sends += p.receive(0.0, src, Promise("k", p.ballot, Ballot(0, b""), None)).send
    assert sorted(dst for dst, _ in sends) == list(cfg.accept)  # node 3 gets phase 2
    for src in (0, 1):
        p.receive(0.0, src, Accepted("k", p.ballot, b"v"))
    assert p.outcome is None  # 2 of 4 is no accept quorum here
    p.receive(0.0, 3, Accepted("k", p.ballot, b"v"))
    assert p.outcome is not None and p.outcome.chosen == b"v"


def test_a_new_configuration_restarts_the_rounds_in_flight() -> None:
    one = Config.initial(members(3))
    host = ProposerHost([0, 1, 2], random.Random(1), lambda: os.urandom(16))
    ready = host.start(0.0, 1, "k", b"v", ProposerOptions())
    assert {dst for dst, _ in ready.send} == {0, 1, 2}
    two = plan_add(one, Member(3, "127.0.0.1", 5004))
    moved = host.reconfigure(0.1, two[-1].config)
    assert {dst for dst, _ in moved.send} == {0, 1, 2, 3}  # a new round, at once
    assert all(isinstance(m, Prepare) for _, m in moved.send)


# ---------------------------------------------------------------- the runner's plan


@pytest.mark.parametrize("stop_after", [0, 1, 2])
def test_the_plan_is_recomputed_from_wherever_a_change_stopped(stop_after: int) -> None:
    one = Config.initial(members(3))
    new = Member(3, "127.0.0.1", 5004)
    goal = (*one.members, new)
    full = plan_to(one, goal)
    assert full and all(check_step(a.config if i else one, b.config) is None
                        for i, (a, b) in enumerate(zip([full[0], *full], full, strict=False)))
    at = one if stop_after == 0 else full[min(stop_after, len(full)) - 1].config
    rest = plan_to(at, goal)
    assert [s.config for s in rest] == [s.config for s in full[stop_after:]]
    assert plan_to(full[-1].config, goal) == []  # done: a rerun does nothing


def test_a_half_done_add_is_undone_when_the_goal_drops_the_node() -> None:
    one = Config.initial(members(3))
    half = plan_add(one, Member(3, "127.0.0.1", 5004))[0].config
    back = plan_to(half, one.members)
    prev = half
    for s in back:
        assert check_step(prev, s.config) is None
        prev = s.config
    assert prev.ids == (0, 1, 2) and set(prev.prepare) == set(prev.accept) == {0, 1, 2}


def test_replace_in_place_leaves_then_joins_caught_up() -> None:
    one = Config.initial(members(3))
    moved = Member(2, "127.0.0.1", 6003)
    steps = plan_to(one, (*one.members[:2], moved))
    assert steps[-1].config.member(2) == moved
    assert any(2 in s.needs_caught_up for s in steps)  # it counts in phase 1 only caught up
    assert any(s.config.member(2) is None for s in steps)  # the old one left first


# ---------------------------------------------------------------- the command's mistakes


def _zpaxos(tmp_path: Path, *args: str, secure: bool = False) -> tuple[int, str]:
    import subprocess

    from zpaxos.lab.launcher import child_env, free_ports, make_keys, write_config, zpaxos_cmd

    config = write_config(tmp_path / "c.ini", [("127.0.0.1", p) for p in free_ports(3)],
                          secure=secure)
    if secure:
        make_keys(tmp_path, 3)
    r = subprocess.run(zpaxos_cmd(*args, "--config", str(config)), cwd=tmp_path,
                       env=child_env(), capture_output=True, text=True, timeout=60)
    return r.returncode, r.stderr


def test_a_mistake_is_one_line(tmp_path: Path) -> None:
    code, err = _zpaxos(tmp_path, "members", "add", "3", "--host", "no such host!",
                        "--port", "5004")
    assert code == 2 and err.count("\n") == 1 and "--host" in err, err
    code, err = _zpaxos(tmp_path, "members", "add", "3", "--host", "127.0.0.1",
                        "--port", "5004", secure=True)
    assert code == 2 and err.count("\n") == 1 and "--public-key: required" in err, err


def test_no_cluster_is_one_line(tmp_path: Path) -> None:
    code, err = _zpaxos(tmp_path, "members", "remove", "1")
    assert code == 1 and err.count("\n") == 1 and "no node answered" in err, err


def test_the_chain_takes_configurations_only(tmp_path: Path) -> None:
    code, err = _zpaxos(tmp_path, "propose", "junk", "--key", chain.key_of(2))
    assert code == 2 and err.count("\n") == 1 and "membership" in err, err
