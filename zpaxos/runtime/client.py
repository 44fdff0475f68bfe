"""The proposer runtime and Python API: a thin loop around the pure ProposerHost.

    from zpaxos.client import Client, propose, load_config
    outcome = propose("Value_A")                       # one call, default cluster file
    with Client(load_config("configs/cluster.ini")) as c:
        outcomes = c.propose_many([("k1", b"x"), ("k2", b"y")])   # concurrently

One :class:`Client` is one proposer process's view of the cluster: a DEALER per node (the
socket layer), one loop, any number of proposals (many keys at once). Which proposal a
reply belongs to, retries, staging and outcomes are the host's business
(hosts/proposer_host.py); this loop only moves messages and time. Each proposal gets a
fresh 16-byte proposer id from ``os.urandom`` (the first one reuses the client's id, so
a CLI proposer's ballots carry its name), which keeps every ballot unique (wiretypes.py).
Values are bytes; ``Outcome.chosen_text`` gives the chosen value as text.

The fast path is on by default here (``Client(fast=True)``): a proposal for a key with a
range (``bench-1f-17``: the range ``bench-1f-``; see zpaxos/protocol/ranges.py) skips phase
1 once this client holds a quorum's range promise, kept for the client's lifetime. The lab's
``zpaxos propose`` and the scenarios turn it off, to show both phases; so does the one-call
:func:`propose` (one proposal cannot repay the range's own round trip).
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec.structs import replace

from zpaxos.hosts.proposer_host import Leases, ProposerHost
from zpaxos.hosts.proposing import Ready, Token
from zpaxos.hosts.staging import NO_STAGING, StagingOptions
from zpaxos.naming import node_name, proposer_name
from zpaxos.protocol.core import Outcome, Proposer, ProposerOptions
from zpaxos.protocol.events import GaveUp
from zpaxos.protocol.identity import IdentityProposer
from zpaxos.protocol.membership import Config
from zpaxos.protocol.messages import (
    DEFAULT_KEY,
    Ballot,
    KeyStatus,
    MembersInfo,
    StatusReply,
    StatusRequest,
    key_problem,
)
from zpaxos.protocol.registry import MAX_VALUE_BYTES, TO_PROPOSER_TYPES
from zpaxos.runtime import members as members_chain
from zpaxos.runtime.client_members import FollowsMembers
from zpaxos.runtime.config import ClusterConfig, load_config
from zpaxos.runtime.curve import HANDSHAKE_CLOSED, Curve
from zpaxos.runtime.log import EventLog, null_log
from zpaxos.runtime.loop import drive
from zpaxos.runtime.sockets import (
    ANSWERED_LINGER_MS,
    REACH_S,
    SignalWakeup,
    Sockets,
    proposer_routing_id,
)

if TYPE_CHECKING:
    from zpaxos.protocol.register import RegisterOptions, RegOp, RegResult
    from zpaxos.runtime.locks import Leadership, Lock
    from zpaxos.runtime.metrics import ClientMetrics
    from zpaxos.runtime.register_client import Registers
    from zpaxos.runtime.watch import WatchState

_TO_PROPOSER = frozenset(TO_PROPOSER_TYPES)  # (decoded messages are of these exact types)

__all__ = ["Client", "Interrupted", "NodeStatus", "Outcome", "ProposerOptions", "RegOp",
           "RegResult", "RegisterOptions", "StagingOptions", "options_from", "propose"]

_REGISTER_API = ("RegOp", "RegResult", "RegisterOptions")


def __getattr__(name: str) -> Any:
    """The register API's types, loaded when first asked for: a process that only
    proposes (``zpaxos propose``, mostly start-up) never builds the register modules."""
    if name in _REGISTER_API:
        from zpaxos.protocol import register

        return getattr(register, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def options_from(cfg: ProposerOptions, **overrides: Any) -> ProposerOptions:
    """The config's [proposer] options, with per-call overrides (None: keep)."""
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


