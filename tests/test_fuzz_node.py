"""Fuzzing: hypothesis at the codec, then a bounded blaster at a live node.

The codec must answer any frames with a message or DecodeError, nothing else. A live
node blasted with garbage (random frames, msgpack bodies of the right and wrong shapes,
oversized values and frame headers, raw TCP garbage, half-open connections) must stay up,
keep its memory bounded, report every malformed message it dropped, and still decide.

``zpaxos status`` does not show a malformed-message counter yet, so the count is taken
from the node's JSON log ('malformed' events).
"""

from __future__ import annotations

import time

import msgpack
import pytest

from tests.harness import Cluster
from tests.nemesis.blaster import (
    ARITY,
    PROTOCOL,
    TAGS,
    Blaster,
    deep,
    logged_malformed,
    rss_kb,
    wait_logged,
)
from zpaxos.runtime import codec

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the [test] extra: "
                                 "pip install -e '.[test]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

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

# ---------------------------------------------------------------- the codec, by hypothesis

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
           | st.text(max_size=40) | st.binary(max_size=40))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=5)
                      | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=20)
ballots = st.lists(st.integers(-1, 2**64 - 1) | st.binary(max_size=40) | st.none(),
                   min_size=0, max_size=3)
fields_ = values | ballots | st.sampled_from(["CISC5597", "k", ".x", "a/b", "x" * 129, ""])


def decodes_or_refuses(frames: list[bytes]) -> None:
    try:
        msg, msg_id = codec.decode(frames)
    except codec.DecodeError as e:
        assert str(e)  # one readable reason
        return
    # Whatever passes decodes to a message that encodes back to the same fields.
    assert codec.decode(codec.encode(msg, msg_id))[0] == msg


SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(st.binary(max_size=64), max_size=7))
def test_any_frames(frames):
    decodes_or_refuses(frames)


@SETTINGS
@given(st.sampled_from(TAGS) | st.binary(max_size=12), values)
def test_right_header_any_body(tag, body):
    decodes_or_refuses([PROTOCOL, tag, b"id:1", msgpack.packb(body, use_bin_type=True)])


@SETTINGS
@given(st.sampled_from(TAGS), st.data())
def test_right_shape_any_fields(tag, data):
    n = ARITY[tag] + data.draw(st.sampled_from([0, 0, 0, -1, 1]))
    body = data.draw(st.lists(fields_, min_size=max(0, n), max_size=max(0, n)))
    decodes_or_refuses([PROTOCOL, tag, b"id:1", msgpack.packb(body, use_bin_type=True)])


@SETTINGS
@given(st.sampled_from(TAGS), st.binary(max_size=200))
def test_right_header_random_bytes(tag, body):
    decodes_or_refuses([PROTOCOL, tag, b"id:1", body])


def test_oversized_value_is_refused():
    body = msgpack.packb(["k", [1, b"p" * 16], b"v" * (codec.MAX_VALUE_BYTES + 1)])
    with pytest.raises(codec.DecodeError):
        codec.decode([PROTOCOL, b"ACCEPT", b"id:1", body])


@pytest.mark.parametrize("depth", [10, 100, 5_000, 1_000_000])
def test_nesting_far_from_the_limit_is_refused(depth):
    with pytest.raises(codec.DecodeError):
        codec.decode([PROTOCOL, b"PREPARE", b"id:1", deep(depth)])


@pytest.mark.xfail(strict=False, reason="nesting near msgpack's depth limit (~1000) makes "
                   "the decoder's error path raise RecursionError formatting the repr; "
                   "fixed by the decoder work on main")
def test_nesting_near_the_limit_is_refused():
    for depth in range(900, 1100, 3):
        for body in (deep(depth), b"\x92\xa1k" + deep(depth)):
            with pytest.raises(codec.DecodeError):
                codec.decode([PROTOCOL, b"PREPARE", b"id:1", body])


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
    c.wait_for(lambda: all((c.node_state(i, key) or {}).get("chosen") == f"{key}-value"
                           for i in range(c.n)), f"{key} chosen on every node")


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
@pytest.mark.xfail(strict=False, reason="deep msgpack nesting kills the node's decoder "
                   "(RecursionError in the error path) until the decoder fix lands")
def test_live_node_survives_deep_nesting(cluster):
    c = cluster
    b = Blaster("127.0.0.1", c.ports[0], seed=1)
    try:
        for depth in range(900, 1100, 5):
            b.dealer.send_multipart([PROTOCOL, b"PREPARE", b"fz:deep", deep(depth)])
            b.dealer.send_multipart([PROTOCOL, b"PREPARE", b"fz:deep", b"\x92\xa1k" + deep(depth)])
        sent = 2 * len(range(900, 1100, 5))
        wait_logged(c, sent, timeout_s=10)
        assert c.is_running(0), "node0 died of deeply nested msgpack"
        assert logged_malformed(c) == sent
    finally:
        b.close()
    decides(c, "after-deep")
