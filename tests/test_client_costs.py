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
