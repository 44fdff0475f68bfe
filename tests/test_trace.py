"""``zpaxos trace``: the log model, the SVG and text charts, the CLI, and a real run's chart.

The text chart of tests/data/trace_fixed.jsonl (a hand-made run in the typed event
fields: two proposers, three nodes, a pause, a NACK, a retry with backoff, messages to
node2 while it was down, node2 killed, restarted and synced with node0 (DEBUG lines),
replies nobody read, the decision) is compared with tests/data/trace_fixed.txt. After a
deliberate change to the chart, rewrite it with::

    ZPAXOS_REWRITE_EXPECTED=1 .venv/bin/pytest tests/test_trace.py
"""

from __future__ import annotations

import difflib
import json
import os
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from zpaxos.cli import main
from zpaxos.pictures.chart_svg import render_svg
from zpaxos.pictures.chart_text import render_text
from zpaxos.pictures.chartmodel import fit_label, label, label_parts, parse_since, select
from zpaxos.pictures.draw import draw_scenario
from zpaxos.pictures.logmodel import (
    DRAWN_TYPES,
    NOT_SENT,
    PAXOS_TYPES,
    RECEIVER_DOWN,
    UNREAD,
    Message,
    TraceError,
    read_log,
)

DATA = Path(__file__).parent / "data"
FIXED_LOG = DATA / "trace_fixed.jsonl"
FIXED_TEXT = DATA / "trace_fixed.txt"
REWRITE = os.environ.get("ZPAXOS_REWRITE_EXPECTED") == "1"
T0 = 1764226800.0  # the fixture's epoch: 2025-11-27 07:00:00 UTC
SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def utc():
    """Charts show local wall-clock times; the expected file is in UTC."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


def raw_lines(path: Path) -> list[dict]:
    """The log's lines as written, to build other logs from (shifted, re-keyed)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def message_sends(path: Path) -> Counter:
    """What the chart must draw: one arrow per Paxos send, by message type."""
    sends = read_log(path).events(name="send")
    return Counter(e["type"] for e in sends if e["type"] in PAXOS_TYPES)


def classes(el: ET.Element) -> list[str]:
    return el.get("class", "").split()


def by_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in root.iter() if name in classes(el)]


def svg_root(text: str) -> ET.Element:
    root = ET.fromstring(text)  # raises on anything that is not well-formed XML
    assert root.tag == f"{SVG_NS}svg"
    return root


def check_svg(root: ET.Element, log: Path, chosen: str) -> None:
    """The properties every SVG chart of a one-key, one-run log must have."""
    processes = {e.process for e in read_log(log).all_events}
    lifelines = [el.get("data-process") for el in by_class(root, "lifeline")]
    assert sorted(lifelines) == sorted(processes)  # exactly one per process
    arrows = [a for a in by_class(root, "arrow") if a.get("data-type") in PAXOS_TYPES]
    sends = message_sends(log)
    assert Counter(a.get("data-type") for a in arrows) == sends
    for a in arrows:
        assert f"msg-{a.get('data-type').lower()}" in classes(a)
    decisions = by_class(root, "decision")
    assert [d.get("data-value") for d in decisions] == [chosen]
    # Self-contained: nothing loaded from anywhere, no scripts.
    for el in root.iter():
        assert el.tag not in (f"{SVG_NS}script", f"{SVG_NS}image", f"{SVG_NS}foreignObject")
        for name, value in el.attrib.items():
            assert not name.endswith("href"), (el.tag, name)
            assert "http" not in value or name == "xmlns", (el.tag, name, value)
    assert root.find(f"{SVG_NS}title") is not None
    assert by_class(root, "legend")


# ---------------------------------------------------------------- the model


