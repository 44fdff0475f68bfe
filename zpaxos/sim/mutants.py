"""Deliberately broken variants of the core and of the hosts, for the simulators: one
table for write-once keys and registers.

Each must be caught by some default seed: a simulator that cannot find a bug proves
nothing. For a key's variant (``layer`` "core" or "host"), ``MUTANTS[name].variant`` is
what ``Simulation(..., **variant)`` takes and ``caught_by`` the invariant that must trip
(a substring of ``InvariantViolation.what``); for a register's (``layer`` "register",
the classes in zpaxos/sim/regmutants.py) it is what ``RegScenario`` is replaced with, and
the linearizability checker must find no linearization; for a membership change's
(``layer`` "membership", zpaxos/sim/membersim.py) it is what ``MemberSimulation`` takes; for
a lock's (layer "lock", the classes in zpaxos/sim/lockmutants.py) it is what
``LockScenario`` is replaced with, and the lock simulator's invariants (one holder at a
time; tokens that grow) must trip. A
rule ``zpaxos sim --break`` breaks (zpaxos/sim/rules.py) is the variant of the same name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from msgspec.structs import replace as struct_replace

from zpaxos.hosts.acceptor_host import AcceptorHost, Ready
from zpaxos.hosts.addresses import Src
from zpaxos.hosts.proposer_host import ProposerHost
from zpaxos.hosts.proposer_host import Ready as ProposerReady
from zpaxos.hosts.staging import NO_STAGING
from zpaxos.protocol.columns import Replies, rows
from zpaxos.protocol.core import ACCEPT, Acceptor, KeyState, Proposer, Step
from zpaxos.protocol.events import Round
from zpaxos.protocol.messages import (
    ZERO,
    Accept,
    Accepted,
    Ballot,
    Message,
    Promise,
    RangePrepare,
    RangePromise,
    SyncReply,
)
from zpaxos.protocol.ranges import Lease
from zpaxos.sim import membersim
from zpaxos.sim.lockmutants import (
    CountsFromRelease,
    RenewsWithoutMargin,
    ReusesToken,
    TrustsHoldersClock,
)
from zpaxos.sim.locksim import TOKEN, TWO_HOLDERS
from zpaxos.sim.regmutants import (
    AcceptBelowPromise,
    QuorumReadTrustsOneAnswer,
    ReadSkipsQuorum,
    StaleValue,
)
from zpaxos.sim.simulator import REPLAY_CMD

NO_LINEARIZATION = "no linearization"  # what the checker says of a register's bad history

# --------------------------------------------------------------------------- core mutants


class AcceptsBelowPromise(Acceptor):
    """Accepts a ballot below its promise (and leaves the promise as it was)."""

    def accept_rows(self, keys: Sequence[str], ballots: Sequence[Ballot],
                    values: Sequence[bytes], out: Replies) -> list[tuple[str, KeyState]]:
        persist: list[tuple[str, KeyState]] = []
        for key, b, v in zip(keys, ballots, values, strict=True):
            s = self.state(key)
            if s.chosen is None and b < s.promised:
                new = struct_replace(s, accepted=b, value=v)
                self.states[key] = new
                persist.append((key, new))
                out.add(Accepted, key, b, v)
            else:
                persist += super().accept_rows((key,), (b,), (v,), out)
        return persist


class ForgetsPromise(Acceptor):
    """A promise alone is never written to disk, so a restart forgets it."""

    def prepare_rows(self, keys: Sequence[str], ballots: Sequence[Ballot],
                     out: Replies) -> list[tuple[str, KeyState]]:
        super().prepare_rows(keys, ballots, out)
        return []


class IgnoresAcceptedValues(Proposer):
    """Reads every Promise as 'nothing accepted', so it always proposes its own value."""

    def _promise_row(self, now: float, src: Any, ballot: Ballot, accepted: Ballot,
                     value: bytes | None, step: Step | None) -> Step | None:
        return super()._promise_row(now, src, ballot, ZERO, None, step)


class RepromisingAcceptor(Acceptor):
    """Answers a Prepare *equal* to its promise with a Promise.

    Alone this is safe (a common idempotent rule, e.g. cocagne's composable Paxos uses
    >=), and shared ids alone are safe against zpaxos's strict '>' (an equal Prepare is
    refused, so one ballot never gets two promise quorums). Together they let two
    proposers run the same ballot with different values: the lab's bug in full.
    """

    def prepare_rows(self, keys: Sequence[str], ballots: Sequence[Ballot],
                     out: Replies) -> list[tuple[str, KeyState]]:
        persist: list[tuple[str, KeyState]] = []
        for key, b in zip(keys, ballots, strict=True):
            s = self.state(key)
            if s.chosen is None and b == s.promised:
                out.add(Promise, key, b, s.accepted, s.value)
            else:
                persist += super().prepare_rows((key,), (b,), out)
        return persist


class AcceptsBelowRangePromise(Acceptor):
    """Checks an Accept against the key's own promise only, not the range promises."""

    def accept_rows(self, keys: Sequence[str], ballots: Sequence[Ballot],
                    values: Sequence[bytes], out: Replies) -> list[tuple[str, KeyState]]:
        ranges, self.ranges.by_prefix = self.ranges.by_prefix, {}
        try:
            return super().accept_rows(keys, ballots, values, out)
        finally:
            self.ranges.by_prefix = ranges


