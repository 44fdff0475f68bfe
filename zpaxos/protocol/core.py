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
from dataclasses import dataclass
from typing import Protocol

from zpaxos.protocol.events import ADOPTED as HOW_ADOPTED
from zpaxos.protocol.events import (
    ALREADY,
    REJECTED,
    Adopted,
    Chosen,
    Conflict,
    GaveUp,
    Ignored,
    Learned,
    Peer,
    Round,
)
from zpaxos.protocol.events import PROPOSED as HOW_PROPOSED
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
from zpaxos.protocol.pacing import (
    ACCEPT,
    BACKOFF,
    DONE,
    IDLE,
    PREPARE,
    Outgoing,
    PacedProposer,
    ProposerOptions,
    Step,
    quorum_size,
)
from zpaxos.protocol.ranges import MAX_RANGES, RangeTable, busy_keys
from zpaxos.protocol.registry import type_name
from zpaxos.protocol.state import EMPTY, KeyState

__all__ = ["ACCEPT", "BACKOFF", "DONE", "IDLE", "PREPARE", "Acceptor", "KeyState", "Learner",
           "Outcome", "Peer", "Proposer", "ProposerOptions", "Step", "quorum_size"]




# --------------------------------------------------------------------------- acceptor


class Acceptor:
    """The acceptor rules, for any number of independent keys.

    ``states`` and ``ranges`` (range promises, prefix -> ballot; see
    :mod:`zpaxos.protocol.ranges`) are what storage recovered at start-up: exactly what was
    persisted before. ``key_index``, when the runtime keeps one, is every key of
    ``states`` in order (a RangePrepare then looks only at its range's keys).
    """

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

    def _update(self, key: str, new: KeyState) -> list[tuple[str, KeyState]]:
        if self.states.get(key, EMPTY) == new:
            return []  # nothing changed: nothing to fsync
        self.states[key] = new
        return [(key, new)]

    @staticmethod
    def _absurd(promised: Ballot, accepted: Ballot, b: Ballot) -> bool:
        """A round too far ahead of anything seen: a forged or broken ballot that would
        lock the key (see MAX_ROUND_STEP). It is refused like a ballot that is too low."""
        return b.round > max(promised.round, accepted.round) + MAX_ROUND_STEP

    # The handlers build the new state whole (``KeyState(...)``) rather than through
    # ``dataclasses.replace``: the same rule, at a fifth of the cost per message.

    def on_prepare(self, src: Peer, msg: Prepare) -> Step:
        s = self.states.get(msg.key, EMPTY)
        if s.chosen is not None:
            # Already decided: tell the proposer at once instead of running a round.
            return Step([], [(src, Decide(msg.key, s.chosen, s.chosen_ballot))], [])
        promised = self.promised(msg.key, s)
        if msg.ballot > promised and not self._absurd(promised, s.accepted, msg.ballot):
            # Promise: from now on ignore every ballot below msg.ballot.
            new = KeyState(msg.ballot, s.accepted, s.value, s.chosen, s.chosen_ballot)
            self.states[msg.key] = new  # a higher promise: always a change
            reply = Promise(msg.key, msg.ballot, s.accepted, s.value)
            return Step([(msg.key, new)], [(src, reply)], [])
        return Step([], [(src, Nack(msg.key, msg.ballot, promised))], [])

    def on_accept(self, src: Peer, msg: Accept) -> Step:
        s = self.states.get(msg.key, EMPTY)
        if s.chosen is not None:
            return Step([], [(src, Decide(msg.key, s.chosen, s.chosen_ballot))], [])
        promised = self.promised(msg.key, s)
        if msg.ballot >= promised and not self._absurd(promised, s.accepted, msg.ballot):
            # Accepting also promises msg.ballot, so accepted <= promised always holds.
            reply: list[tuple[Peer, Outgoing]] = [
                (src, Accepted(msg.key, msg.ballot, msg.value))]
            if (s.accepted == msg.ballot and s.promised == msg.ballot
                    and s.value == msg.value):
                return Step([], reply, [])  # the same Accept again: nothing to fsync
            new = KeyState(msg.ballot, msg.ballot, msg.value, s.chosen, s.chosen_ballot)
            self.states[msg.key] = new
            return Step([(msg.key, new)], reply, [])
        return Step([], [(src, Nack(msg.key, msg.ballot, promised))], [])

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
        s = self.states.get(msg.key, EMPTY)
        if s.chosen is None:
            new = KeyState(s.promised, s.accepted, s.value, msg.value, msg.ballot)
            self.states[msg.key] = new  # chosen set: always a change
            return Step([(msg.key, new)], [], [Learned(msg.key, msg.value, msg.ballot)])
        if s.chosen == msg.value and s.chosen_ballot.is_zero and not msg.ballot.is_zero:
            # Same decision, and now we also know the ballot that chose it.
            return Step(self._update(msg.key, KeyState(s.promised, s.accepted, s.value,
                                                       s.chosen, msg.ballot)), [], [])
        if s.chosen != msg.value:
            # Two different chosen values: a safety violation somewhere, or a rogue peer.
            # Keep what we have and raise the alarm; never overwrite a decision.
            return Step([], [], [Conflict(msg.key, s.chosen, msg.value)])
        return Step([], [], [])


