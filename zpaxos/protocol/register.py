"""The register rules (CASPaxos): acceptor and proposer, pure like the rest of the core.

A change to a register is one Basic Paxos round:

1. prepare: the proposer asks every acceptor to promise its ballot;
2. a quorum of promises: take the state accepted at the highest ballot among them (the
   register's current state: any state a quorum accepted is seen by every later quorum);
3. apply the change ``f`` to it (set, compare-and-set, delete; a read is the identity);
4. accept: ask every acceptor to accept ``f(state)`` at the same ballot; a quorum of
   Accepted makes it the register's new state.

The acceptor rules are the single-decree ones (promise above, accept at or above the
promise); only "chosen" is gone: an accepted state is overwritten by a later round,
which is what makes the register rewritable. A read is a round with the identity change:
it writes back what it read, so a state a read returned is accepted by a quorum and no
later read can return an older one (a read that skipped the accept could return a state
that only a minority had accepted, then a later read an older one).

1-RTT (the paper's optimisation): the Accept carries the proposer's *next* ballot, which
the acceptor promises together with accepting. When a quorum accepted, the proposer
knows that quorum promised its next ballot and has accepted exactly the state it just
wrote: phase 1 of the next round is already done, and its next change of this key is one
round trip (an Accept at the next ballot). Any other proposer's prepare outbids it; the
Nack sends it back to the full round.

Deletion writes a tombstone (the value None at the next version), never removes the row:
see README "Registers" for why no garbage collection.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field, replace

from zpaxos.protocol.core import KeyState, quorum_size
from zpaxos.protocol.events import Event, Ignored, Peer
from zpaxos.protocol.messages import MAX_ROUND_STEP, ZERO, Ballot
from zpaxos.protocol.regmessages import (
    EMPTY,
    RAccept,
    RAccepted,
    RegisterMessage,
    RegState,
    RNack,
    RPrepare,
    RPromise,
    decode_state,
    encode_state,
    register_slot,
)
from zpaxos.protocol.regops import (
    CAS,
    CAS_FAILED,
    CAS_VALUE,
    DELETE,
    GET,
    NO_QUORUM,
    OK,
    SET,
    UNKNOWN,
    RegisterOptions,
    RegOp,
    RegResult,
)

__all__ = ["CAS", "CAS_FAILED", "CAS_VALUE", "DELETE", "GET", "NO_QUORUM", "OK", "SET",
           "UNKNOWN", "RegAcceptor", "RegOp", "RegResult", "RegisterOptions",
           "RegisterProposer", "next_ballot"]


@dataclass(slots=True)
class Step:
    """What a register handler asks of the runtime, in this order (as core.Step): persist
    these key states (fsync), then send these messages, then report these events."""

    persist: list[tuple[str, KeyState]] = field(default_factory=list)
    send: list[tuple[Peer, RegisterMessage]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def next_ballot(b: Ballot) -> Ballot:
    """The ballot a 1-RTT Accept at ``b`` promises for its proposer's next round."""
    return Ballot(b.round + 1, b.proposer)


# --------------------------------------------------------------------------- acceptor


