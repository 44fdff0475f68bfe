"""The lazy path: a host that reads key states from its store as batches name them, with
a tiny cache, must answer exactly as a host holding every key in memory (range promises'
busy keys included); across restarts too, and never vote on a row whose checksum fails."""

from __future__ import annotations

import random
import sqlite3

import pytest

from zpaxos.hosts.acceptor_host import AcceptorHost
from zpaxos.hosts.addresses import Caller
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import (
    Accept,
    Ballot,
    CheckAccepted,
    Decide,
    Prepare,
    RAccept,
    RangePrepare,
    RegState,
    RPrepare,
    StatusRequest,
    SyncReply,
    SyncRequest,
)
from zpaxos.runtime.node import WithPending
from zpaxos.runtime.storage import MemoryStore, SqliteStore
from zpaxos.runtime.storage_errors import StateDamaged
from zpaxos.runtime.valuefiles import glob_matcher, sql_glob

IDS = (b"a" * 16, b"b" * 16)
PAGES = {"sync_page": 3, "status_page": 4}


def random_batch(rng: random.Random, keys: list[str]) -> list:
    out = []
    for _ in range(rng.randint(1, 6)):
        key = rng.choice(keys)
        ballot = Ballot(rng.randint(1, 6), rng.choice(IDS))
        value = rng.choice((b"x", b"y", b"z"))
        src = rng.choice((1, 2, Caller(b"client")))
        kind = rng.randrange(13)
        reg = RegState(rng.randint(1, 4), value)
        msg = (Prepare(key, ballot), Accept(key, ballot, value), Accept(key, ballot, value),
               Decide(key, value, ballot), StatusRequest(None), StatusRequest(key),
               SyncRequest(rng.choice(["", *keys])), CheckAccepted(key, ballot),
               SyncReply("", ((key, value, ballot),), False),
               RangePrepare(rng.choice(["k", "k0", "k1", key]), ballot),
               # Registers share the map (their "@" slots), so the cache must fetch them.
               RPrepare(key, ballot), RAccept(key, ballot, reg),
               StatusRequest("@" + key))[kind]
        if isinstance(msg, SyncReply):
            src = rng.choice((1, 2))  # only a peer's reply is taken
        out.append((src, msg))
    return out


def same(a, b) -> None:
    assert a.send == b.send
    assert a.persist == b.persist
    assert a.lazy == b.lazy
    assert a.learned == b.learned
    assert [(s, e) for s, e in a.events] == [(s, e) for s, e in b.events]


@pytest.mark.parametrize("seed", range(8))
def test_lazy_host_answers_as_the_eager_one_with_restarts(tmp_path, seed):
    rng = random.Random(seed)
    keys = [f"k{i:02d}" for i in range(14)]
    eager = AcceptorHost(0, {}, [1, 2], **PAGES)
    disk = tmp_path / "db"
    store = SqliteStore(disk)

    pending: dict[str, KeyState] = {}  # learned decisions waiting for a commit, as a node's

    def lazy_host(s: SqliteStore) -> AcceptorHost:
        return AcceptorHost(0, {}, [1, 2], **PAGES, source=WithPending(s, lambda: pending),
                            cache_keys=rng.randint(1, 4), ranges=s.load_ranges())

    lazy = lazy_host(store)
    try:
        for n in range(300):
            batch = random_batch(rng, keys)
            want, got = eager.handle(batch), lazy.handle(batch)
            same(want, got)
            # As the node does: a pass's persist is committed at once, with whatever was
            # learned before; learned decisions alone wait (here a random while).
            pending.update(got.lazy)
            if got.persist or got.ranges or rng.random() < 0.2:
                store.save({**pending, **got.persist}.items(), got.ranges.items())
                pending = {}  # replaced, as the node's: WithPending's contract
            # Bounded: the cache, plus a pass's keys (a range's, if it has a RangePrepare).
            ranged = any(isinstance(m, RangePrepare) for _, m in batch)
            assert len(lazy.states) <= lazy.cache_keys + (len(keys) if ranged else 0) + 6
            if n % 37 == 36:  # a restart: nothing in memory, all read back from disk
                store.save(pending.items())  # a clean stop commits what was learned
                pending = {}  # replaced, as the node's: WithPending's contract
                store.close()
                store = SqliteStore(disk)
                lazy = lazy_host(store)
        store.save(pending.items())
        assert store.load() == dict(eager.states)  # and the disk holds every state
    finally:
        store.close()


