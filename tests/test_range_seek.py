"""A RangePrepare reads only its own range's keys, and a pass takes only so many of them.

Issue 27: each RangePrepare read and checksummed up to 4,096 rows that merely sorted after
its prefix, so one frame of 200 of them stalled a node for seconds. The new names are
reached through their modules (not imported at the top), so that each test here fails on
its own against the code from before the fix.
"""

from __future__ import annotations

import pytest

import zpaxos.hosts.acceptor_host as ah
import zpaxos.protocol.ranges as ranges
from zpaxos.hosts.acceptor_host import AcceptorHost
from zpaxos.hosts.addresses import Caller
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import (
    ZERO,
    Accept,
    Ballot,
    RangePrepare,
    RangePromise,
)
from zpaxos.runtime.node import WithPending
from zpaxos.runtime.storage import MemoryStore, SqliteStore

MAX = "\U0010ffff"
B1, B2 = Ballot(1, b"p" * 16), Ballot(2, b"q" * 16)
CHOSEN = KeyState(B1, B1, b"v", b"v", B1)
C = Caller(b"c")
# Prefixes whose upper bound is easy to get wrong, and keys around each.
PREFIXES = ["", "a", "job-", "a" + MAX, MAX, MAX + MAX, "a\ud7ff", "\x00", "é", "z9"]
KEYS = ["", "\x00", "\x00\x00", "a", "a\x00", "a" + MAX, "a" + MAX + "b", "a" + MAX + MAX,
        "ab", "b", "job", "job-", "job-1", "job-" + MAX, "job.", "job.1", "jobs", "é", "éa",
        "ê", MAX, MAX + "a", MAX + MAX, MAX + MAX + MAX, "z9", "z9-1", "z:", "a\ue000",
        "a\ud7ffx"]


def storable(k: str) -> bool:
    """SQLite holds text as UTF-8: no lone surrogates."""
    try:
        k.encode()
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_range_is_exactly_the_keys_between_the_prefix_and_its_end(prefix):
    end = ranges.prefix_end(prefix)
    inside = sorted(k for k in KEYS if prefix <= k and (end is None or k < end))
    assert inside == sorted(k for k in KEYS if k.startswith(prefix))
    if end is not None:
        assert storable(end) and end > prefix and not end.startswith(prefix)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_store_returns_exactly_the_prefixed_keys(tmp_path, prefix):
    keys = [k for k in KEYS if storable(k)]
    want = sorted(k for k in keys if k.startswith(prefix))
    db = SqliteStore(tmp_path / "db")
    try:
        db.save([(k, CHOSEN) for k in keys[::2]])  # folded into state.db ...
        db.close()
        db = SqliteStore(tmp_path / "db")
        db.save([(k, CHOSEN) for k in keys[1::2]])  # ... and still in the journal
        assert [k for k, _ in db.prefixed(prefix, 100)] == want
        assert [k for k, _ in db.prefixed(prefix, 2)] == want[:2]
        # The node's view: learned decisions waiting for a commit laid over the store.
        lazy = {k: CHOSEN for k in keys[::3]}
        view = WithPending(db, lambda: lazy)
        assert [k for k, _ in view.prefixed(prefix, 100)] == want
    finally:
        db.close()
    mem = MemoryStore()
    mem.save([(k, CHOSEN) for k in keys])
    assert [k for k, _ in mem.prefixed(prefix, 100)] == want


def host_over(store: SqliteStore, lazy: dict[str, KeyState]) -> AcceptorHost:
    return AcceptorHost(0, {}, [1, 2], source=WithPending(store, lambda: lazy), cache_keys=8)


def test_a_range_prepare_reads_only_its_range_and_names_every_busy_key(tmp_path, monkeypatch):
    """10,000 keys sort right after the prefix; the range itself holds a key in each place
    a state can be: state.db, the journal, the learned decisions waiting for a commit, and
    this very pass. The lookup verifies the rows of the range and no other, and the reply
    names every busy key (the rule the seek must never weaken)."""
    store = SqliteStore(tmp_path / "db")
    try:
        store.save([(f"job-{i:05d}", CHOSEN) for i in range(10_000)])  # after "job"
        store.save([("jo-db", CHOSEN)])
        store.close()  # folded
        store = SqliteStore(tmp_path / "db")
        store.save([("jo-journal", KeyState(B1, B1, b"x", None, ZERO))])  # accepted only
        store.save([("jo-promised", KeyState(B2, ZERO, None, None, ZERO))])  # above B1+
        lazy = {"jo-lazy": CHOSEN}
        host = host_over(store, lazy)
        verified: list[str] = []
        real = SqliteStore._verified

        def counting(self, rows):
            verified.extend(r[0] for r in rows)
            return real(self, rows)

        monkeypatch.setattr(SqliteStore, "_verified", counting)
        ready = host.handle([(C, Accept("jo-now", B1, b"n")),
                             (C, RangePrepare("jo-", Ballot(1, b"r" * 16)))])
        promise = ready.send[-1][1]
        assert isinstance(promise, RangePromise)
        assert sorted(promise.busy) == ["jo-db", "jo-journal", "jo-lazy", "jo-now",
                                        "jo-promised"]
        assert not promise.more
        # Rows read from state.db: the Accept's key (absent) and the range's one row.
        assert verified == ["jo-db"], f"{len(verified)} rows verified"
    finally:
        store.close()


def test_a_pass_takes_range_prepares_up_to_its_budget_and_the_rest_wait_in_order():
    mem = MemoryStore()
    mem.save([(f"job-{i:05d}", CHOSEN) for i in range(3_000)])
    host = AcceptorHost(0, {}, [1, 2], source=WithPending(mem, dict), cache_keys=100)
    bound = ah.MAX_DEFERRED_RANGES
    budget = -(-ah.RANGE_ROWS_PER_PASS // ah.RANGE_PREPARE_ROWS)  # empty ranges a pass
    frame = [(C, RangePrepare(f"p{i:05d}-", B1)) for i in range(budget + bound + 7)]
    ready = host.handle(frame)
    replies = [m.prefix for _, m in ready.send]
    assert len(replies) == budget  # nothing in those ranges: the same cost each
    assert len(host.deferred) == bound  # the rest wait, up to the bound ...
    assert len(ready.events) == 7 and host.stats["ranges_dropped"] == 7  # ... then dropped
    # One that arrives now waits behind them; each pass goes on where the last stopped.
    host.deferred.popleft()  # (room for it: that one never gets a reply)
    ready = host.handle([(C, RangePrepare("late-", B1))])
    while ready.send:
        assert len(ready.send) <= budget
        replies += [m.prefix for _, m in ready.send]
        ready = host.handle([])
    assert not host.deferred
    want = [m.prefix for _, m in frame[:budget] + frame[budget + 1:budget + bound]]
    assert replies == [*want, "late-"]


def test_a_range_that_holds_many_keys_costs_its_rows():
    mem = MemoryStore()
    mem.save([(f"job-{i:05d}", CHOSEN) for i in range(3_000)])
    for host in (AcceptorHost(0, dict(mem.saved), [1, 2]),  # all in memory (simulator)
                 AcceptorHost(0, {}, [1, 2], source=WithPending(mem, dict))):
        ready = host.handle([(C, RangePrepare("job-", B2)), (C, RangePrepare("q-", B2))])
        assert [m.prefix for _, m in ready.send] == ["job-"]
        assert ready.send[0][1].more  # 3,000 busy keys: more than a reply names
        assert [m.prefix for _, m in host.handle([]).send] == ["q-"]
