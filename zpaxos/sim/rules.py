"""The rules ``zpaxos sim --break RULE`` can break, and what breaking each one does.

Each rule is the broken variant of the same name in mutants.py, with
the faults its schedules need (a rule about restarts needs crashes), the rule as the
textbook states it, and how to tell, in a run where two values were chosen, which
message let the second one in. :func:`explain` writes that as one paragraph.

The five of the lessons:

=======================  ==========================================================
lab-ballots              proposal numbers are not unique: every proposer numbers its
                         ballots 1, 2, 3... with the same id (the bug of the lab this
                         project grew from), and an acceptor promises an equal ballot
forgets-promise          an acceptor's promise is not written to disk, so a restart
                         forgets it
accepts-below-promise    an acceptor accepts a ballot lower than one it promised
ignores-accepted         a proposer ignores the accepted values reported in promises
                         and proposes its own value anyway
sends-before-persisting  a node sends its replies before its state is durable; a
                         crash in between forgets what it already told others
=======================  ==========================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from zpaxos.protocol.messages import Accept, Ballot, Promise
from zpaxos.sim.mutants import MUTANTS
from zpaxos.sim.simulator import fb, fv
from zpaxos.sim.tape import TapedSimulation, proc_name


@dataclass(frozen=True)
class Rule:
    name: str  # also its variant's name in mutants.MUTANTS
    faults: frozenset[str]  # what its schedules need
    rule: str  # the rule, as kept
    broken: str  # what the broken variant does instead

    @property
    def variant(self) -> dict[str, Any]:
        return {k: v for k, v in MUTANTS[self.name].variant.items() if k != "replay"}


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("lab-ballots", frozenset(),
         "every ballot is unique: (round, proposer id), so no two proposers send the same one",
         "proposers share their ballot numbers (the lab's bug), and an acceptor promises a"
         " Prepare equal to its promise"),
    Rule("forgets-promise", frozenset({"crash"}),
         "an acceptor's promise is on disk before the Promise leaves",
         "an acceptor keeps its promise in memory only, so a restart forgets it"),
    Rule("accepts-below-promise", frozenset(),
         "an acceptor accepts a ballot only at or above its promise",
         "an acceptor accepts a ballot below its promise"),
    Rule("ignores-accepted", frozenset(),
         "a proposer whose promises report accepted values proposes the one accepted at"
         " the highest ballot",
         "a proposer ignores what its promises report and proposes its own value"),
    Rule("sends-before-persisting", frozenset({"crash"}),
         "a node's new state is durable before any reply that depends on it leaves",
         "a node's replies leave before its state is written, which happens a pass later"),
)}


@dataclass
class Split:
    """Where safety failed: two values decided for ``key``, their quorums and the node
    in both that voted for each."""

    key: str
    first: tuple[bytes, Ballot, list[int], str]  # value, ballot, quorum, who decided it
    second: tuple[bytes, Ballot, list[int], str]
    node: int  # in both quorums
    culprit: str  # the message that let the second value in, as the chart labels it
    culprit_ids: tuple[str, str] = ("", "")  # (sender, receiver) process names


_BELOW = re.compile(r"^n(\d+) accepted (\S+?)=(.*) at ballot (\S+) below the promise (\S+)"
                    r" it had sent$")  # the simulator's words for that violation


def _quorum(sim: TapedSimulation, key: str, value: bytes) -> tuple[Ballot, list[int]]:
    """The first ballot at which a quorum voted for ``value``."""
    counts: dict[Ballot, set[int]] = {}
    for _, a, k, b, v in sim.vote_log:
        if k == key and v == value:
            counts.setdefault(b, set()).add(a)
            if len(counts[b]) >= sim.quorum:
                return b, sorted(counts[b])
    raise LookupError(f"no quorum voted for {fv(value)}")


def find_split(sim: TapedSimulation) -> Split | None:
    key = sim.split
    if key is None:
        return None
    decided: list[tuple[bytes, str]] = []
    for d in sim.decisions:
        if d.key == key and d.value not in [v for v, _ in decided]:
            decided.append((d.value, d.proposal))
    (v1, p1), (v2, p2) = decided[:2]
    b1, q1 = _quorum(sim, key, v1)
    b2, q2 = _quorum(sim, key, v2)
    both = [a for a in q1 if a in q2]
    # The node whose later vote went against its earlier one: the later of its two votes.
    def when(a: int, b: Ballot, v: bytes) -> float:
        return min(t for t, n, k, bb, vv in sim.vote_log if (n, k, bb, vv) == (a, key, b, v))
    node = max(both, key=lambda a: max(when(a, b1, v1), when(a, b2, v2)))
    later = (b2, v2) if when(node, b2, v2) >= when(node, b1, v1) else (b1, v1)
    # A vote the ghost saw cast below a promise is the culprit, when a node of both
    # quorums cast it (an acceptor that forgot or ignored its promise).
    for _, what in sim.violations:
        m = _BELOW.match(what)
        if m and int(m.group(1)) in both and m.group(2) == key:
            vote = next(((b, v) for b, v in ((b1, v1), (b2, v2))
                         if fb(b) == m.group(4) and fv(v) == m.group(3)), None)
            if vote is not None:
                node, later = int(m.group(1)), vote
                break
    first, second = (v1, b1, q1, p1), (v2, b2, q2, p2)
    earlier = (b1, v1) if later == (b2, v2) else (b2, v2)
    node, culprit, ids = _culprit(sim, key, node, both, later, earlier)
    return Split(key, first, second, node, culprit, ids)


def _culprit(sim: TapedSimulation, key: str, node: int, both: list[int],
             later: tuple[Ballot, bytes], earlier: tuple[Ballot, bytes],
             ) -> tuple[int, str, tuple[str, str]]:
    """The message that let the later vote happen, and the node it concerns: a Promise
    from a node of both quorums that reported the earlier value and was ignored, else
    the Accept ``node`` took."""
    b, v = later
    delivered = [m for m, d in sim.recorded.items() if d]
    for src, dst, msg, _ in delivered:
        if (src in both and isinstance(msg, Promise) and msg.key == key and msg.ballot == b
                and msg.value == earlier[1] and msg.value != v):
            return (src, f"PROMISE {fb(b)} accepted {fb(msg.accepted)}={fv(msg.value)}",
                    (proc_name(src), proc_name(dst)))
    for src, dst, msg, _ in delivered:
        if dst == node and isinstance(msg, Accept) and msg.key == key and msg.ballot == b \
                and msg.value == v:
            return node, f"ACCEPT {fb(b)} {fv(v)}", (proc_name(src), proc_name(dst))
    return node, f"ACCEPT {fb(b)} {fv(v)}", ("", proc_name(node))


def explain(rule: Rule, sim: TapedSimulation, s: Split) -> str:
    """One paragraph: which rule was broken, what was chosen, and which message did it."""
    (v1, b1, q1, p1), (v2, b2, q2, p2) = s.first, s.second
    x = proc_name(s.node)
    def names(q: Iterable[int]) -> str:
        return " and ".join(proc_name(a) for a in q)

    def quorum(q: Iterable[int]) -> str:
        return ", ".join(proc_name(a) for a in q)

    both = [a for a in q1 if a in q2]
    head = (f"Broken rule: {rule.name} -- {rule.broken}. Two values were chosen for key"
            f" {s.key}: {fv(v1)} by the quorum {{{quorum(q1)}}} at ballot {fb(b1)} (decided"
            f" by proposer {p1}) and {fv(v2)} by {{{quorum(q2)}}} at ballot {fb(b2)}"
            f" (decided by proposer {p2}). Any two majorities share a node -- here"
            f" {names(both)} -- and Paxos is safe because such a node carries the first"
            f" value into the later ballot. ")
    sender, _ = s.culprit_ids
    msg = f"{s.culprit} from {sender or 'a proposer'} to {s.culprit_ids[1]}"
    below = [w for _, w in sim.violations if "below the promise" in w
             and w.startswith(f"n{s.node} ")]
    crashed = any(a == s.node for _, a, _ in sim.crashed)
    why = {
        "lab-ballots": f"Both proposers numbered their ballots alike, so {x} promised the"
                       f" same ballot to both and accepted both values under one number:"
                       f" the message that let it happen is the {msg}, which a unique"
                       f" ballot (round, proposer id) would have made impossible.",
        "forgets-promise": f"{x} had promised a higher ballot, crashed, and came back"
                           f" without that promise ({below[0] if below else 'never on disk'}):"
                           f" the message that let it happen is the {msg}, which the kept"
                           f" promise would have refused.",
        "accepts-below-promise": f"{x} accepted a ballot below its own promise"
                                 f" ({below[0] if below else 'see the chart'}): the message"
                                 f" that let it happen is the {msg}, which it should have"
                                 f" refused with a NACK.",
        "ignores-accepted": f"The proposer heard from {x} that {fv(v1)} was already"
                            f" accepted, and proposed its own value anyway: the message that"
                            f" let it happen is the {msg}, whose accepted value it should"
                            f" have adopted.",
        "sends-before-persisting": f"{x} answered before its state was on disk"
                                   f"{', crashed' if crashed else ''} and came back without"
                                   f" what it had told others: the message that let it happen"
                                   f" is the {msg}, which the durable state would have"
                                   f" refused.",
    }[rule.name]
    return head + why
