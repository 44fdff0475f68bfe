"""Fuzzing a live node: a bounded blaster (the codec's own fuzzing: test_fuzz_codec.py).

A live node blasted with garbage (random frames, msgpack bodies of the right and wrong shapes,
oversized values and frame headers, raw TCP garbage, half-open connections) must stay up,
keep its memory bounded, report every malformed message it dropped, and still decide.

``zpaxos status`` does not show a malformed-message counter yet, so the count is taken
from the node's JSON log ('malformed' events).
"""

from __future__ import annotations

import time

import pytest

from tests.harness import Cluster
from tests.nemesis.blaster import (
    PROTOCOL,
    Blaster,
    deep,
    frame,
    logged_malformed,
    rss_kb,
    wait_logged,
)

pytestmark = pytest.mark.fuzz

BLAST_ROUNDS, BLAST_MESSAGES = 5, 5_000  # through ZeroMQ; about 5 s on the 2-core CI machine
WARMUP_ROUNDS = 2
BLAST_RAW = 2_000  # raw TCP connections (each is short: well under a second in all)
# Bounded memory: once the first rounds have warmed the allocator and the socket queues,
# later rounds of the same garbage must not keep adding to what the node holds ...
GROWTH_AFTER_WARMUP_MAX_KB = 32 * 1024
# ... and it never held more than this (a few 1 MiB values queued at once is expected;
# libzmq's receive queue holds up to RCVHWM messages, each up to MAXMSGSIZE).
PEAK_MAX_KB = 512 * 1024


# ---------------------------------------------------------------- a live node


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, log_level="WARNING")
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


def decides(c: Cluster, key: str) -> None:
    r = c.propose(f"{key}-value", "--key", key)
    assert r.code == 0, r.err
    assert r.json["chosen"] == f"{key}-value" and r.json["own"] is True

    def everywhere() -> bool:
        return all((c.node_state(i, key) or {}).get("chosen") == f"{key}-value"
                   for i in range(c.n))

    # A node whose connection the proposer had not finished when a quorum answered gets
    # nothing from it (the proposer exits without waiting for a node that never answered);
    # it learns the decision from the key's next proposal, as any node that missed one.
    for _ in range(3):
        try:
            c.wait_for(everywhere, f"{key} chosen on every node", timeout_s=5.0)
            return
        except TimeoutError:
            r = c.propose(f"{key}-value", "--key", key)
            assert r.code == 0 and r.json["chosen"] == f"{key}-value", r.err
    c.wait_for(everywhere, f"{key} chosen on every node")


@pytest.mark.e2e
def test_live_node_survives_a_blast(cluster, capsys):
    c = cluster
    decides(c, "before-fuzz")
    pid = c.procs[0].pid
    before = rss_kb(pid)
    b = Blaster("127.0.0.1", c.ports[0], seed=int(time.time()) % 100_000)
    rounds: list[int] = []
    try:
        t0 = time.monotonic()
        for _ in range(BLAST_ROUNDS):
            b.blast_zmq(BLAST_MESSAGES)
            b.drain_replies()
            assert wait_logged(c, b.counts.expected_malformed), (
                f"node0 logged {logged_malformed(c)} malformed, expected "
                f"{b.counts.expected_malformed}")
            rounds.append(rss_kb(pid)["VmRSS"])  # every message of the round handled
        zmq_s = time.monotonic() - t0
        # Exactly the ones our own codec refuses (nothing else has reached it yet).
        assert logged_malformed(c) == b.counts.expected_malformed
        t1 = time.monotonic()
        held = b.blast_raw(BLAST_RAW)
        raw_s = time.monotonic() - t1
        assert c.is_running(0), "node0 died under raw TCP garbage"
        decides(c, "during-half-open")  # half-open connections do not block anyone
        for s in held:
            s.close()
    finally:
        b.close()
    after = rss_kb(pid)
    assert c.is_running(0)
    decides(c, "after-fuzz")
    assert (c.node_state(0, "before-fuzz") or {}).get("chosen") == "before-fuzz-value"
    with capsys.disabled():
        print(f"\nfuzz: {b.counts.messages} zmq messages in {zmq_s:.1f} s "
              f"({b.counts.messages / zmq_s:.0f}/s), {b.counts.expected_malformed} malformed "
              f"(node0 logged {logged_malformed(c)}), {b.counts.raw_connections} raw "
              f"connections in {raw_s:.1f} s; node0 RSS {before['VmRSS']} KiB before, "
              f"{rounds} after each round, {after['VmRSS']} at the end, peak "
              f"{after['VmHWM']} KiB")
    warm = rounds[WARMUP_ROUNDS - 1]
    assert max(rounds[WARMUP_ROUNDS:] + [after["VmRSS"]]) - warm < GROWTH_AFTER_WARMUP_MAX_KB, (
        before, rounds, after)
    assert after["VmHWM"] < PEAK_MAX_KB, (before, rounds, after)


