"""Lessons: break one rule, find the shortest run where that chooses two values, draw it.

``break_rule`` searches seeds (shrink.search), shrinks the failing schedule (shrink.shrink),
replays the shrunk tape once more writing the JSON log, and checks the other side: the
same seed with the rule intact is safe, and so is the shrunk schedule itself replayed
with the rule intact (what ``--compare`` draws). ``draw`` renders a run's log with the
chart renderers of ``zpaxos trace``; ``write_lessons`` does every rule into a folder.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from zpaxos.pictures.chartmodel import Chart, select
from zpaxos.pictures.logmodel import read_log
from zpaxos.sim.rules import RULES, Rule, Split, explain, find_split
from zpaxos.sim.schedules import scenario
from zpaxos.sim.shrink import Shrunk, run, search, shrink
from zpaxos.sim.simulator import InvariantViolation, Scenario
from zpaxos.sim.tape import TapedSimulation, summary


class NotFound(Exception):
    """No seed in the budget broke the rule."""


@dataclass
class Lesson:
    rule: Rule
    seed: int
    seeds_searched: int
    scenario: Scenario
    shrunk: Shrunk
    broken: TapedSimulation  # the shrunk run, logged
    split: Split
    paragraph: str
    intact_safe: str  # "" when the seed with the rule intact kept every invariant
    intact: TapedSimulation  # the shrunk schedule replayed with the rule intact
    seconds: float


def break_rule(name: str, start: int = 0, limit: int = 100_000, nodes: int = 3,
               proposers: int = 2, faults: frozenset[str] = frozenset(),
               deadline_s: float = 50.0) -> Lesson:
    t0 = time.monotonic()
    rule = RULES[name]
    faults = faults | rule.faults
    found = search(rule.variant, start, limit, nodes, proposers, faults, deadline_s)
    if found is None:
        raise NotFound(f"no schedule from seed {start} on chose two values with {name}"
                       f" broken (searched up to {limit} seeds / {deadline_s:g} s)")
    shrunk = shrink(found.scenario, rule.variant, found.sim.recording)
    broken = run(found.scenario, rule.variant, shrunk.tape, log=True)
    split = find_split(broken)
    if split is None:  # the shrunk tape is a run that splits; replays are deterministic
        raise AssertionError("the shrunk schedule no longer splits")
    intact_safe = ""
    try:
        TapedSimulation(found.scenario, one_process_each=True).run()
    except InvariantViolation as e:
        intact_safe = e.what
    # The same (shrunk) schedule with the rule kept; messages it did not have arrive
    # after the slowest delay, so the run can finish.
    intact = TapedSimulation(found.scenario, tape=shrunk.tape, log=True, strict=False,
                             one_process_each=True,
                             unknown_delay_s=found.scenario.max_delay_s)
    intact.run()
    return Lesson(rule, found.seed, found.seeds_searched, found.scenario, shrunk, broken,
                  split, explain(rule, broken, split), intact_safe, intact,
                  time.monotonic() - t0)


# ---------------------------------------------------------------- pictures


def charts_of(log_path: Path, delivered_only: bool = False) -> list[Chart]:
    """The charts of a simulated run's log, as ``zpaxos trace`` would draw them;
    ``delivered_only`` leaves out the messages a shrunk schedule loses (the lessons)."""
    model = read_log(log_path)
    if delivered_only:
        lost = [m for m in model.messages if m.lost]
        model.messages = [m for m in model.messages if not m.lost]
        charts = select(model)
        for c in charts:
            c.note = (f"{len(lost)} message{'s' if len(lost) != 1 else ''} the shrunk schedule"
                      f" loses not drawn") if lost else c.note
        return charts
    return select(model)


def render(charts: list[Chart], fmt: str, source: str, model_path: Path | None = None,
           title: str = "", text: str = "") -> str:
    from zpaxos.pictures.draw import render as render_chart

    if fmt == "html":
        from zpaxos.pictures.chart_html import render_html

        return render_html(charts, source, read_log(model_path) if model_path else None,
                           title=title, intro=text)
    return render_chart(charts, fmt, source)


def side_by_side(left: str, right: str, captions: tuple[str, str]) -> str:
    """Two SVG documents next to each other in one, each under a caption."""
    def size(doc: str) -> tuple[float, float]:
        m = re.search(r'width="([\d.]+)" height="([\d.]+)"', doc)
        assert m is not None
        return float(m.group(1)), float(m.group(2))

    (w1, h1), (w2, h2) = size(left), size(right)
    gap, top = 30.0, 44.0
    width, height = w1 + gap + w2, top + max(h1, h2)

    def nested(doc: str, x: float) -> str:
        return doc.replace('<svg xmlns="http://www.w3.org/2000/svg" ',
                           f'<svg x="{x:g}" y="{top:g}" ', 1)

    from xml.sax.saxutils import escape
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}" '
        f'viewBox="0 0 {width:g} {height:g}" font-family="system-ui, sans-serif">',
        f"<title>{escape(captions[0])} | {escape(captions[1])}</title>",
        f'<rect width="{width:g}" height="{height:g}" fill="#ffffff"/>',
        f'<text x="24" y="30" font-size="20" font-weight="bold" fill="#7a1f00">'
        f"{escape(captions[0])}</text>",
        f'<text x="{w1 + gap + 24:g}" y="30" font-size="20" font-weight="bold" fill="#17692e">'
        f"{escape(captions[1])}</text>",
        nested(left, 0), nested(right, w1 + gap), "</svg>"]) + "\n"


def draw_lesson(lesson: Lesson, out: Path, fmt: str, compare: bool = False) -> list[Path]:
    """Write the lesson's log (``out`` with .log) and its chart; returns the files."""
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".log")
    log.write_text(lesson.broken.log_text(), encoding="utf-8")
    written = [log]
    charts = charts_of(log, delivered_only=True)
    title = f"zpaxos sim --break {lesson.rule.name} (seed {lesson.seed})"
    doc = render(charts, fmt, str(log), log, title, lesson.paragraph)
    if compare:
        intact_log = out.with_name(out.stem + "-intact.log")
        intact_log.write_text(lesson.intact.log_text(), encoding="utf-8")
        written.append(intact_log)
        right = render(charts_of(intact_log), fmt, str(intact_log), intact_log)
        if fmt == "svg":
            doc = side_by_side(doc, right, (f"{lesson.rule.name} broken: two values chosen",
                                            "rule kept, same proposers and timing: one value"))
        elif fmt == "text":
            doc = (f"=== {lesson.rule.name} broken ===\n\n{doc}\n"
                   f"=== rule kept, same proposers and timing ===\n\n{right}")
    out.write_text(doc, encoding="utf-8")
    written.append(out)
    return written