class RegAcceptor:
    """The acceptor rules for registers. ``states`` is the node's one map of key states
    (shared with the write-once :class:`~zpaxos.protocol.core.Acceptor`); a register lives
    in its own slot (``@name``), its accepted state encoded in ``KeyState.value``."""

    def __init__(self, states: MutableMapping[str, KeyState]) -> None:
        self.states = states

    def state(self, key: str) -> tuple[KeyState, RegState]:
        s = self.states.get(register_slot(key), KeyState())
        return s, (EMPTY if s.value is None else decode_state(s.value))

    def handle(self, src: Peer, msg: RegisterMessage) -> Step:
        if isinstance(msg, RPrepare):
            return self.on_prepare(src, msg)
        if isinstance(msg, RAccept):
            return self.on_accept(src, msg)
        return Step(events=[Ignored(msg.key, type(msg).__name__)])

    def _update(self, key: str, new: KeyState) -> list[tuple[str, KeyState]]:
        slot = register_slot(key)
        if self.states.get(slot, KeyState()) == new:
            return []
        self.states[slot] = new
        return [(slot, new)]

    @staticmethod
    def _absurd(s: KeyState, b: Ballot) -> bool:
        return b.round > max(s.promised.round, s.accepted.round) + MAX_ROUND_STEP

    def on_prepare(self, src: Peer, msg: RPrepare) -> Step:
        s, reg = self.state(msg.key)
        if msg.ballot > s.promised and not self._absurd(s, msg.ballot):
            persist = self._update(msg.key, replace(s, promised=msg.ballot))
            return Step(persist=persist, send=[(src, RPromise(msg.key, msg.ballot, s.accepted,
                                                              reg))])
        return Step(send=[(src, RNack(msg.key, msg.ballot, s.promised))])

    def on_accept(self, src: Peer, msg: RAccept) -> Step:
        s, _ = self.state(msg.key)
        if msg.ballot >= s.promised and not self._absurd(s, msg.ballot):
            # Accepting promises msg.ballot; a 1-RTT Accept also promises the proposer's
            # next ballot (only that one: round + 1, same proposer).
            nxt = msg.next if msg.next == next_ballot(msg.ballot) else ZERO
            new = KeyState(promised=max(msg.ballot, nxt), accepted=msg.ballot,
                           value=encode_state(msg.state))
            return Step(persist=self._update(msg.key, new),
                        send=[(src, RAccepted(msg.key, msg.ballot, nxt))])
        return Step(send=[(src, RNack(msg.key, msg.ballot, s.promised))])


IDLE, PREPARE, ACCEPT, BACKOFF = "idle", "prepare", "accept", "backoff"


@dataclass(slots=True)
class _Attempt:
    op: RegOp
    options: RegisterOptions
    deadline: float
    rounds: int = 0
    sent_versions: list[int] = field(default_factory=list)  # versions our change was sent as


