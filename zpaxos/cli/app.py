"""The ``zpaxos`` command group: every command family registered, and every error said as
one line on stderr with its exit code (zpaxos/runtime/exits.py), never a traceback.

Each family is a module of its own (wiring only: parse, load config, call the library,
print): cluster.py (node, status, keygen), members.py, propose.py, registers.py (get, set, cas,
delete), transfer.py (export, import), charts.py (trace, log), sim.py, bench.py,
scenarios.py. Imports are deferred into each command, so a command loads only what it
needs; a plain ``zpaxos propose`` does not even come here (zpaxos/cli/entry.py).

Everything printed for people passes through ``zpaxos.printable``, so a value holding
a newline or a terminal escape cannot break a line, a table row or a log line.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from zpaxos.cli import (
    bench,
    charts,
    cluster,
    locks,
    members,
    propose,
    registers,
    scenarios,
    sim,
    transfer,
    watch,
)
from zpaxos.cli.common import Failure
from zpaxos.runtime.exits import Exit


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zpaxos")
def cli() -> None:
    """zpaxos: Basic Paxos over ZeroMQ. Run three nodes, then propose values."""


for command in (*cluster.COMMANDS, propose.command(), *registers.COMMANDS,
                *transfer.COMMANDS, *charts.COMMANDS, sim.sim, *bench.COMMANDS,
                *scenarios.COMMANDS, *watch.COMMANDS, *locks.COMMANDS,
                *members.COMMANDS):
    cli.add_command(command)


def _fail(command: str, message: str, code: int) -> NoReturn:
    click.echo(f"{command}: error: {message}", err=True)
    sys.exit(code)


def _usage_hint(args: list[str], message: str) -> tuple[str, str]:
    """Which command a usage error is about, and the message with where to look for help:
    for a misspelt command the closest one (`zpaxos propse` -> see 'zpaxos propose
    --help'), else the list of commands."""
    first = args[0] if args and not args[0].startswith("-") else None
    if first is None:
        return "zpaxos", f"{message} (see 'zpaxos --help')"
    if first in cli.commands:
        return f"zpaxos {first}", f"{message} (see 'zpaxos {first} --help')"
    import difflib  # only for a mistyped command

    close = difflib.get_close_matches(first, list(cli.commands), n=1)
    if close:
        if "Did you mean" not in message:  # click 8.2 and later ask it themselves
            message += f" Did you mean '{close[0]}'?"
        return "zpaxos", f"{message} (see 'zpaxos {close[0]} --help')"
    return "zpaxos", f"{message} (commands: {', '.join(sorted(cli.commands))}; see 'zpaxos --help')"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: click in non-standalone mode so every error is one line."""
    from zpaxos.printable import printable

    args = sys.argv[1:] if argv is None else argv
    command = _usage_hint(args, "")[0]
    try:
        rv = cli.main(args=args, prog_name="zpaxos", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else str(e), err=True)
        sys.exit(Exit.USAGE)
    except click.UsageError as e:
        _fail(command, printable(_usage_hint(args, e.format_message())[1]), Exit.USAGE)
    except click.ClickException as e:
        _fail(command, printable(e.format_message()), e.exit_code)
    except Failure as e:
        _fail(command, printable(str(e)), e.code)
    except (KeyboardInterrupt, click.Abort):
        click.echo(f"{command}: interrupted", err=True)
        sys.exit(Exit.INTERRUPTED)
    except BrokenPipeError:  # `zpaxos log paxos.log | head`: the reader has gone; fine
        sys.stderr.close()
        sys.exit(Exit.OK)
    sys.exit(rv if isinstance(rv, int) else Exit.OK)
