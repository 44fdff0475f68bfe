"""``zpaxos get/set/cas/delete``: rewritable registers from the command line.

Registers live beside the write-once keys of ``zpaxos propose`` (their own namespace: a
register "x" and a write-once key "x" are unrelated). Every operation is linearizable
and prints the register's value and version after it (``--json``: one JSON object).

Exit codes (besides the usual 2 usage/config error and 130 interrupted):

    exit 0   done (get: the register was read; absent counts as read)
    exit 1   no quorum: nothing was written (a majority of nodes did not answer in time)
    exit 4   cas: the comparison failed, nothing was written; the current value and
             version are printed
    exit 5   outcome unknown: a change reached some nodes but no quorum confirmed it in
             time; it may or may not take effect (read the register to find out)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

EXIT_NO_QUORUM, EXIT_USAGE, EXIT_CAS_FAILED, EXIT_UNKNOWN, EXIT_INTERRUPTED = 1, 2, 4, 5, 130


class _Fail(click.ClickException):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


def _name(ctx: click.Context, param: click.Parameter, name: str) -> str:
    from zpaxos.protocol.messages import key_problem

    problem = key_problem(name)
    if problem:
        raise click.BadParameter(f"{name!r}: {problem}")
    return name


_common = [
    click.option("--config", "config", metavar="PATH", default=None,
                 help="Cluster file (default: $ZPAXOS_CONFIG, else configs/cluster.ini)."),
    click.option("--client-key", "client_key", metavar="PATH", default=None,
                 type=click.Path(dir_okay=False, path_type=Path),
                 help="With CURVE: this client's secret key file."),
    click.option("--timeout", type=click.FloatRange(min=0.001, max=1e9), default=None,
                 metavar="S", help="Give up after S seconds (default: [proposer] timeout_s)."),
    click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
]


def common(f: Any) -> Any:
    for opt in reversed(_common):
        f = opt(f)
    return click.argument("name", metavar="NAME", callback=_name)(f)


def _run(name: str, op: Any, config: str | None, client_key: Path | None,
         timeout: float | None, as_json: bool) -> None:
    import os

    from zpaxos.naming import proposer_name
    from zpaxos.protocol.register import CAS_FAILED, NO_QUORUM, OK
    from zpaxos.runtime.client import Client, Interrupted, Refused
    from zpaxos.runtime.config import ConfigError, load_config
    from zpaxos.runtime.log import setup_logging

    try:
        cluster = load_config(config)
        client_id = os.urandom(16)
        try:
            # The log file gets every message, as for propose (zpaxos trace draws them).
            log = setup_logging(cluster.log, proposer_name(client_id), stderr=False)
        except OSError as e:
            raise _Fail(f"{cluster.path}: [log] file: cannot open {cluster.log.file} "
                        f"({e.strerror})", EXIT_USAGE) from None
        with Client(cluster, log, client_id, key_file=client_key) as c:
            t0 = time.perf_counter()
            r = c.registers([(name, op)], c.register_options(timeout_s=timeout))[0]
            ms = (time.perf_counter() - t0) * 1000
            from zpaxos.explain import reach_of

            reach = reach_of(c, r.silent if r.status != OK else ())
    except ConfigError as e:
        raise _Fail(str(e), EXIT_USAGE) from None
    except ValueError as e:
        raise _Fail(str(e), EXIT_USAGE) from None
    except Refused as e:  # known from the handshakes, at once (as for propose)
        from zpaxos.explain import refused_line
        from zpaxos.protocol.register import CAS, CAS_VALUE

        verb = CAS if op.kind == CAS_VALUE else op.kind  # the command's name
        raise _Fail(refused_line(verb, e), EXIT_NO_QUORUM) from None
    except Interrupted:
        raise _Fail("interrupted", EXIT_INTERRUPTED) from None
    print_result(r, ms, as_json, reach)
    if r.status == OK:
        return
    code = {CAS_FAILED: EXIT_CAS_FAILED, NO_QUORUM: EXIT_NO_QUORUM}.get(r.status, EXIT_UNKNOWN)
    sys.exit(code)


def describe(r: Any) -> str:
    """``r = 'three' (version 3)``; ``r is absent (version 4)``."""
    from zpaxos.printable import printable, value_text

    if r.value is None:
        return f"{printable(r.key)} is absent (version {r.version})"
    return f"{printable(r.key)} = {value_text(r.value)} (version {r.version})"


def print_result(r: Any, ms: float, as_json: bool, reach: Any = None) -> None:
    """``reach``: what the client knew of the silent nodes (explain.Reach)."""
    import json

    from zpaxos.explain import Reach, failure_line, with_node_names
    from zpaxos.naming import as_node_name
    from zpaxos.printable import printable
    from zpaxos.protocol.register import OK
    from zpaxos.runtime.log import show_value

    if as_json:
        click.echo(json.dumps({
            "key": r.key, "op": r.kind, "status": r.status, "version": r.version,
            "value": show_value(r.value), "exists": r.value is not None,
            "rounds": r.rounds, "fast": r.fast, "elapsed_ms": round(ms, 1),
            "reason": with_node_names(r.reason) or None,
            "no_reply_from": [as_node_name(n) for n in r.silent] if r.status != OK else []}))
        return
    if r.status == "ok":
        click.echo(describe(r))
    elif r.status == "cas_failed":
        click.echo(f"cas failed: {describe(r)}", err=True)
    elif r.status == "no_quorum":
        click.echo(failure_line(f"no quorum on register {printable(r.key)}, nothing written",
                                r.reason, r.silent, reach or Reach()), err=True)
    else:
        click.echo(failure_line(f"outcome unknown on register {printable(r.key)} (the change "
                                f"may or may not take effect)", r.reason, r.silent,
                                reach or Reach()),
                   err=True)


def _value(value: str | None, value_file: str | None) -> bytes:
    if (value is None) == (value_file is None):
        raise _Fail("give a VALUE or --value-file (one of them)", EXIT_USAGE)
    if value_file is not None:
        try:
            return Path(value_file).read_bytes()
        except OSError as e:
            raise _Fail(f"{value_file}: cannot read ({e.strerror})", EXIT_USAGE) from None
    assert value is not None
    return value.encode()


value_file_option = click.option("--value-file", metavar="PATH", default=None,
                                 help="Read the value from this file (bytes as they are).")


@click.command()
@common
def get(name: str, config: str | None, client_key: Path | None, timeout: float | None,
        as_json: bool) -> None:
    """Read register NAME (linearizable: a quorum round that writes back what it read)."""
    from zpaxos.protocol.register import GET, RegOp

    _run(name, RegOp(GET), config, client_key, timeout, as_json)


@click.command("set")
@common
@click.argument("value", required=False)
@value_file_option
def set_(name: str, value: str | None, value_file: str | None, config: str | None,
         client_key: Path | None, timeout: float | None, as_json: bool) -> None:
    """Set register NAME to VALUE (the next version)."""
    from zpaxos.protocol.register import SET, RegOp

    _run(name, RegOp(SET, _value(value, value_file)), config, client_key, timeout, as_json)


@click.command()
@common
@click.argument("value", required=False)
@value_file_option
@click.option("--expect-version", type=click.IntRange(min=0), default=None, metavar="N",
              help="Write only if the register is at version N (0: never written).")
@click.option("--expect-value", default=None, metavar="TEXT",
              help="Write only if the register holds TEXT.")
@click.option("--expect-absent", is_flag=True, help="Write only if the register is absent.")
def cas(name: str, value: str | None, value_file: str | None, expect_version: int | None,
        expect_value: str | None, expect_absent: bool, config: str | None,
        client_key: Path | None, timeout: float | None, as_json: bool) -> None:
    """Compare-and-set register NAME to VALUE; exit 4 if the comparison failed."""
    from zpaxos.protocol.register import CAS, CAS_VALUE, RegOp

    given = sum(x for x in (expect_version is not None, expect_value is not None, expect_absent))
    if given != 1:
        raise _Fail("give one of --expect-version, --expect-value, --expect-absent", EXIT_USAGE)
    data = _value(value, value_file)
    if expect_version is not None:
        op = RegOp(CAS, data, expect_version=expect_version)
    else:
        op = RegOp(CAS_VALUE, data,
                   expect_value=None if expect_absent else (expect_value or "").encode())
    _run(name, op, config, client_key, timeout, as_json)


@click.command()
@common
def delete(name: str, config: str | None, client_key: Path | None, timeout: float | None,
           as_json: bool) -> None:
    """Delete register NAME (a tombstone at the next version; never resurrected)."""
    from zpaxos.protocol.register import DELETE, RegOp

    _run(name, RegOp(DELETE), config, client_key, timeout, as_json)


COMMANDS = (get, set_, cas, delete)
