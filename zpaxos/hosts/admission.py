"""Admission: a (re)started node votes only once its peers agree it has not lost state.

:class:`Admission` wraps a node's :class:`~zpaxos.hosts.acceptor_host.AcceptorHost`
and, like it, is pure (no sockets, disk or clock: the node loop and the simulator pass
the time in). It adds the Hello exchange of :mod:`zpaxos.runtime.peers`:

* **Every start** sends ``Hello(me, incarnation, commit_seq, fresh)`` to every peer, and
  every node answers a Hello at once, whatever its own phase, with its verdict and what
  it remembered (:func:`~zpaxos.runtime.peers.judge`). Answering needs no vote, so nodes
  that start together never wait for each other: a full-cluster start or restart clears
  in one round trip.
* **Checking.** Until ``quorum - 1`` peers said OK the node votes on nothing and writes
  nothing: protocol messages are held (bounded) and handled once it is cleared; status,
  sync and check requests (read-only) are answered. ``quorum - 1`` peers are always
  reachable when the node could be useful at all (any quorum it joins has that many
  others), and waiting for more would cost availability when some are down. Any peer's
  refusal (rolled back, replaced, retired), even after clearing, stops the node.
* **A fresh incarnation** (``--new``) must not vote on keys it forgot. Once *every* peer
  accepted its new incarnation it syncs every chosen value from every peer, and until
  that sync is complete it is a learner: it records decisions and answers Prepares and
  Accepts only for keys it knows chosen (with the decision, which is a fact); others are
  dropped, as if it were down. Then it votes. See "Rejoining empty" in docs/operating.md for why
  this, together with the operator's steps, is what makes rejoining safe, and why no
  rule inside the node can make it safe alone.
* **While voting** it sends a Hello to every peer about once a second while its commit
  count advances, so the peers' memory of it stays close behind.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence

from zpaxos.hosts.acceptor_host import AcceptorHost, Note, Ready
from zpaxos.hosts.addresses import Caller, Src
from zpaxos.hosts.verdicts import OK, STALE, VERDICTS, PeerRecord, judge, refusal_text
from zpaxos.naming import node_name
from zpaxos.protocol.columns import rows
from zpaxos.protocol.core import KeyState, quorum_size
from zpaxos.protocol.messages import (
    Accept,
    AcceptedAt,
    Accepts,
    CatchUp,
    CheckAccepted,
    Decide,
    Fetch,
    Hello,
    HelloReply,
    MembersAsk,
    MembersInfo,
    Message,
    Prepare,
    Prepares,
    RAccept,
    RangePrepare,
    RegistersRequest,
    RPrepare,
    RRead,
    RWatch,
    StatusRequest,
    SyncReply,
    SyncRequest,
    UndecidedRequest,
)

HELLO_INTERVAL = 1.0  # s between Hellos while commits advance (and between retries)
RETRY_MAX_FACTOR = 30  # retries back off to at most this many intervals (30 s)
# Protocol messages held while checking, and the bytes of values they carry: past either,
# new ones are dropped (a proposer retries). Keeps a flood during the check bounded.
MAX_HELD = 10_000
MAX_HELD_BYTES = 64 << 20

CHECKING, LEARNING, VOTING, REFUSED = "checking", "learning", "voting", "refused"
# Why admission dropped a message (zpaxos_node_messages_refused_total's reason): peers
# said this node lost its state (it is stopping), it is still learning, its hold for
# the checking phase is full, or a Hello did not come from the peer it names.
STATE_LOST, STILL_LEARNING, HOLD_FULL, NOT_A_PEER, STALE_EPOCH = (
    "state_lost", "still_learning", "hold_full", "not_a_peer", "stale_epoch")
DROP_REASONS = (STATE_LOST, STILL_LEARNING, HOLD_FULL, NOT_A_PEER, STALE_EPOCH)
# What a proposer's frame from an older membership epoch may not get a vote for: its
# quorums are not the cluster's any more (runtime/members.py). A Decide is a fact, and
# read-only requests change nothing: those pass.
# What a sender counts quorums for: from an older epoch, refused (column runs and the
# registers' quorum read too: an old configuration's quorums need not meet this one's).
FENCED = (Prepare, Accept, Prepares, Accepts, RangePrepare, RPrepare, RAccept, RRead)


def _peer_of_routing_id(src: Caller) -> int | None:
    """The node a peer's routing id names (sockets.node_routing_id: ``n:<id>:<peer>:<r>``)."""
    kind, _, rest = src.ident.partition(b":")
    who = rest.partition(b":")[0]
    return int(who) if kind == b"n" and who.isdigit() else None


