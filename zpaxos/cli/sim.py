"""``zpaxos sim``: the deterministic simulator as a command (wiring only; zpaxos/sim/ does
the work). Registered on the ``zpaxos`` group by cli.py; kept apart so cli.py stays small.

    zpaxos sim                          1000 seeded schedules, every invariant checked
    zpaxos sim --seed 7 --out run.svg   one schedule, drawn (its log beside it: run.log)
    zpaxos sim --break lab-ballots      find, shrink and draw two values being chosen
    zpaxos sim --break lab-ballots --compare --out lab.svg    broken and kept side by side
    zpaxos sim --break one-step-reconfig --compare    a membership change in one step
    zpaxos sim --lessons                every breakable rule into out/lessons/
    zpaxos sim --rules                  the breakable rules
    zpaxos sim --lock                   200 seeded lock runs: one holder at a time, tokens grow
    zpaxos sim --break lock-token-reused    the first lock run a broken lock rule fails

Errors are one line (zpaxos.cli.app.main prints them so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from zpaxos.cli.common import Failure

DEFAULT_SEEDS = 1000
LOCK_SEEDS = 200


def _faults(ctx: click.Context, param: click.Parameter, text: str) -> frozenset[str]:
    from zpaxos.sim.schedules import fault_set

    try:
        return fault_set(text)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _rule(ctx: click.Context, param: click.Parameter, name: str | None) -> str | None:
    from zpaxos.sim.memberlesson import MEMBER_RULES
    from zpaxos.sim.mutants import LOCK_MUTANTS
    from zpaxos.sim.rules import RULES

    known = [*RULES, *MEMBER_RULES, *LOCK_MUTANTS]
    if name is not None and name not in known:
        raise click.BadParameter(f"{name!r} is not a breakable rule (choose from"
                                 f" {', '.join(known)}; see --rules)")
    return name


@click.command()
@click.option("--seeds", type=click.IntRange(min=1), default=DEFAULT_SEEDS, show_default=True,
              help="How many schedules to run.")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True,
              help="The first seed.")
@click.option("--nodes", type=click.IntRange(1, 15), default=3, show_default=True,
              help="Cluster size.")
@click.option("--proposers", type=click.IntRange(1, 8), default=2, show_default=True,
              help="Proposals contending for one key, each a process of its own.")
@click.option("--faults", default="loss,dup,reorder,crash", show_default=True,
              callback=_faults, help="Any of loss, dup, reorder, crash (or all, none).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Run this one schedule (with --break: start the search here).")
@click.option("--break", "rule", default=None, callback=_rule, metavar="RULE",
              help="Break this rule, search seeds until two values are chosen, shrink the"
                   " schedule and draw it (see --rules; a membership rule runs its own"
                   " schedules: --nodes, --proposers and --faults do not apply).")
@click.option("--compare", is_flag=True,
              help="With --break: draw the same schedule with the rule kept beside it.")
@click.option("--max-seeds", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="With --break: give up after this many seeds.")
@click.option("--lessons", is_flag=True, help="Render every breakable rule into --out-dir.")
@click.option("--out-dir", default="out/lessons", show_default=True, metavar="DIR",
              help="Where --lessons writes.")
@click.option("--rules", "list_rules", is_flag=True, help="List the breakable rules.")
@click.option("--lock", is_flag=True,
              help="Run the lock simulator (leases, fencing tokens; zpaxos/sim/locksim.py):"
                   f" --seeds runs (default {LOCK_SEEDS}), or one --seed.")
@click.option("--out", default=None, metavar="FILE",
              help="Write the chart to FILE (.svg, .html or .txt), the log beside it (.log).")
@click.option("--format", "fmt", type=click.Choice(["svg", "html", "text"]), default=None,
              help="Chart format (default: from --out's extension; text to the terminal).")
def sim(seeds: int, start: int, nodes: int, proposers: int, faults: frozenset[str],
        seed: int | None, rule: str | None, compare: bool, max_seeds: int, lessons: bool,
        out_dir: str, list_rules: bool, lock: bool, out: str | None, fmt: str | None) -> None:
    """Run the deterministic simulator on the real acceptor and proposer code.

    Each schedule is seeded: the same seed is the same run, message for message.
    Safety invariants (from the TLA+ spec of Paxos) are checked after every step.
    """
    if lock or (rule is not None and rule.startswith("lock-")):
        _lock(seeds if seeds != DEFAULT_SEEDS else LOCK_SEEDS, start, seed, rule, max_seeds)
    elif list_rules:
        _print_rules()
    elif lessons:
        _lessons(Path(out_dir))
    elif rule is not None:
        from zpaxos.sim.memberlesson import MEMBER_RULES

        if rule in MEMBER_RULES:
            _break_member(rule, seed or 0, max_seeds, compare, out, fmt)
        else:
            _break(rule, seed or 0, max_seeds, nodes, proposers, faults, compare, out, fmt)
    elif seed is not None:
        _one(seed, nodes, proposers, faults, out, fmt)
    else:
        if out is not None or compare:
            raise click.UsageError("--out and --compare need --seed or --break")
        _many(seeds, start, nodes, proposers, faults)


def _format(out: str | None, fmt: str | None) -> str:
    import sys

    from zpaxos.pictures.draw import output_format, refuse_terminal
    from zpaxos.pictures.logmodel import TraceError

    try:
        chosen = output_format(out, fmt)
        refuse_terminal(out, chosen, sys.stdout)
        return chosen
    except TraceError as e:
        raise click.UsageError(str(e)) from None


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise Failure(f"cannot write {path}: {e.strerror}") from None


def _print_rules() -> None:
    from zpaxos.sim.memberlesson import MEMBER_RULES
    from zpaxos.sim.mutants import LOCK_MUTANTS
    from zpaxos.sim.rules import RULES

    for r in RULES.values():
        click.echo(f"{r.name}\n    kept:   {r.rule}\n    broken: {r.broken}"
                   + (f"\n    needs:  {', '.join(sorted(r.faults))}" if r.faults else ""))
    for m in MEMBER_RULES.values():
        click.echo(f"{m.name} (membership)\n    kept:   {m.rule}\n    broken: {m.broken}")
    for name, lm in LOCK_MUTANTS.items():  # the lock simulator's (zpaxos sim --lock)
        doc = (lm.variant["rules_cls"].__doc__ or "").split(".")[0]
        click.echo(f"{name}\n    broken: {' '.join(doc.split())}")


def _many(seeds: int, start: int, nodes: int, proposers: int, faults: frozenset[str]) -> None:
    from zpaxos.sim.report import check_many

    report, failed = check_many(range(start, start + seeds), nodes, proposers, faults)
    click.echo(report)
    if failed:
        raise Failure(f"{failed} schedule{'s' if failed != 1 else ''} broke an"
                                   f" invariant")


def _one(seed: int, nodes: int, proposers: int, faults: frozenset[str], out: str | None,
         fmt: str | None) -> None:
    from zpaxos.sim.lesson import charts_of, render
    from zpaxos.sim.report import run_one

    fmt = _format(out, fmt)
    text, log_text, ok = run_one(seed, nodes, proposers, faults)
    click.echo(text, err=out is None and fmt != "text")  # stdout: the chart
    with _log_dir(out) as log:
        _write(log, log_text)
        doc = render(charts_of(log), fmt, str(log), log, f"zpaxos sim --seed {seed}")
        _emit(doc, out, fmt, log)
    if not ok:
        raise Failure(f"seed {seed} broke an invariant")


def _log_dir(out: str | None) -> Any:
    """Where the run's log goes: beside --out (kept), else a temporary directory."""
    import contextlib
    import tempfile

    if out is not None:
        return contextlib.nullcontext(Path(out).with_suffix(".log"))

    @contextlib.contextmanager
    def temporary() -> Iterator[Path]:
        with tempfile.TemporaryDirectory() as d:
            yield Path(d) / "sim.log"

    return temporary()