def test_fixed_log_model():
    model = read_log(str(FIXED_LOG))
    assert model.skipped == 0
    [chart] = select(model)
    assert chart.key == "CISC5597" and chart.note == ""
    assert chart.processes == ["proposer 3f2a", "proposer b7c1", "node0", "node1", "node2"]
    assert chart.proposed == {"proposer 3f2a": "Value_A", "proposer b7c1": "Value_B"}
    paxos = [m for m in chart.messages if m.type in PAXOS_TYPES]
    assert len(paxos) == sum(message_sends(FIXED_LOG).values()) == 33
    # node2 learned the decision by syncing with node0 after its restart: that exchange is
    # drawn (node1's reply, which came later and taught it nothing, is not).
    sync = [(m.type, m.sender, m.receiver) for m in chart.messages if m.type not in PAXOS_TYPES]
    assert sync == [("SYNC", "node2", "node0"), ("SYNC_REPLY", "node0", "node2")]
    lost = [m for m in chart.messages if m.lost]
    assert len(lost) == 6
    # What became of each: four sent to node2 while it was down (its crash), and two
    # replies to a proposer that had finished: one still on its way when it exited, one
    # its node could no longer deliver (the proposer had left). None is a network fault.
    assert Counter(m.fate for m in lost) == {RECEIVER_DOWN: 4, UNREAD: 2}
    assert {m.receiver for m in lost if m.fate == RECEIVER_DOWN} == {"node2"}
    assert [(m.type, m.receiver) for m in lost if m.fate == UNREAD] == [
        ("DECIDE", "proposer 3f2a")] * 2
    assert [m.why for m in lost if m.why] == ["peer has gone away"]
    assert chart.faults == 0
    # node2 restarted and numbers its messages from 1 again: both n2:1 are told apart.
    n2_1 = [m for m in chart.messages if m.msg_id == "n2:1"]
    assert [(m.type, m.lost) for m in n2_1] == [("PROMISE", False), ("DECIDE", True)]
    kinds = Counter(m.kind for m in chart.marks)
    assert kinds["crash"] == kinds["restart"] == kinds["pause"] == kinds["retry"] == 1
    assert kinds["backoff"] == 1 and kinds["round"] == 3 and kinds["learned"] == 1
    crash = next(m for m in chart.marks if m.kind == "crash")
    assert crash.process == "node2" and crash.ts == pytest.approx(T0 + 1.0016)
    assert chart.is_down("node2", T0 + 1.2) and not chart.is_down("node2", T0 + 1.4)
    assert chart.decision is not None and chart.decision.value == "Value_B"
    assert chart.decision.process == "proposer b7c1"
    learns = [m for m in chart.marks if m.kind == "learns"]
    assert [m.process for m in learns] == ["proposer 3f2a"]  # told by node0's DECIDE
    assert learns[0].text == "learns Value_B was chosen (told by node0)"
    [learned] = [m for m in chart.marks if m.kind == "learned"]
    assert learned.text == "learned Value_B from node0"
    assert [m.type for m in learned.via] == ["SYNC", "SYNC_REPLY"]


def test_model_queries():
    """Scenarios and tests ask the model, not raw dicts."""
    model = read_log(str(FIXED_LOG))
    retries = model.events(key="CISC5597", name="retry")
    assert [(e.process, e["cause"], e["acceptor"]) for e in retries] == [
        ("proposer 3f2a", "rejected", "node0")]
    accepts = model.events(process="proposer b7c1", name="send", type="ACCEPT")
    assert [e["peer"] for e in accepts] == ["node0", "node1", "node2"]
    assert model.first(name="chosen").process == "proposer b7c1"
    assert model.first(name="conflict") is None
    assert model.events(key="other") == []


def test_labels_say_type_and_ballot():
    labels = {label(m) for m in select(read_log(str(FIXED_LOG)))[0].messages}
    for text in ("PREPARE 1.3f2a", "PROMISE 1.b7c1", "ACCEPT 1.3f2a Value_A",
                 "NACK 1.3f2a promised 1.b7c1", "ACCEPTED 1.b7c1",
                 "DECIDE Value_B chosen at 1.b7c1"):
        assert text in labels


def _shifted(evs: list[dict], seconds: float, key: str | None = None,
             tag: str = "2") -> list[dict]:
    """A copy of a run, later, by other processes (and maybe on another key)."""
    out = []
    for e in evs:
        e = dict(e, ts=e["ts"] + seconds)
        if e["process"].startswith("proposer"):
            e["process"] += tag
        if str(e.get("peer", "")).startswith("proposer"):
            e["peer"] += tag
        if key is not None and "key" in e:
            e["key"] = key
        out.append(e)
    return out


def _write(path: Path, evs: list[dict], extra: str = "") -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in evs) + extra)
    return path


def test_latest_run_per_key_and_since(tmp_path):
    """A key proposed again a minute later is a new run; --since takes both."""
    evs = raw_lines(FIXED_LOG)
    log = _write(tmp_path / "runs.log", evs + _shifted(evs, 60))
    trace = read_log(str(log))
    [latest] = select(trace)
    assert latest.note == "latest of 2 runs of this key"
    assert latest.start == pytest.approx(T0 + 61.0)
    assert len(latest.messages) == 35  # 33 Paxos messages and node2's sync exchange
    [both] = select(trace, since=T0)
    assert len(both.messages) == 70 and both.start == pytest.approx(T0 + 1.0)


