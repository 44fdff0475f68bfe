"""The ``zpaxos`` command: wiring only (parse, load config, call the library, print).

Imports are deferred into each command so that a short-lived ``zpaxos propose`` loads
only what it needs. A user's mistake (bad option, bad config, port in use, damaged
state) is one line on stderr and a non-zero exit, never a traceback:

    exit 0  success (propose: a value was chosen, whichever it is)
    exit 1  the operation failed (propose: nothing chosen in time; node: cannot run,
            e.g. port in use or data directory locked by another process)
    exit 2  usage or configuration error
    exit 3-7 node: a storage error (zpaxos.runtime.storage_errors: damaged, state lost,
            not writable, disk full, changed underneath)
    exit 130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class Failure(Exception):
    """A user-facing failure: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def _load(config: str | None) -> Any:
    from zpaxos.runtime.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as e:
        raise Failure(str(e), EXIT_USAGE) from None


def _logging(cluster: Any, process: str, quiet: bool) -> Any:
    from zpaxos.runtime.log import setup_logging

    try:
        return setup_logging(cluster.log, process, stderr=not quiet)
    except OSError as e:
        raise Failure(f"{cluster.path}: [log] file: cannot open {cluster.log.file} ({e.strerror})",
                      EXIT_USAGE) from None


config_option = click.option(
    "--config", "config", metavar="PATH", default=None,
    help="Cluster file (default: $ZPAXOS_CONFIG, else configs/cluster.ini).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zpaxos")
def cli() -> None:
    """zpaxos: Basic Paxos over ZeroMQ. Run three nodes, then propose values."""


# ---------------------------------------------------------------- node


@cli.command()
@click.argument("node_id", metavar="ID", type=click.IntRange(min=0))
@config_option
@click.option("-q", "--quiet", is_flag=True, help="Log to the log file only, not to stderr.")
@click.option("--new", "new", is_flag=True,
              help="Start empty on purpose over LOST or damaged state (old files are moved "
                   "to DATA_DIR/retired-*); see 'Operating zpaxos' in the README first.")
def node(node_id: int, config: str | None, quiet: bool, new: bool) -> None:
    """Run node ID of the cluster in the foreground until Ctrl-C or SIGTERM."""
    import logging

    from zpaxos.runtime.config import ConfigError
    from zpaxos.runtime.node import Node
    from zpaxos.runtime.storage import SqliteStore, StorageError
    from zpaxos.runtime.sockets import BindError

    cluster = _load(config)
    try:
        cfg = cluster.node(node_id)
    except ConfigError as e:
        raise Failure(str(e), EXIT_USAGE) from None
    log = _logging(cluster, cfg.name, quiet)
    store = None
    try:
        # The store takes the data directory's lock first and holds it until n.close().
        store = SqliteStore(cfg.data_dir, new=new)
        n = Node(cluster, node_id, log, store)
    except StorageError as e:
        if store is not None:
            store.close()
        raise Failure(f"{cfg.name}: {e}", e.exit_code) from None
    if store.retired is not None:
        log.event("started_new", "started empty on purpose (--new)",
                  retired=str(store.retired), incarnation=store.incarnation.hex())
        click.echo(f"{cfg.name}: started empty on purpose (--new); the old state files are "
                   f"in {store.retired}", err=True)

    def ready(_n: Any) -> None:
        click.echo(f"{cfg.name} listening on {cfg.endpoint} (data in {cfg.data_dir}, "
                   f"{len(n.acceptor.states)} keys known); Ctrl-C to stop")
        sys.stdout.flush()

    try:
        n.run(on_ready=ready)
    except BindError as e:
        raise Failure(f"{cfg.name}: {e}") from None
    except StorageError as e:
        log.event("storage_error", str(e), logging.ERROR, exit_code=e.exit_code)
        raise Failure(f"{cfg.name}: stopping: {e}", e.exit_code) from None
    click.echo(f"{cfg.name} stopped")


# ---------------------------------------------------------------- propose


def _node_delays(ctx: click.Context, param: click.Parameter, raw: tuple[str, ...]) -> dict:
    delays: dict[int, float] = {}
    for item in raw:
        node_s, sep, secs_s = item.partition(":")
        try:
            node_id, secs = int(node_s), float(secs_s)
        except ValueError:
            node_id, secs = -1, -1.0
        if not sep or node_id < 0 or not 0 <= secs < float("inf"):
            raise click.BadParameter(f"{item!r} is not NODE:SECONDS (for example 2:1.5)")
        delays[node_id] = secs
    return delays


