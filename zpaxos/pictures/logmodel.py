"""``zpaxos trace``: message sequence charts of a run, drawn from the cluster's JSON log.

Every process of a run appends JSON lines to one log (see log.py). This module reads
them into a small model -- processes, messages (a ``send`` paired with its ``recv`` by the
sender's ``msg_id``), and marks on lifelines (rounds, pauses, retries, crashes, the
decision) -- and picks what to draw; chart_svg.py and chart_text.py only draw it.

Which events make a chart:

* ``--since T``: every key's events at or after T (``--key`` narrows it to one key).
* otherwise each key's *latest run*. A run of a key is a stretch of its events split at a
  proposer ``start`` for that key that comes more than ``RUN_GAP_S`` after the key's
  previous event while no earlier proposer of the key is still busy (a proposer is busy
  until it logs ``chosen``, ``gave_up`` or ``stop``, or stays silent ``PROPOSER_GONE_S``).
  So "A, then B one second later" or "fail, restart the nodes, retry" is one run, and the
  same key proposed again after a quiet minute starts a new one.

Events without a key (a node's start and stop, a crash, a malformed frame) belong to
every chart whose time window they fall in.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

PAXOS_TYPES = ("PREPARE", "PROMISE", "ACCEPT", "ACCEPTED", "NACK", "DECIDE")
RUN_GAP_S = 5.0  # a key quiet this long, with no proposer busy, ends a run
PROPOSER_GONE_S = 60.0  # a proposer silent this long (killed, say) is no longer busy
TAIL_S = 1.0  # a proposer's exit this soon after a chart's last event still belongs to it
MAX_TS = 1e10  # year 2286: a larger "ts" is garbage, and localtime() would fail on it
IN_FLIGHT_S = 0.05  # a reply sent this soon before its proposer finished was still on its way
SKEW_S = 0.5  # how far a receive may seem to precede its send (clocks, log buffering)
VALUE_SHOWN = 24  # characters of a value shown in a label

NOT_DRAWN = ("persisted", "value_file", "value_file_failed", "ignored")  # bookkeeping
_TEXT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}\s+\S")
_NODE = re.compile(r"^node(\d+)$")


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


@dataclass
class Message:
    """A Paxos message: its send, and its receive unless it was lost."""

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
    lost_why: str = ""  # "undeliverable: peer has gone away", or "" for never received

    @property
    def lost(self) -> bool:
        return self.received is None

    @property
    def unread(self) -> bool:
        """Never received because the proposer it was for had already finished and gone:
        not a network loss, just an answer nobody waited for."""
        return self.lost and self.lost_why.startswith("unread")

    @property
    def loss_label(self) -> str:
        if self.unread:
            return "not read: proposer done"
        return "undeliverable" if self.lost_why else "lost"

    @property
    def label(self) -> str:
        """``PREPARE 2.b7``, ``PROMISE 2.b7 accepted 1.a3=Value_A``, ``DECIDE Value_A``..."""
        f, t = self.fields, self.type
        ballot = str(f.get("ballot", "?"))
        if t == "PROMISE" and "accepted" in f:
            return f"{t} {ballot} accepted {f['accepted']}={short(f.get('value'))}"
        if t == "NACK":
            return f"{t} {ballot} promised {f.get('promised', '?')}"
        if t == "ACCEPT":
            return f"{t} {ballot} {short(f.get('value'))}"
        if t == "DECIDE":
            return f"{t} {short(f.get('value'))}"
        return f"{t} {ballot}"


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


@dataclass
class Chart:
    """What one chart shows: one key over one time window."""

    key: str
    start: float
    end: float
    processes: list[str]
    messages: list[Message]
    marks: list[Mark]
    down: dict[str, list[tuple[float, float]]]  # per process: when it was not running
    proposed: dict[str, str]  # proposer -> the value it proposed
    note: str = ""

    @property
    def decision(self) -> Mark | None:
        """The first proposer to learn the value from its quorum's ACCEPTEDs (else the
        first one told by a DECIDE): the instant the chart highlights."""
        first = next((m for m in self.marks if m.kind == "chosen"), None)
        return first or next((m for m in self.marks if m.kind == "learns"), None)

    def is_down(self, process: str, ts: float) -> bool:
        return any(a <= ts < b for a, b in self.down.get(process, ()))


@dataclass
class Trace:
    """A whole log: every event, every message, every mark."""

    path: str
    events: list[Event]
    skipped: int = 0
    first_skipped: int = 0
    text_lines: int = 0
    messages: list[Message] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    down: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    crashes: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # (last, restart)
    busy_until: dict[str, float] = field(default_factory=dict)  # proposer -> end of its work

    _index: dict[str | None, tuple[list[Message], list[Mark]]] | None = None

    def by_key(self, key: str | None) -> tuple[list[Message], list[Mark]]:
        """The messages and marks of one key (None: the keyless marks), indexed once."""
        if self._index is None:
            self._index = defaultdict(lambda: ([], []))
            for m in self.messages:
                self._index[m.key][0].append(m)
            for mk in self.marks:
                self._index[mk.key][1].append(mk)
        return self._index.get(key, ([], []))


def short(v: Any, width: int = VALUE_SHOWN) -> str:
    s = "" if v is None else str(v)
    return s if len(s) <= width else s[: width - 1] + "…"


def columns(processes: list[str], first: float, proposer_gap: float, middle_gap: float,
            node_gap: float) -> dict[str, float]:
    """Where each lifeline goes: proposers side by side, a wider gap, then the nodes."""
    x: dict[str, float] = {}
    pos = first
    for i, p in enumerate(processes):
        if i:
            prev = is_proposer(processes[i - 1])
            pos += (proposer_gap if prev and is_proposer(p) else
                    middle_gap if prev else node_gap)
        x[p] = pos
    return x


def is_proposer(process: str) -> bool:
    return process.startswith("proposer")


def clock(ts: float, date: bool = False) -> str:
    """Local wall-clock time, as the log's text format and --since HH:MM:SS use."""
    t = time.localtime(ts)
    ms = int((ts % 1) * 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S", t) + f".{ms:03d}"


def elapsed(s: float) -> str:
    """Time since a chart's first event: '0.4 ms', '265.2 ms', '3.012 s', '75 s'."""
    if s < 1:
        return f"{s * 1000:.1f} ms"
    return f"{s:.3f} s" if s < 100 else f"{s:.0f} s"


def gap(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s" if s < 100 else f"{s:.0f} s"


# ---------------------------------------------------------------- reading


def parse_since(text: str) -> float:
    """--since: epoch seconds, an ISO date-time, or HH:MM[:SS[.fff]] today (local time)."""
    s = text.strip()
    try:
        try:
            ts = float(s)
        except ValueError:
            if re.fullmatch(r"\d{1,2}:\d\d(:\d\d(\.\d+)?)?", s):
                t = datetime.strptime(s, "%H:%M:%S.%f" if "." in s else
                                      "%H:%M:%S" if s.count(":") == 2 else "%H:%M").time()
                ts = datetime.combine(datetime.now().date(), t).timestamp()
            else:
                ts = datetime.fromisoformat(s).timestamp()
    except (ValueError, OverflowError, OSError):
        ts = -1.0
    if not 0 <= ts < MAX_TS:  # also NaN and Infinity
        raise TraceError(f"--since {text!r}: not a time (use epoch seconds, "
                         f"2025-11-27T07:09:58, or 07:09:58 for today)")
    return ts


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


def read_log(path: str) -> Trace:
    """Parse the log; a line that is no zpaxos event is counted and skipped."""
    p = Path(path)
    try:
        f = p.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TraceError(f"{path}: is a directory, not a log file") from None
    except OSError as e:
        raise TraceError(f"{path}: cannot read ({e.strerror})") from None
    trace = Trace(path, [])
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
                    trace.skipped += 1
                    trace.first_skipped = trace.first_skipped or n
                    trace.text_lines += bool(_TEXT_LINE.match(line))
                    continue
                fields = {k: v for k, v in obj.items() if k not in ("ts", "process", "event")}
                trace.events.append(Event(float(obj["ts"]), obj["process"], obj["event"],
                                          fields, n))
        except OSError as e:
            raise TraceError(f"{path}: cannot read ({e.strerror})") from None
    if not trace.events:
        if trace.text_lines:
            raise TraceError(f"{path}: this looks like a text-format log; set format = json "
                             f"in the [log] section of the cluster file and run again")
        what = f"{trace.skipped} lines skipped" if trace.skipped else "the file is empty"
        raise TraceError(f"{path}: no zpaxos events ({what})")
    trace.events.sort(key=lambda e: (e.ts, e.line))
    _pair_messages(trace)
    _lifecycle(trace)
    _marks(trace)
    return trace


def _pair_messages(trace: Trace) -> None:
    """A receive pairs with the latest earlier send of its msg_id from its peer to it.

    Latest, because a restarted node numbers its messages from 1 again: an older send
    with the same id that was never received stays lost."""
    pending: dict[tuple[str, str, str], list[Message]] = defaultdict(list)  # not yet received
    by_sender: dict[tuple[str, str], Message] = {}
    for e in trace.events:
        f = e.fields
        if f.get("type") not in PAXOS_TYPES:
            continue
        if e.name == "send":
            m = Message(f["type"], e.process, f["peer"], f["msg_id"], e.key, e.ts, f, e.line)
            trace.messages.append(m)
            pending[(m.sender, m.receiver, m.msg_id)].append(m)
            by_sender[(m.sender, m.msg_id)] = m
        elif e.name == "undeliverable":
            m = by_sender.get((e.process, f["msg_id"]))
            waiting = pending.get((e.process, f["peer"], f["msg_id"]), [])
            if m is not None and m in waiting:
                waiting.remove(m)  # it never left, so no receive can match it
            else:
                m = Message(f["type"], e.process, f["peer"], f["msg_id"], e.key, e.ts, f, e.line)
                trace.messages.append(m)
            m.lost_why = f"undeliverable: {f.get('msg') or 'not sent'}"
        elif e.name == "recv":
            waiting = pending.get((f["peer"], e.process, f["msg_id"]), [])
            i = len(waiting) - 1
            while i >= 0 and waiting[i].sent > e.ts + SKEW_S:
                i -= 1
            if i >= 0:
                m = waiting.pop(i)
            else:  # sent by a process that does not log: draw it as instantaneous
                m = Message(f["type"], f["peer"], e.process, f["msg_id"], e.key, e.ts, f, e.line)
                trace.messages.append(m)
            m.received, m.recv_line = max(e.ts, m.sent), e.line
    trace.messages.sort(key=lambda m: (m.sent, m.line))
    _mark_unread(trace)


def _mark_unread(trace: Trace) -> None:
    """A proposer stops reading once it has its outcome: replies sent to it after that
    were not lost by the network, they were simply never read."""
    finished: dict[str, float] = {}
    for e in trace.events:
        if e.name in ("chosen", "gave_up") and is_proposer(e.process):
            finished.setdefault(e.process, e.ts)
    for m in trace.messages:
        done = finished.get(m.receiver)
        gone = not m.lost_why or "gone away" in m.lost_why  # ROUTER: the proposer had left
        if m.lost and gone and done is not None and m.sent >= done - IN_FLIGHT_S:
            why = f" ({m.lost_why})" if m.lost_why else ""
            m.lost_why = f"unread: the proposer had already finished{why}"


def _lifecycle(trace: Trace) -> None:
    """Starts, stops, crashes and restarts, and when each process was not running.

    A node killed with SIGKILL logs no stop: a second ``start`` without a ``stop`` in
    between means it crashed just after the last event it logged."""
    per: dict[str, list[Event]] = defaultdict(list)
    for e in trace.events:
        per[e.process].append(e)
    for proc, evs in per.items():
        down: list[tuple[float, float]] = []
        proposer = is_proposer(proc)
        up, down_since, prev = evs[0].name != "start", float("-inf"), None
        for e in evs:
            if e.name == "start":
                if up and prev is not None:
                    trace.marks.append(Mark("crash", proc, prev.ts, "crashed", prev.line + 0.5))
                    trace.crashes.setdefault(proc, []).append((prev.ts, e.ts))
                elif prev is not None:
                    down.append((down_since, e.ts))
                if prev is not None:
                    trace.marks.append(Mark("restart", proc, e.ts, "restarted", e.line))
                elif proposer:
                    down.append((float("-inf"), e.ts))
                    value = short(e.fields.get("value"))
                    trace.marks.append(Mark("start", proc, e.ts, f"starts, proposing {value}",
                                            e.line, key=e.key))
                else:
                    down.append((float("-inf"), e.ts))
                    trace.marks.append(Mark("start", proc, e.ts, "started", e.line))
                up = True
            elif e.name == "stop":
                text = "exits" if proposer else "stopped"
                trace.marks.append(Mark("stop", proc, e.ts, text, e.line))
                up, down_since = False, e.ts
            prev = e
        if not up:
            down.append((down_since, float("inf")))
        elif proposer:  # a proposer that logged no stop was killed: its line ends
            down.append((evs[-1].ts, float("inf")))
        trace.down[proc] = down
        if proposer:
            ends = [e.ts for e in evs if e.name in ("chosen", "gave_up", "stop")]
            trace.busy_until[proc] = ends[0] if ends else evs[-1].ts + PROPOSER_GONE_S


def _marks(trace: Trace) -> None:
    """Marks for the proposers' and the nodes' own events (core.py says when each happens)."""
    last: dict[str, Event] = {}
    for e in trace.events:
        trace.marks.extend(_marks_of(e, last.get(e.process)))
        if e.name not in NOT_DRAWN:
            last[e.process] = e
    trace.marks.sort(key=lambda m: (m.ts, m.line))


def _marks_of(e: Event, prev: Event | None) -> list[Mark]:
    f, k = e.fields, e.key
    ballot = f.get("ballot", "?")
    kind, text, extra = e.name, "", {}
    if e.name == "round":
        text = f"round {f.get('round', '?')} · ballot {ballot}"
    elif e.name == "adopted":
        text = f"adopts {short(f.get('value'))} (accepted at {f.get('from_ballot')})"
    elif e.name == "pause":
        secs = _num(f.get("seconds"))
        text, extra = f"pause {secs:g} s", {"until": e.ts + secs}
    elif e.name == "retry":
        text = f"retry: {_nodes(f.get('reason', ''))}"
        if "promised" in f:
            text += f" (promised {f['promised']})"
        elif isinstance(f.get("no_reply_from"), list) and f["no_reply_from"]:
            text += f" (no reply from {', '.join(f'node{n}' for n in f['no_reply_from'])})"
        backoff = _num(f.get("backoff_s"))
        if backoff > 0:
            return [Mark("retry", e.process, e.ts, text, e.line, key=k),
                    Mark("backoff", e.process, e.ts, f"backoff {gap(backoff)}", e.line + 0.2,
                         key=k, until=e.ts + backoff)]
    elif e.name == "chosen":
        value = str(f.get("value"))
        extra = {"value": value}
        if "told_by" in f or (prev is not None and _told_by_decide(e, prev)):
            # The ballot logged is this proposer's own, not the one the value was chosen at.
            kind = "learns"
            teller = f"node{f['told_by']}" if "told_by" in f else prev.fields.get("peer")
            text = f"learns {short(value)} was chosen (told by {teller})"
        else:
            text = f"chosen: {short(value)} (ballot {ballot})"
    elif e.name == "gave_up":
        text = f"gave up: {_nodes(f.get('reason', ''))}"
    elif e.name == "learned":
        if _told_by_decide(e, prev):
            return []  # the DECIDE arrow already says so
        text, extra = f"learned {short(f.get('value'))}", {"value": str(f.get("value"))}
    elif e.name == "conflict":
        text = f"CONFLICT: chosen {short(f.get('chosen'))}, told {short(f.get('value'))}"
    elif e.name == "malformed":
        text = f"dropped a malformed frame from {f.get('peer', '?')}"
    else:
        return []
    return [Mark(kind, e.process, e.ts, text, e.line, key=k, **extra)]


def _nodes(reason: Any) -> str:
    """The core names acceptors by number ("rejected by acceptor 0"); charts say node0."""
    return re.sub(r"\bacceptor (\d+)", r"node\1", str(reason))


def _told_by_decide(e: Event, prev: Event | None) -> bool:
    return (prev is not None and prev.name == "recv" and prev.key == e.key
            and prev.fields.get("type") == "DECIDE")


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


# ---------------------------------------------------------------- choosing what to draw


def _runs(trace: Trace, events: list[Event]) -> list[list[Event]]:
    runs: list[list[Event]] = [[]]
    proposers: list[str] = []
    for e in events:
        if e.name == "start" and is_proposer(e.process):
            busy = any(trace.busy_until.get(p, 0.0) > e.ts for p in proposers)
            if runs[-1] and not busy and e.ts - runs[-1][-1].ts > RUN_GAP_S:
                runs.append([])
            proposers.append(e.process)
        runs[-1].append(e)
    return runs


def _node_order(process: str) -> tuple[int, int, str]:
    m = _NODE.match(process)
    return (0, int(m.group(1)), "") if m else (1, 0, process)


def select(trace: Trace, key: str | None = None, since: float | None = None) -> list[Chart]:
    """The charts to draw: one per key (see the module docstring for the windows)."""
    keyed: dict[str, list[Event]] = defaultdict(list)
    for e in trace.events:
        if e.key is not None and e.name not in NOT_DRAWN:
            keyed[e.key].append(e)
    if key is not None and key not in keyed:
        known = ", ".join(sorted(keyed)) or "none"
        raise TraceError(f"{trace.path}: no events for key {key!r} (keys in this log: {known})")
    nodes = sorted({e.process for e in trace.events if _NODE.match(e.process)}, key=_node_order)
    charts = []
    for k in [key] if key is not None else list(keyed):
        note = ""
        if since is not None:
            window = [e for e in keyed[k] if e.ts >= since]
        else:
            runs = _runs(trace, keyed[k])
            window = runs[-1]
            if len(runs) > 1:
                note = f"latest of {len(runs)} runs of this key"
        chart = _chart(trace, k, window, nodes, note)
        if chart is not None:
            charts.append(chart)
    if not charts:
        where = f" for key {key!r}" if key is not None else ""
        after = f" at or after {clock(since, date=True)}" if since is not None else ""
        raise TraceError(f"{trace.path}: no Paxos messages or proposer events{where}{after} "
                         f"(the log runs from {clock(trace.events[0].ts, date=True)} "
                         f"to {clock(trace.events[-1].ts, date=True)})")
    charts.sort(key=lambda c: c.start)
    return charts


def _chart(trace: Trace, key: str, window: list[Event], nodes: list[str],
           note: str) -> Chart | None:
    if not window:
        return None
    start, end = window[0].ts, window[-1].ts
    messages = [m for m in trace.by_key(key)[0] if start <= m.sent <= end]
    proposers: list[str] = []
    for e in window:
        if is_proposer(e.process) and e.process not in proposers:
            proposers.append(e.process)
    if not messages and not proposers:
        return None  # only a node catching up on an old key: nothing to draw
    others = {e.process for e in window} | {m.sender for m in messages}
    others |= {m.receiver for m in messages}
    others -= set(proposers) | set(nodes)
    processes = proposers + nodes + sorted(others, key=_node_order)
    # A crash is known only to lie between the last event before a restart and the
    # restart: draw it only in a chart that also holds the restart.
    crashes = {p: [(a, b) for a, b in trace.crashes.get(p, ()) if start <= b <= end]
               for p in processes}
    crashed_at = {(p, a) for p, cs in crashes.items() for a, _ in cs}

    def shown(m: Mark) -> bool:
        if m.key is not None:
            return m.key == key and start <= m.ts <= end
        if m.kind == "crash":
            return m.ts >= start and (m.process, m.ts) in crashed_at
        exiting = m.kind == "stop" and m.process in proposers
        return start <= m.ts <= (end + TAIL_S if exiting else end)

    candidates = sorted(trace.by_key(key)[1] + trace.by_key(None)[1],
                        key=lambda m: (m.ts, m.line))
    marks = [m for m in candidates if m.process in processes and shown(m)]
    end = max([end, *(m.ts for m in marks)])
    for m in marks:
        if m.until is not None:
            m.until = min(m.until, end)
    proposed = {e.process: short(e.fields.get("value")) for e in window
                if e.name == "start" and is_proposer(e.process)}
    down = {p: trace.down.get(p, []) + crashes[p] for p in processes}
    return Chart(key, start, end, processes, messages, marks, down, proposed, note)


# ---------------------------------------------------------------- entry points


def _render(charts: list[Chart], fmt: str, source: str, ascii_only: bool = False) -> str:
    if fmt == "svg":
        from zpaxos.pictures.chart_svg import render_svg

        return render_svg(charts, source)
    from zpaxos.pictures.chart_text import render_text

    return render_text(charts, ascii_only=ascii_only)


def _can_draw_boxes(stream: Any) -> bool:
    try:
        "─▶◀│★╳".encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def run_trace(logfile: str, key: str | None = None, since: str | None = None,
              out: str | None = None, fmt: str | None = None) -> None:
    """The ``zpaxos trace`` command: read, select, render; write to ``out`` or stdout."""
    import click

    since_ts = parse_since(since) if since is not None else None
    fmt = fmt or ("svg" if out and out.lower().endswith(".svg") else "text")
    trace = read_log(logfile)
    if trace.skipped:
        hint = (f"; {trace.text_lines} look like text-format lines" if trace.text_lines else "")
        click.echo(f"zpaxos trace: skipped {trace.skipped} line"
                   f"{'s' if trace.skipped != 1 else ''} that are not zpaxos events "
                   f"(first: line {trace.first_skipped}){hint}", err=True)
    charts = select(trace, key, since_ts)
    for c in charts:
        if c.note:
            click.echo(f"zpaxos trace: key {c.key}: the {c.note}, from {clock(c.start)}; "
                       f"use --since to pick another", err=True)
    doc = _render(charts, fmt, logfile, ascii_only=out is None and not _can_draw_boxes(sys.stdout))
    if out is None:
        click.echo(doc, nl=not doc.endswith("\n"))
        return
    try:
        Path(out).write_text(doc, encoding="utf-8")
    except OSError as e:
        raise TraceError(f"cannot write {out}: {e.strerror}") from None
    keys = ", ".join(c.key for c in charts[:5])
    if len(charts) > 5:
        keys = f"{len(charts)} keys ({keys}, ...)"
    click.echo(f"wrote {fmt} chart{'s' if len(charts) > 1 else ''} of {keys} to {out}")


def draw_scenario(log_path: Path, name: str, out_dir: Path, since: float) -> str:
    """The scenario runner's chart: every key with events at or after ``since``, stacked
    in ``out_dir/name.svg``. Never raises for a bad or empty log -- a scenario that failed
    early still gets a chart saying so -- and returns "" only if the file cannot be written."""
    from zpaxos.pictures.chart_svg import render_empty, render_svg

    try:
        doc = render_svg(select(read_log(str(log_path)), None, since), str(log_path))
    except TraceError as e:
        doc = render_empty(name, str(e))
    path = Path(out_dir) / f"{name}.svg"
    try:
        path.write_text(doc, encoding="utf-8")
    except OSError:
        return ""
    return str(path)