class RegisterProposer:
    """Runs operations on one register, one at a time, and keeps the 1-RTT promise between
    them. The caller serialises operations per key (the host queues them), which with the
    proposer id and a round that only grows keeps every ballot unique."""

    def __init__(self, key: str, proposer_id: bytes, acceptors: Sequence[Peer],
                 rng: random.Random) -> None:
        self.key = key
        self.id = proposer_id
        self.acceptors = tuple(acceptors)
        self.quorum = quorum_size(len(self.acceptors))
        self.rng = rng
        self.phase = IDLE
        self.ballot = ZERO
        self.result: RegResult | None = None
        # 1-RTT: the ballot a quorum promised us, and the state it accepted just before.
        self.cache: tuple[Ballot, RegState] | None = None
        self._round = 0
        self._max_seen = 0
        self._a: _Attempt | None = None
        self._promises: dict[Peer, RPromise] = {}
        self._accepted: set[Peer] = set()
        self._promised_next: set[Peer] = set()
        self._answered: set[Peer] = set()
        self._heard: set[Peer] = set()  # acceptors that answered this operation at all
        self._writing: tuple[RegState, RegResult] | None = None
        self._phase_deadline = float("inf")
        self._wake_at = float("inf")
        self._fast = False

    @property
    def busy(self) -> bool:
        return self.phase != IDLE

    @property
    def next_wakeup(self) -> float | None:
        if self._a is None:
            return None
        if self.phase == BACKOFF:
            return min(self._a.deadline, self._wake_at)
        return min(self._a.deadline, self._phase_deadline)

    def start(self, now: float, op: RegOp, options: RegisterOptions) -> Step:
        if self.phase != IDLE:
            raise RuntimeError("one operation at a time per register and proposer")
        self.result = None
        self._a = _Attempt(op, options, now + options.timeout_s)
        self._heard = set()
        step = Step()
        if self.cache is not None and options.one_rtt:
            ballot, state = self.cache
            self.cache = None
            self._a.rounds = 1
            self.ballot = ballot
            self._round = max(self._round, ballot.round)
            self._fast = True
            self._write(now, state, step)
        else:
            self._start_round(now, step)
        return step

    # ---- phase 1

    def _start_round(self, now: float, step: Step) -> None:
        assert self._a is not None
        self.cache = None
        self._fast = False
        self._a.rounds += 1
        self._round = max(self._round, self._max_seen) + 1
        self.ballot = Ballot(self._round, self.id)
        self._promises.clear()
        self._answered.clear()
        self.phase = PREPARE
        self._phase_deadline = now + self._a.options.round_timeout_s
        step.send.extend((a, RPrepare(self.key, self.ballot)) for a in self.acceptors)

    def _on_promise(self, now: float, src: Peer, msg: RPromise, step: Step) -> None:
        if msg.ballot != self.ballot or self.phase != PREPARE:
            return
        self._answered.add(src)
        self._promises[src] = msg
        if len(self._promises) >= self.quorum:
            self._write(now, self.current(self._promises.values()), step)

    @staticmethod
    def current(promises: Iterable[RPromise]) -> RegState:
        """The register's state as a quorum's promises show it: the one accepted at the
        highest ballot (the empty register when none accepted anything)."""
        best = max(promises, key=lambda p: p.accepted)
        return best.state if not best.accepted.is_zero else EMPTY

    # ---- phase 2

    def _write(self, now: float, base: RegState, step: Step) -> None:
        """Apply the operation to ``base`` (the register's current state) and accept it."""
        a = self._a
        assert a is not None
        op = a.op
        # Idempotent retries: ``base`` remembers the last change of each recent writer. A
        # host runs one operation per register at a time, so if an earlier attempt of this
        # one took effect, ``base`` descends from it and its op id is our writer's entry.
        done_at = base.applied(op.op_id) if op.mutates else None
        if done_at is not None:
            # An earlier attempt of this very change took effect (its reply was lost): do
            # not apply it twice; accept ``base`` as it is, so it is surely chosen.
            new, result = base, RegResult(self.key, op.kind, OK, done_at, op.value)
        elif op.mutates and a.sent_versions and not base.knows_writer(op.op_id):
            # An earlier attempt of this change reached some acceptors, and ``base`` no
            # longer says whether it took effect (its writer was pushed out of ``recent``):
            # applying it again could apply it twice. Say so rather than guess.
            self._end(UNKNOWN, f"an earlier attempt may have taken effect (version now "
                      f"{base.version})", base)
            return
        else:
            new, ok = op.apply(base)
            if ok:
                result = RegResult(self.key, op.kind, OK, new.version, new.value)
            else:
                result = RegResult(self.key, op.kind, CAS_FAILED, base.version, base.value)
            if new is not base:
                a.sent_versions.append(new.version)
        self._writing = (new, result)
        self.phase = ACCEPT
        self._accepted.clear()
        self._promised_next.clear()
        self._answered.clear()
        self._phase_deadline = now + a.options.round_timeout_s
        nxt = next_ballot(self.ballot) if a.options.one_rtt else ZERO
        msg = RAccept(self.key, self.ballot, new, nxt)
        step.send.extend((p, msg) for p in self.acceptors)

    def _on_accepted(self, src: Peer, msg: RAccepted, step: Step) -> None:
        if msg.ballot != self.ballot or self.phase != ACCEPT:
            return
        self._answered.add(src)
        self._accepted.add(src)
        if msg.next == next_ballot(self.ballot):  # only our next round counts
            self._promised_next.add(src)
        if len(self._accepted) < self.quorum:
            return
        assert self._writing is not None and self._a is not None
        new, result = self._writing
        if self._a.options.one_rtt and len(self._promised_next) >= self.quorum:
            # That quorum accepted ``new`` at our ballot and promised the next one:
            # phase 1 of our next round on this key is done.
            self.cache = (next_ballot(self.ballot), new)
            self._round = max(self._round, self.ballot.round + 1)
        self.result = replace(result, rounds=self._a.rounds, fast=self._fast)
        self._idle()

    # ---- rejection, retry, end

    def _on_nack(self, now: float, src: Peer, msg: RNack, step: Step) -> None:
        self._max_seen = max(self._max_seen, msg.promised.round)
        if msg.ballot != self.ballot or self.phase not in (PREPARE, ACCEPT):
            return
        self._answered.add(src)
        if msg.promised > self.ballot:
            self._retry(now, step, f"outbid by {msg.promised}")

    def _retry(self, now: float, step: Step, why: str) -> None:
        a = self._a
        assert a is not None
        self.cache = None
        if a.rounds >= a.options.max_rounds:
            self._give_up(f"no quorum in {a.rounds} rounds ({why})")
            return
        # Randomized exponential backoff: two proposers outbidding each other on one key
        # soon stop colliding (the paper's answer to contention; there is no leader).
        cap = min(a.options.backoff_max_s, a.options.backoff_s * 2 ** min(a.rounds - 1, 64))
        backoff = self.rng.uniform(0, cap) if cap > 0 else 0.0
        if backoff <= 0:
            self._start_round(now, step)
        else:
            self.phase = BACKOFF
            self._wake_at = now + backoff

    def _give_up(self, reason: str) -> None:
        a = self._a
        assert a is not None
        self._end(UNKNOWN if a.sent_versions else NO_QUORUM, reason, None)

    def _end(self, status: str, reason: str, seen: RegState | None) -> None:
        a = self._a
        assert a is not None
        self.cache = None
        self.result = RegResult(self.key, a.op.kind, status,
                                seen.version if seen else 0, seen.value if seen else None,
                                a.rounds, False, reason,
                                tuple(p for p in self.acceptors if p not in self._heard))
        self._idle()

    def _idle(self) -> None:
        self.phase = IDLE
        self._a = None
        self._writing = None

    # ---- driving

    def receive(self, now: float, src: Peer, msg: RegisterMessage) -> Step:
        step = Step()
        if self.phase == IDLE or src not in self.acceptors:
            return step
        self._heard.add(src)
        if isinstance(msg, RPromise):
            self._on_promise(now, src, msg, step)
        elif isinstance(msg, RAccepted):
            self._on_accepted(src, msg, step)
        elif isinstance(msg, RNack):
            self._on_nack(now, src, msg, step)
        return step

    def tick(self, now: float) -> Step:
        step = Step()
        a = self._a
        if a is None:
            return step
        if now >= a.deadline:
            self._give_up(f"no quorum within the {a.options.timeout_s:g} s deadline")
        elif self.phase in (PREPARE, ACCEPT) and now >= self._phase_deadline:
            self._retry(now, step, f"timeout in the {self.phase} phase")
        elif self.phase == BACKOFF and now >= self._wake_at:
            self._start_round(now, step)
        return step

    def nudge(self, now: float) -> Step:
        """An acceptor came back: resend the phase's message to those that did not answer
        (same ballot), or end a backoff now."""
        step = Step()
        a = self._a
        if a is None:
            return step
        if self.phase == PREPARE:
            msg: RegisterMessage = RPrepare(self.key, self.ballot)
        elif self.phase == ACCEPT and self._writing is not None:
            nxt = next_ballot(self.ballot) if a.options.one_rtt else ZERO
            msg = RAccept(self.key, self.ballot, self._writing[0], nxt)
        else:
            if self.phase == BACKOFF and now < a.deadline:
                self._start_round(now, step)
            return step
        step.send.extend((p, msg) for p in self.acceptors if p not in self._answered)
        self._phase_deadline = now + a.options.round_timeout_s
        return step