class NodeStatus(msgspec.Struct, frozen=True):
    id: int
    endpoint: str
    reachable: bool
    keys: tuple[KeyStatus, ...] = ()
    truncated: bool = False
    stats: tuple[tuple[str, int], ...] = ()  # the node's counters (malformed, refused...)
    error: str = ""  # why it is unreachable, when known ("refused our key")
    ranges: tuple[tuple[str, Ballot], ...] = ()  # its range promises (the first 256)


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived while proposals were running."""


class Refused(Exception):
    """Too many nodes refused our connection (CURVE): no quorum can ever answer us.
    The text names each node and why, e.g. "node1 refused our key"."""


class Client(FollowsMembers):
    """A proposer process's connection to the cluster (use as a context manager)."""

    def __init__(self, cluster: ClusterConfig, log: EventLog | None = None,
                 client_id: bytes | None = None, rng: random.Random | None = None,
                 wakeup: SignalWakeup | None = None, key_file: Path | None = None,
                 fast: bool = True, metrics: ClientMetrics | None = None) -> None:
        """``key_file``: the client's CURVE key pair (default: the config's
        ``[security] client_key``); ignored without CURVE. ``fast``: skip phase 1 for fresh
        keys of a range this client holds a range promise for (see the module doc).
        ``metrics``: count proposals, failures, rounds and latency there
        (runtime/metrics.py; serve it with ``metrics.serve(host, port)``)."""
        self.fast = fast
        self.metrics = metrics
        self.key_file = key_file
        self._leases = Leases()  # range promises held, across calls
        self.cluster = cluster
        keys = cluster.security.client_keys(cluster.path, key_file)  # ConfigError if bad
        curve = None
        if keys is not None:
            curve = Curve(keys, {n.id: n.public_key for n in cluster.nodes
                                 if n.public_key is not None})
        self.id = client_id or os.urandom(16)
        self.name = proposer_name(self.id)
        self.log = log or null_log(self.name)
        self.rng = rng or random.Random(int.from_bytes(os.urandom(8), "big"))
        self.sockets = Sockets(self.log, self.id[:4].hex(),
                               {n.id: n.endpoint for n in cluster.nodes},
                               lambda node: proposer_routing_id(self.id, node), wakeup=wakeup,
                               curve=curve, watch=True)
        self.quorum = len(cluster.nodes) // 2 + 1
        # The cluster's membership configuration once a node told us (runtime/members.py);
        # None: the config file's nodes, and frames that carry no epoch.
        self.members: Config | None = None
        self._ids_used = 0
        self._closed = False
        self._warned: set[int] = set()
        self._regs: Registers | None = None
        self._spares: list[Client] = []  # siblings given back (locks' renewers)
        self._spares_mu = threading.Lock()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, reach_s: float = REACH_S) -> None:
        """Close; what is still queued (the final Decides) gets a short linger towards
        the nodes that are up: those that answered, and those whose connection is up. A
        node still connecting gets up to ``reach_s`` to finish (a busy node then still
        learns the decisions); a node known to be down gets no wait (it would otherwise
        hold the process for the whole linger)."""
        if self._closed:
            return
        self._closed = True
        with self._spares_mu:
            spares, self._spares = self._spares, []
        for spare in spares:
            spare.close(reach_s=0)
        # Log replies that arrived after their proposal ended (a quorum answered first),
        # so the log shows them received, not lost. What is still on its way is not
        # waited for.
        self.sockets.poll(0)
        self.sockets.close(ANSWERED_LINGER_MS, reach_s)

    def _new_proposer_id(self) -> bytes:
        self._ids_used += 1
        return self.id if self._ids_used == 1 else os.urandom(16)

    # ---- proposing

    def propose(self, value: bytes | str, key: str = DEFAULT_KEY,
                options: ProposerOptions | None = None,
                wakeup: SignalWakeup | None = None,
                staging: StagingOptions = NO_STAGING) -> Outcome:
        return self.propose_many([(key, value)], options, wakeup, staging)[0]

    def propose_many(self, items: Iterable[tuple[str, bytes | str]],
                     options: ProposerOptions | None = None,
                     wakeup: SignalWakeup | None = None,
                     staging: StagingOptions = NO_STAGING) -> list[Outcome]:
        """Run one proposal per (key, value), all at once; return their outcomes in order."""
        items = list(items)
        outcomes: list[Outcome | None] = [None] * len(items)
        for i, outcome, _ in self.stream(items, max(1, len(items)), options, wakeup, staging):
            outcomes[i] = outcome
        return outcomes  # type: ignore[return-value]

    def stream(self, items: Iterable[tuple[str, bytes | str]], concurrency: int,
               options: ProposerOptions | None = None, wakeup: SignalWakeup | None = None,
               staging: StagingOptions = NO_STAGING, fast: bool | None = None,
               identity: bool = False) -> Iterator[tuple[int, Outcome, float]]:
        """Run proposals with up to ``concurrency`` in flight, starting the next as one
        ends; yield ``(index, outcome, seconds it took)`` as each finishes.

        A bad key or an oversized value raises ValueError before anything is sent.
        ``fast``: the client's setting unless given. ``identity``: identity rounds
        (protocol/identity.py: the values are ignored, and nothing new is proposed)."""
        opts = options or options_from(self.cluster.proposer)
        fast = (self.fast if fast is None else fast) and not identity
        # The client's own random source: seeding one per call cost about 8 us.
        host = ProposerHost([n.id for n in self.cluster.nodes],
                            self.rng, self._new_proposer_id,
                            IdentityProposer if identity else Proposer,
                            leases=self._leases, new_lease_id=lambda: os.urandom(16))
        if self.members is not None:
            host.reconfigure(time.monotonic(), self.members)

        def moved(now: float, infos: list[MembersInfo]) -> Ready[Outcome] | None:
            cfg = self.adopt(infos)
            return host.reconfigure(now, cfg) if cfg is not None else None
        if wakeup is not None and self.sockets.wakeup is None:
            self.sockets.use_wakeup(wakeup)

        def start(now: float, token: Token, item: tuple[str, bytes | str]) -> Ready[Outcome]:
            key, value = item
            return host.start(now, token, key, _checked(key, value), opts, staging, fast)

        metrics = self.metrics
        if metrics is None:
            return drive(host, self.sockets, items, concurrency, start, _TO_PROPOSER,
                         self.report, self._stop, self._check_refusals, itertools.count(),
                         members=moved)

        def report(ready: Ready[Any]) -> None:
            metrics.saw(ready.events)  # retries and give-ups, by cause
            self.report(ready)

        return self._metered(drive(host, self.sockets, items, concurrency, start,
                                   _TO_PROPOSER, report, self._stop, self._check_refusals,
                                   itertools.count(), members=moved), host, metrics)

    @staticmethod
    def _metered(inner: Iterator[tuple[int, Outcome, float]], host: ProposerHost,
                 metrics: ClientMetrics) -> Iterator[tuple[int, Outcome, float]]:
        """``inner``, with each outcome counted; every proposal in flight when a refusal
        or a signal ends the stream is counted as ended by it."""
        try:
            for index, outcome, seconds in inner:
                metrics.finished(outcome, seconds)
                yield index, outcome, seconds
        except (Interrupted, Refused) as e:
            metrics.ended_all("refused" if isinstance(e, Refused) else "interrupted",
                              host.running)
            raise

    def report(self, ready: Ready[Any]) -> None:
        """Log a host's events: a proposal's and a register operation's alike (a GaveUp is
        a WARNING, so it shows even when INFO is off)."""
        log = self.log
        if log.enabled(logging.INFO):
            for ev in ready.events:
                level = logging.WARNING if isinstance(ev, GaveUp) else logging.INFO
                log.event(ev.name, level=level, **ev.fields(node_name))
        elif log.enabled(logging.WARNING):
            for ev in ready.events:
                if isinstance(ev, GaveUp):
                    log.event(ev.name, level=logging.WARNING, **ev.fields(node_name))

    def _stop(self) -> None:
        raise Interrupted(self.sockets.wakeup.signal_name if self.sockets.wakeup else "")

    def _check_refusals(self) -> None:
        """Fail at once, not at the deadline, when so many nodes refused us (a key ZAP
        refused, CURVE on one side only) that no quorum can answer. A handshake that was
        only closed is a node down, not a refusal (see zpaxos.runtime.curve)."""
        watch = self.sockets.watch
        if watch is None or not watch.refused:
            return
        for node_id, why in watch.refused.items():
            if node_id not in self._warned:
                self._warned.add(node_id)
                self.log.event("refused", f"{node_name(node_id)} {why}", logging.WARNING,
                               peer=node_name(node_id))
        if len(self.cluster.nodes) - len(watch.refused) < self.quorum:
            raise Refused("; ".join(f"{node_name(i)} {why}"
                                    for i, why in sorted(watch.refused.items())))

    @property
    def connected(self) -> frozenset[int]:
        """The nodes whose connection is up now: running, whether or not they answer."""
        watch = self.sockets.watch
        return frozenset(watch.up) if watch is not None else frozenset()

    # ---- registers (rewritable, linearizable; zpaxos.runtime.register_client)

    def _registers(self) -> Registers:
        if self._regs is None:
            from zpaxos.runtime.register_client import Registers

            # The client's id (so register ballots carry its name): register ballots are
            # compared only with register ballots, and this is the client's one register
            # host, so they stay unique.
            self._regs = Registers(self.sockets, [n.id for n in self.cluster.nodes],
                                   random.Random(self.rng.random()), self.id, self._stop,
                                   self._check_refusals, self.report, self)
        return self._regs

    def register_options(self, one_rtt: bool = True, **overrides: Any) -> RegisterOptions:
        """Register pacing: the config's [proposer] options with ``overrides`` (the
        registers' own options too, such as ``read_quorum_first``)."""
        from zpaxos.runtime.register_client import options_with
        return options_with(self.cluster.proposer, one_rtt, overrides)

    def registers(self, items: Iterable[tuple[str, RegOp]],
                  options: RegisterOptions | None = None,
                  concurrency: int | None = None) -> list[RegResult]:
        """Run register operations, all at once (one register's in order); results in
        order. ``RegResult.status``: "ok", "cas_failed", "no_quorum" or "unknown"."""
        return self._registers().run(items, options or self.register_options(), concurrency)

    def register_stream(self, items: Iterable[tuple[str, RegOp]], concurrency: int,
                        options: RegisterOptions | None = None,
                        ) -> Iterator[tuple[int, RegResult, float]]:
        """Like :meth:`stream`, for register operations."""
        return self._registers().stream(items, concurrency,
                                        options or self.register_options())

    def get(self, key: str, options: RegisterOptions | None = None) -> RegResult:
        """A linearizable read: the register's value (None: absent) and version."""
        from zpaxos.protocol.register import GET, RegOp

        return self.registers([(key, RegOp(GET))], options)[0]

    def set(self, key: str, value: bytes | str,
            options: RegisterOptions | None = None) -> RegResult:
        from zpaxos.protocol.register import SET, RegOp

        return self.registers([(key, RegOp(SET, _bytes(value)))], options)[0]

    def cas(self, key: str, value: bytes | str, expect_version: int | None = None,
            expect_value: bytes | str | None = None, *, expect_absent: bool = False,
            options: RegisterOptions | None = None) -> RegResult:
        """Compare-and-set: write ``value`` only if the register is at ``expect_version``
        (0: never written), or holds ``expect_value`` (``expect_absent``: holds nothing)."""
        from zpaxos.protocol.register import CAS, CAS_VALUE, RegOp

        if expect_version is not None:
            op = RegOp(CAS, _bytes(value), expect_version=expect_version)
        elif expect_value is not None or expect_absent:
            op = RegOp(CAS_VALUE, _bytes(value),
                       expect_value=None if expect_absent else _bytes(expect_value or b""))
        else:
            raise ValueError("cas needs expect_version, expect_value or expect_absent")
        return self.registers([(key, op)], options)[0]

    def delete(self, key: str, options: RegisterOptions | None = None) -> RegResult:
        """Delete (a tombstone at the next version; a later set continues from it)."""
        from zpaxos.protocol.register import DELETE, RegOp

        return self.registers([(key, RegOp(DELETE))], options)[0]

    def watch(self, key: str, from_version: int | None = None,
              options: RegisterOptions | None = None) -> Iterator[WatchState]:
        """Each new state of register ``key`` as it happens (zpaxos.runtime.watch):
        ``for state in client.watch("config"): print(state)``."""
        from zpaxos.runtime.watch import watch

        problem = key_problem(key)
        if problem:
            raise ValueError(f"invalid register name {key!r}: {problem}")
        return watch(self, key, from_version, options)

    # ---- locks and elections (zpaxos.runtime.locks; docs/locks.md)
    def lock(self, name: str, ttl: float | None = None, timeout: float | None = None) -> Lock:
        """``with client.lock("jobs", ttl=10) as token:`` (the fencing token; ``ttl``: 10 s
        unless given; ``timeout``: LockTimeout after so many seconds)."""
        from zpaxos.runtime.locks import Lock  # here: a propose never needs the lock rules
        return Lock(self, name, ttl, timeout)

    def campaign(self, name: str, candidate: str, ttl: float | None = None,
                 timeout: float | None = None) -> Leadership:
        """Block until ``candidate`` leads election ``name``; the Leadership's ``term`` is
        its fencing token, ``lost`` says when it ended; ``with`` it to resign at the end."""
        from zpaxos.runtime.locks import Leadership
        leadership = Leadership(self, name, ttl, timeout, holder=candidate)
        leadership.acquire()
        return leadership

    def leader(self, name: str) -> tuple[str, int] | None:
        """The current leader of election ``name`` and its term, or None."""
        from zpaxos.runtime.locks import leader
        return leader(self, name)

    def sibling(self) -> Client:
        """Another Client on the same cluster, with its own sockets, for another thread
        (a ZeroMQ socket belongs to one thread): one given back, else a new one."""
        with self._spares_mu:
            if self._spares:
                return self._spares.pop()
        sibling_id = os.urandom(16)  # (its events go where this client's go)
        return Client(self.cluster, EventLog(self.log.logger, proposer_name(sibling_id)),
                      client_id=sibling_id, key_file=self.key_file)

    def give_back(self, sibling: Client) -> None:
        """A sibling no thread uses any more: kept for the next, closed with this one."""
        with self._spares_mu:
            if not self._closed:
                self._spares.append(sibling)
                return
        sibling.close(reach_s=0)

    # ---- status

    def status(self, key: str | None = None, timeout_s: float = 1.0) -> list[NodeStatus]:
        """Ask every node for its state; a node that does not answer in time is unreachable."""
        for node in self.cluster.nodes:
            self.sockets.send(node.id, StatusRequest(key))
        replies: dict[int, StatusReply] = {}
        deadline = time.monotonic() + timeout_s
        refused: dict[int, str] = {}
        unreadable = self.sockets.wire.unreadable
        unreadable.clear()
        while len(replies) + len(refused) + len(unreadable.keys() - replies.keys()) < len(
                self.cluster.nodes):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for src, msg in self.sockets.poll(left):
                if isinstance(src, int) and isinstance(msg, StatusReply):
                    replies[src] = msg
            if self.sockets.watch is not None:
                refused = {i: why for i, why in self.sockets.watch.refused.items()
                           if i not in replies}
        closed = self.handshake_closed()
        out = []
        unreadable = self.sockets.wire.unreadable  # logged by the wire as "malformed"
        for n in self.cluster.nodes:
            r = replies.get(n.id)
            if r is not None:
                out.append(NodeStatus(n.id, n.endpoint, True, r.keys, r.truncated, r.stats,
                                      ranges=r.ranges))
            elif n.id in unreadable:  # it answered: reachable, but we cannot show its state
                out.append(NodeStatus(n.id, n.endpoint, True, error=f"its reply could not be "
                                      f"read ({unreadable[n.id]}); see the log"))
            else:
                why = refused.get(n.id) or (HANDSHAKE_CLOSED if n.id in closed else "")
                out.append(NodeStatus(n.id, n.endpoint, False, error=why))
        return out

    def handshake_closed(self) -> list[int]:
        """Nodes whose last connection was closed during the handshake: down behind a
        proxy, or CURVE set up differently here and there (``curve.HANDSHAKE_CLOSED``).
        Not a refusal, only a hint to give with the nodes that did not answer."""
        watch = self.sockets.watch
        return sorted(watch.closed) if watch is not None else []


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _checked(key: str, value: bytes | str) -> bytes:
    """The value as bytes, after the checks a node would make (so a bad proposal fails
    here, at once, instead of retrying until its deadline)."""
    problem = key_problem(key)
    if problem:
        raise ValueError(f"invalid key {key!r}: {problem}")
    data = value.encode() if isinstance(value, str) else bytes(value)
    if len(data) > MAX_VALUE_BYTES:
        raise ValueError(f"value of {len(data)} bytes is over the {MAX_VALUE_BYTES}-byte limit "
                         f"(1 MiB)")
    if key.startswith(members_chain.PREFIX):  # the membership chain: configurations only
        try:
            members_chain.decode(data)
        except ValueError as e:
            raise ValueError(f"key {key!r} holds the cluster's membership (zpaxos members "
                             f"changes it): {e}") from None
    return data


def propose(value: bytes | str, key: str = DEFAULT_KEY,
            config: ClusterConfig | str | os.PathLike[str] | None = None,
            log: EventLog | None = None, **options: Any) -> Outcome:
    """One call: propose ``value`` for ``key`` and return the Outcome.

    ``options`` override ProposerOptions fields (timeout_s, max_rounds, ...)."""
    cluster = config if isinstance(config, ClusterConfig) else load_config(config)
    with Client(cluster, log, fast=False) as c:
        return c.propose(value, key, options_from(cluster.proposer, **options))
