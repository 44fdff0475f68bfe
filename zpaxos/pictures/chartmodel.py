"""What one chart shows: a key's run picked from the log model, and how its parts are named.

Which events make a chart:

* ``--since T``: every key's events at or after T (``--key`` narrows it to one key).
* otherwise each key's *latest run*. A run of a key is a stretch of its events split at a
  proposer ``start`` for that key that comes more than ``RUN_GAP_S`` after the key's
  previous event while no earlier proposer of the key is still busy (a proposer is busy
  until it logs ``chosen``, ``gave_up`` or ``stop``, or stays silent for a minute).
  So "A, then B one second later" or "fail, restart the nodes, retry" is one run, and the
  same key proposed again after a quiet minute starts a new one.

Events without a key (a node's start and stop, a crash, a malformed frame, a sync
exchange) belong to every chart whose time window they fall in.

Message labels come from the message registry (zpaxos/protocol/registry.py) as parts --
type, ballots, value, connecting words -- so a renderer short of room drops the words
first and never cuts a value or a ballot to keep a word.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from zpaxos.pictures.logmodel import (
    LOST,
    MAX_TS,
    NOT_DRAWN,
    NOT_SENT,
    RECEIVER_DOWN,
    UNDELIVERABLE,
    UNREAD,
    Event,
    LogModel,
    Mark,
    Message,
    TraceError,
    gap,
    is_node,
    is_proposer,
    node_order,
)
from zpaxos.protocol import registry
from zpaxos.protocol.registry import Part

__all__ = ["Chart", "Mark", "Message", "Quorum", "TraceError", "clock", "columns", "elapsed", "gap",
           "is_proposer", "label", "label_parts", "fate_text", "fit_label", "parse_since",
           "select"]

RUN_GAP_S = 5.0  # a key quiet this long, with no proposer busy, ends a run
TAIL_S = 1.0  # a proposer's exit this soon after a chart's last event still belongs to it


# ---------------------------------------------------------------- labels


def label_parts(m: Message) -> list[Part]:
    """The message's label, as the registry declares it for its type."""
    return registry.label_parts(m.type, m.fields)


def _join(parts: list[Part]) -> str:
    out = ""
    for p in parts:
        if p.text:
            out += (p.glue if out else "") + p.text
    return out


def label(m: Message) -> str:
    """``PREPARE 2.b7``, ``PROMISE 2.b7 accepted 1.a3=Value_A``, ``DECIDE Value_A``..."""
    return _join(label_parts(m))


def fit_label(parts: list[Part], room: int, more: str = "…") -> str:
    """The label in at most ``room`` characters: first the connecting words shortened,
    then dropped; only then is the last part (the value, say) cut, never a ballot first."""
    for stage in (parts, [Part(p.short, p.word, p.short, p.glue) if p.word else p for p in parts],
                  [p for p in parts if not p.word]):
        text = _join(stage)
        if len(text) <= room:
            return text
    text = _join([p for p in parts if not p.word])
    return text[: max(room - 1, 0)] + more if room > 0 else ""


# What became of a message that was never received: (in full, short).
FATES = {
    LOST: ("lost", "lost"),
    UNDELIVERABLE: ("undeliverable", "undeliverable"),
    RECEIVER_DOWN: ("not delivered: {receiver} down", "{receiver} down"),
    NOT_SENT: ("not sent: proposer finished", "not sent"),
    UNREAD: ("not read: proposer done", "not read"),
}


def fate_text(m: Message, short: bool = False) -> str:
    """Why a message never arrived, in the chart's words ("" when it did)."""
    if not m.lost:
        return ""
    full, brief = FATES.get(m.fate, FATES[LOST])
    return (brief if short else full).format(receiver=m.receiver)


# ---------------------------------------------------------------- times and places


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


