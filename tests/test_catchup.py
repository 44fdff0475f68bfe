"""Catching up (zpaxos/runtime/catchup.py), pure: hosts over in-memory stores, messages
passed by hand; and the store's learn index (SqliteStore.learned_after)."""

from __future__ import annotations

from pathlib import Path

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
from zpaxos.runtime.acceptor_host import AcceptorHost, Ready
from zpaxos.runtime.addresses import Caller
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

    def decide(self, i: int, key: str, value: bytes) -> None:
        self.run(i, self.hosts[i].handle([(Caller(b"c1"), Decide(key, value, B))]))


def test_a_node_that_missed_decisions_fetches_just_those():
    c = Cluster()
    for k in ("a", "b", "c"):
        c.decide(0, k, k.encode())
        c.decide(1, k, k.encode())
    c.decide(2, "a", b"a")  # node 2 missed b and c
    c.run(2, c.hosts[2].tick(10.0))
    assert c.hosts[2].states["b"].chosen == b"b" and c.hosts[2].states["c"].chosen == b"c"
    fetches = [m for s, d, m in c.sent if isinstance(m, Fetch)]
    assert fetches and all(set(f.keys) == {"b", "c"} for f in fetches)
    assert sum(n for _, n in c.caught[2]) == 2
    assert set(c.cursors[2]) == {0, 1}
    # Next period: nothing new, so empty pages and no fetch.
    c.sent.clear()
    c.run(2, c.hosts[2].tick(11.0))
    assert sorted(type(m).__name__ for _, _, m in c.sent) == ["CatchUp"] * 2 + ["CatchUpReply"] * 2
    assert all(not m.learned for _, _, m in c.sent if isinstance(m, CatchUpReply))


def test_pages_end_inside_one_commit_without_skipping_a_key():
    """A commit writes many keys under one learn seq: a page that ends inside it must
    not skip the rest (the cursor is (seq, key), not seq alone)."""
    c = Cluster()
    c.stores[0].save([(f"k{i:02}", KeyState(chosen=b"v", chosen_ballot=B)) for i in range(25)])
    c.hosts[0].acceptor.states.clear()
    import zpaxos.runtime.catchup as cu
    old = cu.PAGE_KEYS
    try:
        cu.page.__defaults__ = (7,)
        c.run(2, c.hosts[2].tick(1.0))
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
    (_, reply), = h.handle([(Caller(b"n:1:0:0"), CatchUp(b"x" * 16, 1, "a"))]).send
    assert [k for _, k, _ in reply.learned] == ["a", "b"]
    (_, reply), = h.handle([(Caller(b"n:1:0:0"), CatchUp(s.incarnation, 1, "a"))]).send
    assert [k for _, k, _ in reply.learned] == ["b"]


def test_a_register_behind_converges_through_the_accept_rule():
    c = Cluster()
    state = encode_state(RegState(3, b"x", ()))
    hi = Ballot(5, b"q")
    for i in (0, 1):
        c.stores[i].save([("@r", KeyState(promised=hi, accepted=hi, value=state))])
    # Node 2 promised a higher ballot already: it must not accept below it.
    c.stores[2].save([("@r", KeyState(promised=Ballot(9, b"z")))])
    c.run(2, c.hosts[2].tick(1.0))
    assert c.hosts[2].source.get(["@r"])["@r"].accepted.is_zero
    # Without that promise it takes the state, at the peer's ballot.
    c2 = Cluster()
    for i in (0, 1):
        c2.stores[i].save([("@r", KeyState(promised=hi, accepted=hi, value=state))])
    c2.run(2, c2.hosts[2].tick(1.0))
    got = c2.hosts[2].source.get(["@r"])["@r"]
    assert got.accepted == hi and got.value == state


def test_sqlite_learn_index_survives_a_restart_and_lists_the_journal(tmp_path: Path):
    s = SqliteStore(tmp_path)
    s.save([("a", KeyState(chosen=b"1", chosen_ballot=B))])
    s.save([("b", KeyState(promised=B)), ("c", KeyState(chosen=b"3", chosen_ballot=B))])
    got = s.learned_after(0, "", 10)
    assert [(q, k) for q, k, _ in got] == [(1, "a"), (2, "c")]
    inc = s.incarnation
    s.close()
    s = SqliteStore(tmp_path)  # folded at close; the same numbers after
    assert s.incarnation == inc
    assert [(q, k) for q, k, _ in s.learned_after(1, "a", 10)] == [(2, "c")]
    s.save([("d", KeyState(chosen=b"4", chosen_ballot=B))])  # in the journal only
    assert [(q, k) for q, k, _ in s.learned_after(2, "c", 10)] == [(3, "d")]
    s.close()


def test_status_shows_decided_keys_how_far_behind_and_when_caught_up():
    from zpaxos.pictures.statusview import decided_lines
    from zpaxos.runtime.client import NodeStatus
    nodes = [NodeStatus(0, "tcp://a", True, stats=(("decided", 12), ("caught_up_keys", 0),
                                                   ("caught_up_ms_ago", 400))),
             NodeStatus(1, "tcp://b", True, stats=(("decided", 12), ("caught_up_keys", 0))),
             NodeStatus(2, "tcp://c", True, stats=(("decided", 9), ("caught_up_keys", 3),
                                                   ("caught_up_ms_ago", 1500))),
             NodeStatus(3, "tcp://d", False)]
    assert decided_lines(nodes) == [
        "decided keys known:",
        "  node0  12; up to date; last caught up 0.4 s ago",
        "  node1  12; up to date; not caught up with any peer yet",
        "  node2  9; 3 behind node0; last caught up 1.5 s ago; 3 keys learned by catching up",
    ]