def test_one_chart_per_key(tmp_path):
    evs = raw_lines(FIXED_LOG)
    log = _write(tmp_path / "keys.log", evs + _shifted(evs, 10, key="other"))
    trace = read_log(str(log))
    assert [c.key for c in select(trace)] == ["CISC5597", "other"]
    assert [c.key for c in select(trace, key="other")] == ["other"]
    root = svg_root(render_svg(select(trace), str(log)))
    charts = by_class(root, "chart")
    assert [c.get("data-key") for c in charts] == ["CISC5597", "other"]
    for chart in charts:  # stacked: each chart has its own lifelines, arrows, decision
        assert len(by_class(chart, "lifeline")) == 5
        assert len(by_class(chart, "arrow")) == 35
        assert [d.get("data-value") for d in by_class(chart, "decision")] == ["Value_B"]
    text = render_text(select(trace))
    assert text.count("key CISC5597 ·") == 1 and text.count("key other ·") == 1
    with pytest.raises(TraceError, match="no events for key 'nope'.*CISC5597, other"):
        select(trace, key="nope")


def test_since_forms(utc):
    assert parse_since("1764226801.5") == 1764226801.5
    assert parse_since("2025-11-27T07:00:01") == T0 + 1
    assert parse_since("2025-11-27 07:00:01.250") == T0 + 1.25
    today = time.strftime("%Y-%m-%d")
    assert parse_since("07:00:01") == parse_since(f"{today}T07:00:01")
    assert parse_since("07:00") == parse_since(f"{today}T07:00:00")
    for bad in ("banana", "25:00:00", "", "07:00:01pm", "nan", "inf", "-5", "1e300",
                "0001-01-01"):
        with pytest.raises(TraceError, match="not a time"):
            parse_since(bad)


def _ev(dt: float, process: str, event: str, **fields) -> dict:
    return {"ts": T0 + dt, "process": process, "level": "INFO", "event": event, **fields}


def _msg(dt: float, process: str, event: str, type_: str, msg_id: str, peer: str,
         **fields) -> dict:
    return _ev(dt, process, event, type=type_, msg_id=msg_id, peer=peer, key="k", **fields)


def _mark_texts(evs: list[dict], tmp_path: Path) -> dict[str, list[str]]:
    [chart] = select(read_log(str(_write(tmp_path / "m.log", evs))))
    out: dict[str, list[str]] = {}
    for m in chart.marks:
        out.setdefault(m.kind, []).append(m.text)
    return out


def test_marks_are_built_from_typed_fields(tmp_path):
    """The retry label is made of the event's fields; no sentence is parsed."""
    p = "proposer aa11"
    evs = [_ev(0, p, "start", key="k", value="V"),
           _ev(0.1, p, "retry", key="k", ballot="1.aa11", cause="rejected", phase="prepare",
               acceptor="node1", promised="3.ab12", backoff_s=0),
           _ev(0.2, p, "retry", key="k", ballot="4.aa11", cause="timeout", phase="accept",
               no_reply_from=["node0", "node2"], backoff_s=0.25),
           _ev(0.6, p, "gave_up", key="k", ballot="5.aa11", rounds=5, cause="max_rounds",
               reason="no value chosen in 5 rounds (rejected by node1)")]
    marks = _mark_texts(evs, tmp_path)
    assert marks["retry"] == ["retry: rejected by node1, promised 3.ab12",
                              "retry: no reply from node0, node2 (accept phase)"]
    assert marks["backoff"] == ["backoff 250 ms"]
    assert marks["gave_up"] == ["gave up: no value chosen in 5 rounds (rejected by node1)"]
    evs[-1] = _ev(0.6, p, "gave_up", key="k", ballot="5.aa11", rounds=5, cause="deadline")
    assert _mark_texts(evs, tmp_path)["gave_up"] == ["gave up: deadline passed after 5 rounds"]


def test_a_node_catching_up_is_a_mark_on_its_lifeline(tmp_path):
    """node2 missed the Decide (stopped); it learns the value by catching up from node0:
    its lifeline says so (the caught_up event, logged just before what it learned)."""
    p = "proposer aa11"
    evs = [_ev(-1, f"node{i}", "start") for i in range(3)]
    evs += [_ev(0, p, "start", key="k", value="V"),
            _ev(0.1, p, "chosen", key="k", value="V", ballot="1.aa11", own=True, rounds=1),
            _ev(2.0, "node2", "caught_up", keys=1, peer="node0"),
            _ev(2.0, "node2", "learned", key="k", value="V", peer=0)]
    marks = _mark_texts(evs, tmp_path)
    assert marks["caught_up"] == ["caught up: 1 key from node0"]
    assert marks["learned"] == ["learned V"]
    evs[-2] = _ev(2.0, "node2", "caught_up", keys=3, peer="node1")
    assert _mark_texts(evs, tmp_path)["caught_up"] == ["caught up: 3 keys from node1"]


