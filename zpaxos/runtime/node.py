"""An acceptor node: a thin loop of receive, host, persist, send.

One pass of the loop::

    poll (sleep until a message or a signal; no busy waiting)
    -> take every message waiting (up to a batch limit), decoded by the socket layer
    -> hand the whole batch to the pure AcceptorHost, which returns a Ready
    -> commit every state change of the pass in ONE transaction (group commit, fsync)
    -> only then send the pass's replies: one frame per destination (batched wire)
    -> hand newly chosen values to the value-file writer (off the loop)

Everything that decides what to answer lives in the host (hosts/acceptor_host.py), so
the simulator runs it too; this file only moves bytes, fsyncs and logs.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from zpaxos.hosts.acceptor_host import AcceptorHost, Ready
from zpaxos.hosts.addresses import Caller, Src
from zpaxos.hosts.admission import Admission
from zpaxos.hosts.catchup import Cursor, dump_cursors, load_cursors
from zpaxos.hosts.keyrange import SortedKeys, merge
from zpaxos.naming import node_name
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.events import Conflict, Event
from zpaxos.protocol.membership import Config
from zpaxos.protocol.messages import Ballot, Message
from zpaxos.runtime import members as members_chain
from zpaxos.runtime.config import ClusterConfig, NodeConfig
from zpaxos.runtime.curve import Curve
from zpaxos.runtime.datadir import write_atomic
from zpaxos.runtime.faults import crash_point
from zpaxos.runtime.log import EventLog
from zpaxos.runtime.node_members import FollowsChain
from zpaxos.runtime.peers import PeersFile, adopt_self, advice, write_lost
from zpaxos.runtime.sockets import SignalWakeup, Sockets, node_routing_id, peer_name
from zpaxos.runtime.storage import MemoryStore, SqliteStore
from zpaxos.runtime.storage_errors import StateLost
from zpaxos.runtime.valuefiles import ValueFiles

if TYPE_CHECKING:
    from zpaxos.runtime.metrics import NodeMetrics

# A learned decision (Ready.lazy) waits for the next commit at most this long when the
# node goes idle, and at most this many wait at once.
LAZY_FLUSH_S = 0.02
LAZY_MAX_KEYS = 10_000
# Where a node keeps its catch-up cursors, one per peer (hosts/catchup.py), and how
# often at most it writes them (an older saved cursor only means fetching some keys
# again after a crash; a write per page would cost an fsync per page under load).
CURSORS_NAME = "catchup.json"
CURSORS_SAVE_S = 1.0


class WithPending:
    """The store as the host must read it: the durable rows, overlaid with the learned
    decisions still waiting for a commit (``pending()``, the node's Ready.lazy backlog).
    Without it a key evicted from the host's cache would read back its state from before
    the decision, and the decision would be forgotten (and overwritten by the next commit
    of that key)."""

    def __init__(self, store: SqliteStore | MemoryStore,
                 pending: Callable[[], Mapping[str, KeyState]]) -> None:
        self.store = store
        self.pending = pending
        # pending()'s keys in order, for RangePrepares: sorted again whenever pending()
        # is another dict or has another size, which is exact because the dict it returns
        # only ever gains keys until it is replaced by a new one (Node._commit); it must
        # never be emptied in place.
        self._pending_keys = SortedKeys()

    def get(self, keys: Collection[str]) -> dict[str, KeyState]:
        lazy = self.pending()
        out = self.store.get([k for k in keys if k not in lazy] if lazy else keys)
        if lazy:
            out.update((k, lazy[k]) for k in keys if k in lazy)
        return out

    def page(self, after: str, limit: int, chosen_only: bool = False
             ) -> list[tuple[str, KeyState]]:
        rows = self.store.page(after, limit, chosen_only)
        lazy = self.pending()
        if not lazy:
            return rows
        merged = dict(rows)
        merged.update((k, s) for k, s in lazy.items()
                      if k > after and (s.chosen is not None or not chosen_only))
        return sorted(merged.items())[:limit]

    @property
    def incarnation(self) -> bytes:
        return self.store.incarnation

    def learned_from(self, pos: int, limit: int) -> list[str]:
        """The store's learn log alone: a decision still waiting for its commit is not
        listed to a peer until it is durable (it gets its position then)."""
        return self.store.learned_from(pos, limit)

    def prefixed(self, prefix: str, limit: int) -> list[tuple[str, KeyState]]:
        rows = self.store.prefixed(prefix, limit)
        extra = self._pending_keys.prefixed(self.pending(), prefix)
        return merge(rows, extra, limit) if extra else rows


def src_name(src: Src | None) -> str | None:
    if src is None:
        return None
    return peer_name(src.ident) if isinstance(src, Caller) else node_name(src)


class Node(FollowsChain):
    def __init__(self, cluster: ClusterConfig, node_id: int, log: EventLog,
                 store: SqliteStore | MemoryStore | None = None, new: bool = False,
                 metrics_at: tuple[str, int] | None = None,
                 members: Config | None = None) -> None:
        """``new``: the store was started empty on purpose (``zpaxos node ID --new``).
        ``metrics_at``: (host, port) to serve Prometheus metrics on while running.
        ``members``: the cluster's configuration as a member told it (``--join``); the
        chain this node holds wins when it is newer (runtime/members.py)."""
        self.cfg: NodeConfig = cluster.node(node_id)
        self.log = log
        # CURVE keys first: a missing or bad key is a config error (ConfigError), found
        # before the database is touched.
        self.keys = cluster.node_keys(node_id)
        # SqliteStore raises StorageError over a damaged database: the node never starts.
        self.store = store if store is not None else SqliteStore(self.cfg.data_dir)
        # The membership: the newest configuration this node holds or was told; without
        # one, the INI file's nodes (epoch 0: no chain yet).
        held = members_chain.latest(self.store)
        self.members = held if members is None or (held and held.epoch >= members.epoch) \
            else members
        if self.members is not None:
            if self.members.member(node_id) is None:
                raise members_chain.NotAMember(
                    f"{node_name(node_id)} is not a member of the cluster's configuration"
                    f" ({members_chain.describe(self.members)})")
            cluster = members_chain.apply(cluster, self.members)
            self.cfg = cluster.node(node_id)
        self.cluster = cluster
        peers = [n.id for n in cluster.nodes if n.id != node_id]
        self._cursors_path = self.cfg.data_dir / CURSORS_NAME
        cursors = self._load_cursors(peers) if isinstance(self.store, SqliteStore) and not new \
            else {}
        pending = WithPending(self.store, lambda: self._lazy)
        # Nothing is loaded up front: the host reads each key's durable state (checksum
        # verified) the first time a pass names it, and keeps a bounded cache, so a node
        # with a million keys starts at once and stays small.
        self.host = AcceptorHost(node_id, {}, peers, check_client_decides=cluster.security.curve,
                                 ranges=self.store.load_ranges(), source=pending,
                                 catch_up_s=cluster.options.catch_up_s, learn=pending,
                                 cursors=cursors)
        self.host.counters = self._counters
        self.keys_known = self.store.count()
        self.decided = self.store.count_chosen()  # status: decided keys this node knows
        # Cursors the host moved, saved once what they cover is durable (_save_cursors).
        self._cursors_wait: dict[int, Cursor] = {}
        self._cursors_saved: dict[int, Cursor] = dict(cursors)
        self._cursors_saved_at = 0.0
        # The chosen values of the keys value_files matches (none for an empty glob), read
        # now so that a damaged row among them stops the node before it starts serving.
        self._files_at_start = self.store.chosen_matching(self.cfg.value_files)
        # What this node remembers of its peers, and of itself (peers.json): only with a
        # real data directory. adopt_self raises StateLost over swapped state files.
        self.peers_file: PeersFile | None = None
        fresh = new
        if isinstance(self.store, SqliteStore):
            self.peers_file = PeersFile(self.cfg.data_dir).load()
            fresh = adopt_self(self.peers_file, node_id, self.store.incarnation,
                               self.store.commit_seq, new)
        self.admission = Admission(self.host, node_id, peers, self.store.incarnation,
                                   self.store.commit_seq, fresh,
                                   self.peers_file.peers if self.peers_file else {},
                                   curve=cluster.security.curve, boot=os.urandom(8))
        self.admission.decided = lambda: self.decided
        if self.members is not None:
            self.admission.members = frozenset(self.members.ids) - {node_id}
            self.admission.epoch = self.members.epoch
            self.admission.config = members_chain.encode(self.members)
        self.sockets: Sockets | None = None
        self.removed_at: int | None = None  # the epoch that left this node out, if one did
        self.values = ValueFiles(self.cfg.data_dir, self.cfg.value_files, log)
        self.passes = 0
        self.longest_pass_s = 0.0  # the loop's longest pass since start (status, metrics)
        self.commits = 0
        self.learned = 0  # decisions learned (recorded as chosen) since the start
        self.peer_names = {p: node_name(p) for p in peers}
        # Learned decisions not yet committed: only ever gains keys, and is replaced (never
        # emptied in place) once committed, as WithPending requires.
        self._lazy: dict[str, KeyState] = {}
        self._learned: list[tuple[str, bytes]] = []  # values for the files, once durable
        self.metrics_at = metrics_at
        self.metrics: NodeMetrics | None = None
        if metrics_at is not None:
            from zpaxos.runtime.metrics import NodeMetrics  # prometheus_client: only then

            self.metrics = NodeMetrics(self)

    @property
    def pending_decisions(self) -> Mapping[str, KeyState]:
        """Learned decisions waiting for a commit to carry them (Ready.lazy)."""
        return self._lazy

    # ---- life cycle

    def run(self, wakeup: SignalWakeup | None = None,
            on_ready: Callable[[Node], None] | None = None) -> None:
        """Serve until SIGINT/SIGTERM (or ``wakeup.request_stop()``)."""
        own_wakeup = wakeup is None
        if wakeup is None:
            wakeup = SignalWakeup()
            wakeup.install()
        me = self.cfg.id
        curve = None
        if self.keys is not None:
            curve = Curve.for_node(self.keys, {n.id: n.public_key for n in self.cluster.nodes
                                               if n.public_key is not None},
                                   self.cluster.security.authorized_clients or {})
        try:
            self.sockets = Sockets(
                self.log, f"n{me}",
                {n.id: n.endpoint for n in self.cluster.nodes if n.id != me},
                lambda peer: node_routing_id(me, peer), bind=self.cfg.bind_endpoint,
                wakeup=wakeup, curve=curve, watch=self.metrics is not None)  # watch: peers up
            self.sockets.wire.epoch = self.admission.epoch
            if self.metrics is not None and self.metrics_at is not None:
                self.metrics.serve(*self.metrics_at)  # BindError, as for the node's port
            # where it listens, when not where the others reach it ([node.N] bind)
            bind: dict[str, Any] = {"bind": self.cfg.bind_endpoint} if self.cfg.bind else {}
            self.log.event("start", endpoint=self.cfg.endpoint, data_dir=str(self.cfg.data_dir),
                           keys=self.keys_known, role="node",
                           security="curve" if curve else "none", **bind)
            self.values.rebuild(self._files_at_start)
            self._files_at_start = []
            # Hello to the peers; once they clear it, sync what was missed while down.
            self._do(self.admission.start(time.monotonic()))
            if on_ready:
                on_ready(self)
            self._loop(self.sockets)
            self.log.event("stop", signal=wakeup.signal_name or None, passes=self.passes,
                           commits=self.commits, malformed=self.sockets.wire.malformed)
        finally:
            if own_wakeup:
                wakeup.close()
            self.close()

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        if self.sockets is not None:
            self.sockets.close()
            self.sockets = None
        self.values.close()
        if self._cursors_wait and not self._lazy:
            self._save_cursors(now=True)
        self.store.close()

    # ---- the loop

    def _loop(self, sockets: Sockets) -> None:
        admission, store = self.admission, self.store
        timing = self.metrics.pass_seconds if self.metrics is not None else None
        while not sockets.stop_requested:
            # No timers but two: learned decisions that have waited long enough for a
            # commit to carry them, and admission's Hellos (None: nothing due, so sleep
            # until something arrives).
            at = admission.next_due()
            timeout = LAZY_FLUSH_S if self._lazy else None
            if at is not None:
                wait = max(0.0, at - time.monotonic())
                timeout = wait if timeout is None else min(timeout, wait)
            # Now: RangePrepares a pass left for the next, or a fold under way (a slice
            # per pass, storage_fold.py: an idle node finishes it at once).
            folding = store.folding
            batch = sockets.poll(0.0 if folding or self.host.deferred else timeout)
            t0 = time.perf_counter()
            handled = bool(batch) or bool(self.host.deferred)
            if handled:
                self.passes += 1
                self.host.now = time.monotonic()  # watchers' leases (hosts/watchers.py)
                self._do(admission.handle(batch))
            elif folding:
                store.seal()  # the fold's next step (learned decisions wait for its end)
            elif self._lazy:
                self._commit({})
                store.seal()
            took = time.perf_counter() - t0
            if took > self.longest_pass_s:
                self.longest_pass_s = took
            if timing is not None and handled:
                timing.observe(took)
            if at is not None:
                now = time.monotonic()
                if now >= at:  # (not every pass: a watcher owed a note keeps a timer set)
                    self._do(admission.due(now))
        if self._lazy:
            self._commit({})  # stopping: what was learned is made durable too

    def _counters(self) -> dict[str, int]:
        """The socket layer's and admission's counters, read when a status reply is built
        (the host calls this; nothing is counted on the loop's passes for it)."""
        sockets = self.sockets
        if sockets is None:
            return {}
        stats: dict[str, int] = {}
        stats["malformed"] = sockets.wire.malformed
        stats["undeliverable"] = sockets.wire.undeliverable
        if sockets.zap is not None:
            stats["refused"] = sockets.zap.refused
            stats["handshakes_closed"] = sockets.zap.closed
        stats["voting"] = int(self.admission.voting)
        stats["syncing"] = self.admission.syncing
        stats["not_voting_dropped"] = self.admission.dropped
        stats["decided"] = self.decided
        stats["longest_pass_us"] = int(self.longest_pass_s * 1e6)
        # objects out of the collector's way: a `zpaxos node` process freezes what it
        # loaded once up (runtime/gctune.py); 0 for a node run inside another program
        stats["gc_frozen"] = gc.get_freeze_count()
        follower = self.host.follower
        if follower is not None:
            stats["caught_up_keys"] = follower.learned_total
            if follower.last_caught_up is not None:
                stats["caught_up_ms_ago"] = int(1000 * max(0.0, time.monotonic()
                                                           - follower.last_caught_up))
        return stats

    def _do(self, ready: Ready) -> None:
        self._lazy.update(ready.lazy)
        chain = False
        if ready.learned:
            for key, value in ready.learned:
                if key.startswith(members_chain.PREFIX):
                    chain = self._learn_members(key, value) or chain
            self._learned += ready.learned
            self.learned += len(ready.learned)
            self.decided += len(ready.learned)
        # A new configuration is made durable at once: the node says it is in that epoch
        # (MembersInfo) only from the next pass on, and must never fall back from it.
        if ready.persist or ready.ranges or chain or len(self._lazy) >= LAZY_MAX_KEYS:
            # Persist, then send: the replies below promise or report state that must
            # survive a crash; if this commit fails, StorageError stops the node and no
            # reply leaves.
            self._commit(ready.persist, ready.ranges)
        if ready.peers_changed and self.peers_file is not None:
            self.peers_file.save()  # what we remember of the peers, before we answer them
        if ready.send:
            self._send_all(ready.send)
        self.store.seal()  # the commit's marker, and folding the journal: after the replies
        if ready.cursors:
            self._cursors_wait.update(ready.cursors)
        if self._cursors_wait and not self._lazy:
            self._save_cursors()  # everything the host knows is durable now (when due)
        for peer, n in ready.caught:  # before what it learned: a chart of a key shows both
            self.log.event("caught_up", keys=n, peer=node_name(peer))
        for src, ev in ready.events:
            self._log_event(src, ev)
        if ready.notes or ready.refusal is not None:
            self._after(ready)  # (becoming a voter always comes with a note)

    def _commit(self, persist: dict[str, KeyState],
                ranges: dict[str, Ballot] | None = None) -> None:
        """One transaction (fsynced) of ``persist`` and every learned decision still
        waiting (Ready.lazy: no reply depended on those, so they ride along with the next
        commit rather than each costing one: a sequential run's Decide pass no longer
        commits). Then the value files get what is now durable."""
        t0 = time.perf_counter()
        batch, self._lazy = self._lazy, {}
        batch.update(persist)  # a key's latest state wins
        self.store.save(batch.items(), (ranges or {}).items())
        self.admission.commit_seq = self.store.commit_seq
        crash_point("after_commit")  # tests only: durable, and no reply sent yet
        self.commits += 1
        if self.log.enabled(logging.INFO):
            self.log.event("persisted", keys=len(batch),
                           ms=round((time.perf_counter() - t0) * 1000, 3))
        learned, self._learned = self._learned, []
        for key, value in learned:
            self.values.submit(key, value)
        if self._cursors_wait:
            self._save_cursors()  # after the values they cover (this commit held them all)

    # ---- catch-up cursors (hosts/catchup.py)

    def _load_cursors(self, peers: list[int]) -> dict[int, Cursor]:
        """The saved cursors, if they are this database's: cursors saved by another
        incarnation (before a --new) would skip what this one never learned."""
        try:
            doc = json.loads(self._cursors_path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            self.log.event("catch_up_cursors_unreadable", level=logging.WARNING,
                           path=str(self._cursors_path))
            return {}
        if not isinstance(doc, dict) or doc.get("incarnation") != self.store.incarnation.hex():
            return {}
        return load_cursors(doc.get("peers"), peers)

    def _save_cursors(self, now: bool = False) -> None:
        """Save the cursors (at most every CURSORS_SAVE_S, unless ``now``): only ever
        called when every value they cover is durable (persist, then the cursor; a cursor
        ahead of its values would skip them for good after a crash)."""
        t = time.monotonic()
        if not now and t - self._cursors_saved_at < CURSORS_SAVE_S:
            return  # kept waiting: saved by a later call, once due
        self._cursors_saved_at = t
        self._cursors_saved.update(self._cursors_wait)
        self._cursors_wait.clear()
        if not isinstance(self.store, SqliteStore):
            return
        doc = {"incarnation": self.store.incarnation.hex(),
               "peers": dump_cursors(self._cursors_saved)}
        try:
            write_atomic(self._cursors_path, json.dumps(doc).encode() + b"\n")
        except OSError as e:  # an older cursor only means fetching some keys again
            self.log.event("catch_up_cursors_unsaved", level=logging.WARNING, error=str(e))

    def _after(self, ready: Ready) -> None:
        """What admission handed over: notes for the log, and a peer's refusal."""
        admission = self.admission
        for note in ready.notes:
            self._log_note(note.name, note.fields)
        if ready.refusal is not None:
            self._refuse(ready.refusal)
        if admission.fresh and admission.voting and self.peers_file is not None:
            # Every peer took the new incarnation and it learned every decision: once that
            # is durable, later restarts are ordinary ones (quorum - 1 peers, no learning).
            if self._lazy:
                self._commit({})
            assert self.peers_file.me is not None
            self.peers_file.me.fresh = admission.fresh = False
            self.peers_file.save()

    def _log_note(self, name: str, fields: dict[str, Any]) -> None:
        # Literal event names: the docs' list of events is checked against them.
        log = self.log
        if name == "admitted":
            log.event("admitted", **fields)
        elif name == "voting":
            log.event("voting", **fields)
        elif name == "peer_refused":
            log.event("peer_refused", level=logging.WARNING, **fields)
        else:
            log.event("peer_new_incarnation", level=logging.WARNING, **fields)

    def _refuse(self, why: str) -> None:
        """A peer says this node lost state: record it (so every later start refuses too,
        and --new is allowed) and stop with StateLost (exit 4)."""
        text = f"{self.cfg.data_dir}: {why}; {advice()}"
        if self.peers_file is not None:
            write_lost(self.cfg.data_dir, text)
        raise StateLost(text)

    def _send_all(self, sends: list[tuple[Src, Message]]) -> None:
        """One frame per destination for the whole pass (the batched wire)."""
        assert self.sockets is not None
        self.sockets.send_all(sends)

    def _log_event(self, src: Src | None, ev: Event) -> None:
        level = logging.ERROR if isinstance(ev, Conflict) else logging.INFO
        if self.log.enabled(level):  # the fields cost more than the check
            self.log.event(ev.name, level=level, peer=src_name(src), **ev.fields(node_name))
