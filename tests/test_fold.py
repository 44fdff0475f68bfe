"""The fold, a slice per loop pass (zpaxos/runtime/storage_fold.py): no pass writes more
than its slice, the passes meanwhile go to the other journal, reads see the newest state,
and a crash at any moment of a fold restarts with every commit."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import Ballot
from zpaxos.runtime import journal as journal_mod
from zpaxos.runtime import storage_fold
from zpaxos.runtime.journal import HEADER_SIZE, JOURNAL_NAMES
from zpaxos.runtime.storage import SqliteStore
from zpaxos.runtime.storage_errors import StateLost, StorageError

ID = bytes(range(16))


def state(n: int, chosen: bool = False) -> KeyState:
    b = Ballot(n, ID)
    v = b"v%d" % n
    return KeyState(b, b, v, v if chosen else None, b if chosen else Ballot(0, b""))


def crash(store: SqliteStore) -> None:
    """Let go of every file as a killed process would: nothing folded or committed."""
    store._close_journals()
    store._close_db()  # an open transaction is dropped, as SQLite drops it after a crash
    store._marker.close()
    store._lock.release()
    store._opened = False


class Rows:
    """state.db's connection, counting the acceptor rows each executemany writes."""

    def __init__(self, db: sqlite3.Connection, fail: bool = False) -> None:
        self.db, self.fail, self.slices = db, fail, []  # type: list[int]

    def executemany(self, sql: str, rows: Any) -> Any:
        rows = list(rows)
        if "acceptor" in sql:
            if self.fail:
                raise sqlite3.OperationalError("disk I/O error")
            self.slices.append(len(rows))
        return self.db.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


@pytest.fixture
def small(monkeypatch):
    """A fold every 8 keys, written 2 keys a slice (at least)."""
    monkeypatch.setattr(storage_fold, "FOLD_KEYS", 8)
    monkeypatch.setattr(storage_fold, "FOLD_SLICE_KEYS", 2)


def run(store: SqliteStore, passes: list[list[tuple[str, KeyState]]]) -> None:
    for batch in passes:
        store.save(batch)
        store.seal()


def test_a_fold_is_written_a_slice_per_pass_while_the_passes_go_on(tmp_path, small):
    store = SqliteStore(tmp_path)
    rows = store._db = Rows(store._db)  # type: ignore[assignment]
    run(store, [[(f"k{i}", state(1))] for i in range(8)])  # the 8th key starts a fold
    assert store.folding and rows.slices == [2]  # one slice, not the whole fold
    assert store._active == 1  # the passes append to the other journal now
    run(store, [[("k0", state(2))], [("new", state(1))]])  # one key each: 2-key slices
    assert rows.slices == [2, 2, 2] and store.folding
    store.save([(f"b{i}", state(1)) for i in range(3)])
    store.seal()  # a pass of 3 keys: a slice of twice that (the 2 rows left)
    assert rows.slices == [2, 2, 2, 2] and store._db.in_transaction
    store.seal()  # the commit: a step of its own
    assert not store._db.in_transaction and store.folding
    store.seal()  # emptying state.journal (in a thread), then state.db's checkpoint
    store._join_reset()
    assert (tmp_path / JOURNAL_NAMES[0]).read_bytes()[HEADER_SIZE:HEADER_SIZE + 8] \
        == bytes(8)  # emptied once its records were committed
    store.seal()
    assert not store.folding and rows.slices == [2, 2, 2, 2]
    want = {"k0": state(2), "k7": state(1), "new": state(1), "b2": state(1)}
    assert store.get(list(want)) == want
    crash(store)  # what the passes wrote during the fold is in the other journal
    assert store.commit_seq == 11
    again = SqliteStore(tmp_path)
    assert again.get(list(want)) == want
    again.close()


def test_a_slice_is_at_least_twice_its_pass_so_a_fold_keeps_up(tmp_path, small):
    store = SqliteStore(tmp_path)
    rows = store._db = Rows(store._db)  # type: ignore[assignment]
    n = 0
    for _ in range(60):
        store.save([(f"k{n + i:04}", state(1)) for i in range(5)])
        n += 5
        store.seal()
        assert all(s <= 10 for s in rows.slices)  # never more than twice the pass
        assert len(store._pending) < storage_fold.FOLD_KEYS_HARD
    assert sum(rows.slices) > 200  # the folds kept up with 300 keys
    store.close()


def test_reads_during_a_fold_see_the_newest_state(tmp_path, small):
    store = SqliteStore(tmp_path)
    run(store, [[(f"k{i}", state(1, chosen=i % 2 == 0))] for i in range(8)])
    assert store.folding
    store.save([("k1", state(5, chosen=True)), ("k9", state(1))])  # the other journal
    want = {f"k{i}": state(1, chosen=i % 2 == 0) for i in range(8)}
    want.update({"k1": state(5, chosen=True), "k9": state(1)})
    assert store.get(list(want)) == want
    assert store.page("", 100) == sorted(want.items())
    assert store.page("k3", 2) == [("k4", want["k4"]), ("k5", want["k5"])]
    assert store.prefixed("k", 100) == sorted(want.items())
    assert store.learned_from(0, 100) == ["k0", "k2", "k4", "k6", "k1"]
    assert store.learned_from(3, 1) == ["k6"] and store.learn_end == 5
    store.close()


