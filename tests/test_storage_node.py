"""Durable state: what is promised is on disk before the reply leaves, and damage stops us."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from tests.harness import free_ports
from zpaxos.protocol.columns import pack, rows
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import ZERO, Ballot
from zpaxos.runtime.client import Client
from zpaxos.runtime.config import ClusterConfig, LogConfig, NodeConfig, ProposerConfig
from zpaxos.runtime.log import null_log
from zpaxos.runtime.node import Node
from zpaxos.runtime.sockets import SignalWakeup
from zpaxos.runtime.storage import MemoryStore, SqliteStore, StorageError

ID = bytes(range(16))


def test_sqlite_round_trip_keeps_every_byte_and_order(tmp_path):
    store = SqliteStore(tmp_path)
    states = {
        "a": KeyState(),
        "b": KeyState(Ballot((1 << 63) - 1, b"\xff" * 16), Ballot(3, b"\x00" * 16), b"\x00v", None),
        "c": KeyState(Ballot(2, ID), Ballot(2, ID), b"", b""),
    }
    store.save(states.items())
    store.close()
    again = SqliteStore(tmp_path)
    assert again.load() == states
    assert again.load()["b"].promised > Ballot((1 << 63) - 2, b"\xff" * 16)


def test_fresh_directory_starts_empty(tmp_path):
    assert SqliteStore(tmp_path / "new" / "dir").load() == {}


def test_garbage_database_is_refused(tmp_path):
    (tmp_path / "state.db").write_bytes(b"not sqlite at all " * 1000)
    with pytest.raises(StorageError, match="damaged or unreadable"):
        SqliteStore(tmp_path)


def test_database_without_schema_is_refused(tmp_path):
    sqlite3.connect(tmp_path / "state.db").execute("CREATE TABLE other (x)").connection.commit()
    with pytest.raises(StorageError, match="schema is missing"):
        SqliteStore(tmp_path)


def test_truncated_database_is_refused(tmp_path):
    store = SqliteStore(tmp_path)
    store.save((f"k{i}", KeyState(Ballot(i + 1, ID))) for i in range(2000))
    store.close()
    db = tmp_path / "state.db"
    (tmp_path / "state.db-wal").unlink(missing_ok=True)
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    with pytest.raises(StorageError):
        SqliteStore(tmp_path).load()


def test_lost_database_with_its_wal_left_behind_is_refused(tmp_path):
    (tmp_path / "state.db-wal").write_bytes(b"x")
    with pytest.raises(StorageError, match="write-ahead log"):
        SqliteStore(tmp_path)


# ---------------------------------------------------------------- persist, then send


class RecordingStore(MemoryStore):
    def __init__(self, journal: list, fail: bool = False) -> None:
        super().__init__()
        self.journal, self.fail = journal, fail

    def save(self, batch, ranges=()):
        rows, range_rows = list(batch), list(ranges)
        if self.fail and (rows or range_rows):
            raise StorageError("disk on fire")
        super().save(rows, range_rows)
        self.journal.append(("saved", {k: s for k, s in rows}))
        self.journal.append(("saved ranges", dict(range_rows)))


def one_node_cluster(tmp_path) -> ClusterConfig:
    node = NodeConfig(0, "127.0.0.1", free_ports(1)[0], tmp_path / "n0", "")
    return ClusterConfig(tmp_path / "x.ini", (node,),
                         ProposerConfig(timeout_s=3, round_timeout_s=0.5, max_rounds=3),
                         LogConfig(file=None))


def run_node(node: Node) -> tuple[threading.Thread, SignalWakeup, list]:
    wakeup, errors = SignalWakeup(), []

    def target():
        try:
            node.run(wakeup)
        except StorageError as e:
            errors.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, wakeup, errors


@pytest.mark.parametrize("fast", [False, True], ids=["two-phase", "fast"])
def test_replies_leave_only_after_their_state_is_saved(tmp_path, fast):
    """Two phases: 20 Promises and 20 Accepteds. The fast path (range promises): the
    first key in two phases, then one RangePromise, sent only once the range is durable,
    and 19 Accepteds."""
    cluster = one_node_cluster(tmp_path)
    journal: list = []
    node = Node(cluster, 0, null_log(), RecordingStore(journal))
    real_send = node._send_all

    def send(sends):
        # (a run of replies leaves as one column message: its rows, each checked)
        journal.extend(("sent", row) for _, msg in sends for row in rows(msg))
        return real_send(sends)

    node._send_all = send
    t, wakeup, errors = run_node(node)
    try:
        with Client(cluster, fast=fast) as c:
            out = c.propose_many([(f"k{i}", f"v{i}") for i in range(20)])
        assert all(o.chosen == f"v{i}".encode() for i, o in enumerate(out))
    finally:
        wakeup.request_stop()
        t.join(10)
    assert not errors
    durable: dict[str, KeyState] = {}
    durable_ranges: dict = {}
    replies = 0
    for kind, item in journal:
        if kind == "saved":
            durable.update(item)
            continue
        if kind == "saved ranges":
            durable_ranges.update(item)
            continue
        msg = item
        if type(msg).__name__ == "RangePromise":
            replies += 19  # stands for the 19 Promises it saved
            assert durable_ranges[msg.prefix] >= msg.ballot, "range promise sent before durable"
        if type(msg).__name__ == "Promise":
            replies += 1
            assert durable[msg.key].promised >= msg.ballot, "promise sent before it was durable"
        if type(msg).__name__ == "Accepted":
            replies += 1
            assert durable[msg.key].accepted == msg.ballot, "accepted sent before durable"
    assert replies == 40
    assert any(k == "sent" and type(m).__name__ == "RangePromise" for k, m in journal) == fast
    assert node.store.commits < 60  # group commit: fewer commits than state changes (60)


@pytest.mark.parametrize("fast", [False, True], ids=["two-phase", "fast"])
def test_failed_commit_sends_nothing_and_stops_the_node(tmp_path, fast):
    cluster = one_node_cluster(tmp_path)
    journal: list = []
    node = Node(cluster, 0, null_log(), RecordingStore(journal, fail=True))
    sent = []
    node._send = lambda dst, msg: sent.extend(rows(msg))
    t, wakeup, errors = run_node(node)
    try:
        with Client(cluster, fast=fast) as c:  # (the second proposal asks for the range)
            outs = c.propose_many([("k", "v"), ("k2", "v")])
        assert all(out.chosen is None for out in outs)
    finally:
        wakeup.request_stop()
        t.join(10)
    assert errors and "disk on fire" in str(errors[0])
    assert not [m for m in sent if type(m).__name__ in ("Promise", "Accepted", "RangePromise")]
    if fast:  # the range promise was made in memory only; never acknowledged
        assert node.host.ranges == {"k": node.host.ranges["k"]}
    else:
        assert node.host.acceptor.state("k").promised != ZERO  # in memory only, too


# ---------------------------------------------------------------- value files


def test_value_files_follow_the_glob_and_are_rebuilt(tmp_path):
    from zpaxos.runtime.valuefiles import ValueFiles

    vf = ValueFiles(tmp_path, "CISC*", null_log())
    vf.rebuild([("CISC5597", b"Value_A"), ("other", b"x")])
    vf.submit("CISC-2", b"\xffbytes")
    vf.close()
    assert (tmp_path / "CISC5597.txt").read_bytes() == b"Value_A\n"
    assert (tmp_path / "CISC-2.txt").read_bytes() == b"\xffbytes\n"
    assert not (tmp_path / "other.txt").exists()
    assert not list(tmp_path.glob(".*.tmp"))  # written by rename; no temp file left
    (tmp_path / "CISC5597.txt").write_text("tampered")
    vf = ValueFiles(tmp_path, "", null_log())  # value_files = none: no files at all
    vf.submit("CISC5597", b"Value_A")
    vf.close()
    assert (tmp_path / "CISC5597.txt").read_text() == "tampered"
    vf = ValueFiles(tmp_path, "*", null_log())  # a restart rebuilds the view from the db
    vf.rebuild([("CISC5597", b"Value_A")])
    vf.close()
    assert (tmp_path / "CISC5597.txt").read_bytes() == b"Value_A\n"


def test_sync_and_status_pages_stay_under_the_decoders_limit(tmp_path):
    """Large values: every page must still decode at the other end, and paging covers
    every key exactly once."""
    from zpaxos.runtime import codec

    cluster = one_node_cluster(tmp_path)
    store = MemoryStore()
    big = b"x" * codec.MAX_VALUE_BYTES
    store.save((f"k{i:03d}", KeyState(Ballot(1, ID), Ballot(1, ID), big, big)) for i in range(80))
    node = Node(cluster, 0, null_log(), store)
    try:
        seen, after, more = [], "", True
        while more:
            reply = node.host.sync_page(after)
            assert codec.decode(codec.encode(reply))[0] == reply
            seen += [k for k, _, _ in reply.chosen]
            after, more = reply.chosen[-1][0], reply.more
        assert seen == [f"k{i:03d}" for i in range(80)]
        status = node.host.status(None)
        assert status.truncated and 0 < len(status.keys) < 80
        assert codec.decode(codec.encode(status))[0] == status
    finally:
        node.close()


def test_many_keys_travel_as_one_frame_per_peer_per_pass(tmp_path, monkeypatch):
    """The batched wire on real sockets: 40 proposals at once reach the node in a few
    frames, and its replies leave in a few, every message still answered."""
    from zpaxos.runtime import sockets as sockets_mod

    cluster = one_node_cluster(tmp_path)
    frames: list[tuple[str, int]] = []  # (who sent it, messages in it)
    real = sockets_mod.Sockets.send_batch

    def send_batch(self, dst, msgs):
        frames.append(("node" if self.router is not None else "client",
                       pack(msgs)[1]))  # rows: a run travels as one column message
        return real(self, dst, msgs)

    monkeypatch.setattr(sockets_mod.Sockets, "send_batch", send_batch)
    node = Node(cluster, 0, null_log(), MemoryStore())
    t, wakeup, errors = run_node(node)
    try:
        with Client(cluster) as c:
            out = c.propose_many([(f"k{i}", f"v{i}") for i in range(40)])
        assert all(o.chosen == f"v{i}".encode() for i, o in enumerate(out))
    finally:
        wakeup.request_stop()
        t.join(10)
    assert not errors
    for who in ("client", "node"):
        sizes = [n for w, n in frames if w == who]
        # at least 40 Accepts (and their 40 replies), in far fewer frames
        assert sum(sizes) >= 40 and len(sizes) < sum(sizes) / 4, (who, sizes)