# --------------------------------------------------------------------------- learner


class Learner:
    """Learns chosen values: a quorum of Accepted for one ballot, or a Decide."""

    def __init__(self, acceptors: Sequence[Peer], quorum: int | None = None) -> None:
        """``quorum``: how many of ``acceptors`` must accept (default: a majority)."""
        self.acceptors = frozenset(acceptors)
        self.quorum = quorum if quorum is not None else quorum_size(len(self.acceptors))
        self.chosen: dict[str, bytes] = {}
        self.chosen_ballot: dict[str, Ballot] = {}  # when known
        self._votes: dict[tuple[str, Ballot, bytes], set[Peer]] = {}

    def on_accepted(self, src: Peer, msg: Accepted) -> bytes | None:
        """Count one Accepted; return the value if it is (now) known to be chosen."""
        if msg.key in self.chosen:
            return self.chosen[msg.key]
        if src not in self.acceptors:
            return None
        voters = self._votes.setdefault((msg.key, msg.ballot, msg.value), set())
        voters.add(src)  # a set: a duplicated Accepted counts once
        if len(voters) >= self.quorum:
            self.chosen[msg.key] = msg.value
            self.chosen_ballot[msg.key] = msg.ballot
            self._votes = {k: v for k, v in self._votes.items() if k[0] != msg.key}
            return msg.value
        return None

    def forget(self, key: str) -> None:
        """Drop the votes counted for an undecided key (the caller bounds its memory)."""
        self._votes = {k: v for k, v in self._votes.items() if k[0] != key}

    def on_decide(self, msg: Decide) -> bytes:
        if msg.key not in self.chosen and not msg.ballot.is_zero:
            self.chosen_ballot[msg.key] = msg.ballot
        return self.chosen.setdefault(msg.key, msg.value)


# --------------------------------------------------------------------------- proposer


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a proposal ended. ``chosen`` is None when no value could be chosen in time."""

    key: str
    proposed: bytes
    chosen: bytes | None
    own: bool  # True exactly when chosen == proposed
    rounds: int
    ballot: Ballot  # this proposer's last ballot
    reason: str
    silent: tuple[Peer, ...]  # acceptors that never answered this proposer
    # The ballot a quorum accepted the chosen value at (ZERO when not known), and how it
    # came to be: "proposed" (chosen now, our value), "adopted" (chosen now, an earlier
    # proposer's value we adopted), "already" (chosen before we came; told by a Decide).
    chosen_ballot: Ballot = ZERO
    how: str = ""
    told_by: Peer | None = None  # the acceptor whose Decide told us, if one did

    @property
    def chosen_text(self) -> str | None:
        """The chosen value as text (values are bytes; undecodable bytes escaped)."""
        return None if self.chosen is None else self.chosen.decode("utf-8", "backslashreplace")


class Quorums(Protocol):
    """Who counts in each phase (protocol/membership.Config has these fields)."""

    @property
    def prepare(self) -> Sequence[int]: ...
    @property
    def prepare_quorum(self) -> int: ...
    @property
    def accept(self) -> Sequence[int]: ...
    @property
    def accept_quorum(self) -> int: ...


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
        so (protocol/membership.py: during a membership change the prepare and accept
        sides differ); None: ``acceptors`` in both, majorities."""
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
        self._promises: dict[Peer, Promise] = {}
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
            chosen = self._learner.on_decide(msg)
            self._finish(step, chosen, f"already chosen (told by acceptor {src})", told_by=src)
        elif isinstance(msg, Promise):
            self._on_promise(now, src, msg, step)
        elif isinstance(msg, Accepted):
            self._on_accepted(src, msg, step)
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

    def _on_promise(self, now: float, src: Peer, msg: Promise, step: Step) -> None:
        if msg.ballot != self.ballot:
            return  # a reply to an earlier round
        self._answered.add(src)
        if self.phase != PREPARE or src not in self._prepare_to:
            return  # quorum already reached (a late promise changes nothing), or no voter
        self._promises[src] = msg  # a dict: a duplicated Promise counts once
        if len(self._promises) < self.quorum:
            return
        # The Paxos rule: propose the value of the highest accepted ballot among the
        # quorum's promises; our own value only when none of them accepted anything.
        best = max(self._promises.values(), key=lambda p: p.accepted)
        if best.value is not None and not best.accepted.is_zero:
            self.value = best.value
            step.events.append(Adopted(self.key, best.value, best.accepted, self.ballot))
        # Phase 2: ask every acceptor to accept (ballot, value).
        self.phase = ACCEPT
        self._phase_started(now)
        accept = Accept(self.key, self.ballot, self.value)
        step.send.extend([(a, accept) for a in self._accept_to])

    # ---- phase 2

    def _on_accepted(self, src: Peer, msg: Accepted, step: Step) -> None:
        if msg.ballot == self.ballot:
            self._answered.add(src)
        # Count every Accepted, even for a round we have since abandoned (a Nack from one
        # acceptor does not stop the others from accepting): a quorum for any one ballot
        # means its value is chosen, whoever proposed it.
        chosen = self._learner.on_accepted(src, msg)
        if chosen is not None:
            self._finish(step, chosen, "chosen by a quorum")

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
