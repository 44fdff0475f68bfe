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

A quorum read (a ``get`` by default, RegisterOptions.quorum_reads) first asks every
acceptor what it has accepted (RRead), which promises nothing and writes nothing. When a
quorum answers with the same accepted ballot, the read returns that ballot's state, with
no round at all. Why that is safe (and linearizable), docs/coordination.md ("A read that
writes nothing") argues in full; in short: (1) that quorum accepted the state at one
ballot, so it is chosen, and every later round's promise quorum meets that quorum and
builds on it, so no later read or change sees an older state; (2) every acceptor answered
after the read began and an acceptor's accepted ballot only grows, so no newer state was
chosen before the read began (its quorum would meet the read's, and that acceptor would
have answered with the newer ballot). When the answers do not agree (a change in flight),
the read asks once more, then falls back to the full round below. A quorum read leaves
every promise as it was, so it never takes a writer's 1-RTT promise away. With
RegisterOptions.read_quorum_first it asks only a quorum first (the one that answered its
last read first), and the others the same question when those cannot agree or are slow
(READ_WIDEN_S): the argument needs a quorum of agreeing answers to this question, not
answers from every acceptor.

1-RTT (the paper's optimisation): the Accept carries the proposer's *next* ballot, which
the acceptor promises together with accepting. When a quorum accepted, the proposer
knows that quorum promised its next ballot and has accepted exactly the state it just
wrote: phase 1 of the next round is already done, and its next change of this key is one
round trip (an Accept at the next ballot). Any other proposer's prepare outbids it; the
Nack sends it back to the full round.

Deletion writes a tombstone (the value None at the next version), never removes the row:
see docs/registers.md for why no garbage collection.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import replace

from msgspec.structs import replace as struct_replace

from zpaxos.protocol.core import KeyState, Quorums
from zpaxos.protocol.events import REJECTED, Applied, GaveUp, Ignored, Peer, Round
from zpaxos.protocol.messages import MAX_ROUND_STEP, ZERO, Ballot
from zpaxos.protocol.pacing import (
    ACCEPT,
    BACKOFF,
    IDLE,
    INF,
    PREPARE,
    QUERY,
    Step,
    quorum_size,
)
from zpaxos.protocol.regmessages import (
    EMPTY,
    RAccept,
    RAccepted,
    RegisterMessage,
    RegState,
    RNack,
    RPrepare,
    RPromise,
    RRead,
    RState,
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
from zpaxos.protocol.regread import QUERY_TRIES, READ_WIDEN_S, QuorumReader

__all__ = ["CAS", "CAS_FAILED", "CAS_VALUE", "DELETE", "GET", "NO_QUORUM", "OK", "QUERY_TRIES",
           "READ_WIDEN_S",
           "SET", "UNKNOWN", "RegAcceptor", "RegOp", "RegResult", "RegisterOptions",
           "RegisterProposer", "Step", "next_ballot"]


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
        if isinstance(msg, RRead):
            return self.on_read(src, msg)
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
            persist = self._update(msg.key, struct_replace(s, promised=msg.ballot))
            return Step(persist=persist, send=[(src, RPromise(msg.key, msg.ballot, s.accepted,
                                                              reg))])
        return Step(send=[(src, RNack(msg.key, msg.ballot, s.promised))])

    def on_read(self, src: Peer, msg: RRead) -> Step:
        """Report what was accepted. It promises nothing, so there is nothing to persist
        before the answer leaves, and no ballot is outbid."""
        s, reg = self.state(msg.key)
        return Step(send=[(src, RState(msg.key, msg.read, s.accepted, reg))])

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


class RegisterProposer(QuorumReader):
    """Runs operations on one register, one at a time, and keeps the 1-RTT promise between
    them. The caller serialises operations per key (the host queues them), which with the
    proposer id and a round that only grows keeps every ballot unique. The pacing
    (deadline, round timeouts, backoff, ``tick``, ``nudge``) is
    :class:`~zpaxos.protocol.pacing.PacedProposer`'s, shared with write-once keys; the
    events are theirs too (Round, Retry, GaveUp), and an operation that ends with a
    quorum's acceptance reports :class:`~zpaxos.protocol.events.Applied`."""

    FAILED = "no quorum"

    def __init__(self, key: str, proposer_id: bytes, acceptors: Sequence[Peer],
                 rng: random.Random, quorums: Quorums | None = None) -> None:
        """``quorums``: who counts in each phase when the cluster's configuration says so
        (protocol/membership.py); None: ``acceptors`` in both, majorities."""
        self.key = key
        self.id = proposer_id
        self.acceptors = tuple(acceptors)
        self._use(quorums)
        self.rng = rng
        self._init_pacing()
        self.opts: RegisterOptions = RegisterOptions()
        self.result: RegResult | None = None
        # 1-RTT: the ballot a quorum promised us, and the state it accepted just before.
        self.cache: tuple[Ballot, RegState] | None = None
        self._round = 0
        self._max_seen = 0
        self._op: RegOp | None = None
        self._sent_versions: list[int] = []  # versions this operation's change was sent as
        self._promises: dict[Peer, RPromise] = {}
        self._accepted: set[Peer] = set()
        self._promised_next: set[Peer] = set()
        self._heard: set[Peer] = set()  # acceptors that answered this operation at all
        self._states: dict[Peer, RState] = {}  # a quorum read's answers
        self._queries = 0  # a quorum read's questions so far
        self._read_id = 0  # the last question's number (RRead.read), over our whole life
        self._asked: tuple[Peer, ...] = ()  # the acceptors asked the current question
        self._widen_at = INF  # then ask the others too (read_quorum_first)
        # read_quorum_first asks these first: a quorum that answered the last read first.
        self._first: tuple[Peer, ...] = self.acceptors[:self.quorum]
        self._writing: tuple[RegState, RegResult] | None = None
        self._fast = False

    def _use(self, quorums: Quorums | None) -> None:
        if quorums is None:
            self._prepare_to = self._accept_to = frozenset(self.acceptors)
            self.quorum = self.accept_quorum = quorum_size(len(self.acceptors))
            return
        self._prepare_to, self._accept_to = frozenset(quorums.prepare), frozenset(quorums.accept)
        self.acceptors = tuple(dict.fromkeys((*quorums.prepare, *quorums.accept)))
        self.quorum, self.accept_quorum = quorums.prepare_quorum, quorums.accept_quorum

    def reconfigure(self, now: float, quorums: Quorums) -> Step:
        """The cluster moved to another configuration: count its voters from now on. The
        1-RTT promise was a quorum of the old configuration's (it is bound to its epoch):
        dropped. A running operation starts a new round at once (its promises and
        acceptances were counted against the old voters)."""
        self._use(quorums)
        self.cache = None
        step = Step()
        if self.phase in (PREPARE, ACCEPT, BACKOFF):
            self._start_round(now, step)
        elif self.phase == QUERY:
            self._query(now, step)  # its answers were counted against the old voters
        return step

    @property
    def busy(self) -> bool:
        return self.phase != IDLE

    def start(self, now: float, op: RegOp, options: RegisterOptions) -> Step:
        if self.phase != IDLE:
            raise RuntimeError("one operation at a time per register and proposer")
        self.result = None
        self._op, self.opts, self.rounds = op, options, 0
        self._sent_versions = []
        self._begin(now)
        self._heard = set()
        self._queries = 0
        step = Step()
        if op.kind == GET and options.quorum_reads:
            self._query(now, step)
        else:
            self._round_or_fast(now, step)
        return step

    def _round_or_fast(self, now: float, step: Step) -> None:
        """A round: on the 1-RTT path when a quorum promised us our next ballot."""
        if self.cache is not None and self.opts.one_rtt:
            ballot, state = self.cache
            self.cache = None
            self.rounds += 1
            self.ballot = ballot
            self._round = max(self._round, ballot.round)
            self._fast = True
            step.events.append(Round(self.key, ballot, self.rounds, fast=True))
            self._write(now, state, step)
        else:
            self._start_round(now, step)

    # ---- phase 1

    def _start_round(self, now: float, step: Step) -> None:
        self.cache = None
        self._fast = False
        self.rounds += 1
        # (After a rejection, _lead rounds above the highest seen: see pacing.LEAD_ROUNDS_PER_S.)
        self._round = max(self._round, self._max_seen + self._lead) + 1
        self._lead = 0
        self.ballot = Ballot(self._round, self.id)
        self._promises.clear()
        self.phase = PREPARE
        self._phase_started(now)
        step.events.append(Round(self.key, self.ballot, self.rounds))
        msg = RPrepare(self.key, self.ballot)
        step.send.extend((a, msg) for a in self.acceptors if a in self._prepare_to)

    def _on_promise(self, now: float, src: Peer, msg: RPromise, step: Step) -> None:
        if msg.ballot != self.ballot or self.phase != PREPARE:
            return
        self._answered.add(src)
        if src not in self._prepare_to:
            return
        self._promises[src] = msg
        if len(self._promises) >= self.quorum:
            self._phase_done(now)
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
        op = self._op
        assert op is not None
        # Idempotent retries: ``base`` remembers the last change of each recent writer. A
        # host runs one operation per register at a time, so if an earlier attempt of this
        # one took effect, ``base`` descends from it and its op id is our writer's entry.
        done_at = base.applied(op.op_id) if op.mutates else None
        if done_at is not None:
            # An earlier attempt of this very change took effect (its reply was lost): do
            # not apply it twice; accept ``base`` as it is, so it is surely chosen.
            new, result = base, RegResult(self.key, op.kind, OK, done_at, op.value)
        elif op.mutates and self._sent_versions and not base.knows_writer(op.op_id):
            # An earlier attempt of this change reached some acceptors, and ``base`` no
            # longer says whether it took effect (its writer was pushed out of ``recent``):
            # applying it again could apply it twice. Say so rather than guess.
            self._end(step, UNKNOWN, f"an earlier attempt may have taken effect (version "
                      f"now {base.version})", base)
            return
        else:
            new, ok = op.apply(base)
            if ok:
                result = RegResult(self.key, op.kind, OK, new.version, new.value)
            else:
                result = RegResult(self.key, op.kind, CAS_FAILED, base.version, base.value)
            if new is not base:
                self._sent_versions.append(new.version)
        self._writing = (new, result)
        self.phase = ACCEPT
        self._accepted.clear()
        self._promised_next.clear()
        self._phase_started(now)
        msg = RAccept(self.key, self.ballot, new, next_ballot(self.ballot) if self.opts.one_rtt
                      else ZERO)
        step.send.extend((p, msg) for p in self.acceptors)

    def _phase_message(self) -> RegisterMessage | None:
        if self.phase == QUERY:
            return RRead(self.key, self._read_id)
        if self.phase == PREPARE:
            return RPrepare(self.key, self.ballot)
        if self._writing is None:
            return None
        nxt = next_ballot(self.ballot) if self.opts.one_rtt else ZERO
        return RAccept(self.key, self.ballot, self._writing[0], nxt)

    def _on_accepted(self, now: float, src: Peer, msg: RAccepted, step: Step) -> None:
        if msg.ballot != self.ballot or self.phase != ACCEPT:
            return
        self._answered.add(src)
        if src in self._accept_to:
            self._accepted.add(src)
        if msg.next == next_ballot(self.ballot) and src in self._prepare_to:
            self._promised_next.add(src)  # only our next round counts, by its voters
        if len(self._accepted) < self.accept_quorum:
            return
        self._phase_done(now)
        assert self._writing is not None
        new, result = self._writing
        if self.opts.one_rtt and len(self._promised_next) >= self.quorum:
            # That quorum accepted ``new`` at our ballot and promised the next one:
            # phase 1 of our next round on this key is done.
            self.cache = (next_ballot(self.ballot), new)
            self._round = max(self._round, self.ballot.round + 1)
        self.result = replace(result, rounds=self.rounds, fast=self._fast)
        step.events.append(Applied(self.key, self.ballot, self.rounds, result.kind,
                                   result.status, result.version, self._fast or None))
        self._idle()

    # ---- rejection, retry, end

    def _on_nack(self, now: float, src: Peer, msg: RNack, step: Step) -> None:
        self._max_seen = max(self._max_seen, msg.promised.round)
        if msg.ballot != self.ballot or self.phase not in (PREPARE, ACCEPT):
            return
        self._answered.add(src)
        if msg.promised > self.ballot:
            self._retry(now, step, REJECTED, acceptor=src, promised=msg.promised)

    def _on_retry(self) -> None:
        self.cache = None

    def _give_up(self, step: Step, cause: str, reason: str) -> None:
        self._end(step, UNKNOWN if self._sent_versions else NO_QUORUM, reason, None, cause)

    def _end(self, step: Step, status: str, reason: str, seen: RegState | None,
             cause: str = UNKNOWN) -> None:
        op = self._op
        assert op is not None
        self.cache = None
        self.result = RegResult(self.key, op.kind, status,
                                seen.version if seen else 0, seen.value if seen else None,
                                self.rounds, False, reason,
                                tuple(p for p in self.acceptors if p not in self._heard))
        step.events.append(GaveUp(self.key, self.ballot, self.rounds, cause, reason))
        self._idle()

    def _idle(self) -> None:
        self.phase = IDLE
        self._op = None
        self._writing = None

    # ---- driving

    @property
    def next_wakeup(self) -> float | None:
        due = super().next_wakeup
        if self.phase == QUERY and self._widen_at < INF:
            return self._widen_at if due is None else min(due, self._widen_at)
        return due

    def tick(self, now: float) -> Step:
        if self.phase == QUERY and now >= self._widen_at and now < self._deadline:
            step = Step()
            self._widen(step)  # the quorum asked first was slow: ask the others too
            return step
        return super().tick(now)

    def nudge(self, now: float) -> Step:
        if self.phase == QUERY:
            self._asked, self._widen_at = self.acceptors, INF  # it asks every silent one
        return super().nudge(now)

    def receive(self, now: float, src: Peer, msg: RegisterMessage) -> Step:
        step = Step()
        if self.phase == IDLE or src not in self.acceptors:
            return step
        self._heard.add(src)
        if isinstance(msg, RPromise):
            self._on_promise(now, src, msg, step)
        elif isinstance(msg, RAccepted):
            self._on_accepted(now, src, msg, step)
        elif isinstance(msg, RNack):
            self._on_nack(now, src, msg, step)
        elif isinstance(msg, RState):
            self._on_state(now, src, msg, step)
        return step
