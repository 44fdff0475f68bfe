"""The proposer host: many proposals in one process, pure (no sockets, no clock).

Like etcd's ``RawNode``, the host is driven from outside and answers with a
:class:`Ready`: the messages to send, the events to report and the proposals that
finished. The client's loop (:mod:`zpaxos.runtime.client`) feeds it what the sockets
received and the time; the simulator (zpaxos/sim/simulator.py) feeds it virtual time and its
own network. So the code that routes replies to proposals runs under the simulator too.

Routing: a reply names its key; it goes to every running proposal of that key (each
proposal ignores replies to ballots that are not its own). Proposals get a fresh
proposer id each from ``new_id``, which keeps every ballot unique (wiretypes.py).

The fast path (``start(..., fast=True)``, zpaxos/protocol/ranges.py): a proposal whose key
has a range (:func:`range_prefix`) takes a :class:`Lease` on it, one RangePrepare for the
whole range, shared by every later proposal of the range in this process (``leases``
outlives the host: the client keeps it across calls). While the lease is pending its
proposals wait (at most a round timeout); once a quorum granted it, each fresh key of the
range starts in phase 2 at the lease's ballot. A busy key, a key already taken, a refused
or failed lease, and any Nack of a lease's Accept (which also drops the lease, renewed by
the next proposal at a higher ballot) mean two phases. Staged proposals never go fast.

Contention: a lease that was held and is then lost was taken by another proposer process
working the same range. Renewing at once takes it back, which makes the other renew, and
the two then spend their time refusing each other's Accepts (3 processes on 200 fresh keys:
3.9 s, against 0.6 s with two phases). So a range lost after it was held cools down: its
proposals run two phases for a randomized while (``COOL_MIN_S``, doubling up to
``COOL_MAX_S`` each time it is lost again soon after being held; a lease held for
``COOL_RESET`` times its cool-down starts again from the minimum). Two phases are always
safe; this only decides when to try the range again.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable, Sequence

from msgspec.structs import replace

from zpaxos.hosts.proposing import Ready as _Ready
from zpaxos.hosts.proposing import Token, Wakeups
from zpaxos.hosts.staging import NO_STAGING, Staged, StagingOptions
from zpaxos.protocol.columns import rows
from zpaxos.protocol.core import (
    Outcome,
    Proposer,
    ProposerOptions,
    Quorums,
    Step,
    quorum_size,
)
from zpaxos.protocol.messages import (
    COLUMN_TYPES,
    Accepted,
    Accepteds,
    Ballot,
    ColumnMessage,
    Nack,
    Promise,
    Promises,
    ProtocolMessage,
    RangeNack,
    RangePromise,
)
from zpaxos.protocol.ranges import HELD, LOST, PENDING, Lease, range_prefix

COLUMNS = frozenset(COLUMN_TYPES)


class Ready(_Ready[Outcome]):
    """What the host asks of the runtime (proposing.Ready): finished proposals' Outcomes."""


class _Proposal:
    __slots__ = ("token", "core", "staged", "wake", "finished")

    def __init__(self, token: Token, core: Proposer, staged: Staged | Proposer) -> None:
        self.token = token
        self.core = core
        # What the host drives: the core itself, or the core behind staging when the
        # proposal stages its messages (the same start/receive/nudge/tick/next_wakeup).
        self.staged = staged
        self.wake: float | None = None
        self.finished = False


MAX_LEASE_TRIES = 3  # leases of one range refused (or timed out) in a row: then two phases
LEASE_AFTER = 2  # a range is asked for from its second proposal in this process on
MAX_LEASES = 256  # ranges one process holds; proposals of further ranges run two phases
MAX_SEEN = 10_000  # prefixes counted towards LEASE_AFTER (then the count starts again)
COOL_MIN_S = 0.05  # a range lost after being held: two phases for about this long at first,
COOL_MAX_S = 5.0  # doubling each time it is lost again soon, up to this long
COOL_RESET = 10  # held this many times its cool-down: the next loss starts from COOL_MIN_S


class Leases:
    """A proposer process's leases, by prefix (what outlives one ProposerHost).

    A range costs every node a durable row, so a prefix seen once (``order-17-``) does
    not get one: only a prefix that ``lease_after`` proposals share, and at most
    MAX_LEASES of them."""

    def __init__(self, lease_after: int = LEASE_AFTER) -> None:
        self.by_prefix: dict[str, Lease] = {}
        self.tries: dict[str, int] = {}  # leases of a prefix lost before ever being held
        self.lease_after = lease_after
        self.seen: dict[str, int] = {}  # proposals of prefixes not leased yet
        # Ranges lost after being held (another process took them): prefix -> (two phases
        # until, the cool-down's length).
        self.cool: dict[str, tuple[float, float]] = {}
        # The membership epoch the leases were granted in (None: no configuration, or
        # one without an epoch): a lease is bound to it.
        self.epoch: int | None = None


