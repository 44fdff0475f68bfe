"""The pieces of settling a configuration, without processes: the undecided-keys page, its
wire rule, the identity round, and registers counting a configuration's quorums."""

from __future__ import annotations

import random

from zpaxos.hosts.acceptor_host import AcceptorHost
from zpaxos.hosts.acceptor_pages import UNDECIDED_WALK
from zpaxos.hosts.register_host import RegisterHost
from zpaxos.protocol.core import ProposerOptions
from zpaxos.protocol.identity import NOTHING_ACCEPTED, IdentityProposer, moved
from zpaxos.protocol.membership import Config, Member
from zpaxos.protocol.messages import (
    ZERO,
    Accept,
    Ballot,
    Prepare,
    Promise,
    RAccept,
    RAccepted,
    RPrepare,
    RPromise,
    RRead,
    RState,
    UndecidedReply,
    UndecidedRequest,
)
from zpaxos.protocol.register import GET, RegisterOptions, RegOp
from zpaxos.protocol.regmessages import EMPTY as EMPTY_REG
from zpaxos.protocol.regmessages import RegState
from zpaxos.protocol.state import KeyState
from zpaxos.protocol.wirerules import CHECKS
from zpaxos.runtime import codec

B1, B2 = Ballot(1, b"a" * 16), Ballot(2, b"b" * 16)


def test_the_page_lists_accepted_undecided_keys_and_walks_a_bounded_page() -> None:
    states = {
        "a": KeyState(B1, B1, b"x"),  # accepted, not decided: listed
        "b": KeyState(B1, B1, b"x", b"x", B1),  # decided
        "c": KeyState(B1),  # promised only
        "d": KeyState(B2, B2, b"y"),  # listed
        "@r": KeyState(B1, B1, b"state"),  # a register's slot: never listed here
        "e": KeyState(B2, B2, b"z"),
    }
    pages = pages_of(AcceptorHost(0, states, [1, 2], register_page=1))
    assert [k for p in pages for k in p] == ["a", "d", "e"]
    assert max(len(p) for p in pages) == 1  # at most one listed per page
    many = {f"p{i:02}": KeyState(B1) for i in range(UNDECIDED_WALK * 20 + 5)}  # promised only
    many["q"] = KeyState(B1, B1, b"x")
    pages = pages_of(AcceptorHost(0, many, [1, 2], register_page=20))
    assert pages == [()] * (len(pages) - 1) + [("q",)] and len(pages) == 2


def pages_of(host: AcceptorHost) -> list[tuple[str, ...]]:
    """Every page of undecided keys, following the cursor (register_page *
    UNDECIDED_WALK keys walked per page)."""
    pages = []
    after = ""
    while True:
        ready = host.handle([(1, UndecidedRequest(after))])
        (_, reply), = ready.send
        assert isinstance(reply, UndecidedReply) and reply.after == after
        pages.append(reply.keys)
        if not reply.more:
            return pages
        after = reply.last


def test_an_undecided_page_out_of_order_is_refused() -> None:
    check = CHECKS[UndecidedReply]
    assert check(UndecidedReply("", ("a", "b"), "c", True)) is None
    assert check(UndecidedReply("", ("b", "a"), "c", True)) == "keys: not in order"
    assert check(UndecidedReply("", ("a", "d"), "c", False)) == "last: before the page's keys"
    frame = codec.encode(UndecidedReply("", ("0a",), "@reg", True), "n0", 1)  # "@" > "9"
    assert codec.decode(frame)[0] == UndecidedReply("", ("0a",), "@reg", True)


def identity(acceptors: tuple[int, ...] = (0, 1, 2)) -> IdentityProposer:
    p = IdentityProposer("k", b"", b"i" * 16, acceptors, ProposerOptions(), random.Random(1))
    p.start(0.0)
    return p


def test_an_identity_round_with_nothing_accepted_proposes_nothing() -> None:
    p = identity()
    b = p.ballot
    assert p.receive(0.1, 0, Promise("k", b, ZERO, None)).send == []
    step = p.receive(0.1, 1, Promise("k", b, ZERO, None))
    assert step.send == [] and p.outcome is not None
    assert p.outcome.chosen is None and p.outcome.reason == NOTHING_ACCEPTED
    assert moved(p.outcome)


def test_an_identity_round_accepts_and_decides_the_value_it_finds() -> None:
    p = identity()
    b = p.ballot
    p.receive(0.1, 0, Promise("k", b, ZERO, None))
    step = p.receive(0.1, 1, Promise("k", b, B1, b"found"))
    assert {m for _, m in step.send} == {Accept("k", b, b"found")}


def config(prepare: tuple[int, ...], pq: int, accept: tuple[int, ...], aq: int,
           epoch: int = 2) -> Config:
    members = tuple(Member(i, "127.0.0.1", 5000 + i) for i in sorted({*prepare, *accept}))
    return Config(epoch, members, prepare, pq, accept, aq)


