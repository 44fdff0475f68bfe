"""Keys as arrays on the hot path (protocol/colmessages.py, columns.py): a run of one-key
messages as one column message means exactly its rows. The acceptor host and the
proposer host are run side by side on seeded random schedules, one fed one-key
messages and the other the same messages packed into columns, and must agree on every
state, reply, event and count; the codec bounds and checks a column message before
anything acts on it; the wire's ids and log count rows."""

from __future__ import annotations

import errno
import logging
import random
from typing import Any

import pytest
import zmq

from zpaxos.hosts.acceptor_host import AcceptorHost, Ready
from zpaxos.hosts.addresses import Caller
from zpaxos.hosts.proposer_host import ProposerHost
from zpaxos.protocol.colmessages import Accepteds, Accepts, Decides, Nacks, Promises
from zpaxos.protocol.columns import expand, pack, rows
from zpaxos.protocol.core import ProposerOptions
from zpaxos.protocol.messages import (
    ZERO,
    Accept,
    Accepted,
    Ballot,
    Decide,
    Message,
    Nack,
    Prepare,
    Promise,
    StatusRequest,
)
from zpaxos.protocol.wiretypes import MAX_ROWS
from zpaxos.runtime import codec
from zpaxos.runtime.memstore import MemoryStore
from zpaxos.runtime.wire import Wire
from zpaxos.sim.mutants import KEY_MUTANTS
from zpaxos.sim.runs import check_seeds

A, B = Caller(b"p:aaaa:0"), Caller(b"p:bbbb:0")
KEYS = ("k0", "k1", "k2", "k3", "r-0", "r-1")
IDS = (b"a", b"b", b"c")
VALUES = (b"x", b"y", b"z")


def _ballot(rng: random.Random, zero: bool = False) -> Ballot:
    if zero and rng.random() < 0.3:
        return ZERO
    return Ballot(rng.randint(1, 4), rng.choice(IDS))


def _to_acceptor(rng: random.Random) -> Message:
    key, roll = rng.choice(KEYS), rng.random()
    if roll < 0.4:
        return Prepare(key, _ballot(rng))
    if roll < 0.8:
        return Accept(key, _ballot(rng), rng.choice(VALUES))
    return Decide(key, rng.choice(VALUES), _ballot(rng, zero=True))


def packed_by_source(batch: list[tuple[Any, Message]]) -> list[tuple[Any, Message]]:
    """``batch`` as a wire would carry it: each source's consecutive messages packed."""
    out: list[tuple[Any, Message]] = []
    i = 0
    while i < len(batch):
        j = i
        while j < len(batch) and batch[j][0] == batch[i][0]:
            j += 1
        out += [(batch[i][0], m) for m in pack([m for _, m in batch[i:j]])[0]]
        i = j
    return out


def _rows(ready: Ready) -> tuple[Any, ...]:
    return (dict(ready.persist), dict(ready.lazy), dict(ready.ranges),
            [(dst, row) for dst, m in ready.send for row in rows(m)],
            list(ready.learned), list(ready.events))


def _host(seed: int, with_source: bool) -> AcceptorHost:
    ranges = {"r-": Ballot(2, b"r")} if seed % 3 == 0 else None
    source = MemoryStore() if with_source else None
    return AcceptorHost(0, {}, [1, 2], ranges=ranges, source=source,
                        check_client_decides=seed % 5 == 0)


@pytest.mark.parametrize("with_source", [False, True], ids=["in-memory", "with-a-store"])
def test_the_acceptor_host_agrees_on_rows_and_on_columns(with_source: bool) -> None:
    runs = 0
    for seed in range(300):
        rng = random.Random(seed)
        one, cols = _host(seed, with_source), _host(seed, with_source)
        for _ in range(rng.randint(1, 6)):
            batch = [(rng.choice((A, B)), _to_acceptor(rng))
                     for _ in range(rng.randint(1, 40))]
            packed = packed_by_source(batch)
            runs += len(packed) < len(batch)
            r1, r2 = one.handle(batch), cols.handle(packed)
            assert _rows(r1) == _rows(r2), f"seed {seed}"
            for host, ready in ((one, r1), (cols, r2)):  # the loop's commit
                if host.source is not None:
                    store: MemoryStore = host.source  # type: ignore[assignment]
                    store.save((ready.lazy | ready.persist).items(), ready.ranges.items())
            assert one.states == cols.states, f"seed {seed}"
            assert one.handled == cols.handled and one.created_keys == cols.created_keys
        if not with_source:
            assert one.handle([(A, StatusRequest(None))]).send == \
                cols.handle([(A, StatusRequest(None))]).send  # the indexes agree too
    assert runs > 500  # most batches held runs (the column path was taken)


def _proposers(seed: int) -> ProposerHost:
    ids = iter(range(1, 1000))
    return ProposerHost([0, 1, 2], random.Random(seed), lambda: bytes([next(ids)]) * 16)


def _reply(rng: random.Random, keys: list[str], ballots: list[Ballot]) -> Message:
    key, b, roll = rng.choice(keys), rng.choice(ballots), rng.random()
    if roll < 0.5:
        return Accepted(key, b, rng.choice(VALUES))
    if roll < 0.75:
        acc = _ballot(rng, zero=True)
        return Promise(key, b, acc, None if acc.is_zero else rng.choice(VALUES))
    if roll < 0.9:
        return Nack(key, b, _ballot(rng))
    return Decide(key, rng.choice(VALUES), _ballot(rng, zero=True))