def _emit(doc: str, out: str | None, fmt: str, log: Path | None) -> None:
    if out is None:
        click.echo(doc, nl=not doc.endswith("\n"))
        return
    _write(Path(out), doc)
    click.echo(f"wrote {fmt} chart to {out}" + (f" (the run's log: {log})" if log else ""))


def _break(rule: str, start: int, limit: int, nodes: int, proposers: int,
           faults: frozenset[str], compare: bool, out: str | None, fmt: str | None) -> None:
    from zpaxos.sim.lesson import NotFound, break_rule, draw_lesson, report

    fmt = _format(out, fmt)
    _no_html_compare(compare, fmt)
    # The faults a rule needs come with it; the default mix is for --seeds runs.
    try:
        lesson = break_rule(rule, start, limit, nodes, proposers, _lesson_faults(faults))
    except NotFound as e:
        raise Failure(str(e)) from None
    _show_lesson(report(lesson), lambda path: draw_lesson(lesson, path, fmt, compare), out, fmt)


def _break_member(rule: str, start: int, limit: int, compare: bool, out: str | None,
                  fmt: str | None) -> None:
    """A membership rule (zpaxos/sim/memberlesson.py): the same output as _break's."""
    from zpaxos.sim.memberlesson import NotFound, break_membership, draw_member_lesson, report

    fmt = _format(out, fmt)
    _no_html_compare(compare, fmt)
    try:
        lesson = break_membership(rule, start, limit)
    except NotFound as e:
        raise Failure(str(e)) from None
    _show_lesson(report(lesson), lambda path: draw_member_lesson(lesson, path, fmt, compare),
                 out, fmt)


