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

The host is one class in parts, each a mixin in its own module so that no call costs more
than it did when they were one: the read-only answers and pages (acceptor_pages.py),
catching up (acceptor_catchup.py), the checks of client Decides (acceptor_checks.py) and
the paced RangePrepares (acceptor_ranges.py); what they share, :class:`Ready` first, is
in acceptor_ready.py. Here: the batch's dispatch, the Paxos and register messages, the
cache and the watchers.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence

from zpaxos.hosts import catchup
from zpaxos.hosts.acceptor_catchup import CatchUpMixin
from zpaxos.hosts.acceptor_checks import MAX_CHECKS, ChecksMixin
from zpaxos.hosts.acceptor_pages import (
    KEY_OVERHEAD_BYTES,
    REGISTER_PAGE,
    REPLY_MAX_VALUE_BYTES,
    STATUS_MAX_BYTES,
    STATUS_MAX_KEYS,
    STATUS_MAX_RANGES,
    SYNC_PAGE,
    PagesMixin,
    page,
)
from zpaxos.hosts.acceptor_ranges import (
    MAX_DEFERRED_RANGES,
    RANGE_PREPARE_ROWS,
    RANGE_ROWS_PER_PASS,
    RangesMixin,
)
from zpaxos.hosts.acceptor_ready import (
    ACCEPTED,
    ANSWERED,
    CHECKING,
    CONFLICT,
    DECIDED,
    HANDLED,
    IGNORED,
    KNOWN,
    LEARNED,
    NACKED,
    PROMISED,
    Note,
    Ready,
    StateSource,
    outcome_of,
)
from zpaxos.hosts.acceptor_rows import COLUMNS, RowsMixin, unpacked
from zpaxos.hosts.addresses import Caller, Src
from zpaxos.hosts.watchers import Watchers
from zpaxos.protocol.core import Acceptor, KeyState, Learner
from zpaxos.protocol.events import Ignored, Learned
from zpaxos.protocol.messages import (
    Accept,
    Accepted,
    AcceptedAt,
    Accepts,
    Ballot,
    CatchUp,
    CatchUpReply,
    CheckAccepted,
    Decide,
    Decides,
    Fetch,
    FetchReply,
    Message,
    Prepare,
    Prepares,
    ProtocolMessage,
    RangePrepare,
    RegistersRequest,
    RNotify,
    RWatch,
    StatusRequest,
    SyncReply,
    SyncRequest,
    UndecidedRequest,
)
from zpaxos.protocol.register import RegAcceptor
from zpaxos.protocol.registry import REGISTER_TYPES, TO_ACCEPTOR_TYPES, type_name
from zpaxos.protocol.regmessages import RAccept, RegisterMessage, decode_state, register_slot

# States a host with a ``source`` keeps in memory (a few hundred bytes each); a pass's
# keys are always there, whatever this says.
CACHE_KEYS = 50_000
# Status and sync pages built in one pass: one frame can ask for thousands, and each page
# is built in memory before anything is sent; the rest are ignored (asked again, they are
# answered in a later pass).
MAX_PAGES_PER_PASS = 64