def test_a_register_counts_each_phase_by_the_configuration_and_drops_its_promise() -> None:
    host = RegisterHost([0, 1, 2], random.Random(1), b"r" * 16)
    cfg = config((0, 1, 2), 2, (0, 1, 2, 3), 3)
    host.reconfigure(0.0, cfg)
    ready = host.submit(0.0, 1, "reg", RegOp(GET),
                        RegisterOptions(one_rtt=True, quorum_reads=False))
    prepares = [(dst, m) for dst, m in ready.send if isinstance(m, RPrepare)]
    assert sorted(dst for dst, _ in prepares) == [0, 1, 2]  # node 3: accept side only
    b = prepares[0][1].ballot
    host.receive(0.1, 0, RPromise("reg", b, ZERO, EMPTY_REG))
    ready = host.receive(0.1, 1, RPromise("reg", b, ZERO, EMPTY_REG))
    accepts = [dst for dst, m in ready.send if isinstance(m, RAccept)]
    assert sorted(accepts) == [0, 1, 2, 3]
    nxt = Ballot(b.round + 1, b.proposer)
    for node in (0, 3):
        assert host.receive(0.2, node, RAccepted("reg", b, nxt)).finished == []
    done = host.receive(0.2, 1, RAccepted("reg", b, nxt)).finished  # 3 of the accept side
    assert len(done) == 1
    core = host._regs["reg"].core
    assert core.cache is not None  # promised next by 0 and 1: a prepare quorum
    host.reconfigure(0.3, config((0, 1, 2, 3), 2, (0, 1, 2, 3), 3, epoch=3))
    assert core.cache is None  # bound to the epoch it was made in


def test_a_quorum_read_needs_a_quorum_of_both_sides_to_agree() -> None:
    # Prepare side 0-2 (2 of them), accept side 0-3 (3 of them): two agreeing answers
    # meet every write, but the state they agree on need not be chosen (it takes 3).
    host = RegisterHost([0, 1, 2], random.Random(1), b"r" * 16)
    host.reconfigure(0.0, config((0, 1, 2), 2, (0, 1, 2, 3), 3))
    ready = host.submit(0.0, 1, "reg", RegOp(GET),
                        RegisterOptions(quorum_reads=True, read_quorum_first=True))
    reads = [(dst, m) for dst, m in ready.send if isinstance(m, RRead)]
    assert sorted(dst for dst, _ in reads) == [0, 1, 2, 3]  # not a quorum first: all
    q = reads[0][1].read
    b = Ballot(5, b"w" * 16)
    state = RegState(1, b"v1")
    for node in (0, 1):
        assert host.receive(0.1, node, RState("reg", q, b, state)).finished == []
    done = host.receive(0.1, 3, RState("reg", q, b, state)).finished
    assert len(done) == 1 and done[0][1].value == b"v1"


def test_a_phase_1_promise_from_an_accept_only_node_does_not_count_for_registers() -> None:
    host = RegisterHost([0, 1, 2], random.Random(1), b"r" * 16)
    host.reconfigure(0.0, config((0, 1), 2, (0, 1, 2), 2))
    ready = host.submit(0.0, 1, "reg", RegOp(GET),
                        RegisterOptions(one_rtt=False, quorum_reads=False))
    b = next(m.ballot for _, m in ready.send if isinstance(m, RPrepare))
    host.receive(0.1, 0, RPromise("reg", b, ZERO, EMPTY_REG))
    ready = host.receive(0.1, 2, RPromise("reg", b, ZERO, EMPTY_REG))
    assert not any(isinstance(m, RAccept) for _, m in ready.send)


def test_prepare_is_sent_to_the_prepare_side_only() -> None:
    p = IdentityProposer("k", b"", b"i" * 16, (0, 1, 2), ProposerOptions(), random.Random(1),
                         quorums=config((0, 1), 2, (0, 1, 2), 2))
    step = p.start(0.0)
    assert sorted(dst for dst, m in step.send if isinstance(m, Prepare)) == [0, 1]


def test_a_range_promise_is_asked_of_the_prepare_side_and_bound_to_its_epoch() -> None:
    from zpaxos.hosts.proposer_host import Leases, ProposerHost
    from zpaxos.protocol.messages import RangePrepare

    leases = Leases()
    ids = iter(bytes([i]) * 16 for i in range(1, 100))
    cfg = config((0, 1), 2, (0, 1, 2), 2)

    def host() -> ProposerHost:
        h = ProposerHost([0, 1, 2], random.Random(1), lambda: next(ids), leases=leases)
        h.reconfigure(0.0, cfg)
        return h

    h = host()
    h.start(0.0, "a", "order-1", b"A", ProposerOptions(), fast=True)
    r = h.start(0.0, "b", "order-2", b"B", ProposerOptions(), fast=True)  # order- again
    assert sorted(dst for dst, m in r.send if isinstance(m, RangePrepare)) == [0, 1]
    lease = leases.by_prefix["order-"]
    assert lease.quorum == 2 and set(lease.acceptors) == {0, 1}
    host()  # another call of the same client, in the same epoch: the lease stays
    assert leases.by_prefix == {"order-": lease}
    h.reconfigure(0.1, config((0, 1, 2), 2, (0, 1, 2), 2, epoch=3))
    assert leases.by_prefix == {}  # a new epoch: dropped
