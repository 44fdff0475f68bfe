"""The socket layer against real ZeroMQ sockets on loopback (no node processes).

A "node" here is a bare ROUTER this test binds, closes and binds again, so what the
client's Sockets sees (replies, a disconnection, a reconnection) is under the test's
control, and every wait is a poll until the awaited event (no sleeps)."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import zmq

from zpaxos.lab.launcher import child_env, free_ports
from zpaxos.protocol.messages import Accepted, Ballot, Decide
from zpaxos.runtime import codec
from zpaxos.runtime.log import null_log
from zpaxos.runtime.sockets import ANSWERED_LINGER_MS, Sockets, proposer_routing_id

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
        assert watch.comebacks == 1  # (for a reader of its own: the set gets cleared)
        assert not watch.refused
    finally:
        sockets.close()
        router.close(0)
        ctx.term()


# A node in a process of its own: a bare ROUTER that prints, as hex, the frame of every
# message it receives. The test stops it (SIGSTOP) before the client connects: the kernel
# still takes the TCP connection, but the ZeroMQ handshake waits for the process, as it
# would for a node that is busy or just starting.
_CHILD_NODE = """
import sys, zmq
ctx = zmq.Context()
router = ctx.socket(zmq.ROUTER)
router.setsockopt(zmq.LINGER, 0)
router.bind(sys.argv[1])
print("ready", flush=True)
while True:
    frames = router.recv_multipart()
    print(frames[-1].hex(), flush=True)
"""


def _line(child: subprocess.Popen, timeout_s: float) -> bytes | None:
    """The child's next line, or None if none comes within ``timeout_s``."""
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout_s)
    return child.stdout.readline().strip() if ready else None


def test_a_node_still_connecting_at_close_still_gets_the_final_decide():
    """A proposer closing while a node's connection is still being made waits (up to
    ``reach_s``) for it, so the Decide queued for it is delivered: the node learns the
    decision although it had not answered. Before, only nodes that had answered got a
    linger, and a busy node lost the decision until the key's next proposal."""
    port_a, port_b = free_ports(2)
    ep_a, ep_b = f"tcp://127.0.0.1:{port_a}", f"tcp://127.0.0.1:{port_b}"
    child = subprocess.Popen([sys.executable, "-c", _CHILD_NODE, ep_b],
                             stdout=subprocess.PIPE, env=child_env())
    ctx = zmq.Context()
    router = _node(ctx, ep_a)
    sockets = None
    try:
        assert _line(child, 30) == b"ready"
        child.send_signal(signal.SIGSTOP)
        sockets = Sockets(null_log(), "t", {0: ep_a, 1: ep_b},
                          lambda n: proposer_routing_id(b"c" * 16, n), watch=True)
        decide = Decide("k", b"v", B1)
        sockets.send(0, decide)
        sockets.send(1, decide)
        ident, frame = router.recv_multipart()  # node 0 is up and answers ...
        router.send_multipart([ident, codec.encode(Accepted("k", B1, b"v"), "n0")])
        _poll_until(sockets, bool, "node 0's reply")
        assert sockets.watch is not None and 1 not in sockets.watch.up  # ... node 1 is not
        child.send_signal(signal.SIGCONT)
        sockets.close(ANSWERED_LINGER_MS, reach_s=30.0)
        sockets = None
        got = _line(child, 20)
        assert got is not None, "node 1 never got the Decide queued for it"
        assert codec.decode(bytes.fromhex(got.decode()))[0] == decide
    finally:
        if sockets is not None:
            sockets.close()
        child.kill()
        child.wait()
        router.close(0)
        ctx.term()


def test_a_node_that_is_down_costs_a_closing_proposer_no_wait():
    """A node whose connection is refused (nothing listens) is known to be down: close
    does not wait ``reach_s`` for it (here 60 s; it returns as soon as the refusal is seen)."""
    port_a, port_b = free_ports(2)
    ep_a, ep_b = f"tcp://127.0.0.1:{port_a}", f"tcp://127.0.0.1:{port_b}"
    ctx = zmq.Context()
    router = _node(ctx, ep_a)
    sockets = Sockets(null_log(), "t", {0: ep_a, 1: ep_b},
                      lambda n: proposer_routing_id(b"c" * 16, n), watch=True)
    try:
        decide = Decide("k", b"v", B1)
        sockets.send(0, decide)
        sockets.send(1, decide)
        assert codec.decode(router.recv_multipart()[1])[0] == decide
        watch = sockets.watch
        assert watch is not None
        _poll_until(sockets, lambda _: 1 in watch.down, "node 1's refused connection")
        t0 = time.monotonic()
        sockets.close(ANSWERED_LINGER_MS, reach_s=60.0)
        assert time.monotonic() - t0 < 30.0
    finally:
        sockets.close()
        router.close(0)
        ctx.term()