def _commits(tmp_path: Path, n: int) -> dict[str, KeyState]:
    again = SqliteStore(tmp_path)
    try:
        assert again.commit_seq == n
        return again.page("", 1000)  # type: ignore[return-value]
    finally:
        again.close()


@pytest.mark.parametrize("slices", [1, 2, 3])
def test_a_crash_in_mid_fold_restarts_with_every_commit(tmp_path, small, slices):
    store = SqliteStore(tmp_path)
    passes = [[(f"k{i}", state(1))] for i in range(8)]
    passes += [[("k0", state(7))], [("x", state(1))]][:slices - 1]
    run(store, passes)
    assert store.folding and store._db.in_transaction  # rows written, nothing committed
    crash(store)
    want: dict[str, KeyState] = {}
    for batch in passes:
        want.update(batch)  # a key's latest state
    assert dict(_commits(tmp_path, len(passes))) == want


def test_a_crash_after_the_fold_commits_before_its_journal_is_emptied(tmp_path, small,
                                                                     monkeypatch):
    store = SqliteStore(tmp_path)
    run(store, [[(f"k{i}", state(1))] for i in range(8)])
    store.save([("k0", state(2))])  # the other journal
    monkeypatch.setattr(journal_mod.Journal, "reset", lambda self: None)
    while store.folding:
        store.seal()  # committed; state.journal keeps its records (the "crash")
    crash(store)
    monkeypatch.undo()
    got = dict(_commits(tmp_path, 9))
    assert got == {f"k{i}": state(1) for i in range(1, 8)} | {"k0": state(2)}


def test_a_failed_slice_stops_with_a_storage_error_and_loses_nothing(tmp_path, small):
    store = SqliteStore(tmp_path)
    store._db = Rows(store._db, fail=True)  # type: ignore[assignment]
    with pytest.raises(StorageError, match="state.db"):
        run(store, [[(f"k{i}", state(1))] for i in range(8)])
    assert not store._db.in_transaction  # rolled back
    crash(store)
    assert dict(_commits(tmp_path, 8)) == {f"k{i}": state(1) for i in range(8)}


def test_a_commit_missing_between_the_two_journals_is_damage(tmp_path, small):
    """The older journal's last record damaged after it was acknowledged, the newer one
    going on after it: a gap, never a tail."""
    store = SqliteStore(tmp_path)
    run(store, [[(f"k{i}", state(1))] for i in range(8)])
    store.save([("k0", state(2))])
    end = store._journals[0].end
    crash(store)
    path = tmp_path / JOURNAL_NAMES[0]
    data = bytearray(path.read_bytes())
    last = HEADER_SIZE
    while True:  # the start of the last record
        length = int.from_bytes(data[last:last + 4], "big")
        if last + 8 + length >= end:
            break
        last += 8 + length
    data[last + 9] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StateLost, match=r"state.journal2: damaged: commit 8 is missing "
                                        r"from the journals"):
        SqliteStore(tmp_path)


def test_an_idle_store_finishes_its_fold_on_seals_alone(tmp_path, small):
    store = SqliteStore(tmp_path)
    run(store, [[(f"k{i}", state(1))] for i in range(8)])
    seals = 0
    while store.folding:  # what the node's loop does with nothing to read
        store.seal()
        seals += 1
    assert seals == 6  # 2 keys a slice: 8 keys in 4 slices (one written already), the
    # commit, emptying the journal, the checkpoint
    assert store.commit_seq == 8
    store.close()


def test_state_db_write_ahead_log_is_checkpointed_after_each_fold(tmp_path, small):
    """SQLite's own checkpoint is off (it ran inside a commit, about 8 ms every 1,000
    pages): the fold's last step does it, so the log never grows past a fold's pages."""
    store = SqliteStore(tmp_path)
    for n in range(300):
        store.save([(f"k{n:04}", state(1, chosen=True))])
        store.seal()
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert (tmp_path / "state.db-wal").stat().st_size < 64 << 10  # 37 folds: 680 KB without
    store.close()


def test_a_fold_all_at_once_checkpoints_too(tmp_path, monkeypatch):
    """Saves that never seal (the million-key build, a pass past FOLD_KEYS_HARD) fold
    all at once, checkpoint included."""
    from zpaxos.runtime import storage

    monkeypatch.setattr(storage, "FOLD_KEYS_HARD", 8)
    store = SqliteStore(tmp_path)
    for n in range(0, 2400, 8):
        store.save([(f"k{n + i:04}", state(1, chosen=True)) for i in range(8)])
    assert not store.folding and not store._pending
    assert (tmp_path / "state.db-wal").stat().st_size < 64 << 10
    store.close()


# ---- a real node killed in mid-fold (the crash points of zpaxos/runtime/faults.py)


