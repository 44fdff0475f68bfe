"""The hosts under the batched wire: one pass in, one Ready out, bounded whatever a frame
asks for; learned decisions are marked lazy, never promises or acceptances."""

from __future__ import annotations

import random

from zpaxos.hosts.acceptor_host import MAX_PAGES_PER_PASS, AcceptorHost
from zpaxos.hosts.addresses import Caller
from zpaxos.hosts.proposer_host import ProposerHost
from zpaxos.protocol.events import Ignored
from zpaxos.protocol.messages import (
    Accept,
    Accepted,
    Ballot,
    Decide,
    Prepare,
    Promise,
    StatusReply,
    StatusRequest,
)
from zpaxos.runtime.sockets import grouped

B = Ballot(1, b"p" * 16)
C = Caller(b"p:client:0")


def test_a_pass_of_many_keys_is_one_ready_with_replies_in_order():
    host = AcceptorHost(0, {}, [1, 2])
    ready = host.handle([(C, Prepare(f"k{i}", B)) for i in range(100)])
    assert sorted(ready.persist) == sorted(f"k{i}" for i in range(100))
    assert [m.key for _, m in ready.send] == [f"k{i}" for i in range(100)]
    assert all(isinstance(m, Promise) for _, m in ready.send)
    assert list(grouped(ready.send)) == [C]  # one destination: one frame


def test_learned_decisions_are_lazy_promises_and_acceptances_are_not():
    host = AcceptorHost(0, {}, [1, 2])
    ready = host.handle([(C, Accept("a", B, b"x")), (C, Decide("b", b"y", B))])
    assert set(ready.persist) == {"a"} and set(ready.lazy) == {"b"}
    assert ready.learned == [("b", b"y")]
    # A key changed eagerly in the same pass carries its decision in the eager commit.
    ready = host.handle([(C, Prepare("c", B)), (C, Decide("c", b"z", B))])
    assert set(ready.persist) == {"c"} and not ready.lazy
    assert ready.persist["c"].chosen == b"z" and ready.persist["c"].promised == B


def test_status_pages_per_pass_are_bounded():
    host = AcceptorHost(0, {}, [1, 2])
    ready = host.handle([(C, StatusRequest(None))] * (MAX_PAGES_PER_PASS + 36))
    assert sum(isinstance(m, StatusReply) for _, m in ready.send) == MAX_PAGES_PER_PASS
    assert sum(isinstance(e, Ignored) for _, e in ready.events) == 36


def test_a_proposer_pass_sends_one_batch_per_node():
    host = ProposerHost([0, 1, 2], random.Random(1), lambda: b"q" * 16)
    from zpaxos.protocol.core import ProposerOptions

    sends = []
    for i in range(50):
        sends += host.start(0.0, i, f"k{i}", b"v", ProposerOptions()).send
    by_node = grouped(sends)
    assert sorted(by_node) == [0, 1, 2] and all(len(m) == 50 for m in by_node.values())
    # A whole pass of promises from two nodes: one Ready, its Accepts one batch per node.
    replies = [(n, Promise(m.key, m.ballot, Ballot(0, b""), None))
               for n in (0, 1) for m in by_node[n]]
    ready = host.receive_all(0.001, replies)
    accepts = grouped(ready.send)
    assert sorted(accepts) == [0, 1, 2] and all(len(m) == 50 for m in accepts.values())
    assert all(isinstance(m, Accept) for ms in accepts.values() for m in ms)
    # And the Accepteds of a quorum finish every proposal in one pass.
    done = host.receive_all(0.002, [(n, Accepted(m.key, m.ballot, m.value))
                                    for n in (0, 1) for m in accepts[n]])
    assert len(done.finished) == 50
