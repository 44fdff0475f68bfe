"""The Paxos rules: Acceptor, Proposer and Learner as pure state machines.

Every rule of the protocol lives in this file and nowhere else. Nothing here touches a
socket, the clock, the disk or global randomness:

* handlers take a message (and, for the proposer, the current time ``now``) and return
  a :class:`Step`: the acceptor state to make durable, then the messages to send, then
  typed events (:mod:`zpaxos.protocol.events`). The runtime must persist
  ``step.persist`` *before* any message of ``step.send`` leaves the process;
* the proposer is told the time and asks to be woken (``next_wakeup``); it draws its
  backoff from a ``random.Random`` that the caller seeds.

So a seeded simulator can replay any schedule exactly (zpaxos/sim/simulator.py). Staging for
the textbook orderings (late messages, a pause between phases) is not a Paxos rule: it
lives in :mod:`zpaxos.hosts.staging`, around the proposer.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping, Sequence
from operator import itemgetter

from zpaxos.protocol.columns import Replies
from zpaxos.protocol.events import ADOPTED as HOW_ADOPTED
from zpaxos.protocol.events import (
    ALREADY,
    REJECTED,
    Adopted,
    Chosen,
    Conflict,
    Event,
    GaveUp,
    Ignored,
    Learned,
    Peer,
    Round,
)
from zpaxos.protocol.events import PROPOSED as HOW_PROPOSED
from zpaxos.protocol.learner import Learner
from zpaxos.protocol.messages import (
    MAX_ROUND_STEP,
    ZERO,
    Accept,
    Accepted,
    Ballot,
    Decide,
    Nack,
    Prepare,
    Promise,
    ProtocolMessage,
    RangeNack,
    RangePrepare,
    RangePromise,
)
from zpaxos.protocol.outcome import Outcome
from zpaxos.protocol.pacing import (
    ACCEPT,
    BACKOFF,
    DONE,
    IDLE,
    PREPARE,
    PacedProposer,
    ProposerOptions,
    Step,
    quorum_size,
)
from zpaxos.protocol.quorums import Quorums
from zpaxos.protocol.ranges import MAX_RANGES, RangeTable, busy_keys
from zpaxos.protocol.registry import type_name
from zpaxos.protocol.state import EMPTY, KeyState

__all__ = ["ACCEPT", "BACKOFF", "DONE", "IDLE", "PREPARE", "Acceptor", "KeyState", "Learner",
           "Outcome", "Peer", "Proposer", "ProposerOptions", "Quorums", "Step", "quorum_size"]


# --------------------------------------------------------------------------- acceptor


class Acceptor:
    """The acceptor rules, for any number of independent keys.

    ``states`` and ``ranges`` (range promises, prefix -> ballot; see ranges.py) are what
    storage recovered at start-up: exactly what was persisted before. ``key_index``, when
    the runtime keeps one, is every key of ``states`` in order (a RangePrepare then looks
    only at its range's keys)."""

    def __init__(self, states: Mapping[str, KeyState] | None = None,
                 ranges: Mapping[str, Ballot] | None = None) -> None:
        self.states: dict[str, KeyState] = dict(states or {})
        self.ranges = RangeTable(ranges)
        self.key_index: list[str] | None = None

    def state(self, key: str) -> KeyState:
        return self.states.get(key, EMPTY)

    def promised(self, key: str, s: KeyState) -> Ballot:
        """The key's effective promise: its own, or a range promise covering it if higher."""
        if not self.ranges.by_prefix:
            return s.promised
        r = self.ranges.covering(key)
        return r if r > s.promised else s.promised

    def handle(self, src: Peer, msg: ProtocolMessage | RangePrepare) -> Step:
        t = type(msg)
        if t is Prepare:
            return self.on_prepare(src, msg)  # type: ignore[arg-type]
        if t is Accept:
            return self.on_accept(src, msg)  # type: ignore[arg-type]
        if t is Decide:
            return self.on_decide(src, msg)  # type: ignore[arg-type]
        if t is RangePrepare:
            return self.on_range_prepare(src, msg)  # type: ignore[arg-type]
        # Replies meant for proposers are a peer's mistake, not ours: ignore them.
        return Step(events=[Ignored(getattr(msg, "key", ""), type_name(msg))])

    @staticmethod
    def _absurd(promised: Ballot, accepted: Ballot, b: Ballot) -> bool:
        """A round too far ahead of anything seen: a forged or broken ballot that would
        lock the key (see MAX_ROUND_STEP). It is refused like a ballot that is too low."""
        return b.round > max(promised.round, accepted.round) + MAX_ROUND_STEP

    # The rules over rows: a one-key message is a run of one (its handler below), a column
    # message (colmessages.py) a run of many, in one loop over plain tuples. Each builds
    # the new state whole (``KeyState(...)``): ``dataclasses.replace`` costs 5x as much.

    def prepare_rows(self, keys: Sequence[str], ballots: Sequence[Ballot],
                     out: Replies) -> list[tuple[str, KeyState]]:
        """Phase 1b for each row ``(key, ballot)``, in order: the replies go to ``out``;
        returns the states to make durable before any of them leaves."""
        states = self.states
        get = states.get
        ranges = self.ranges
        absurd = self._absurd
        add = out.add
        persist: list[tuple[str, KeyState]] = []
        for key, b in zip(keys, ballots, strict=True):
            s = get(key, EMPTY)
            if s.chosen is not None:
                # Already decided: tell the proposer at once instead of running a round.
                add(Decide, key, s.chosen, s.chosen_ballot)
                continue
            promised = self.promised(key, s) if ranges.by_prefix else s.promised
            if b > promised and not absurd(promised, s.accepted, b):
                # Promise: from now on ignore every ballot below b.
                new = KeyState(b, s.accepted, s.value, s.chosen, s.chosen_ballot)
                states[key] = new  # a higher promise: always a change
                persist.append((key, new))
                add(Promise, key, b, s.accepted, s.value)
            else:
                add(Nack, key, b, promised)
        return persist

    def accept_rows(self, keys: Sequence[str], ballots: Sequence[Ballot],
                    values: Sequence[bytes], out: Replies) -> list[tuple[str, KeyState]]:
        """Phase 2b for each row ``(key, ballot, value)``, in order (as prepare_rows)."""
        states = self.states
        get = states.get
        ranges = self.ranges
        absurd = self._absurd
        add = out.add
        persist: list[tuple[str, KeyState]] = []
        for key, b, v in zip(keys, ballots, values, strict=True):
            s = get(key, EMPTY)
            if s.chosen is not None:
                add(Decide, key, s.chosen, s.chosen_ballot)
                continue
            promised = self.promised(key, s) if ranges.by_prefix else s.promised
            if b >= promised and not absurd(promised, s.accepted, b):
                # Accepting also promises b, so accepted <= promised always holds.
                add(Accepted, key, b, v)
                if s.accepted == b and s.promised == b and s.value == v:
                    continue  # the same Accept again: nothing to fsync
                new = KeyState(b, b, v, s.chosen, s.chosen_ballot)
                states[key] = new
                persist.append((key, new))
            else:
                add(Nack, key, b, promised)
        return persist

    def decide_rows(self, keys: Sequence[str], values: Sequence[bytes],
                    ballots: Sequence[Ballot], events: list[Event],
                    ) -> list[tuple[str, KeyState]]:
        """Record each row's decision ``(key, value, ballot)``, in order: what was
        learned (or conflicts) goes to ``events``; returns the states changed."""
        states = self.states
        get = states.get
        persist: list[tuple[str, KeyState]] = []
        for key, v, b in zip(keys, values, ballots, strict=True):
            s = get(key, EMPTY)
            if s.chosen is None:
                new = KeyState(s.promised, s.accepted, s.value, v, b)
                states[key] = new  # chosen set: always a change
                persist.append((key, new))
                events.append(Learned(key, v, b))
            elif s.chosen == v:
                if s.chosen_ballot.is_zero and not b.is_zero:
                    # Same decision, and now we also know the ballot that chose it.
                    new = states[key] = KeyState(s.promised, s.accepted, s.value, v, b)
                    persist.append((key, new))
            else:
                # Two different chosen values: a safety violation somewhere, or a rogue
                # peer. Keep what we have and raise the alarm; never overwrite a decision.
                events.append(Conflict(key, s.chosen, v))
        return persist

    def on_prepare(self, src: Peer, msg: Prepare) -> Step:
        out = Replies(columns=False)
        persist = self.prepare_rows((msg.key,), (msg.ballot,), out)
        return Step(persist, [(src, m) for m in out.out], [])  # type: ignore[misc]

    def on_accept(self, src: Peer, msg: Accept) -> Step:
        out = Replies(columns=False)
        persist = self.accept_rows((msg.key,), (msg.ballot,), (msg.value,), out)
        return Step(persist, [(src, m) for m in out.out], [])  # type: ignore[misc]

    def on_range_prepare(self, src: Peer, msg: RangePrepare) -> Step:
        """Phase 1 for every key starting with ``msg.prefix`` (zpaxos/protocol/ranges.py):
        granted only above every overlapping range promise, durable before the reply, and
        the reply names the range's keys that are not fresh."""
        top = self.ranges.overlapping(msg.prefix)
        if msg.ballot <= top or self._absurd(top, ZERO, msg.ballot):
            return Step(send=[(src, RangeNack(msg.prefix, msg.ballot, top))])
        if (msg.prefix not in self.ranges.by_prefix and len(self.ranges)
                - len(self.ranges.inside(msg.prefix, msg.ballot)) >= MAX_RANGES):
            return Step(send=[(src, RangeNack(msg.prefix, msg.ballot, ZERO))])  # full
        # Promises this one implies are dropped (ranges.superseded: nothing changes for
        # any key); storage drops their rows when it writes this one.
        self.ranges.put(msg.prefix, msg.ballot)
        index = self.key_index
        if index is None:
            index = sorted(k for k in self.states if k.startswith(msg.prefix))
            keys = iter(index)
        else:
            keys = (index[i] for i in range(bisect.bisect_left(index, msg.prefix), len(index)))

        def state(key: str) -> tuple[Ballot, Ballot, bool]:
            s = self.states[key]
            return s.promised, s.accepted, s.chosen is not None

        busy, more = busy_keys(msg.prefix, msg.ballot, keys, state)
        return Step(send=[(src, RangePromise(msg.prefix, msg.ballot, busy, more))],
                    ranges=[(msg.prefix, msg.ballot)])

    def on_decide(self, src: Peer, msg: Decide) -> Step:
        events: list[Event] = []
        persist = self.decide_rows((msg.key,), (msg.value,), (msg.ballot,), events)
        return Step(persist, [], events)


# --------------------------------------------------------------------------- proposer


class Proposer(PacedProposer):
    """Proposes one value for one key and runs rounds until a value is chosen or it gives up.

    Drive it with ``start(now)``, ``receive(now, src, msg)`` and ``tick(now)`` (call
    ``tick`` once ``now >= next_wakeup``). ``outcome`` is set when it is done. The
    pacing (deadline, round timeouts, backoff, ``tick``, ``nudge``) is
    :class:`~zpaxos.protocol.pacing.PacedProposer`'s, shared with registers.
    """

    def __init__(
        self,
        key: str,
        value: bytes,
        proposer_id: bytes,
        acceptors: Sequence[Peer],
        options: ProposerOptions,
        rng: random.Random,
        quorums: Quorums | None = None,
    ) -> None:
        """``quorums``: who counts in each phase when the cluster's configuration says
        so (protocol/quorums.py); None: ``acceptors`` in both, majorities."""
        if not proposer_id:
            raise ValueError("proposer_id must be non-empty (the empty id is reserved for ZERO)")
        self.key = key
        self.proposed = value
        self.id = proposer_id
        self.acceptors = tuple(acceptors)
        self.opts = options
        self.rng = rng
        self._use(quorums)
        self._init_pacing()
        self.value = value  # what phase 2 proposes: our own, or an adopted one
        self.outcome: Outcome | None = None
        self._round = 0
        self._max_seen_round = 0
        self._promises: dict[Peer, tuple[Ballot, bytes | None]] = {}  # accepted, value
        self._heard: set[Peer] = set()

    def _use(self, quorums: Quorums | None) -> None:
        if quorums is None:
            self._prepare_to = self._accept_to = self.acceptors
            self.quorum = quorum_size(len(self.acceptors))
            self._learner = Learner(self.acceptors)
            return
        self._prepare_to, self._accept_to = tuple(quorums.prepare), tuple(quorums.accept)
        self.acceptors = tuple(dict.fromkeys((*self._prepare_to, *self._accept_to)))
        self.quorum = quorums.prepare_quorum
        self._learner = Learner(self._accept_to, quorums.accept_quorum)

    def reconfigure(self, now: float, quorums: Quorums) -> Step:
        """The cluster moved to another configuration (an acceptor refused our epoch and
        told us the new one): count the new voters, and start a new round at once (a
        round's promises and acceptances were counted against the old ones)."""
        self._use(quorums)
        step = Step()
        if self.phase in (PREPARE, ACCEPT, BACKOFF):
            self._start_round(now, step)
        return step

    # ---- driving

    @property
    def done(self) -> bool:
        return self.phase == DONE

    def start(self, now: float, fast: Ballot | None = None) -> Step:
        """Start proposing. ``fast``: a ballot whose phase 1 a range promise already did
        for this key, with nothing accepted (zpaxos/protocol/ranges.py): the first round
        goes straight to phase 2 at that ballot. Any Nack or timeout falls back to two
        phases, at a ballot of this proposer's own above it."""
        if self.phase != IDLE:
            raise RuntimeError("proposer already started")
        self._begin(now)
        step = Step()
        if fast is None:
            self._start_round(now, step)
            return step
        self.rounds = 1
        self._round = fast.round  # a retry starts above the range's ballot
        self.ballot = fast
        self.phase = ACCEPT
        self._phase_started(now)
        step.events.append(Round(self.key, self.ballot, self.rounds, fast=True))
        accept = Accept(self.key, self.ballot, self.value)  # one immutable message for all
        step.send.extend([(a, accept) for a in self._accept_to])
        return step

    def _phase_message(self) -> ProtocolMessage:
        return (Prepare(self.key, self.ballot) if self.phase == PREPARE
                else Accept(self.key, self.ballot, self.value))

    def receive(self, now: float, src: Peer, msg: ProtocolMessage) -> Step:
        step = Step()
        if self.phase in (DONE, IDLE) or msg.key != self.key or src not in self.acceptors:
            return step
        self._heard.add(src)
        if isinstance(msg, Decide):
            self._finish(step, self._learner.on_decide(msg),
                         f"already chosen (told by acceptor {src})", told_by=src)
        elif isinstance(msg, Promise):
            self._promise_row(now, src, msg.ballot, msg.accepted, msg.value, step)
        elif isinstance(msg, Accepted):
            self._accepted_row(src, msg.ballot, msg.value, step)
        elif isinstance(msg, Nack):
            self._on_nack(now, src, msg, step)
        return step

    # ---- phase 1

    def _start_round(self, now: float, step: Step) -> None:
        self.rounds += 1
        # Above every ballot this proposer has seen, so a retry can win.
        self._round = max(self._round, self._max_seen_round, self.opts.first_round - 1) + 1
        self.ballot = Ballot(self._round, self.id)
        self.value = self.proposed
        self._promises.clear()
        self.phase = PREPARE
        self._phase_started(now)
        step.events.append(Round(self.key, self.ballot, self.rounds))
        prepare = Prepare(self.key, self.ballot)
        step.send.extend([(a, prepare) for a in self._prepare_to])

    def promised(self, now: float, src: Peer, ballot: Ballot, accepted: Ballot,
                 value: bytes | None) -> Step | None:
        """One row of a Promises from ``src``: as ``accepted`` is of an Accepteds."""
        if self.phase == DONE or self.phase == IDLE or src not in self.acceptors:
            return None
        self._heard.add(src)
        return self._promise_row(now, src, ballot, accepted, value, None)

    def _promise_row(self, now: float, src: Peer, ballot: Ballot, accepted: Ballot,
                     value: bytes | None, step: Step | None) -> Step | None:
        if ballot != self.ballot:
            return step  # a reply to an earlier round
        self._answered.add(src)
        if self.phase != PREPARE or src not in self._prepare_to:
            return step  # quorum already reached (a late promise changes nothing), or no voter
        self._promises[src] = (accepted, value)  # a dict: a duplicated Promise counts once
        if len(self._promises) < self.quorum:
            return step
        step = Step() if step is None else step
        # The Paxos rule: propose the value of the highest accepted ballot among the
        # quorum's promises; our own value only when none of them accepted anything.
        best, best_value = max(self._promises.values(), key=itemgetter(0))
        if best_value is not None and not best.is_zero:
            self.value = best_value
            step.events.append(Adopted(self.key, best_value, best, self.ballot))
        # Phase 2: ask every acceptor to accept (ballot, value).
        self.phase = ACCEPT
        self._phase_started(now)
        accept = Accept(self.key, self.ballot, self.value)
        step.send.extend([(a, accept) for a in self._accept_to])
        return step

    # ---- phase 2

    def accepted(self, src: Peer, ballot: Ballot, value: bytes) -> Step | None:
        """One row of an Accepteds from ``src`` (for this proposal's key): as ``receive``
        of its Accepted, but None when it asks for nothing (no Step per row)."""
        if self.phase == DONE or self.phase == IDLE or src not in self.acceptors:
            return None
        self._heard.add(src)
        return self._accepted_row(src, ballot, value, None)

    def _accepted_row(self, src: Peer, ballot: Ballot, value: bytes,
                      step: Step | None) -> Step | None:
        if ballot == self.ballot:
            self._answered.add(src)
        # Count every Accepted, even for a round we have since abandoned (a Nack from one
        # acceptor does not stop the others from accepting): a quorum for any one ballot
        # means its value is chosen, whoever proposed it.
        chosen = self._learner.vote(src, self.key, ballot, value)
        if chosen is None:
            return step
        if step is None:
            step = Step()
        self._finish(step, chosen, "chosen by a quorum")
        return step

    # ---- rejection, retry, end

    def _on_nack(self, now: float, src: Peer, msg: Nack, step: Step) -> None:
        self._max_seen_round = max(self._max_seen_round, msg.promised.round)
        if msg.ballot != self.ballot:
            return  # rejection of an earlier round
        self._answered.add(src)
        # promised == our ballot is no rejection: a staged or duplicated Prepare arrived
        # after the acceptor had already promised (or accepted) this very ballot.
        if msg.promised > self.ballot and self.phase in (PREPARE, ACCEPT):
            self._retry(now, step, REJECTED, acceptor=src, promised=msg.promised)

    def _give_up(self, step: Step, cause: str, reason: str) -> None:
        self._end(None, reason, None)
        step.events.append(GaveUp(self.key, self.ballot, self.rounds, cause, reason))

    def _finish(self, step: Step, chosen: bytes, reason: str, told_by: Peer | None = None) -> None:
        """End the proposal with ``chosen``. ``told_by``: the acceptor whose Decide told
        us (then the value may have been chosen before we came)."""
        o = self._end(chosen, reason, told_by)
        step.events.append(Chosen(self.key, chosen, self.ballot, o.own, self.rounds, o.how,
                                  o.chosen_ballot, told_by))
        # Tell every acceptor, so each records the decision and answers later proposers
        # at once (and a node that missed a round learns it from us).
        decide = Decide(self.key, chosen, o.chosen_ballot)
        step.send.extend([(a, decide) for a in self.acceptors if a != told_by])

    def _end(self, chosen: bytes | None, reason: str, told_by: Peer | None) -> Outcome:
        self.phase = DONE
        chosen_ballot = self._learner.chosen_ballot.get(self.key, ZERO)
        if chosen is None:
            how = ""
        elif told_by is not None and chosen_ballot != self.ballot:
            how = ALREADY
        else:
            how = HOW_PROPOSED if chosen == self.proposed else HOW_ADOPTED
        self.outcome = Outcome(
            key=self.key,
            proposed=self.proposed,
            chosen=chosen,
            own=chosen is not None and chosen == self.proposed,
            rounds=self.rounds,
            ballot=self.ballot,
            reason=reason,
            silent=tuple(a for a in self.acceptors if a not in self._heard),
            chosen_ballot=chosen_ballot,
            how=how,
            told_by=told_by,
        )
        return self.outcome
