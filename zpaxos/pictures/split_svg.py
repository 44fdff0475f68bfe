"""What an SVG chart adds when a run chose two values: the two quorums and their overlap.

Any two majorities of the nodes share a node, and Paxos is safe because that node
carries the first value into every later ballot. When a broken rule lets two values be
chosen (``zpaxos sim --break``), the chart shows where that failed: each quorum's votes
(its ACCEPTED arrows) under a highlighter of its own colour and pattern -- orange and
solid for the first, blue and dashed for the second (Okabe-Ito colours, told apart by
pattern and by words too, not by hue alone) -- and the nodes in both quorums outlined in
both, with a line of text above the lifelines saying the same.

It reads the layout of chart_svg's ``_SvgChart`` (``c``, ``x``, ``y_send``, ``y_recv``,
``heads_y``); it does not import chart_svg, which imports it.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

SPLIT_H = 46  # room above the lifelines for the quorums' line of text
# (highlighter colour, dash pattern, name) of the first and second quorum
QUORUM_STYLE = (("#E69F00", "", "solid orange"), ("#56B4E9", "9 5", "dashed blue"))
HEAD_W, HEAD_H = 150, 40


def _t(x: float, y: float, s: str, size: float = 12.5, fill: str = "#222",
       weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" '
            f'font-weight="{weight}">{escape(s)}</text>')


def heading(lay: Any) -> list[str]:
    """Two lines above the lifelines naming the quorums and the node(s) in both."""
    split = lay.c.split
    if split is None:
        return []
    q1, q2 = split
    both = [n for n in q1.nodes if n in q2.nodes]
    y = lay.heads_y - SPLIT_H + 14
    out = ['<g class="split-heading">']
    for i, q in enumerate((q1, q2)):
        colour, dash, name = QUORUM_STYLE[i]
        yy = y + i * 17
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="24" y1="{yy - 4:.1f}" x2="58" y2="{yy - 4:.1f}" '
                   f'stroke="{colour}" stroke-width="8" stroke-opacity="0.75"{dash_attr}/>')
        out.append(_t(66, yy, f"quorum {i + 1} ({name}): {', '.join(q.nodes)} chose {q.value}"
                      f" at ballot {q.ballot}", 12.5, "#222", "bold" if i == 0 else "normal"))
    out.append(_t(66 + 470, y + 8, f"in both: {', '.join(both)} -- the node that should have"
                  f" carried {q1.value} into ballot {q2.ballot}", 12.5, "#7a1f00", "bold"))
    out.append("</g>")
    return out


def highlights(lay: Any) -> list[str]:
    """A translucent highlighter under each quorum's votes (its nodes' ACCEPTEDs)."""
    split = lay.c.split
    if split is None:
        return []
    out = []
    index = {id(m): i for i, m in enumerate(lay.c.messages)}  # data-msg, as the arrows'
    for i, q in enumerate(split):
        colour, dash, _ = QUORUM_STYLE[i]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        for m in q.messages:
            if id(m) not in lay.y_send:
                continue
            x0, y0 = lay.x[m.sender], lay.y_send[id(m)]
            x1 = lay.x[m.receiver]
            y1 = lay.y_recv.get(id(m), y0 + 18)
            out.append(f'<g data-msg="{index.get(id(m), -1)}">'
                       f'<line class="quorum-vote quorum-{i + 1}" x1="{x0:.1f}" y1="{y0:.1f}" '
                       f'x2="{x1:.1f}" y2="{y1:.1f}" stroke="{colour}" stroke-width="10" '
                       f'stroke-opacity="0.55" stroke-linecap="round"{dash_attr}/></g>')
    return out


def heads(lay: Any) -> list[str]:
    """Each node of a quorum outlined in its colour; a node in both gets both outlines."""
    split = lay.c.split
    if split is None:
        return []
    out = []
    for i, q in enumerate(split):
        colour, dash, _ = QUORUM_STYLE[i]
        pad = 4 + 5 * i
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        for n in q.nodes:
            x = lay.x[n]
            out.append(f'<rect class="quorum-head quorum-{i + 1}" data-process="{escape(n)}" '
                       f'x="{x - HEAD_W / 2 - pad:.1f}" y="{lay.heads_y - pad:.1f}" '
                       f'width="{HEAD_W + 2 * pad:.1f}" height="{HEAD_H + 2 * pad:.1f}" rx="8" '
                       f'fill="none" stroke="{colour}" stroke-width="4"{dash_attr}/>')
    return out
