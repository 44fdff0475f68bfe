"""Catching up: every node learns every decision, including the ones it missed while up.

Pure, like the hosts (no sockets, disk or clock: the loop passes the time in).

**The learn log (answering side).** A node's store keeps every chosen key, and every
register slot, in the order its commits wrote them: its *learn log*, numbered by position
from 0, durable with the rows and packed (``SqliteStore.learned_from``: one row per fold,
no index but the position). "What did you learn from position ``p`` on?" is one seek,
whatever the node already holds; only what is durable is listed.

**Asking (this module).** Every ``every`` seconds a node asks each peer
``CATCHUP(incarnation, pos)``, its cursor for that peer. The answer (``CATCHUP_REPLY``) is
a page of *keys only*, packed into one field, with the accepted ballot of each register
slot among them; the node looks them up in its own state and sends ``FETCH`` for just
those it lacks: a key it knows no chosen value for, a register slot it holds at a lower
accepted ballot. Only when every value fetched has been applied does the cursor move to
the page's end: the host hands it out in ``Ready.cursors``, and the loop saves it only
with (or after) the commit that makes those values durable. A full page is followed at
once by the next; a short one means caught up until the next period. Idle, that is one
small request and one empty page per peer per period.

**Trust.** A fetched value is applied exactly as a Decide from that peer is: only an answer
on this node's own socket to the peer (a node-authenticated source, ``src`` an int), and
only for keys this node asked that peer for. The core then checks it like any Decide (a
value never replaces a different chosen one). A register slot is taken through the
register acceptor's own Accept rule (accepted only at or above its promise), as if the
proposer's Accept that the peer accepted had arrived late: a register state is never
copied around that rule.

**Cursors** are ``(incarnation, pos)``: the peer's database, and a position in its log.
A peer that answers with another incarnation (it was started again with ``--new``)
answered from the start of its log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from zpaxos.protocol.messages import (
    Ballot,
    CatchUp,
    CatchUpReply,
    Fetch,
    FetchReply,
    Message,
)
from zpaxos.protocol.regmessages import REGISTER_PREFIX

CATCH_UP_S = 0.5  # default period: how often a node asks each peer what it learned since
RETRY_S = 1.0  # a request or fetch unanswered this long is sent again (the 2 s target)
# Keys a page lists that this node lacks are fetched only if it still lacks them this much
# later: under load a peer lists decisions whose Decide is on its way here, and fetching
# those would pay for each decision twice.
GRACE_S = 0.1
# Idle, a node asks a peer whose pages come back empty less and less often (the period
# doubles, up to IDLE_MAX_S), and at the period again as soon as a page lists something or
# a Paxos message arrives (``active``). A node cut off from a peer is not idle towards it:
# its request stays unanswered and goes again every RETRY_S. Capped so that a decision a
# node missed while it could talk (a proposer that died between its Decides, on an idle
# cluster) is still learned within the 2 s target: at most 1.5 s to the next ask, then
# the page, GRACE_S and the fetch.
IDLE_MAX_S = 1.5
PAGE_KEYS = 4000  # keys in one catch-up page (registry.MAX_LEARN_ENTRIES bounds the wire)

Cursor = tuple[bytes, int]  # (the peer's incarnation, position in its learn log)
NO_CURSOR: Cursor = (b"", 0)
Sends = list[tuple[int, Message]]


class LearnSource(Protocol):
    """What the answering side reads: the store (SqliteStore, MemoryStore, the simulator's
    disk)."""

    @property
    def incarnation(self) -> bytes: ...

    def learned_from(self, pos: int, limit: int) -> list[str]: ...


def page(source: LearnSource, msg: CatchUp, slot_ballot: Callable[[list[str]], list[Ballot]],
         limit: int = PAGE_KEYS) -> CatchUpReply:
    """The answer to ``msg``: the keys learned from its position on, or from the start of
    the log when the position counts in another incarnation. ``slot_ballot``: the
    accepted ballots of the register slots named."""
    inc = source.incarnation
    pos = msg.pos if msg.incarnation == inc else 0
    keys = source.learned_from(pos, limit + 1)
    more = len(keys) > limit
    if more:
        del keys[limit:]
    slots = [k for k in keys if k[0] == REGISTER_PREFIX]
    return CatchUpReply.of(inc, msg.pos, pos + len(keys), keys,
                        tuple(zip(slots, slot_ballot(slots), strict=True)), more)


Lacks = Callable[[Sequence[str], Mapping[str, Ballot]], set[str]]


@dataclass(slots=True)
class _Fetching:
    end: Cursor  # the cursor once every value asked for is in
    wanted: set[str]
    more: bool  # the page was full: ask for the next at once
    when: float  # when it was asked (or, while ``slots`` is not None, when to ask)
    slots: dict[str, Ballot] | None = None  # not asked yet: the page's slot ballots


@dataclass
class Follower:
    """The asking side: where this node is in each peer's learn index, and what it asked."""

    peers: Sequence[int]
    every: float = CATCH_UP_S
    retry: float = RETRY_S
    at: dict[int, Cursor] = field(default_factory=dict)  # durable cursors, by peer
    now: float = 0.0
    # Outstanding requests: peer -> (the cursor asked from, when; None: before the first
    # tick, whose time starts its clock).
    asked: dict[int, tuple[Cursor, float | None]] = field(default_factory=dict)
    fetching: dict[int, _Fetching] = field(default_factory=dict)
    next_at: dict[int, float] = field(default_factory=dict)
    empty: dict[int, int] = field(default_factory=dict)  # empty pages in a row, by peer
    caught_up: set[int] = field(default_factory=set)  # peers it reached the end of once
    last_caught_up: float | None = None  # when it last reached a peer's end
    learned_total: int = 0  # keys and register states learned by catching up

    def start(self) -> Sends:
        """At start: ask every peer from the saved cursor (a restart fetches only what it
        missed)."""
        return [self._ask(p, None) for p in self.peers]

    def _ask(self, peer: int, when: float | None) -> tuple[int, Message]:
        cursor = self.at.get(peer, NO_CURSOR)
        self.asked[peer] = (cursor, when)
        return (peer, CatchUp(*cursor))

    def tick(self, now: float, lacks: Lacks | None = None) -> tuple[Sends, dict[int, Cursor]]:
        """What is due at ``now``: the periodic requests, the fetches whose grace is
        over (of what ``lacks`` says is still missing), and the retries; and the cursors
        that moved (nothing was left to fetch)."""
        self.now = now
        out: Sends = []
        moved: dict[int, Cursor] = {}
        for p in self.peers:
            f = self.fetching.get(p)
            if f is not None and f.slots is not None:
                if now < f.when:
                    continue
                f.wanted = lacks(sorted(f.wanted), f.slots) if lacks is not None else f.wanted
                f.slots, f.when = None, now
                if f.wanted:
                    out.append((p, Fetch(tuple(sorted(f.wanted)))))
                    continue
                del self.fetching[p]  # its Decides arrived meanwhile
                sends, cursor = self._advance(p, f.end, f.more)
                out += sends
                if cursor is not None:
                    moved[p] = cursor
            elif f is not None:
                if now >= f.when + self.retry:  # lost, or the peer was away: ask again
                    f.when = now
                    out.append((p, Fetch(tuple(sorted(f.wanted)))))
                continue
            asked = self.asked.get(p)
            if asked is not None:
                if asked[1] is None:
                    self.asked[p] = (asked[0], now)
                elif now >= asked[1] + self.retry:
                    out.append(self._ask(p, now))
            elif now >= self.next_at.get(p, 0.0):
                out.append(self._ask(p, now))
        return out, moved

    def next_due(self) -> float | None:
        times: list[float] = []
        for p in self.peers:
            f = self.fetching.get(p)
            if f is not None:
                times.append(f.when if f.slots is not None else f.when + self.retry)
                continue
            asked = self.asked.get(p)
            if asked is None:
                times.append(self.next_at.get(p, 0.0))
            else:
                times.append(self.now if asked[1] is None else asked[1] + self.retry)
        return min(times) if times else None

    def on_page(self, peer: int, msg: CatchUpReply, lacks: Lacks
                ) -> tuple[Sends, Cursor | None]:
        """A peer's page: what to send next, and the cursor to save (when nothing on the
        page is missing here). ``lacks(keys, slot ballots)``: those this node does not
        know (a key without a chosen value, a slot at a lower ballot)."""
        asked = self.asked.get(peer)
        if asked is None or asked[0][1] != msg.pos:
            return [], None  # a duplicate, or an answer to an older request
        del self.asked[peer]
        start = msg.pos if msg.incarnation == asked[0][0] else 0
        if msg.end != start + len(msg.keys):
            return [], None  # not a page of this log from where it was asked: ignored
        end = (msg.incarnation, msg.end)
        wanted = lacks(msg.keys, dict(msg.slots)) if msg.keys else set()
        if wanted:  # fetched after GRACE_S, if still missing then (tick)
            self.fetching[peer] = _Fetching(end, wanted, msg.more, self.now + GRACE_S,
                                            dict(msg.slots))
            return [], None
        return self._advance(peer, end, msg.more)

    def on_fetched(self, peer: int, msg: FetchReply) -> tuple[set[str], Sends, Cursor | None]:
        """A peer's values: which of them to apply (only keys asked for from that peer),
        what to send next, and the cursor to save once they are durable."""
        f = self.fetching.get(peer)
        if f is None or f.slots is not None:
            return set(), [], None  # nothing asked of that peer (yet)
        take = {k for k, _, _ in msg.known if k in f.wanted}
        f.wanted -= take
        if f.wanted and msg.more:  # cut short by size: the rest
            f.when = self.now
            return take, [(peer, Fetch(tuple(sorted(f.wanted))))], None
        # Keys the peer no longer has a value for (it cannot forget a chosen one; only a
        # peer started again with --new could) are given up, not asked for forever.
        del self.fetching[peer]
        sends, cursor = self._advance(peer, f.end, f.more)
        return take, sends, cursor

    def active(self) -> None:
        """Something is being decided (a Paxos message arrived): back to the period."""
        if self.empty:
            self.empty.clear()
            soon = self.now + self.every
            for p, t in self.next_at.items():
                self.next_at[p] = min(t, soon)

    def _advance(self, peer: int, end: Cursor, more: bool) -> tuple[Sends, Cursor | None]:
        moved = self.at.get(peer) != end
        self.at[peer] = end
        if more:
            return [self._ask(peer, self.now)], end if moved else None
        self.caught_up.add(peer)
        self.last_caught_up = self.now
        n = 0 if moved else self.empty.get(peer, 0) + 1
        if n:
            self.empty[peer] = n
        else:
            self.empty.pop(peer, None)  # (under load: empty stays empty, nothing to check)
        self.next_at[peer] = self.now + min(self.every * 2 ** min(n, 16), max(IDLE_MAX_S,
                                                                             self.every))
        return [], end if moved else None


