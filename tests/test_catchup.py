"""Catching up (zpaxos/runtime/catchup.py): each node asks its peers, about once a second,
what they learned since it last asked. The learn log and the cursors alone, then two real
AcceptorHosts talking to each other (no sockets: the test carries the messages)."""

from __future__ import annotations

from zpaxos.protocol.messages import (
    Ballot,
    CatchUp,
    CatchUpReply,
    Decide,
    SyncReply,
    SyncRequest,
)
from zpaxos.runtime.acceptor_host import AcceptorHost, Ready
from zpaxos.runtime.catchup import CATCHUP_S, RETRY_S, Cursors, LearnLog

B1 = Ballot(1, b"p" * 16)
BOOT_A, BOOT_A2, BOOT_B = b"A" * 8, b"a" * 8, b"B" * 8


# ---- the learn log


def test_the_log_numbers_what_it_learns_and_answers_only_for_its_own_positions():
    log = LearnLog(BOOT_A)
    for k in ("x", "y", "z"):
        log.append(k)
    assert log.end == 3
    assert log.after(BOOT_A, 0, 10) == ["x", "y", "z"]
    assert log.after(BOOT_A, 1, 1) == ["y"]
    assert log.after(BOOT_A, 3, 10) == []  # up to date
    assert log.after(BOOT_A, 4, 10) is None  # a position it never had
    assert log.after(BOOT_A2, 1, 10) is None  # another process's positions
    assert log.after(b"", 0, 10) is None  # no cursor yet


def test_the_log_forgets_its_oldest_half_and_then_refuses_those_positions():
    log = LearnLog(BOOT_A, keep=4)
    for i in range(9):  # past 2 x keep: it keeps the newest 4
        log.append(f"k{i}")
    assert log.base == 5 and log.end == 9
    assert log.after(BOOT_A, 5, 10) == ["k5", "k6", "k7", "k8"]
    assert log.after(BOOT_A, 4, 10) is None  # forgotten: the asker must walk


# ---- the cursors (the asking side)


def test_start_asks_without_a_cursor_and_a_reset_starts_a_walk():
    c = Cursors([1, 2])
    assert c.start() == [(1, CatchUp(b"", 0)), (2, CatchUp(b"", 0))]
    learn, sends = c.on_reply(1, CatchUpReply(BOOT_A, 0, 7, (), False, True))
    assert not learn and sends == [(1, SyncRequest(""))]  # the walk starts after the cursor
    assert c.at[1] == (BOOT_A, 7)
    # A walk page with more asks for the next; the last one ends the walk.
    assert c.on_walk_page(1, SyncReply("", (("k", b"v", B1),), True)) == [(1, SyncRequest("k"))]
    assert c.on_walk_page(1, SyncReply("k", (), False)) == []
    assert 1 not in c.walking


def test_a_reply_moves_the_cursor_more_asks_at_once_and_the_rest_wait_a_second():
    c = Cursors([1])
    c.tick(100.0)
    c.on_reply(1, CatchUpReply(BOOT_A, 0, 2, (), False, True))  # the cursor: (A, 2)
    c.on_walk_page(1, SyncReply("", (), False))
    assert c.tick(100.5) == []  # not yet: once a second
    assert c.tick(100.0 + CATCHUP_S) == [(1, CatchUp(BOOT_A, 2))]
    learn, sends = c.on_reply(1, CatchUpReply(BOOT_A, 2, 5, (("k", b"v", B1),), True, False))
    assert learn and sends == [(1, CatchUp(BOOT_A, 5))]  # more: at once
    learn, sends = c.on_reply(1, CatchUpReply(BOOT_A, 5, 6, (("m", b"w", B1),), False, False))
    assert learn and sends == [] and c.at[1] == (BOOT_A, 6)
    assert c.next_due() == 100.0 + 2 * CATCHUP_S


def test_a_duplicate_or_stale_reply_teaches_nothing():
    c = Cursors([1])
    c.start()
    c.tick(10.0)
    assert c.on_reply(1, CatchUpReply(BOOT_A, 0, 3, (), False, True))[1]
    dup = c.on_reply(1, CatchUpReply(BOOT_A, 0, 3, (), False, True))
    assert dup == (False, [])  # nothing outstanding any more
    assert c.on_reply(1, CatchUpReply(BOOT_A, 9, 12, (("k", b"v", B1),), False, False)) == (
        False, [])  # answers a request never made