_Waiting = tuple[Hashable, bytes, str, bytes, ProposerOptions]


class ProposerHost:
    """Runs any number of proposals against the acceptors ``nodes`` (node ids)."""

    def __init__(self, nodes: Sequence[int], rng: random.Random,
                 new_id: Callable[[], bytes], proposer_cls: type[Proposer] = Proposer, *,
                 leases: Leases | None = None, new_lease_id: Callable[[], bytes] | None = None,
                 lease_cls: type[Lease] = Lease) -> None:
        """``new_lease_id``: ids for leases' ballots, never one a proposal gets (default:
        ``new_id``, which draws a fresh random id each time at runtime)."""
        self.nodes = tuple(nodes)
        self.proposer_cls = proposer_cls
        self.rng = rng
        self.new_id = new_id
        self.new_lease_id = new_lease_id or new_id
        self.lease_cls = lease_cls
        self.leases = leases if leases is not None else Leases()
        self._by_key: dict[str, list[_Proposal]] = {}
        self._wakeups: Wakeups[_Proposal] = Wakeups()
        self._waiting: dict[str, list[_Waiting]] = {}  # by prefix: for a pending lease
        self.running = 0
        # The cluster's configuration when it has one (protocol/membership.Config):
        # who counts in each phase; None: ``nodes``, majorities.
        self.quorums: Quorums | None = None

    @property
    def next_wakeup(self) -> float | None:
        """When ``tick`` must next be called; None when nothing waits on the clock."""
        wake = self._wakeups.next
        for prefix in self._waiting:
            deadline = self.leases.by_prefix[prefix].deadline
            wake = deadline if wake is None else min(wake, deadline)
        return wake

    def start(self, now: float, token: Token, key: str, value: bytes,
              options: ProposerOptions, staging: StagingOptions = NO_STAGING,
              fast: bool = False) -> Ready:
        """Start proposing ``value`` for ``key``; its outcome comes back with ``token``.
        ``fast``: skip phase 1 when a range promise allows it (see the module doc)."""
        ready = Ready()
        pid = self.new_id()  # drawn now, in the order proposals start
        staged = staging is not NO_STAGING and staging.active
        prefix = range_prefix(key) if fast and not staged else None
        lease = self._lease(now, prefix, options, ready) if prefix is not None else None
        if prefix is not None and lease is None:
            # Two phases, above the round a range of this prefix would start at: a range
            # asked for while it runs then finds its key promised (and names it busy)
            # instead of refusing its Accept.
            options = replace(options, first_round=max(options.first_round, 2))
        if lease is not None and lease.state == PENDING:
            self._waiting.setdefault(lease.prefix, []).append((token, pid, key, value, options))
            self.running += 1  # waiting for the lease counts as running
            return ready
        self._start(now, token, pid, key, value, options, staging, lease, ready)
        return ready

    def _start(self, now: float, token: Token, pid: bytes, key: str, value: bytes,
               options: ProposerOptions, staging: StagingOptions, lease: Lease | None,
               ready: Ready) -> None:
        fast = lease.take(key) if lease is not None else None
        if fast is None and lease is not None and lease.state == HELD:
            # A busy or taken key of a held range: its own ballots start above the lease's.
            options = replace(options, first_round=max(options.first_round,
                                                       lease.ballot.round + 1))
        # The proposals share the process's seeded stream (a proposal draws from it only
        # for a backoff): seeding a generator of its own cost ~25 us per proposal.
        core = self.proposer_cls(key, value, pid, self.nodes, options, self.rng,
                                 quorums=self.quorums)
        staged = staging is not NO_STAGING and staging.active
        prop = _Proposal(token, core, Staged(core, staging) if staged else core)
        self._by_key.setdefault(key, []).append(prop)
        self.running += 1
        self._after(prop, prop.staged.start(now, fast), ready)

    def _lease(self, now: float, prefix: str, options: ProposerOptions,
               ready: Ready) -> Lease | None:
        """The lease for ``prefix``: the one held or pending, else a new one (its
        RangePrepares go out with ``ready``); None when this range gets two phases."""
        leases = self.leases
        lease = leases.by_prefix.get(prefix)
        if lease is not None:
            lease.tick(now)
            if lease.state != LOST:
                return lease if lease.usable else None
            if self._cooling(now, lease):
                return None
        if lease is None:  # a range never asked for: is it worth a range?
            seen = leases.seen.get(prefix, 0) + 1
            if seen < leases.lease_after or len(leases.by_prefix) >= MAX_LEASES:
                if len(leases.seen) >= MAX_SEEN:
                    leases.seen.clear()
                leases.seen[prefix] = seen
                return None
            leases.seen.pop(prefix, None)
        tries = leases.tries.get(prefix, 0)
        if tries >= MAX_LEASE_TRIES:
            return None
        leases.tries[prefix] = tries + 1  # reset once held
        round_ = lease.max_seen_round + 1 if lease is not None else options.first_round
        # A range promise is phase 1 for every key of the range: a prepare quorum of the
        # configuration grants it (protocol/membership.py), as phase 1 of one key would.
        q = self.quorums
        voters, need = ((tuple(q.prepare), q.prepare_quorum) if q is not None
                        else (self.nodes, quorum_size(len(self.nodes))))
        lease = self.lease_cls(prefix, Ballot(round_, self.new_lease_id()), voters, need,
                               now + options.round_timeout_s)
        leases.by_prefix[prefix] = lease
        ready.send.extend(lease.prepare())  # type: ignore[arg-type]  # peers are node ids
        return lease

    def _cooling(self, now: float, lease: Lease) -> bool:
        """True while ``lease``'s range cools down (two phases). A lost lease that had
        been held (and not retired: it gave out all it may) was taken by another process:
        the first time it is found so, it starts (or lengthens) the cool-down."""
        leases, prefix = self.leases, lease.prefix
        until, length = leases.cool.get(prefix, (0.0, 0.0))
        held_at, lease.held_at = lease.held_at, None  # counted once
        if held_at is not None and not lease.retired:
            held_for = now - held_at
            length = (COOL_MIN_S if length == 0.0 or held_for >= COOL_RESET * length
                      else min(2 * length, COOL_MAX_S))
            until = now + length * (0.5 + self.rng.random())  # not in step with the others
            if len(leases.cool) >= MAX_LEASES and prefix not in leases.cool:
                leases.cool.clear()  # bounded: forgetting a cool-down only costs a retry
            leases.cool[prefix] = (until, length)
        return now < until

    def _release(self, now: float, lease: Lease, ready: Ready) -> None:
        """The lease is no longer pending: its waiting proposals start (fast if held)."""
        for token, pid, key, value, options in self._waiting.pop(lease.prefix, ()):
            self.running -= 1
            self._start(now, token, pid, key, value, options, NO_STAGING,
                        lease if lease.state == HELD else None, ready)

    def receive(self, now: float, src: int,
                msg: ProtocolMessage | RangePromise | RangeNack) -> Ready:
        """A reply from node ``src``: to every running proposal of its key (a range
        reply: to the range's lease)."""
        return self.receive_all(now, [(src, msg)])

    def receive_all(self, now: float,
                    replies: Iterable[tuple[int, ProtocolMessage | ColumnMessage | RangePromise
                                            | RangeNack]],
                    ) -> Ready:
        """Every reply of one pass (many keys, many nodes; a batch off the wire), each to
        every running proposal of its key, in order: one Ready for the whole pass, so its
        sends leave as one frame per node."""
        ready = Ready()
        for src, msg in replies:
            t = type(msg)
            if t is Accepteds or t is Promises:
                self._replies(now, src, msg, ready)  # type: ignore[arg-type]
            elif t in COLUMNS:  # the rarer runs: their rows, one at a time
                for row in rows(msg):
                    self._receive(now, src, row, ready)  # type: ignore[arg-type]
            else:
                self._receive(now, src, msg, ready)  # type: ignore[arg-type]
        return ready

    def _receive(self, now: float, src: int,
                 msg: ProtocolMessage | RangePromise | RangeNack, ready: Ready) -> None:
        if isinstance(msg, (RangePromise, RangeNack)):
            self._on_range(now, src, msg, ready)
            return
        if self.leases.by_prefix and type(msg) is Nack and msg.promised > msg.ballot:
            self._lost(msg)
        props = self._by_key.get(msg.key)
        if props:
            for prop in tuple(props):
                self._after(prop, prop.staged.receive(now, src, msg), ready)

    def _replies(self, now: float, src: int, msg: Accepteds | Promises, ready: Ready) -> None:
        """A run of Accepteds (or Promises) from ``src``, row by row, to the proposals of
        each row's key: the core's ``accepted`` (``promised``) without a message or a
        Step per row (a proposal behind staging gets its one-key message, as staging
        holds messages)."""
        by_key = self._by_key
        after = self._after
        accepteds = type(msg) is Accepteds
        one = Accepted if accepteds else Promise
        for row in zip(*[getattr(msg, f) for f in msg.__struct_fields__], strict=True):
            props = by_key.get(row[0])
            if not props:
                continue
            for prop in tuple(props):
                core = prop.core
                if prop.staged is not core:
                    after(prop, prop.staged.receive(now, src, one(*row)), ready)
                    continue
                step = (core.accepted(src, *row[1:]) if accepteds
                        else core.promised(now, src, *row[1:]))
                if step is not None:
                    after(prop, step, ready)

    def _on_range(self, now: float, src: int, msg: RangePromise | RangeNack,
                  ready: Ready) -> None:
        lease = self.leases.by_prefix.get(msg.prefix)
        if lease is None:
            return
        if isinstance(msg, RangePromise):
            lease.on_promise(src, msg)
        else:
            lease.on_nack(src, msg)
        if lease.state == HELD:
            self.leases.tries.pop(lease.prefix, None)
            if lease.held_at is None:
                lease.held_at = now
        if lease.state != PENDING and lease.prefix in self._waiting:
            self._release(now, lease, ready)

    def _lost(self, msg: Nack) -> None:
        """A Nack of one of a lease's Accepts: the lease is dropped (renewed later)."""
        prefix = range_prefix(msg.key)
        lease = self.leases.by_prefix.get(prefix) if prefix is not None else None
        if lease is not None and lease.ballot == msg.ballot:
            lease.lose(msg.promised)

    def reconfigure(self, now: float, quorums: Quorums) -> Ready:
        """The cluster is in another configuration: every later proposal counts its
        voters, and every running one starts a new round with them at once. Leases
        (range promises) were granted by the old configuration's quorums: a range
        promise never lets a phase-1 skip through in a later epoch, so all are dropped
        (kept when ``quorums`` is the configuration they were granted in: a new host of
        the same process, in the same epoch, goes on using them)."""
        self.quorums = quorums
        self.nodes = tuple(dict.fromkeys((*quorums.prepare, *quorums.accept)))
        epoch = getattr(quorums, "epoch", None)
        if epoch is None or epoch != self.leases.epoch:
            self.leases.by_prefix.clear()
            self.leases.epoch = epoch
        ready = Ready()
        for props in tuple(self._by_key.values()):
            for prop in tuple(props):
                self._after(prop, prop.core.reconfigure(now, quorums), ready)
        waiting, self._waiting = self._waiting, {}
        for items in waiting.values():  # waited for a lease: two phases, in the new one
            for token, pid, key, value, options in items:
                self.running -= 1
                self._start(now, token, pid, key, value, options, NO_STAGING, None, ready)
        return ready

    def nudge(self, now: float) -> Ready:
        """A node came back: every running proposal retries at once (Proposer.nudge)."""
        ready = Ready()
        for props in tuple(self._by_key.values()):
            for prop in tuple(props):
                self._after(prop, prop.staged.nudge(now), ready)
        return ready

    def tick(self, now: float) -> Ready:
        ready = Ready()
        for prefix in tuple(self._waiting):
            lease = self.leases.by_prefix[prefix]
            lease.tick(now)
            if lease.state != PENDING:
                self._release(now, lease, ready)
        for prop in self._wakeups.due(now):
            self._after(prop, prop.staged.tick(now), ready)
        return ready

    def _after(self, prop: _Proposal, step: Step, ready: Ready) -> None:
        if step.send:
            ready.send.extend(step.send)  # type: ignore[arg-type]  # core peers: node ids
        if step.events:
            ready.events.extend(step.events)
        core = prop.core
        if core.outcome is not None:
            if not prop.finished:
                prop.finished = True
                self._remove(prop)
                ready.finished.append((prop.token, core.outcome))
            return
        self._wakeups.schedule(prop, prop.staged.next_wakeup)

    def _remove(self, prop: _Proposal) -> None:
        prop.wake = None
        props = self._by_key.get(prop.core.key)
        if props is not None and prop in props:
            props.remove(prop)
            self.running -= 1
            if not props:
                del self._by_key[prop.core.key]
