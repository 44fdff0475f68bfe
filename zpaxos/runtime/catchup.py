"""Catching up: a node asks each peer, about once a second, what it learned since the last
time, so a decision the node missed reaches it within seconds, whatever the reason it was
missed (the node was down, cut off or busy, or a proposer ended before reaching it).

Pure, like the hosts (no sockets, disk or clock: the time comes in from the loop).

**The learn log.** Every node process keeps the keys it learns, in the order it learns
them, each at a *position* (1, 2, ...), under the process's boot id (the one its Hellos
carry). A decision learned from a peer joins the log too, so what one node knows spreads
to every node it reaches. The log is in memory and bounded: past ``LOG_KEEP`` keys it
forgets the oldest half.

**Asking.** ``CatchUp(boot, since)`` asks a peer for its log after ``since``; the answer
(:class:`CatchUpReply`) is a page of (key, value, ballot) up to position ``upto``, and the
asker keeps ``(boot, upto)`` as its cursor for that peer. An empty page costs one small
message each way per second per peer. When ``since`` is not a position of the peer's log
(its process restarted, or it forgot that far back, or the asker has no cursor yet: at
start) the peer answers ``reset`` with where its log is now. The asker takes that as its
cursor and *then* walks the peer's chosen keys from the first (SyncRequest pages, key
order): everything the peer learned before the cursor is in the walk, everything after it
comes by catching up. A walk already running when a reset comes is run again when it ends
(it may have started before the cursor, and passed keys learned in between).

A request or walk page that goes unanswered for ``RETRY_S`` is asked again. Decisions
learned this way are Decides like any other: the core checks them (a value never
overwrites a different chosen one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from zpaxos.protocol.messages import (
    Ballot,
    CatchUp,
    CatchUpReply,
    Message,
    SyncReply,
    SyncRequest,
)

CATCHUP_S = 1.0  # how often a node asks each peer what it learned since
RETRY_S = 5.0  # a request or walk page unanswered this long is asked again
LOG_KEEP = 65_536  # keys a learn log keeps (it forgets the oldest half past twice this)

Sends = list[tuple[int, Message]]


class LearnLog:
    """The keys this process learned, in order, at positions ``base + 1`` to ``end``."""

    def __init__(self, boot: bytes, keep: int = LOG_KEEP) -> None:
        self.boot = boot
        self.keep = max(1, keep)
        self.base = 0  # positions up to here are forgotten
        self.keys: list[str] = []

    @property
    def end(self) -> int:
        return self.base + len(self.keys)

    def append(self, key: str) -> None:
        self.keys.append(key)
        if len(self.keys) > 2 * self.keep:
            drop = len(self.keys) - self.keep
            del self.keys[:drop]
            self.base += drop

    def after(self, boot: bytes, since: int, limit: int) -> list[str] | None:
        """Up to ``limit`` keys after position ``since`` of process ``boot``'s log; None
        when that is not a position this log has (another process, or forgotten)."""
        if not self.boot or boot != self.boot or not self.base <= since <= self.end:
            return None
        start = since - self.base
        return self.keys[start:start + limit]


class Cursors:
    """The asking side: where this node is in each peer's log, and what it asked."""

    def __init__(self, peers: Sequence[int], every: float = CATCHUP_S,
                 retry: float = RETRY_S) -> None:
        self.peers = tuple(peers)
        self.every, self.retry = every, retry
        self.at: dict[int, tuple[bytes, int]] = {}  # peer -> (its boot, position reached)
        # Outstanding requests: peer -> (what was asked, when; None: before the first tick).
        self._asked: dict[int, tuple[tuple[bytes, int], float | None]] = {}
        self._next: dict[int, float] = {p: 0.0 for p in self.peers}  # when to ask next
        # Walks running: peer -> (the key the last page was asked after, when).
        self.walking: dict[int, tuple[str, float | None]] = {}
        self._again: set[int] = set()
        self.now = 0.0  # the latest time the loop passed in

    def start(self) -> Sends:
        """At start: a CatchUp with no cursor to every peer (each answers with a reset)."""
        return [self._ask(p, (b"", 0), None) for p in self.peers]

    def walk_all(self) -> Sends:
        """A walk from every peer at once, without cursors (no catching up after it)."""
        return [self._walk(p, "") for p in self.peers]

    def _ask(self, peer: int, cursor: tuple[bytes, int], when: float | None
             ) -> tuple[int, Message]:
        self._asked[peer] = (cursor, when)
        return (peer, CatchUp(*cursor))

    def _walk(self, peer: int, after: str) -> tuple[int, Message]:
        self.walking[peer] = (after, self.now)
        return (peer, SyncRequest(after))

    def tick(self, now: float) -> Sends:
        """What is due at ``now``: the periodic requests, and the retries."""
        self.now = now
        out: Sends = []
        for p in self.peers:
            asked = self._asked.get(p)
            if asked is not None:
                cursor, when = asked
                if when is None:
                    self._asked[p] = (cursor, now)  # its clock starts now
                elif now >= when + self.retry:  # (the sum next_due() gives: no rounding gap)
                    out.append(self._ask(p, cursor, now))  # lost, or the peer was down
            elif now >= self._next[p]:
                out.append(self._ask(p, self.at.get(p, (b"", 0)), now))
            walk = self.walking.get(p)
            if walk is not None:
                after, when = walk
                if when is None:
                    self.walking[p] = (after, now)
                elif now >= when + self.retry:
                    out.append(self._walk(p, after))
        return out

    def next_due(self) -> float | None:
        """When :meth:`tick` has something to do (None: at once, on the next call)."""
        times: list[float] = []
        for p in self.peers:
            asked = self._asked.get(p)
            if asked is not None:
                when = asked[1]
                times.append(self.now if when is None else when + self.retry)
            else:
                times.append(self._next[p])
            walk = self.walking.get(p)
            if walk is not None:
                times.append(self.now if walk[1] is None else walk[1] + self.retry)
        return min(times) if times else None

    def on_reply(self, peer: int, msg: CatchUpReply) -> tuple[bool, Sends]:
        """A peer's answer: whether its decisions are to be learned (it answers the request
        outstanding; a duplicate or a stale answer is not), and what to send next."""
        asked = self._asked.get(peer)
        if asked is None or asked[0][1] != msg.since:
            return False, []
        del self._asked[peer]
        self.at[peer] = (msg.boot, msg.upto)
        if msg.reset:
            self._next[peer] = self.now + self.every
            if peer in self.walking:
                self._again.add(peer)
                return False, []
            return False, [self._walk(peer, "")]
        if msg.more:
            return True, [self._ask(peer, (msg.boot, msg.upto), self.now)]
        self._next[peer] = self.now + self.every
        return True, []

    def on_walk_page(self, peer: int, msg: SyncReply) -> Sends:
        """A page of a walk: ask for the next one, or end the walk (and run it again if a
        reset came while it ran)."""
        if msg.more and msg.chosen:
            return [self._walk(peer, msg.chosen[-1][0])]
        self.walking.pop(peer, None)
        if peer in self._again:
            self._again.discard(peer)
            return [self._walk(peer, "")]
        return []


def reply(log: LearnLog, msg: CatchUp,
          chosen_of: Callable[[list[str]], Mapping[str, tuple[bytes, Ballot]]],
          max_items: int, max_bytes: int) -> CatchUpReply:
    """The answer to ``msg`` from ``log``: up to ``max_items`` decisions, stopping short of
    ``max_bytes`` of values (always at least one). ``chosen_of``: the chosen value and
    ballot of those of the keys it is given that are chosen (all of them, normally)."""
    keys = log.after(msg.boot, msg.since, max_items)
    if keys is None:
        return CatchUpReply(log.boot, msg.since, log.end, (), False, True)
    known = chosen_of(keys)
    out: list[tuple[str, bytes, Ballot]] = []
    size, pos = 0, msg.since
    for key in keys:
        c = known.get(key)
        if c is not None:
            if out and size + len(c[0]) > max_bytes:
                break
            out.append((key, c[0], c[1]))
            size += len(c[0])
        pos += 1
    return CatchUpReply(log.boot, msg.since, pos, tuple(out), pos < log.end, False)


__all__ = ["CATCHUP_S", "LOG_KEEP", "RETRY_S", "Cursors", "LearnLog", "reply"]
