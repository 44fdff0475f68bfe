"""ZeroMQ plumbing: sockets, routing ids, the poll loop's receive and send (the framing
and its logging are the :class:`~zpaxos.runtime.wire.Wire`'s).

Each node binds one ROUTER; each proposer (and each node, to reach its peers) opens one
DEALER per remote node with an explicit routing id, so replies can be told apart and a
restarted process never inherits a dead one's replies.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeAlias

import zmq

from zpaxos.hosts.addresses import Caller, Src
from zpaxos.naming import node_name
from zpaxos.naming import proposer_name as proposer_name
from zpaxos.protocol.messages import Message
from zpaxos.runtime import codec
from zpaxos.runtime.curve import (
    Curve,
    HandshakeWatch,
    ServerWatch,
    ZapHandler,
    secure_client,
    secure_server,
)
from zpaxos.runtime.log import EventLog
from zpaxos.runtime.security import NODE_ROLE
from zpaxos.runtime.wire import Sock, Wire
from zpaxos.runtime.wire import peer_name as peer_name

Ctx: TypeAlias = "zmq.Context[Sock]"

ROUTER_LINGER_MS = 200  # replies already queued get this long to leave at shutdown
ANSWERED_LINGER_MS = 500  # a proposer's final Decides to nodes that answered it
# How long a closing proposer waits for a node it has sent to, but that has neither
# answered, nor finished its handshake, nor refused the connection: a node that is up
# but slow to take the connection (busy, or just started) then still gets what was
# queued for it, the final Decides included. A node known to be down costs no wait.
REACH_S = 0.2


# pyzmq's constants are enum members, and an enum's ``&`` or conversion is a Python call:
# the hot paths below use them as plain ints.
_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


class BindError(Exception):
    """The node cannot listen where its config says (the user's environment's fault).
    ``in_use``: the port is taken; otherwise the address is not this machine's (or not
    one it can listen on). ``node_address``: the address is the node's own (host or
    bind), so the command may say which config key to change; the metrics server's
    errors name their own keys."""

    def __init__(self, message: str, in_use: bool = False, node_address: bool = True) -> None:
        super().__init__(message)
        self.in_use = in_use
        self.node_address = node_address


def proposer_routing_id(client_id: bytes, node_id: int) -> bytes:
    return f"p:{client_id[:8].hex()}:{node_id}".encode()


def node_routing_id(node_id: int, peer_id: int) -> bytes:
    return f"n:{node_id}:{peer_id}:{os.urandom(4).hex()}".encode()


BATCH_MAX = 1000  # frames taken from one socket per pass ...
BATCH_MAX_MESSAGES = 10_000  # ... and messages (a frame holds up to codec.MAX_BATCH)
# Frames queued towards (and from) one peer before sends to it fail (EAGAIN, logged as
# undeliverable): what a peer that never reads can make us hold is this many frames of at
# most codec.MAX_FRAME_BYTES (about 1 GiB), however many messages it asks about.
SNDHWM = 256


def _harden(sock: Sock) -> None:
    # A peer that sends a frame larger than any valid message is cut off by libzmq
    # before this process allocates it; IPv6 endpoints work (IPv4 ones still do).
    sock.setsockopt(zmq.MAXMSGSIZE, codec.MAX_FRAME_BYTES)
    sock.setsockopt(zmq.IPV6, 1)
    sock.setsockopt(zmq.SNDHWM, SNDHWM)
    sock.setsockopt(zmq.RCVHWM, SNDHWM)


def open_router(ctx: Ctx, endpoint: str, curve: Curve | None = None) -> Sock:
    sock: Sock = ctx.socket(zmq.ROUTER)
    if curve is not None:
        secure_server(sock, curve)
    # Without this a reply to a departed proposer vanishes silently; with it we log it.
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.LINGER, ROUTER_LINGER_MS)
    _harden(sock)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as e:
        sock.close(0)
        if e.errno == zmq.EADDRINUSE:
            raise BindError(f"cannot listen on {endpoint}: address already in use "
                            f"(is this node already running?)", in_use=True) from None
        # zmq.strerror: the reason alone (pyzmq adds the endpoint to e.strerror)
        raise BindError(f"cannot listen on {endpoint}: {zmq.strerror(e.errno or 0)}") from None
    return sock


def open_dealer(ctx: Ctx, routing_id: bytes, endpoint: str | None, curve: Curve | None = None,
                node_id: int = 0) -> Sock:
    """A DEALER to ``endpoint`` (None: not connected yet; the caller connects it)."""
    sock: Sock = ctx.socket(zmq.DEALER)
    if curve is not None:
        secure_client(sock, curve, node_id)
    sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.setsockopt(zmq.LINGER, 0)  # raised at close only towards nodes that answered
    _harden(sock)
    if endpoint is not None:
        sock.connect(endpoint)
    return sock


class Sockets:
    """One process's sockets, poller and frames: the only place that touches ZeroMQ.

    A node binds a ROUTER (``bind``) and, like a proposer, opens one DEALER per remote
    node in ``nodes`` (id -> endpoint) with an explicit routing id. ``poll`` returns
    decoded messages with their source (:mod:`zpaxos.hosts.addresses`): a node id for
    what came back on our DEALER to that node, a :class:`Caller` for what reached our
    ROUTER. ``send`` takes the same kind of address. Garbage is logged, counted and
    dropped by the :class:`Wire`.
    """

    def __init__(self, log: EventLog, prefix: str, nodes: dict[int, str],
                 routing_id: Callable[[int], bytes], bind: str | None = None,
                 wakeup: SignalWakeup | None = None, curve: Curve | None = None,
                 watch: bool = False) -> None:
        """``curve``: CURVE on every socket (and, with ``bind``, a ZAP handler admitting
        only its listed keys); ``watch``: read the DEALERs' handshakes (``watch.refused``
        says which nodes refused us, ``watch.came_up`` which came (back) up)."""
        self.wire = Wire(log, prefix)
        self.endpoints = dict(nodes)
        self._routing_id = routing_id
        self.ctx: Ctx = zmq.Context()
        self.router: Sock | None = None
        self.dealers: dict[int, Sock] = {}
        self.answered: set[int] = set()  # nodes that ever replied to us
        self.sent: set[int] = set()  # nodes we ever queued a message for
        self.wakeup = wakeup
        self.curve = curve
        self.zap: ZapHandler | None = None
        self.server_watch: ServerWatch | None = None
        self.watch: HandshakeWatch | None = None
        try:
            if bind is not None:
                if curve is not None:
                    # The handler must exist before the ROUTER can take a connection.
                    self.zap = ZapHandler(self.ctx, curve, log)
                self.router = open_router(self.ctx, bind, curve)  # BindError if taken
                if self.zap is not None:
                    self.server_watch = ServerWatch(self.router, self.zap)
            for node_id in nodes:
                self.dealers[node_id] = open_dealer(self.ctx, routing_id(node_id), None,
                                                    curve, node_id)
            if watch:  # before connecting: no handshake happens unseen
                self.watch = HandshakeWatch(self.dealers, curve is not None)
            for node_id, endpoint in nodes.items():
                self.dealers[node_id].connect(endpoint)
        except BaseException:
            self.close()
            raise
        # What each pollable item is: a DEALER's node id, None for the ROUTER, or the
        # handler of a control socket. Control items are registered first, so a pass
        # reads signals, handshakes and refusals before the messages that follow them.
        self._what: dict[Any, int | Callable[[], None] | None] = {}
        self.poller = zmq.Poller()
        if wakeup is not None:
            self._watch_item(wakeup.fd, self._on_wakeup)
        if self.zap is not None:
            self._watch_item(self.zap.sock, self.zap.handle)
        if self.server_watch is not None:
            self._watch_item(self.server_watch.monitor, self.server_watch.handle)
        if self.watch is not None:
            # A monitor is watched through its file descriptor, not as a ZeroMQ socket:
            # zmq_poll asks every ZeroMQ socket for its events twice per call (two
            # syscalls each), and a client has as many monitors as nodes. The fd signals
            # when a monitor's queue goes from empty to not (its "edge"); handle() always
            # reads it until empty, so no event is left behind unsignalled. The first
            # read is here, for what came before the fd was watched.
            for monitor in self.watch.monitors:
                self.watch.handle(monitor)
                self._watch_item(monitor.getsockopt(zmq.FD),
                                 partial(self.watch.handle, monitor))
        if self.router is not None:
            self._watch_item(self.router, None)
        for node_id, sock in self.dealers.items():
            self._watch_item(sock, node_id)

    def add_node(self, node_id: int, endpoint: str, public_key: bytes | None = None) -> bool:
        """Reach node ``node_id`` at ``endpoint`` from now on (a member the cluster's
        configuration added, or moved: the old DEALER to it is closed). With CURVE its
        key is the one its server must show, and (on a node) a peer admitted by ZAP.
        False when nothing changed."""
        if self.endpoints.get(node_id) == endpoint:
            return False
        if self.curve is not None and public_key is not None:
            self.curve.server_keys[node_id] = public_key
            if self.router is not None:
                self.curve.allowed[public_key] = (NODE_ROLE, node_name(node_id))
        old = self.dealers.pop(node_id, None)
        if old is not None:
            self.poller.unregister(old)
            self._what.pop(old, None)
            old.close(0)
        sock = open_dealer(self.ctx, self._routing_id(node_id), None, self.curve, node_id)
        self.dealers[node_id] = sock
        if self.watch is not None:
            monitor = self.watch.add(node_id, sock)
            self.watch.handle(monitor)
            self._watch_item(monitor.getsockopt(zmq.FD), partial(self.watch.handle, monitor))
        sock.connect(endpoint)
        self.endpoints[node_id] = endpoint
        self._watch_item(sock, node_id)
        return True

    def _watch_item(self, item: Any, what: int | Callable[[], None] | None) -> None:
        self._what[item] = what
        self.poller.register(item, zmq.POLLIN)

    def _on_wakeup(self) -> None:
        if self.wakeup is not None:
            self.wakeup.drain()

    def use_wakeup(self, wakeup: SignalWakeup) -> None:
        """Wake ``poll`` when a signal arrives (a client given one after it was opened)."""
        self.wakeup = wakeup
        self._watch_item(wakeup.fd, self._on_wakeup)

    @property
    def stop_requested(self) -> bool:
        return self.wakeup is not None and self.wakeup.stop_requested

    def poll(self, timeout_s: float | None) -> list[tuple[Src, Message]]:
        """Wait up to ``timeout_s`` (None: until something arrives) and return every
        message waiting, up to BATCH_MAX per socket."""
        timeout = -1 if timeout_s is None else int(max(0.0, timeout_s) * 1000 + 0.999)
        out: list[tuple[Src, Message]] = []
        what = self._what
        for item, _ in zmq.zmq_poll(self.poller.sockets, timeout):
            w = what.get(item)
            if w is None:
                if self.router is not None and item is self.router:
                    self._drain(self.router, None, out)
            elif type(w) is int:
                sock = self.dealers.get(w)
                if sock is not None and sock is item:
                    self._drain(sock, w, out)
            else:
                w()  # type: ignore[operator]
        return out

    def _drain(self, sock: Sock, node_id: int | None,
               out: list[tuple[Src, Message]]) -> None:
        """Take what ``sock`` holds (poll said it holds something). Whether more is
        waiting is asked of the socket (ZMQ_EVENTS) rather than learnt from the
        ``zmq.Again`` of a recv on an empty socket: pyzmq builds two exception objects
        for each, one per drain, which cost more than the question."""
        wire = self.wire
        router = node_id is None
        authenticated = router and self.curve is not None
        recv = sock.recv
        more_waiting = sock.getsockopt
        taken = 0
        for _ in range(BATCH_MAX):
            try:
                # Not copied: the decoder reads the batch from libzmq's own buffer.
                part = recv(_NOBLOCK, copy=False)
                parts = [part]
                while part.more:  # every part is taken, even of a malformed message
                    part = recv(_NOBLOCK, copy=False)
                    parts.append(part)
            except zmq.Again:
                return
            user = str(part.get("User-Id") or "") if authenticated else ""
            src: Src
            if router:
                src, parts = Caller(parts[0].bytes, user), parts[1:]
                msgs = wire.parse([p.buffer for p in parts], src)
                if wire.last_epoch:  # the frame's epoch, for admission's one check
                    src = Caller(src.ident, user, wire.last_epoch)
            else:
                self.answered.add(node_id)  # type: ignore[arg-type]
                src = node_id  # type: ignore[assignment]
                msgs = wire.parse([p.buffer for p in parts], src)
            if msgs:
                taken += len(msgs)
                out.extend([(src, m) for m in msgs])
                if taken >= BATCH_MAX_MESSAGES:
                    return
            if not int(more_waiting(_EVENTS)) & _POLLIN:
                return

    def send(self, dst: Src, msg: Message) -> bool:
        return self.send_batch(dst, [msg])

    def send_batch(self, dst: Src, msgs: Sequence[Message]) -> bool:
        """Send ``msgs`` to ``dst`` in one frame (more only past the body limit)."""
        if isinstance(dst, Caller):
            assert self.router is not None, "a Caller can only be answered through a ROUTER"
            return self.wire.send(self.router, msgs, dst, dst.ident)
        self.sent.add(dst)
        return self.wire.send(self.dealers[dst], msgs, dst)

    def send_all(self, sends: Iterable[tuple[Src, Message]]) -> None:
        """Send a pass's messages: one batch per destination, each in the pass's order."""
        for dst, msgs in grouped(sends).items():
            self.send_batch(dst, msgs)

    def _reach(self, reach_s: float) -> None:
        """Wait, up to ``reach_s``, until no node we sent to is still connecting. What
        arrives meanwhile is read (and logged) like any late reply, and dropped."""
        watch = self.watch
        assert watch is not None
        deadline = time.monotonic() + reach_s
        # Nodes we queued messages for that neither answered, nor are up, nor are known
        # to be down or to refuse us: their connection is still being made.
        while self.sent - self.answered - watch.up - watch.down - watch.refused.keys():
            left = deadline - time.monotonic()
            if left <= 0 or self.stop_requested:
                return
            self.poll(min(left, 0.05))

    def close(self, linger_ms: int = 0, reach_s: float = 0.0) -> None:
        """Close every socket. ``linger_ms``: how long queued messages to nodes that are
        up (they answered us, or their connection is up) may still take to leave; a node
        that is down would otherwise hold the process for the whole linger. ``reach_s``
        (with ``watch``): first wait up to this long for the nodes we sent to whose
        connection is still being made, until each is up or known to be down."""
        reachable = set(self.answered)
        if self.watch is not None:
            if reach_s > 0:
                self._reach(reach_s)
            reachable |= self.watch.up
            self.watch.close(self.dealers)
            self.watch = None
        for node_id, sock in self.dealers.items():
            sock.close(linger=linger_ms if node_id in reachable else 0)
        self.dealers = {}
        if self.server_watch is not None:
            self.server_watch.close()
            self.server_watch = None
        if self.router is not None:
            self.router.close()
            self.router = None
        if self.zap is not None:
            self.zap.close()
            self.zap = None
        self.ctx.term()


def grouped(sends: Iterable[tuple[Src, Message]]) -> dict[Src, list[Message]]:
    """A pass's sends by destination, each destination's in the order they were made."""
    out: dict[Src, list[Message]] = {}
    for dst, msg in sends:
        box = out.get(dst)
        if box is None:
            out[dst] = [msg]
        else:
            box.append(msg)
    return out


class SignalWakeup:
    """Turns SIGINT/SIGTERM into a readable fd for the poller, so the loop wakes at once
    instead of polling a flag on a timer. The fd is a pipe's (non-blocking both ends, as
    ``signal.set_wakeup_fd`` asks), not a socket pair's: the :mod:`socket` module is about
    1 ms of a short-lived ``zpaxos propose``'s imports."""

    def __init__(self) -> None:
        self.stop_requested = False
        self.signal_name = ""
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        # request_stop may come from another thread while close runs: a write to a
        # closed descriptor number could land in a file opened since under that number.
        self._fds = threading.Lock()
        self._old: dict[int, Any] = {}
        self._old_fd = -1

    @property
    def fd(self) -> int:
        return self._r

    def install(self, on_signal: Callable[[int], None] | None = None) -> None:
        def handler(signum: int, _frame: Any) -> None:
            self.stop_requested = True
            self.signal_name = signal.Signals(signum).name
            if on_signal:
                on_signal(signum)

        self._old_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, handler)

    def request_stop(self) -> None:
        """Stop from another thread (tests, embedding), as a signal would."""
        self.stop_requested = True
        with self._fds:
            if self._w < 0:
                return  # closed
            try:
                os.write(self._w, b"\0")
            except OSError:  # full: a wake-up is pending anyway
                pass

    def drain(self) -> None:
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        if self._old:
            signal.set_wakeup_fd(self._old_fd)
        with self._fds:
            for fd in (self._r, self._w):
                if fd >= 0:
                    os.close(fd)
            self._r = self._w = -1
