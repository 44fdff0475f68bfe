"""``zpaxos export`` and ``zpaxos import``: every decided key and register as JSON lines,
read and written through the protocol (zpaxos/runtime/transfer.py).

Exit codes (zpaxos/runtime/exits.py): OK done (import: every line is in the cluster);
FAILED a key or register could not be read or written in time, or too few nodes answered
the listing; CONFLICT (import) some were already decided differently, listed and kept.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from zpaxos.cli.common import Failure, open_log
from zpaxos.cli.options import CLIENT_KEY, CONFIG, click_option
from zpaxos.runtime.exits import Exit

if TYPE_CHECKING:
    from zpaxos.runtime.client import Client
    from zpaxos.runtime.config import ClusterConfig

T = TypeVar("T")
_config = click_option(CONFIG)
_client_key = click_option(CLIENT_KEY)


def _clients(config: str | None, client_key: Path | None,
             n: int) -> tuple[ClusterConfig, list[Client]]:
    """The cluster and ``n`` clients (each its own sockets), logging warnings only."""
    from zpaxos.naming import proposer_name
    from zpaxos.runtime.client import Client
    from zpaxos.runtime.config import ConfigError, load_config

    try:
        cluster = load_config(config)
        clients = []
        for _ in range(n):
            cid = os.urandom(16)
            # One record per problem, not per message: 100,000 keys are many lines.
            log = open_log(cluster, proposer_name(cid), quiet=True, level="WARNING")
            clients.append(Client(cluster, log, cid, key_file=client_key))
    except ConfigError as e:
        raise Failure(str(e), Exit.USAGE) from None
    return cluster, clients


def _guarded(run: Callable[[], T]) -> T:
    from zpaxos.runtime.client import Interrupted, Refused
    from zpaxos.runtime.transfer import TransferError

    try:
        return run()
    except TransferError as e:
        raise Failure(str(e), Exit.FAILED) from None
    except Refused as e:
        raise Failure(f"refused: {e}", Exit.FAILED) from None
    except Interrupted:
        raise Failure("interrupted", Exit.INTERRUPTED) from None


@click.command("export")
@click.option("--keys", "keys_glob", metavar="GLOB", default=None,
              help="Only the keys GLOB matches (fnmatch: *, ?, [...]).")
@click.option("--registers", is_flag=True, help="Also every register's current state.")
@click.option("--out", "out", metavar="FILE", default=None,
              help="Write to FILE instead of stdout (written whole, then renamed).")
@_config
@_client_key
def export(keys_glob: str | None, registers: bool, out: str | None, config: str | None,
           client_key: Path | None) -> None:
    """Write every decided key (and register) as JSON lines, each read through Paxos.

    One line per key: {"key": K, "value": TEXT} ("value_b64" for bytes that are not
    UTF-8); with --registers, one per register: {"register": NAME, "version": N,
    "value": TEXT or null when deleted}. Streams in constant memory, with a progress
    line on a terminal.
    """
    from zpaxos.lab.progress import Progress
    from zpaxos.runtime.transfer import export_lines

    target = Path(out) if out is not None else None
    part = target.with_name(target.name + ".part") if target is not None else None
    try:
        stream = open(part, "w", encoding="utf-8") if part is not None else sys.stdout
    except OSError as e:
        raise Failure(f"{out}: cannot write ({e.strerror})", Exit.USAGE) from None
    _, (lister, reader) = _clients(config, client_key, 2)
    done = False
    with lister, reader, Progress("export", 0) as bar:
        try:
            counts = _guarded(lambda: export_lines(lister, reader, stream, keys_glob,
                                                   registers, bar.step))
            stream.flush()
            if part is not None:
                os.fsync(stream.fileno())  # a backup: on disk before it has its name
            done = True
        finally:
            if part is not None:
                stream.close()
                if done:
                    os.replace(part, target)  # type: ignore[arg-type]
                else:
                    part.unlink(missing_ok=True)  # no half export under the real name
    rate = (counts.keys + counts.registers) / max(counts.seconds, 1e-9)
    click.echo(f"exported {counts.keys} keys and {counts.registers} registers in "
               f"{counts.seconds:.1f} s ({rate:,.0f}/s)", err=True)


@click.command("import")
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@_config
@_client_key
def import_(file: Path, config: str | None, client_key: Path | None) -> None:
    """Propose every line of FILE (an export) into the cluster; never overwrite.

    Every line is checked first: one bad line stops the import before anything is
    proposed. Then each key is proposed with its value and each register is set only if
    it is absent. A key already decided differently, or a register holding another value,
    is listed on stderr and kept (exit 11, CONFLICT).
    """
    from zpaxos.lab.progress import Progress
    from zpaxos.printable import printable
    from zpaxos.runtime.transfer import import_file, validate_file

    try:
        stream = open(file, encoding="utf-8", errors="strict", newline="\n")
    except OSError as e:
        raise Failure(f"{file}: cannot read ({e.strerror})", Exit.USAGE) from None
    with stream:
        try:
            keys, regs = _guarded(lambda: validate_file(stream))
        except UnicodeDecodeError as e:
            raise Failure(f"{file}: not UTF-8 text (byte {e.start})", Exit.USAGE) from None
        except Failure as e:
            raise Failure(f"{file}: {e}; nothing was imported", Exit.USAGE) from None
        _, (client,) = _clients(config, client_key, 1)
        with client, Progress("import", keys + regs) as bar:
            def differ(line: str) -> None:
                if bar.on:
                    sys.stderr.write("\r\x1b[K")
                click.echo(f"differs: {printable(line)}", err=True)
            rep = _guarded(lambda: import_file(client, stream, differ, bar.step))
    rate = (keys + regs) / max(rep.seconds, 1e-9)
    click.echo(f"{keys} keys and {regs} registers in {rep.seconds:.1f} s ({rate:,.0f}/s): "
               f"{rep.imported} imported, {rep.same} already the same, {rep.differ} decided "
               f"differently (kept), {rep.failed} not done (no quorum in time)", err=True)
    if rep.failed:
        sys.exit(Exit.FAILED)
    if rep.differ:
        sys.exit(Exit.CONFLICT)


COMMANDS = (export, import_)