def fetch_reply(keys: Sequence[str], known: Callable[[str], tuple[bytes, Ballot] | None],
                max_bytes: int) -> FetchReply:
    """The answer to a Fetch: what this node knows of ``keys``, stopping short of
    ``max_bytes`` of values (always at least one)."""
    out: list[tuple[str, bytes, Ballot]] = []
    size = 0
    for k in keys:
        got = known(k)
        if got is None:
            continue
        if out and size + len(got[0]) > max_bytes:
            return FetchReply(tuple(out), True)
        out.append((k, *got))
        size += len(got[0])
    return FetchReply(tuple(out), False)


def load_cursors(doc: object, peers: Sequence[int]) -> dict[int, Cursor]:
    """Cursors from their saved form ({"peer": [incarnation hex, seq, key]}); anything
    malformed is left out (that peer is asked from the start: slower, never wrong)."""
    out: dict[int, Cursor] = {}
    if not isinstance(doc, Mapping):
        return out
    for p in peers:
        c = doc.get(str(p))
        if (isinstance(c, list) and len(c) == 2 and isinstance(c[0], str)
                and type(c[1]) is int and c[1] >= 0):
            try:
                out[p] = (bytes.fromhex(c[0]), c[1])
            except ValueError:
                continue
    return out


def dump_cursors(cursors: Mapping[int, Cursor]) -> dict[str, list[object]]:
    return {str(p): [c[0].hex(), c[1]] for p, c in sorted(cursors.items())}


__all__ = ["CATCH_UP_S", "NO_CURSOR", "PAGE_KEYS", "RETRY_S", "Cursor", "Follower",
           "LearnSource", "dump_cursors", "fetch_reply", "load_cursors", "page"]
