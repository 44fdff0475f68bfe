"""Locks with fencing tokens, and leader election, on a Client (docs/locks.md).

    with client.lock("jobs", ttl=10) as token:      # blocks until held
        storage.write(data, fencing_token=token)     # the resource refuses older tokens

    with client.campaign("scheduler", "node-a", ttl=10) as leadership:
        while not leadership.lost:
            ...                                      # act as leader, term leadership.term

A lock is a register holding a lease record; the rules (who may take it when, the
margin, the token) are pure, in zpaxos/protocol/lease.py. Here they meet sockets and
the clock:

* acquiring runs on the caller's Client, on the 1-RTT path (its last write of the register
  left it a promise: uncontended, a read that writes nothing and one round trip of
  compare-and-set): read the record, queue up (FIFO), then wait
  for notifications (a WatchSession: nodes tell their watchers of each new version, the
  waiter confirms with a read; it never polls the cluster) until the lock is free for it
  or its holder's state has stayed unchanged for ``ttl + margin`` on this process's
  clock; then take it by a compare-and-set at the version it watched;
* while held, a background thread renews it, with a Client of its own (ZeroMQ sockets
  belong to one thread) so the caller's code and Client stay free; the lease is lost
  ``ttl - margin`` after the last renewal that succeeded was *sent*: ``lost``,
  ``valid()`` and ``lost_at`` say so from the clock, whether or not the thread is late;
* release (on leaving the ``with``, exception or not) stops the thread and, by one
  compare-and-set, only if the record is still this holding's, hands the lock over to
  the head of the queue (lease.handed_over: the named waiter holds once its own renewal
  succeeded) or frees it; on the caller's Client while it holds the 1-RTT promise (no
  renewal yet), else on the renewer's.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from zpaxos.protocol.lease import (
    DEFAULT_TTL_S,
    HolderLease,
    LockRecord,
    LockRecordError,
    WaiterClock,
    acquired,
    decode_record,
    dequeued,
    encode_record,
    enqueued,
    grace_for,
    handed_over,
    margin_for,
    released,
    ttl_problem,
    wait_needed,
)
from zpaxos.protocol.messages import key_problem
from zpaxos.protocol.regops import CAS, CAS_FAILED, GET, OK, UNKNOWN, RegOp, RegResult
from zpaxos.runtime.watch import Client as WatchClient
from zpaxos.runtime.watch import WatchSession

if TYPE_CHECKING:
    from collections.abc import Callable

    from zpaxos.protocol.regops import RegisterOptions
    from zpaxos.runtime.log import EventLog

__all__ = ["Leadership", "Lock", "LockError", "LockTimeout", "leader"]

RETRY_S = 0.05  # after an operation found no quorum, try again this much later
RELEASE_TRIES = 5  # compare-and-sets a release tries (each rival write costs one)
LEAVE_TIMEOUT_S = 1.0  # a waiter that gives up tries this long to leave the queue


class Client(WatchClient, Protocol):
    """What a lock needs of a zpaxos.runtime.client.Client (named so, without the
    import: the Client imports this module)."""

    name: str
    log: EventLog

    def registers(self, items: Iterable[tuple[str, RegOp]],
                  options: RegisterOptions | None = None,
                  concurrency: int | None = None) -> list[RegResult]: ...

    def get(self, key: str, options: RegisterOptions | None = None) -> RegResult: ...

    def sibling(self) -> Client: ...

    def give_back(self, sibling: Any) -> None: ...

    def close(self, reach_s: float = ...) -> None: ...


class LockError(Exception):
    """The lock's register holds something that is not a lock record."""


class LockTimeout(Exception):
    """The lock was not acquired within the timeout."""


