"""The log model: a cluster's JSON log read into events, messages and lifeline marks.

Every process of a run appends JSON lines to one log (see runtime/log.py). ``read_log``
reads them once into a :class:`LogModel`: the events, with a small query API for the
scenarios and tests (``model.events(key=..., process=..., name=...)``); every message (a
``send`` paired with its ``recv`` by the sender's ``msg_id``), and for one never received,
what became of it as far as the log tells (``Message.fate``); when each process was down;
and the marks on each lifeline (marks.py). chartmodel.py picks what one chart shows;
chart_svg.py and chart_text.py draw it. Nothing here knows about pictures.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zpaxos.pictures.marks import event_marks
from zpaxos.pictures.records import (
    DELIVERED,
    DRAWN_TYPES,
    LOST,
    MAX_TS,
    NOT_DRAWN,
    NOT_SENT,
    PAXOS_TYPES,
    RECEIVER_DOWN,
    UNDELIVERABLE,
    UNREAD,
    Event,
    Mark,
    Message,
    TraceError,
    gap,
    is_node,
    is_proposer,
    node_name,
    node_order,
)

__all__ = ["DELIVERED", "DRAWN_TYPES", "LOST", "MAX_TS", "NOT_DRAWN", "NOT_SENT", "PAXOS_TYPES",
           "RECEIVER_DOWN", "UNDELIVERABLE", "UNREAD", "Event", "LogModel", "Mark",
           "Message", "TraceError", "gap", "is_node", "is_proposer", "node_name", "node_order",
           "read_log"]

PROPOSER_GONE_S = 60.0  # a proposer silent this long (killed, say) is no longer busy
# A reply sent this soon before its proposer finished may still have been on its way, or
# waiting in the proposer's socket behind the replies that made its quorum (under load);
# at most: a log whose messages all arrive within milliseconds (a simulated one, say)
# allows twice its slowest delivery (``_in_flight``).
IN_FLIGHT_S = 0.5
SKEW_S = 0.5  # how far a receive may seem to precede its send (clocks, log buffering)
_TEXT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}\s+\S")


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


# ---------------------------------------------------------------- reading


def _valid(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    ts, proc, ev = obj.get("ts"), obj.get("process"), obj.get("event")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 <= ts < MAX_TS:
        return False  # also NaN and Infinity, which json accepts
    if not (isinstance(proc, str) and isinstance(ev, str)):
        return False
    if ev in ("send", "recv", "undeliverable", "dropped"):
        return all(isinstance(obj.get(k), str) for k in ("type", "msg_id", "peer"))
    return True


def read_log(path: str | Path) -> LogModel:
    """Parse the log; a line that is no zpaxos event is counted and skipped, unless most
    lines are such: then the file is no zpaxos log, and refused (TraceError)."""
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
    if model.skipped > len(model.all_events):
        # A few lines that are (a README quoting one): this is no log, do not draw them.
        total = model.skipped + len(model.all_events)
        raise TraceError(f"{path}: not a zpaxos log ({model.skipped} of its {total} lines"
                         f" are not zpaxos events, first: line {model.first_skipped})")
    model.all_events.sort(key=lambda e: (e.ts, e.line))
    _pair_messages(model)
    _lifecycle(model)
    _fates(model)
    model.marks.extend(event_marks(model.all_events, model.messages))
    model.marks.sort(key=lambda m: (m.ts, m.line))
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
            found = by_sender.get((e.process, f["msg_id"]))
            waiting = pending.get((e.process, f["peer"], f["msg_id"]), [])
            if found is not None and found in waiting:
                waiting.remove(found)  # it never left, so no receive can match it
                m = found
            else:
                m = Message(f["type"], e.process, f["peer"], f["msg_id"], e.key, e.ts, f, e.line)
                model.messages.append(m)
            m.fate, m.why = UNDELIVERABLE, str(f.get("msg") or "not sent")
        elif e.name == "dropped":  # a simulated network lost it (real logs cannot say so)
            found = by_sender.get((e.process, f["msg_id"]))
            waiting = pending.get((e.process, f["peer"], f["msg_id"]), [])
            if found is not None and found in waiting:
                waiting.remove(found)
                found.fate = LOST
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
        crashed_at: float | None = None  # a logged crash (the simulator knows when)
        for e in evs:
            if e.name == "crash":
                model.marks.append(Mark("crash", proc, e.ts, "crashed", e.line))
                up, down_since, crashed_at = False, e.ts, e.ts
            elif e.name == "start":
                if crashed_at is not None:
                    model.crashes.setdefault(proc, []).append((crashed_at, e.ts))
                    crashed_at = None
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
            elif e.name in ("chosen", "gave_up", "applied") and proposer:
                model.finished.setdefault(proc, e.ts)
            prev = e
        if not up:
            down.append((down_since, float("inf")))
        elif proposer:  # a proposer that logged no stop was killed: its line ends
            down.append((evs[-1].ts, float("inf")))
        model.down[proc] = down
        if proposer:
            ends = [e.ts for e in evs if e.name in ("chosen", "gave_up", "applied", "stop")]
            model.busy_until[proc] = ends[0] if ends else evs[-1].ts + PROPOSER_GONE_S


def _in_flight(model: LogModel) -> float:
    """How long a message may plausibly still have been on its way or in a queue: twice
    the slowest delivery the log shows, at most ``IN_FLIGHT_S``."""
    slowest = max((m.received - m.sent for m in model.messages if m.received is not None),
                  default=IN_FLIGHT_S)
    return min(IN_FLIGHT_S, 2 * slowest)


def _fates(model: LogModel) -> None:
    """Why each message that was never received was not, as far as the log tells.

    Each excuse needs the log's support: "not read" and "not sent" only for a message
    sent so shortly before its proposer finished that it could still have been on its
    way (``_in_flight``); a message that had time to arrive and did not is lost."""
    window = _in_flight(model)
    for m in model.messages:
        if not m.lost or m.fate == LOST:  # LOST already: the log says it was dropped
            continue
        done = model.finished.get(m.receiver)
        gone = m.fate != UNDELIVERABLE or "gone away" in m.why  # ROUTER: the proposer left
        if done is not None and gone and m.sent >= done - window:
            # A proposer stops reading once it has its outcome: not lost, just unread.
            m.fate = UNREAD
        elif m.fate == UNDELIVERABLE:
            continue
        elif model.is_down(m.receiver, m.sent) or _went_down(model, m.receiver, m.sent,
                                                               m.sent + window):
            m.fate = RECEIVER_DOWN
        elif is_proposer(m.sender) and m.sender in model.stopped and not _crashed_after(
                model, m.receiver, m.sent) and m.sent >= model.finished.get(
                    m.sender, model.stopped[m.sender]) - window:
            # The node was up all along and never saw it: the proposer finished and
            # exited (closing its sockets) before the message had left its queue.
            m.fate = NOT_SENT
        else:
            m.fate = LOST


def _went_down(model: LogModel, process: str, after: float, until: float) -> bool:
    """Whether the log shows ``process`` stopping or crashing in (after, until]."""
    spans = model.down.get(process, []) + model.crashes.get(process, [])
    return any(after < a <= until for a, _ in spans)


def _crashed_after(model: LogModel, process: str, ts: float) -> bool:
    return any(b >= ts for _, b in model.crashes.get(process, ()))
