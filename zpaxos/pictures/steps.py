"""A run as steps, one message each, with every process's state after it: what the HTML
step-through (chart_html.py) shows beside the chart.

Steps follow the order messages *arrived* (a lost one: when it was sent), since that is
when a message can change anything. After step *k* the state is everything the log shows
up to the next step: so the step "PREPARE 2.P1 reaches node1" already shows node1's new
promise, which its PROMISE reply proves it made.

State is read from the log alone, so real runs and simulated ones step alike:

* a node's **promised** ballot is the one its last PROMISE or ACCEPTED was for, or the
  one a NACK of it names; its **accepted** ballot and value, its last ACCEPTED's; its
  **chosen** value, from its ``learned`` event. A restarted node shows what it reloaded
  when the log says (the simulator logs ``recovered``); a real node does not say, so
  its panel keeps the last state seen, marked "restarted".
* a proposer's **phase** follows its events: ``round`` starts phase 1 (prepare) at a
  ballot, its first ACCEPT starts phase 2, ``retry``, ``pause``, ``chosen``, ``gave_up``
  and ``stop`` end or suspend them; promises and acceptances of the current ballot are
  counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zpaxos.pictures.chart_svg import drawn_marks
from zpaxos.pictures.chartmodel import Chart, fate_text, label
from zpaxos.pictures.logmodel import Event, LogModel, is_node, is_proposer


@dataclass
class NodeState:
    promised: str = "-"
    accepted: str = "-"
    value: str = ""
    chosen: str = "-"
    status: str = "up"


@dataclass
class ProposerState:
    phase: str = "not started"
    ballot: str = "-"
    value: str = "-"
    promises: set[str] = field(default_factory=set)
    accepted: set[str] = field(default_factory=set)


def _apply(e: Event, key: str, nodes: dict[str, NodeState],
           props: dict[str, ProposerState]) -> None:
    f, p = e.fields, e.process
    if e.key not in (None, key):
        return
    if p in nodes:
        n = nodes[p]
        if e.name == "crash":
            n.status = "down (crashed)"
        elif e.name == "start":
            n.status = "up" if n.status == "up" else "restarted"
        elif e.name == "recovered":
            n.promised = str(f.get("promised", "-"))
            n.accepted, n.value = str(f.get("accepted", "-")), str(f.get("value", ""))
            n.chosen = str(f.get("chosen", "-"))
            n.status = "restarted (reloaded from disk)"
        elif e.name == "learned":
            n.chosen = str(f.get("value"))
        elif e.name == "send" and f.get("type") == "PROMISE":
            n.promised = str(f.get("ballot"))
        elif e.name == "send" and f.get("type") == "ACCEPTED":
            n.promised = n.accepted = str(f.get("ballot"))
            n.value = str(f.get("value"))
        elif e.name == "send" and f.get("type") == "NACK":
            n.promised = str(f.get("promised"))
    elif p in props:
        s = props[p]
        if e.name == "start":
            s.phase, s.value = "starting", str(f.get("value"))
        elif e.name == "round":
            s.phase, s.ballot = "1: prepare", str(f.get("ballot"))
            s.promises, s.accepted = set(), set()
        elif e.name == "adopted":
            s.value = f"{f.get('value')} (adopted)"
        elif e.name == "send" and f.get("type") == "ACCEPT" and s.phase != "2: accept":
            s.phase, s.value = "2: accept", str(f.get("value"))
        elif e.name == "recv" and f.get("ballot") == s.ballot and f.get("type") == "PROMISE":
            s.promises.add(str(f.get("peer")))
        elif e.name == "recv" and f.get("ballot") == s.ballot and f.get("type") == "ACCEPTED":
            s.accepted.add(str(f.get("peer")))
        elif e.name == "retry":
            s.phase = f"retry ({f.get('cause', '?')})"
        elif e.name == "pause":
            s.phase = "paused"
        elif e.name == "chosen":
            s.phase = f"done: {f.get('value')} chosen"
        elif e.name == "gave_up":
            s.phase = "gave up"
        elif e.name == "stop":
            s.phase = s.phase if s.phase.startswith(("done", "gave")) else "exited"


def _snapshot(nodes: dict[str, NodeState], props: dict[str, ProposerState],
              quorum: int) -> dict[str, Any]:
    return {
        "nodes": {p: {"promised": n.promised,
                      "accepted": f"{n.accepted} = {n.value}" if n.accepted != "-" else "-",
                      "chosen": n.chosen, "status": n.status} for p, n in nodes.items()},
        "proposers": {p: {"phase": s.phase, "ballot": s.ballot, "value": s.value,
                          "votes": (f"{len(s.promises)} promised"
                                    + (f", {len(s.accepted)} accepted"
                                       if s.phase.startswith(("2", "done")) else "")
                                    + f" (quorum {quorum})")}
                      for p, s in props.items()},
    }


def steps(model: LogModel, charts: list[Chart]) -> dict[str, Any]:
    """``{"charts": [{"key", "markStep"}], "steps": [...]}``: every chart's steps in order,
    step 0 of each chart being its start (nothing received yet); ``markStep[i]`` is the
    first step of its chart at which the chart's i-th mark (``data-mark``) has happened."""
    out: list[dict[str, Any]] = []
    info: list[dict[str, Any]] = []
    for ci, c in enumerate(charts):
        nodes = {p: NodeState() for p in c.processes if is_node(p)}
        props = {p: ProposerState() for p in c.processes if is_proposer(p)}
        quorum = len(nodes) // 2 + 1
        order = sorted(range(len(c.messages)), key=lambda i: _moment(c.messages[i]))
        events = [e for e in model.all_events if e.process in nodes or e.process in props]
        j = 0
        # Step k shows everything up to the moment the next message arrives.
        ends = [_moment(c.messages[i]) for i in order] + [(float("inf"), 0.0)]
        first = len(out)
        j = _advance(events, j, ends[0], c.key, nodes, props)
        out.append({"chart": ci, "msg": -1, "text": f"key {c.key}: the start, before any"
                    f" message arrives", **_snapshot(nodes, props, quorum)})
        for k, i in enumerate(order):
            m = c.messages[i]
            j = _advance(events, j, ends[k + 1], c.key, nodes, props)
            fate = fate_text(m)
            text = f"{m.sender} → {m.receiver}: {label(m)}" + (f" ({fate})" if fate else "")
            out.append({"chart": ci, "msg": i, "text": text, **_snapshot(nodes, props, quorum)})
        mark_step = [first + next(k for k, end in enumerate(ends) if (mk.ts, mk.line) < end)
                     for mk in drawn_marks(c)]
        info.append({"key": c.key, "markStep": mark_step})
    return {"charts": info, "steps": out}


def _advance(events: list[Event], j: int, moment: tuple[float, float], key: str,
             nodes: dict[str, NodeState], props: dict[str, ProposerState]) -> int:
    """Apply events from the ``j``-th up to ``moment``; the index of the next one."""
    while j < len(events) and (events[j].ts, events[j].line) < moment:
        _apply(events[j], key, nodes, props)
        j += 1
    return j


def _moment(m: Any) -> tuple[float, float]:
    if m.received is not None:
        return (m.received, float(max(m.recv_line, m.line)))
    return (m.sent, float(m.line))