@pytest.mark.e2e
@pytest.mark.parametrize("point,after", [("mid_fold", "3"), ("after_fold", "1")])
def test_a_node_killed_during_a_fold_restarts_with_every_commit(tmp_path, point, after):
    """Node 0 exits at the crash point while the cluster decides 6,000 keys (its first
    fold starts at 4,096); restarted, it passes its own checks (state.marker: no commit
    it counted is missing) and holds every key it had committed."""
    from zpaxos.lab.launcher import LocalCluster, child_env, free_ports, wait_for, write_config
    from zpaxos.runtime import faults
    from zpaxos.runtime.client import Client, options_from
    from zpaxos.runtime.config import load_config

    path = write_config(tmp_path / "cluster.ini",
                        [("127.0.0.1", p) for p in free_ports(3)], value_files="")
    cluster = load_config(path)
    with LocalCluster(path, tmp_path, range(3)) as local:
        local.env = child_env() | {faults.ENV_AT: point, faults.ENV_AFTER: after}
        local.start(0)
        local.env = None
        local.start(1)
        local.start(2)
        items = [(f"fold-{i:05}", b"v") for i in range(6000)]
        opts = options_from(cluster.proposer, timeout_s=60.0)
        with Client(cluster) as c:
            assert all(o.chosen == b"v" for _, o, _ in c.stream(items, 128, opts))
        wait_for(lambda: local.procs[0].poll() is not None, f"node0 to exit at {point}")
        assert local.kill(0) == faults.CRASH_EXIT_CODE
        local.start(0)  # a lost commit would stop it here ("rolled back")
        local.stop(0)
    store = SqliteStore(tmp_path / cluster.node(0).data_dir)  # (relative to the nodes' cwd)
    try:
        assert store.commit_seq > 0
        keys = store.count("fold-")
        assert keys >= storage_fold.FOLD_KEYS  # the fold's keys, and those after it
        assert keys == len(store.prefixed("fold-", 10_000))
    finally:
        store.close()


def test_an_idle_node_finishes_its_fold_without_waiting_for_traffic(tmp_path, monkeypatch):
    """A node whose traffic stops in mid-fold goes on with it at once (its loop does not
    sleep while a fold is under way), rather than holding the fold open until the next
    message: one key a slice here, so only the idle loop can finish it."""
    from tests.test_storage_node import one_node_cluster, run_node
    from zpaxos.lab.launcher import wait_for
    from zpaxos.runtime.client import Client
    from zpaxos.runtime.log import null_log
    from zpaxos.runtime.node import Node

    monkeypatch.setattr(storage_fold, "FOLD_KEYS", 8)
    monkeypatch.setattr(storage_fold, "FOLD_SLICE_KEYS", 1)
    monkeypatch.setattr(storage_fold, "FOLD_SLICE_FACTOR", 0)
    cluster = one_node_cluster(tmp_path)
    store = SqliteStore(cluster.node(0).data_dir)
    folds: list[float] = []
    store.timed(lambda s: None, folds.append)
    node = Node(cluster, 0, null_log(), store)
    t, wakeup, errors = run_node(node)
    try:
        with Client(cluster, fast=False) as c:
            out = c.propose_many([(f"k{i:02}", "v") for i in range(40)])
        assert all(o.chosen == b"v" for o in out)
        wait_for(lambda: folds and not store.folding, "the fold to end", timeout_s=10)
    finally:
        wakeup.request_stop()
        t.join(10)
    assert not errors


def test_a_database_deleted_with_the_second_journal_holding_state_is_refused(tmp_path, small):
    store = SqliteStore(tmp_path)
    run(store, [[(f"k{i}", state(1))] for i in range(8)])
    store.save([("x", state(1))])  # in state.journal2 (a fold is under way)
    crash(store)
    for name in ("state.db", "state.db-wal", "state.marker", JOURNAL_NAMES[0]):
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.raises(StateLost, match=r"missing, but its journal \(state.journal2\) "
                                        r"holds state"):
        SqliteStore(tmp_path)


def test_a_journal_that_cannot_be_emptied_stops_the_next_fold(tmp_path, small, monkeypatch):
    """Emptying the folded journal runs in a thread of its own; its failure (a disk
    error) is raised in the loop when the next fold needs that file, and loses nothing."""
    from zpaxos.runtime.storage_errors import DiskFull

    def fail(self):
        raise DiskFull("disk full (test)")

    store = SqliteStore(tmp_path)
    run(store, [[(f"k{i}", state(1))] for i in range(8)])
    monkeypatch.setattr(journal_mod.Journal, "reset", fail)
    while store.folding:
        store.seal()
    with pytest.raises(DiskFull, match="disk full"):
        run(store, [[(f"x{i}", state(1))] for i in range(8)])  # the next fold
    monkeypatch.undo()
    crash(store)
    got = dict(_commits(tmp_path, 16))
    assert got == {f"k{i}": state(1) for i in range(8)} | {f"x{i}": state(1) for i in range(8)}