class SkipsPhase1AfterLosingRange(Proposer):
    """A fast proposal that was refused retries in phase 2 again, at a higher ballot it
    never prepared (as if its range promise still held), with its own value."""

    _was_fast = False

    def start(self, now: float, fast: Ballot | None = None) -> Step:
        self._was_fast = fast is not None
        return super().start(now, fast)

    def _start_round(self, now: float, step: Step) -> None:
        if not self._was_fast:
            super()._start_round(now, step)
            return
        self.rounds += 1
        self._round = max(self._round, self._max_seen_round) + 1
        self.ballot = Ballot(self._round, self.id)
        self.value = self.proposed
        self.phase = ACCEPT
        self._answered.clear()
        self._phase_started(now)
        step.events.append(Round(self.key, self.ballot, self.rounds))
        step.send.extend((a, Accept(self.key, self.ballot, self.value)) for a in self.acceptors)


class IgnoresReportedKeys(Lease):
    """Takes every key of the range as fresh: the busy keys a RangePromise names (an
    accepted value, a decision) are ignored."""

    def on_promise(self, src: object, msg: RangePromise) -> None:
        super().on_promise(src, RangePromise(msg.prefix, msg.ballot, (), False))


# --------------------------------------------------------------------------- host mutants


class RangeIndexLags(AcceptorHost):
    """Answers a RangePrepare from a key index that lacks the keys created since the last
    status or sync page: the reply misses busy keys."""

    def handle(self, batch: Iterable[tuple[Src, Message]]) -> Ready:
        batch = list(batch)
        if not any(isinstance(m, RangePrepare) for _, m in batch):
            return super().handle(batch)
        lagging, self._new_keys = self._new_keys, []
        try:
            return super().handle(batch)
        finally:
            self._new_keys = lagging + self._new_keys


class ForgetsRangePromises(AcceptorHost):
    """Keeps range promises in memory only: a restarted node has forgotten them."""

    def handle(self, batch: Iterable[tuple[Src, Message]]) -> Ready:
        ready = super().handle(batch)
        ready.ranges.clear()
        return ready