def test_older_logs_still_read(tmp_path):
    """Logs written before the typed events: acceptors by number, no cause."""
    p = "proposer aa11"
    evs = [_ev(0, p, "start", key="k", value="V"),
           _ev(0.1, p, "retry", key="k", ballot="1.aa11", reason="rejected by acceptor 1",
               acceptor=1, promised="3.ab12", backoff_s=0),
           _ev(0.2, p, "retry", key="k", ballot="4.aa11", reason="timeout in accept phase",
               no_reply_from=[2], backoff_s=0),
           _ev(0.3, p, "chosen", key="k", value="W", ballot="5.aa11", own=False, rounds=5,
               told_by=2)]
    marks = _mark_texts(evs, tmp_path)
    assert marks["retry"] == ["retry: rejected by node1, promised 3.ab12",
                              "retry: no reply from node2"]
    assert marks["learns"] == ["learns W was chosen (told by node2)"]


def _finished_early() -> list[dict]:
    """Proposer A chose, sent its DECIDEs and exited; node2, up all along, never got its
    DECIDE: it had not left A's queue when A exited (seen under load)."""
    p = "proposer aa11"
    evs = [_ev(-1, f"node{i}", "start") for i in range(3)]
    evs += [_ev(0, p, "start", key="k", value="Value_A"),
            _ev(0.001, p, "chosen", key="k", value="Value_A", ballot="1.aa11", own=True,
                rounds=1, how="proposed", chosen_ballot="1.aa11")]
    for i in range(3):
        evs.append(_msg(0.002 + i / 1e4, p, "send", "DECIDE", f"a:{i}", f"node{i}",
                        value="Value_A", ballot="1.aa11"))
    evs += [_msg(0.003, "node0", "recv", "DECIDE", "a:0", p, value="Value_A"),
            _msg(0.0031, "node1", "recv", "DECIDE", "a:1", p, value="Value_A"),
            _ev(0.004, p, "stop", key="k", rounds=1),
            _ev(2, "node2", "stop")]
    return evs


def test_not_sent_is_not_lost(tmp_path, utc):
    log = _write(tmp_path / "early.log", _finished_early())
    [chart] = select(read_log(str(log)))
    [missing] = [m for m in chart.messages if m.lost]
    assert (missing.receiver, missing.fate, missing.fault) == ("node2", NOT_SENT, False)
    assert chart.faults == 0
    text = render_text([chart])
    assert "DECIDE Value_A chosen at 1.aa11 (not sent: proposer finished)" in text
    assert "lost" not in text.split("legend:")[0]
    root = svg_root(render_svg([chart], "early.log"))
    [arrow] = by_class(root, "lost")
    assert "fate-not-sent" in classes(arrow)
    labels = " ".join("".join(t.itertext()) for t in by_class(root, "arrow-label"))
    assert "not sent: proposer finished" in labels and "lost" not in labels
    # The same message to a node that had stopped is "not delivered: node2 down".
    evs = _finished_early()
    evs[-1] = _ev(-0.5, "node2", "stop")
    [chart] = select(read_log(str(_write(tmp_path / "down.log", evs))))
    [missing] = [m for m in chart.messages if m.lost]
    assert missing.fate == RECEIVER_DOWN
    assert "(not delivered: node2 down)" in render_text([chart])


def test_label_never_cuts_value_or_ballot_first():
    m = Message("PROMISE", "node0", "proposer b", "n0:1", "k", T0,
                {"ballot": "2.9200", "accepted": "1.c6cd", "value": "Value_A"}, 1)
    parts = label_parts(m)
    assert fit_label(parts, 60) == "PROMISE 2.9200 accepted 1.c6cd=Value_A"
    assert fit_label(parts, 34) == "PROMISE 2.9200 acc. 1.c6cd=Value_A"
    assert fit_label(parts, 30) == "PROMISE 2.9200 1.c6cd=Value_A"
    assert fit_label(parts, 25) == "PROMISE 2.9200 1.c6cd=Va…"  # the value goes last


