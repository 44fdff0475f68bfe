"""Lifeline marks: what a proposer's or a node's own events mean on its lifeline.

Each mark's text is built from the event's typed fields (``retry``: cause, phase,
acceptor, promised, no_reply_from, backoff_s; ``chosen``: how, chosen_ballot, told_by;
...), never parsed back out of a sentence. Older logs, which named acceptors by number
and gave no ``cause``, still read.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from zpaxos.pictures.records import (
    DRAWN_TYPES,
    NOT_DRAWN,
    Event,
    Mark,
    Message,
    gap,
    is_node,
    node_name,
    num,
)

SYNC_WINDOW_S = 1.0  # a node's "learned" this soon after a SYNC_REPLY came from it


def event_marks(events: list[Event], messages: list[Message]) -> list[Mark]:
    """Marks for the proposers' and the nodes' own events (core.py says when each happens),
    given every event in time order and every message, paired."""
    marks: list[Mark] = []
    last: dict[str, Event] = {}
    syncs: dict[str, list[Message]] = defaultdict(list)  # receiver -> SYNC_REPLYs received
    for m in messages:
        if m.type == "SYNC_REPLY" and m.received is not None:
            syncs[m.receiver].append(m)
    for e in events:
        marks.extend(_marks_of(messages, e, last.get(e.process), syncs))
        if e.name not in NOT_DRAWN and not _plumbing(e):
            last[e.process] = e
    return marks


def _plumbing(e: Event) -> bool:
    """A send or receive of a message no chart draws (status requests, say)."""
    return e.name in ("send", "recv", "undeliverable") and e.fields.get("type") not in DRAWN_TYPES


def _marks_of(messages: list[Message], e: Event, prev: Event | None,
              syncs: dict[str, list[Message]]) -> list[Mark]:
    f, k = e.fields, e.key
    ballot = f.get("ballot", "?")
    kind, text = e.name, ""
    extra: dict[str, Any] = {}  # Mark's optional fields: value, until, via
    if e.name == "round":
        text = f"round {f.get('round', '?')} · ballot {ballot}"
    elif e.name == "adopted":
        text = f"adopts {f.get('value')} (accepted at {f.get('from_ballot')})"
        extra = {"value": str(f.get("value"))}
    elif e.name == "pause":
        secs = num(f.get("seconds"))
        text, extra = f"pause {secs:g} s", {"until": e.ts + secs}
    elif e.name == "retry":
        text = "retry: " + retry_cause(f)
        backoff = num(f.get("backoff_s"))
        if backoff > 0:
            return [Mark("retry", e.process, e.ts, text, e.line, key=k),
                    Mark("backoff", e.process, e.ts, f"backoff {gap(backoff)}", e.line + 0.2,
                         key=k, until=e.ts + backoff)]
    elif e.name == "chosen":
        value = str(f.get("value"))
        extra = {"value": value}
        told = f.get("told_by")
        if told is None and prev is not None and _told_by_decide(e, prev):
            told = prev.fields.get("peer")
        if told is not None or f.get("how") == "already":
            # The ballot logged is this proposer's own, not the one the value was chosen at.
            kind = "learns"
            by = f" (told by {node_name(told)})" if told is not None else ""
            text = f"learns {value} was chosen{by}"
        else:
            at = f.get("chosen_ballot") or ballot
            how = ", adopted" if f.get("how") == "adopted" else ""
            text = f"chosen: {value} (ballot {at}{how})"
    elif e.name == "gave_up":
        text = "gave up: " + gave_up_cause(f)
    elif e.name == "applied":  # a register operation: nothing is chosen for good
        text = (f"{f.get('op', '?')} {f.get('status', '?')}: version {f.get('version', '?')}"
                f" (ballot {ballot})")
    elif e.name == "learned":
        if _told_by_decide(e, prev):
            return []  # the DECIDE arrow already says so
        value = str(f.get("value"))
        text, extra = f"learned {value}", {"value": value}
        peer = f.get("peer")
        via = [m for m in syncs.get(e.process, ()) if m.sender == peer
               and m.received is not None and 0 <= e.ts - m.received <= SYNC_WINDOW_S]
        if via:
            reply = via[-1]
            request = [m for m in messages if m.type == "SYNC" and m.sender == e.process
                       and m.receiver == peer and m.sent <= reply.sent]
            extra["via"] = request[-1:] + [reply]
        if isinstance(peer, str) and is_node(peer):
            text += f" from {peer}"
    elif e.name == "caught_up":  # a node learned what it missed from a peer's learn log
        n, peer = f.get("keys", "?"), f.get("peer", "?")
        text = f"caught up: {n} {'key' if n == 1 else 'keys'} from {peer}"
    elif e.name == "conflict":
        text = f"CONFLICT: chosen {f.get('chosen')}, told {f.get('value')}"
    elif e.name == "malformed":
        text = f"dropped a malformed frame from {f.get('peer', '?')}"
    else:
        return []
    return [Mark(kind, e.process, e.ts, text, e.line, key=k, **extra)]


def retry_cause(f: dict[str, Any]) -> str:
    """``rejected by node1, promised 3.ab12`` or ``no reply from node2 (accept phase)``,
    from the retry event's fields (older logs: an acceptor number, no ``cause``)."""
    cause = f.get("cause") or ("rejected" if "promised" in f else "timeout")
    phase = f.get("phase")
    in_phase = f" ({phase} phase)" if isinstance(phase, str) else ""
    if cause == "rejected":
        who = node_name(f["acceptor"]) if "acceptor" in f else "an acceptor"
        promised = f", promised {f['promised']}" if "promised" in f else ""
        return f"rejected by {who}{promised}"
    silent = f.get("no_reply_from")
    if isinstance(silent, list) and silent:
        return f"no reply from {', '.join(node_name(n) for n in silent)}{in_phase}"
    return f"timeout{in_phase}"


def gave_up_cause(f: dict[str, Any]) -> str:
    """The event's own sentence (``reason`` is there for display), else one from ``cause``."""
    cause, rounds, reason = f.get("cause"), f.get("rounds"), f.get("reason")
    if reason:
        return str(reason)
    if cause == "max_rounds":
        return f"no value chosen in {rounds} rounds"
    if cause == "deadline":
        return f"deadline passed after {rounds} rounds"
    return f"after {rounds} rounds"


def _told_by_decide(e: Event, prev: Event | None) -> bool:
    return (prev is not None and prev.name == "recv" and prev.key == e.key
            and prev.fields.get("type") == "DECIDE")