def _key_param(ctx: click.Context, param: click.Parameter, key: str | None) -> str | None:
    from zpaxos.protocol.messages import key_problem

    if key is not None:
        problem = key_problem(key)
        if problem:
            raise click.BadParameter(f"{key!r}: {problem}")
    return key


seconds = click.FloatRange(min=0, max=1e9)


@cli.command()
@click.argument("value")
@click.option("--key", default=None, callback=_key_param,
              help="Instance key (default CISC5597); also the value file's name.")
@click.option("--delay", type=seconds, default=0.0, metavar="S",
              help="Wait S seconds before proposing (the lab's 'sleep 1 &&').")
@click.option("--pause-between-phases", type=seconds, default=None, metavar="S",
              help="Staging: wait S seconds after a quorum of promises, every round.")
@click.option("--prepare-delay", multiple=True, callback=_node_delays, metavar="NODE:S",
              help="Staging: send each Prepare to NODE S seconds late (repeatable).")
@click.option("--accept-delay", multiple=True, callback=_node_delays, metavar="NODE:S",
              help="Staging: send each Accept to NODE S seconds late (repeatable).")
@click.option("--max-rounds", type=click.IntRange(min=1), default=None, metavar="N",
              help="Give up after N ballots (default from the config).")
@click.option("--timeout", type=click.FloatRange(min=0.001, max=1e9), default=None,
              metavar="S", help="Whole-proposal deadline in seconds (default from the config).")
@click.option("--round-timeout", type=click.FloatRange(min=0.001, max=1e9), default=None,
              metavar="S", help="Wait this long for a quorum in one phase.")
@click.option("--backoff", type=seconds, default=None, metavar="S",
              help="Base of the randomized retry backoff; 0 retries at once.")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("-q", "--quiet", is_flag=True, help="Log to the log file only, not to stderr.")
def propose(value: str, key: str | None, delay: float, pause_between_phases: float | None,
            prepare_delay: dict, accept_delay: dict, max_rounds: int | None,
            timeout: float | None, round_timeout: float | None, backoff: float | None,
            config: str | None, as_json: bool, quiet: bool) -> None:
    """Propose VALUE and print the value chosen (this one, or an earlier one adopted)."""
    import time

    cluster = _load(config)
    ids = {n.id for n in cluster.nodes}
    for opt, delays in (("--prepare-delay", prepare_delay), ("--accept-delay", accept_delay)):
        unknown = sorted(set(delays) - ids)
        if unknown:
            raise Failure(f"{opt}: no node {unknown[0]} in {cluster.path} (nodes: "
                          f"{', '.join(map(str, sorted(ids)))})", EXIT_USAGE)
    if delay:
        time.sleep(delay)

    from zpaxos.runtime.client import Client, Interrupted, options_from
    from zpaxos.protocol.messages import DEFAULT_KEY
    from zpaxos.runtime.sockets import SignalWakeup, proposer_name

    opts = options_from(cluster.proposer, timeout_s=timeout, max_rounds=max_rounds,
                        round_timeout_s=round_timeout, backoff_s=backoff,
                        pause_between_phases_s=pause_between_phases,
                        prepare_delay_s=prepare_delay, accept_delay_s=accept_delay)
    import os

    client_id = os.urandom(16)
    log = _logging(cluster, proposer_name(client_id), quiet)
    wakeup = SignalWakeup()
    wakeup.install()
    started = time.monotonic()
    key = key or DEFAULT_KEY
    outcome = None
    try:
        with Client(cluster, log, client_id) as client:
            log.event("start", role="proposer", key=key, value=value.encode())
            outcome = client.propose(value, key, opts, wakeup)
    except Interrupted:
        raise KeyboardInterrupt from None
    finally:
        wakeup.close()
        log.event("stop", key=key, rounds=outcome.rounds if outcome else None,
                  interrupted=outcome is None or None)
    _print_outcome(outcome, (time.monotonic() - started) * 1000, as_json, log.process)
    if outcome.chosen is None:
        sys.exit(EXIT_FAILED)


def _print_outcome(o: Any, elapsed_ms: float, as_json: bool, proposer: str) -> None:
    import json

    from zpaxos.runtime.log import show_value

    silent = [f"node{n}" for n in o.silent] if o.chosen is None else []
    if as_json:
        click.echo(json.dumps({
            "key": o.key, "proposed": show_value(o.proposed), "chosen": show_value(o.chosen),
            "own": o.own, "ballot": str(o.ballot), "rounds": o.rounds,
            "elapsed_ms": round(elapsed_ms, 1), "reason": o.reason, "no_reply_from": silent,
            "proposer": proposer,
        }))
        return
    rounds = f"{o.rounds} round{'s' if o.rounds != 1 else ''}"
    if o.chosen is None:
        who = f"; no reply from {', '.join(silent)}" if silent else ""
        click.echo(f"no value chosen for {o.key}: {o.reason}{who}", err=True)
        return
    if o.own:
        how = "its own proposal"
    else:
        how = f"adopted an earlier value (this proposer proposed {show_value(o.proposed)})"
    click.echo(f"{o.key} = {show_value(o.chosen)}: {how}; ballot {o.ballot}, {rounds}, "
               f"{elapsed_ms:.0f} ms")