def test_the_proposer_host_agrees_on_rows_and_on_columns() -> None:
    opts = ProposerOptions()
    finished = 0
    for seed in range(300):
        rng = random.Random(seed)
        one, cols = _proposers(seed), _proposers(seed)
        keys = [f"k{i}" for i in range(rng.randint(1, 5))]
        starts = [(i, rng.choice(keys), rng.choice(VALUES)) for i in range(rng.randint(1, 8))]
        sent: list[Any] = []
        for host in (one, cols):
            sent.append([host.start(0.0, t, k, v, opts).send for t, k, v in starts])
        assert sent[0] == sent[1]
        ballots = [m.ballot for s in sent[0] for _, m in s] + [Ballot(9, b"q")]
        for step in range(rng.randint(1, 6)):
            now = 0.01 * (step + 1)
            replies = [(rng.randint(0, 2), _reply(rng, keys, ballots))
                       for _ in range(rng.randint(1, 30))]
            r1 = one.receive_all(now, replies)
            r2 = cols.receive_all(now, packed_by_source(replies))
            assert (r1.send, r1.events, r1.finished) == (r2.send, r2.events, r2.finished), \
                f"seed {seed}"
            finished += len(r1.finished)
            ballots += [m.ballot for _, m in r1.send if hasattr(m, "ballot")]
    assert finished > 300


def test_pack_keeps_order_and_leaves_runs_of_one_alone() -> None:
    b = Ballot(1, b"p")
    msgs: list[Message] = [Accept("a", b, b"1"), Accept("b", b, b"2"), Decide("a", b"1", b),
                           StatusRequest(None), Accept("c", b, b"3"), Accept("d", b, b"4")]
    packed, count = pack(msgs)
    assert [type(m) for m in packed] == [Accepts, Decide, StatusRequest, Accepts]
    assert count == 6 and list(expand(packed)) == msgs
    assert pack(packed) == (packed, 6)  # already packed: as it is


def test_the_codec_carries_columns_and_refuses_what_their_rules_forbid() -> None:
    b = Ballot(1, b"p")
    good = Accepts(("a", "b"), (b, b), (b"1", b"2"))
    assert codec.decode(codec.encode(good))[0] == good
    bad: list[Message] = [
        Accepts(("a", "b"), (b,), (b"1", b"2")),  # columns of two lengths
        Decides(("a",), (b"1",), (Ballot(0, b"p"),)),  # a ballot neither ZERO nor real
        Promises(("a",), (b,), (ZERO,), (b"1",)),  # a value without its accepted ballot
        Nacks(("a",), (b,), (Ballot(2, b""),)),
        Accepteds(("../x",), (b,), (b"1",)),  # not a key
        Accepteds(("a",), (ZERO,), (b"1",)),  # an Accepted at ZERO
    ]
    for msg in bad:
        with pytest.raises(codec.DecodeError):
            codec.decode(codec.encode(msg))
    n = MAX_ROWS + 1
    with pytest.raises(codec.DecodeError, match="keys"):
        codec.decode(codec.encode(Decides(("a",) * n, (b"1",) * n, (b,) * n)))


class _Socket:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes, flags: int = 0) -> None:
        self.frames.append(frame)


class _Log:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def enabled(self, level: int = logging.INFO) -> bool:
        return True

    def event(self, name: str, msg: str = "", level: int = logging.INFO, **f: Any) -> None:
        self.events.append({"event": name, **f})


def test_the_wire_sends_runs_as_columns_and_logs_and_numbers_rows() -> None:
    b = Ballot(1, b"p")
    sent_log, recv_log, sock = _Log(), _Log(), _Socket()
    out, into = Wire(sent_log, "c"), Wire(recv_log, "n0")  # type: ignore[arg-type]
    first = [Accept("a", b, b"1"), Accept("b", b, b"2"), Decide("z", b"9", b)]
    assert out.send(sock, first, 0) and out.send(sock, [Prepare("c", b)] * 3, 0)  # type: ignore[arg-type]
    assert out.sent == 6
    got = [m for frame in sock.frames for m in into.parse([frame], 0)]
    assert [type(m) for m in got] == [Accepts, Decide, type(pack([Prepare("c", b)] * 3)[0][0])]
    assert list(expand(got)) == first + [Prepare("c", b)] * 3
    ids = [f"c:{i}" for i in range(1, 7)]
    assert [e["msg_id"] for e in sent_log.events] == ids  # one line per row, as before
    assert [e["msg_id"] for e in recv_log.events] == ids
    assert [e["type"] for e in recv_log.events] == ["ACCEPT", "ACCEPT", "DECIDE"] + ["PREPARE"] * 3
    # A batch that cannot leave is counted and logged row by row too.
    full_log = _Log()
    full = Wire(full_log, "c")  # type: ignore[arg-type]
    assert not full.send(_Full(), first, 0)  # type: ignore[arg-type]
    assert full.undeliverable == 3
    assert [e["msg_id"] for e in full_log.events if e["event"] == "undeliverable"] == ids[:3]


class _Full(_Socket):
    def send(self, frame: bytes, flags: int = 0) -> None:
        raise zmq.ZMQError(errno.EAGAIN)


@pytest.mark.parametrize("name", ["accepts-below-promise", "forgets-promise", "lab-ballots",
                                  "accepts-below-range-promise", "ignores-accepted",
                                  "host-keeps-first-state-in-pass"])
def test_broken_row_rules_are_caught_on_the_column_path_alone(name: str) -> None:
    """With every frame's runs as columns, the core's row rules are what the nodes run
    (and a proposer's, for Promises and Accepteds): a broken one is caught there too (the
    default seeds mix both paths)."""
    mutant = KEY_MUTANTS[name]
    failures, _ = check_seeds(range(3000), batch_wire=True, **mutant.variant)
    assert failures, f"mutant {name} survived on the column path"
    assert any(c in failures[0].what for c in mutant.caught_by.split("|"))
