"""The SVG chart of ``zpaxos trace``: one self-contained file for a browser or a README.

Nothing is loaded from anywhere (no scripts, fonts, images or external links); colours
and shapes are attributes, text uses the reader's system font. Time flows down, but not
to scale: every send, receive and mark gets its own row so labels never sit on top of
each other, a gap between rows grows with the log of the time that passed, and a gap
longer than ``BREAK_S`` is cut out and labelled ("2.69 s later"), so a backoff or a
staged delay of seconds shows as a marked break instead of a page of empty space.

The shapes, styles and page geometry the charts are drawn with, and the legend, are in
svg_shapes.py; this module lays out each chart (a y per row) and draws it.

Elements carry classes and data attributes (``lifeline`` + ``data-process``, ``arrow`` +
``data-msg-id``, ``decision`` + ``data-value``) so tests and scripts can find them.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from xml.sax.saxutils import escape

from zpaxos.pictures import split_svg
from zpaxos.pictures.chartmodel import (
    Chart,
    Mark,
    Message,
    clock,
    columns,
    elapsed,
    fate_text,
    fit_label,
    gap,
    is_proposer,
    label,
    label_parts,
)
from zpaxos.pictures.svg_shapes import (
    AXIS_W,
    BREAK_S,
    FONT,
    HEAD_H,
    HEAD_W,
    LABEL_CHARS,
    LOST_INK,
    MIDDLE_GAP,
    MISSED_INK,
    NODE_GAP,
    PAD,
    PROPOSER_GAP,
    ROW,
    STYLE,
    _a,
    _cross,
    _defs,
    _dot,
    _label,
    _legend,
    _num,
    _star,
    _text,
)

# ---------------------------------------------------------------- one chart


class _SvgChart:
    """Lays out one chart: x per lifeline, y per row; then draws it at a y offset."""

    def __init__(self, chart: Chart) -> None:
        self.c = chart
        self.x = columns(chart.processes, PAD + AXIS_W + HEAD_W / 2 + 12, PROPOSER_GAP,
                         MIDDLE_GAP, NODE_GAP)
        self.width = max(self.x.values()) + HEAD_W / 2 + 150 + PAD
        self.decision = chart.decision
        self.decisions = chart.decisions  # two or more only when safety failed
        self.heads_y = 62.0 + (split_svg.SPLIT_H if chart.split else 0)
        self.body_top = self.heads_y + HEAD_H + 12
        self._layout()

    def _layout(self) -> None:
        """A y for every row, and the breaks where long gaps were cut out."""
        c = self.c
        items: list[tuple[float, float, str, object]] = []
        for m in c.messages:
            items.append((m.sent, m.line, "send", m))
            if m.received is not None:
                items.append((m.received, max(m.recv_line, m.line + 0.5), "recv", m))
        for mk in c.marks:
            items.append((mk.ts, mk.line, "mark", mk))
            if mk.until is not None:
                items.append((mk.until, -1.0, "end", mk))
        items.sort(key=lambda i: (i[0], i[1]))
        self.y_send: dict[int, float] = {}
        self.y_recv: dict[int, float] = {}
        self.y_mark: dict[int, float] = {}
        self.y_end: dict[int, float] = {}
        self.breaks: list[tuple[float, float]] = []  # (y in the middle of the cut, seconds)
        self.timeline: list[tuple[float, float]] = []  # (ts, y) of every row
        y, prev = self.body_top + ROW / 2 + 4, None
        for ts, _, kind, obj in items:
            if prev is not None:
                dt = ts - prev
                step: float = ROW
                if dt > BREAK_S:
                    step += 30
                    self.breaks.append((y + step / 2, dt))
                elif dt > 0.001:
                    step += min(22.0, 8 * math.log10(dt / 0.001))
                if kind == "mark" and self._is_decision(obj):
                    step += 10
                y += step
            prev = ts if prev is None else max(prev, ts)
            table = {"send": self.y_send, "recv": self.y_recv, "mark": self.y_mark,
                     "end": self.y_end}[kind]
            table[id(obj)] = y
            self.timeline.append((ts, y))
            if kind == "mark" and self._is_decision(obj):
                y += 10
        self.body_bottom = y + ROW
        self.height = self.body_bottom + 16
        self._ts = [t for t, _ in self.timeline]

    def _is_decision(self, obj: object) -> bool:
        return any(obj is d for d in self.decisions)

    def y_at(self, ts: float) -> float:
        """The y of a moment between rows (for where a lifeline goes down or up)."""
        if not self.timeline or ts <= self.timeline[0][0]:
            return self.body_top if ts < self.c.start else self.timeline[0][1]
        if ts > self.timeline[-1][0]:
            return self.body_bottom
        i = bisect_right(self._ts, ts) - 1
        t0, y0 = self.timeline[i]
        if i + 1 >= len(self.timeline):
            return y0
        t1, y1 = self.timeline[i + 1]
        return y0 if t1 <= t0 else y0 + (y1 - y0) * (ts - t0) / (t1 - t0)

    # ---- drawing

    def draw(self, top: float) -> str:
        c = self.c
        out = [f'<g class="chart" data-key={_a(c.key)} transform="translate(0,{_num(top)})">']
        out += self._heading()
        for i, d in enumerate(self.decisions):
            y = self.y_mark[id(d)]
            fill, stroke, dash = (("#fff4c4", "#f1c40f", "") if i == 0
                                  else ("#ddeefa", "#0072B2", ' stroke-dasharray="6 4"'))
            out.append(f'<rect class="decision-band" x="{PAD}" y="{_num(y - 14)}" '
                       f'width="{_num(self.width - 2 * PAD)}" height="28" fill="{fill}" '
                       f'stroke="{stroke}"{dash}/>')
        out += split_svg.heading(self)
        out += self._axis()
        out += [self._lifeline(p) for p in c.processes]
        out += split_svg.heads(self)
        out += self._break_bands()
        out += [self._box(m) for m in c.marks if m.until is not None]
        out += split_svg.highlights(self)
        # Labels go on top of every line, so no arrow drawn later can cross one.
        # data-msg / data-mark: the message's or mark's index in the chart, for stepping.
        arrows = [(f'<g data-msg="{i}">{shape}</g>', f'<g data-msg="{i}">{words}</g>')
                  for i, (shape, words) in enumerate(self._arrow(m) for m in c.messages)]
        marks = [(f'<g data-mark="{i}">{shape}</g>', f'<g data-mark="{i}">{words}</g>')
                 for i, (shape, words) in enumerate(self._mark(m) for m in drawn_marks(c))]
        out += [shape for shape, _ in arrows + marks]
        out += [label for _, label in arrows + marks]
        out.append("</g>")
        return "\n".join(out)

    def _heading(self) -> list[str]:
        c = self.c
        nprop = sum(is_proposer(p) for p in c.processes)
        lost = c.never_received()
        span = (f"{clock(c.start, date=True)} → {clock(c.end)}  ({elapsed(c.end - c.start)})"
                + (f"  ·  {c.note}" if c.note else ""))
        outcome = (f"chosen: {self.decision.value}" if self.decision is not None
                   else "no value chosen")
        if len(self.decisions) > 1:
            outcome = "TWO VALUES CHOSEN: " + " and ".join(str(d.value) for d in self.decisions)
        summary = (f"{nprop} proposer{'s' if nprop != 1 else ''}  ·  "
                   f"{len(c.processes) - nprop} nodes  ·  {len(c.messages)} messages"
                   f"{f' ({lost})' if lost else ''}  ·  {outcome}")
        return [
            f'<line x1="{PAD}" y1="2" x2="{_num(self.width - PAD)}" y2="2" stroke="#888"/>',
            _text(PAD, 24, f"key {c.key}", 16, "#111", weight="bold", halo=False),
            _text(PAD + 16 + 9.5 * (len(c.key) + 4), 24, span, 12, "#555", halo=False),
            _text(PAD, 44, summary, 12, "#333", halo=False),
        ]

    def _axis(self) -> list[str]:
        x = PAD + AXIS_W - 14
        out = [f'<line x1="{x}" y1="{_num(self.body_top)}" x2="{x}" '
               f'y2="{_num(self.body_bottom)}" stroke="#bbb"/>',
               _text(x - 6, self.body_top - 4, "elapsed", 10, "#888", "end", halo=False)]
        last, shown = -1e9, ""
        breaks = [y for y, _ in self.breaks]
        for ts, y in self.timeline:
            label = elapsed(ts - self.c.start)
            crossed = any(last < b < y for b in breaks)
            if (y - last >= 44 or crossed) and label != shown:
                out.append(f'<line x1="{x - 3}" y1="{_num(y)}" x2="{x + 3}" y2="{_num(y)}" '
                           f'stroke="#999"/>')
                out.append(_text(x - 6, y + 4, label, 10, "#777", "end"))
                last, shown = y, label
        return out

    def _lifeline(self, p: str) -> str:
        c, x = self.c, self.x[p]
        proposer = is_proposer(p)
        fill, stroke = ("#fff3dc", "#d9a441") if proposer else ("#e8f0fb", "#6f93c6")
        sub = f"proposes {c.proposed[p]}" if p in c.proposed else (
            "acceptor" if not proposer else "")
        hy = self.heads_y
        out = [f'<g class="lifeline" data-process={_a(p)}>',
               f'<rect x="{_num(x - HEAD_W / 2)}" y="{_num(hy)}" width="{HEAD_W}" '
               f'height="{HEAD_H}" rx="6" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>',
               _text(x, hy + (17 if sub else 25), p, 13, "#111", "middle", "bold", halo=False)]
        if sub:
            out.append(_text(x, hy + 32, sub, 11, "#555", "middle", halo=False))
        if not proposer and c.is_down(p, c.start):
            out.append(_text(x + 7, hy + HEAD_H + 14, "not running", 10.5, "#999",
                             style="italic"))
        # Solid while the process runs; a faint dotted line while it is down.
        cuts = sorted({self.c.start, self.c.end}
                      | {t for a, b in c.down[p] for t in (a, b) if c.start < t < c.end})
        y_top = hy + HEAD_H
        spans = []
        for a, b in zip(cuts, cuts[1:], strict=False):
            down = c.is_down(p, (a + b) / 2)
            y0 = y_top if a == c.start else self.y_at(a)
            y1 = self.body_bottom if b == c.end else self.y_at(b)
            spans.append((y0, y1, down))
        if len(cuts) == 1:
            spans.append((y_top, self.body_bottom, c.is_down(p, c.start)))
        for y0, y1, down in spans:
            style = ('stroke="#c8c8c8" stroke-dasharray="2 4"' if down
                     else 'stroke="#666" stroke-width="1.6"')
            out.append(f'<line x1="{_num(x)}" y1="{_num(y0)}" x2="{_num(x)}" y2="{_num(y1)}" '
                       f'{style}/>')
        out.append("</g>")
        return "\n".join(out)

    def _break_bands(self) -> list[str]:
        out = []
        x0, x1 = PAD + AXIS_W - 6, self.width - PAD
        for y, dt in self.breaks:
            zig = " ".join(f"{_num(x)},{_num(y + (-3 if i % 2 else 3))}"
                           for i, x in enumerate(range(int(x0), int(x1), 12)))
            out.append(f'<g class="break" data-seconds="{dt:.3f}">'
                       f'<rect x="{_num(x0)}" y="{_num(y - 8)}" width="{_num(x1 - x0)}" '
                       f'height="16" fill="#ffffff" fill-opacity="0.9"/>'
                       f'<polyline points="{zig}" fill="none" stroke="#b0b0b0"/>'
                       + _text(PAD + AXIS_W - 20, y + 4, f"{gap(dt)} later", 10.5, "#444",
                               "end", "bold") + "</g>")
        return out

    def _box(self, m: Mark) -> str:
        x = self.x[m.process]
        y0, y1 = self.y_mark[id(m)], self.y_end.get(id(m), self.y_mark[id(m)])
        fill, stroke = ("#c9d3e3", "#8796ab") if m.kind == "pause" else ("#f8d7a6", "#d9a45b")
        label = _label(x + 11, y0 + 4, m.text, 11, "#6b5a3a", style="italic") \
            if m.kind == "backoff" else ""
        return (f'<g class="mark {m.kind}" data-process={_a(m.process)}>'
                f'<rect x="{_num(x - 6)}" y="{_num(y0)}" width="12" '
                f'height="{_num(max(y1 - y0, 4))}" fill="{fill}" stroke="{stroke}" rx="2"/>'
                f"{label}</g>")

    def _arrow(self, m: Message) -> tuple[str, str]:
        line, ink, dash = STYLE.get(m.type, ("#7f8c8d", "#555f60", ""))
        s, r = self.x[m.sender], self.x[m.receiver]
        y0 = self.y_send[id(m)]
        right = r >= s
        tip = -1 if right else 1
        cls = f"arrow msg-{m.type.lower()}" + (f" lost fate-{m.fate.replace(' ', '-')}"
                                               if m.lost else "")
        text = fit_label(label_parts(m), LABEL_CHARS)
        tip_text = (f"{label(m)}\nfrom {m.sender} to {m.receiver}, msg {m.msg_id}\n"
                    f"sent {clock(m.sent)}")
        head = f' marker-end="url(#head-{m.type.lower()})"' if m.type in STYLE else ""
        end = ""
        if m.lost:
            # Short of the receiver, so it still points at whom it was meant for; a black
            # dot for a message lost to a fault (the UML "lost message"), a hollow grey one
            # for a message nobody was there to read or that never left.
            x1 = r - (r - s) * min(0.35, 60 / max(abs(r - s), 1))
            y1 = y0 + ROW * 0.8
            text += " — " + fate_text(m)
            tip_text += f"\n{fate_text(m)}" + (f" ({m.why})" if m.why else "")
            if m.fault:
                end = _dot(x1, y1, 4.5, LOST_INK, LOST_INK)
                ink = "#b71c1c"
            else:
                end = _dot(x1, y1, 4.5, "#ffffff", MISSED_INK)
                line, ink, dash = MISSED_INK, "#6f6f6f", "4 3"
            head = ""
        else:
            x1, y1 = r + tip, self.y_recv[id(m)]
            tip_text += f", received {clock(m.received or m.sent)}"
            if (m.received or m.sent) - m.sent >= 0.001:
                tip_text += f" ({gap((m.received or m.sent) - m.sent)} later)"
        width = "2.2" if m.type == "DECIDE" else "1.6"
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        lx = s + 8 if right else s - 8
        shape = (f'<g class={_a(cls)} data-msg-id={_a(m.msg_id)} data-type="{m.type}" '
                 f'data-from={_a(m.sender)} data-to={_a(m.receiver)}>'
                 f"<title>{escape(tip_text)}</title>"
                 f'<line x1="{_num(s)}" y1="{_num(y0)}" x2="{_num(x1)}" y2="{_num(y1)}" '
                 f'stroke="{line}" stroke-width="{width}"{dash_attr}{head}/>{end}</g>')
        words = (f'<g class="arrow-label" data-msg-id={_a(m.msg_id)}>'
                 f"<title>{escape(tip_text)}</title>"
                 + _label(lx, y0 - 5, text, 11.5, ink, "start" if right else "end") + "</g>")
        return shape, words

    def _mark(self, m: Mark) -> tuple[str, str]:
        x, y = self.x[m.process], self.y_mark[id(m)]
        tx, ty = x + 12, y + 4
        attrs = f'data-process={_a(m.process)}'
        if self._is_decision(m):
            i = next(i for i, d in enumerate(self.decisions) if d is m)
            fill, stroke, ink = (("#f5b800", "#9a7400", "#4d3b00") if i == 0
                                 else ("#56B4E9", "#0072B2", "#003d66"))
            text = m.text if len(self.decisions) == 1 else f"decision {i + 1}: {m.text}"
            return (f'<g class="decision" data-value={_a(m.value)} {attrs}>'
                    + _star(x, y, 11, fill, stroke) + "</g>",
                    _text(x + 16, y + 5, text, 14, ink, weight="bold"))
        shape = {
            "start": f'<circle cx="{_num(x)}" cy="{_num(y)}" r="4.5" fill="#666"/>',
            "stop": f'<line x1="{_num(x - 8)}" y1="{_num(y)}" x2="{_num(x + 8)}" '
                    f'y2="{_num(y)}" stroke="#666" stroke-width="3"/>',
            "crash": _cross(x, y, 8, "#d62728", 3.5),
            "restart": f'<circle cx="{_num(x)}" cy="{_num(y)}" r="6.5" fill="#ffffff" '
                       f'stroke="#2e8b57" stroke-width="3"/>',
            "round": f'<path d="M{_num(x)},{_num(y - 6)} l6,6 l-6,6 l-6,-6 z" fill="#555"/>',
            "adopted": f'<path d="M{_num(x)},{_num(y - 6)} l6,6 l-6,6 l-6,-6 z" '
                       f'fill="#8e44ad"/>',
            "pause": "",
            "retry": f'<circle cx="{_num(x)}" cy="{_num(y)}" r="5" fill="#ffffff" '
                     f'stroke="#d35400" stroke-width="2.5"/>',
            "learns": _star(x, y, 7.5, "#ffffff", "#b08a00"),
            "chosen": _star(x, y, 7.5, "#ffe27a", "#b08a00"),
            "gave_up": _cross(x, y, 6, "#555", 3),
            "applied": f'<circle cx="{_num(x)}" cy="{_num(y)}" r="5.5" fill="#2e8b57"/>',
            "learned": f'<circle cx="{_num(x)}" cy="{_num(y)}" r="4" fill="#2e8b57"/>',
            "caught_up": f'<circle cx="{_num(x)}" cy="{_num(y)}" r="6" fill="#ffffff" '
                         f'stroke="#16a085" stroke-width="2.5"/>',
            "conflict": _cross(x, y, 8, "#b00020", 4),
            "malformed": f'<path d="M{_num(x)},{_num(y - 6)} l6,11 l-12,0 z" fill="#e67e22"/>',
        }.get(m.kind, "")
        ink, weight, style = {
            "crash": ("#c0392b", "bold", "normal"), "restart": ("#2e7d4f", "bold", "normal"),
            "round": ("#555", "normal", "italic"), "adopted": ("#6c3483", "bold", "normal"),
            "retry": ("#a04000", "normal", "normal"), "gave_up": ("#b00020", "bold", "normal"),
            "conflict": ("#b00020", "bold", "normal"), "pause": ("#4a5a70", "normal", "italic"),
            "learns": ("#6b5200", "normal", "normal"), "chosen": ("#6b5200", "bold", "normal"),
        }.get(m.kind, ("#444", "normal", "normal"))
        if m.kind == "pause":
            tx = x + 11
        return (f'<g class="mark {m.kind}" {attrs}>{shape}</g>',
                _label(tx, ty, m.text, 11.5, ink, weight=weight, style=style))


def drawn_marks(c: Chart) -> list[Mark]:
    """The marks drawn as symbols, in the order ``data-mark`` numbers them."""
    return [m for m in c.marks if m.kind != "backoff"]


# ---------------------------------------------------------------- the document


def render_svg(charts: list[Chart], source: str) -> str:
    """One SVG document: a title, a legend, then every chart stacked top to bottom."""
    layouts = [_SvgChart(c) for c in charts]
    width = max([900.0, *(lay.width for lay in layouts)])
    keys = ", ".join(c.key for c in charts)
    title = f"Paxos message sequence chart: {keys}"
    legend, legend_h = _legend(width, PAD + 44, charts)
    body: list[str] = []
    top = PAD + 44 + legend_h + 8
    for lay in layouts:
        body.append(lay.draw(top))
        top += lay.height + 28
    height = top
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_num(width)}" height="{_num(height)}" '
        f'viewBox="0 0 {_num(width)} {_num(height)}" font-family={_a(FONT)} font-size="12">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(f'Drawn by zpaxos trace from {source}')}</desc>",
        _defs(),
        f'<rect width="{_num(width)}" height="{_num(height)}" fill="#ffffff"/>',
        _text(PAD, PAD + 6, "Paxos message sequence chart", 19, "#111", weight="bold",
              halo=False),
        _text(PAD, PAD + 26, f"from {source}  ·  time flows down; rows are not to scale, "
              f"long gaps are cut out and labelled; hover an arrow for details",
              11.5, "#666", halo=False),
    ]
    return "\n".join(head + legend + body + ["</svg>"]) + "\n"


def render_empty(name: str, message: str) -> str:
    """A placeholder chart for a scenario that logged nothing worth drawing."""
    width, height = 900, 110
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family={_a(FONT)} font-size="12">',
        f"<title>{escape(name)}: nothing to draw</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        _text(PAD, PAD + 10, f"{name}: nothing to draw", 17, "#111", weight="bold", halo=False),
        _text(PAD, PAD + 40, message, 12, "#555", halo=False),
        "</svg>",
    ]) + "\n"
