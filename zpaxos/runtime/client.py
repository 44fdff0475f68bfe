"""The proposer runtime and Python API: drives pure Proposer cores over DEALER sockets.

    from zpaxos.runtime.client import Client, propose
    outcome = propose("Value_A")                       # one call, default cluster file
    with Client(load_config("configs/cluster.ini")) as c:
        outcomes = c.propose_many([("k1", b"x"), ("k2", b"y")])   # concurrently

One :class:`Client` is one proposer process's view of the cluster: a DEALER per node, one
event loop, any number of proposals (many keys at once). Each proposal gets a fresh
16-byte proposer id from ``os.urandom`` (the first one reuses the client's id, so a CLI
proposer's ballots carry its name), which keeps every ballot unique (see messages.py).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

import zmq

from zpaxos.runtime.config import ClusterConfig, ProposerConfig, load_config
from zpaxos.protocol.core import Outcome, Proposer, ProposerOptions, Step
from zpaxos.runtime.log import EventLog, null_log
from zpaxos.protocol.messages import (
    DEFAULT_KEY,
    TO_PROPOSER,
    KeyStatus,
    StatusReply,
    StatusRequest,
    key_problem,
)
from zpaxos.runtime.sockets import (
    ANSWERED_LINGER_MS,
    SignalWakeup,
    Wire,
    open_dealer,
    proposer_name,
    proposer_routing_id,
)


def options_from(cfg: ProposerConfig, **overrides) -> ProposerOptions:
    """ProposerOptions from the config's [proposer] section, with per-call overrides."""
    opts = ProposerOptions(round_timeout_s=cfg.round_timeout_s, timeout_s=cfg.timeout_s,
                           max_rounds=cfg.max_rounds, backoff_s=cfg.backoff_s,
                           backoff_max_s=cfg.backoff_max_s)
    return replace(opts, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True, slots=True)