# ---------------------------------------------------------------- the chart


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

    @property
    def faults(self) -> int:
        """Messages lost to a fault (not those merely unread or never sent)."""
        return sum(m.fault for m in self.messages)

    def never_received(self) -> str:
        """``4 not delivered: node2 down, 1 not read``: what became of the messages
        that never arrived, for a chart's summary line ("" when every one did)."""
        counts: dict[str, int] = {}
        for m in self.messages:
            if m.lost:
                what = fate_text(m)
                counts[what] = counts.get(what, 0) + 1
        return ", ".join(f"{n} {what}" for what, n in counts.items())

    def is_down(self, process: str, ts: float) -> bool:
        return any(a <= ts < b for a, b in self.down.get(process, ()))

    @property
    def decisions(self) -> list[Mark]:
        """The first decision mark of each value decided: one, unless safety failed."""
        out: list[Mark] = []
        for kind in ("chosen", "learns"):
            for m in self.marks:
                if m.kind == kind and all(d.value != m.value for d in out):
                    out.append(m)
        return sorted(out, key=lambda m: (m.ts, m.line))

    @property
    def quorums(self) -> list[Quorum]:
        """Every quorum the log shows voting: a majority of the chart's nodes that sent
        ACCEPTED for one ballot and value, in the order the quorums were complete."""
        nodes = [p for p in self.processes if is_node(p)]
        groups: dict[tuple[str, str], dict[str, Message]] = {}
        for m in self.messages:
            if m.type == "ACCEPTED" and is_node(m.sender):
                g = groups.setdefault((str(m.fields.get("ballot")), str(m.fields.get("value"))),
                                      {})
                g.setdefault(m.sender, m)
        found = [Quorum(b, v, sorted(g, key=node_order), list(g.values()))
                 for (b, v), g in groups.items() if len(g) > len(nodes) // 2]
        return sorted(found, key=lambda q: max(m.sent for m in q.messages))

    @property
    def split(self) -> tuple[Quorum, Quorum] | None:
        """Two quorums that chose different values (a safety failure), else None."""
        qs = self.quorums
        for q in qs[1:]:
            if q.value != qs[0].value:
                return qs[0], q
        return None


@dataclass
class Quorum:
    """A majority of nodes that accepted ``value`` at ``ballot``: it chose the value."""

    ballot: str
    value: str
    nodes: list[str]
    messages: list[Message]  # the ACCEPTED each node sent, its vote


def _drawn(e: Event) -> bool:
    if e.name in NOT_DRAWN:
        return False
    if e.name in ("send", "recv", "undeliverable"):
        return e.fields.get("type") in registry.DRAWN_TYPES
    return True


def _runs(model: LogModel, events: list[Event]) -> list[list[Event]]:
    runs: list[list[Event]] = [[]]
    proposers: list[str] = []
    for e in events:
        if e.name == "start" and is_proposer(e.process):
            busy = any(model.busy_until.get(p, 0.0) > e.ts for p in proposers)
            if runs[-1] and not busy and e.ts - runs[-1][-1].ts > RUN_GAP_S:
                runs.append([])
            proposers.append(e.process)
        runs[-1].append(e)
    return runs


def select(model: LogModel, key: str | None = None, since: float | None = None) -> list[Chart]:
    """The charts to draw: one per key (see the module docstring for the windows)."""
    keyed: dict[str, list[Event]] = defaultdict(list)
    for e in model.all_events:
        if e.key is not None and _drawn(e):
            keyed[e.key].append(e)
    if key is not None and key not in keyed:
        known = ", ".join(sorted(keyed)) or "none"
        raise TraceError(f"{model.path}: no events for key {key!r} (keys in this log: {known})")
    nodes = sorted({e.process for e in model.all_events if is_node(e.process)}, key=node_order)
    charts = []
    for k in [key] if key is not None else list(keyed):
        note = ""
        if since is not None:
            window = [e for e in keyed[k] if e.ts >= since]
        else:
            runs = _runs(model, keyed[k])
            window = runs[-1]
            if len(runs) > 1:
                note = f"latest of {len(runs)} runs of this key"
        chart = _chart(model, k, window, nodes, note)
        if chart is not None:
            charts.append(chart)
    if not charts:
        where = f" for key {key!r}" if key is not None else ""
        after = f" at or after {clock(since, date=True)}" if since is not None else ""
        raise TraceError(f"{model.path}: no Paxos messages or proposer events{where}{after} "
                         f"(the log runs from {clock(model.all_events[0].ts, date=True)} "
                         f"to {clock(model.all_events[-1].ts, date=True)})")
    charts.sort(key=lambda c: c.start)
    return charts


def _chart(model: LogModel, key: str, window: list[Event], nodes: list[str],
           note: str) -> Chart | None:
    if not window:
        return None
    start, end = window[0].ts, window[-1].ts
    messages = [m for m in model.by_key(key)[0] if start <= m.sent <= end]
    proposers: list[str] = []
    for e in window:
        if is_proposer(e.process) and e.process not in proposers:
            proposers.append(e.process)
    if not messages and not proposers:
        return None  # only a node catching up on an old key: nothing to draw
    others = {e.process for e in window} | {m.sender for m in messages}
    others |= {m.receiver for m in messages}
    others -= set(proposers) | set(nodes)
    processes = proposers + nodes + sorted(others, key=node_order)
    # A crash is known only to lie between the last event before a restart and the
    # restart: draw it only in a chart that also holds the restart.
    crashes = {p: [(a, b) for a, b in model.crashes.get(p, ()) if start <= b <= end]
               for p in processes}
    crashed_at = {(p, a) for p, cs in crashes.items() for a, _ in cs}

    def shown(m: Mark) -> bool:
        if m.key is not None:
            return m.key == key and start <= m.ts <= end
        if m.kind == "crash":
            return m.ts >= start and (m.process, m.ts) in crashed_at
        exiting = m.kind == "stop" and m.process in proposers
        return start <= m.ts <= (end + TAIL_S if exiting else end)

    candidates = sorted(model.by_key(key)[1] + model.by_key(None)[1],
                        key=lambda m: (m.ts, m.line))
    marks = [m for m in candidates if m.process in processes and shown(m)]
    # A node that learned the value by syncing with a peer: draw that exchange too.
    synced = [s for m in marks for s in m.via if s.sender in processes
              and s.receiver in processes and s.sent >= start and s not in messages]
    if synced:
        messages = sorted(messages + synced, key=lambda m: (m.sent, m.line))
    end = max([end, *(m.ts for m in marks)])
    for m in marks:
        if m.until is not None:
            m.until = min(m.until, end)
    proposed = {e.process: str(e.fields.get("value")) for e in window
                if e.name == "start" and is_proposer(e.process)}
    down = {p: model.down.get(p, []) + crashes[p] for p in processes}
    return Chart(key, start, end, processes, messages, marks, down, proposed, note)
