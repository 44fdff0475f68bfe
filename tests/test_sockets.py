"""The socket layer against real ZeroMQ sockets on loopback (no node processes).

A "node" here is a bare ROUTER this test binds, closes and binds again, so what the
client's Sockets sees (replies, a disconnection, a reconnection) is under the test's
control, and every wait is a poll until the awaited event (no sleeps)."""

from __future__ import annotations

import time
from collections.abc import Callable

import zmq

from zpaxos.lab.launcher import free_ports
from zpaxos.protocol.messages import Accepted, Ballot
from zpaxos.runtime import codec
from zpaxos.runtime.log import null_log
from zpaxos.runtime.sockets import Sockets, proposer_routing_id

B1 = Ballot(1, b"p" * 16)


def _poll_until(sockets: Sockets, done: Callable[[list], bool], what: str,
                timeout_s: float = 20.0) -> list:
    """Poll until ``done(everything received so far)``."""
    got: list = []
    deadline = time.monotonic() + timeout_s
    while not done(got):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        got += sockets.poll(0.05)
    return got


def _node(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(endpoint)
    return router


def test_a_node_that_comes_back_is_seen_through_the_monitor_fd():
    """The client's monitors are watched by their file descriptors: the first handshake,
    the disconnection and the handshake after it each wake poll, and a node that came
    back is reported (``came_up``: its proposals retry at once)."""
    endpoint = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    ctx = zmq.Context()
    router = _node(ctx, endpoint)
    sockets = Sockets(null_log(), "t", {0: endpoint},
                      lambda n: proposer_routing_id(b"c" * 16, n), watch=True)
    try:
        watch = sockets.watch
        assert watch is not None
        # A reply reaches the client: the connection is up (and so was its handshake).
        sockets.send(0, Accepted("k", B1, b"v"))
        ident, frame = router.recv_multipart()
        assert codec.decode(frame)[0] == Accepted("k", B1, b"v")
        router.send_multipart([ident, codec.encode(Accepted("k", B1, b"v"), "n0")])
        got = _poll_until(sockets, bool, "the reply")
        assert got == [(0, Accepted("k", B1, b"v"))]
        assert not watch.came_up
        router.close(0)  # the node goes down ...
        _poll_until(sockets, lambda _: 0 in watch._lost, "the disconnection")
        router = _node(ctx, endpoint)  # ... and comes back
        _poll_until(sockets, lambda _: 0 in watch.came_up, "the node back up")
        assert not watch.refused
    finally:
        sockets.close()
        router.close(0)
        ctx.term()