class Admission:
    """One node's gate (see the module docstring).

    ``memory``: what this node remembers of each peer (updated in place; ``dirty`` says
    it must be saved before the pass's replies leave). ``commit_seq`` is kept current by
    the loop after every commit."""

    def __init__(self, host: AcceptorHost, node_id: int, peers: Sequence[int],
                 incarnation: bytes, commit_seq: int, fresh: bool,
                 memory: dict[int, PeerRecord], curve: bool = False, *,
                 boot: bytes, hello_interval: float = HELLO_INTERVAL,
                 peer_of: Callable[[Caller], int | None] | None = None) -> None:
        """``boot``: 8 random bytes this process drew at its start (an input: the host
        draws nothing itself; the simulator's come from its seed); ``peer_of``:
        which node a caller's routing id says it is (the simulator names callers its own
        way; CURVE's authenticated name is checked on top)."""
        self.hello_interval = hello_interval
        self._gap = hello_interval  # between retries: doubles up to RETRY_MAX_FACTOR times
        self.peer_of = peer_of or _peer_of_routing_id
        self.host = host
        self.boot = boot
        self.node_id = node_id
        self.peers = tuple(peers)
        self.incarnation = incarnation
        self.commit_seq = commit_seq
        self.fresh = fresh
        self.memory = memory
        self.curve = curve
        self.dirty = False
        self.needed = len(self.peers) if fresh else quorum_size(len(self.peers) + 1) - 1
        self.phase = CHECKING
        self.refusal: str | None = None
        self.cleared_by: set[int] = set()
        self.synced: set[int] = set()  # peers whose sync since this start is complete
        self._syncing: set[int] = set()  # peers that sent a sync page since the last due()
        self.notes: list[Note] = []
        self.held: list[tuple[Src, Message]] = []
        self._held_bytes = 0
        self.dropped = 0
        self.dropped_by: dict[str, int] = {}  # the same, by reason (DROP_REASONS)
        # Messages admission itself dealt with, by (type, outcome), as the host counts
        # the ones it handles (AcceptorHost.handled): Hellos, verdicts and drops.
        self.handled: dict[tuple[type, str], int] = {}
        self._hello_at: float | None = None
        self._hello_seq = -1
        # The membership epoch this node is in and its configuration, encoded (set by
        # the loop from the chain it holds; 0 and b"": none, the INI file's nodes).
        self.epoch = 0
        self.config = b""
        # The other members of that configuration: a Hello from one is a peer's, even
        # when it joined after this node started (it catches up from us; we answer it).
        self.members: frozenset[int] = frozenset()
        self.decided: Callable[[], int] = lambda: 0  # decided keys held (the loop's count)

    # ---- what the loop calls

    @property
    def states(self) -> Mapping[str, KeyState]:
        return self.host.states

    @property
    def deferred(self) -> deque[tuple[Src, RangePrepare]]:
        """The host's RangePrepares left for its next pass (the simulator gives it one)."""
        return self.host.deferred

    @property
    def voting(self) -> bool:
        return self.phase == VOTING

    @property
    def syncing(self) -> int:
        """Peers that have not yet sent their last sync page since this start: 0 means the
        node has every decision its peers knew when they answered (caught up). A peer that
        is down keeps it above 0 until it is back (the request waits in our queue to it).
        Catching up, a peer counts once this node reached the end of its learn index."""
        follower = self.host.follower
        done = self.synced | follower.caught_up if follower is not None else self.synced
        return len(set(self.peers) - done)

    def start(self, now: float) -> Ready:
        ready = Ready(send=self._hellos(now, self.peers))
        self._advance(ready)
        return self._hand_over(ready)

    def _hand_over(self, ready: Ready) -> Ready:
        """Put in ``ready`` what the loop must do for admission: log its notes, save what
        it remembers of the peers (before the replies), stop on a refusal."""
        if self.notes:
            ready.notes, self.notes = self.notes, []
        ready.refusal = self.refusal
        ready.peers_changed, self.dirty = self.dirty, False
        return ready

    def handle(self, batch: Iterable[tuple[Src, Message]]) -> Ready:
        mine = Ready()
        forward: list[tuple[Src, Message]] = []
        if self.phase != VOTING:  # each message told apart below: column runs as rows
            batch = [(src, m) for src, msg in batch for m in rows(msg)]
        stale: dict[Caller, int] = {}
        epoch = self.epoch
        for src, msg in batch:
            if epoch > 1 and type(src) is Caller and src.epoch < epoch and \
                    isinstance(msg, FENCED):
                # Safety: the sender counts an older configuration's quorums, which need
                # not meet this one's. Refused, and told the configuration (below).
                stale[src] = stale.get(src, 0) + 1
                self._drop(msg, STALE_EPOCH)
            elif isinstance(msg, MembersAsk):
                mine.send.append((src, self.members_info()))
                self._count(MembersAsk, "handled")
            elif isinstance(msg, Hello):
                self._on_hello(src, msg, mine)
            elif isinstance(msg, HelloReply):
                self._on_verdict(src, msg)
                self._count(HelloReply, "handled")
            elif self.phase == VOTING:
                forward.append((src, msg))
                if isinstance(msg, SyncReply) and isinstance(src, int) and not (
                        msg.more and msg.chosen):  # its last page (as the host pages)
                    self.synced.add(src)
            elif self.phase == REFUSED:
                self._drop(msg, STATE_LOST)
            elif isinstance(msg, (StatusRequest, SyncRequest, RegistersRequest, CheckAccepted,
                                  RWatch, CatchUp, Fetch, UndecidedRequest)):
                forward.append((src, msg))  # read-only: answered in every phase
            elif self.phase == CHECKING:
                self._hold(src, msg)
            elif self._learns(msg):
                forward.append((src, msg))
                if isinstance(msg, SyncReply) and isinstance(src, int):
                    self._syncing.add(src)
                    if not msg.more:
                        self.synced.add(src)
            else:
                self._drop(msg, STILL_LEARNING)
        mine.send.extend((src, self.members_info(n)) for src, n in stale.items())
        # A pass with nothing new still runs the RangePrepares the last one left waiting.
        ready = self.host.handle(forward) if forward or self.host.deferred else Ready()
        ready.send.extend(mine.send)
        self._advance(ready)
        return self._hand_over(ready)

    def members_info(self, refused: int = 0) -> MembersInfo:
        """This node's configuration: an answer, or (``refused`` > 0) a refusal."""
        return MembersInfo(self.node_id, self.epoch, self.config, refused,
                           self.phase == VOTING and self.syncing == 0, self.decided())

    def due(self, now: float) -> Ready:
        """Timed work: the host's (catching up with the peers, once voting), and the
        Hellos (:meth:`_hellos_due`)."""
        ready = self._hellos_due(now)
        if self.phase == VOTING:
            ticked = self.host.tick(now)
            ready.send.extend(ticked.send)
            ready.cursors.update(ticked.cursors)  # (the loop saves them once durable)
        return self._hand_over(ready)

    def next_due(self) -> float | None:
        hello = self._next_hello()
        tick = self.host.next_tick if self.phase == VOTING else None
        if hello is None or tick is None:
            return tick if hello is None else hello
        return min(hello, tick)

    def _hellos_due(self, now: float) -> Ready:
        """A Hello to every peer when commits advanced (voting); else retries,
        backing off up to RETRY_MAX_FACTOR intervals, of the Hellos (and, learning, the
        syncs) that got no answer: a peer that is down gets the queued one when it is back,
        so the retries only cover lost messages."""
        ready = Ready()
        at = self._next_hello()
        if at is None or now < at:
            return ready
        if self.phase == VOTING and self.commit_seq != self._hello_seq:
            ready.send.extend(self._hellos(now, self.peers))
            return ready
        self._gap = min(2 * self._gap, RETRY_MAX_FACTOR * self.hello_interval)
        # A peer that has not answered yet may be the one that knows better.
        ready.send.extend(self._hellos(now, [p for p in self.peers if p not in self.cleared_by]))
        if self.phase == LEARNING:  # a sync that went quiet: its request may be lost
            ready.send.extend((p, SyncRequest("")) for p in self.peers
                              if p not in self.synced and p not in self._syncing)
            self._syncing.clear()
        return ready

    def _next_hello(self) -> float | None:
        if self.phase == REFUSED or not self.peers or self._hello_at is None:
            return None
        if self.phase == VOTING:
            if self.commit_seq != self._hello_seq:
                return self._hello_at + self.hello_interval
            if len(self.cleared_by) == len(self.peers):
                return None  # nothing new to tell, and every peer has answered: sleep
        return self._hello_at + self._gap

    # ---- inside

    def _hellos(self, now: float, to: Iterable[int]) -> list[tuple[Src, Message]]:
        self._hello_at, self._hello_seq = now, self.commit_seq
        hello = Hello(self.node_id, self.boot, self.incarnation, self.commit_seq, self.fresh)
        return [(p, hello) for p in to]

    def _count(self, t: type, outcome: str) -> None:
        self.handled[t, outcome] = self.handled.get((t, outcome), 0) + 1

    def _drop(self, msg: Message, reason: str) -> None:
        self.dropped += 1
        self.dropped_by[reason] = self.dropped_by.get(reason, 0) + 1
        self._count(type(msg), REFUSED)

    def _learns(self, msg: Message) -> bool:
        """What a fresh incarnation handles while it is still learning."""
        if isinstance(msg, (Prepare, Accept)):
            state = self.host.states.get(msg.key)
            return state is not None and state.chosen is not None
        return isinstance(msg, (Decide, SyncReply, AcceptedAt))

    def _hold(self, src: Src, msg: Message) -> None:
        value = getattr(msg, "value", None)
        size = len(value) if isinstance(value, bytes) else 0
        if len(self.held) >= MAX_HELD or self._held_bytes + size > MAX_HELD_BYTES:
            self._drop(msg, HOLD_FULL)
            return
        self._held_bytes += size
        self.held.append((src, msg))

    def _from_peer(self, src: Src, node: int) -> bool:
        """Is a Hello that says it is from ``node`` really from that peer's node socket?"""
        if (node not in self.peers and node not in self.members) or not isinstance(src, Caller):
            return False
        if self.curve and src.user != f"node:{node_name(node)}":
            return False
        return self.peer_of(src) == node

    def _on_hello(self, src: Src, msg: Hello, out: Ready) -> None:
        if not self._from_peer(src, msg.node):
            self._drop(msg, NOT_A_PEER)
            return
        old = self.memory.get(msg.node)
        verdict, new = judge(old, msg.incarnation, msg.commit_seq, msg.fresh, msg.boot)
        if verdict == STALE:
            self._count(Hello, "ignored")
            return  # a delayed or duplicated Hello of a process we heard further from
        self._count(Hello, "answered")
        if new is not None:
            self.memory[msg.node] = new
            self.dirty = True
            if old is not None and new.incarnation != old.incarnation:  # --new
                self.notes.append(Note("peer_new_incarnation", {
                    "peer": node_name(msg.node), "was": old.incarnation[:4].hex(),
                    "now": new.incarnation[:4].hex()}))
        if verdict != OK:
            self.notes.append(Note("peer_refused", {
                "peer": node_name(msg.node), "verdict": VERDICTS[verdict],
                "incarnation": msg.incarnation[:4].hex(), "commit_seq": msg.commit_seq}))
        known = old.incarnation if old is not None else b""
        out.send.append((src, HelloReply(self.node_id, msg.boot, verdict, known,
                                         old.commit_seq if old is not None else 0)))

    def _on_verdict(self, src: Src, msg: HelloReply) -> None:
        if (not isinstance(src, int) or src != msg.node or msg.boot != self.boot
                or self.phase == REFUSED):
            return  # only a peer's answer to this process, on our own socket to it, counts
        if msg.verdict == OK:
            self.cleared_by.add(src)
            return
        self.phase = REFUSED
        self.held.clear()
        self._held_bytes = 0
        self.refusal = refusal_text(msg.verdict, src, self.node_id, msg.incarnation,
                                    msg.commit_seq, self.incarnation, self.commit_seq)

    def _advance(self, ready: Ready) -> None:
        """Move on when the verdicts and syncs allow; what that releases joins ``ready``."""
        if self.phase == CHECKING and len(self.cleared_by) >= self.needed:
            self.phase = LEARNING if self.fresh else VOTING
            self.notes.append(Note("admitted", {
                "by": [node_name(p) for p in sorted(self.cleared_by)],
                "phase": self.phase}))
            held, self.held, self._held_bytes = self.held, [], 0
            start = self.host.start()  # sync from the peers what was chosen meanwhile
            if self.fresh:
                # Sync from every peer; each answers with its whole chosen set.
                start = Ready(send=[(p, SyncRequest("")) for p in self.peers])
            ready.send.extend(start.send)
            if held:
                later = self.handle(held)  # handled by the phase just entered
                ready.persist.update(later.persist)
                ready.ranges.update(later.ranges)
                ready.lazy.update(later.lazy)
                ready.send.extend(later.send)
                ready.learned.extend(later.learned)
                ready.events.extend(later.events)
        if self.phase == LEARNING and self.synced >= set(self.peers):
            self.phase = VOTING
            self.notes.append(Note("voting", {"synced_from": [node_name(p)
                                                              for p in sorted(self.synced)]}))


__all__ = ["CHECKING", "HELLO_INTERVAL", "LEARNING", "REFUSED", "VOTING", "Admission", "Note"]
