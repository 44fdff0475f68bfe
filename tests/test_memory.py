"""Memory stays bounded whatever a peer sends or fails to read (real node processes).

The bounds are documented in docs/operating.md (Limits): frames larger than any
valid message are refused by the socket before the node allocates them, and a peer that
asks for status and never reads can make a node hold at most SNDHWM small replies."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq

from tests.harness import Cluster
from zpaxos.client import Client, load_config
from zpaxos.protocol.messages import StatusRequest
from zpaxos.runtime import codec

pytestmark = pytest.mark.e2e

RSS_BOUND_MB = 100  # a node's documented ceiling under this abuse (it idles at ~40 MB)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


def settled_rss_mb(pid: int, quiet_s: float = 2.0, limit_s: float = 30.0) -> float:
    """The RSS once it has stopped growing for ``quiet_s`` (or at ``limit_s``)."""
    start = last_change = time.monotonic()
    last = rss_mb(pid)
    while time.monotonic() - last_change < quiet_s and time.monotonic() - start < limit_s:
        time.sleep(0.25)
        now = rss_mb(pid)
        if now > last + 1:
            last, last_change = now, time.monotonic()
    return max(last, rss_mb(pid))


@pytest.fixture
def running(tmp_path):
    c = Cluster(tmp_path)
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


def test_oversized_frames_never_reach_the_node(running):
    """Eight 60 MB bodies once took a node from 25 MB to a peak of 820 MB."""
    pid = running.procs[0].pid
    ctx = zmq.Context()
    try:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(f"tcp://127.0.0.1:{running.ports[0]}")
        body = b"\x00" * (60 << 20)
        for _ in range(8):
            try:
                s.send(codec.PROTOCOL + body, zmq.NOBLOCK)
            except zmq.Again:
                pass  # the node hung up on us: exactly the point
        time.sleep(1.5)  # nothing to await: the node sends nothing back
        s.close()
    finally:
        ctx.destroy(linger=0)
    assert rss_mb(pid, "VmHWM") < RSS_BOUND_MB  # the peak, not just now
    r = running.propose("Value_A", "--json")  # and it still decides
    assert r.code == 0 and r.json["chosen"] == "Value_A"


def test_a_client_that_never_reads_cannot_pile_up_replies(running):
    """400 status requests from a client that never reads its replies, with 3,000 keys,
    once took a node from 28 MB to 304 MB."""
    import os

    os.chdir(running.dir)
    cluster = load_config(running.config)
    from zpaxos.runtime.client import options_from

    items = [(f"key-{i:04d}", f"value-{i:05d}".encode() * 15) for i in range(3000)]
    with Client(cluster) as c:
        outcomes = [o for _, o, _ in c.stream(items, 64, options_from(cluster.proposer,
                                                                        timeout_s=60))]
    assert all(o.chosen is not None for o in outcomes)
    pid = running.procs[0].pid
    before = rss_mb(pid)
    ctx = zmq.Context()
    try:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 1)
        s.setsockopt(zmq.RCVBUF, 4096)  # and a tiny kernel window: replies stay at the node
        s.connect(f"tcp://127.0.0.1:{running.ports[0]}")
        frame = codec.encode(StatusRequest(None))
        for _ in range(400):
            s.send(frame)
        during = settled_rss_mb(pid)  # the node has answered them all (into its queue)
        s.close()
    finally:
        ctx.destroy(linger=0)
    print(f"node RSS before {before:.0f} MB, with 400 unread replies {during:.0f} MB")
    assert during < RSS_BOUND_MB, (before, during)
    r = running.propose("Value_A", "--key", "after", "--json")
    assert r.code == 0 and r.json["chosen"] == "Value_A"
