"""The text chart of ``zpaxos trace --format text``: for people working over ssh.

One column per process (proposers left, nodes right), one row per message or mark in
time order, the time since the chart's first event on the left. A message is drawn on
the row it was sent, as a horizontal arrow from sender to receiver, its label written
into the arrow; one never received ends in ``◌`` short of the receiver, its label saying
why (lost, receiver down, not sent, not read). The gap between the proposers and the
nodes widens so that the labels there fit; a label that still does not fit loses its
connecting words first, never its ballots or value. Gaps longer than ``BREAK_S`` get a
row of their own saying how long nothing happened.
"""

from __future__ import annotations

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

BREAK_S = 0.25  # a gap this long between rows gets a row saying so
TIME_W = 10  # the elapsed-time column
PROPOSER_GAP, MIDDLE_GAP, NODE_GAP = 16, 36, 18  # columns between lifelines
MIDDLE_MAX = 48  # the proposers-to-nodes gap widens up to this for labels to fit
MARK_ROOM = 30  # room right of the last lifeline for its marks

BOX = dict(line="│", tee_r="├", tee_l="┤", h="─", nack="┄", head_r="▶", head_l="◀", lost="◌",
           pause="▒", brk="┊", band="═", top="┬", bottom="┴", start="●", stop="■", crash="✕",
           restart="↻", round="◆", adopted="◆", retry="↺", backoff="▒", chosen="★",
           learns="☆", gave_up="⊘", applied="✓", learned="○", caught_up="◎", conflict="!",
           malformed="?", more="…")
ASCII = dict(line="|", tee_r="+", tee_l="+", h="-", nack=".", head_r=">", head_l="<", lost="@",
             pause="#", brk=":", band="=", top="+", bottom="+", start="o", stop="=", crash="X",
             restart="^", round="+", adopted="+", retry="~", backoff="#", chosen="*",
             learns="*", gave_up="/", applied="v", learned="o", caught_up="%", conflict="!",
             malformed="?", more="~")


def render_text(charts: list[Chart], ascii_only: bool = False) -> str:
    """Every chart, one after the other, then one legend."""
    g = ASCII if ascii_only else BOX
    parts = [_TextChart(c, g).render() for c in charts]
    legend = (f"legend: {g['h']}{g['head_r']} message   {g['nack']}{g['head_r']} NACK   "
              f"{g['h']}{g['lost']} never received (the label says why)   "
              f"{g['pause']} pause/backoff   {g['round']} round   {g['retry']} retry\n"
              f"        {g['crash']} node crashed   {g['restart']} restart   "
              f"{g['learned']} node learned   {g['chosen']} decision   "
              f"{g['learns']} told the decision   {g['gave_up']} gave up\n"
              f"        {g['caught_up']} caught up   times: since the chart's first event")
    doc = "\n\n".join(parts) + "\n\n" + legend + "\n"
    if ascii_only:
        doc = doc.replace("·", "-").replace("…", "...").replace("→", "->")
        doc = doc.encode("ascii", "replace").decode("ascii")
    return doc


