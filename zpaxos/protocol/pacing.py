"""What every proposer shares: its options, the :class:`Step` it returns, and its pacing.

Write-once keys (:mod:`zpaxos.protocol.core`) and registers
(:mod:`zpaxos.protocol.register`) run the same two-phase round, so they pace it the same
way, here: a whole-operation deadline, a round timeout per phase, a randomized
exponential backoff between rounds, ``tick`` when a timer is due and ``nudge`` when an
acceptor comes back. A proposer subclasses :class:`PacedProposer` and says only what
differs: how a round starts, what message its current phase sends, how it gives up.

Pure, like the rest of the core: the caller says what time it is and seeds the
``random.Random`` the backoff draws from.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import ClassVar

import msgspec
from msgspec import field

from zpaxos.protocol.events import (
    DEADLINE,
    MAX_ROUNDS,
    REJECTED,
    TIMEOUT,
    Event,
    Peer,
    Retry,
)
from zpaxos.protocol.messages import (
    MAX_ROUND_STEP,
    ZERO,
    Ballot,
    ProtocolMessage,
    RAccept,
    RAccepted,
    RangeNack,
    RangePromise,
    RNack,
    RPrepare,
    RPromise,
    RRead,
    RState,
)
from zpaxos.protocol.state import KeyState

__all__ = ["ACCEPT", "BACKOFF", "DONE", "IDLE", "INF", "PREPARE", "QUERY", "Outgoing",
           "PacedProposer", "ProposerOptions", "Step", "quorum_size"]

INF = float("inf")

# Proposer phases (a register proposer goes back to IDLE between operations; a write-once
# proposer ends in DONE). QUERY: a register's quorum read, asking without a ballot; its
# round timeout and nudge are a phase's like the others.
IDLE, PREPARE, ACCEPT, BACKOFF, DONE = "idle", "prepare", "accept", "backoff", "done"
QUERY = "query"
_TIMED = (PREPARE, ACCEPT, QUERY)  # phases waiting for a quorum's answers

Outgoing = (ProtocolMessage | RangePromise | RangeNack
            | RPrepare | RPromise | RAccept | RAccepted | RNack | RRead | RState)


# Fairness: a proposer that was outbid waits out its backoff, and all that time a rival that
# keeps winning moves the register's rounds on, one per operation. The highest round the
# loser saw is stale by the time it wakes: its next prepare, one above it, is refused
# again, its backoff grows, and it starves while the rival never waits (issue 23: 1
# operation in 8 s against 13,689 in 25 s). So a rejected round's next ballot leads the
# highest round it saw by as many rounds as a rival could have used meanwhile: this many
# per second of backoff (one operation per 100 us on one register is more than a node
# serves), at most a quarter of the acceptors' limit on a jump (MAX_ROUND_STEP).
LEAD_ROUNDS_PER_S = 10_000
MAX_LEAD_ROUNDS = MAX_ROUND_STEP // 4
# The backoff's base is the smaller of ``backoff_s`` and this many of the proposer's own
# measured phases (a smoothed mean): colliding rounds on loopback last a millisecond,
# and a 50 ms wait after each collision would cost a contended register most of its
# throughput. Still randomized and exponential, so two rivals soon stop colliding.
BACKOFF_PHASES = 2.0
PHASE_SMOOTHING = 0.2  # weight of the newest phase in the mean


def quorum_size(n: int) -> int:
    """Smallest majority of ``n`` acceptors; any two such sets intersect."""
    if n < 1:
        raise ValueError("a cluster needs at least one acceptor")
    return n // 2 + 1


class ProposerOptions(msgspec.Struct, frozen=True):
    """How a proposer paces itself. These defaults are the only ones: the config's
    [proposer] section and the CLI start from them (and RegisterOptions extends them)."""

    round_timeout_s: float = 0.5  # wait this long for a quorum in one phase
    timeout_s: float = 5.0  # whole-proposal deadline (float("inf") for none)
    max_rounds: int = 10  # ballots to try before giving up
    backoff_s: float = 0.05  # base of the randomized exponential backoff; 0 disables it
    backoff_max_s: float = 2.0  # cap on one backoff
    first_round: int = 1  # start at this round (staging: who holds the higher ballot)


class Step(msgspec.Struct):
    """What a handler asks the runtime to do, in this order.

    1. ``persist``: make these key states durable (fsync);
    2. ``send``: only then send these messages;
    3. ``events``: report these.

    Safety depends on the order: a Promise or Accepted that leaves before its state is on
    disk can be forgotten by a crash, and a forgotten promise lets two values be chosen.
    The same holds for registers' RPromise and RAccepted.
    """

    persist: list[tuple[str, KeyState]] = field(default_factory=list)
    send: list[tuple[Peer, Outgoing]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    ranges: list[tuple[str, Ballot]] = field(default_factory=list)  # range promises to persist

    def extend(self, other: Step) -> None:
        self.persist.extend(other.persist)
        self.ranges.extend(other.ranges)
        self.send.extend(other.send)
        self.events.extend(other.events)


class PacedProposer:
    """The pacing of a two-phase proposer, for keys and registers alike.

    A subclass sets ``key``, ``acceptors``, ``rng`` and (per operation) ``opts`` and calls
    :meth:`_begin` when an operation starts; it keeps ``phase``, ``ballot``, ``rounds``
    and ``_answered`` (the acceptors that answered the current phase) up to date, and
    provides :meth:`_start_round`, :meth:`_phase_message` and :meth:`_give_up`.
    """

    FAILED: ClassVar[str] = "no value chosen"  # how a reason says that it did not work

    key: str
    acceptors: tuple[Peer, ...]
    rng: random.Random
    opts: ProposerOptions
    phase: str
    ballot: Ballot
    rounds: int
    _answered: set[Peer]
    _deadline: float  # the whole operation's
    _phase_deadline: float  # the current phase's round timeout
    _wake_at: float  # the end of a backoff
    _lead: int  # rounds the next ballot leads the highest seen by (after a rejection)
    _phase_t0: float  # when the current phase started
    _phase_s: float  # smoothed duration of a phase that reached its quorum (0: none yet)

    def _init_pacing(self) -> None:
        self.phase = IDLE
        self.ballot = ZERO
        self.rounds = 0
        self._answered = set()
        self._deadline = self._phase_deadline = self._wake_at = INF
        self._lead = 0
        self._phase_t0 = self._phase_s = 0.0

    # ---- what a proposer says for itself

    def _start_round(self, now: float, step: Step) -> None:
        raise NotImplementedError

    def _phase_message(self) -> Outgoing | None:
        """The message of the phase in progress (sent again by ``nudge``)."""
        raise NotImplementedError

    def _give_up(self, step: Step, cause: str, reason: str) -> None:
        raise NotImplementedError

    def _on_retry(self) -> None:
        """A round failed (before the next one is paced)."""

    # ---- driving

    @property
    def next_wakeup(self) -> float | None:
        """When ``tick`` must next be called; None when nothing waits on the clock."""
        phase = self.phase
        if phase in _TIMED:
            return min(self._deadline, self._phase_deadline)
        if phase == BACKOFF:
            return min(self._deadline, self._wake_at)
        if phase == DONE or phase == IDLE:
            return None
        return self._deadline

    def _begin(self, now: float) -> None:
        """An operation starts now: its deadline runs from here."""
        self._deadline = now + self.opts.timeout_s

    def _phase_started(self, now: float) -> None:
        self._answered.clear()
        self._phase_t0 = now
        self._phase_deadline = now + self.opts.round_timeout_s

    def _phase_done(self, now: float) -> None:
        """The current phase reached its quorum: its duration feeds the backoff's base."""
        took = max(0.0, now - self._phase_t0)
        self._phase_s = (took if self._phase_s == 0 else
                         self._phase_s + PHASE_SMOOTHING * (took - self._phase_s))

    def hold_phase(self, sent_at: float) -> None:
        """The runtime sent (some of) this phase's messages late, at ``sent_at``: the
        round timeout counts from then, so a late message is never taken for a lost one."""
        if self.phase in _TIMED:
            self._phase_deadline = max(self._phase_deadline, sent_at + self.opts.round_timeout_s)

    def tick(self, now: float) -> Step:
        step = Step()
        phase = self.phase
        if phase == DONE or phase == IDLE:
            return step
        if now >= self._deadline:
            self._give_up(step, DEADLINE,
                          f"{self.FAILED} within the {self.opts.timeout_s:g} s deadline")
        elif phase in _TIMED and now >= self._phase_deadline:
            missing = tuple(a for a in self.acceptors if a not in self._answered)
            self._retry(now, step, TIMEOUT, no_reply_from=missing)
        elif phase == BACKOFF and now >= self._wake_at:
            self._start_round(now, step)
        return step

    def nudge(self, now: float) -> Step:
        """An acceptor came back (the runtime saw it reconnect): retry now rather than
        wait out a round timeout or a backoff. A phase in progress sends its message
        again to the acceptors that have not answered it (the same ballot: an acceptor
        that already had it answers as before); a backoff ends with the next round."""
        step = Step()
        if self.phase in _TIMED:
            msg = self._phase_message()
            if msg is not None:
                step.send.extend((a, msg) for a in self.acceptors if a not in self._answered)
                self._phase_deadline = now + self.opts.round_timeout_s
        elif self.phase == BACKOFF and now < self._deadline:
            self._start_round(now, step)
        return step

    def _retry(self, now: float, step: Step, cause: str, acceptor: Peer | None = None,
               promised: Ballot | None = None,
               no_reply_from: Sequence[Peer] | None = None) -> None:
        """The round failed (rejected, or timed out): back off, then a new round."""
        phase = self.phase
        self._on_retry()
        if self.rounds >= self.opts.max_rounds:
            why = (f"rejected by acceptor {acceptor}" if cause == REJECTED
                   else f"timeout in {phase} phase")
            self._give_up(step, MAX_ROUNDS, f"{self.FAILED} in {self.rounds} rounds ({why})")
            return
        # Randomized exponential backoff: two proposers outbidding each other on one key
        # soon stop colliding (the paper's answer to contention; there is no leader). The
        # exponent is capped: 2 ** 1024 does not fit a float, and a proposer with no
        # deadline retries that often in a long partition (OverflowError at round 1025).
        o = self.opts
        base = o.backoff_s if self._phase_s == 0 else min(o.backoff_s,
                                                              BACKOFF_PHASES * self._phase_s)
        cap = min(o.backoff_max_s, base * 2 ** min(self.rounds - 1, 64))
        backoff = self.rng.uniform(0, cap) if cap > 0 else 0.0
        # Outbid: the next ballot leads by what a rival may use while we wait (above).
        self._lead = (min(MAX_LEAD_ROUNDS, math.ceil(backoff * LEAD_ROUNDS_PER_S))
                      if cause == REJECTED else 0)
        step.events.append(Retry(self.key, self.ballot, cause, phase, round(backoff, 4),
                                 acceptor, promised,
                                 None if no_reply_from is None else tuple(no_reply_from)))
        if backoff <= 0:
            self._start_round(now, step)
        else:
            self.phase = BACKOFF
            self._wake_at = now + backoff