class SendsBeforePersisting(AcceptorHost):
    """Lets a pass's replies leave while its state is made durable only with the next
    pass: a crash in between forgets promises and votes that were already sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._late: dict[str, KeyState] = {}

    def handle(self, batch: Iterable[tuple[Src, Message]]) -> Ready:
        ready = super().handle(batch)
        ready.persist, self._late = self._late, ready.persist
        return ready


class KeepsFirstStateInPass(AcceptorHost):
    """When two messages of one pass change the same key, persists the first state only
    (the node's old group-commit bug class: the latest state must win)."""

    def handle(self, batch: Iterable[tuple[Src, Message]]) -> Ready:
        merged = Ready()
        for item in ((src, row) for src, msg in batch for row in rows(msg)):
            one = super().handle([item])
            for k, s in one.persist.items():
                merged.persist.setdefault(k, s)
            merged.send += one.send
            merged.learned += one.learned
            merged.events += one.events
        return merged


class SyncOverwritesChosen(AcceptorHost):
    """Applies a peer's SyncReply straight to the state, over a different chosen value,
    instead of through the core's Decide rule (a decision is never overwritten)."""

    def handle(self, batch: Iterable[tuple[Src, Message]]) -> Ready:
        batch = list(batch)
        ready = super().handle(batch)
        for src, msg in batch:
            if isinstance(msg, SyncReply) and isinstance(src, int):
                for key, value, ballot in msg.chosen:
                    s = self.acceptor.state(key)
                    if s.chosen is not None and s.chosen != value:
                        new = struct_replace(s, chosen=value, chosen_ballot=ballot)
                        self.acceptor.states[key] = new
                        ready.persist[key] = new
        return ready


class TrustsClientDecides(AcceptorHost):
    """Records a client's Decide as soon as the node itself accepted that ballot and
    value, without asking its peers: one acceptance is not a quorum."""

    def _check_decide(self, msg: Any, ready: Ready) -> None:
        s = self.acceptor.state(msg.key)
        if s.chosen is None and s.accepted == msg.ballot and s.value == msg.value:
            self._apply(self.node_id, msg, ready, reply=False)
            return
        super()._check_decide(msg, ready)


class DefersAcceptances(AcceptorHost):
    """Marks every change of a pass lazy, as if promises and acceptances were learned
    decisions: the replies leave before the state is durable (Ready.lazy's rule broken)."""

    def handle(self, batch: Iterable[tuple[Src, Message]]) -> Ready:
        ready = super().handle(batch)
        ready.lazy.update(ready.persist)
        ready.persist = {}
        return ready


class MisroutesReplies(ProposerHost):
    """Keeps one route per key: a new proposal of a key takes the route of the one
    already running, whose replies then go to the wrong proposal (and are ignored there,
    since the ballot is not its own)."""

    def start(self, now: float, token: Any, key: str, value: bytes, options: Any,
              staging: Any = NO_STAGING, fast: bool = False) -> ProposerReady:
        ready = super().start(now, token, key, value, options, staging, fast)
        props = self._by_key.get(key, [])
        if len(props) > 1:
            self.running -= len(props) - 1
            del props[:-1]
        return ready


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Mutant:
    variant: dict[str, Any]
    caught_by: str  # a substring of the violation that must catch it ("a|b": either)
    layer: str  # "core" or "host" (write-once keys), "register", "membership" or "lock"

    @property
    def registers(self) -> bool:
        return self.layer == REGISTER


REGISTER, MEMBERSHIP, LOCK = "register", "membership", "lock"


def _m(name: str, caught_by: str, layer: str, **variant: Any) -> tuple[str, Mutant]:
    if layer == MEMBERSHIP:
        variant["replay"] = f"{membersim.REPLAY} --mutant {name}"
    elif layer not in (REGISTER, LOCK):
        variant["replay"] = f"{REPLAY_CMD} --mutant {name}"
    return name, Mutant(variant, caught_by, layer)


MUTANTS: dict[str, Mutant] = dict([
    _m("accepts-below-promise", "below the promise", "core", acceptor_cls=AcceptsBelowPromise),
    _m("forgets-promise", "below the promise", "core", acceptor_cls=ForgetsPromise),
    _m("ignores-accepted", "two values chosen", "core", proposer_cls=IgnoresAcceptedValues),
    _m("lab-ballots", "carries two values", "core", shared_ids=True,
       acceptor_cls=RepromisingAcceptor),
    _m("sends-before-persisting", "below the promise|two values chosen", "host",
       host_cls=SendsBeforePersisting),
    _m("host-keeps-first-state-in-pass", "below the promise", "host",
       host_cls=KeepsFirstStateInPass),
    _m("host-sync-overwrites-chosen", "but the chosen value is", "host",
       host_cls=SyncOverwritesChosen),
    _m("host-misroutes-replies", "liveness", "host", proposer_host_cls=MisroutesReplies),
    _m("host-defers-acceptances", "below the promise|two values chosen", "host",
       host_cls=DefersAcceptances),
    _m("host-trusts-client-decides", "but the chosen value is", "host",
       host_cls=TrustsClientDecides),
    # The fast path (zpaxos/protocol/ranges.py).
    _m("accepts-below-range-promise", "below the promise", "core",
       acceptor_cls=AcceptsBelowRangePromise),
    _m("skips-phase1-after-losing-range", "two values chosen|carries two values", "core",
       proposer_cls=SkipsPhase1AfterLosingRange),
    _m("ignores-reported-keys", "two values chosen", "core", lease_cls=IgnoresReportedKeys),
    _m("host-forgets-range-promises", "below the promise", "host",
       host_cls=ForgetsRangePromises),
    _m("host-range-index-lags", "two values chosen", "host", host_cls=RangeIndexLags),
    # Registers (zpaxos/sim/regsim.py, checked by zpaxos/sim/lincheck.py).
    _m("read-skips-quorum", NO_LINEARIZATION, REGISTER, proposer_cls=ReadSkipsQuorum),
    _m("stale-value", NO_LINEARIZATION, REGISTER, proposer_cls=StaleValue),
    _m("quorum-read-trusts-one-answer", NO_LINEARIZATION, REGISTER,
       proposer_cls=QuorumReadTrustsOneAnswer),
    _m("accept-below-promise", NO_LINEARIZATION, REGISTER, register_cls=AcceptBelowPromise),
    # Membership changes (zpaxos/sim/membersim.py): keys, registers and range promises
    # across configurations.
    *(_m(name, caught_by, MEMBERSHIP, **variant)
      for name, (variant, caught_by) in membersim.MUTANTS.items()),
    # Locks (zpaxos/sim/locksim.py, on the rules of zpaxos/protocol/lease.py).
    _m("lock-waiter-trusts-holders-clock", TWO_HOLDERS, LOCK, rules_cls=TrustsHoldersClock),
    _m("lock-renews-without-margin", TWO_HOLDERS, LOCK, rules_cls=RenewsWithoutMargin),
    _m("lock-token-reused", TOKEN, LOCK, rules_cls=ReusesToken),
    _m("lock-handover-lease-from-release", TWO_HOLDERS, LOCK, rules_cls=CountsFromRelease),
])
KEY_MUTANTS = {name: m for name, m in MUTANTS.items() if m.layer in ("core", "host")}
REGISTER_MUTANTS = {name: m for name, m in MUTANTS.items() if m.registers}
MEMBER_MUTANTS = {name: m for name, m in MUTANTS.items() if m.layer == MEMBERSHIP}
LOCK_MUTANTS = {name: m for name, m in MUTANTS.items() if m.layer == LOCK}