# ---------------------------------------------------------------- status


@cli.command()
@config_option
@click.option("--key", default=None, callback=_key_param, help="Show only this key.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--timeout", type=click.FloatRange(min=0.01, max=60), default=1.0, metavar="S",
              help="How long to wait for each node (default 1 s).")
def status(config: str | None, key: str | None, as_json: bool, timeout: float) -> None:
    """Show each node's state: reachable or not, and per key promised/accepted/chosen."""
    from zpaxos.runtime.client import Client
    from zpaxos.runtime.log import null_log
    from zpaxos.pictures.statusview import status_json, status_table

    cluster = _load(config)
    with Client(cluster, null_log("status")) as client:
        nodes = client.status(key, timeout)
    click.echo(status_json(nodes) if as_json else status_table(nodes, key))


# ---------------------------------------------------------------- trace


@cli.command()
@click.argument("logfile", metavar="LOGFILE")
@click.option("--key", default=None, callback=_key_param, help="Chart only this key.")
@click.option("--since", default=None, metavar="TIME",
              help="Only events at or after TIME (epoch seconds, ISO date-time, or HH:MM:SS).")
@click.option("--out", default=None, metavar="FILE", help="Write the chart to FILE.")
@click.option("--format", "fmt", type=click.Choice(["svg", "text"]), default=None,
              help="svg (default when --out ends in .svg) or text (default otherwise).")
def trace(logfile: str, key: str | None, since: str | None, out: str | None,
          fmt: str | None) -> None:
    """Draw a message sequence chart of a run from its JSON log."""
    from zpaxos.pictures.trace import TraceError, run_trace

    try:
        run_trace(logfile, key=key, since=since, out=out, fmt=fmt)
    except TraceError as e:
        raise Failure(str(e), EXIT_USAGE) from None


# ---------------------------------------------------------------- bench


@cli.command()
@click.option("--config", "config", metavar="PATH", default=None,
              help="Measure this running cluster (default: start a temporary one).")
@click.option("--proposals", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--concurrency", type=click.IntRange(min=1), default=64, show_default=True,
              help="Proposals in flight at once.")
@click.option("--contended-keys", type=click.IntRange(min=1), default=4, show_default=True,
              help="Keys shared by every proposal in the contended run.")
@click.option("--value-size", type=click.IntRange(min=1, max=1 << 19), default=16,
              show_default=True, help="Bytes per value.")
@click.option("--cli-runs", type=click.IntRange(min=0), default=10, show_default=True,
              help="Whole `zpaxos propose` processes to time (0 to skip).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(config: str | None, proposals: int, concurrency: int, contended_keys: int,
          value_size: int, cli_runs: int, as_json: bool) -> None:
    """Measure decisions per second and latency, end to end on real sockets."""
    from zpaxos.lab import bench as b
    from zpaxos.runtime.config import ConfigError
    from zpaxos.lab.launcher import NodeStartError

    try:
        result = b.run_bench(config, proposals, concurrency, contended_keys, value_size, cli_runs)
    except ConfigError as e:
        raise Failure(str(e), EXIT_USAGE) from None
    except (NodeStartError, RuntimeError) as e:
        raise Failure(str(e)) from None
    click.echo(b.as_json(result) if as_json else b.report(result))


# ---------------------------------------------------------------- entry point


def _fail(command: str, message: str, code: int) -> NoReturn:
    click.echo(f"{command}: error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: click in non-standalone mode so every error is one line."""
    args = sys.argv[1:] if argv is None else argv
    command = "zpaxos" + (f" {args[0]}" if args and not args[0].startswith("-") else "")
    try:
        rv = cli.main(args=args, prog_name="zpaxos", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else str(e), err=True)
        sys.exit(EXIT_USAGE)
    except click.UsageError as e:
        hint = f" (see '{command} --help')"
        _fail(command, e.format_message() + hint, EXIT_USAGE)
    except click.ClickException as e:
        _fail(command, e.format_message(), e.exit_code)
    except Failure as e:
        _fail(command, str(e), e.code)
    except (KeyboardInterrupt, click.Abort):
        click.echo(f"{command}: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(rv if isinstance(rv, int) else 0)
