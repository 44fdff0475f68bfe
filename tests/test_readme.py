"""The README and the docs/ pages are true: their Python runs as shown, their commands
parse, the CLI reference (docs/cli.md) lists exactly the options each command has, and the
list of log events (docs/how-it-works.md, Logs) is complete. tests/test_docs.py checks the
book's shape: the README's length, its map of the pages, every link."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import click
import pytest

from tests.harness import ROOT, env, free_ports
from zpaxos.cli import cli
from zpaxos.lab.launcher import LocalCluster

PAGES = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
         for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
README = PAGES["README.md"]
PAGE_BLOCKS = [(page, lang, code) for page, text in PAGES.items()
               for lang, code in re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)]
BLOCKS = [(lang, code) for _, lang, code in PAGE_BLOCKS]


def page_with(title: str, level: str = "##") -> str:
    """The one page (README.md or docs/*.md) with a heading that is title, or else that
    starts with title ("## Logs" is not "## Logs and rotation")."""
    pages = [text for text in PAGES.values()
             if re.search(rf"^{level} {re.escape(title)}$", text, re.M)]
    if not pages:
        pages = [text for text in PAGES.values()
                 if re.search(rf"^{level} {re.escape(title)}", text, re.M)]
    assert len(pages) == 1, f"{level} {title}: on {len(pages)} pages"
    return pages[0]


def section(title: str, text: str | None = None, level: str = "##") -> str:
    """The text under a heading, up to the next heading of the same or a higher level;
    without text, on whichever page has that heading."""
    if text is None:
        text = page_with(title, level)
    start = text.index(f"{level} {title}")
    body = text[start + len(level) + 1 + len(title):]
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", body, re.M)]
    return body[: ends[0]] if ends else body


# ---------------------------------------------------------------- code blocks


def _metrics_blocks() -> list[str]:
    from tests.test_metrics import metrics_section

    return re.findall(r"^```python\n(.*?)^```", metrics_section(), re.M | re.S)


# The Python blocks of docs/operating.md's Metrics serve on a port: tests/test_metrics.py
# runs them, on a free one. docs/locks.md's run in tests/test_locks_docs.py.
PYTHON = [(page, code) for page, lang, code in PAGE_BLOCKS
          if lang == "python" and code not in _metrics_blocks() and page != "docs/locks.md"]


def test_there_is_python_to_run():
    assert [page for page, _ in PYTHON] == ["docs/cli.md"]
    assert _metrics_blocks()  # and test_metrics.py has its own to run


@pytest.mark.e2e
@pytest.mark.parametrize("page,code", PYTHON, ids=[page for page, _ in PYTHON])
def test_python_blocks_run_as_shown(tmp_path, page, code):
    """On a fresh cluster of the shipped configs/cluster.ini, moved to free ports and run
    from a directory holding it at the same relative path, as a reader's checkout does."""
    text = (ROOT / "configs" / "cluster.ini").read_text()
    for old, new in zip((5001, 5002, 5003), free_ports(3), strict=True):
        text = text.replace(f"port = {old}", f"port = {new}")
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "cluster.ini"
    config.write_text(text)
    with LocalCluster(config, tmp_path, range(3)) as c:
        c.start_all()
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env(),
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert re.fullmatch(r"b'Value_A' True proposed \d+\.[0-9a-f]{4} 1", first), r.stdout
    assert r.stdout.splitlines()[1] == "['x', 'y']"


SHELL_OPERATORS = {">", ">>", "<", "|", "&&", "||", ";", "&"}  # the command ends there


def _zpaxos_lines() -> list[list[str]]:
    lines = []
    for lang, code in BLOCKS:
        if lang != "bash":
            continue
        for line in code.splitlines():
            line = line.split(" # ")[0].strip()
            if line.startswith("zpaxos "):
                args = shlex.split(line)[1:]
                ends = [i for i, a in enumerate(args) if a in SHELL_OPERATORS]
                lines.append(args[: ends[0]] if ends else args)
    return lines


def test_the_readme_shows_zpaxos_commands():
    assert {args[0] for args in _zpaxos_lines()} >= {"node", "propose", "status", "trace",
                                                      "log", "sim", "set", "cas", "keygen",
                                                      "export", "import"}


@pytest.mark.parametrize("args", _zpaxos_lines(), ids=" ".join)
def test_every_zpaxos_command_in_a_bash_block_parses(args):
    command = cli.commands[args[0]]
    command.make_context(f"zpaxos {args[0]}", args[1:])  # raises on an unknown option


def test_quick_start_scripts_exist():
    quick = section("Quick start", README)
    for script in re.findall(r"^(\S+\.sh)\b", quick, re.M):
        path = ROOT / script
        assert path.is_file() and path.stat().st_mode & 0o111, script


# ---------------------------------------------------------------- CLI reference


def documented_options(command: str) -> set[str]:
    """The options in the `| option | meaning |` tables of the command's section."""
    body = section(f"`zpaxos {command}", section("CLI reference"), "###")
    options: set[str] = set()
    in_table = False
    for line in body.splitlines():
        if line.strip() == "| option | meaning |":
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
        if in_table and not line.startswith("|---"):
            first = line.split(" | ")[0]
            for span in re.findall(r"`([^`]+)`", first):
                token = span.split()[0]
                if token.startswith("-"):
                    options.add(token)
    return options


def real_options(command: click.Command) -> set[str]:
    return {opt for p in command.params if isinstance(p, click.Option)
            for opt in (*p.opts, *p.secondary_opts)}


def test_every_command_has_a_reference_section():
    documented = re.findall(r"^### `zpaxos (\w+)", section("CLI reference"), re.M)
    assert sorted(documented) == sorted(cli.commands)


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_reference_lists_exactly_the_options_of_help(name):
    command = cli.commands[name]
    assert documented_options(name) == real_options(command)
    helptext = command.get_help(click.Context(command, info_name=f"zpaxos {name}"))
    for opt in real_options(command):  # and --help shows them all
        assert re.search(rf"(^|[ ,]){re.escape(opt)}\b", helptext, re.M), opt


def test_the_option_check_can_fail():
    """A documented option that does not exist, or a real one left out, is caught."""
    assert "--bogus" not in real_options(cli.commands["bench"])
    assert {"--contended-keys", "--value-size", "--cli-runs"} <= documented_options("bench")


# ---------------------------------------------------------------- log events


def logged_events() -> set[str]:
    """Every event the code can log: the runtime's ``log.event("name", ...)`` calls, and
    the typed events of the core and hosts (zpaxos/protocol/events.py)."""
    from zpaxos.protocol import events

    names = set()
    for path in (ROOT / "zpaxos").rglob("*.py"):
        names |= set(re.findall(r"\.event\(\s*\"([a-z_]+)\"", path.read_text()))
    typed = [c for c in vars(events).values()
             if isinstance(c, type) and issubclass(c, events.Event) and c is not events.Event]
    return names | {c.name for c in typed}


def test_the_log_event_list_is_complete():
    paragraph = section("Logs", PAGES["docs/how-it-works.md"]).strip().split("\n\n")[0]
    documented = {w for w in re.findall(r"`([^`]+)`", paragraph) if re.fullmatch(r"[a-z_]+", w)}
    found = logged_events()
    assert {"value_file", "chosen", "send"} <= found  # the scan finds events at all
    assert documented == found
