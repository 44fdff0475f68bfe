"""ZeroMQ plumbing: sockets, routing ids, framed send/receive with logging.

Each node binds one ROUTER; each proposer (and each node, to reach its peers) opens one
DEALER per remote node with an explicit routing id, so replies can be told apart and a
restarted process never inherits a dead one's replies.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

import zmq

from zpaxos.runtime import codec
from zpaxos.runtime.log import EventLog, message_fields
from zpaxos.protocol.messages import Message, StatusReply, StatusRequest, SyncReply, SyncRequest

RUNTIME_MESSAGES = (StatusRequest, StatusReply, SyncRequest, SyncReply)

ROUTER_LINGER_MS = 200  # replies already queued get this long to leave at shutdown
ANSWERED_LINGER_MS = 500  # a proposer's final Decides to nodes that answered it


class BindError(Exception):
    """The node cannot listen where its config says (the user's environment's fault)."""


def proposer_routing_id(client_id: bytes, node_id: int) -> bytes:
    return f"p:{client_id[:8].hex()}:{node_id}".encode()


def node_routing_id(node_id: int, peer_id: int) -> bytes:
    return f"n:{node_id}:{peer_id}:{os.urandom(4).hex()}".encode()


def proposer_name(client_id: bytes) -> str:
    """How a proposer process is named in logs and charts: 'proposer 3f2a'."""
    return f"proposer {client_id[:2].hex()}"


def peer_name(ident: bytes) -> str:
    """A readable name for whoever holds routing id ``ident`` (a stranger shows as hex)."""
    try:
        kind, who, *_ = ident.decode("ascii").split(":")
        if kind == "p" and len(who) == 16:
            return f"proposer {who[:4]}"
        if kind == "n" and who.isdigit():
            return f"node{who}"
    except (UnicodeDecodeError, ValueError):
        pass
    return f"unknown {ident[:16].hex()}"


def open_router(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    sock = ctx.socket(zmq.ROUTER)
    # Without this a reply to a departed proposer vanishes silently; with it we log it.
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.LINGER, ROUTER_LINGER_MS)
    # A peer that sends a frame larger than any valid message is cut off by libzmq before
    # the node allocates it.
    sock.setsockopt(zmq.MAXMSGSIZE, codec.MAX_BODY_BYTES + 4096)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as e:
        sock.close(0)
        if e.errno == zmq.EADDRINUSE:
            raise BindError(f"cannot listen on {endpoint}: address already in use "
                            f"(is this node already running?)") from None
        raise BindError(f"cannot listen on {endpoint}: {e.strerror}") from None
    return sock


def open_dealer(ctx: zmq.Context, routing_id: bytes, endpoint: str) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.setsockopt(zmq.LINGER, 0)  # raised at close only towards nodes that answered
    sock.connect(endpoint)
    return sock


class Wire:
    """Encodes, sends and logs messages for one process; decodes and logs what arrives.

    ``prefix`` makes message ids unique per sender ("n0:17", "3f2a9c01:3").
    """

    def __init__(self, log: EventLog, prefix: str) -> None:
        self.log = log
        self.prefix = prefix
        self.sent = 0
        self.malformed = 0
        self.undeliverable = 0

    def send(self, sock: zmq.Socket, msg: Message, peer: str, ident: bytes | None = None) -> bool:
        """Send without blocking; a message that cannot leave is logged, never hangs us.

        The send is logged just before the message leaves, so in the log every send comes
        before its receive; one that then fails is logged again as undeliverable.
        """
        self.sent += 1
        msg_id = f"{self.prefix}:{self.sent}"
        frames = codec.encode(msg, msg_id.encode())
        if ident is not None:
            frames.insert(0, ident)
        level = _level(msg)
        if self.log.enabled(level):
            self.log.event("send", level=level, type=codec.type_name(msg), msg_id=msg_id,
                           peer=peer, **message_fields(msg))
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as e:
            self.undeliverable += 1
            why = ("peer has gone away" if e.errno == zmq.EHOSTUNREACH else
                   "send queue full" if e.errno == zmq.EAGAIN else e.strerror)
            self.log.event("undeliverable", why, logging.WARNING, type=codec.type_name(msg),
                           msg_id=msg_id, peer=peer, **message_fields(msg))
            return False
        return True

    def parse(self, frames: list[bytes], peer: str) -> Message | None:
        """Decode; garbage is the peer's fault: log it, count it, drop it."""
        try:
            msg, msg_id = codec.decode(frames)
        except codec.DecodeError as e:
            self.malformed += 1
            self.log.event("malformed", str(e), logging.WARNING, peer=peer,
                           dropped=self.malformed)
            return None
        level = _level(msg)
        if self.log.enabled(level):
            self.log.event("recv", level=level, type=codec.type_name(msg),
                           msg_id=msg_id.decode(), peer=peer, **message_fields(msg))
        return msg


def _level(msg: Message) -> int:
    """Paxos messages are the story of a run (INFO); status and sync are plumbing (DEBUG)."""
    return logging.DEBUG if isinstance(msg, RUNTIME_MESSAGES) else logging.INFO


class SignalWakeup:
    """Turns SIGINT/SIGTERM into a readable fd for the poller, so the loop wakes at once
    instead of polling a flag on a timer."""

    def __init__(self) -> None:
        self.stop_requested = False
        self.signal_name = ""
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._old: dict[int, Any] = {}
        self._old_fd = -1

    @property
    def fd(self) -> int:
        return self._r.fileno()

    def install(self, on_signal: Callable[[int], None] | None = None) -> None:
        def handler(signum: int, _frame: Any) -> None:
            self.stop_requested = True
            self.signal_name = signal.Signals(signum).name
            if on_signal:
                on_signal(signum)

        self._old_fd = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, handler)

    def request_stop(self) -> None:
        """Stop from another thread (tests, embedding), as a signal would."""
        self.stop_requested = True
        try:
            self._w.send(b"\0")
        except OSError:
            pass

    def drain(self) -> None:
        try:
            while self._r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        if self._old:
            signal.set_wakeup_fd(self._old_fd)
        self._r.close()
        self._w.close()