def report(lesson: Lesson) -> str:
    """What the command prints: the search, the shrink, the check, the paragraph."""
    s = lesson.shrunk
    size = lesson.shrunk.after
    safe = ("safe: every invariant held" if not lesson.intact_safe
            else f"NOT SAFE: {lesson.intact_safe}")
    intact_chosen = sorted({d.value.decode() for d in lesson.intact.decisions})
    return (f"rule {lesson.rule.name}: seed {lesson.seed} chose two values after searching"
            f" {lesson.seeds_searched} seed{'s' if lesson.seeds_searched != 1 else ''}\n"
            f"shrunk from {s.before['delivered']} delivered messages and"
            f" {s.before['crashes']} crashes to {size['delivered']} and {size['crashes']}"
            f" ({s.replays} replays, {lesson.seconds:.1f} s)\n"
            f"the same seed with the rule intact: {safe}; the shrunk schedule with the rule"
            f" intact decides {' and '.join(intact_chosen) or 'nothing'}\n\n"
            f"{lesson.paragraph}\n")


def write_lessons(out_dir: Path, names: list[str] | None = None) -> list[tuple[Lesson, list[Path]]]:
    """Every breakable rule (or ``names``) as a lesson in ``out_dir``: NAME.svg (broken and
    kept side by side), NAME.html (step through), NAME.txt (the text alternative) and
    the logs; plus README.md with each paragraph."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    lines = ["# Lessons: what breaks when a Paxos rule is dropped", "",
             "Made by `zpaxos sim --lessons`; each schedule is the shrunk run that chose two"
             " values.", ""]
    for name in names or list(RULES):
        lesson = break_rule(name)
        files = draw_lesson(lesson, out_dir / f"{name}.svg", "svg", compare=True)
        files += draw_lesson(lesson, out_dir / f"{name}.html", "html")[1:]
        files += draw_lesson(lesson, out_dir / f"{name}.txt", "text")[1:]
        done.append((lesson, files))
        size = lesson.shrunk.after
        lines += [f"## {name}", "", f"Kept: {lesson.rule.rule}. Broken: {lesson.rule.broken}.",
                  "", f"Seed {lesson.seed} (after {lesson.seeds_searched} searched), shrunk to"
                  f" {size['delivered']} delivered messages and {size['crashes']} crashes:"
                  f" [{name}.svg]({name}.svg), step through [{name}.html]({name}.html), text"
                  f" [{name}.txt]({name}.txt).", "", lesson.paragraph, ""]
    (out_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")
    return done


__all__ = ["Lesson", "NotFound", "break_rule", "charts_of", "draw_lesson", "report",
           "scenario", "side_by_side", "summary", "write_lessons"]
