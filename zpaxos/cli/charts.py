"""``zpaxos trace`` and ``zpaxos log``: a run's JSON log drawn as a message sequence
chart, or printed as text lines. Wiring only: zpaxos/pictures/ reads and draws."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from zpaxos.cli.common import Failure
from zpaxos.cli.options import key_param
from zpaxos.runtime.exits import Exit

# ---------------------------------------------------------------- trace


@click.command()
@click.argument("logfile", metavar="LOGFILE")
@click.option("--key", default=None, callback=key_param, help="Chart only this key.")
@click.option("--since", default=None, metavar="TIME",
              help="Only events at or after TIME (epoch seconds, ISO date-time, or HH:MM:SS).")
@click.option("--out", default=None, metavar="FILE",
              help="Write the chart to FILE (.svg, .html or .txt) instead of the terminal.")
@click.option("--format", "fmt", type=click.Choice(["svg", "html", "text"]), default=None,
              help="svg, html (a page to step through the run) or text (default: from"
                   " --out's extension; text to the terminal).")
def trace(logfile: str, key: str | None, since: str | None, out: str | None,
          fmt: str | None) -> None:
    """Draw a message sequence chart of a run from its JSON log."""

    from zpaxos.pictures.chartmodel import clock, parse_since, select
    from zpaxos.pictures.draw import output_format, refuse_terminal, render
    from zpaxos.pictures.logmodel import TraceError, read_log

    try:
        fmt = output_format(out, fmt)
        refuse_terminal(out, fmt, sys.stdout)
        since_ts = parse_since(since) if since is not None else None
        model = read_log(logfile)
        if model.skipped:
            hint = (f"; {model.text_lines} look like text-format lines"
                    if model.text_lines else "")
            click.echo(f"zpaxos trace: skipped {model.skipped} line"
                       f"{'s' if model.skipped != 1 else ''} that are not zpaxos events "
                       f"(first: line {model.first_skipped}){hint}", err=True)
        charts = select(model, key, since_ts)
    except TraceError as e:
        raise Failure(str(e), Exit.USAGE) from None
    for c in charts:
        if c.note:
            click.echo(f"zpaxos trace: key {c.key}: the {c.note}, from {clock(c.start)}; "
                       f"use --since to pick another", err=True)
    ascii_only = out is None and not _can_draw_boxes(sys.stdout)
    doc = render(charts, fmt, logfile, ascii_only=ascii_only, model=model)
    if out is None:
        click.echo(doc, nl=not doc.endswith("\n"))
        return
    try:
        Path(out).write_text(doc, encoding="utf-8")
    except OSError as e:
        raise Failure(f"cannot write {out}: {e.strerror}", Exit.USAGE) from None
    keys = ", ".join(c.key for c in charts[:5])
    if len(charts) > 5:
        keys = f"{len(charts)} keys ({keys}, ...)"
    click.echo(f"wrote {fmt} chart{'s' if len(charts) > 1 else ''} of {keys} to {out}")


def _can_draw_boxes(stream: Any) -> bool:
    """Whether the terminal's encoding has the text chart's box-drawing characters."""
    try:
        "─▶◀│★◌".encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


# ---------------------------------------------------------------- log


@click.command("log")
@click.argument("logfile", metavar="LOGFILE")
@click.option("--key", default=None, callback=key_param, help="Show only events of this key.")
def log_(logfile: str, key: str | None) -> None:
    """Print a JSON log as readable text lines.

    LOGFILE is what nodes and proposers write (paxos.log); the lines are the ones they
    show on stderr. Values are escaped, so each event stays on one line.
    """
    import json

    from zpaxos.printable import printable
    from zpaxos.runtime.log import _TextFormatter

    try:
        f = open(logfile, encoding="utf-8", errors="backslashreplace")
    except OSError as e:
        raise Failure(f"{logfile}: cannot read ({e.strerror})", Exit.USAGE) from None
    with f:
        for raw in f:
            raw = raw.rstrip("\n")
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):  # a text line, or one cut short by a kill -9
                if key is None and raw:
                    click.echo(printable(raw))
                continue
            if key is not None and obj.get("key") != key:
                continue
            click.echo(_TextFormatter.from_json(obj))



COMMANDS = (trace, log_)
