"""The book's shape: README.md is the front door (at most 300 lines, a map linking every
page of docs/), every relative link in it and in docs/*.md reaches a file and a heading
that exist, and the commands the pages mention in passing name real options, scripts and
modules. (tests/test_readme.py runs the pages' code blocks and checks the references.)"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import click
import pytest

from tests.harness import ROOT
from tests.test_readme import PAGES, real_options
from zpaxos.cli import cli

README_MAX_LINES = 300
DOCS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated one gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose(text).splitlines():
        m = re.match(r"^#{1,6} (.*)", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(text: str) -> list[str]:
    """The targets of the markdown links and images outside code."""
    text = re.sub(r"`[^`\n]*`", "", prose(text))
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_the_readme_is_a_front_door():
    lines = PAGES["README.md"].count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines"


def test_the_readme_links_every_page():
    linked = {target.split("#")[0] for target in links(PAGES["README.md"])}
    assert len(DOCS) >= 10
    assert [page for page in DOCS if page not in linked] == []


RELATIVE = [(page, target) for page, text in PAGES.items() for target in links(text)
            if not re.match(r"[a-z]+:", target)]


def test_the_link_check_sees_links():
    assert len(RELATIVE) > 50
    assert ("docs/operating.md", "#rejoining-empty---new") in RELATIVE
    assert slug("Rejoining empty (`--new`)") == "rejoining-empty---new"
    assert slug("Beside PySyncObj: `bench/compare.py`") == "beside-pysyncobj-benchcomparepy"


@pytest.mark.parametrize("page,target", RELATIVE, ids=[f"{p} {t}" for p, t in RELATIVE])
def test_every_relative_link_reaches_a_file_and_a_heading(page, target):
    path, _, anchor = target.partition("#")
    here = (ROOT / page).parent
    file = (here / path).resolve() if path else ROOT / page
    assert file.exists(), f"{page}: {target}: no such file"
    assert ROOT in file.parents, f"{page}: {target}: outside the repository"
    if anchor:
        assert file.suffix == ".md", f"{page}: {target}: an anchor in a file that is no page"
        assert anchor in anchors(file.read_text(encoding="utf-8")), \
            f"{page}: {target}: no such heading in {file.relative_to(ROOT)}"


# ---------------------------------------------------------------- commands in passing


def spans() -> list[tuple[str, str]]:
    """Inline code, and each line of the shell blocks, of every page."""
    out = []
    for page, text in PAGES.items():
        out += [(page, s) for s in re.findall(r"`([^`\n]+)`", prose(text))]
        for lang, code in re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
            if lang in ("bash", "sh", ""):
                out += [(page, line.split(" # ")[0].strip()) for line in code.splitlines()]
    return out


def zpaxos_options() -> list[tuple[str, str, str]]:
    """(page, command, option) for each option in a `zpaxos COMMAND ...` the pages show."""
    out = []
    for page, span in spans():
        if not span.startswith("zpaxos "):
            continue
        try:
            args = shlex.split(span)[1:]
        except ValueError:
            continue
        if args and args[0] in cli.commands:  # ("zpaxos node: error: ..." is output)
            if "--" in args:  # what follows is a command's (zpaxos lock NAME -- CMD ...)
                args = args[:args.index("--")]
            name, rest = args[0], args[1:]
            group = cli.commands[name]
            if isinstance(group, click.Group) and rest and rest[0] in group.commands:
                name, rest = f"{name} {rest[0]}", rest[1:]  # zpaxos members add ...
            out += [(page, name, a.split("=")[0]) for a in rest if a.startswith("-")
                    and a != "-"]
    return out


def command_options(name: str) -> set[str]:
    """The options of ``zpaxos NAME`` (a subcommand: with its group's)."""
    first, _, sub = name.partition(" ")
    command = cli.commands[first]
    if sub:
        assert isinstance(command, click.Group)
        return real_options(command) | real_options(command.commands[sub])
    return real_options(command)


def test_the_pages_mention_commands_in_passing():
    found = zpaxos_options()
    assert ("docs/security.md", "bench", "--curve") in found
    assert len(found) > 50


OPTIONS = sorted(set(zpaxos_options()))


@pytest.mark.parametrize("page,command,option", OPTIONS, ids=[" ".join(o) for o in OPTIONS])
def test_every_option_mentioned_exists(page, command, option):
    assert option in command_options(command) | {"--help", "-h"}, \
        f"{page}: zpaxos {command} has no option {option}"


def scripts() -> list[tuple[str, str]]:
    """(page, script or -m module) of every `python ...` the pages run."""
    out = []
    for page, span in spans():
        m = re.match(r"(?:sudo )?(?:[\w.]+=\S+ )*(?:\.venv/bin/)?python3? (-m )?(\S+)", span)
        if m and not m.group(2).startswith("-"):
            out.append((page, ("-m " if m.group(1) else "") + m.group(2)))
    return sorted(set(out))


def test_the_pages_run_scripts():
    assert ("docs/performance.md", "bench/floor.py") in scripts()
    assert ("docs/operating.md", "-m tests.nemesis") in scripts()


@pytest.mark.parametrize("page,script", scripts(), ids=[" ".join(s) for s in scripts()])
def test_every_script_run_exists(page, script):
    if script.startswith("-m "):
        assert importlib.util.find_spec(script[3:]) is not None, f"{page}: {script}"
    else:
        assert Path(ROOT / script).is_file(), f"{page}: {script}"