class NodeStatus:
    id: int
    endpoint: str
    reachable: bool
    keys: tuple[KeyStatus, ...] = ()
    truncated: bool = False


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived while proposals were running."""


class Client:
    """A proposer process's connection to the cluster (use as a context manager)."""

    def __init__(self, cluster: ClusterConfig, log: EventLog | None = None,
                 client_id: bytes | None = None, rng: random.Random | None = None) -> None:
        self.cluster = cluster
        self.id = client_id or os.urandom(16)
        self.name = proposer_name(self.id)
        self.log = log or null_log(self.name)
        self.rng = rng or random.Random(int.from_bytes(os.urandom(8), "big"))
        self.wire = Wire(self.log, self.id[:4].hex())
        self.ctx = zmq.Context()
        self.socks = {n.id: open_dealer(self.ctx, proposer_routing_id(self.id, n.id), n.endpoint)
                      for n in cluster.nodes}
        self._node_of = {s: i for i, s in self.socks.items()}
        self._answered: set[int] = set()
        self._ids_used = 0
        self._closed = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close; final Decides get a short linger, but only towards nodes that answered
        (a node that is down would otherwise hold the process for the whole linger)."""
        if self._closed:
            return
        self._closed = True
        for node_id, sock in self.socks.items():
            self._drain_unread(sock, node_id)
            sock.close(linger=ANSWERED_LINGER_MS if node_id in self._answered else 0)
        self.ctx.term()

    def _drain_unread(self, sock: zmq.Socket, node_id: int) -> None:
        """Log replies that arrived after their proposal ended (a quorum answered first),
        so the log shows them received, not lost. Whatever is still on its way is not
        waited for."""
        self._drain(sock, node_id, {}, time.monotonic())

    def _new_proposer_id(self) -> bytes:
        self._ids_used += 1
        return self.id if self._ids_used == 1 else os.urandom(16)

    # ---- proposing

    def propose(self, value: bytes | str, key: str = DEFAULT_KEY,
                options: ProposerOptions | None = None,
                wakeup: SignalWakeup | None = None) -> Outcome:
        return self.propose_many([(key, value)], options, wakeup)[0]

    def propose_many(self, items: Iterable[tuple[str, bytes | str]],
                     options: ProposerOptions | None = None,
                     wakeup: SignalWakeup | None = None) -> list[Outcome]:
        """Run one proposal per (key, value), all at once; return their outcomes in order."""
        items = list(items)
        outcomes: list[Outcome | None] = [None] * len(items)
        for i, outcome, _ in self.stream(items, max(1, len(items)), options, wakeup):
            outcomes[i] = outcome
        return outcomes  # type: ignore[return-value]

    def stream(self, items: Iterable[tuple[str, bytes | str]], concurrency: int,
               options: ProposerOptions | None = None, wakeup: SignalWakeup | None = None,
               ) -> Iterator[tuple[int, Outcome, float]]:
        """Run proposals with up to ``concurrency`` in flight, starting the next as one
        ends; yield ``(index, outcome, seconds it took)`` as each finishes."""
        opts = options or options_from(self.cluster.proposer)
        pending = iter(enumerate(items))
        active: dict[Proposer, tuple[int, float]] = {}
        by_key: dict[str, list[Proposer]] = {}
        poller = zmq.Poller()
        for sock in self.socks.values():
            poller.register(sock, zmq.POLLIN)
        if wakeup is not None:
            poller.register(wakeup.fd, zmq.POLLIN)
        while True:
            while len(active) < concurrency:  # top up
                nxt = next(pending, None)
                if nxt is None:
                    break
                index, (key, value) = nxt
                p = self._new_proposer(key, value, opts)
                now = time.monotonic()
                active[p] = (index, now)
                by_key.setdefault(key, []).append(p)
                self._do(p.start(now))
            if not active:
                return  # nothing in flight and nothing left to start
            now = time.monotonic()
            for p in list(active):
                wake = p.next_wakeup
                if wake is not None and wake <= now:
                    self._do(p.tick(now))
            for p in [p for p in active if p.done]:
                index, started = active.pop(p)
                by_key[p.key].remove(p)
                if not by_key[p.key]:
                    del by_key[p.key]
                yield index, p.outcome, time.monotonic() - started  # type: ignore[misc]
            if not active:
                continue  # start the next ones, or return
            next_wake = min(p.next_wakeup for p in active)  # type: ignore[type-var]
            ready = dict(poller.poll(max(0.0, (next_wake - time.monotonic()) * 1000)))
            if wakeup is not None and wakeup.fd in ready:
                wakeup.drain()
                if wakeup.stop_requested:
                    raise Interrupted(wakeup.signal_name)
            now = time.monotonic()
            for sock, node_id in self._node_of.items():
                if sock in ready:
                    self._drain(sock, node_id, by_key, now)

    def _new_proposer(self, key: str, value: bytes | str, opts: ProposerOptions) -> Proposer:
        problem = key_problem(key)
        if problem:
            raise ValueError(f"invalid key {key!r}: {problem}")
        data = value.encode() if isinstance(value, str) else bytes(value)
        return Proposer(key, data, self._new_proposer_id(), list(self.socks), opts,
                        random.Random(self.rng.random()))

    def _drain(self, sock: zmq.Socket, node_id: int, by_key: Mapping[str, list[Proposer]],
               now: float) -> None:
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._answered.add(node_id)
            msg = self.wire.parse(frames, f"node{node_id}")
            if not isinstance(msg, TO_PROPOSER):
                continue  # garbage (already logged) or not meant for a proposer
            for p in by_key.get(msg.key, ()):
                self._do(p.receive(now, node_id, msg))

    def _do(self, step: Step) -> None:
        # Proposers persist nothing: a restarted proposer is a new proposer with a new id.
        for ev in step.events:  # first: a round starts before its Prepares leave
            level = logging.WARNING if ev.name == "gave_up" else logging.INFO
            self.log.event(ev.name, level=level, key=ev.key, **ev.fields)
        for node_id, msg in step.send:
            self.wire.send(self.socks[node_id], msg, f"node{node_id}")

    # ---- status

    def status(self, key: str | None = None, timeout_s: float = 1.0) -> list[NodeStatus]:
        """Ask every node for its state; a node that does not answer in time is unreachable."""
        for node_id, sock in self.socks.items():
            self.wire.send(sock, StatusRequest(key), f"node{node_id}")
        replies: dict[int, StatusReply] = {}
        poller = zmq.Poller()
        for sock in self.socks.values():
            poller.register(sock, zmq.POLLIN)
        deadline = time.monotonic() + timeout_s
        while len(replies) < len(self.socks):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for sock, _ in poller.poll(left * 1000):
                node_id = self._node_of[sock]
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    continue
                msg = self.wire.parse(frames, f"node{node_id}")
                if isinstance(msg, StatusReply):
                    replies[node_id] = msg
        return [NodeStatus(n.id, n.endpoint, n.id in replies,
                           replies[n.id].keys if n.id in replies else (),
                           replies[n.id].truncated if n.id in replies else False)
                for n in self.cluster.nodes]


def propose(value: bytes | str, key: str = DEFAULT_KEY,
            config: ClusterConfig | str | os.PathLike[str] | None = None,
            log: EventLog | None = None, **options) -> Outcome:
    """One call: propose ``value`` for ``key`` and return the Outcome.

    ``options`` override ProposerOptions fields (timeout_s, max_rounds, ...)."""
    cluster = config if isinstance(config, ClusterConfig) else load_config(config)
    with Client(cluster, log) as c:
        return c.propose(value, key, options_from(cluster.proposer, **options))
