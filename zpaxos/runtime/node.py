"""An acceptor node: one event loop that receives, decodes, runs the core, persists, sends.

One pass of the loop::

    poll (sleep until a message or a signal; no busy waiting)
    -> receive every message waiting (up to a batch limit)
    -> decode each (garbage: log, count, drop) and hand it to the pure core
    -> commit every state change of the pass in ONE transaction (group commit, fsync)
    -> only then send the pass's replies
    -> hand newly chosen values to the value-file writer (off the loop)

The node also answers status requests and, when it starts, asks its peers for decisions
it missed while it was down (sync), feeding them to the core as Decide messages.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import zmq

from zpaxos.runtime.config import ClusterConfig, NodeConfig
from zpaxos.protocol.core import Acceptor
from zpaxos.runtime.log import EventLog
from zpaxos.protocol.messages import (
    TO_ACCEPTOR,
    Decide,
    KeyStatus,
    Message,
    StatusReply,
    StatusRequest,
    SyncReply,
    SyncRequest,
)
from zpaxos.runtime.storage import MemoryStore, SqliteStore
from zpaxos.runtime.sockets import SignalWakeup, Wire, node_routing_id, open_dealer, open_router, peer_name
from zpaxos.runtime.valuefiles import ValueFiles

BATCH_MAX = 1000  # messages handled per pass before the group commit
STATUS_MAX_KEYS = 10_000  # keys in one status reply
SYNC_PAGE = 500  # chosen values in one sync reply
# Values are up to 1 MiB each: a reply stops short of this many value bytes, so it always
# fits the decoder's body limit (codec.MAX_BODY_BYTES) at the other end.
REPLY_MAX_VALUE_BYTES = 16 << 20


def _page(items: list, max_items: int, size) -> tuple[list, bool]:
    """The first items that fit both limits (always at least one), and whether more remain."""
    out, total = [], 0
    for item in items[:max_items]:
        total += size(item)
        if out and total > REPLY_MAX_VALUE_BYTES:
            break
        out.append(item)
    return out, len(out) < len(items)


@dataclass
class _Pass:
    """What one loop pass accumulated: state to commit, then replies to send."""

    persist: dict = field(default_factory=dict)
    replies: list = field(default_factory=list)  # (socket, ident or None, message, peer name)
    learned: list = field(default_factory=list)


class Node:
    def __init__(self, cluster: ClusterConfig, node_id: int, log: EventLog,
                 store: SqliteStore | MemoryStore | None = None) -> None:
        self.cfg: NodeConfig = cluster.node(node_id)
        self.cluster = cluster
        self.log = log
        # SqliteStore raises StorageError over a damaged database: the node never starts.
        self.store = store if store is not None else SqliteStore(self.cfg.data_dir)
        self.acceptor = Acceptor(self.store.load())
        self.wire = Wire(log, f"n{node_id}")
        self.ctx = zmq.Context()
        self.router: zmq.Socket | None = None
        self.peers: dict[zmq.Socket, int] = {}
        self.values = ValueFiles(self.cfg.data_dir, self.cfg.value_files, log)
        self.passes = 0
        self.commits = 0

    # ---- life cycle

    def run(self, wakeup: SignalWakeup | None = None, on_ready=None) -> None:
        """Serve until SIGINT/SIGTERM (or ``wakeup.stop_requested``)."""
        own_wakeup = wakeup is None
        if own_wakeup:
            wakeup = SignalWakeup()
            wakeup.install()
        try:
            self.router = open_router(self.ctx, self.cfg.endpoint)  # BindError if taken
            for other in self.cluster.nodes:
                if other.id != self.cfg.id:
                    ident = node_routing_id(self.cfg.id, other.id)
                    self.peers[open_dealer(self.ctx, ident, other.endpoint)] = other.id
            self.log.event("start", endpoint=self.cfg.endpoint, data_dir=str(self.cfg.data_dir),
                           keys=len(self.acceptor.states), role="node")
            self.values.rebuild((k, s.chosen) for k, s in self.acceptor.states.items()
                                if s.chosen is not None)
            self._start_sync()
            if on_ready:
                on_ready(self)
            self._loop(wakeup)
            self.log.event("stop", signal=wakeup.signal_name or None, passes=self.passes,
                           commits=self.commits, malformed=self.wire.malformed)
        finally:
            if own_wakeup:
                wakeup.close()
            self.close()

    def close(self) -> None:
        for sock in [self.router, *self.peers]:
            if sock is not None:
                sock.close()
        self.router = None
        self.peers = {}
        self.ctx.term()
        self.values.close()
        self.store.close()

    # ---- the loop

    def _loop(self, wakeup: SignalWakeup) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        for sock in self.peers:
            poller.register(sock, zmq.POLLIN)
        poller.register(wakeup.fd, zmq.POLLIN)
        while not wakeup.stop_requested:
            ready = dict(poller.poll())  # no timers: sleep until something arrives
            if wakeup.fd in ready:
                wakeup.drain()
                continue
            self.passes += 1
            p = _Pass()
            if self.router in ready:
                self._drain(self.router, p, routed=True)
            for sock in self.peers:
                if sock in ready:
                    self._drain(sock, p, routed=False)
            self._finish_pass(p)

    def _drain(self, sock: zmq.Socket, p: _Pass, routed: bool) -> None:
        for _ in range(BATCH_MAX):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            if routed:
                ident, frames = frames[0], frames[1:]
                peer = peer_name(ident)
            else:
                ident, peer = None, f"node{self.peers[sock]}"
            msg = self.wire.parse(frames, peer)
            if msg is not None:
                self._handle(sock, ident, peer, msg, p)

    def _handle(self, sock: zmq.Socket, ident: bytes | None, peer: str, msg: Message,
                p: _Pass) -> None:
        if isinstance(msg, TO_ACCEPTOR):
            self._apply(sock, ident, peer, msg, p)
        elif isinstance(msg, StatusRequest):
            p.replies.append((sock, ident, self._status(msg), peer))
        elif isinstance(msg, SyncRequest):
            p.replies.append((sock, ident, self._sync_page(msg.after), peer))
        elif isinstance(msg, SyncReply) and ident is None:
            for key, value, ballot in msg.chosen:
                self._apply(sock, None, peer, Decide(key, value, ballot), p)
            if msg.more and msg.chosen:
                p.replies.append((sock, None, SyncRequest(msg.chosen[-1][0]), peer))
        else:
            self.log.event("ignored", f"unexpected {type(msg).__name__}", logging.WARNING,
                           peer=peer)

    def _apply(self, sock: zmq.Socket, ident: bytes | None, peer: str, msg: Message,
               p: _Pass) -> None:
        step = self.acceptor.handle(ident, msg)
        for key, state in step.persist:
            p.persist[key] = state  # the latest state of a key in this pass wins
        for _dst, reply in step.send:  # the core only ever answers the sender
            p.replies.append((sock, ident, reply, peer))
        for ev in step.events:
            level = logging.ERROR if ev.name == "conflict" else logging.INFO
            self.log.event(ev.name, level=level, key=ev.key, peer=peer, **ev.fields)
            if ev.name == "learned":
                p.learned.append((ev.key, ev.fields["value"]))

    def _finish_pass(self, p: _Pass) -> None:
        if p.persist:
            t0 = time.perf_counter()
            # Persist, then send: the replies below promise or report state that must
            # survive a crash; if this commit fails, StorageError stops the node and no
            # reply leaves.
            self.store.save(p.persist.items())
            self.commits += 1
            self.log.event("persisted", keys=len(p.persist),
                           ms=round((time.perf_counter() - t0) * 1000, 3))
        for sock, ident, reply, peer in p.replies:
            self.wire.send(sock, reply, peer, ident)
        for key, value in p.learned:
            self.values.submit(key, value)

    # ---- status and sync (answered from the core's state; no protocol rule here)

    def _status(self, req: StatusRequest) -> StatusReply:
        states = self.acceptor.states
        if req.key is not None:
            items = [(req.key, self.acceptor.state(req.key))] if req.key in states else []
        else:
            items = sorted(states.items())
        page, more = _page(items, STATUS_MAX_KEYS,
                           lambda kv: len(kv[1].value or b"") + len(kv[1].chosen or b""))
        entries = tuple(KeyStatus(k, s.promised, s.accepted, s.value, s.chosen,
                                  s.chosen_ballot) for k, s in page)
        return StatusReply(self.cfg.id, entries, more)

    def _sync_page(self, after: str) -> SyncReply:
        chosen = sorted((k, s.chosen, s.chosen_ballot) for k, s in self.acceptor.states.items()
                        if s.chosen is not None and k > after)
        page, more = _page(chosen, SYNC_PAGE, lambda kv: len(kv[1]))
        return SyncReply(after, tuple(page), more)

    def _start_sync(self) -> None:
        """Ask every peer for the decisions this node may have missed while down. A peer
        that is down gets the request (queued by its DEALER) when it comes up."""
        for sock, other in self.peers.items():
            self.wire.send(sock, SyncRequest(""), f"node{other}")