class Lock:
    """A lock on register ``name`` (``client.lock(name, ttl)``): ``with lock as token``
    acquires (blocking; ``timeout`` seconds at most, then LockTimeout) and releases.
    While held: ``token`` (the fencing token), ``valid()``, ``lost``, ``lost_at``."""

    def __init__(self, client: Client, name: str, ttl: float | None = None,
                 timeout: float | None = None, holder: str | None = None) -> None:
        ttl = DEFAULT_TTL_S if ttl is None else ttl
        problem = key_problem(name)
        if problem:
            raise ValueError(f"invalid lock name {name!r}: {problem}")
        problem = ttl_problem(ttl)
        if problem:
            raise ValueError(problem)
        self.client = client
        self.name = name
        self.ttl = ttl
        self.timeout = timeout
        self.holder = holder or client.name
        self.owner = ""  # this holding's random id (new for each acquire)
        self.token: int | None = None
        self.lost_reason = ""
        self.on_lost: Callable[[str], None] | None = None  # called by the renewer thread
        self._mu = threading.Lock()  # guards what the renewer thread changes below
        self._lease: HolderLease | None = None
        self._record: LockRecord | None = None
        self._version = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Whether the renewer has written since the acquisition: until it has, the
        # caller's Client holds the register's 1-RTT promise and the release is one round
        # trip on it; set by release(), read by the renewer: it releases, or not.
        self._renewed = False
        self._renewer_releases = True

    # ---- what the holder asks

    @property
    def lease_s(self) -> float:
        """How long a lease lasts after its renewal was sent: ``ttl - margin``."""
        return self.ttl - margin_for(self.ttl)

    @property
    def grace(self) -> float:
        """How long whoever acts for the holder may take to stop once the lease is lost
        (``zpaxos lock``: SIGTERM, then SIGKILL this much later): half the margin."""
        return grace_for(self.ttl)

    @property
    def lost_at(self) -> float:
        """When (time.monotonic()) the lease is lost unless a renewal succeeds first."""
        with self._mu:
            lease = self._lease
        return lease.lost_at if lease is not None else 0.0

    @property
    def lost(self) -> bool:
        """True once the lock may no longer be held (its lease ran out, or another took
        it). Stop acting on it: another holder may get it soon."""
        with self._mu:
            lease = self._lease
        return lease is None or bool(self.lost_reason) or not lease.valid(time.monotonic())

    def valid(self) -> bool:
        return not self.lost

    def __enter__(self) -> int:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ---- acquiring

    def acquire(self) -> int:
        """Block until the lock is held; return its fencing token."""
        if self._thread is not None:
            raise RuntimeError(f"lock {self.name!r} is held already")
        self.owner = os.urandom(16).hex()
        self.lost_reason = ""
        deadline = time.monotonic() + (self.timeout if self.timeout is not None
                                       else float("inf"))
        # On the 1-RTT path: this Client's last write of the register (its previous
        # release, say) left it a promise for its next ballot; a rival's prepare takes it.
        session = WatchSession(self.client, self.name, self.client.register_options())
        try:
            rec, version, sent = self._wait_for_turn(session, deadline)
        except BaseException:
            self._leave_queue()
            raise
        with self._mu:
            self._record, self._version = rec, version
            self._lease = HolderLease(self.ttl, sent)
            self._renewed = False
            self._renewer_releases = True
        self.token = rec.token
        self.client.log.event("lock_acquired", f"{self.name}: {self.holder}, token "
                              f"{rec.token}", lock=self.name, holder=self.holder,
                              token=rec.token, ttl=self.ttl)
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                        name=f"lock-{self.name}")
        self._thread.start()
        return rec.token

    def _wait_for_turn(self, session: WatchSession, deadline: float,
                       ) -> tuple[LockRecord, int, float]:
        """Queue up, watch, and take the lock: (the record written, its version, when the
        write that took it was sent)."""
        # One piece: the waiter's loop is one story (read, decide, write or wait).
        clock = WaiterClock()
        r = session.read()
        while True:
            now = time.monotonic()
            if r.status not in (OK, CAS_FAILED):  # no quorum: nothing known; again soon
                if now >= deadline:
                    raise LockTimeout(self._timeout_text(r))
                session.wait(min(deadline, now + RETRY_S))
                r = session.read()
                continue
            rec = _record(self.name, r)
            clock.observe(r.version, now)
            need = wait_needed(rec, self.owner)
            if rec.owner == self.owner or need == 0 or clock.may_take_over(now, need):
                # Ours already (handed over by the releasing holder, or an attempt whose
                # answer was lost took effect): rewrite it, so that the lease starts from
                # a write whose sending time we know, never from the releaser's write.
                new = rec if rec.owner == self.owner else acquired(
                    rec, r.version, self.holder, self.owner, self.ttl)
                sent = time.monotonic()
                r = session.run(_cas(new, r.version))
                if r.status == OK:
                    return new, r.version, sent
                if r.status == UNKNOWN:
                    r = session.read()
                continue
            if rec.position(self.owner) is None:
                queued = enqueued(rec, self.owner, self.ttl, self.holder)
                if queued is not None:
                    r = session.run(_cas(queued, r.version))
                    continue
            if now >= deadline:
                raise LockTimeout(f"lock {self.name!r} not acquired in {self.timeout:g} s: "
                                  f"held by {rec.holder or 'nobody'}, "
                                  f"{len(rec.queue)} waiting")
            # Waiter k in the queue cannot be first before k more changes (each taking
            # the lock takes one waiter off the front, or passes several gone ones):
            # it leaves the reads before that to those ahead (reads are rounds too).
            # Its clock then runs from an older read, which only makes it later.
            session.read_ahead = rec.position(self.owner) or 1
            if session.wait(min(deadline, clock.take_over_at(need))):
                r = session.read()

    def _timeout_text(self, r: RegResult) -> str:
        return (f"lock {self.name!r} not acquired in {self.timeout:g} s: no quorum "
                f"({r.reason or r.status})")

    def _leave_queue(self) -> None:
        """Best effort: take our entry out of the queue, or free the lock if an attempt
        whose answer was lost took it (a few compare-and-sets); an entry left behind only
        delays the others by its TTL when it reaches the head. On a sibling Client: the
        caller's may be stopping (Ctrl-C) and refuse to run more."""
        c = self.client.sibling()
        try:
            opts = c.register_options(timeout_s=LEAVE_TIMEOUT_S)
            for _ in range(RELEASE_TRIES):
                r = c.registers([(self.name, RegOp(GET))], opts)[0]
                if r.status != OK:
                    return
                try:
                    rec = decode_record(r.value)
                except LockRecordError:
                    return
                # (Ours after all: an acquisition whose answer was lost took effect.)
                new = released(rec) if rec.owner == self.owner else dequeued(rec, self.owner)
                if new is None or c.registers([(self.name, _cas(new, r.version))],
                                              opts)[0].status == OK:
                    return
        finally:
            self.client.give_back(c)

    # ---- holding

    def _renew_loop(self) -> None:
        """The renewer thread: renew when due, on its own Client, until lost or stopped;
        stopped, it releases (its Client holds the register's 1-RTT promise, and no
        signal that stopped the caller's Client stops it)."""
        c = self.client.sibling()
        try:
            while not self._stop.is_set():
                with self._mu:
                    lease = self._lease
                    if lease is not None and lease.renew_due(time.monotonic()):
                        self._renewed = True  # (before the write: a release waits for it)
                assert lease is not None
                now = time.monotonic()
                if not lease.valid(now):
                    self._set_lost(f"no renewal succeeded in {self.lease_s:g} s")
                    return
                if not lease.renew_due(now):
                    self._stop.wait(min(lease.renew_at, lease.lost_at) - now)
                    continue
                if not self._renew_once(c, lease):
                    return
            if self._renewer_releases:
                self._release_on(c)
        finally:
            self.client.give_back(c)

    def _renew_once(self, c: Client, lease: HolderLease) -> bool:
        """One renewal attempt; False when the lock is lost for good."""
        with self._mu:
            rec, version = self._record, self._version
        assert rec is not None
        sent = time.monotonic()
        opts = c.register_options(timeout_s=max(0.05, lease.lost_at - sent))
        r = c.registers([(self.name, _cas(rec, version))], opts)[0]
        if r.status == OK:
            with self._mu:
                self._lease = lease.renewed(sent)
                self._version = r.version
            return True
        if r.status == CAS_FAILED:
            try:
                cur = decode_record(r.value)
            except LockRecordError:
                cur = LockRecord()
            if cur.owner == self.owner and cur.token == self.token:
                with self._mu:  # still ours (a waiter queued up): renew at its version
                    self._record, self._version = cur, r.version
                return True
            self._set_lost(f"taken over by {cur.holder} (token {cur.token})" if cur.held
                           else "the lock was freed or deleted by someone else")
            return False
        self._stop.wait(RETRY_S)  # no quorum now (or unknown): again, until lost_at
        return True

    def _set_lost(self, why: str) -> None:
        self.lost_reason = why
        self.client.log.event("lock_lost", f"{self.name}: token {self.token}: {why}",
                              logging.WARNING, lock=self.name, token=self.token, why=why)
        if self.on_lost is not None:
            self.on_lost(why)

    # ---- releasing

    def release(self) -> None:
        """Stop renewing and free the lock if it is still this holding's (a few tries,
        until the lease would be lost anyway; if no quorum answers, it runs out)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with self._mu:
            # The caller's Client holds the 1-RTT promise unless the renewer wrote since
            # (or the caller's Client is stopping: a signal asked it to, Ctrl-C).
            here = not self._renewed and not self.client.sockets.stop_requested
            self._renewer_releases = not here
        self._stop.set()
        thread.join()
        if here and not self.lost_reason:
            self._release_on(self.client)
        with self._mu:
            self._lease = None

    def _release_on(self, c: Client) -> None:
        with self._mu:
            rec, version, lease = self._record, self._version, self._lease
        assert rec is not None and lease is not None
        for _ in range(RELEASE_TRIES):
            left = lease.lost_at - time.monotonic()
            if left <= 0:
                return  # lost anyway: the waiters will take over
            opts = c.register_options(timeout_s=left)
            # Handed over to the head of the queue: one write instead of a release and
            # the next holder's own acquisition (lease.handed_over says why it is safe).
            new = handed_over(rec, version)
            r = c.registers([(self.name, _cas(new, version))], opts)[0]
            if r.status == OK:
                self.client.log.event("lock_released", f"{self.name}: token {self.token}"
                                      + (f", handed over to {new.holder}" if new.held else ""),
                                      lock=self.name, token=self.token,
                                      handed_to=new.holder or None)
                return
            if r.status != CAS_FAILED:
                # Unknown (a collision, say, with a waiter queueing up): did it land? An
                # unfreed lock would keep its waiters out for the whole TTL and margin.
                r = c.registers([(self.name, RegOp(GET))], opts)[0]
                if r.status != OK:
                    continue
            try:
                cur = decode_record(r.value)
            except LockRecordError:
                return
            if cur.owner != self.owner:
                return  # not ours any more
            rec, version = cur, r.version


class Leadership(Lock):
    """Leadership of election ``name`` (``client.campaign(name, id)``): ``term`` is its
    fencing token; ``lost`` says when it ended; leaving the ``with`` resigns."""

    @property
    def term(self) -> int:
        assert self.token is not None
        return self.token

    @property
    def id(self) -> str:
        return self.holder

    def __enter__(self) -> Leadership:  # type: ignore[override]
        if self._thread is None:
            self.acquire()
        return self

    def resign(self) -> None:
        self.release()


def leader(client: Client, name: str) -> tuple[str, int] | None:
    """The election's current leader and term (its fencing token), or None. This is the
    record's holder: a leader that died is shown until another takes over (at most its
    ``ttl + margin`` later, when one is campaigning)."""
    problem = key_problem(name)
    if problem:
        raise ValueError(f"invalid election name {name!r}: {problem}")
    r = client.get(name)
    if r.status != OK:
        raise ConnectionError(f"no quorum for {name!r} ({r.reason or r.status})")
    rec = _record(name, r)
    return (rec.holder, rec.token) if rec.held else None


def _record(name: str, r: RegResult) -> LockRecord:
    try:
        return decode_record(r.value)
    except LockRecordError as e:
        raise LockError(f"register {name!r} is not a lock: {e}") from None


def _cas(rec: LockRecord, version: int) -> RegOp:
    return RegOp(CAS, encode_record(rec), expect_version=version)