class _TextChart:
    def __init__(self, chart: Chart, glyphs: dict[str, str]) -> None:
        self.c = chart
        self.g = glyphs
        self.x = self._columns(MIDDLE_GAP)
        wanted = max((len(self._full(m)) + 5 - abs(self.x[m.receiver] - self.x[m.sender])
                      for m in chart.messages
                      if is_proposer(m.sender) != is_proposer(m.receiver)), default=0)
        if wanted > 0:
            self.x = self._columns(min(MIDDLE_GAP + wanted, MIDDLE_MAX))
        self.right = max(self.x.values())  # the last lifeline
        self.width = self.right + MARK_ROOM
        self.boxes = {p: [(m.ts, m.until) for m in chart.marks
                          if m.process == p and m.until is not None] for p in chart.processes}

    def _columns(self, middle: int) -> dict[str, int]:
        return {p: int(x) for p, x in columns(self.c.processes, TIME_W + 2, PROPOSER_GAP,
                                              middle, NODE_GAP).items()}

    @staticmethod
    def _full(m: Message) -> str:
        return label(m) + (f" ({fate_text(m)})" if m.lost else "")

    def _fit_message(self, m: Message, room: int) -> str:
        """The label in ``room``: the fate in full, else short; then the label's own
        connecting words shortened or dropped; a value is cut only as the last resort."""
        parts = label_parts(m)
        if not m.lost:
            return fit_label(parts, room, self.g["more"])
        for fate in (fate_text(m), fate_text(m, short=True)):
            suffix = f" ({fate})"
            text = fit_label(parts, room - len(suffix), self.g["more"])
            if not text.endswith(self.g["more"]):
                return text + suffix
        return fit_label(parts, room - len(suffix), self.g["more"]) + suffix

    # ---- rows

    def _glyph(self, p: str, ts: float, up: str) -> str:
        if self.c.is_down(p, ts):
            return " "
        if any(a <= ts < b for a, b in self.boxes[p]):
            return self.g["pause"]
        return up

    def _row(self, ts: float, time_text: str | None = None, up: str | None = None) -> list[str]:
        buf = [" "] * self.width
        t = elapsed(ts - self.c.start) if time_text is None else time_text
        buf[: TIME_W - 1] = t.rjust(TIME_W - 1)[: TIME_W - 1]
        for p, x in self.x.items():
            buf[x] = self._glyph(p, ts, up or self.g["line"])
        return buf

    @staticmethod
    def _put(buf: list[str], at: int, text: str) -> None:
        for i, ch in enumerate(text):
            if 0 <= at + i < len(buf):
                buf[at + i] = ch

    def _fit(self, text: str, room: int) -> str:
        if room <= 0:
            return ""
        return text if len(text) <= room else text[: room - 1] + self.g["more"]

    def _message(self, m: Message) -> list[str]:
        g = self.g
        buf = self._row(m.sent)
        s, r = self.x[m.sender], self.x[m.receiver]
        if s == r:  # a process talking to itself: nothing to draw an arrow across
            self._put(buf, s + 2, self._fit(f"{self._full(m)} (to itself)", self.width - s - 2))
            return buf
        fill = g["nack"] if m.type == "NACK" else g["h"]
        step = 1 if r > s else -1
        for i in range(s + step, r, step):
            buf[i] = fill
        buf[s] = g["tee_r"] if step > 0 else g["tee_l"]
        if m.lost:
            buf[r - step] = " "
            buf[r - 2 * step] = g["lost"]
        else:
            buf[r - step] = g["head_r"] if step > 0 else g["head_l"]
        room = abs(r - s) - (5 if m.lost else 4)
        text = self._fit_message(m, room)
        self._put(buf, s + 2 if step > 0 else s - 1 - len(text), text)
        return buf

    def _mark(self, m: Mark, decisions: list[Mark]) -> list[str]:
        g = self.g
        buf = self._row(m.ts)
        x = self.x[m.process]
        if any(m is d for d in decisions):
            buf[x] = g["chosen"]
            band_end = max(self.right + 2, x + len(m.text) + 5)
            for i in range(x + 1, min(band_end, self.width)):
                buf[i] = g["band"]
            self._put(buf, x + 2, self._fit(f" {m.text} ", self.width - x - 3))
            return buf
        buf[x] = g["learns"] if m.kind == "chosen" else g.get(m.kind, g["round"])  # not first
        self._put(buf, x + 2, self._fit(m.text, self.width - x - 2))
        return buf

    # ---- the chart

    def render(self) -> str:
        c, g = self.c, self.g
        decisions = c.decisions
        items: list[tuple[float, float, Message | Mark]] = [(m.sent, m.line, m)
                                                            for m in c.messages]
        items += [(m.ts, m.line, m) for m in c.marks]
        items.sort(key=lambda i: (i[0], i[1]))
        rows = self._header()
        top = self._row(c.start, "", g["top"])
        rows.append("".join(top).rstrip())
        prev = c.start
        for ts, _, item in items:
            if ts - prev > BREAK_S:
                rows.append("".join(self._row(prev, "+" + gap(ts - prev), g["brk"])).rstrip())
            prev = max(prev, ts)
            buf = self._message(item) if isinstance(item, Message) else self._mark(item, decisions)
            rows.append("".join(buf).rstrip())
        rows.append("".join(self._row(c.end, "", g["bottom"])).rstrip())
        return "\n".join(rows)

    def _header(self) -> list[str]:
        c = self.c
        nprop = sum(is_proposer(p) for p in c.processes)
        lost = c.never_received()
        decision = c.decision
        title = (f"key {c.key} · {clock(c.start, date=True)} → {clock(c.end)} "
                 f"({elapsed(c.end - c.start)})" + (f" · {c.note}" if c.note else ""))
        summary = (f"{nprop} proposer{'s' if nprop != 1 else ''}, "
                   f"{len(c.processes) - nprop} nodes · {len(c.messages)} messages"
                   f"{f' ({lost})' if lost else ''} · "
                   + (f"chosen: {decision.value}" if decision else "no value chosen"))
        split = c.split
        quorums = []
        if split is not None:
            summary = summary.replace(f"chosen: {decision.value}" if decision else "", "")
            summary += "TWO VALUES CHOSEN: " + " and ".join(str(d.value) for d in c.decisions)
            both = [n for n in split[0].nodes if n in split[1].nodes]
            quorums = [f"quorum {i + 1}: {', '.join(q.nodes)} chose {q.value} at ballot"
                       f" {q.ballot}" for i, q in enumerate(split)]
            quorums.append(f"in both quorums: {', '.join(both)}")
        names = [" "] * self.width
        values = [" "] * self.width
        for p, x in self.x.items():
            self._put(names, x - len(p) // 2, p)
            if p in c.proposed:
                v = self._fit(c.proposed[p], PROPOSER_GAP - 3)
                self._put(values, x - (len(v) + 2) // 2, f"({v})")
        return [title, summary, *quorums, "", "".join(names).rstrip(),
                "".join(values).rstrip()]
