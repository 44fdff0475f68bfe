"""The log model: a cluster's JSON log read into events, messages and lifeline marks.

Every process of a run appends JSON lines to one log (see runtime/log.py). This module
reads them once into a :class:`LogModel` -- the events, with a small query API for the
scenarios and tests (``model.events(key=..., process=..., name=...)``); every message (a
``send`` paired with its ``recv`` by the sender's ``msg_id``), with what became of it when
it was never received; and the marks on each lifeline (rounds, pauses, retries, crashes,
decisions). chartmodel.py picks what one chart shows; chart_svg.py and chart_text.py
draw it. Nothing here knows about pictures, and nothing here parses a sentence: every
mark is built from an event's typed fields.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The message types a chart draws. Until the message registry lands
# (zpaxos/protocol/registry.py), this tuple and chartmodel.MESSAGES are the one place
# that lists them; the registry should replace both.
PAXOS_TYPES = ("PREPARE", "PROMISE", "ACCEPT", "ACCEPTED", "NACK", "DECIDE")
SYNC_TYPES = ("SYNC", "SYNC_REPLY")  # a (re)started node catching up (logged at DEBUG)
DRAWN_TYPES = PAXOS_TYPES + SYNC_TYPES
PROPOSER_GONE_S = 60.0  # a proposer silent this long (killed, say) is no longer busy
MAX_TS = 1e10  # year 2286: a larger "ts" is garbage, and localtime() would fail on it
IN_FLIGHT_S = 0.05  # a reply sent this soon before its proposer finished was still on its way
SKEW_S = 0.5  # how far a receive may seem to precede its send (clocks, log buffering)
SYNC_WINDOW_S = 1.0  # a node's "learned" this soon after a SYNC_REPLY came from it

NOT_DRAWN = ("persisted", "value_file", "value_file_failed", "ignored")  # bookkeeping
_TEXT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}\s+\S")
_NODE = re.compile(r"^node(\d+)$")

# What became of a message that was never received (Message.fate).
DELIVERED = ""
LOST = "lost"  # no explanation in the log: the network, or a process we cannot see
UNDELIVERABLE = "undeliverable"  # its sender's socket refused it (``undeliverable`` event)
RECEIVER_DOWN = "receiver down"  # sent to a node that was not running
NOT_SENT = "not sent"  # its proposer finished and exited before the message left
UNREAD = "unread"  # a reply to a proposer that had already finished


class TraceError(Exception):
    """A user-facing problem with the log or the options: one line, no traceback."""


@dataclass(frozen=True)
class Event:
    """One valid log line; ``line`` (1-based) breaks ties between equal timestamps."""

    ts: float
    process: str
    name: str
    fields: dict[str, Any]
    line: int

    @property
    def key(self) -> str | None:
        k = self.fields.get("key")
        return k if isinstance(k, str) else None

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]


@dataclass
class Message:
    """A message: its send, and its receive unless it was never received (see ``fate``)."""

    type: str
    sender: str
    receiver: str
    msg_id: str
    key: str | None
    sent: float
    fields: dict[str, Any]
    line: int
    received: float | None = None
    recv_line: int = 0
    fate: str = DELIVERED  # LOST, UNDELIVERABLE, RECEIVER_DOWN, NOT_SENT or UNREAD
    why: str = ""  # the socket's own words for an undeliverable message

    @property
    def lost(self) -> bool:
        """Never received, for whatever reason (``fate`` says which)."""
        return self.received is None

    @property
    def fault(self) -> bool:
        """Never received and nothing explains it but a fault: only these count as lost.
        An answer nobody waited for, or a message its proposer never got to send, is not."""
        return self.lost and self.fate in (LOST, UNDELIVERABLE)


@dataclass
class Mark:
    """Something that happened on one lifeline: ``kind`` picks the symbol."""

    kind: str  # start stop crash restart round adopted pause backoff retry chosen
    #            learns (a proposer told by a DECIDE) gave_up learned conflict malformed
    process: str
    ts: float
    text: str
    line: float
    key: str | None = None
    until: float | None = None  # end of a pause or backoff box
    value: str | None = None
    via: list[Message] = field(default_factory=list)  # learned: the sync exchange it came by


@dataclass
class LogModel:
    """A whole log: every event, every message, every mark, and when processes were down."""

    path: str
    all_events: list[Event]
    skipped: int = 0
    first_skipped: int = 0
    text_lines: int = 0
    messages: list[Message] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    down: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    crashes: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # (last, restart)
    busy_until: dict[str, float] = field(default_factory=dict)  # proposer -> end of its work
    finished: dict[str, float] = field(default_factory=dict)  # proposer -> chosen/gave_up
    stopped: dict[str, float] = field(default_factory=dict)  # proposer -> its exit

    _index: dict[str | None, tuple[list[Message], list[Mark]]] | None = None

    def events(self, key: str | None = None, process: str | None = None,
               name: str | None = None, type: str | None = None) -> list[Event]:
        """The events matching every given filter, in log order (``type``: a message's)."""
        return [e for e in self.all_events
                if (key is None or e.key == key) and (process is None or e.process == process)
                and (name is None or e.name == name)
                and (type is None or e.fields.get("type") == type)]

    def first(self, **filters: str) -> Event | None:
        found = self.events(**filters)
        return found[0] if found else None

    def by_key(self, key: str | None) -> tuple[list[Message], list[Mark]]:
        """The messages and marks of one key (None: the keyless ones), indexed once."""
        if self._index is None:
            self._index = defaultdict(lambda: ([], []))
            for m in self.messages:
                self._index[m.key][0].append(m)
            for mk in self.marks:
                self._index[mk.key][1].append(mk)
        return self._index.get(key, ([], []))

    def is_down(self, process: str, ts: float) -> bool:
        spans = self.down.get(process, []) + self.crashes.get(process, [])
        return any(a <= ts < b for a, b in spans)


def is_proposer(process: str) -> bool:
    return process.startswith("proposer")


def node_name(v: Any) -> str:
    """Events name nodes ``node1``; older logs gave an acceptor's number (1)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return f"node{v}"
    return str(v)


def node_order(process: str) -> tuple[int, int, str]:
    m = _NODE.match(process)
    return (0, int(m.group(1)), "") if m else (1, 0, process)


def is_node(process: str) -> bool:
    return _NODE.match(process) is not None


# ---------------------------------------------------------------- reading


def _valid(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    ts, proc, ev = obj.get("ts"), obj.get("process"), obj.get("event")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 <= ts < MAX_TS:
        return False  # also NaN and Infinity, which json accepts
    if not (isinstance(proc, str) and isinstance(ev, str)):
        return False
    if ev in ("send", "recv", "undeliverable"):
        return all(isinstance(obj.get(k), str) for k in ("type", "msg_id", "peer"))
    return True


def read_log(path: str | Path) -> LogModel:
    """Parse the log; a line that is no zpaxos event is counted and skipped."""
    path = str(path)
    p = Path(path)
    try:
        f = p.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TraceError(f"{path}: is a directory, not a log file") from None
    except OSError as e:
        raise TraceError(f"{path}: cannot read ({e.strerror})") from None
    model = LogModel(path, [])
    with f:
        try:
            for n, raw in enumerate(f, 1):
                line = raw.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    obj = None
                if not _valid(obj):
                    model.skipped += 1
                    model.first_skipped = model.first_skipped or n
                    model.text_lines += bool(_TEXT_LINE.match(line))
                    continue
                fields = {k: v for k, v in obj.items() if k not in ("ts", "process", "event")}
                model.all_events.append(Event(float(obj["ts"]), obj["process"], obj["event"],
                                              fields, n))
        except OSError as e:
            raise TraceError(f"{path}: cannot read ({e.strerror})") from None
    if not model.all_events:
        if model.text_lines:
            raise TraceError(f"{path}: this looks like a text-format log; set format = json "
                             f"in the [log] section of the cluster file and run again")
        what = f"{model.skipped} lines skipped" if model.skipped else "the file is empty"
        raise TraceError(f"{path}: no zpaxos events ({what})")
    model.all_events.sort(key=lambda e: (e.ts, e.line))
    _pair_messages(model)
    _lifecycle(model)
    _fates(model)
    _marks(model)
    return model


def _pair_messages(model: LogModel) -> None:
    """A receive pairs with the latest earlier send of its msg_id from its peer to it.

    Latest, because a restarted node numbers its messages from 1 again: an older send
    with the same id that was never received stays unreceived."""
    pending: dict[tuple[str, str, str], list[Message]] = defaultdict(list)  # not yet received
    by_sender: dict[tuple[str, str], Message] = {}
    for e in model.all_events:
        f = e.fields
        if f.get("type") not in DRAWN_TYPES:
            continue
        if e.name == "send":
            m = Message(f["type"], e.process, f["peer"], f["msg_id"], e.key, e.ts, f, e.line)
            model.messages.append(m)
            pending[(m.sender, m.receiver, m.msg_id)].append(m)
            by_sender[(m.sender, m.msg_id)] = m
        elif e.name == "undeliverable":
            m = by_sender.get((e.process, f["msg_id"]))
            waiting = pending.get((e.process, f["peer"], f["msg_id"]), [])
            if m is not None and m in waiting:
                waiting.remove(m)  # it never left, so no receive can match it
            else:
                m = Message(f["type"], e.process, f["peer"], f["msg_id"], e.key, e.ts, f, e.line)
                model.messages.append(m)
            m.fate, m.why = UNDELIVERABLE, str(f.get("msg") or "not sent")
        elif e.name == "recv":
            waiting = pending.get((f["peer"], e.process, f["msg_id"]), [])
            i = len(waiting) - 1
            while i >= 0 and waiting[i].sent > e.ts + SKEW_S:
                i -= 1
            if i >= 0:
                m = waiting.pop(i)
            else:  # sent by a process that does not log: draw it as instantaneous
                m = Message(f["type"], f["peer"], e.process, f["msg_id"], e.key, e.ts, f, e.line)
                model.messages.append(m)
            m.received, m.recv_line = max(e.ts, m.sent), e.line
    model.messages.sort(key=lambda m: (m.sent, m.line))


def _lifecycle(model: LogModel) -> None:
    """Starts, stops, crashes and restarts, and when each process was not running.

    A node killed with SIGKILL logs no stop: a second ``start`` without a ``stop`` in
    between means it crashed just after the last event it logged."""
    per: dict[str, list[Event]] = defaultdict(list)
    for e in model.all_events:
        per[e.process].append(e)
    for proc, evs in per.items():
        down: list[tuple[float, float]] = []
        proposer = is_proposer(proc)
        up, down_since, prev = evs[0].name != "start", float("-inf"), None
        for e in evs:
            if e.name == "start":
                if up and prev is not None:
                    model.marks.append(Mark("crash", proc, prev.ts, "crashed", prev.line + 0.5))
                    model.crashes.setdefault(proc, []).append((prev.ts, e.ts))
                elif prev is not None:
                    down.append((down_since, e.ts))
                if prev is not None:
                    model.marks.append(Mark("restart", proc, e.ts, "restarted", e.line))
                elif proposer:
                    down.append((float("-inf"), e.ts))
                    value = str(e.fields.get("value"))
                    model.marks.append(Mark("start", proc, e.ts, f"starts, proposing {value}",
                                            e.line, key=e.key, value=value))
                else:
                    down.append((float("-inf"), e.ts))
                    model.marks.append(Mark("start", proc, e.ts, "started", e.line))
                up = True
            elif e.name == "stop":
                text = "exits" if proposer else "stopped"
                model.marks.append(Mark("stop", proc, e.ts, text, e.line))
                up, down_since = False, e.ts
                if proposer:
                    model.stopped.setdefault(proc, e.ts)
            elif e.name in ("chosen", "gave_up") and proposer:
                model.finished.setdefault(proc, e.ts)
            prev = e
        if not up:
            down.append((down_since, float("inf")))
        elif proposer:  # a proposer that logged no stop was killed: its line ends
            down.append((evs[-1].ts, float("inf")))
        model.down[proc] = down
        if proposer:
            ends = [e.ts for e in evs if e.name in ("chosen", "gave_up", "stop")]
            model.busy_until[proc] = ends[0] if ends else evs[-1].ts + PROPOSER_GONE_S


def _fates(model: LogModel) -> None:
    """Why each message that was never received was not, as far as the log tells."""
    for m in model.messages:
        if not m.lost:
            continue
        done = model.finished.get(m.receiver)
        gone = m.fate != UNDELIVERABLE or "gone away" in m.why  # ROUTER: the proposer left
        if done is not None and gone and m.sent >= done - IN_FLIGHT_S:
            # A proposer stops reading once it has its outcome: not lost, just unread.
            m.fate = UNREAD
        elif m.fate == UNDELIVERABLE:
            continue
        elif model.is_down(m.receiver, m.sent):
            m.fate = RECEIVER_DOWN
        elif is_proposer(m.sender) and m.sender in model.stopped and not _crashed_after(
                model, m.receiver, m.sent):
            # The node was up all along and never saw it: the proposer finished and
            # exited (closing its sockets) before the message had left its queue.
            m.fate = NOT_SENT
        else:
            m.fate = LOST


def _crashed_after(model: LogModel, process: str, ts: float) -> bool:
    return any(b >= ts for _, b in model.crashes.get(process, ()))


def _marks(model: LogModel) -> None:
    """Marks for the proposers' and the nodes' own events (core.py says when each happens)."""
    last: dict[str, Event] = {}
    syncs: dict[str, list[Message]] = defaultdict(list)  # receiver -> SYNC_REPLYs received
    for m in model.messages:
        if m.type == "SYNC_REPLY" and m.received is not None:
            syncs[m.receiver].append(m)
    for e in model.all_events:
        model.marks.extend(_marks_of(model, e, last.get(e.process), syncs))
        if e.name not in NOT_DRAWN and not _plumbing(e):
            last[e.process] = e
    model.marks.sort(key=lambda m: (m.ts, m.line))


def _plumbing(e: Event) -> bool:
    """A send or receive of a message no chart draws (status requests, say)."""
    return e.name in ("send", "recv", "undeliverable") and e.fields.get("type") not in DRAWN_TYPES


def _marks_of(model: LogModel, e: Event, prev: Event | None,
              syncs: dict[str, list[Message]]) -> list[Mark]:
    f, k = e.fields, e.key
    ballot = f.get("ballot", "?")
    kind, text, extra = e.name, "", {}
    if e.name == "round":
        text = f"round {f.get('round', '?')} · ballot {ballot}"
    elif e.name == "adopted":
        text = f"adopts {f.get('value')} (accepted at {f.get('from_ballot')})"
        extra = {"value": str(f.get("value"))}
    elif e.name == "pause":
        secs = _num(f.get("seconds"))
        text, extra = f"pause {secs:g} s", {"until": e.ts + secs}
    elif e.name == "retry":
        text = "retry: " + retry_cause(f)
        backoff = _num(f.get("backoff_s"))
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
            request = [m for m in model.messages if m.type == "SYNC" and m.sender == e.process
                       and m.receiver == peer and m.sent <= reply.sent]
            extra["via"] = request[-1:] + [reply]
        if isinstance(peer, str) and is_node(peer):
            text += f" from {peer}"
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


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def gap(s: float) -> str:
    """A span of time, for labels: '600 ms', '2.70 s', '75 s'."""
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s" if s < 100 else f"{s:.0f} s"