def _no_html_compare(compare: bool, fmt: str) -> None:
    if compare and fmt == "html":
        raise click.UsageError("--compare draws svg or text; the html page shows one run")


def _show_lesson(text: str, draw: Callable[[Path], list[Path]], out: str | None,
                 fmt: str) -> None:
    """A lesson's report, then its drawing: into ``out``, or (none given) to the terminal."""
    click.echo(text, err=out is None and fmt != "text")
    if out is not None:
        try:
            files = draw(Path(out))
        except OSError as e:
            raise Failure(f"cannot write {out}: {e.strerror}") from None
        click.echo(f"wrote {', '.join(str(f) for f in files)}")
        return
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        files = draw(Path(d) / f"lesson.{'txt' if fmt == 'text' else fmt}")
        _emit(files[-1].read_text(encoding="utf-8"), None, fmt, None)


def _lock(seeds: int, start: int, seed: int | None, rule: str | None, limit: int) -> None:
    """Lock runs (the rules kept, or ``rule`` broken): a broken rule searches seeds until
    an invariant trips; kept, every run must pass."""
    from dataclasses import replace

    from zpaxos.sim import locksim
    from zpaxos.sim.mutants import LOCK_MUTANTS

    sc = locksim.LockScenario()
    if rule is not None:
        sc = replace(sc, **LOCK_MUTANTS[rule].variant)
    first = seed if seed is not None else start
    count = 1 if seed is not None else (limit if rule is not None else seeds)
    broken = f" --break {rule}" if rule is not None else ""
    for s in range(first, first + count):
        r = locksim.run(s, sc)
        if seed is not None or r.violations:
            click.echo(locksim.summary(r))
        if r.violations:
            click.echo("\n".join(f"  {v}" for v in r.violations[:3]))
            click.echo(f"replay: zpaxos sim --lock --seed {s}{broken}")
            if rule is None:
                raise Failure(f"seed {s} broke an invariant of the lock")
            return
    if rule is not None:
        raise Failure(f"no lock run from seed {first} on caught {rule} in {count} seeds")
    click.echo(f"{count} lock run{'s' if count != 1 else ''}: at most one holder at a time,"
               " tokens grew, no stale write accepted")


def _lesson_faults(faults: frozenset[str]) -> frozenset[str]:
    """--break searches without faults unless asked (the default mix is the soak's):
    the shortest story is the clearest, and a rule that needs crashes brings them."""
    from zpaxos.sim.schedules import FAULTS

    return frozenset() if faults == frozenset(FAULTS) else faults


def _lessons(out_dir: Path) -> None:
    from zpaxos.sim.lesson import write_lessons
    from zpaxos.sim.memberlesson import write_member_lessons

    try:
        done = write_lessons(out_dir)
        members = write_member_lessons(out_dir)
    except OSError as e:
        raise Failure(f"cannot write in {out_dir}: {e.strerror}") from None
    for lesson, files in done:
        size = lesson.shrunk.after
        click.echo(f"{lesson.rule.name}: seed {lesson.seed} ({lesson.seeds_searched} searched),"
                   f" shrunk to {size['delivered']} messages and {size['crashes']} crashes"
                   f" -> {files[-3]}")
    for m, files in members:
        click.echo(f"{m.rule.name}: seed {m.seed} ({m.seeds_searched} searched), shrunk to"
                   f" {len(m.scenario.ops)} client operations -> {files[-3]}")
    click.echo(f"wrote {out_dir / 'README.md'}")