@pytest.mark.e2e
def test_live_node_survives_deep_nesting(cluster):
    c = cluster
    b = Blaster("127.0.0.1", c.ports[0], seed=1)
    try:
        for depth in range(900, 1100, 5):
            b.dealer.send(frame(PROTOCOL, b"PREPARE", b"fz:deep", deep(depth)))
            b.dealer.send(frame(PROTOCOL, b"PREPARE", b"fz:deep", b"\x92\xa1k" + deep(depth)))
        sent = 2 * len(range(900, 1100, 5))
        wait_logged(c, sent, timeout_s=10)
        assert c.is_running(0), "node0 died of deeply nested msgpack"
        assert logged_malformed(c) == sent
    finally:
        b.close()
    decides(c, "after-deep")


# ------------------------------------------- one frame of range prepares (issue 27, item 3)

FLOOD_KEYS = 10_000  # decided keys that sort right after every prefix of the frame
DECISION_DELAY_MAX_S = 0.1  # another client's decision, beyond its usual time, at worst
# ... measured as the worst decision during the frame minus the median before it, and
# allowed this much more for a shared 2-core machine: before the fix the frame kept the
# node from answering for minutes (about 37 ms per RangePrepare, 10,000 of them).
DECISION_DELAY_SLACK_S = 0.15
FLOOD_DEADLINE_S = 30.0  # every RangePrepare of the frame answered by then


@pytest.mark.e2e
def test_a_frame_of_range_prepares_does_not_stall_other_clients(tmp_path, capsys):
    import os
    import statistics

    import zmq

    from zpaxos.client import Client, load_config
    from zpaxos.protocol.core import KeyState, ProposerOptions
    from zpaxos.protocol.messages import Ballot, RangeNack, RangePrepare, RangePromise
    from zpaxos.runtime import codec
    from zpaxos.runtime.storage import SqliteStore

    # One node, so every decision needs it. Its keys are written through the store before
    # it starts: "b-..." sorts after every prefix "a00000-" ... "a09999-" of the frame.
    c = Cluster(tmp_path, n=1, log_level="WARNING")
    b = Ballot(1, b"s" * 16)
    store = SqliteStore(tmp_path / "data" / "node0")
    store.save([(f"b-{i:05d}", KeyState(b, b, b"v", b"v", b)) for i in range(FLOOD_KEYS)])
    store.close()
    ctx = zmq.Context()
    flood = ctx.socket(zmq.DEALER)
    flood.setsockopt(zmq.ROUTING_ID, b"range-flood")
    flood.setsockopt(zmq.LINGER, 0)
    try:
        c.start_all()
        flood.connect(f"tcp://127.0.0.1:{c.ports[0]}")
        opts = ProposerOptions(timeout_s=5.0)
        with Client(load_config(c.config), fast=False) as client:

            def decide(key: str) -> float:
                t0 = time.monotonic()
                out = client.propose(key, key=key, options=opts)
                assert out.chosen == key.encode(), out.reason
                return time.monotonic() - t0

            before = [decide(f"before-{i}") for i in range(10)]
            ballot = Ballot(1, os.urandom(16))
            msgs = [RangePrepare(f"a{i:05d}-", ballot) for i in range(codec.MAX_BATCH)]
            frames = list(codec.encode_batch("range-flood", 0, msgs))
            assert len(frames) == 1  # one frame: the maximum batch
            frame = frames[0][0]
            answered = 0

            def drain() -> None:
                nonlocal answered
                while flood.poll(0):
                    batch = codec.decode_batch(flood.recv())
                    answered += sum(isinstance(m, (RangePromise, RangeNack))
                                    for m in batch.messages)

            t_sent = time.monotonic()
            flood.send(frame)
            during: list[float] = []
            while answered < len(msgs):
                assert time.monotonic() - t_sent < FLOOD_DEADLINE_S, (
                    f"{answered} of {len(msgs)} RangePrepares answered")
                during.append(decide(f"during-{len(during)}"))
                drain()
            flood_s = time.monotonic() - t_sent
            after = [decide(f"after-{i}") for i in range(3)]
    finally:
        flood.close(0)
        ctx.term()
        c.stop_all()
    usual = statistics.median(before)
    with capsys.disabled():
        print(f"\nrange flood: {len(msgs)} RangePrepares in one frame ({len(frame)} bytes) "
              f"against {FLOOD_KEYS} following keys, all answered in {flood_s:.2f} s; "
              f"{len(during)} decisions meanwhile: worst {max(during) * 1000:.1f} ms, median "
              f"{statistics.median(during) * 1000:.1f} ms (before: median {usual * 1000:.1f} "
              f"ms; after: worst {max(after) * 1000:.1f} ms)")
    assert len(during) >= 3, "the frame was answered before another client could decide"
    assert max(during) - usual < DECISION_DELAY_MAX_S + DECISION_DELAY_SLACK_S, during
