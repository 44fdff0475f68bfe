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
