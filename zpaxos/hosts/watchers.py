"""A node's table of register watchers: who asked to hear of a register's new states.

Pure, like the acceptor host that keeps it (the host says what time it is). Hostile input
is bounded: a watch is a lease (``WATCH_LEASE_S``) that its watcher renews by asking
again, so a dead or vanished watcher is dropped without a word; and the table refuses a
watch past ``MAX_WATCHES`` in all, ``MAX_WATCHERS_PER_REGISTER`` on one register, or
``MAX_WATCHES_PER_CALLER`` registers for one connection. An entry is a caller (a routing
id of at most 255 bytes), a register name (at most 128 characters) and a time: the whole
table is a few megabytes at most.

Leases all have the same length, so the table's insertion order is its expiry order:
expiring is popping from the front while the oldest is due, and renewing a watch moves
it to the back.

Bounded fan-out: a watch is *armed* or not. A node notifies only armed watches of a new
state (:meth:`Watchers.notify`), and disarms them; the watcher's next message about the
register (the confirming read it sends because of the notification, or a renewal)
re-arms it (:meth:`Watchers.rearm`). So a watcher gets at most one notification per read
it makes, however fast the register changes, and nothing is missed: a change accepted
after the read's question reached this node finds the watch armed again, and one
accepted before is in the read's answer or newer than it (the watcher reads again on the
next notification or renewal answer, which carries the node's version).

A node's notifications are paced too, for all registers together: at most
``NOTES_PER_S`` a second (a token bucket of ``NOTES_BURST``). Past that, the armed watches
not told stay armed, first in line for the next change's notification; a watcher that
hears nothing more learns the node's version from its renewal's answer (within
``WATCH_RENEW_S``) and reads then. So a thousand separate watchers of a busy register
cost its nodes a bounded number of notifications (and so of confirming reads) a second,
not one per watcher per change: they hear of changes later, coalesced, and the writes
keep their pace. (Watchers sharing one watch, runtime/watch.py SharedWatch, are far
below the budget.)

The armed watches are kept apart (``_armed``), so that a node's work on a write with no
watch armed is one dictionary look-up (:meth:`armed`: the host then does nothing else for
the watchers), and a notification costs the armed watches, not all the register's.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection

from zpaxos.hosts.addresses import Caller

__all__ = ["MAX_WATCHERS_PER_REGISTER", "MAX_WATCHES", "MAX_WATCHES_PER_CALLER",
           "NOTES_BURST", "NOTES_PER_S", "WATCH_LEASE_S", "WATCH_RENEW_S", "Watchers"]

WATCH_LEASE_S = 10.0  # a watch lasts this long unless renewed
WATCH_RENEW_S = 3.0  # a watcher renews its watches this often (three tries per lease)
MAX_WATCHES = 20_000  # (caller, register) pairs a node holds
MAX_WATCHERS_PER_REGISTER = 5_000
MAX_WATCHES_PER_CALLER = 256  # registers one connection may watch
NOTES_PER_S = 200.0  # notifications a node sends a second, all watches together
NOTES_BURST = 50


class Watchers:
    def __init__(self, lease_s: float = WATCH_LEASE_S, max_watches: int = MAX_WATCHES,
                 per_register: int = MAX_WATCHERS_PER_REGISTER,
                 per_caller: int = MAX_WATCHES_PER_CALLER, notes_per_s: float = NOTES_PER_S,
                 notes_burst: int = NOTES_BURST) -> None:
        self.lease_s = lease_s
        self.notes_per_s = notes_per_s
        self.notes_burst = notes_burst
        self._tokens = float(notes_burst)  # notifications that may leave now
        self._tokens_at = 0.0
        self.deferred = 0  # notifications held back by the pacing (watches left armed)
        self.max_watches = max_watches
        self.per_register = per_register
        self.per_caller = per_caller
        self._until: dict[tuple[str, Caller], float] = {}  # expiry order (see above)
        self._by_key: dict[str, dict[Caller, None]] = {}  # watchers, armed or not
        self._armed: dict[str, dict[Caller, None]] = {}  # those to notify (insertion order)
        self._per_caller: dict[Caller, int] = {}
        self.refused = 0  # watches refused because a bound was reached

    def __len__(self) -> int:
        return len(self._until)

    def watch(self, now: float, caller: Caller, key: str) -> bool:
        """Start or renew ``caller``'s watch of ``key``; False when a bound refuses it."""
        self.expire(now)
        entry = (key, caller)
        if entry in self._until:
            del self._until[entry]  # renewed: to the back of the expiry order
        else:
            watching = self._by_key.get(key)
            if (len(self._until) >= self.max_watches
                    or (watching is not None and len(watching) >= self.per_register)
                    or self._per_caller.get(caller, 0) >= self.per_caller):
                self.refused += 1
                return False
            self._per_caller[caller] = self._per_caller.get(caller, 0) + 1
        self._by_key.setdefault(key, {})[caller] = None
        self._armed.setdefault(key, {})[caller] = None  # a renewal arms too
        self._until[entry] = now + self.lease_s
        return True

    def rearm(self, caller: Caller, key: str) -> None:
        """``caller`` asked about ``key`` (it reads it): notify it of the next change."""
        watching = self._by_key.get(key)
        if watching is not None and caller in watching:
            self._armed.setdefault(key, {})[caller] = None

    def armed(self, key: str) -> bool:
        """Whether a new state of ``key`` would be notified to anyone."""
        return key in self._armed

    def notify(self, key: str, now: float) -> list[Caller]:
        """The watchers of ``key`` to tell of a new state at ``now``: the armed ones, now
        disarmed, as many as the pacing allows (the first armed first; the others stay
        armed for the next change)."""
        armed = self._armed.get(key)
        if armed is None:
            return []
        tokens = min(float(self.notes_burst),
                     self._tokens + max(0.0, now - self._tokens_at) * self.notes_per_s)
        self._tokens_at = max(self._tokens_at, now)
        n = min(len(armed), int(tokens))
        self._tokens = tokens - n
        if n == len(armed):
            del self._armed[key]
            return list(armed)
        told = list(itertools.islice(armed, n))
        for c in told:
            del armed[c]
        self.deferred += len(armed)
        return told

    def expire(self, now: float) -> None:
        until = self._until
        while until:
            entry, at = next(iter(until.items()))
            if at > now:
                return
            del until[entry]
            key, caller = entry
            watching = self._by_key[key]
            del watching[caller]
            if not watching:
                del self._by_key[key]
            armed = self._armed.get(key)
            if armed is not None:
                armed.pop(caller, None)
                if not armed:
                    del self._armed[key]
            left = self._per_caller[caller] - 1
            if left:
                self._per_caller[caller] = left
            else:
                del self._per_caller[caller]

    def of(self, key: str) -> Collection[Caller]:
        """The callers watching ``key`` (none: an empty collection)."""
        return self._by_key.get(key, ())
