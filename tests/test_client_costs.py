"""What a proposer process does per call, on real nodes: no work that a call does not
need (issue 24: reseeding a Random cost about 8 us of each Client.propose)."""

from __future__ import annotations

import random

import pytest

from zpaxos.lab.launcher import LocalCluster, free_ports, write_config
from zpaxos.runtime.client import Client
from zpaxos.runtime.config import load_config

pytestmark = pytest.mark.e2e


def test_a_call_draws_from_the_clients_random_source_without_seeding_one(tmp_path,
                                                                         monkeypatch):
    path = write_config(tmp_path / "cluster.ini",
                        [("127.0.0.1", p) for p in free_ports(3)], value_files="")
    with LocalCluster(path, tmp_path, range(3)) as local:
        local.start_all()
        with Client(load_config(path), rng=random.Random(7)) as c:
            seeded: list[object] = []

            class Counted(random.Random):
                def seed(self, *a: object, **k: object) -> None:
                    seeded.append(a)
                    super().seed(*a, **k)

            monkeypatch.setattr(random, "Random", Counted)
            for i in range(3):
                assert c.propose(f"v{i}", key=f"k{i}").chosen == f"v{i}".encode()
            assert seeded == []


def test_a_node_process_freezes_what_it_loaded_and_a_client_leaves_the_collector(tmp_path):
    """A `zpaxos node` process (ours) moves what it loaded at start out of the cyclic
    collector's way and collects its young generation less often; a Client (a library
    in its caller's process) changes neither."""
    import gc

    from zpaxos.runtime.gctune import NODE_GC_YOUNG

    path = write_config(tmp_path / "cluster.ini",
                        [("127.0.0.1", p) for p in free_ports(3)], value_files="")
    before = (gc.get_threshold(), gc.get_freeze_count())
    with LocalCluster(path, tmp_path, range(3)) as local:
        local.start_all()
        with Client(load_config(path)) as c:
            assert c.propose("v", key="k").chosen == b"v"
            statuses = c.status()
        assert len(statuses) == 3
        for st in statuses:
            assert st.reachable, st
            assert dict(st.stats)["gc_frozen"] > 1000, st.stats
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
    assert gc.get_threshold()[0] != NODE_GC_YOUNG


def test_own_process_gc_freezes_and_raises_the_young_threshold():
    import gc

    from zpaxos.runtime.gctune import own_process_gc

    threshold = gc.get_threshold()
    try:
        assert own_process_gc(12_345) == gc.get_freeze_count() > 0
        assert gc.get_threshold() == (12_345, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
