"""``zpaxos watch NAME``: print each new state of a register as it happens.

    $ zpaxos watch config
    config = 'v6' (version 6)
    config = 'v7' (version 7)
    versions 8-9 not seen
    config = 'v10' (version 10)

Runs until interrupted (exit 130, as every command). Each line is a state a linearizable
read returned, versions only go up, and versions overwritten before the watcher could
read them are named, never dropped silently (docs/coordination.md, "Watch").
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from zpaxos.cli.common import Failure
from zpaxos.cli.options import CLIENT_KEY, CONFIG, JSON, apply, key_param
from zpaxos.cli.registers import describe
from zpaxos.runtime.exits import Exit


@click.command()
@click.argument("name", metavar="NAME", callback=key_param)
@click.option("--from-version", "from_version", type=click.IntRange(min=0), default=None,
              metavar="N", help="Report the states from version N on (and say which of "
                                "them were overwritten before they could be read).")
@apply((CONFIG, CLIENT_KEY, JSON))
def watch(name: str, from_version: int | None, config: str | None, client_key: Path | None,
          as_json: bool) -> None:
    """Print each new state of register NAME as it happens (until interrupted)."""
    import json

    from zpaxos.runtime.client import Client, Interrupted
    from zpaxos.runtime.config import ConfigError, load_config
    from zpaxos.runtime.log import null_log, show_value
    from zpaxos.runtime.sockets import SignalWakeup
    from zpaxos.runtime.watch import WatchRefused

    wakeup = SignalWakeup()
    wakeup.install()
    try:
        cluster = load_config(config)
        with Client(cluster, null_log("watch"), os.urandom(16), key_file=client_key,
                    wakeup=wakeup) as c:
            for state in c.watch(name, from_version):
                if as_json:
                    click.echo(json.dumps({
                        "name": state.key, "version": state.version,
                        "value": show_value(state.value), "exists": state.value is not None,
                        "skipped": list(state.skipped) if state.skipped else None}))
                else:
                    if state.skipped_text:
                        click.echo(state.skipped_text)
                    click.echo(describe(state))
                sys.stdout.flush()
    except ConfigError as e:
        raise Failure(str(e), Exit.USAGE) from None
    except WatchRefused as e:
        raise Failure(str(e), Exit.FAILED) from None
    except Interrupted:
        raise Failure("interrupted", Exit.INTERRUPTED) from None
    finally:
        wakeup.close()


COMMANDS = (watch,)
