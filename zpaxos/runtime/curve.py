"""CURVE on the sockets: the ZAP handler that admits only listed keys, and the handshake
watch that tells a client at once when a node refused it.

Both run inside the owning loop's poller (no extra thread): the ZAP handler is a REP
socket on ZeroMQ's fixed ``inproc://zeromq.zap.01`` endpoint of the process's context,
asked by libzmq during every CURVE handshake on our ROUTER; the watch reads the socket
monitor of each DEALER.
"""

from __future__ import annotations

import logging
import time
from typing import TypeAlias

import msgspec
import zmq
from msgspec import field

from zpaxos.naming import node_name
from zpaxos.runtime.log import EventLog
from zpaxos.runtime.security import CLIENT_ROLE, NODE_ROLE, KeyPair, fingerprint

Sock: TypeAlias = "zmq.Socket[bytes]"


def parse_monitor_message(frames: list[bytes]) -> dict[str, int | bytes]:
    """A socket monitor's event: frame 1 holds the event (uint16) and its value (uint32),
    frame 2 the endpoint. (zmq.utils.monitor has the same, but imports asyncio: 30 ms of
    every CLI run.)"""
    first = frames[0]
    return {"event": int.from_bytes(first[:2], "little"),
            "value": int.from_bytes(first[2:6], "little"),
            "endpoint": frames[1] if len(frames) > 1 else b""}
Ctx: TypeAlias = "zmq.Context[Sock]"

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = b"zpaxos"
# Why a connection was refused, as a metric's label: a key not listed in
# authorized_clients, or a handshake that failed its protocol (plaintext against CURVE, a
# wrong server key). A connection closed mid-handshake (a health check) is no refusal:
# ZapHandler.closed counts those.
KEY_NOT_LISTED, HANDSHAKE_PROTOCOL = ("key_not_listed", "handshake_protocol")
REFUSAL_REASONS = (KEY_NOT_LISTED, HANDSHAKE_PROTOCOL)
REFUSAL_LOG_EVERY_S = 60.0  # a refused peer that keeps retrying is logged this often


class Curve(msgspec.Struct, frozen=True):
    """One process's CURVE setup: its own key pair, each node's public key (whom our
    DEALERs must reach), and for a node, who may connect: public key -> (role, name)."""

    own: KeyPair
    server_keys: dict[int, bytes]
    allowed: dict[bytes, tuple[str, str]] = field(default_factory=dict)

    @staticmethod
    def for_node(own: KeyPair, node_keys: dict[int, bytes],
                 clients: dict[bytes, str]) -> Curve:
        allowed = {k: (CLIENT_ROLE, name) for k, name in clients.items()}
        allowed.update({k: (NODE_ROLE, node_name(i)) for i, k in node_keys.items()})
        return Curve(own, node_keys, allowed)


def secure_server(sock: Sock, curve: Curve) -> None:
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.own.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, curve.own.secret)
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)  # no handler, no connection


def secure_client(sock: Sock, curve: Curve, node_id: int) -> None:
    sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_keys[node_id])
    sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.own.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, curve.own.secret)