def test_an_unanswered_request_or_walk_page_is_asked_again():
    c = Cursors([1])
    c.start()
    assert c.tick(50.0) == []  # the start's request: its clock starts now
    assert c.tick(50.0 + RETRY_S) == [(1, CatchUp(b"", 0))]
    c.on_reply(1, CatchUpReply(BOOT_A, 0, 0, (), False, True))
    c.on_walk_page(1, SyncReply("", (("k", b"v", B1),), True))  # asks after "k" ...
    later = 50.0 + 2 * RETRY_S + 1
    assert (1, SyncRequest("k")) in c.tick(later)  # ... and again when nothing came


def test_a_reset_during_a_walk_runs_the_walk_again_when_it_ends():
    c = Cursors([1])
    c.start()
    c.on_reply(1, CatchUpReply(BOOT_A, 0, 4, (), False, True))  # walk 1 starts
    c.tick(200.0 + CATCHUP_S)  # asks (A, 4); the peer restarted meanwhile:
    assert c.on_reply(1, CatchUpReply(BOOT_A2, 4, 1, (), False, True)) == (False, [])
    assert c.at[1] == (BOOT_A2, 1)
    # Walk 1 may have passed keys the new process learned before the new cursor: again.
    assert c.on_walk_page(1, SyncReply("", (), False)) == [(1, SyncRequest(""))]
    assert c.on_walk_page(1, SyncReply("", (), False)) == []


# ---- two hosts


def _host(node: int, peers: list[int], boot: bytes) -> AcceptorHost:
    return AcceptorHost(node, {}, peers, boot=boot)


def _carry(ready: Ready, src: int, to: dict[int, AcceptorHost]) -> list[tuple[int, Ready]]:
    """Hand each message of ``ready`` to its destination host (as from ``src``)."""
    out = []
    for dst, msg in ready.send:
        assert isinstance(dst, int)
        out.append((dst, to[dst].handle([(src, msg)])))
    return out


def test_a_host_learns_what_its_peer_learned_and_passes_it_on():
    a, b = _host(0, [1], BOOT_A), _host(1, [0], BOOT_B)
    hosts = {0: a, 1: b}
    a.handle([(9, Decide("k1", b"v1", B1)), (9, Decide("k2", b"v2", B1))])
    assert a.learn_log.keys == ["k1", "k2"]
    # b starts: CatchUp without a cursor -> a resets it to 2 -> b walks a's chosen keys.
    start = b.start()
    for _, r in _carry(start, 1, hosts):  # a's reset
        walk = b.handle([(0, m) for _, m in r.send])
        assert walk.send == [(0, SyncRequest(""))]
        for _, page in _carry(walk, 1, hosts):
            got = b.handle([(0, m) for _, m in page.send])
            assert sorted(k for k, _ in got.learned) == ["k1", "k2"]
    # a learns one more; b's next periodic CatchUp brings exactly that one.
    a.handle([(9, Decide("k3", b"v3", B1))])
    tick = b.tick(1000.0)
    assert tick.send == [(0, CatchUp(BOOT_A, 2))]
    (_, reply), = _carry(tick, 1, hosts)
    (_, msg), = reply.send
    assert isinstance(msg, CatchUpReply) and msg.chosen == (("k3", b"v3", B1),)
    got = b.handle([(0, msg)])
    assert got.learned == [("k3", b"v3")] and b.states["k3"].chosen == b"v3"
    # What b learned from a is in b's own log: a third node catching up from b gets it.
    assert sorted(b.learn_log.keys) == ["k1", "k2", "k3"]
    # Nothing new: the next CatchUp is answered with an empty page.
    (_, reply), = _carry(b.tick(1000.0 + CATCHUP_S), 1, hosts)
    (_, msg), = reply.send
    assert isinstance(msg, CatchUpReply) and msg.chosen == () and not msg.reset


def test_a_catch_up_never_overwrites_a_different_chosen_value():
    """A CatchUpReply's decisions go through the core like any Decide: a conflicting value
    for a key already chosen here is refused (and reported), not recorded."""
    b = _host(1, [0], BOOT_B)
    b.handle([(9, Decide("k", b"mine", B1))])
    b.cursors.start()
    b.handle([(0, CatchUpReply(BOOT_A, 0, 0, (), False, True))])
    b.cursors.on_walk_page(0, SyncReply("", (), False))
    b.tick(5.0 + CATCHUP_S)
    got = b.handle([(0, CatchUpReply(BOOT_A, 0, 1, (("k", b"other", B1),), False, False))])
    assert b.states["k"].chosen == b"mine"
    assert any(type(ev).__name__ == "Conflict" for _, ev in got.events)