class AcceptorHost(PagesMixin, CatchUpMixin, ChecksMixin, RangesMixin, RowsMixin):
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
        it learned since ``cursors`` (hosts/catchup.py); 0: a start walks the peers'
        chosen keys instead, and nothing is timed. ``learn``: this node's learn index
        (its store), which answers the peers' catch-up requests."""
        self.node_id = node_id
        self.peers = tuple(peers)
        self.check_client_decides = check_client_decides
        # Client Decides being checked: the core's Learner counts the confirmations.
        self._checks: dict[tuple[str, Ballot, bytes], None] = {}  # ordered: oldest first
        self._learner = Learner((node_id, *self.peers))
        self.stats: dict[str, int] = {}  # counters the host keeps (status shows them)
        # The runtime's own counters (sockets, admission), read only when a status reply
        # is built: never kept up to date on every pass.
        self.counters: Callable[[], Mapping[str, int]] | None = None
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
        # Register watchers (hosts/watchers.py), told when this node accepts a new
        # state; their leases run on ``now``, the time as the loop last said it (the host
        # never reads a clock).
        self.watchers = Watchers(spread=node_id)  # (each node tells its owed in its own order)
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
        """Timed work at ``now``: the periodic catch-up requests, and their retries; the
        notifications the watchers' pacing owes (hosts/watchers.py)."""
        if self.follower is not None:
            sends, moved = self.follower.tick(now, self._lacks)
            ready = Ready(send=list[tuple[Src, Message]](sends), cursors=moved)
        else:
            ready = Ready()
        if self.watchers:
            ready.send.extend((w, RNotify(key, version, True))
                              for w, key, version in self.watchers.due(now))
        return ready

    @property
    def next_tick(self) -> float | None:
        follower = (self.follower.next_due() if self.follower is not None and self.peers
                    else None)
        owed = self.watchers.next_due() if self.watchers else None
        if follower is None or owed is None:
            return owed if follower is None else follower
        return min(follower, owed)

    def handle(self, batch: Iterable[tuple[Src, Message]]) -> Ready:
        ready = Ready()
        batch = unpacked(batch, self.check_client_decides)
        if self.source is not None:
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
            # idle until now: a Paxos message ends it (catchup.active)
            if any(type(m) in TO_ACCEPTOR_TYPES for _, m in batch):
                self.follower.active()
        apply = self._apply
        check_decides = self.check_client_decides
        for src, msg in batch:
            t = type(msg)
            # The protocol's own messages first, in one test each (most of every batch):
            # a run of them as columns, in one loop of the core's rules (colmessages.py).
            if t is Accepts or t is Prepares or (t is Decides and not check_decides):
                self._apply_rows(src, msg, ready)  # type: ignore[arg-type]
                continue
            if t is Accept or t is Prepare or (t is Decide and not check_decides):
                apply(src, msg, ready)  # type: ignore[arg-type]
                continue
            if isinstance(msg, (StatusRequest, SyncRequest, RegistersRequest, CatchUp, Fetch,
                                UndecidedRequest)):
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
                                  CatchUp, Fetch, UndecidedRequest)):
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
            elif type(msg) in COLUMNS:
                want.update(msg.keys)  # type: ignore[union-attr,arg-type]
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

    def _apply_register(self, src: Src, msg: RegisterMessage, ready: Ready) -> None:
        slot = register_slot(msg.key)
        known = slot in self.acceptor.states
        watchers = self.watchers
        if watchers and isinstance(src, Caller):
            watchers.rearm(src, msg.key)  # it reads the register: bounded fan-out
        # No watch armed (the usual case on a busy watched register: each watcher is
        # notified once per read it makes): nothing to decode, no one to tell.
        watched = bool(watchers) and type(msg) is RAccept and watchers.armed(msg.key)
        before = self.registers.state(msg.key)[1].version if watched else 0
        step = self.registers.handle(src, msg)
        if watched and step.persist:
            # A new state accepted: tell the watchers (after it is durable, as every send).
            # Only a hint: a watcher reads the register to learn what was chosen.
            version = decode_state(step.persist[-1][1].value or b"").version
            if version > before:
                note = RNotify(msg.key, version, True)
                ready.send.extend((w, note)
                                  for w in watchers.notify(msg.key, self.now, version))
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
        that missed a change while it was away reads again), or that it was refused. A
        watch owed a notification gets none now: the notification, when the pacing lets
        it go, is the answer (an answer now would be a read past the pacing; the wire
        stays as older clients read it)."""
        ok = self.watchers.watch(self.now, src, msg.key)
        if ok and self.watchers.owes(src, msg.key):
            return
        ready.send.append((src, RNotify(msg.key, self.registers.state(msg.key)[1].version, ok)))


# The names moved to the host's parts stay importable from here, as they always were.
__all__ = ["ACCEPTED", "ANSWERED", "CACHE_KEYS", "CHECKING", "CONFLICT", "DECIDED", "HANDLED",
           "IGNORED", "KEY_OVERHEAD_BYTES", "KNOWN", "LEARNED", "MAX_CHECKS",
           "MAX_DEFERRED_RANGES", "MAX_PAGES_PER_PASS", "NACKED", "PROMISED",
           "RANGE_PREPARE_ROWS", "RANGE_ROWS_PER_PASS", "REGISTER_PAGE",
           "REPLY_MAX_VALUE_BYTES", "STATUS_MAX_BYTES", "STATUS_MAX_KEYS", "STATUS_MAX_RANGES",
           "SYNC_PAGE", "AcceptorHost", "Caller", "Note", "Ready", "StateSource", "outcome_of",
           "page"]

