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

A node's notifications are paced too, for all registers together with more than
``UNPACED_WATCHES`` watches: at most ``NOTES_PER_S`` a second (a token bucket of
``NOTES_BURST``). Past that, the armed watches
not told are *owed* a notification: they get it as soon as the bucket has a token (the
host asks :meth:`Watchers.due` at :meth:`Watchers.next_due`, with no change needed), with
the newest version, and they come first at the next change. A watcher owed one that reads
the register meanwhile (the read answers it) is owed nothing more; one that renews its
watch stays owed, and the host sends no answer to that renewal (the notification, when it
goes, answers it: an answer now, carrying a newer version, would be a read past the
pacing, a thousand watchers' renewals a read each). So a
thousand separate watchers of a busy register cost its nodes a bounded number of
notifications (and so of confirming reads) a second, not one per watcher per change:
they hear of changes later, coalesced, and the writes keep their pace; and no watcher
waits for its renewal to hear of a change (a lock's waiter did, for seconds, once a
burst of hand-overs had spent the bucket). (Watchers sharing one watch, runtime/watch.py
SharedWatch, are far below the budget.)

The armed watches are kept apart (``_armed``), so that a node's work on a write with no
watch armed is one dictionary look-up (:meth:`armed`: the host then does nothing else for
the watchers), and a notification costs the armed watches, not all the register's.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection

from zpaxos.hosts.addresses import Caller

__all__ = ["MAX_WATCHERS_PER_REGISTER", "MAX_WATCHES", "MAX_WATCHES_PER_CALLER",
           "NOTES_BURST", "NOTES_PER_S", "UNPACED_WATCHES", "WATCH_LEASE_S", "WATCH_RENEW_S",
           "Watchers"]

# A renewal keeps the lease, and catches what no notification said (one the node dropped
# for a watcher that did not read its socket): not the pacing's way of telling (due()
# is), nor a reconnection's (a watcher renews at once when a node's connection comes
# back, runtime/watch.py: a restarted node forgot its watches). So renewals are rare: a
# thousand watchers' renewals were a third of what they cost the nodes every 10 s.
WATCH_LEASE_S = 90.0  # a watch lasts this long unless renewed
WATCH_RENEW_S = 30.0  # a watcher renews its watches this often (+-20%; three per lease)
MAX_WATCHES = 20_000  # (caller, register) pairs a node holds
MAX_WATCHERS_PER_REGISTER = 5_000
MAX_WATCHES_PER_CALLER = 256  # registers one connection may watch
# Notifications a node sends a second, all paced watches together. Each costs a confirming
# read (about four messages at two nodes); at 50 a second 1,000 separate watchers slowed a
# busy register's writer by 9-13%, at 25 by 7% (bench/watch_load.py --separate).
NOTES_PER_S = 25.0
NOTES_BURST = 50
# A register with at most this many watches is not paced (a lock's waiters, an election's
# candidates): a write of it costs at most this many notifications, and they go at once.
UNPACED_WATCHES = 16


class Watchers:
    def __init__(self, lease_s: float = WATCH_LEASE_S, max_watches: int = MAX_WATCHES,
                 per_register: int = MAX_WATCHERS_PER_REGISTER,
                 per_caller: int = MAX_WATCHES_PER_CALLER, notes_per_s: float = NOTES_PER_S,
                 notes_burst: int = NOTES_BURST, unpaced: int = UNPACED_WATCHES,
                 spread: int = 0) -> None:
        self.lease_s = lease_s
        # Where in a change's armed watches this node starts telling them (a fraction,
        # from its node id by the golden ratio: 0, .618, .236... for nodes 0, 1, 2): the
        # nodes of a cluster hold the watches in about the same order, and each watcher
        # needs one notification, so paced nodes that started at the same place would
        # spend their budgets on the same watchers (1,000 separate watchers of one change
        # reached at one node's rate, not three's).
        self.start_at = (spread * 0.6180339887498949) % 1.0
        self.unpaced = unpaced
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
        # Armed watches the pacing left untold at a change (first in line), and the newest
        # version of their register: told when a token comes (due), change or not.
        self._owed: dict[str, dict[Caller, None]] = {}
        self._owed_version: dict[str, int] = {}
        self._per_caller: dict[Caller, int] = {}
        self.refused = 0  # watches refused because a bound was reached

    def __len__(self) -> int:
        return len(self._until)

    def watch(self, now: float, caller: Caller, key: str) -> bool:
        """Start or renew ``caller``'s watch of ``key``; False when a bound refuses it.
        A renewal of a watch owed a notification leaves it owed (:meth:`owes`): its
        answer is no notification, or renewals would take the pacing's place."""
        self.expire(now)
        entry = (key, caller)
        if entry in self._until:
            del self._until[entry]  # renewed: to the back of the expiry order
            owed = self._owed.get(key)
            if owed is not None and caller in owed:
                self._until[entry] = now + self.lease_s
                return True
        else:
            watching = self._by_key.get(key)
            if (len(self._until) >= self.max_watches
                    or (watching is not None and len(watching) >= self.per_register)
                    or self._per_caller.get(caller, 0) >= self.per_caller):
                self.refused += 1
                return False
            self._per_caller[caller] = self._per_caller.get(caller, 0) + 1
        self._by_key.setdefault(key, {})[caller] = None
        self._arm(caller, key)  # a renewal arms too (its answer says the version)
        self._until[entry] = now + self.lease_s
        return True

    def rearm(self, caller: Caller, key: str) -> None:
        """``caller`` asked about ``key`` (it reads it): notify it of the next change."""
        watching = self._by_key.get(key)
        if watching is not None and caller in watching:
            self._arm(caller, key)

    def _arm(self, caller: Caller, key: str) -> None:
        owed = self._owed.get(key)
        if owed is not None and caller in owed:  # what it asked answers it: owed nothing
            self._unowe(key, caller)
        self._armed.setdefault(key, {})[caller] = None

    def _unowe(self, key: str, caller: Caller) -> None:
        owed = self._owed[key]
        del owed[caller]
        if not owed:
            del self._owed[key]
            del self._owed_version[key]

    def owes(self, caller: Caller, key: str) -> bool:
        """Whether ``caller`` is owed a notification of ``key`` the pacing holds back."""
        owed = self._owed.get(key)
        return owed is not None and caller in owed

    def armed(self, key: str) -> bool:
        """Whether a new state of ``key`` would be notified to anyone."""
        return key in self._armed or key in self._owed

    def _take_tokens(self, now: float, wanted: int) -> int:
        """Up to ``wanted`` notifications the pacing allows at ``now`` (spent)."""
        tokens = min(float(self.notes_burst),
                     self._tokens + max(0.0, now - self._tokens_at) * self.notes_per_s)
        self._tokens_at = max(self._tokens_at, now)
        # (At next_due's time the sum may fall short of 1 by a rounding: a timer that
        # fired for a token must find it, or the loop would wake for nothing again.)
        n = min(wanted, int(tokens + 1e-9))
        self._tokens = tokens - n
        return n

    def notify(self, key: str, now: float, version: int) -> list[Caller]:
        """The watchers of ``key`` to tell of its new state (``version``) at ``now``: the
        armed ones, now disarmed, as many as the pacing allows (those owed from an
        earlier change first, then the armed ones from this node's place in them,
        ``start_at``); the others are owed it."""
        armed = self._armed.pop(key, None)
        owed = self._owed.pop(key, None)
        if armed is None and owed is None:
            return []
        paced = len(self._by_key[key]) > self.unpaced
        if paced and armed is not None and len(armed) > 1 and self.start_at:
            k = int(len(armed) * self.start_at)  # this node's place to start
            armed = dict.fromkeys(itertools.chain(itertools.islice(armed, k, None),
                                                  itertools.islice(armed, k)))
        if owed is None:
            assert armed is not None
            owed = armed
        elif armed is not None:
            owed.update(armed)  # (no watch is both armed and owed)
        n = self._take_tokens(now, len(owed)) if paced else len(owed)
        if n == len(owed):
            self._owed_version.pop(key, None)
            return list(owed)
        told = list(itertools.islice(owed, n))
        for c in told:
            del owed[c]
        self.deferred += len(owed)
        self._owed[key] = owed
        self._owed_version[key] = version
        return told

    def next_due(self) -> float | None:
        """When :meth:`due` has a notification to send (None: none owed)."""
        if not self._owed or self.notes_per_s <= 0:  # (no rate: only renewals tell them)
            return None
        missing = 1.0 - self._tokens
        return self._tokens_at + (missing / self.notes_per_s if missing > 0 else 0.0)

    def due(self, now: float) -> list[tuple[Caller, str, int]]:
        """The owed notifications the pacing allows at ``now``, oldest first: (watcher,
        register, its newest version); those watches are disarmed."""
        out: list[tuple[Caller, str, int]] = []
        if not self._owed:
            return out
        n = self._take_tokens(now, sum(len(o) for o in self._owed.values()))
        for key in list(self._owed):
            if n == 0:
                break
            owed, version = self._owed[key], self._owed_version[key]
            told = list(itertools.islice(owed, n))
            n -= len(told)
            out.extend((c, key, version) for c in told)
            for c in told:
                self._unowe(key, c)
        return out

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
            owed = self._owed.get(key)
            if owed is not None and caller in owed:
                self._unowe(key, caller)
            left = self._per_caller[caller] - 1
            if left:
                self._per_caller[caller] = left
            else:
                del self._per_caller[caller]

    def of(self, key: str) -> Collection[Caller]:
        """The callers watching ``key`` (none: an empty collection)."""
        return self._by_key.get(key, ())