def test_text_chart_shows_the_adopted_value(tmp_path, utc):
    """Ousterhout p.24 in text: B's PROMISE from node0 carries A's Value_A, and the
    chart used to cut it off (``PROMISE 2.9200 accepted 1.c6cd=…``)."""
    a, b = "proposer c6cd", "proposer 9200"
    evs = [_ev(-1, f"node{i}", "start") for i in range(3)]
    evs += [_ev(0, a, "start", key="k", value="Value_A"),
            _ev(0.1, b, "start", key="k", value="Value_B"),
            _msg(0.2, b, "send", "PREPARE", "b:1", "node0", ballot="2.9200"),
            _msg(0.21, "node0", "recv", "PREPARE", "b:1", b, ballot="2.9200"),
            _msg(0.22, "node0", "send", "PROMISE", "n0:1", b, ballot="2.9200",
                 accepted="1.c6cd", value="Value_A"),
            _msg(0.23, b, "recv", "PROMISE", "n0:1", "node0", ballot="2.9200",
                 accepted="1.c6cd", value="Value_A")]
    log = _write(tmp_path / "p24.log", evs)
    text = render_text(select(read_log(str(log))))
    [row] = [r for r in text.splitlines() if "PROMISE" in r]
    assert "PROMISE 2.9200 accepted 1.c6cd=Value_A" in row


# ---------------------------------------------------------------- the charts


def test_fixed_svg():
    root = svg_root(render_svg(select(read_log(str(FIXED_LOG))), "trace_fixed.jsonl"))
    check_svg(root, FIXED_LOG, "Value_B")
    lost = by_class(root, "lost")
    assert len(lost) == 6 and all("arrow" in classes(a) for a in lost)
    for nack in by_class(root, "msg-nack"):
        assert nack.find(f"{SVG_NS}line").get("stroke-dasharray")
    for kind in ("crash", "restart", "pause", "backoff", "retry"):
        assert by_class(root, kind), kind
    assert by_class(root, "break")  # the backoff's 451 ms is cut out and labelled
    markers = root.findall(f"{SVG_NS}defs/{SVG_NS}marker")
    assert len(markers) == len(DRAWN_TYPES)


def test_svg_marks_say_what_happened():
    """A message that never arrived ends in a circle (black: lost; hollow: no fault), never
    in the cross that marks a crashed node; every label sits on a white box, so no arrow
    strikes it through; the legend names every symbol a chart uses."""
    root = svg_root(render_svg(select(read_log(str(FIXED_LOG))), "trace_fixed.jsonl"))
    for arrow in by_class(root, "lost"):
        assert arrow.find(f"{SVG_NS}circle") is not None
        assert arrow.find(f"{SVG_NS}path") is None
    [crash] = by_class(root, "crash")
    assert crash.find(f"{SVG_NS}path") is not None and crash.find(f"{SVG_NS}circle") is None
    labels = by_class(root, "arrow-label")
    assert labels and all(lab.find(f"{SVG_NS}rect") is not None for lab in labels)
    retry_texts = [t for t in root.iter(f"{SVG_NS}text") if (t.text or "").startswith("retry:")]
    assert [t.text for t in retry_texts] == ["retry: rejected by node0, promised 1.b7c1"]
    legend = {el.get("data-name") for el in by_class(root, "legend-item")}
    for name in ("NACK", "SYNC_REPLY", "not delivered, not sent or not read (no fault)",
                 "retry", "pause", "backoff",
                 "node crashed", "restart", "node learned", "value chosen"):
        assert name in legend, name
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG_NS}text"))
    assert "not delivered: node2 down" in texts and "— lost" not in texts


def test_svg_legend_lists_only_what_the_chart_shows():
    """Fifteen message types in a legend beside a chart of four is noise (issue 26, item
    10): the legend lists the types, fates and marks the charts hold, and no others."""
    charts = select(read_log(str(FIXED_LOG)))
    root = svg_root(render_svg(charts, "trace_fixed.jsonl"))
    legend = [el.get("data-name") for el in by_class(root, "legend-item")]
    types = {m.type for c in charts for m in c.messages}
    assert [n for n in legend if n in DRAWN_TYPES] == [t for t in DRAWN_TYPES if t in types]
    assert len(types) < len(DRAWN_TYPES) and "CHECK" not in legend and "gave up" not in legend
    assert "not delivered, not sent or not read (no fault)" in legend and "new round" in legend
    assert "lost (a fault)" not in legend  # every message here that never arrived is excused


def label_boxes(root: ET.Element) -> list[tuple[float, float, float, float]]:
    """Every label's white box, in page coordinates (charts are translated down)."""
    out = []

    def walk(el: ET.Element, dy: float) -> None:
        t = el.get("transform", "")
        if t.startswith("translate(0,"):
            dy += float(t[len("translate(0,"):-1])
        for ch in el:
            if ch.tag == f"{SVG_NS}rect" and "label-bg" in classes(ch):
                x, y, w, h = (float(ch.get(k)) for k in ("x", "y", "width", "height"))
                out.append((x, y + dy, w, h))
            walk(ch, dy)

    walk(root, 0.0)
    return out


