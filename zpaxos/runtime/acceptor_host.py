"""The acceptor host: one node's acceptor, status and sync, pure (no sockets, disk, clock).

Like etcd's ``RawNode``/``Ready``: the node's loop hands the host a *batch* of
(source, message) pairs, everything that arrived in one pass, and gets back a
:class:`Ready`: the key states to make durable, then the messages to send, then what
was learned and what to report. The loop must persist ``ready.persist`` (one fsynced
transaction: group commit) *before* any message of ``ready.send`` leaves; the simulator
drives this same host, crashes included between the two.

Besides the Paxos rules (the core's :class:`~zpaxos.protocol.core.Acceptor`) the host
answers status requests, pages its chosen values to a peer that syncs, and turns a
peer's :class:`SyncReply` into Decides (which the core checks like any other: a value
never overwrites a different chosen one).

Two ways to hold the states. Given ``states`` (the simulator, small tests) the host keeps
every key in memory, with sorted indexes for the pages. Given a ``source`` (a node: its
store's read side) the host keeps only a bounded cache: before a batch reaches the core it
reads the durable state of every key the batch names that is not cached (one query), so
the core votes on exactly what is on disk, as if it had always been in memory; status and
sync pages are walks down the store's key index, overlaid with the pass's own unsaved
changes; a RangePrepare reads only its range's keys (an index seek), and a pass takes only
so many RangePrepares (RANGE_ROWS_PER_PASS), leaving the rest, in order, to the next.
A node with a million decided keys then holds a few tens of thousands of them,
and starts without reading any. Eviction only ever drops states that are durable: it runs
at the start of a pass, when the loop has persisted every earlier pass, except the
learned decisions it let wait (``Ready.lazy``): the loop's source must show those over the
store (:class:`zpaxos.runtime.node.WithPending`), so a key evicted meanwhile reads back
its latest state.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from zpaxos.protocol.core import Acceptor, KeyState, Learner
from zpaxos.protocol.events import Conflict, Event, Ignored, Learned
from zpaxos.protocol.messages import (
    ZERO,
    Accept,
    Accepted,
    AcceptedAt,
    Ballot,
    CatchUp,
    CatchUpReply,
    CheckAccepted,
    Decide,
    Fetch,
    FetchReply,
    KeyStatus,
    Message,
    Nack,
    Prepare,
    Promise,
    ProtocolMessage,
    RAccepted,
    RangeNack,
    RangePrepare,
    RangePromise,
    RegistersReply,
    RegistersRequest,
    RNack,
    RNotify,
    RPromise,
    RWatch,
    StatusReply,
    StatusRequest,
    SyncReply,
    SyncRequest,
)
from zpaxos.protocol.ranges import MAX_SCAN
from zpaxos.protocol.register import RegAcceptor
from zpaxos.protocol.registry import MAX_VALUE_BYTES, REGISTER_TYPES, TO_ACCEPTOR_TYPES, type_name
from zpaxos.protocol.regmessages import (
    REGISTER_PREFIX,
    BadState,
    RAccept,
    RegisterMessage,
    decode_state,
    register_slot,
)
from zpaxos.runtime import catchup
from zpaxos.runtime.addresses import Caller, Src
from zpaxos.runtime.keyrange import in_range, span
from zpaxos.runtime.watchers import Watchers

# What became of each message the host handled, as the node's metrics count it (the
# outcome label of zpaxos_node_messages_total): for the Paxos messages, the core's reply
# or event says it; the rest are answered (status, sync, checks), handled (replies to
# this node's own requests) or ignored. Admission adds "refused" (runtime/admission.py).
PROMISED, ACCEPTED, NACKED, DECIDED = "promised", "accepted", "nacked", "decided"
LEARNED, KNOWN, CONFLICT = "learned", "known", "conflict"
ANSWERED, HANDLED, IGNORED, CHECKING = "answered", "handled", "ignored", "checking"
_REPLY_OUTCOME: dict[type, str] = {
    Promise: PROMISED, RPromise: PROMISED, RangePromise: PROMISED,
    Accepted: ACCEPTED, RAccepted: ACCEPTED,
    Nack: NACKED, RNack: NACKED, RangeNack: NACKED,
    Decide: DECIDED,  # the key was chosen already: the sender is told the value
}
_EVENT_OUTCOME: dict[type, str] = {Learned: LEARNED, Conflict: CONFLICT, Ignored: IGNORED}


def outcome_of(send: Sequence[tuple[object, object]], events: Sequence[Event]) -> str:
    """What a message came to, from what the core did with it: its reply, else its first
    event, else nothing (a Decide this node knew already)."""
    if send:
        return _REPLY_OUTCOME.get(type(send[0][1]), ANSWERED)
    if events:
        return _EVENT_OUTCOME.get(type(events[0]), HANDLED)
    return KNOWN


STATUS_MAX_KEYS = 1000  # keys in one status reply
SYNC_PAGE = 500  # chosen values in one sync reply
REGISTER_PAGE = 1000  # register names in one RegistersReply (registry.MAX_NAMES)
STATUS_MAX_RANGES = 256  # range promises listed in one status reply (all are counted)
# Memory: a client that asks for status and never reads can make a node queue at most
# sockets.SNDHWM replies for it, so a status reply is kept small: this many bytes of
# values (and per-key overhead), though always at least one key's.
STATUS_MAX_BYTES = 64 << 10
KEY_OVERHEAD_BYTES = 160  # a status entry without its values, encoded (key and ballots)
# Values are up to 1 MiB each: a sync reply stops short of this many value bytes, so with
# one more value it still fits the decoder's body limit (codec.MAX_BODY_BYTES).
REPLY_MAX_VALUE_BYTES = 1 << 20
MAX_CHECKS = 10_000  # client Decides being checked with the peers at once
# States a host with a ``source`` keeps in memory (a few hundred bytes each); a pass's
# keys are always there, whatever this says.
CACHE_KEYS = 50_000
# Status and sync pages built in one pass: one frame can ask for thousands, and each page
# is built in memory before anything is sent; the rest are ignored (asked again, they are
# answered in a later pass).
MAX_PAGES_PER_PASS = 64
# RangePrepares: each reads (and checksums) the keys of its range a node holds, up to
# ranges.MAX_SCAN + 1 rows, and one frame can carry thousands of them. A pass takes them
# while they have cost less than RANGE_ROWS_PER_PASS rows (always at least one a pass),
# each costing the rows it read and RANGE_PREPARE_ROWS more (its own work, measured at
# about 20 us, the time of a few rows: 128 of an empty range's a pass, a few ms). The rest
# wait, in order, for the next passes (the loop runs one at once), never behind later
# ones. At most MAX_DEFERRED_RANGES wait (a whole frame's worth); past it a new one is
# dropped (logged ``ignored``): the proposer's range times out, and it runs two phases.
RANGE_ROWS_PER_PASS = 1024
RANGE_PREPARE_ROWS = 8
MAX_DEFERRED_RANGES = 10_000

T = TypeVar("T")


@dataclass(slots=True)
class Ready:
    """One pass's work, in the order it must be done: persist, send, then the rest.

    ``lazy`` holds states whose only change is a learned decision (a Decide, a sync page,
    a confirmed client Decide). No reply waits on them: a chosen value stays chosen whether
    or not this node remembers it (a quorum's accepted state, durable elsewhere, is what
    makes it chosen), so forgetting one in a crash only means learning it again (the sync
    at start). The runtime may make them durable with its next commit, or when idle,
    instead of paying a commit of their own; ``learned`` values are handed to the value
    files once their state is durable. A key with a change in ``persist`` has its whole
    latest state there.
    """

    persist: dict[str, KeyState] = field(default_factory=dict)
    ranges: dict[str, Ballot] = field(default_factory=dict)  # range promises, persisted alike
    send: list[tuple[Src, Message]] = field(default_factory=list)
    learned: list[tuple[str, bytes]] = field(default_factory=list)
    events: list[tuple[Src | None, Event]] = field(default_factory=list)
    lazy: dict[str, KeyState] = field(default_factory=dict)
    # Catching up (runtime/catchup.py): each peer's cursor to save, only with or after the
    # commit that makes this pass's persist and every earlier lazy state durable (the
    # values it covers); and (peer, keys learned from it) for the log.
    cursors: dict[int, catchup.Cursor] = field(default_factory=dict)
    caught: list[tuple[int, int]] = field(default_factory=list)
    # What admission (runtime/admission.py) hands the loop: notes to log; a peer's refusal
    # (the node must stop, never vote on state the cluster saw it lose); and whether what
    # it remembers of the peers changed (peers.json, saved before this pass's replies).
    notes: list[Note] = field(default_factory=list)
    refusal: str | None = None
    peers_changed: bool = False


@dataclass
class Note:
    """Something the node should log: ``name`` and its fields."""

    name: str
    fields: dict[str, Any]


class StateSource(Protocol):
    """The read side of durable storage (``SqliteStore``, ``MemoryStore``): what the host
    reads instead of holding every key. Reads only; the loop still does every write."""

    def get(self, keys: Collection[str]) -> Mapping[str, KeyState]:
        """The durable states of ``keys``; a key never written is absent."""
        ...

    def page(self, after: str, limit: int, chosen_only: bool = False
             ) -> list[tuple[str, KeyState]]:
        """Up to ``limit`` (key, state) after ``after``, in key order."""
        ...

    def prefixed(self, prefix: str, limit: int) -> list[tuple[str, KeyState]]:
        """Up to ``limit`` (key, state) of the keys starting with ``prefix``, in key order;
        reads only those keys (an index seek, not a walk past the range)."""
        ...


def page(items: Iterable[T], max_items: int, size: Callable[[T], int],
         max_bytes: int = REPLY_MAX_VALUE_BYTES) -> tuple[list[T], bool]:
    """The first items that fit both limits (always at least one), and whether more remain."""
    out: list[T] = []
    total = 0
    for item in items:
        if len(out) >= max_items:
            return out, True
        total += size(item)
        if out and total > max_bytes:
            return out, True
        out.append(item)
    return out, False


class AcceptorHost:
    """One node: ``node_id``, its recovered ``states``, and its ``peers`` (node ids)."""

    def __init__(self, node_id: int, states: Mapping[str, KeyState], peers: Sequence[int],
                 *, sync_page: int = SYNC_PAGE, status_page: int = STATUS_MAX_KEYS,
                 register_page: int = REGISTER_PAGE,
                 acceptor_cls: type[Acceptor] = Acceptor,
                 check_client_decides: bool = False,
                 ranges: Mapping[str, Ballot] | None = None,
                 register_cls: type[RegAcceptor] = RegAcceptor,
                 source: StateSource | None = None, cache_keys: int = CACHE_KEYS,
                 catch_up_s: float = 0.0, learn: catchup.LearnSource | None = None,
                 cursors: Mapping[int, catchup.Cursor] | None = None) -> None:
        """``check_client_decides``: a Decide from anyone but a peer node (a client, with
        CURVE on) is recorded only once a quorum of nodes confirms they accepted that very
        ballot with that very value (see :meth:`_check_decide`). ``source``: read states
        from it as needed, keeping at most about ``cache_keys`` (``states`` is then only
        a warm start, normally empty). ``catch_up_s`` > 0: ask each peer that often what
        it learned since ``cursors`` (runtime/catchup.py); 0: a start walks the peers'
        chosen keys instead, and nothing is timed. ``learn``: this node's learn index
        (its store), which answers the peers' catch-up requests."""
        self.node_id = node_id
        self.peers = tuple(peers)
        self.check_client_decides = check_client_decides
        # Client Decides being checked: the core's Learner counts the confirmations.
        self._checks: dict[tuple[str, Ballot, bytes], None] = {}  # ordered: oldest first
        self._learner = Learner((node_id, *self.peers))
        self.stats: dict[str, int] = {}  # counters the runtime keeps (status shows them)
        # Messages handled, by (type, outcome); and the keys and registers this host
        # created (first state of a key never seen before). Plain ints, counted as each
        # message goes by: the node's metrics read them when scraped.
        self.handled: dict[tuple[type, str], int] = {}
        self.created_keys = 0
        self.created_registers = 0
        self.sync_page_size = sync_page
        self.status_page_size = status_page
        self.register_page_size = register_page
        self.acceptor = acceptor_cls(states, ranges)
        # Registers (CASPaxos) keep their state in the same map, in their own "@" slots
        # (the same dict object: the cache below evicts from and fetches into both).
        self.registers = register_cls(self.acceptor.states)
        self.source = source
        self.cache_keys = max(1, cache_keys)
        # The pass's unsaved states (with a source): its persist, then its lazy ones.
        self._dirty: tuple[Mapping[str, KeyState], ...] = ()
        self._range_keys: dict[str, list[str]] = {}  # RangePrepare prefix -> keys read
        # Keys this pass created (with a source): the only cached keys the store lacks.
        self._pass_new: list[str] = []
        self._pass_new_sorted: list[str] = []  # the same, sorted as a RangePrepare needs
        # RangePrepares waiting for a later pass, oldest first, and this pass's cost of them.
        self.deferred: deque[tuple[Src, RangePrepare]] = deque()
        self._range_rows = 0
        # Sorted indexes (without a source), so a page never sorts every key. New keys
        # wait in a list and are merged in when a page is asked for (status and sync are
        # rare; a new key per message is not, and inserting each into a sorted list costs
        # a move of the list).
        self._sorted_keys = sorted(self.acceptor.states)
        self._sorted_chosen = sorted(k for k, s in self.acceptor.states.items()
                                     if s.chosen is not None)
        self._new_keys: list[str] = []
        self._new_chosen: list[str] = []
        # Register watchers (runtime/watchers.py), told when this node accepts a new
        # state; their leases run on ``now``, the time as the loop last said it (the host
        # never reads a clock).
        self.watchers = Watchers()
        self.now = 0.0
        self.learn = learn
        self.catch_up_page = catchup.PAGE_KEYS  # keys in one page it answers (tests: fewer)
        self.follower = (catchup.Follower(self.peers, catch_up_s, at=dict(cursors or {}))
                         if catch_up_s > 0 else None)

    @property
    def states(self) -> Mapping[str, KeyState]:
        return self.acceptor.states

    @property
    def ranges(self) -> Mapping[str, Ballot]:
        """The range promises held (zpaxos/protocol/ranges.py)."""
        return self.acceptor.ranges.by_prefix

    def start(self) -> Ready:
        """Ask every peer for the decisions this node may have missed while it was down:
        from the saved cursors (catching up), else by walking their chosen keys."""
        if self.follower is not None:
            return Ready(send=list(self.follower.start()))
        return Ready(send=[(p, SyncRequest("")) for p in self.peers])

    def tick(self, now: float) -> Ready:
        """Timed work at ``now``: the periodic catch-up requests, and their retries."""
        if self.follower is None:
            return Ready()
        sends, moved = self.follower.tick(now, self._lacks)
        return Ready(send=list[tuple[Src, Message]](sends), cursors=moved)

    @property
    def next_tick(self) -> float | None:
        return self.follower.next_due() if self.follower is not None and self.peers else None

    def handle(self, batch: Iterable[tuple[Src, Message]]) -> Ready:
        ready = Ready()
        if self.source is not None:
            batch = list(batch)
            self._evict()
            self._fetch(batch)
            self._dirty = (ready.lazy, ready.persist)
            self._range_keys = {}
            self._pass_new, self._pass_new_sorted = [], []
        self._range_rows = 0
        if self.watchers:
            self.watchers.expire(self.now)
        deferred = self.deferred
        while deferred and self._range_rows < RANGE_ROWS_PER_PASS:
            self._range_prepare(*deferred.popleft(), ready)
        pages = 0
        if self.follower is not None and self.follower.empty:
            batch = list(batch)  # idle until now: a Paxos message ends it (catchup.active)
            if any(type(m) in TO_ACCEPTOR_TYPES for _, m in batch):
                self.follower.active()
        apply = self._apply
        check_decides = self.check_client_decides
        for src, msg in batch:
            t = type(msg)
            # The protocol's own messages first, in one test each (most of every batch).
            if t is Accept or t is Prepare or (t is Decide and not check_decides):
                apply(src, msg, ready)  # type: ignore[arg-type]
                continue
            if isinstance(msg, (StatusRequest, SyncRequest, RegistersRequest, CatchUp, Fetch)):
                pages += 1
                if pages > MAX_PAGES_PER_PASS:
                    ready.events.append((src, Ignored("", type_name(msg))))
                    self._count(t, IGNORED)
                    continue
            if (isinstance(msg, Decide) and self.check_client_decides
                    and isinstance(src, Caller) and not src.is_node):
                self._count(t, CHECKING)
                self._check_decide(msg, ready)
            elif isinstance(msg, REGISTER_TYPES):
                self._apply_register(src, msg, ready)  # type: ignore[arg-type]
            elif isinstance(msg, RWatch) and isinstance(src, Caller):
                self._count(t, ANSWERED)
                self._watch(src, msg, ready)
            elif isinstance(msg, RangePrepare):
                if deferred or self._range_rows >= RANGE_ROWS_PER_PASS:
                    self._defer(src, msg, ready)  # behind those already waiting
                else:
                    self._range_prepare(src, msg, ready)
            elif isinstance(msg, TO_ACCEPTOR_TYPES):
                self._apply(src, msg, ready)  # type: ignore[arg-type]
            elif isinstance(msg, (StatusRequest, SyncRequest, RegistersRequest, CheckAccepted,
                                  CatchUp, Fetch)):
                self._count(t, ANSWERED)
                self._answer(src, msg, ready)
            elif isinstance(msg, (AcceptedAt, SyncReply)) and isinstance(src, int):
                self._count(t, HANDLED)
                self._on_reply(src, msg, ready)
            elif (isinstance(msg, (CatchUpReply, FetchReply)) and isinstance(src, int)
                  and self.follower):
                # Only an answer on our own socket to that peer (a node, authenticated).
                self._count(t, HANDLED)
                self._on_catch_up(src, msg, ready)
            else:
                ready.events.append((src, Ignored(getattr(msg, "key", "") or "",
                                                  type_name(msg))))
                self._count(t, IGNORED)
        return ready

    def _count(self, t: type, outcome: str) -> None:
        handled = self.handled
        handled[t, outcome] = handled.get((t, outcome), 0) + 1

    def _answer(self, src: Src,
                msg: StatusRequest | SyncRequest | RegistersRequest | CheckAccepted
                | CatchUp | Fetch,
                ready: Ready) -> None:
        """Status, sync, register and catch-up pages, fetched values, and a peer's check
        of a client's Decide: read-only answers."""
        if isinstance(msg, CatchUp):
            if self.learn is not None:
                ready.send.append((src, catchup.page(self.learn, msg, self._slot_ballots,
                                                     self.catch_up_page)))
        elif isinstance(msg, Fetch):
            ready.send.append((src, catchup.fetch_reply(msg.keys, self._known,
                                                        REPLY_MAX_VALUE_BYTES)))
        elif isinstance(msg, StatusRequest):
            ready.send.append((src, self.status(msg.key)))
        elif isinstance(msg, SyncRequest):
            ready.send.append((src, self.sync_page(msg.after)))
        elif isinstance(msg, RegistersRequest):
            ready.send.append((src, self.register_page(msg.after)))
        else:
            s = self.acceptor.state(msg.key)
            value = (s.value if s.accepted == msg.ballot else
                     s.chosen if s.chosen_ballot == msg.ballot else None)
            ready.send.append((src, AcceptedAt(msg.key, msg.ballot, value)))

    def _on_catch_up(self, src: int, msg: CatchUpReply | FetchReply, ready: Ready) -> None:
        """A peer's catch-up page (fetch what we lack) or fetched values (apply them)."""
        assert self.follower is not None
        if isinstance(msg, FetchReply):
            self._fetched(src, msg, ready)
            return
        sends, cursor = self.follower.on_page(src, msg, self._lacks)
        ready.send.extend(sends)
        if cursor is not None:
            ready.cursors[src] = cursor

    def _on_reply(self, src: int, msg: AcceptedAt | SyncReply, ready: Ready) -> None:
        """A peer's answer to this node's own request, on our own socket to that peer."""
        if isinstance(msg, AcceptedAt):
            if msg.value is not None and (msg.key, msg.ballot, msg.value) in self._checks:
                self._confirmed_by(src, Accepted(msg.key, msg.ballot, msg.value), ready)
            return
        for key, value, ballot in msg.chosen:
            self._apply(src, Decide(key, value, ballot), ready, reply=False)
        if msg.more and msg.chosen:
            ready.send.append((src, SyncRequest(msg.chosen[-1][0])))

    # ---- the cache (with a source)

    def _evict(self) -> None:
        """Forget the oldest cached states beyond ``cache_keys``. Safe because the loop
        persisted every earlier pass before handing over this one: each state dropped is
        on disk, and :meth:`_fetch` reads it back before the core can see the key again."""
        states = self.acceptor.states
        extra = len(states) - self.cache_keys
        if extra > 0:
            extra += self.cache_keys // 4  # evict in bulk, not a few keys every pass
            for key in list(itertools.islice(states, extra)):
                del states[key]

    def _fetch(self, batch: list[tuple[Src, Message]]) -> None:
        """Read the durable state of every key the batch names that is not cached."""
        assert self.source is not None
        states = self.acceptor.states
        want: set[str] = set()
        for _, msg in batch:
            if isinstance(msg, SyncReply):
                want.update(e[0] for e in msg.chosen)
            elif isinstance(msg, CatchUpReply):
                want.update(msg.keys)
            elif isinstance(msg, Fetch):
                want.update(msg.keys)
            elif isinstance(msg, FetchReply):
                want.update(e[0] for e in msg.known)
            elif isinstance(msg, RangePrepare):
                continue  # read when it is handled (_range_prepare), if in this pass
            elif isinstance(msg, (*REGISTER_TYPES, RWatch)):
                want.add(register_slot(msg.key))  # type: ignore[union-attr,arg-type]
            else:
                key = getattr(msg, "key", None)
                if isinstance(key, str):
                    want.add(key)
        # Not want.difference_update(states): that walks the whole cache every pass.
        want = {k for k in want if k not in states}
        if want:
            states.update(self.source.get(want))

    # ---- range prepares: paced, and each reads only its own range's keys

    def _range_prepare(self, src: Src, msg: RangePrepare, ready: Ready) -> None:
        """Phase 1 for a range (the core's rule), on every key of the range this node
        holds, the pass's new ones included: the reply must name every busy one. Counts
        the rows it looked at against the pass's RANGE_ROWS_PER_PASS."""
        if self.source is None:
            index = self._keys
            lo, hi = span(index, msg.prefix)
            self._range_rows += RANGE_PREPARE_ROWS + min(hi - lo, MAX_SCAN + 1)
        else:
            index = self._range_index(msg.prefix)
        self.acceptor.key_index = index
        step = self.acceptor.handle(src, msg)
        ready.ranges.update(step.ranges)
        ready.send.extend((src, m) for _, m in step.send)
        self._count(RangePrepare, outcome_of(step.send, step.events))

    def _defer(self, src: Src, msg: RangePrepare, ready: Ready) -> None:
        if len(self.deferred) >= MAX_DEFERRED_RANGES:
            self.stats["ranges_dropped"] = self.stats.get("ranges_dropped", 0) + 1
            ready.events.append((src, Ignored("", type_name(msg))))
            return
        self.deferred.append((src, msg))

    def _range_index(self, prefix: str) -> list[str]:
        """The sorted keys a RangePrepare for ``prefix`` must look at, each state in the
        cache so the core sees them as if every key were in memory: the range's keys in
        the store (its first MAX_SCAN + 1: ranges.busy_keys looks at no more), read by an
        index seek, and those this pass created, which the store does not hold yet. Every
        other cached key is in the store: the cache holds only keys read from it and keys
        an earlier pass created, which that pass persisted (or the loop's source shows,
        for learned ones waiting: Ready.lazy)."""
        assert self.source is not None
        keys = self._range_keys.get(prefix)
        if keys is None:
            states = self.acceptor.states
            keys = []
            for k, s in self.source.prefixed(prefix, MAX_SCAN + 1):
                keys.append(k)
                if k not in states:  # a cached state is the latest
                    states[k] = s
            self._range_keys[prefix] = keys
        self._range_rows += RANGE_PREPARE_ROWS + len(keys)
        new, done = self._pass_new, self._pass_new_sorted
        for k in new[len(done):]:  # the keys created since the last RangePrepare
            bisect.insort(done, k)
        fresh = in_range(done, prefix)
        return sorted({*keys, *fresh}) if fresh else keys

    def _paged(self, after: str, limit: int, chosen_only: bool) -> list[tuple[str, KeyState]]:
        """The first ``limit`` keys after ``after`` (chosen ones only, if asked) as this
        host sees them: the store's page, with this pass's unsaved states laid over it."""
        assert self.source is not None
        states = self.acceptor.states
        rows = {k: states.get(k, s) for k, s in self.source.page(after, limit, chosen_only)}
        for dirty in self._dirty:
            for k, s in dirty.items():
                if k > after and (s.chosen is not None or not chosen_only):
                    rows[k] = s
        return sorted(rows.items())[:limit]

    def _check_decide(self, msg: Decide, ready: Ready) -> None:
        """A client says ``msg.value`` was chosen at ``msg.ballot``. Believe it only when a
        quorum of nodes (this one included) confirms it accepted exactly that ballot with
        exactly that value: an acceptor's accepted ballot only grows, so each of them did
        accept it at some point, and a quorum accepting one ballot is what chosen means.
        A buggy client's claim for a minority's value, or a made-up one, never gets there."""
        s = self.acceptor.state(msg.key)
        if s.chosen is not None or msg.ballot.is_zero:
            return  # nothing to learn, or nothing to check it against
        entry = (msg.key, msg.ballot, msg.value)
        if entry in self._checks:
            return
        if len(self._checks) >= MAX_CHECKS:  # bounded, whatever clients send
            oldest = next(iter(self._checks))
            del self._checks[oldest]
            self._learner.forget(oldest[0])
        self._checks[entry] = None
        ready.send.extend((p, CheckAccepted(msg.key, msg.ballot)) for p in self.peers)
        if s.accepted == msg.ballot and s.value == msg.value:
            self._confirmed_by(self.node_id, Accepted(msg.key, msg.ballot, msg.value), ready)

    def _confirmed_by(self, node: int, vote: Accepted, ready: Ready) -> None:
        """``node`` accepted exactly this ballot and value: one vote for the core's Learner;
        once a quorum voted, the value is chosen and recorded as any Decide is."""
        chosen = self._learner.on_accepted(node, vote)
        if chosen is not None:
            self._checks = {e: None for e in self._checks if e[0] != vote.key}
            self._apply(self.node_id, Decide(vote.key, chosen, vote.ballot), ready, reply=False)

    def _apply(self, src: Src, msg: ProtocolMessage, ready: Ready, reply: bool = True) -> None:
        states = self.acceptor.states
        before = states.get(msg.key)
        step = self.acceptor.handle(src, msg)
        if step.persist:
            persist, lazy = ready.persist, ready.lazy
            if type(msg) is Decide:  # on_decide changes nothing but chosen
                for key, state in step.persist:
                    # The latest state of a key in this pass wins.
                    if key in persist:
                        persist[key] = state
                    else:
                        lazy[key] = state
            else:
                for key, state in step.persist:
                    persist[key] = state
                    if lazy:
                        lazy.pop(key, None)
        if reply:  # a message received (not a sync page's entry, nor a confirmed check)
            outcome = outcome_of(step.send, step.events)
            handled = self.handled
            k = (type(msg), outcome)
            handled[k] = handled.get(k, 0) + 1
            if step.send:
                ready.send.extend([(src, m) for _, m in step.send])  # the core answers the sender
        if step.events:
            for ev in step.events:
                ready.events.append((src, ev))
                if type(ev) is Learned:
                    ready.learned.append((ev.key, ev.value))
        after = states.get(msg.key)
        if before is None and after is not None:  # the first state of a new key
            self.created_keys += 1
        if self.source is not None:
            # No indexes to keep (pages come from the store); only the pass's new keys.
            if before is None and after is not None:
                self._pass_new.append(msg.key)
            return
        if after is not before and after is not None:  # the key's state changed
            if before is None:
                self._new_keys.append(msg.key)
            if after.chosen is not None and (before is None or before.chosen is None):
                self._new_chosen.append(msg.key)

    @property
    def _keys(self) -> list[str]:
        if self._new_keys:  # timsort merges the sorted run with the new keys
            self._sorted_keys += self._new_keys
            self._sorted_keys.sort()
            self._new_keys = []
        return self._sorted_keys

    @property
    def _chosen(self) -> list[str]:
        if self._new_chosen:
            self._sorted_chosen += self._new_chosen
            self._sorted_chosen.sort()
            self._new_chosen = []
        return self._sorted_chosen

    def _apply_register(self, src: Src, msg: RegisterMessage, ready: Ready) -> None:
        slot = register_slot(msg.key)
        known = slot in self.acceptor.states
        watchers = self.watchers.of(msg.key) if type(msg) is RAccept else ()
        before = self.registers.state(msg.key)[1].version if watchers else 0
        step = self.registers.handle(src, msg)
        if watchers and step.persist:
            # A new state accepted: tell the watchers (after it is durable, as every send).
            # Only a hint: a watcher reads the register to learn what was chosen.
            version = decode_state(step.persist[-1][1].value or b"").version
            if version > before:
                note = RNotify(msg.key, version, True)
                ready.send.extend((w, note) for w in watchers)
        for k, state in step.persist:
            ready.persist[k] = state
        self._count(type(msg), outcome_of(step.send, step.events))
        if not known and slot in self.acceptor.states:
            self.created_registers += 1
            if self.source is None:
                self._new_keys.append(slot)  # joins the status index when a page is asked for
            else:
                self._pass_new.append(slot)
        ready.send.extend((src, m) for _, m in step.send)
        ready.events.extend((src, ev) for ev in step.events)

    def _watch(self, src: Caller, msg: RWatch, ready: Ready) -> None:
        """Start or renew a watch; the answer says the version this node holds (a watcher
        that missed a change while it was away reads again), or that it was refused."""
        ok = self.watchers.watch(self.now, src, msg.key)
        ready.send.append((src, RNotify(msg.key, self.registers.state(msg.key)[1].version, ok)))

    # ---- catching up (runtime/catchup.py)

    def _known(self, key: str) -> tuple[bytes, Ballot] | None:
        """What a Fetch gets for ``key``: its chosen value, or a register slot's accepted
        state (made durable in this pass before the reply leaves)."""
        s = self.acceptor.states.get(key)
        if s is None:
            return None
        if key[:1] == REGISTER_PREFIX:
            return None if s.value is None or s.accepted.is_zero else (s.value, s.accepted)
        return None if s.chosen is None else (s.chosen, s.chosen_ballot)

    def _lacks(self, keys: Sequence[str], slots: Mapping[str, Ballot]) -> set[str]:
        """A catch-up page lists ``keys`` (and its register ``slots`` at their ballots):
        those this node lacks (the pass read every one of them: _fetch)."""
        states = self.acceptor.states
        out = set()
        for key in keys:
            s = states.get(key)
            if s is None or s.chosen is None:
                if key[:1] != REGISTER_PREFIX:
                    out.add(key)
                elif s is None or s.accepted < slots.get(key, ZERO):
                    out.add(key)
        return out

    def _slot_ballots(self, slots: list[str]) -> list[Ballot]:
        """The accepted ballots of register slots, for a catch-up page."""
        states = self.acceptor.states
        if self.source is not None:
            missing = [k for k in slots if k not in states]
            if missing:
                states.update(self.source.get(missing))
        return [states[k].accepted if k in states else ZERO for k in slots]

    def _fetched(self, src: int, msg: FetchReply, ready: Ready) -> None:
        """The values a peer sent for the keys this node asked it for. A key's is applied
        as that peer's Decide (the core checks it as any other); a register slot's through
        the register acceptor's Accept rule, as the late Accept it is."""
        assert self.follower is not None
        take, sends, cursor = self.follower.on_fetched(src, msg)
        learned = 0
        for key, value, ballot in msg.known:
            if key not in take:
                continue  # not asked for from this peer: ignored, whatever it says
            if key[:1] == REGISTER_PREFIX:
                learned += self._learn_register(src, key, value, ballot, ready)
            elif len(value) <= MAX_VALUE_BYTES:
                n = len(ready.learned)
                self._apply(src, Decide(key, value, ballot), ready, reply=False)
                learned += len(ready.learned) - n
        ready.send.extend(sends)
        if cursor is not None:
            ready.cursors[src] = cursor
        if learned:
            self.follower.learned_total += learned
            ready.caught.append((src, learned))

    def _learn_register(self, src: int, slot: str, value: bytes, ballot: Ballot,
                        ready: Ready) -> int:
        s = self.acceptor.states.get(slot)
        if ballot.is_zero or (s is not None and ballot <= s.accepted):
            return 0
        try:
            state = decode_state(value)
        except BadState:
            ready.events.append((src, Ignored(slot, "FETCH_REPLY")))
            return 0
        scratch = Ready()  # the acceptor's reply (RACCEPTED) goes nowhere: nobody asked
        self._apply_register(src, RAccept(slot[len(REGISTER_PREFIX):], ballot, state),
                             scratch)
        ready.persist.update(scratch.persist)
        ready.events.extend(scratch.events)
        return len(scratch.persist)

    # ---- status and sync (answered from the core's state; no protocol rule here)

    def status(self, key: str | None) -> StatusReply:
        states: Mapping[str, KeyState] = self.acceptor.states
        keys: Iterable[str] = ([key] if key in states else []) if key is not None else self._keys
        if key is None and self.source is not None:
            states = dict(self._paged("", self.status_page_size + 1, False))
            keys = states

        def entries() -> Iterable[KeyStatus]:
            for k in keys:
                s = states[k]
                yield KeyStatus(k, s.promised, s.accepted, s.value, s.chosen, s.chosen_ballot)

        items, more = page(entries(), self.status_page_size,
                           lambda e: KEY_OVERHEAD_BYTES + len(e.value or b"")
                           + len(e.chosen or b""), STATUS_MAX_BYTES)
        ranges = self.acceptor.ranges.by_prefix
        stats = sorted({**self.stats, "ranges": len(ranges)}.items())
        listed = tuple((p, ranges[p]) for p in sorted(ranges)[:STATUS_MAX_RANGES])
        return StatusReply(self.node_id, tuple(items), more, tuple(stats), listed)

    def register_page(self, after: str) -> RegistersReply:
        """The names of the registers this node holds a state for, after ``after``: their
        slots (``@name``) sort together, so this is one walk down the key index."""
        start = REGISTER_PREFIX + after if after else REGISTER_PREFIX
        limit = self.register_page_size + 1
        if self.source is not None:
            slots = [k for k, _ in self._paged(start, limit, False)]
        else:
            keys = self._keys
            i = bisect.bisect_right(keys, start)
            slots = keys[i:i + limit]
        names = [k[len(REGISTER_PREFIX):] for k in slots if k.startswith(REGISTER_PREFIX)]
        more = len(names) > self.register_page_size
        return RegistersReply(after, tuple(names[:self.register_page_size]), more)

    def sync_page(self, after: str) -> SyncReply:
        states: Mapping[str, KeyState] = self.acceptor.states
        start = bisect.bisect_right(self._chosen, after)
        window = self._chosen[start:start + self.sync_page_size + 1]
        if self.source is not None:
            states = dict(self._paged(after, self.sync_page_size + 1, True))
            window = list(states)

        def entries() -> Iterable[tuple[str, bytes, Ballot]]:
            for k in window:
                s = states[k]
                if s.chosen is not None:
                    yield (k, s.chosen, s.chosen_ballot)

        items, more = page(entries(), self.sync_page_size, lambda e: len(e[1]))
        return SyncReply(after, tuple(items), more)


__all__ = ["CACHE_KEYS", "MAX_DEFERRED_RANGES", "RANGE_PREPARE_ROWS", "RANGE_ROWS_PER_PASS",
           "AcceptorHost", "Caller", "Ready", "StateSource", "page"]
