"""Watching a register: each new state as it happens, on a Client's sockets.

    with Client(load_config()) as c:
        for state in c.watch("config"):
            print(state)                    # config = 'v7' (version 7)

How (docs/coordination.md, "Watch"): the watcher sends an RWatch to every node and renews
it every WATCH_RENEW_S (a node holds it for a lease, and forgets it when restarted: the
renewal puts it back). A node that accepts a newer state of the register sends an
RNotify(name, version). A notification is only a hint, never reported as such: the watcher
then reads the register (a linearizable ``get``) and yields what the read returned, if
its version is above the last one yielded. So:

* versions only go up (the watcher yields a version only above the last);
* every state yielded is the register's linearizable state at some moment (a read
  returned it);
* no change is missed silently: a register keeps no log, so states overwritten before
  the read are gone, and the watch says so (``skipped``: versions 5-6 not seen). A lost
  notification is caught by the next one, or at the latest by the next renewal's answer,
  which carries the node's version.

The watcher does not poll the cluster: between changes it only renews its watches.

Many watchers of one register in one process share one watch (:class:`SharedWatch`): the
nodes hold one entry and send one notification for all of them, and one confirming read
serves them all. The read writes nothing (a quorum read, protocol/register.py), so it does
not take a writer's 1-RTT promise away.
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from zpaxos.hosts.watchers import (
    MAX_WATCHERS_PER_REGISTER,
    MAX_WATCHES,
    MAX_WATCHES_PER_CALLER,
    WATCH_RENEW_S,
)
from zpaxos.printable import printable
from zpaxos.protocol.messages import RNotify, RWatch
from zpaxos.protocol.regops import CAS_FAILED, OK

if TYPE_CHECKING:
    from zpaxos.protocol.regops import RegisterOptions, RegResult
    from zpaxos.runtime.config import ClusterConfig
    from zpaxos.runtime.register_client import Registers
    from zpaxos.runtime.sockets import Sockets


class Client(Protocol):
    """What a watch needs of a zpaxos.runtime.client.Client (named so, without the
    import: the Client imports this module)."""

    cluster: ClusterConfig
    sockets: Sockets

    def register_options(self, one_rtt: bool = True, **overrides: Any) -> RegisterOptions: ...

    def _registers(self) -> Registers: ...

    def _stop(self) -> None: ...

__all__ = ["SharedWatch", "WatchRefused", "WatchSession", "WatchState", "watch"]

RENEWAL, REARM = True, False  # why an RWatch was sent (WatchSession.asked)
READ_RETRY_S = 0.05  # a confirming read that found no quorum is tried again after this
# Confirming reads start at most once per READ_GAP_S on average, with a burst of
# READ_BURST (a token bucket, kept as the time its next token is due): changes faster than
# that are coalesced into one read (the watch reports the latest, and says which versions
# it skipped). It bounds what a watcher costs the cluster however fast the register
# changes, for at most READ_GAP_S of added latency (the target is 50 ms at p99), and a
# change after a quiet moment is read at once. 40 ms, not 20: each confirming read is
# about four messages at two nodes, ~100 us of a node's CPU each (mostly ZeroMQ and the
# kernel), and at 20 ms four watching processes slowed a register's writer by 11-12%
# (bench/watch_load.py; 0-1% at 40 ms, with watch latency p99 22 ms: docs/coordination.md).
READ_GAP_S = 0.04
READ_BURST = 2
STOP_CHECK_S = 0.2  # a watch told when to stop (``until``) asks at least this often


class WatchRefused(Exception):
    """So many nodes refused the watch (their tables are full) that a change could be
    accepted by a quorum none of whose nodes would tell us."""


@dataclass(frozen=True, slots=True)
class WatchState:
    """A state of the register, as a linearizable read returned it. ``skipped``: versions
    (first, last) overwritten before the watcher could read them (none: ``None``)."""

    key: str
    version: int
    value: bytes | None
    skipped: tuple[int, int] | None = None
    at: float = 0.0  # time.monotonic() when the read returned it

    def __str__(self) -> str:
        value = "(absent)" if self.value is None else repr(printable(self.value.decode(
            "utf-8", "replace")))
        return f"{self.key} = {value} (version {self.version})"

    @property
    def skipped_text(self) -> str | None:
        if self.skipped is None:
            return None
        first, last = self.skipped
        what = f"version {first}" if first == last else f"versions {first}-{last}"
        return f"{what} not seen"

    def as_json(self) -> str:
        return json.dumps({"name": self.key, "version": self.version,
                           "value": None if self.value is None else self.value.decode(
                               "utf-8", "replace"), "skipped": self.skipped})


class WatchSession:
    """One register watched on a client's sockets: the pieces of :func:`watch`, for a
    caller that must also act at its own deadlines (a lock's waiter, runtime/locks.py).

    ``wait(until)`` renews the watches when due and waits for a notification of a
    version above ``last`` (or ``until``); ``read`` and ``run`` do register operations
    without losing the notifications that arrive meanwhile."""

    def __init__(self, client: Client, key: str, options: RegisterOptions | None = None,
                 ) -> None:
        self.client = client
        self.key = key
        self.nodes = [n.id for n in client.cluster.nodes]
        self.quorum = len(self.nodes) // 2 + 1
        # Confirming reads ask a quorum first (a third fewer questions and answers; the
        # nodes not asked stay disarmed, so they notify less too).
        self.options = options or client.register_options(one_rtt=False,
                                                          read_quorum_first=True)
        self.last: int | None = None  # the highest version known; notices above it count
        # A notice asks for a read from this many versions above ``last`` (a lock's
        # waiter far back in the queue has nothing to do before that many changes).
        self.read_ahead = 1
        self.want_read = True  # a notice came (or nothing was read yet): read
        self.refused: set[int] = set()
        self.renew_at = 0.0
        self._jitter = random.Random()
        self.comebacks = 0  # the socket layer's count of nodes back up, when we renewed
        self.heard = -1  # the newest version a node told us of (reset by watch per read)
        # A node disarms a watch when it notifies it, and re-arms it at the watcher's next
        # message about the register (hosts/watchers.py). A notice that asks for no read
        # (below ``read_ahead``; of our own write; one more node's note of what a read
        # returned) would leave that node silent until the next renewal, seconds later:
        # such nodes are sent an RWatch (a cheap message, no register round) before the
        # next wait, once per notice newer than the node's last one; its answer is told
        # apart from a notice (``asked``).
        self.told: dict[int, int] = {}  # node -> the newest version it told us of
        self.disarmed: set[int] = set()  # nodes that told us since our last message
        # RWatches sent to a node and not answered yet, oldest first (RENEWAL or REARM):
        # the node's next RNotify is an answer, sent as it armed the watch again, not a
        # notification that disarmed it. (Counting an answer as a notification re-armed
        # the node again, and on a register changing faster than a round trip each answer
        # carried a newer version: an RWatch ping-pong per watcher and node, past every
        # pacing.) At most a few: a node that does not answer is not waited on for ever.
        self.asked: dict[int, deque[bool]] = {}
        self.during = -1  # the newest version told of while an operation ran

    def take(self, batch: list[tuple[Any, Any]]) -> None:
        """Note the notifications in ``batch`` (other messages are not ours)."""
        for src, msg in batch:
            if type(msg) is RNotify and msg.key == self.key and type(src) is int:
                if not msg.watching:
                    self.refused.add(src)
                else:
                    self.refused.discard(src)
                asked = self.asked.get(src)
                if asked:  # an answer: the node is armed
                    # (A renewal of a watch the node owes a notification is answered by
                    # that notification, when its pacing lets it go: taken here as the
                    # renewal's answer, it asks for a read, as a notification would.)
                    renewal = asked.popleft()
                    self.told[src] = max(self.told.get(src, -1), msg.version)
                    if not renewal and self.read_ahead == 1:
                        # A re-arm's answer asks for no read: the nodes that answered
                        # our last read were armed by its question, and every change
                        # accepted since reaches a quorum holding one of them, which
                        # tells us (or the renewal's answer does, past its pacing).
                        # A waiter reading ahead (locks) has no such read to lean on.
                        continue
                elif msg.watching and msg.version > self.told.get(src, -1):
                    self.told[src] = msg.version
                    self.disarmed.add(src)
                self.heard = max(self.heard, msg.version)
                self.during = max(self.during, msg.version)
                if self.last is None or msg.version >= self.last + self.read_ahead:
                    self.want_read = True
        if len(self.refused) > len(self.nodes) - self.quorum:
            raise WatchRefused(
                f"{len(self.refused)} of {len(self.nodes)} nodes refused to watch "
                f"{self.key!r}: their watcher tables are full (at most "
                f"{MAX_WATCHERS_PER_REGISTER} watches of one register, {MAX_WATCHES} in all, "
                f"{MAX_WATCHES_PER_CALLER} registers per connection); watchers in one "
                f"process can share one watch (zpaxos.runtime.watch.SharedWatch)")

    def renew(self, now: float) -> None:
        """Send the watches when due, or at once to a node that came back (it forgot)."""
        sockets = self.client.sockets
        watch_state = sockets.watch
        # A node came back (it forgot our watch) since we last looked: renew at once. Not
        # ``came_up``, which the register loop clears when it retries its operations.
        back = watch_state is not None and watch_state.comebacks != self.comebacks
        if now >= self.renew_at or back:
            if watch_state is not None:
                self.comebacks = watch_state.comebacks
            for node in self.nodes:
                sockets.send(node, RWatch(self.key))
                self._ask(node, RENEWAL)
            # Spread over +-20%: watchers started together do not renew together.
            self.renew_at = now + WATCH_RENEW_S * self._jitter.uniform(0.8, 1.2)

    def rearm(self) -> None:
        """Re-arm the nodes whose notices since our last message asked for no read."""
        for node in self.disarmed:
            self.client.sockets.send(node, RWatch(self.key))
            self._ask(node, REARM)
        self.disarmed.clear()

    def _ask(self, node: int, why: bool) -> None:
        self.asked.setdefault(node, deque(maxlen=4)).append(why)

    def run(self, op: Any) -> RegResult:
        """One register operation on ``key``; notices that arrive meanwhile are kept."""
        self.disarmed.clear()  # (the operation's messages re-arm every node they reach)
        wanted, self.during = self.want_read, -1
        r = self.client._registers().run([(self.key, op)], self.options, 1,
                                         aside=self.take)[0]
        if (not wanted and r.status in (OK, CAS_FAILED)
                and self.during < r.version + self.read_ahead):
            self.want_read = False  # the nodes' notes of what this operation returned
        if r.status in (OK, CAS_FAILED) and (self.last is None or r.version > self.last):
            self.last = r.version
        return r

    def read(self) -> RegResult:
        self.want_read = False
        return self.run(_get())

    def wait(self, until: float) -> bool:
        """Wait until a notice asks for a read (True) or ``until`` (False), renewing the
        watches meanwhile. A signal that asks to stop raises Interrupted."""
        sockets = self.client.sockets
        while not self.want_read:
            now = time.monotonic()
            self.renew(now)
            if now >= until:
                return False
            self.rearm()
            self.take(sockets.poll(max(0.0, min(self.renew_at, until) - now)))
            if sockets.stop_requested:
                self.client._stop()
        return True


def watch(client: Client, key: str, from_version: int | None = None,
          options: RegisterOptions | None = None,
          until: Callable[[], bool] | None = None) -> Generator[WatchState, None, None]:
    """Yield each new state of register ``key``: first its current one (with
    ``from_version`` N: the first state at N or above, saying which versions from N it
    skipped), then each newer one. Runs until the caller stops iterating, or until
    ``until()`` says so (asked at least every STOP_CHECK_S). Confirming reads are paced
    (READ_GAP_S, READ_BURST): faster changes are coalesced into one read."""
    session = WatchSession(client, key, options)
    last = None if from_version is None else from_version - 1  # the last one yielded
    session.last = last
    sockets = client.sockets
    read_at = 0.0  # when the token bucket's next token is due
    while True:
        now = time.monotonic()
        session.renew(now)
        if session.want_read:
            wait = read_at - (READ_BURST - 1) * READ_GAP_S - now
            if wait > 0:  # no token: coalesce the changes until the next is due
                session.take(sockets.poll(wait))
                continue
            read_at = max(read_at, now) + READ_GAP_S
            session.heard = -1
            r = session.read()
            if r.status != OK:
                session.want_read = True  # no quorum now: try again soon
                session.take(sockets.poll(READ_RETRY_S))
                continue
            # What nodes told us during the read asks for another only if it is newer
            # than what the read returned (the other nodes' notes of the same change
            # arrive while it runs).
            session.want_read = session.heard > r.version
            if last is None or r.version > last:
                skipped = None
                if last is not None and r.version > last + 1:
                    skipped = (last + 1, r.version - 1)
                last = r.version
                yield WatchState(key, r.version, r.value, skipped, time.monotonic())
            continue
        session.rearm()
        idle = max(0.0, session.renew_at - time.monotonic())
        session.take(sockets.poll(idle if until is None else min(idle, STOP_CHECK_S)))
        if sockets.stop_requested:
            client._stop()
        if until is not None and until():
            return


def _get() -> Any:
    from zpaxos.protocol.register import GET, RegOp

    return RegOp(GET)


class SharedWatch:
    """One watch of register ``key`` on ``client``, for any number of watchers in this
    process: each new state goes to every subscriber, for one RWatch per node and one
    confirming read per change in all. The watch runs on a thread of its own
    (:meth:`start`), which then owns ``client``: nothing else may use it until
    :meth:`stop`.

        shared = SharedWatch(client, "config").start()
        for state in shared.subscribe():     # in as many threads as you like
            ...

    A subscriber that joins late first gets the latest state reported."""

    def __init__(self, client: Client, key: str, from_version: int | None = None,
                 options: RegisterOptions | None = None) -> None:
        self._states = watch(client, key, from_version, options, lambda: self._stopped)
        self._lock = threading.Lock()
        self._deliver: list[Callable[[WatchState | BaseException], None]] = []
        self._last: WatchState | BaseException | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"watch {key}", daemon=True)

    def start(self) -> SharedWatch:
        self._thread.start()
        return self

    def stop(self, wait_s: float = WATCH_RENEW_S + 1) -> None:
        """Stop sharing: the thread ends within STOP_CHECK_S, or at the end of a read in
        progress (the client is free again once this returns)."""
        self._stopped = True
        self._thread.join(wait_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def add(self, deliver: Callable[[WatchState | BaseException], None]) -> None:
        """Call ``deliver`` (on the watch's thread) with each state, or with the error
        that ended the watch; first with the latest state, if there was one."""
        with self._lock:
            self._deliver.append(deliver)
            if self._last is not None:
                deliver(self._last)

    def subscribe(self) -> Iterator[WatchState]:
        """Each new state, as :func:`watch` yields them; raises what ended the watch."""
        q: queue.SimpleQueue[WatchState | BaseException] = queue.SimpleQueue()
        self.add(q.put)
        while True:
            item = q.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    def _run(self) -> None:
        try:
            for state in self._states:
                self._publish(state)
                if self._stopped:
                    break
        except Exception as e:  # noqa: BLE001  # handed to every subscriber, who raises it
            self._publish(e)
        finally:
            self._states.close()

    def _publish(self, item: WatchState | BaseException) -> None:
        with self._lock:
            self._last = item
            for deliver in self._deliver:
                deliver(item)
