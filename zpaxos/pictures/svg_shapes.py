"""What the SVG charts are drawn with: the page's geometry and fonts, the message styles,
the primitive shapes (text, labelled text, dot, star, cross), the arrowheads, and the
legend that shows samples of them.

chart_svg.py lays out and draws the charts with these; nothing here knows a chart's rows.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape, quoteattr

from zpaxos.pictures.chartmodel import Chart
from zpaxos.protocol import registry

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
BREAK_S = 0.25  # a longer gap between rows is cut out and labelled
PAD, AXIS_W = 24, 78  # page margin; the elapsed-time column
ROW = 22  # one row per send, receive or mark
PROPOSER_GAP, MIDDLE_GAP, NODE_GAP = 190, 310, 210  # pixels between lifelines
HEAD_W, HEAD_H = 150, 40  # a lifeline's name box
LABEL_CHARS = 64  # a longer label loses its connecting words, then the end of its value
CHAR_W = 6.6  # rough width of a character at 11.5 px: legend layout, label backgrounds

# Message type -> (line colour, text colour, dash pattern), as the registry declares them
# (NACKs are red and dashed; sync is dotted).
STYLE = {t: (st.line, st.ink, st.dash) for t, st in registry.STYLES.items()}
LOST_INK, MISSED_INK = "#111111", "#9a9a9a"  # the end of a lost arrow; of one never due
HALO = 'stroke="#ffffff" stroke-width="4" stroke-linejoin="round" paint-order="stroke"'


def _a(v: object) -> str:
    return quoteattr(str(v))


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, s: str, size: float = 11.5, fill: str = "#222",
          anchor: str = "start", weight: str = "normal", style: str = "normal",
          halo: bool = True) -> str:
    return (f'<text x="{_num(x)}" y="{_num(y)}" font-size="{size}" fill="{fill}" '
            f'text-anchor="{anchor}" font-weight="{weight}" font-style="{style}"'
            f'{" " + HALO if halo else ""}>{escape(s)}</text>')


def _label(x: float, y: float, s: str, size: float = 11.5, fill: str = "#222",
           anchor: str = "start", weight: str = "normal", style: str = "normal") -> str:
    """Text on a white box, so a line drawn under it never strikes it through."""
    w = len(s) * CHAR_W * size / 11.5 * (1.08 if weight == "bold" else 1.0) + 6
    x0 = x - 3 if anchor == "start" else x - w + 3 if anchor == "end" else x - w / 2
    # From just above the capitals to just below the descenders of a sans-serif font.
    top, bottom = y - 0.78 * size - 1, y + 0.22 * size + 1
    box = (f'<rect class="label-bg" x="{_num(x0)}" y="{_num(top)}" width="{_num(w)}" '
           f'height="{_num(bottom - top)}" rx="3" fill="#ffffff" fill-opacity="0.92"/>')
    return box + _text(x, y, s, size, fill, anchor, weight, style, halo=False)


def _dot(x: float, y: float, r: float, fill: str, stroke: str) -> str:
    return (f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{_num(r)}" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.8"/>')


def _star(x: float, y: float, r: float, fill: str, stroke: str) -> str:
    pts = []
    for i in range(10):
        rad = r if i % 2 == 0 else r * 0.45
        ang = -math.pi / 2 + i * math.pi / 5
        pts.append(f"{_num(x + rad * math.cos(ang))},{_num(y + rad * math.sin(ang))}")
    return f'<polygon points="{" ".join(pts)}" fill="{fill}" stroke="{stroke}"/>'


def _cross(x: float, y: float, r: float, color: str, width: float = 2.5) -> str:
    return (f'<path d="M{_num(x - r)},{_num(y - r)} L{_num(x + r)},{_num(y + r)} '
            f'M{_num(x - r)},{_num(y + r)} L{_num(x + r)},{_num(y - r)}" stroke="{color}" '
            f'stroke-width="{width}" stroke-linecap="round"/>')


def _defs() -> str:
    heads = "".join(
        f'<marker id="head-{t.lower()}" viewBox="0 0 10 10" refX="9.5" refY="5" '
        f'markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto">'
        f'<path d="M0,0.5 L10,5 L0,9.5 z" fill="{line}"/></marker>'
        for t, (line, _, _) in STYLE.items())
    return f"<defs>{heads}</defs>"


# ---------------------------------------------------------------- the legend


def _legend(width: float, y: float, charts: list[Chart]) -> tuple[list[str], float]:
    """Samples of the lines and marks the charts hold (no others: a legend of fifteen
    message types beside a chart of four is noise), wrapped to the page width; returns
    its height."""
    types = {m.type for c in charts for m in c.messages}
    kinds = {mk.kind for c in charts for mk in c.marks}
    items: list[tuple[str, str]] = []
    for t, (line, _, dash) in STYLE.items():
        if t not in types:
            continue
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        items.append((t, f'<line x1="0" y1="0" x2="30" y2="0" stroke="{line}" stroke-width="1.8"'
                         f'{dash_attr} marker-end="url(#head-{t.lower()})"/>'))
    if any(m.fault for c in charts for m in c.messages):
        items.append(("lost (a fault)", '<line x1="0" y1="0" x2="24" y2="0" stroke="#888" '
                      'stroke-width="1.6"/>' + _dot(27, 0, 4.5, LOST_INK, LOST_INK)))
    if any(m.lost and not m.fault for c in charts for m in c.messages):
        items.append(("not delivered, not sent or not read (no fault)",
                      f'<line x1="0" y1="0" x2="24" y2="0" stroke="{MISSED_INK}" '
                      f'stroke-width="1.6" stroke-dasharray="4 3"/>'
                      + _dot(27, 0, 4.5, "#ffffff", MISSED_INK)))
    marks = [  # (the kind of mark, its name, a sample)
        ("round", "new round", '<path d="M15,-6 l6,6 l-6,6 l-6,-6 z" fill="#555"/>'),
        ("retry", "retry", '<circle cx="15" cy="0" r="5" fill="#ffffff" stroke="#d35400" '
                           'stroke-width="2.5"/>'),
        ("pause", "pause", '<rect x="9" y="-8" width="12" height="16" rx="2" '
                           'fill="#c9d3e3" stroke="#8796ab"/>'),
        ("backoff", "backoff", '<rect x="9" y="-8" width="12" height="16" rx="2" '
                               'fill="#f8d7a6" stroke="#d9a45b"/>'),
        ("adopted", "adopts a value", '<path d="M15,-6 l6,6 l-6,6 l-6,-6 z" fill="#8e44ad"/>'),
        ("crash", "node crashed", _cross(15, 0, 7, "#d62728", 3.5)),
        ("restart", "restart", '<circle cx="15" cy="0" r="6" fill="#fff" stroke="#2e8b57" '
                               'stroke-width="3"/>'),
        ("learned", "node learned", '<circle cx="15" cy="0" r="4" fill="#2e8b57"/>'),
        ("caught_up", "caught up", '<circle cx="15" cy="0" r="6" fill="#ffffff" '
         'stroke="#16a085" stroke-width="2.5"/>'),
        ("chosen", "value chosen", _star(15, 0, 10, "#f5b800", "#9a7400")),
        ("learns", "told it was chosen", _star(15, 0, 7.5, "#ffffff", "#b08a00")),
        ("gave_up", "gave up", _cross(15, 0, 6, "#555", 3)),
    ]
    items += [(name, sample) for kind, name, sample in marks if kind in kinds]
    out, x, row = ['<g class="legend">'], float(PAD), 0
    for name, sample in items:
        w = 40 + CHAR_W * len(name) + 22
        if x + w > width - PAD and x > PAD:
            x, row = float(PAD), row + 1
        yy = y + row * 24
        out.append(f'<g class="legend-item" data-name={_a(name)} '
                   f'transform="translate({_num(x)},{_num(yy)})">{sample}</g>')
        out.append(_text(x + 38, yy + 4, name, 11.5, "#333", halo=False))
        x += w
    out.append("</g>")
    return out, (row + 1) * 24
