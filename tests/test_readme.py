"""The README is true: its Python runs as shown, its commands parse, its CLI reference
lists exactly the options each command has, and its list of log events is complete."""

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

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, re.M | re.S)


def section(title: str, text: str = README, level: str = "##") -> str:
    """The text under a heading, up to the next heading of the same or a higher level."""
    start = text.index(f"{level} {title}")
    body = text[start + len(level) + 1 + len(title):]
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", body, re.M)]
    return body[: ends[0]] if ends else body


# ---------------------------------------------------------------- code blocks


def test_there_is_python_to_run():
    assert [lang for lang, _ in BLOCKS].count("python") >= 1


@pytest.mark.e2e
@pytest.mark.parametrize("code", [code for lang, code in BLOCKS if lang == "python"])
def test_python_blocks_run_as_shown(tmp_path, code):
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


def _zpaxos_lines() -> list[list[str]]:
    lines = []
    for lang, code in BLOCKS:
        if lang != "bash":
            continue
        for line in code.splitlines():
            line = line.split(" # ")[0].strip()
            if line.startswith("zpaxos "):
                lines.append(shlex.split(line)[1:])
    return lines


def test_the_readme_shows_zpaxos_commands():
    assert {args[0] for args in _zpaxos_lines()} >= {"node", "propose", "status", "trace",
                                                      "log"}


@pytest.mark.parametrize("args", _zpaxos_lines(), ids=" ".join)
def test_every_zpaxos_command_in_a_bash_block_parses(args):
    command = cli.commands[args[0]]
    command.make_context(f"zpaxos {args[0]}", args[1:])  # raises on an unknown option


def test_quick_start_scripts_exist():
    quick = section("Quick start")
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
    paragraph = section("Logs").strip().split("\n\n")[0]
    documented = {w for w in re.findall(r"`([^`]+)`", paragraph) if re.fullmatch(r"[a-z_]+", w)}
    found = logged_events()
    assert {"value_file", "chosen", "send"} <= found  # the scan finds events at all
    assert documented == found
