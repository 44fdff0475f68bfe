"""paxos.log kept bounded, both ways, with real node processes: rotation by size (all
processes writing one file, each may rotate it), and logrotate's move-then-SIGHUP."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.harness import Cluster
from zpaxos.client import Client, load_config
from zpaxos.runtime.config import ConfigError
from zpaxos.runtime.config import load_config as load
from zpaxos.runtime.log import EventLog, SharedFileHandler, _JsonFormatter

pytestmark = pytest.mark.e2e


def add_log_keys(config: Path, **keys: object) -> None:
    text = config.read_text().replace(
        "[log]\n", "[log]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()))
    config.write_text(text)


def records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_size_rotation_keeps_at_most_backup_count_files(tmp_path: Path) -> None:
    c = Cluster(tmp_path)  # nodes log every message at INFO: plenty of lines
    add_log_keys(c.config, max_bytes=20_000, backup_count=2)
    try:
        c.start_all()
        with Client(load_config(c.config)) as client:
            for i in range(6):  # proposals from several processes too, on the same file
                assert c.propose(f"v{i}", "--key", f"cli-{i}").code == 0
            client.propose_many([(f"k{i}", "x" * 100) for i in range(300)])
        time.sleep(0.3)
    finally:
        c.stop_all()
    logs = sorted(p.name for p in tmp_path.glob("paxos.log*") if not p.name.endswith(".lock"))
    assert logs == ["paxos.log", "paxos.log.1", "paxos.log.2"]  # no .3: the oldest went
    for name in logs:
        size = (tmp_path / name).stat().st_size
        assert size < 20_000 + 3 * 4096, (name, size)  # max, plus a record per writer
        records(tmp_path / name)  # every line whole: no two processes' lines mixed
    assert any(r["event"] == "stop" for r in records(tmp_path / "paxos.log"))


def test_sighup_reopens_the_log_after_logrotate_moved_it(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    try:
        c.start_all()
        assert c.propose("before", "--key", "a").code == 0
        moved = tmp_path / "paxos.log.1"
        (tmp_path / "paxos.log").rename(moved)  # logrotate's default: move, then HUP
        assert c.propose("still", "--key", "b").code == 0
        time.sleep(0.2)
        # Without the HUP, node0 still writes the moved file (the proposer, a new
        # process, opened a new one).
        assert any(r["process"] == "node0" and r.get("key") == "b" for r in records(moved))
        for i in range(3):
            c.procs[i].send_signal(signal.SIGHUP)
        time.sleep(0.2)
        assert all(c.is_running(i) for i in range(3))  # a HUP does not stop a node
        assert c.propose("after", "--key", "d").code == 0
        time.sleep(0.2)
        new = records(tmp_path / "paxos.log")
        for i in range(3):
            assert any(r["process"] == f"node{i}" and r.get("key") == "d" for r in new)
        assert not any(r.get("key") == "d" for r in records(moved))
    finally:
        c.stop_all()


def test_log_size_settings_are_checked(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    add_log_keys(c.config, max_bytes=100)
    with pytest.raises(ConfigError, match=r"\[log\] max_bytes: 100 is below 4096"):
        load(c.config)
    c = Cluster(tmp_path)
    add_log_keys(c.config, backup_count=0)
    with pytest.raises(ConfigError, match=r"\[log\] backup_count: '0' must be at least 1"):
        load(c.config)


def test_a_process_follows_a_rotation_another_one_made(tmp_path: Path) -> None:
    import logging

    path = tmp_path / "shared.log"
    loggers = []
    for name in ("a", "b"):
        lg = logging.getLogger(f"zpaxos.test.rot.{name}")
        lg.propagate = False
        h = SharedFileHandler(path, max_bytes=4096, backup_count=3)
        h.setFormatter(_JsonFormatter())
        lg.handlers[:] = [h]
        lg.setLevel(logging.INFO)
        loggers.append(EventLog(lg, name))
    try:
        for i in range(400):
            loggers[i % 2].event("tick", n=i, pad="x" * 40)
        files = [path, *(Path(f"{path}.{i}") for i in (1, 2, 3))]
        assert all(f.exists() for f in files) and not Path(f"{path}.4").exists()
        seen = [json.loads(x)["n"] for f in files for x in f.read_text().splitlines()]
        assert len(seen) == len(set(seen))  # nothing written twice
        assert max(seen) == 399  # the newest records are in the current files
    finally:
        for lg in loggers:
            for h in lg.logger.handlers:
                h.close()
