"""Charts from a log, for the ``zpaxos trace`` command and the scenario runner.

The one place that picks a renderer: the command's output format (from ``--format`` or
the ``--out`` file's extension) and the scenario runner's SVG per scenario.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from zpaxos.pictures.chart_svg import render_empty, render_svg
from zpaxos.pictures.chart_text import render_text
from zpaxos.pictures.chartmodel import Chart, select
from zpaxos.pictures.logmodel import LogModel, TraceError, read_log

FORMATS = {".svg": "svg", ".txt": "text", ".html": "html"}  # --out extension -> format


def output_format(out: str | None, fmt: str | None) -> str:
    """The format to write: ``--format`` if given, else from ``--out``'s extension (text
    to a terminal). An extension that names no format is refused, never guessed."""
    ext = Path(out).suffix.lower() if out else ""
    implied = FORMATS.get(ext)
    if fmt is not None:
        if implied is not None and implied != fmt:
            raise TraceError(f"--out {out}: a {ext} file, but --format {fmt}; "
                             f"name it *{_ext(fmt)} or drop --format")
        return fmt
    if out is None:
        return "text"
    if implied is None:
        what = f"'{ext}'" if ext else "no extension"
        raise TraceError(f"--out {out}: cannot tell the chart format from {what}; "
                         f"use a .svg, .html or .txt file name, or --format svg|html|text")
    return implied


def refuse_terminal(out: str | None, fmt: str, stdout: TextIO) -> None:
    """An SVG or HTML chart is tens of kilobytes of markup: on a terminal it is a flood,
    so with no ``--out`` it must go to a pipe or a file (``> run.html`` is fine)."""
    if out is None and fmt in ("svg", "html") and _isatty(stdout):
        ext = _ext(fmt)
        raise TraceError(f"--format {fmt}: not printed on a terminal; add --out chart{ext}"
                         f" (or redirect: > chart{ext})")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


def _ext(fmt: str) -> str:
    return next(e for e, f in FORMATS.items() if f == fmt)


def render(charts: list[Chart], fmt: str, source: str, ascii_only: bool = False,
           model: LogModel | None = None) -> str:
    """``model``: the log the charts came from; the html step-through needs it."""
    if fmt == "html":
        from zpaxos.pictures.chart_html import render_html

        return render_html(charts, source, model)
    if fmt == "svg":
        return render_svg(charts, source)
    return render_text(charts, ascii_only=ascii_only)


def draw_scenario(log_path: Path, name: str, out_dir: Path, since: float) -> str:
    """The scenario runner's chart: every key with events at or after ``since``, stacked
    in ``out_dir/name.svg``. Never raises for a bad or empty log -- a scenario that failed
    early still gets a chart saying so -- and returns "" only if the file cannot be written."""
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
