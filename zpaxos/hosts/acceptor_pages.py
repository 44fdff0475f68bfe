"""The acceptor host's read-only answers: status, sync and register pages, catch-up pages
and fetched values, and a peer's check of a client's Decide (:class:`PagesMixin`).

Its own module because none of it is a protocol rule: it reads the core's states (or the
store's pages, overlaid with the pass's unsaved changes) and never changes them. The
host (acceptor_host.py) inherits the mixin, so answering costs no extra call.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar

from zpaxos.hosts import catchup
from zpaxos.hosts.acceptor_ready import Ready, StateSource
from zpaxos.hosts.addresses import Src
from zpaxos.protocol.core import Acceptor, KeyState
from zpaxos.protocol.messages import (
    AcceptedAt,
    Ballot,
    CatchUp,
    CheckAccepted,
    Fetch,
    KeyStatus,
    RegistersReply,
    RegistersRequest,
    StatusReply,
    StatusRequest,
    SyncReply,
    SyncRequest,
    UndecidedReply,
    UndecidedRequest,
)
from zpaxos.protocol.regmessages import REGISTER_PREFIX

STATUS_MAX_KEYS = 1000  # keys in one status reply
SYNC_PAGE = 500  # chosen values in one sync reply
REGISTER_PAGE = 1000  # register names in one RegistersReply (registry.MAX_NAMES)
# An undecided-keys page walks this many register pages' worth of keys (of any kind), and
# lists at most a register page of those accepted but not decided. One: every member is
# paged at once, and a longer walk (10) stalled them all together for long enough to
# leave a 3.4 s gap between decisions under load (bench/members.py).
UNDECIDED_WALK = 1
STATUS_MAX_RANGES = 256  # range promises listed in one status reply (all are counted)
# Memory: a client that asks for status and never reads can make a node queue at most
# sockets.SNDHWM replies for it, so a status reply is kept small: this many bytes of
# values (and per-key overhead), though always at least one key's.
STATUS_MAX_BYTES = 64 << 10
KEY_OVERHEAD_BYTES = 160  # a status entry without its values, encoded (key and ballots)
# Values are up to 1 MiB each: a sync reply stops short of this many value bytes, so with
# one more value it still fits the decoder's body limit (codec.MAX_BODY_BYTES).
REPLY_MAX_VALUE_BYTES = 1 << 20

T = TypeVar("T")


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


class PagesMixin:
    """Part of :class:`~zpaxos.hosts.acceptor_host.AcceptorHost`: its pages and
    read-only answers, and the sorted key indexes they walk (without a source)."""

    node_id: int
    acceptor: Acceptor
    source: StateSource | None
    learn: catchup.LearnSource | None
    catch_up_page: int
    stats: dict[str, int]
    counters: Callable[[], Mapping[str, int]] | None
    sync_page_size: int
    status_page_size: int
    register_page_size: int
    _dirty: tuple[Mapping[str, KeyState], ...]
    _sorted_keys: list[str]
    _sorted_chosen: list[str]
    _new_keys: list[str]
    _new_chosen: list[str]

    if TYPE_CHECKING:  # the catch-up side (acceptor_catchup.py)
        def _known(self, key: str) -> tuple[bytes, Ballot] | None: ...
        def _slot_ballots(self, slots: list[str]) -> list[Ballot]: ...

    def _answer(self, src: Src,
                msg: StatusRequest | SyncRequest | RegistersRequest | CheckAccepted
                | CatchUp | Fetch | UndecidedRequest,
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
        elif isinstance(msg, UndecidedRequest):
            ready.send.append((src, self.undecided_page(msg.after)))
        else:
            s = self.acceptor.state(msg.key)
            value = (s.value if s.accepted == msg.ballot else
                     s.chosen if s.chosen_ballot == msg.ballot else None)
            ready.send.append((src, AcceptedAt(msg.key, msg.ballot, value)))

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
        outside = self.counters() if self.counters is not None else {}
        stats = sorted({**self.stats, **outside, "ranges": len(ranges)}.items())
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

    def undecided_page(self, after: str) -> UndecidedReply:
        """The write-once keys this node holds a value accepted for but not known decided,
        among the next page of keys after ``after`` (every key counts towards the page,
        so the work per request is bounded whatever the keys hold): UNDECIDED_WALK pages
        of keys walked, at most a page of them listed (the reply then ends at the last)."""
        limit = self.register_page_size * UNDECIDED_WALK
        if self.source is not None:
            rows = self._paged(after, limit + 1, False)
        else:
            keys = self._keys
            i = bisect.bisect_right(keys, after)
            states = self.acceptor.states
            rows = [(k, states[k]) for k in keys[i:i + limit + 1]]
        more = len(rows) > limit
        rows = rows[:limit]
        listed: list[str] = []
        for k, s in rows:
            if not k.startswith(REGISTER_PREFIX) and s.chosen is None \
                    and not s.accepted.is_zero:
                listed.append(k)
                if len(listed) == self.register_page_size:
                    return UndecidedReply(after, tuple(listed), k, True)
        return UndecidedReply(after, tuple(listed), rows[-1][0] if rows else after, more)

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


__all__ = ["KEY_OVERHEAD_BYTES", "REGISTER_PAGE", "REPLY_MAX_VALUE_BYTES", "STATUS_MAX_BYTES",
           "STATUS_MAX_KEYS", "STATUS_MAX_RANGES", "SYNC_PAGE", "PagesMixin", "page"]