class ZapHandler:
    """Answers libzmq's authentication requests: a listed key is admitted with its role
    as the connection's User-Id ("node:node1", "client:alice"); anything else is refused
    before any message from it reaches us, logged (throttled) and counted."""

    def __init__(self, ctx: Ctx, curve: Curve, log: EventLog) -> None:
        self.curve = curve
        self.log = log
        self.refused = 0
        self.closed = 0  # TCP connections closed mid-handshake (health checks): no refusal
        self.refused_by: dict[str, int] = {}  # the same, by reason (REFUSAL_REASONS)
        self._last_logged: dict[tuple[str, bytes], float] = {}
        self.sock: Sock = ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ZAP_ENDPOINT)

    def handle(self) -> None:
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._answer(frames)

    def _answer(self, frames: list[bytes]) -> None:
        # [version, request id, domain, address, routing id, mechanism, credentials...]
        if len(frames) < 6:
            self.sock.send_multipart([b"1.0", b"", b"500", b"bad ZAP request", b"", b""])
            return
        version, request_id, domain, address, _ident, mechanism = frames[:6]
        key = frames[6] if len(frames) > 6 else b""
        who = None
        if mechanism == b"CURVE" and domain == ZAP_DOMAIN and len(key) == 32:
            who = self.curve.allowed.get(zmq.utils.z85.encode(key))
        if who is not None:
            user = f"{who[0]}:{who[1]}".encode()
            self.sock.send_multipart([version, request_id, b"200", b"OK", user, b""])
            return
        z85 = zmq.utils.z85.encode(key) if len(key) == 32 else b""
        self.count_refusal(address.decode("ascii", "replace")[:64], z85, "key not listed",
                           KEY_NOT_LISTED)
        self.sock.send_multipart([version, request_id, b"400", b"key not authorized", b"", b""])

    def count_refusal(self, peer: str, z85: bytes, why: str, reason: str) -> None:
        """Count every refusal; log the first from a peer and key, then once a minute.
        ``reason``: one of REFUSAL_REASONS (``why`` says it for people)."""
        self.refused += 1
        self.refused_by[reason] = self.refused_by.get(reason, 0) + 1
        now = time.monotonic()
        last = self._last_logged.get((peer, z85))
        if last is None or now - last >= REFUSAL_LOG_EVERY_S:
            if len(self._last_logged) > 10_000:
                self._last_logged.clear()  # bounded memory whatever the attacker does
            self._last_logged[(peer, z85)] = now
            self.log.event("refused", f"a peer was refused: {why}", logging.WARNING,
                           address=peer, key=fingerprint(z85) if z85 else "none",
                           refused=self.refused)

    def close(self) -> None:
        self.sock.close(0)


class ServerWatch:
    """Reads the ROUTER's monitor: a peer that fails the handshake before ZAP is asked
    (plaintext against CURVE, a CURVE hello sealed for another server key) is refused too,
    and counted and logged (throttled) like a key ZAP refused.

    Only HANDSHAKE_FAILED_PROTOCOL is a refusal: libzmq reports it with the ZMTP error that
    says why. HANDSHAKE_FAILED_NO_DETAIL is a TCP connection closed before its handshake
    ended: a load balancer's health check, a port scan, a forwarder whose client went away
    (or, when the peer noticed a mismatch first, a plaintext peer). That refuses nobody, so
    it is only counted (``closed``), never logged as a refusal."""

    EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL

    def __init__(self, router: Sock, zap: ZapHandler) -> None:
        self.monitor: Sock = router.get_monitor_socket(self.EVENTS)
        self.router = router
        self.zap = zap

    def handle(self) -> None:
        while True:
            try:
                frames = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            ev = parse_monitor_message(frames)
            if int(ev["event"]) != zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                self.zap.closed += 1
                continue
            raw = ev.get("endpoint", b"")
            where = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
            self.zap.count_refusal(where[:64], b"", server_refusal(int(ev["value"])),
                                   HANDSHAKE_PROTOCOL)

    def close(self) -> None:
        try:
            self.router.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(0)


# Handshake failures a client sees on its DEALER's monitor. Two carry the node's reason,
# and after either libzmq gives up on the socket for good (no reconnect; libzmq 4.3.5):
# AUTH (ZAP refused our key: its status code) and PROTOCOL (the ZMTP error, e.g. CURVE on
# one side only). Those are refusals. A third, HANDSHAKE_FAILED_NO_DETAIL, only says the
# connection closed mid-handshake; libzmq reconnects. It is what a plain TCP forwarder
# (load balancer, SSH tunnel) shows while the node behind it is down; also what a wrong
# server key shows, and, most of the time, CURVE on one side only with a forwarder in
# between. So it is never a refusal: the node counts as down, HANDSHAKE_CLOSED the hint.
_PROTOCOL_ERRORS: dict[int, str] = {
    int(getattr(zmq, n)): n.removeprefix("PROTOCOL_ERROR_")
    for n in dir(zmq) if n.startswith("PROTOCOL_ERROR_")}
