"""``zpaxos export`` and ``zpaxos import``: every decided key and register as JSON lines,
read and written through the protocol (zpaxos/runtime/transfer.py).

Exit codes (besides 2 usage/config error and 130 interrupted):

    exit 0   done (import: every line is in the cluster, imported now or already there)
    exit 1   a key or register could not be read or written in time (no quorum), or too
             few nodes answered the listing
    exit 4   import: some keys or registers were already decided differently; each is
             listed on stderr, and none was overwritten
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

EXIT_FAILED, EXIT_USAGE, EXIT_DIFFERS, EXIT_INTERRUPTED = 1, 2, 4, 130


class _Fail(click.ClickException):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


_config = click.option("--config", "config", metavar="PATH", default=None,
                       help="Cluster file (default: $ZPAXOS_CONFIG, else configs/cluster.ini).")
_client_key = click.option("--client-key", "client_key", metavar="PATH", default=None,
                           type=click.Path(dir_okay=False, path_type=Path),
                           help="With CURVE: this client's secret key file.")


def _clients(config: str | None, client_key: Path | None, n: int) -> tuple[Any, list[Any]]:
    """The cluster and ``n`` clients (each its own sockets), logging warnings only."""
    from zpaxos.naming import proposer_name
    from zpaxos.runtime.client import Client
    from zpaxos.runtime.config import ConfigError, load_config
    from zpaxos.runtime.log import setup_logging

    try:
        cluster = load_config(config)
        clients = []
        for _ in range(n):
            cid = os.urandom(16)
            try:  # one record per problem, not per message: 100,000 keys are many lines
                log = setup_logging(cluster.log, proposer_name(cid), stderr=False,
                                    level="WARNING")
            except OSError as e:
                raise _Fail(f"{cluster.path}: [log] file: cannot open {cluster.log.file} "
                            f"({e.strerror})", EXIT_USAGE) from None
            clients.append(Client(cluster, log, cid, key_file=client_key))
    except ConfigError as e:
        raise _Fail(str(e), EXIT_USAGE) from None
    return cluster, clients


def _guarded(run: Any) -> Any:
    from zpaxos.runtime.client import Interrupted, Refused
    from zpaxos.runtime.transfer import TransferError

    try:
        return run()
    except TransferError as e:
        raise _Fail(str(e), EXIT_FAILED) from None
    except Refused as e:
        raise _Fail(f"refused: {e}", EXIT_FAILED) from None
    except Interrupted:
        raise _Fail("interrupted", EXIT_INTERRUPTED) from None


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
        raise _Fail(f"{out}: cannot write ({e.strerror})", EXIT_USAGE) from None
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
    is listed on stderr and kept (exit 4).
    """
    from zpaxos.lab.progress import Progress
    from zpaxos.printable import printable
    from zpaxos.runtime.transfer import import_file, validate_file

    try:
        stream = open(file, encoding="utf-8", errors="strict", newline="\n")
    except OSError as e:
        raise _Fail(f"{file}: cannot read ({e.strerror})", EXIT_USAGE) from None
    with stream:
        try:
            keys, regs = _guarded(lambda: validate_file(stream))
        except UnicodeDecodeError as e:
            raise _Fail(f"{file}: not UTF-8 text (byte {e.start})", EXIT_USAGE) from None
        except _Fail as e:
            raise _Fail(f"{file}: {e.message}; nothing was imported", EXIT_USAGE) from None
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
        sys.exit(EXIT_FAILED)
    if rep.differ:
        sys.exit(EXIT_DIFFERS)


COMMANDS = (export, import_)
