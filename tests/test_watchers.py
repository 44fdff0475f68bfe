"""A node's table of register watchers (zpaxos/hosts/watchers.py), and the acceptor host
that notifies from it: bounds, leases, notification on accept, bounded fan-out, removal,
and no growth past the bounds whatever clients send."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from zpaxos.hosts.acceptor_host import AcceptorHost
from zpaxos.hosts.addresses import Caller
from zpaxos.hosts.watchers import MAX_WATCHES_PER_CALLER, Watchers
from zpaxos.protocol.messages import Ballot, RegState, RNotify, RWatch
from zpaxos.protocol.regmessages import RAccept, RRead

A, B, C = Caller(b"a"), Caller(b"b"), Caller(b"c")


def test_a_watch_lasts_its_lease_and_a_renewal_extends_it() -> None:
    w = Watchers(lease_s=10.0)
    assert w.watch(0.0, A, "k") and w.watch(5.0, B, "k")
    assert w.watch(8.0, A, "k")  # renewed: now lasts until 18
    w.expire(12.0)  # B's lease (until 15) holds, A's too
    assert set(w.of("k")) == {A, B}
    w.expire(15.0)
    assert list(w.of("k")) == [A] and len(w) == 1
    w.expire(18.0)
    assert list(w.of("k")) == [] and len(w) == 0


def test_bounds_refuse_a_new_watch_but_renew_an_old_one() -> None:
    w = Watchers(max_watches=3, per_register=2, per_caller=2)
    assert w.watch(0.0, A, "k") and w.watch(0.0, B, "k")
    assert not w.watch(0.0, C, "k")  # two on "k" already
    assert w.watch(0.0, A, "j")
    assert not w.watch(0.0, A, "i")  # A watches two registers already
    assert not w.watch(0.0, C, "j")  # three in all
    assert w.refused == 3
    assert w.watch(1.0, A, "k") and w.refused == 3  # a renewal is never refused
    w.expire(w.lease_s + 0.5)  # all but A's renewed "k" expired: room again
    assert w.watch(w.lease_s + 0.5, C, "j") and len(w) == 2


def test_a_watch_is_notified_once_until_its_watcher_asks_again() -> None:
    w = Watchers()
    w.watch(0.0, A, "k")
    w.watch(0.0, B, "k")
    assert set(w.notify("k", 0.0, 1)) == {A, B}
    assert w.notify("k", 0.0, 1) == []  # disarmed: no second notification before a read
    w.rearm(A, "k")
    w.rearm(C, "k")  # not a watcher: nothing to arm, nothing added
    assert w.notify("k", 0.0, 1) == [A] and set(w.of("k")) == {A, B}
    w.watch(1.0, B, "k")  # a renewal arms too
    assert w.notify("k", 0.0, 1) == [B]
    assert w.notify("other", 0.0, 1) == []


def _host() -> AcceptorHost:
    host = AcceptorHost(0, {}, [1, 2])
    host.now = 0.0
    return host


def _accept(host: AcceptorHost, version: int) -> list[tuple[object, object]]:
    state = RegState(version, b"v%d" % version)
    ready = host.handle([(Caller(b"writer"), RAccept("k", Ballot(version, b"w"), state))])
    return [(dst, m) for dst, m in ready.send if isinstance(m, RNotify)]


def test_the_node_notifies_watchers_of_an_accepted_state_and_bounds_the_fan_out() -> None:
    host = _host()
    ready = host.handle([(A, RWatch("k")), (B, RWatch("k"))])
    assert sorted(ready.send, key=str) == [(A, RNotify("k", 0, True)), (B, RNotify("k", 0, True))]
    assert sorted(_accept(host, 1), key=str) == [(A, RNotify("k", 1, True)),
                                                 (B, RNotify("k", 1, True))]
    assert _accept(host, 2) == []  # neither read since: no second notification
    host.handle([(A, RRead("k", 1))])  # A's confirming read re-arms A only
    assert _accept(host, 3) == [(A, RNotify("k", 3, True))]
    host.now = 100.0  # the leases ran out: removed, nobody is told
    host.handle([])
    assert len(host.watchers) == 0 and _accept(host, 4) == []


def test_a_full_table_refuses_and_says_so() -> None:
    host = _host()
    keys = [f"r{i}" for i in range(MAX_WATCHES_PER_CALLER + 1)]
    ready = host.handle([(A, RWatch(k)) for k in keys])
    answers = [m for _, m in ready.send if isinstance(m, RNotify)]
    assert [m.watching for m in answers] == [True] * MAX_WATCHES_PER_CALLER + [False]
    assert len(host.watchers) == MAX_WATCHES_PER_CALLER


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32))
def test_no_sequence_of_requests_grows_the_table_past_its_bounds(seed: int) -> None:
    rng = random.Random(seed)
    w = Watchers(lease_s=5.0, max_watches=40, per_register=15, per_caller=6)
    callers = [Caller(b"c%d" % i) for i in range(30)]
    keys = [f"k{i}" for i in range(12)]
    now = 0.0
    for _ in range(400):
        now += rng.random()
        caller, key = rng.choice(callers), rng.choice(keys)
        what = rng.random()
        if what < 0.6:
            w.watch(now, caller, key)
        elif what < 0.8:
            w.rearm(caller, key)
        else:
            w.notify(key, now, 1)
        w.expire(now)
        assert len(w) <= 40
        assert all(len(w.of(k)) <= 15 for k in keys)
        assert sum(len(w.of(k)) for k in keys) == len(w)
        assert all(sum(c in w.of(k) for k in keys) <= 6 for c in callers)
        w.due(now)
    w.expire(now + 5.0)  # every lease out: nothing left anywhere
    assert len(w) == 0 and not w._by_key and not w._per_caller and not w._armed
    assert not w._owed and not w._owed_version


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32))
def test_the_armed_watches_are_exactly_those_not_notified_since_they_asked(seed: int) -> None:
    """The table against a model: a watch is armed from its watch, renewal or read (of a
    watcher it holds) until a notification; ``armed`` is true exactly when one is. A
    watch notified too few times would miss a change (the watcher hears nothing more)."""
    rng = random.Random(seed)
    w = Watchers(lease_s=5.0, per_register=4, notes_burst=10**9)  # pacing: tested below
    callers = [Caller(b"c%d" % i) for i in range(6)]
    keys = ["k0", "k1"]
    armed: dict[str, set[Caller]] = {k: set() for k in keys}
    now = 0.0
    for _ in range(300):
        now += rng.random() / 2
        caller, key = rng.choice(callers), rng.choice(keys)
        what = rng.random()
        if what < 0.3:
            if w.watch(now, caller, key):
                armed[key].add(caller)
        elif what < 0.6:
            w.rearm(caller, key)
            if caller in w.of(key):
                armed[key].add(caller)
        else:
            assert set(w.notify(key, now, 1)) == armed[key]
            armed[key] = set()
        w.expire(now)
        for k in keys:
            armed[k] &= set(w.of(k))  # an expired watch is gone, armed or not
            assert w.armed(k) == bool(armed[k])


def test_a_write_with_no_watch_armed_costs_the_node_no_notification_work() -> None:
    host = _host()
    host.handle([(A, RWatch("k"))])
    assert _accept(host, 1) == [(A, RNotify("k", 1, True))]
    assert not host.watchers.armed("k")  # A was told: the next writes skip the watchers
    assert _accept(host, 2) == []
    host.handle([(A, RRead("k", 1))])
    assert host.watchers.armed("k") and _accept(host, 3) == [(A, RNotify("k", 3, True))]


def test_notifications_past_the_pacing_stay_armed_first_in_line() -> None:
    w = Watchers(unpaced=0, notes_per_s=10.0, notes_burst=2)
    for c in (A, B, C):
        w.watch(0.0, c, "k")
    assert w.notify("k", 0.0, 1) == [A, B]  # the burst: two
    assert w.armed("k") and w.deferred == 1
    assert w.notify("k", 0.05, 1) == []  # half a token: C waits, still armed
    w.rearm(A, "k")  # A read since: armed again, behind C
    assert w.notify("k", 0.1, 1) == [C]
    assert w.notify("k", 0.3, 1) == [A] and not w.armed("k")


def test_a_watcher_the_pacing_left_out_is_told_when_a_token_comes_change_or_not() -> None:
    # A lock's waiters once heard of a hand-over only at their renewal, seconds later,
    # when a burst of hand-overs had spent the bucket and no change came after it.
    host = _host()
    host.watchers = Watchers(unpaced=0, notes_per_s=10.0, notes_burst=1)
    host.handle([(A, RWatch("k")), (B, RWatch("k")), (C, RWatch("k"))])
    assert _accept(host, 1) == [(A, RNotify("k", 1, True))]  # B and C are owed it
    assert _accept(host, 2) == []  # no token yet; still owed, now version 2
    due = host.next_tick
    assert due is not None and abs(due - 0.1) < 1e-9  # one token at 10 a second
    assert host.tick(0.05).send == []
    assert host.tick(due).send == [(B, RNotify("k", 2, True))]  # the newest version
    assert host.tick(due + 0.1).send == [(C, RNotify("k", 2, True))]
    assert host.next_tick is None and not host.watchers.armed("k")


def test_a_watcher_owed_a_notification_that_asks_meanwhile_is_owed_nothing() -> None:
    w = Watchers(unpaced=0, notes_per_s=10.0, notes_burst=1)
    for c in (A, B, C):
        w.watch(0.0, c, "k")
    assert w.notify("k", 0.0, 1) == [A]
    w.rearm(B, "k")  # B reads the register: its answer is newer than the notification
    assert w.due(1.0) == [(C, "k", 1)]  # only C is still owed it
    assert w.armed("k")  # B is armed for the next change
    assert w.notify("k", 1.0, 2) == [] and w.due(2.0) == [(B, "k", 2)]


def test_an_owed_watch_that_expires_is_owed_nothing() -> None:
    w = Watchers(lease_s=5.0, unpaced=0, notes_per_s=10.0, notes_burst=1)
    w.watch(0.0, A, "k")
    w.watch(0.0, B, "k")
    w.notify("k", 0.0, 1)
    w.expire(5.0)
    assert w.due(10.0) == [] and w.next_due() is None and not w.armed("k")
    assert not w._owed and not w._owed_version


def test_a_renewal_leaves_an_owed_watch_owed_and_the_notification_answers_it() -> None:
    # An answer now, with a newer version, would be a read past the pacing: a thousand
    # watchers renewing on a busy register would each read on it.
    host = _host()
    host.watchers = Watchers(unpaced=0, notes_per_s=1.0, notes_burst=1)
    host.handle([(A, RWatch("k")), (B, RWatch("k"))])
    assert _accept(host, 1) == [(A, RNotify("k", 1, True))]  # B not told: owed
    assert host.watchers.armed("k")
    assert host.handle([(B, RWatch("k"))]).send == []  # B's renewal: owed still, no answer
    assert host.tick(0.5).send == []  # no token yet
    assert host.tick(1.0).send == [(B, RNotify("k", 1, True))]  # the notification
    assert host.handle([(B, RWatch("k"))]).send == [(B, RNotify("k", 1, True))]  # owed none


def test_a_renewal_answered_by_the_owed_notification_asks_for_a_read() -> None:
    from types import SimpleNamespace

    from zpaxos.runtime.watch import RENEWAL, WatchSession

    nodes = [SimpleNamespace(id=i) for i in range(3)]
    client = SimpleNamespace(cluster=SimpleNamespace(nodes=nodes),
                             register_options=lambda **kw: None)
    session = WatchSession(client, "k")  # type: ignore[arg-type]
    session.last, session.want_read = 3, False
    session._ask(0, RENEWAL)  # no answer of its own: the node owes us a notification
    session.take([(0, RNotify("k", 7, True))])  # which comes, paced, as the answer
    assert session.want_read and not session.asked[0]


def test_a_watcher_refused_by_too_many_nodes_is_told_why_and_what_to_do() -> None:
    from types import SimpleNamespace

    import pytest

    from zpaxos.runtime.watch import WatchRefused, WatchSession

    nodes = [SimpleNamespace(id=i) for i in range(3)]
    client = SimpleNamespace(cluster=SimpleNamespace(nodes=nodes),
                             register_options=lambda **kw: None)
    session = WatchSession(client, "k")  # type: ignore[arg-type]
    session.take([(0, RNotify("k", 0, False))])  # one refusal: a quorum still covered
    with pytest.raises(WatchRefused, match="2 of 3 nodes refused.*tables are full.*SharedWatch"):
        session.take([(1, RNotify("k", 0, False))])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32))
def test_the_pacing_delays_notifications_and_loses_none(seed: int) -> None:
    """Against a model: a watch armed when its register changes is told of it (at once,
    or later by ``due``, with the newest version) unless it asks about the register or
    expires first; nothing is told to a watch not armed; nothing owed is left behind."""
    rng = random.Random(seed)
    w = Watchers(lease_s=50.0, per_register=5, unpaced=0, notes_per_s=4.0, notes_burst=2,
                 spread=seed % 3)  # (a node's place to start telling: any order holds)
    callers = [Caller(b"c%d" % i) for i in range(6)]
    keys = ["k0", "k1"]
    armed: dict[str, set[Caller]] = {k: set() for k in keys}  # told of the next change
    owed: dict[str, set[Caller]] = {k: set() for k in keys}  # a change not told yet
    version = {k: 0 for k in keys}
    now = 0.0

    def told(out: list[tuple[Caller, str, int]]) -> None:
        for c, k, v in out:
            assert c in owed[k] and v == version[k]
            owed[k].discard(c)

    for _ in range(300):
        now += rng.random() / 4
        caller, key = rng.choice(callers), rng.choice(keys)
        what = rng.random()
        if what < 0.2:
            if w.watch(now, caller, key) and caller not in owed[key]:  # (owed: stays)
                armed[key].add(caller)
        elif what < 0.4:
            w.rearm(caller, key)
            if caller in w.of(key):
                armed[key].add(caller)
                owed[key].discard(caller)
        elif what < 0.7:
            version[key] += 1
            owed[key] |= armed[key]
            armed[key] = set()
            told([(c, key, version[key]) for c in w.notify(key, now, version[key])])
        else:
            told(w.due(now))
        for k in keys:
            assert w.armed(k) == bool(armed[k] or owed[k])
    for _ in range(1000):  # each timer finds its token (a rounding once left it short)
        due = w.next_due()
        if due is None:
            break
        now = max(now, due)
        out = w.due(now)
        assert out, "a timer fired for a token and found none"
        told(out)
    assert w.next_due() is None and not any(owed.values())


def test_a_register_with_few_watches_is_not_paced() -> None:
    # A lock's 8 waiters hear of each hand-over at once, whatever a register with a
    # thousand watchers has spent of the bucket.
    w = Watchers(notes_per_s=1.0, notes_burst=1, unpaced=3)
    for c in (A, B, C):
        w.watch(0.0, c, "lock")
    many = [Caller(b"m%d" % i) for i in range(4)]
    for c in many:
        w.watch(0.0, c, "config")
    assert len(w.notify("config", 0.0, 1)) == 1  # paced: the bucket is spent
    assert w.notify("lock", 0.0, 1) == [A, B, C]  # not paced
    w.rearm(A, "lock")
    assert w.notify("lock", 0.0, 2) == [A]


def test_a_timer_that_fires_for_a_token_finds_it_despite_rounding() -> None:
    # (0.7 + 1/3 - 0.7) * 3 is 0.9999999999999998: the node's loop woke at next_due for
    # a token that was not there, and asked again at once, for ever (a model test hung).
    w = Watchers(unpaced=0, notes_per_s=3.0, notes_burst=1)
    w.watch(0.0, A, "k")
    w.watch(0.0, B, "k")
    assert w.notify("k", 0.7, 1) == [A]
    due = w.next_due()
    assert due is not None and w.due(due) == [(B, "k", 1)]


def test_the_nodes_of_a_cluster_tell_a_change_to_different_watchers_first() -> None:
    # 1,000 separate watchers of one change: each needs one notification, from any node;
    # nodes that started at the same place would spend their budgets on the same ones.
    from zpaxos.hosts.watchers import NOTES_BURST

    callers = [Caller(b"w%d" % i) for i in range(1000)]
    nodes = [Watchers(spread=i) for i in range(3)]
    for w in nodes:
        for c in callers:
            w.watch(0.0, c, "k")
    told = [set(w.notify("k", 0.0, 1)) for w in nodes]
    assert [len(t) for t in told] == [NOTES_BURST] * 3
    assert len(told[0] | told[1] | told[2]) == 3 * NOTES_BURST  # no watcher told twice
    later = [{c for c, _, _ in w.due(2.0)} for w in nodes]  # and so on, paced
    assert len(later[0] | later[1] | later[2]) == sum(len(t) for t in later) > 0