def server_refusal(code: int) -> str:
    """Why a node refused a peer's handshake, from libzmq's ZMTP error code."""
    if code == getattr(zmq, "PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH", -1):
        return "handshake failed: the peer does not use CURVE (plaintext against CURVE)"
    if code == getattr(zmq, "PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC", -1):
        return "CURVE handshake failed: the peer sealed its hello for another server key"
    return f"handshake failed ({_PROTOCOL_ERRORS.get(code, 'protocol error')})"


HANDSHAKE_CLOSED = ("handshake closed, not reachable (down behind a proxy? is CURVE "
                    "configured the same on both sides?)")
WATCHED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
           | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_SUCCEEDED
           | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_CLOSED)


def refusal(event: int, value: int, curve: bool) -> str:
    """Why a node refused us, from a failed handshake's monitor event and value."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return "refused our key" if value == 400 else f"refused our key (ZAP status {value})"
    if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if curve:
            return ("failed the security handshake: the node runs without CURVE and this "
                    "client with it ([security] curve differs)")
        return ("failed the security handshake: the node runs CURVE and this client does "
                "not (no [security] curve = true here)")
    code = _PROTOCOL_ERRORS.get(value, hex(value))
    return f"failed the {'CURVE' if curve else 'security'} handshake (protocol error {code})"


class HandshakeWatch:
    """Reads the monitor of each DEALER: which nodes refused us (and why), and which came
    back up after a disconnection (so proposals can retry at once instead of waiting out
    a timeout); a successful handshake clears a refusal. ``up``: nodes whose connection
    is up (handshake done, no disconnection since); ``down``: nodes we tried to connect
    to and could not (a refused connection, to be retried), since their last handshake;
    ``closed``: nodes whose last try was closed during the handshake (HANDSHAKE_CLOSED)."""

    def __init__(self, dealers: dict[int, Sock], curve: bool = False) -> None:
        self.curve = curve
        self.monitors: dict[Sock, int] = {}
        for node_id, sock in dealers.items():
            self.monitors[sock.get_monitor_socket(WATCHED)] = node_id
        self.refused: dict[int, str] = {}
        self.came_up: set[int] = set()  # nodes back after a disconnection, since last look
        # How many times a node came back, ever: for a second reader of ``came_up`` (a
        # watch session beside the register loop, which clears the set).
        self.comebacks = 0
        self.up: set[int] = set()
        self.down: set[int] = set()
        self.closed: set[int] = set()
        self._lost: set[int] = set()

    def add(self, node_id: int, sock: Sock) -> Sock:
        """Watch one more DEALER (a member added to the cluster); its monitor."""
        monitor: Sock = sock.get_monitor_socket(WATCHED)
        self.monitors[monitor] = node_id
        return monitor

    def handle(self, monitor: Sock) -> None:
        node_id = self.monitors[monitor]
        while True:
            try:
                frames = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            ev = parse_monitor_message(frames)
            event = int(ev["event"])
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.refused.pop(node_id, None)
                self.closed.discard(node_id)
                self.up.add(node_id)
                self.down.discard(node_id)
                if node_id in self._lost:
                    self._lost.discard(node_id)
                    self.came_up.add(node_id)
                    self.comebacks += 1
            elif event == zmq.EVENT_DISCONNECTED:
                self._lost.add(node_id)
                self.up.discard(node_id)
            elif event == zmq.EVENT_CONNECT_RETRIED:
                self.up.discard(node_id)
                self.down.add(node_id)
            elif event == zmq.EVENT_CLOSED:  # a connect that failed: nothing listens there
                self.closed.discard(node_id)
            elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                self.closed.add(node_id)
            elif event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH,
                           zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
                self.refused[node_id] = refusal(event, int(ev["value"]), self.curve)

    def close(self, dealers: dict[int, Sock]) -> None:
        for sock in dealers.values():
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
        for monitor in self.monitors:
            monitor.close(0)
        self.monitors = {}
