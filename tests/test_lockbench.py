"""``zpaxos bench --locks`` (zpaxos/lab/lockbench.py): it runs both cases on a running
cluster, each lock user a process of its own, and reports what it measured. (No figure is
asserted: speed targets are bench/'s.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import free_ports
from zpaxos.client import Client, load_config
from zpaxos.lab.launcher import LocalCluster, write_config
from zpaxos.lab.lockbench import report
from zpaxos.protocol.lease import decode_record


@pytest.mark.slow  # a benchmark's smoke run (CI runs it)
def test_bench_locks_measures_both_cases_and_leaves_the_locks_free(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.ini", [("127.0.0.1", p) for p in free_ports(3)],
                          value_files="")
    with LocalCluster(config, tmp_path, range(3)) as c:
        c.start_all()
        r = c.run("bench", "--locks", "--lock-cycles", "5",
                  "--lock-contenders", "3", "--lock-seconds", "1", "--json")
        assert r.code == 0, r.err
        u, k = r.json["uncontended"], r.json["contended"]
        assert (u["processes"], u["cycles"], u["cycles_min"]) == (1, 5, 5)
        assert k["processes"] == 3 and k["cycles"] >= 1 and k["seconds"] == 1
        assert k["acquire_p50_ms"] > 0 and "handovers_per_s" in k
        prefix = r.json["locks"].removesuffix("*")
        with Client(load_config(config)) as client:
            for case in ("solo", "contended"):  # every holder released
                assert not decode_record(client.get(prefix + case).value).held
        lines = report(r.json).splitlines()
        assert lines[2].split()[:3] == ["RUN", "USERS", "ACQUIRE"]
        assert lines[3].startswith("uncontended  1 process, 5 cycles")


def test_bench_locks_refuses_a_bad_count(tmp_path: Path) -> None:
    from tests.harness import Cluster

    c = Cluster(tmp_path)
    r = c.run("bench", "--locks", "--lock-contenders", "0")
    assert r.code == 2 and "--lock-contenders" in r.err and "Traceback" not in r.err