def test_svg_labels_do_not_overlap(tmp_path):
    """No label sits on another (the "not read" labels once did), in the fixed run and in
    a run of two charts."""
    evs = raw_lines(FIXED_LOG)
    log = _write(tmp_path / "keys.log", evs + _shifted(evs, 10, key="other"))
    for path in (FIXED_LOG, log):
        boxes = label_boxes(svg_root(render_svg(select(read_log(str(path))), "x")))
        assert len(boxes) > 40
        for i, (x1, y1, w1, h1) in enumerate(boxes):
            for x2, y2, w2, h2 in boxes[i + 1:]:
                overlap_x = min(x1 + w1, x2 + w2) - max(x1, x2)
                overlap_y = min(y1 + h1, y2 + h2) - max(y1, y2)
                assert overlap_x <= 0 or overlap_y <= 1, ((x1, y1, w1, h1), (x2, y2, w2, h2))


def test_fixed_text_matches_expected(utc):
    """The text chart of the fixed log, character for character."""
    text = render_text(select(read_log(str(FIXED_LOG))))
    if REWRITE:
        FIXED_TEXT.write_text(text, encoding="utf-8")
    expected = FIXED_TEXT.read_text(encoding="utf-8")
    if text != expected:
        diff = "\n".join(difflib.unified_diff(expected.splitlines(), text.splitlines(),
                                              "expected", "got", lineterm=""))
        pytest.fail(f"text chart differs from {FIXED_TEXT.name} (rewrite it on purpose with "
                    f"ZPAXOS_REWRITE_EXPECTED=1):\n{diff}")


def test_text_chart_rows_and_width(utc):
    text = render_text(select(read_log(str(FIXED_LOG))))
    rows = text.splitlines()
    assert max(len(r) for r in rows) <= 132  # a wide terminal
    assert message_rows(text) == 35  # a row per message (33 Paxos, 2 of node2's sync)
    ascii_text = render_text(select(read_log(str(FIXED_LOG))), ascii_only=True)
    assert ascii_text.isascii()
    assert len(ascii_text.splitlines()) == len(rows)


# ---------------------------------------------------------------- the command line


