"""Catching up (zpaxos/hosts/catchup.py), pure: hosts over in-memory stores, messages
passed by hand; and the store's learn log (SqliteStore.learned_from)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zpaxos.hosts.acceptor_host import AcceptorHost, Ready
from zpaxos.hosts.addresses import Caller
from zpaxos.hosts.catchup import GRACE_S
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import (
    Ballot,
    CatchUp,
    CatchUpReply,
    Decide,
    Fetch,
    FetchReply,
    Message,
)
from zpaxos.protocol.regmessages import RegState, encode_state
from zpaxos.runtime.memstore import MemoryStore
from zpaxos.runtime.storage import SqliteStore

B = Ballot(1, b"p")


class Cluster:
    """Three hosts over memory stores; ``deliver`` runs the messages until none is left."""

    def __init__(self, n: int = 3, catch_up_s: float = 0.5) -> None:
        self.stores = [MemoryStore() for _ in range(n)]
        self.hosts = [AcceptorHost(i, {}, [j for j in range(n) if j != i], source=s,
                                   learn=s, catch_up_s=catch_up_s)
                      for i, s in enumerate(self.stores)]
        self.cursors: list[dict[int, object]] = [{} for _ in range(n)]
        self.caught: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        self.sent: list[tuple[int, int, Message]] = []

    def do(self, i: int, ready: Ready) -> list[tuple[int, Message]]:
        # persist, then send (and the lazy learned states at once)
        self.stores[i].save([*ready.lazy.items(), *ready.persist.items()])
        self.cursors[i].update(ready.cursors)
        self.caught[i] += ready.caught
        return [(dst, m) for dst, m in ready.send]  # dst: a node id here

    def run(self, i: int, ready: Ready) -> None:
        queue = [(i, dst, m) for dst, m in self.do(i, ready)]
        while queue:
            src, dst, m = queue.pop(0)
            self.sent.append((src, dst, m))
            assert isinstance(dst, int)
            queue += [(dst, d, r) for d, r in self.do(dst, self.hosts[dst].handle([(src, m)]))]

    def catch_up(self, i: int, now: float) -> None:
        """Node ``i`` asks its peers at ``now``, then ticks on (each GRACE_S) until it has
        nothing asked or waiting to be fetched."""
        f = self.hosts[i].follower
        for _ in range(100):
            self.run(i, self.hosts[i].tick(now))
            if not f.asked and not f.fetching:
                return
            now += GRACE_S

    def decide(self, i: int, key: str, value: bytes) -> None:
        self.run(i, self.hosts[i].handle([(Caller(b"c1"), Decide(key, value, B))]))


def test_a_node_that_missed_decisions_fetches_just_those():
    c = Cluster()
    for k in ("a", "b", "c"):
        c.decide(0, k, k.encode())
        c.decide(1, k, k.encode())
    c.decide(2, "a", b"a")  # node 2 missed b and c
    c.catch_up(2, 10.0)
    assert c.hosts[2].states["b"].chosen == b"b" and c.hosts[2].states["c"].chosen == b"c"
    fetches = [m for s, d, m in c.sent if isinstance(m, Fetch)]
    assert fetches and all(set(f.keys) == {"b", "c"} for f in fetches)
    assert sum(n for _, n in c.caught[2]) == 2
    assert set(c.cursors[2]) == {0, 1}
    # Next period: nothing new, so empty pages and no fetch.
    c.sent.clear()
    c.catch_up(2, 11.0)
    assert sorted(type(m).__name__ for _, _, m in c.sent) == ["CatchUp"] * 2 + ["CatchUpReply"] * 2
    assert all(not m.keys for _, _, m in c.sent if isinstance(m, CatchUpReply))


def test_a_key_whose_decide_arrives_within_the_grace_is_not_fetched():
    """Under load a peer lists decisions whose Decide is still on its way here: those
    are not fetched (that would pay for each decision twice), only what is still
    missing GRACE_S after the page."""
    c = Cluster()
    for k in ("a", "b"):
        c.decide(0, k, k.encode())
        c.decide(1, k, k.encode())
    c.run(2, c.hosts[2].tick(10.0))  # pages from both peers list a and b: node 2 lacks both
    assert not any(isinstance(m, Fetch) for _, _, m in c.sent)
    c.decide(2, "a", b"a")  # a's Decide arrives within the grace; b's never does
    c.run(2, c.hosts[2].tick(10.0 + GRACE_S))
    fetches = [m for _, _, m in c.sent if isinstance(m, Fetch)]
    assert fetches and all(f.keys == ("b",) for f in fetches)
    assert c.hosts[2].states["b"].chosen == b"b"


def test_idle_a_node_asks_less_often_and_at_the_period_again_once_paxos_runs():
    from zpaxos.hosts.catchup import IDLE_MAX_S
    c = Cluster()
    h = c.hosts[2]
    gaps, now = [], 0.0
    for _ in range(8):  # nothing is decided: every page comes back empty
        c.run(2, h.tick(now))
        gaps.append(h.next_tick - now)
        now = h.next_tick
    # (the first page moves the cursor from nothing to the log's start: not idle yet)
    assert gaps == [0.5, 1.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5] and max(gaps) == IDLE_MAX_S
    last_tick = now - gaps[-1]
    c.run(2, h.handle([(Caller(b"c1"), Decide("a", b"a", B))]))  # Paxos runs again
    assert h.next_tick == last_tick + 0.5


def test_pages_end_inside_one_commit_without_skipping_a_key():
    """A commit writes many keys at once: a page that ends inside it must not skip the
    rest (the cursor is a position in the log, not a commit)."""
    c = Cluster()
    c.stores[0].save([(f"k{i:02}", KeyState(chosen=b"v", chosen_ballot=B)) for i in range(25)])
    c.hosts[0].acceptor.states.clear()
    import zpaxos.hosts.catchup as cu
    old = cu.PAGE_KEYS
    try:
        cu.page.__defaults__ = (7,)
        c.catch_up(2, 1.0)
    finally:
        cu.page.__defaults__ = (old,)
    assert sum(1 for k in c.hosts[2].source.get([f"k{i:02}" for i in range(25)]).values()
               if k.chosen == b"v") == 25


def test_fetch_replies_from_a_client_or_for_keys_not_asked_are_ignored():
    c = Cluster()
    h = c.hosts[2]
    c.decide(0, "a", b"a")
    h.follower.asked.clear()
    # A client (not a peer's reply on our own socket) names a value: ignored.
    ready = h.handle([(Caller(b"rogue"), FetchReply((("a", b"forged", B),), False))])
    assert "a" not in h.states and not ready.lazy
    # A peer's reply for a key nobody asked it for: ignored too.
    ready = h.handle([(0, FetchReply((("a", b"forged", B),), False))])
    assert "a" not in h.states and not ready.lazy


def test_a_catch_up_page_answers_from_the_start_for_another_incarnation():
    s = MemoryStore()
    s.save([("a", KeyState(chosen=b"1", chosen_ballot=B))])
    s.save([("b", KeyState(chosen=b"2", chosen_ballot=B))])
    h = AcceptorHost(0, {}, [1], source=s, learn=s)
    (_, reply), = h.handle([(Caller(b"n:1:0:0"), CatchUp(b"x" * 16, 1))]).send
    assert (reply.keys, reply.pos, reply.end) == (("a", "b"), 1, 2)
    (_, reply), = h.handle([(Caller(b"n:1:0:0"), CatchUp(s.incarnation, 1))]).send
    assert (reply.keys, reply.pos, reply.end) == (("b",), 1, 2)


def test_a_register_behind_converges_through_the_accept_rule():
    c = Cluster()
    state = encode_state(RegState(3, b"x", ()))
    hi = Ballot(5, b"q")
    for i in (0, 1):
        c.stores[i].save([("@r", KeyState(promised=hi, accepted=hi, value=state))])
    # Node 2 promised a higher ballot already: it must not accept below it.
    c.stores[2].save([("@r", KeyState(promised=Ballot(9, b"z")))])
    c.catch_up(2, 1.0)
    assert c.hosts[2].source.get(["@r"])["@r"].accepted.is_zero
    # Without that promise it takes the state, at the peer's ballot.
    c2 = Cluster()
    for i in (0, 1):
        c2.stores[i].save([("@r", KeyState(promised=hi, accepted=hi, value=state))])
    c2.catch_up(2, 1.0)
    got = c2.hosts[2].source.get(["@r"])["@r"]
    assert got.accepted == hi and got.value == state


def test_sqlite_learn_log_survives_a_restart_and_lists_the_journal(tmp_path: Path):
    import zpaxos.runtime.storage_learn as storage_learn
    s = SqliteStore(tmp_path)
    s.save([("a", KeyState(chosen=b"1", chosen_ballot=B))])
    s.save([("b", KeyState(promised=B)), ("c", KeyState(chosen=b"3", chosen_ballot=B))])
    assert s.learned_from(0, 10) == ["a", "c"] and s.learn_end == 2
    inc = s.incarnation
    s.close()
    s = SqliteStore(tmp_path)  # folded at close; the same positions after
    assert s.incarnation == inc and s.learn_end == 2
    assert s.learned_from(1, 10) == ["c"]
    s.save([("d", KeyState(chosen=b"4", chosen_ballot=B))])  # in the journal only
    assert s.learned_from(2, 10) == ["d"] and s.learned_from(1, 10) == ["c", "d"]
    s.close()
    # A journal replayed at start gives each key the position it had before the stop.
    s = SqliteStore(tmp_path)
    assert s.learned_from(0, 10) == ["a", "c", "d"]
    # Folds pack the log into rows of LEARN_ROW_KEYS keys; a read from inside one row,
    # across rows and into the journal skips nothing.
    old = storage_learn.LEARN_ROW_KEYS
    storage_learn.LEARN_ROW_KEYS = 4
    try:
        s.save([(f"k{i:02}", KeyState(chosen=b"v", chosen_ballot=B)) for i in range(10)])
        s._fold()
        s.save([("z", KeyState(chosen=b"v", chosen_ballot=B))])
    finally:
        storage_learn.LEARN_ROW_KEYS = old
    want = ["a", "c", "d", *(f"k{i:02}" for i in range(10)), "z"]
    for pos in range(len(want) + 1):
        for limit in (1, 3, 5, 20):
            assert s.learned_from(pos, limit) == want[pos:pos + limit], (pos, limit)
    s.close()


def test_a_database_from_before_catching_up_gets_its_learn_log(tmp_path: Path):
    import sqlite3
    s = SqliteStore(tmp_path)
    s.save([("b", KeyState(chosen=b"1", chosen_ballot=B)), ("a", KeyState(promised=B)),
            ("@r", KeyState(promised=B))])
    s.close()
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("DROP TABLE learn_log")
    db.commit()
    db.close()
    s = SqliteStore(tmp_path)
    assert s.learned_from(0, 10) == ["@r", "b"] and s.learn_end == 2
    s.close()


@pytest.mark.parametrize("packed, why", [
    ("a\nb c", "keys: not keys joined by newlines"),     # a space: no key holds one
    ("a\n\nb", "keys: not keys joined by newlines"),      # an empty key
    ("a\n.b", "keys: not keys joined by newlines"),       # a key starting with a dot
    ("a\n", "keys: not keys joined by newlines"),
    (b"a", "packed: expected text"),                      # bytes, not text
    ("k" * (4096 * 130 + 1), "packed: expected at most"),  # over the size bound: not scanned
    ("k\n" * 4096 + "k", "keys: more than 4096"),
])
def test_a_catch_up_page_with_bad_packed_keys_is_refused(packed, why):
    from zpaxos.runtime.codec import DecodeError, decode, encode
    page = CatchUpReply.of(b"i" * 16, 0, 2, ("a", "@r"), (("@r", B),), False)
    assert decode(encode(page))[0] == page and page.keys == ("a", "@r")
    many = CatchUpReply.of(b"i" * 16, 0, 3, ("a", "@r", "b-1.x"), (("@r", B),), False)
    assert decode(encode(many))[0].keys == ("a", "@r", "b-1.x")
    assert CatchUpReply.of(b"", 0, 0, (), (), False).keys == ()
    bad = CatchUpReply(b"i" * 16, 0, 2, packed, (("@r", B),), False)  # as a peer might send
    with pytest.raises(DecodeError, match=why):
        decode(encode(bad))