def test_lazy_pages_walk_many_keys_once(tmp_path):
    store = SqliteStore(tmp_path)
    states = {f"key{i:05d}": KeyState(Ballot(1, IDS[0]), Ballot(1, IDS[0]), b"v", b"v",
                                      Ballot(1, IDS[0])) for i in range(2000)}
    states.update({f"open{i}": KeyState(Ballot(2, IDS[1])) for i in range(50)})  # not chosen
    store.save(states.items())
    host = AcceptorHost(0, {}, [1, 2], source=store, cache_keys=10)
    seen, after, more = [], "", True
    while more:
        reply = host.handle([(Caller(b"peer"), SyncRequest(after))]).send[0][1]
        seen += [k for k, _, _ in reply.chosen]
        more, after = reply.more, reply.chosen[-1][0] if reply.chosen else after
    assert seen == sorted(k for k in states if k.startswith("key"))
    status = host.handle([(Caller(b"c"), StatusRequest(None))]).send[0][1]
    assert [e.key for e in status.keys] == sorted(states)[:len(status.keys)]
    assert status.truncated
    store.close()


def test_a_damaged_row_stops_the_pass_that_reads_it(tmp_path):
    store = SqliteStore(tmp_path)
    b = Ballot(3, IDS[0])
    store.save([("good", KeyState(b)), ("bad", KeyState(b))])
    store.close()
    con = sqlite3.connect(tmp_path / "state.db")
    con.execute("UPDATE acceptor SET promised_round = 1 WHERE key = 'bad'")
    con.commit()
    con.close()
    store = SqliteStore(tmp_path)  # opening reads no row: a million keys start at once
    host = AcceptorHost(0, {}, [1], source=store)
    ready = host.handle([(1, Prepare("good", Ballot(2, IDS[1])))])
    assert type(ready.send[0][1]).__name__ == "Nack"  # "good" was read, verified, honoured
    with pytest.raises(StateDamaged, match="the state of key 'bad' fails its checksum"):
        host.handle([(1, Prepare("bad", Ballot(2, IDS[1])))])  # would be a Promise at 2
    with pytest.raises(StateDamaged, match="'bad'"):
        host.handle([(Caller(b"c"), StatusRequest(None))])
    store.close()


@pytest.mark.parametrize("pattern", ["", "CISC5597", "CISC*", "*", "k[0-3]?", "a*b?c",
                                     "x[!a]*", "[*]*"])
def test_value_file_globs_read_exactly_the_matching_keys(tmp_path, pattern):
    keys = ["CISC5597", "CISC", "CISC-2", "k01", "k4x", "k2", "axbyc", "xb1", "xa1", "*z",
            "a"]
    chosen = KeyState(chosen=b"v")
    for store in (SqliteStore(tmp_path), MemoryStore()):
        store.save([(k, chosen) for k in keys] + [("CISC9", KeyState())])
        match = glob_matcher(pattern)
        want = sorted(k for k in keys if match(k))
        assert sorted(k for k, _ in store.chosen_matching(pattern)) == want
        store.close()
    assert sql_glob("") is None


def test_million_tool_builds_valid_rows_and_measures_a_small_cluster(tmp_path):
    """`zpaxos bench --million N` at N=300: rows built through SqliteStore verify, and the
    run reports a restart, memory and a node that answers for its old keys."""
    from zpaxos.lab.million import build, key_of, report, run_million

    build(tmp_path / "n", 250)
    store = SqliteStore(tmp_path / "n")
    states = store.load()  # every checksum verified
    assert len(states) == 250 and states[key_of(7)].chosen == b"value-7"
    store.close()
    r = run_million(300, proposals=20)
    assert r["keys"] == 300 and r["old_keys_answered"] == 10 and r["fresh_keys_chosen"] == 10
    assert r["rss_peak_mb"] > 0 and r["restart_serving_s"] >= r["restart_listening_s"] > 0
    assert "restart to serving" in report(r)