def message_rows(text: str) -> int:
    """Rows of a text chart that draw a message (the legend, which shows them too, ends it)."""
    rows = text.split("\nlegend:")[0].splitlines()[5:]
    return sum(any(g in r for g in "▶◀◌") for r in rows)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(["trace", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return e.value.code, out, err


def test_cli_missing_file(capsys, tmp_path):
    code, out, err = run_cli(capsys, str(tmp_path / "nope.log"))
    assert code == 2 and out == ""
    assert err.strip() == f"zpaxos trace: error: {tmp_path / 'nope.log'}: no such file"


def test_cli_text_format_log(capsys, tmp_path):
    log = tmp_path / "paxos.log"
    log.write_text("07:09:58.970 node0          INFO  start endpoint=tcp://127.0.0.1:5001\n"
                   "07:09:58.971 node0          INFO  recv PREPARE <- proposer 3f2a "
                   "key=CISC5597 ballot=1.3f2a\n")
    code, _, err = run_cli(capsys, str(log))
    assert code == 2
    assert "this looks like a text-format log; set format = json in the [log] section" in err


@pytest.mark.parametrize("content, why", [
    ("", "the file is empty"),
    ("garbage\n[1, 2]\n{\"ts\": \"x\", \"process\": \"a\", \"event\": \"b\"}\n", "3 lines skipped"),
])
def test_cli_no_events(capsys, tmp_path, content, why):
    log = tmp_path / "paxos.log"
    log.write_text(content)
    code, _, err = run_cli(capsys, str(log))
    assert code == 2 and f"no zpaxos events ({why})" in err


def test_cli_refuses_a_file_that_is_not_a_log(capsys, tmp_path):
    """The docs quote a log line or two (docs/how-it-works.md, Logs): ``zpaxos trace
    docs/how-it-works.md`` must not draw them (issue 26, item 10). Most lines not zpaxos
    events: not a log."""
    readme = Path(__file__).parent.parent / "docs" / "how-it-works.md"
    assert '{"ts":' in readme.read_text()  # it still quotes one
    code, out, err = run_cli(capsys, str(readme))
    assert (code, out) == (2, "")
    [line] = err.splitlines()
    assert line.startswith(f"zpaxos trace: error: {readme}: not a zpaxos log (")
    assert line.endswith(" lines are not zpaxos events, first: line 1)")
    # A log with as many stray lines as events is still a log (with them skipped).
    evs = raw_lines(FIXED_LOG)
    log = tmp_path / "half.log"
    log.write_text("".join(json.dumps(e) + "\nnot json\n" for e in evs))
    code, out, err = run_cli(capsys, str(log), "--format", "text")
    assert code == 0 and "chosen: Value_B" in out and f"skipped {len(evs)} lines" in err


def test_cli_counts_skipped_lines(capsys, tmp_path):
    log = tmp_path / "paxos.log"
    log.write_bytes(FIXED_LOG.read_bytes() + b"not json\n\xff\xfe binary\n"
                    b'{"ts": 1e400, "process": "node0", "event": "start"}\n')
    code, out, err = run_cli(capsys, str(log), "--format", "text")
    assert code == 0 and "chosen: Value_B" in out
    assert "skipped 3 lines that are not zpaxos events (first: line 91)" in err


def test_cli_key_filter_and_text_output(capsys, tmp_path):
    evs = raw_lines(FIXED_LOG)
    log = _write(tmp_path / "keys.log", evs + _shifted(evs, 10, key="other"))
    code, out, err = run_cli(capsys, str(log), "--key", "other")
    assert code == 0 and err == ""
    assert "key other ·" in out and "key CISC5597" not in out
    assert "★═ chosen: Value_B (ballot 1.b7c1) ═" in out and "legend:" in out
    code, _, err = run_cli(capsys, str(log), "--key", "missing")
    assert code == 2 and "no events for key 'missing'" in err


def test_cli_writes_svg(capsys, tmp_path):
    out_file = tmp_path / "chart.svg"
    code, out, err = run_cli(capsys, str(FIXED_LOG), "--out", str(out_file))
    assert code == 0 and err == ""
    assert out.strip() == f"wrote svg chart of CISC5597 to {out_file}"
    check_svg(svg_root(out_file.read_text()), FIXED_LOG, "Value_B")
    txt = tmp_path / "chart.txt"
    code, out, _ = run_cli(capsys, str(FIXED_LOG), "--out", str(txt))
    assert code == 0 and "wrote text chart" in out and "legend:" in txt.read_text()
    code, _, err = run_cli(capsys, str(FIXED_LOG), "--out", str(tmp_path / "no" / "x.svg"))
    assert code == 2 and "cannot write" in err


def test_cli_since(capsys, utc):
    code, out, _ = run_cli(capsys, str(FIXED_LOG), "--since", "2025-11-27T07:00:01.5")
    assert code == 0 and "round 2 · ballot 2.3f2a" in out and "round 1" not in out
    code, _, err = run_cli(capsys, str(FIXED_LOG), "--since", "2030-01-01T00:00:00")
    assert code == 2 and "no Paxos messages or proposer events at or after 2030-01-01" in err
    code, _, err = run_cli(capsys, str(FIXED_LOG), "--since", "yesterday-ish")
    assert code == 2 and "--since 'yesterday-ish': not a time" in err


HOSTILE = [  # valid JSON, plausible enough to pass the first checks, wrong inside
    {"ts": T0 + 1, "process": "proposer 3f2a", "event": "start", "key": 7, "value": None},
    {"ts": T0 + 1, "process": "proposer 3f2a", "event": "pause", "key": "k", "seconds": "x"},
    {"ts": T0 + 1, "process": "proposer 3f2a", "event": "retry", "key": "k", "backoff_s": -1,
     "no_reply_from": "everyone"},
    {"ts": T0 + 1, "process": "proposer 3f2a", "event": "pause", "key": "k", "seconds": 1e300},
    {"ts": T0 + 1, "process": "proposer 3f2a", "event": "send", "type": "PREPARE",
     "msg_id": "a:1", "peer": "node0", "key": "k", "ballot": {"x": [1]}},
    {"ts": T0 + 1, "process": "node0", "event": "recv", "type": "PREPARE", "msg_id": "a:1",
     "peer": "proposer 3f2a", "key": "k"},
    {"ts": T0 + 1, "process": "node0", "event": "send", "type": "NACK", "msg_id": "n0:1",
     "peer": "node0", "key": "k"},
    {"ts": T0 + 1, "process": "node0", "event": "recv", "type": "ACCEPT", "msg_id": "z:9",
     "peer": "unknown 00ff", "key": "k", "value": ["a", 1]},
    {"ts": T0 + 1, "process": "node0", "event": "undeliverable", "type": "DECIDE",
     "msg_id": "n0:7", "peer": "proposer 9", "key": "k"},
    {"ts": T0 + 1, "process": "proposer 3f2a", "event": "chosen", "key": "k", "value": None},
    {"ts": T0 + 1, "process": "node1", "event": "start"},
    {"ts": T0 + 1, "process": "node1", "event": "start"},
    {"ts": T0 + 1, "process": "node0", "event": "send", "type": "PREPARE"},
]


@pytest.mark.parametrize("fmt", ["text", "svg"])
def test_cli_never_a_traceback_on_odd_events(capsys, tmp_path, fmt):
    log = _write(tmp_path / "odd.log", HOSTILE)
    code, out, err = run_cli(capsys, str(log), "--format", fmt)
    assert code == 0, err
    assert "skipped 1 line" in err  # the send without msg_id and peer
    if fmt == "svg":
        svg_root(out)


@pytest.mark.parametrize("name, fmt", [("chart.svg", "svg"), ("chart.SVG", "svg"),
                                       ("chart.txt", "text")])
def test_cli_format_from_extension(capsys, tmp_path, name, fmt):
    out_file = tmp_path / name
    code, out, err = run_cli(capsys, str(FIXED_LOG), "--out", str(out_file))
    assert code == 0 and err == ""
    assert out.startswith(f"wrote {fmt} chart")
    written = out_file.read_text()
    assert written.startswith("<svg") if fmt == "svg" else "legend:" in written


@pytest.mark.parametrize("name, why", [
    ("chart.png", "cannot tell the chart format from '.png'"),
    ("chart", "cannot tell the chart format from no extension"),
])
def test_cli_refuses_unknown_extension(capsys, tmp_path, name, why):
    """--out x.png used to write a text chart into x.png without a word."""
    out_file = tmp_path / name
    code, out, err = run_cli(capsys, str(FIXED_LOG), "--out", str(out_file))
    assert code == 2 and out == "" and not out_file.exists()
    assert err == (f"zpaxos trace: error: --out {out_file}: {why}; use a .svg, .html or .txt"
                   f" file name, or --format svg|html|text\n")


def test_cli_format_and_extension(capsys, tmp_path):
    # An explicit --format wins over an unknown extension, never over a known other one.
    code, _, err = run_cli(capsys, str(FIXED_LOG), "--out", str(tmp_path / "c.dat"),
                           "--format", "svg")
    assert code == 0 and (tmp_path / "c.dat").read_text().startswith("<svg")
    code, _, err = run_cli(capsys, str(FIXED_LOG), "--out", str(tmp_path / "c.svg"),
                           "--format", "text")
    assert code == 2 and "a .svg file, but --format text" in err


# ---------------------------------------------------------------- the scenario runner's hook


def test_draw_scenario(tmp_path):
    path = draw_scenario(FIXED_LOG, "9-fixed", tmp_path, since=T0)
    assert path == str(tmp_path / "9-fixed.svg")
    check_svg(svg_root(Path(path).read_text()), FIXED_LOG, "Value_B")
    # A scenario that logged nothing drawable still gets a file saying so.
    empty = draw_scenario(FIXED_LOG, "later", tmp_path, since=T0 + 3600)
    assert "nothing to draw" in Path(empty).read_text()
    svg_root(Path(empty).read_text())
    missing = draw_scenario(tmp_path / "none.log", "none", tmp_path, since=0.0)
    assert "no such file" in Path(missing).read_text()
    assert draw_scenario(FIXED_LOG, "x", tmp_path / "absent-dir", since=T0) == ""


# ---------------------------------------------------------------- a real run


@pytest.mark.e2e
def test_chart_of_a_real_run(tmp_path, capsys):
    """Three real nodes, two proposers at once: the chart has every process and message,
    and no message is called lost (on loopback none is: a DECIDE still queued when its
    proposer exited is "not sent", a late reply "not read")."""
    from tests.harness import Cluster

    cluster = Cluster(tmp_path)
    try:
        cluster.start_all()
        a = cluster.propose_bg("Value_A")
        b = cluster.propose_bg("Value_B", "--first-round", "7")  # staged: B's ballots above
        ra, rb = Cluster.finish(a), Cluster.finish(b)
        assert ra.code == 0 and rb.code == 0, (ra.err, rb.err)
        chosen = ra.json["chosen"]
        assert rb.json["chosen"] == chosen
        assert rb.json["ballot"].startswith(("7.", "8.", "9.")), rb.json["ballot"]
    finally:
        cluster.stop_all()
    log = tmp_path / "paxos.log"
    path = draw_scenario(log, "e2e", tmp_path, since=0.0)
    check_svg(svg_root(Path(path).read_text()), log, chosen)
    code, out, err = run_cli(capsys, str(log), "--format", "text")
    assert code == 0 and err == ""
    assert message_rows(out) == sum(message_sends(log).values())
    assert f"chosen: {chosen}" in out
    [chart] = select(read_log(str(log)))
    assert chart.faults == 0, [(m.type, m.sender, m.receiver, m.fate) for m in chart.messages
                               if m.fault]
    rounds = [m.text for m in chart.marks if m.kind == "round"]
    assert any(" · ballot 7." in t for t in rounds), rounds
