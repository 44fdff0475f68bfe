"""``zpaxos lock``, ``zpaxos elect``, ``zpaxos leader``: locks and leader election from
the command line (docs/locks.md).

    $ zpaxos lock backups --ttl 10 -- ./backup.sh     # $ZPAXOS_FENCING_TOKEN is set
    $ zpaxos elect scheduler --id node-a -- ./schedule.sh
    scheduler: node-a is leader (term 12)
    $ zpaxos leader scheduler
    scheduler: node-a is leader (term 12)

Wiring only: the lease rules are zpaxos/protocol/lease.py, the lock zpaxos/runtime/
locks.py, the supervision of the command (stop it before another can hold the lock)
zpaxos/runtime/holdrun.py.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from zpaxos.cli.common import Failure, open_log
from zpaxos.cli.options import CLIENT_KEY, CONFIG, JSON, Option, apply, key_param
from zpaxos.protocol.lease import DEFAULT_TTL_S, MAX_HOLDER_CHARS, MAX_TTL_S, MIN_TTL_S
from zpaxos.runtime.exits import Exit

if TYPE_CHECKING:
    from zpaxos.runtime.client import Client
    from zpaxos.runtime.holdrun import Ran
    from zpaxos.runtime.locks import Lock
    from zpaxos.runtime.sockets import SignalWakeup

TOKEN_ENV = "ZPAXOS_FENCING_TOKEN"
TERM_ENV = "ZPAXOS_TERM"

TTL = Option(("--ttl",), "ttl", "seconds", metavar="S", low=MIN_TTL_S, high=MAX_TTL_S,
             default=DEFAULT_TTL_S,
             help="The lease, in seconds: a holder treats the lock as lost S minus a "
                  "margin after its last renewal was sent (it renews three times per "
                  "lease), a waiter takes over after S plus the margin (default 10).")
WAIT = Option(("--timeout",), "timeout", "seconds", metavar="S", low=0.001,
              help="Give up (exit 1) if not acquired within S seconds (default: wait).")
_CMD = click.argument("cmd", nargs=-1, metavar="[-- CMD ARGS...]", type=click.UNPROCESSED)


@contextmanager
def _client(config: str | None, client_key: Path | None,
            ) -> Iterator[tuple[Client, SignalWakeup]]:
    """A Client that a signal (Ctrl-C, SIGTERM) stops; each failure as one line."""
    from zpaxos.naming import proposer_name
    from zpaxos.runtime.client import Client, Interrupted, Refused
    from zpaxos.runtime.config import ConfigError, load_config
    from zpaxos.runtime.locks import LockError, LockTimeout
    from zpaxos.runtime.sockets import SignalWakeup

    wakeup = SignalWakeup()
    wakeup.install()
    try:
        cluster = load_config(config)
        client_id = os.urandom(16)
        # The log file gets every message, as for propose (zpaxos trace draws them).
        log = open_log(cluster, proposer_name(client_id), quiet=True)
        with Client(cluster, log, client_id, key_file=client_key, wakeup=wakeup) as c:
            yield c, wakeup
    except ConfigError as e:
        raise Failure(str(e), Exit.USAGE) from None
    except (LockTimeout, LockError, Refused, ConnectionError) as e:
        raise Failure(str(e), Exit.FAILED) from None
    except Interrupted:
        raise Failure("interrupted", Exit.INTERRUPTED) from None
    finally:
        wakeup.close()


def _run(lock: Lock, token: int, cmd: tuple[str, ...], wakeup: SignalWakeup) -> Ran:
    from zpaxos.runtime.holdrun import hold_until_lost, run_while_held

    if not cmd:
        return hold_until_lost(lock, wakeup)
    env = {**os.environ, TOKEN_ENV: str(token), TERM_ENV: str(token)}
    try:
        return run_while_held(lock, cmd, env, wakeup)
    except OSError as e:
        lock.release()
        raise Failure(f"cannot run {cmd[0]!r}: {e.strerror or e}", Exit.USAGE) from None


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name", metavar="NAME", callback=key_param)
@apply((TTL, WAIT, CONFIG, CLIENT_KEY))
@_CMD
def lock(name: str, ttl: float, timeout: float | None, config: str | None,
         client_key: Path | None, cmd: tuple[str, ...]) -> None:
    """Hold lock NAME while CMD runs (with $ZPAXOS_FENCING_TOKEN set); exit with its status.

    The lock is renewed while CMD runs and released when it ends. If the lock is lost
    (no renewal in time), CMD is stopped (SIGTERM, then SIGKILL) before another holder
    can get the lock, and the exit status is 1."""
    if not cmd:
        raise click.UsageError("no command to run (zpaxos lock NAME -- CMD ARGS...)")
    holder = f"{socket.gethostname()}:{os.getpid()}"[:MAX_HOLDER_CHARS]
    with _client(config, client_key) as (c, wakeup):
        from zpaxos.runtime.locks import Lock

        held = Lock(c, name, ttl, timeout, holder=holder)
        token = held.acquire()
        try:
            ran = _run(held, token, cmd, wakeup)
        finally:
            held.release()
        if ran.interrupted:
            raise Failure(f"interrupted: stopped {cmd[0]!r} and released {name!r}",
                          Exit.INTERRUPTED)
        if ran.lost:
            how = "SIGKILL" if ran.killed else "SIGTERM"
            raise Failure(f"lost lock {name!r} (token {token}: {ran.lost}); stopped "
                          f"{cmd[0]!r} ({how})", Exit.FAILED)
        sys.exit(ran.status or 0)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name", metavar="NAME", callback=key_param)
@click.option("--id", "candidate", required=True, metavar="ME",
              help=f"This candidate's name, shown as the leader (at most "
                   f"{MAX_HOLDER_CHARS} characters).")
@apply((TTL, CONFIG, CLIENT_KEY))
@_CMD
def elect(name: str, candidate: str, ttl: float, config: str | None,
          client_key: Path | None, cmd: tuple[str, ...]) -> None:
    """Campaign in election NAME; run CMD only while leader (else hold until Ctrl-C).

    Prints when it becomes leader (with its term, the fencing token) and when it stops
    being leader; then campaigns again. CMD gets $ZPAXOS_TERM (and
    $ZPAXOS_FENCING_TOKEN); when CMD ends by itself, it resigns and exits with CMD's
    status."""
    if not candidate or len(candidate) > MAX_HOLDER_CHARS or not candidate.isprintable():
        raise click.BadParameter(f"an id is 1 to {MAX_HOLDER_CHARS} printable characters",
                                 param_hint="'--id'")
    with _client(config, client_key) as (c, wakeup):
        while True:
            leadership = c.campaign(name, candidate, ttl)
            _say(f"{name}: {candidate} is leader (term {leadership.term})")
            try:
                ran = _run(leadership, leadership.term, cmd, wakeup)
            finally:
                leadership.resign()
            if ran.interrupted:
                _say(f"{name}: {candidate} resigned (term {leadership.term})")
                raise Failure("interrupted", Exit.INTERRUPTED)
            if not ran.lost:
                _say(f"{name}: {candidate} resigned (term {leadership.term})")
                sys.exit(ran.status or 0)
            _say(f"{name}: {candidate} is no longer leader (term {leadership.term}: "
                 f"{ran.lost})")


@click.command()
@click.argument("name", metavar="NAME", callback=key_param)
@apply((CONFIG, CLIENT_KEY, JSON))
def leader(name: str, config: str | None, client_key: Path | None, as_json: bool) -> None:
    """Show the current leader of election NAME and its term (exit 0 either way)."""
    import json

    from zpaxos.printable import printable

    with _client(config, client_key) as (c, _):
        now = c.leader(name)
    if as_json:
        click.echo(json.dumps({"name": name, "leader": now[0] if now else None,
                               "term": now[1] if now else None}))
    elif now is None:
        click.echo(f"{name}: no leader")
    else:
        click.echo(f"{name}: {printable(now[0])} is leader (term {now[1]})")


def _say(line: str) -> None:
    from zpaxos.printable import printable

    click.echo(printable(line))
    sys.stdout.flush()


COMMANDS = (lock, elect, leader)
