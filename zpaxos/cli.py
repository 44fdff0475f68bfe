"""The ``zpaxos`` command: wiring only (parse, load config, call the library, print).

Imports are deferred into each command so that a short-lived ``zpaxos propose`` loads
only what it needs. A user's mistake (bad option, bad config, port in use, damaged
state) is one line on stderr and a non-zero exit, never a traceback:

    exit 0   success (propose: a value was chosen, whichever it is; status: every node
             answered)
    exit 1   the operation failed (propose: nothing chosen in time, or refused by too
             many nodes; node: cannot run, e.g. port in use or data directory locked by
             another process; status: a majority of nodes did not answer)
    exit 2   usage or configuration error
    exit 3   status: some nodes did not answer, but a majority did (the cluster can
             still choose values)
    exit 3-7 node: a storage error (zpaxos.runtime.storage_errors: damaged, state lost,
             not writable, disk full, changed underneath)
    exit 130 interrupted (Ctrl-C)

Everything printed for people passes through ``zpaxos.printable``, so a value holding
a newline or a terminal escape cannot break a line, a table row or a log line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from zpaxos.cli_sim import sim as sim_command
from zpaxos.proposecmd import (  # the propose command's work, without click
    EXIT_DEGRADED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Failure,
    Usage,
    _load,
    _logging,
    _named,
    _print_outcome,
    _value,
    result_line,
    run_propose,
)

__all__ = ["EXIT_DEGRADED", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_USAGE", "Failure", "cli",
           "main", "result_line", "_load", "_logging", "_named", "_print_outcome", "_value"]

config_option = click.option(
    "--config", "config", metavar="PATH", default=None,
    help="Cluster file (default: $ZPAXOS_CONFIG, else configs/cluster.ini).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zpaxos")
def cli() -> None:
    """zpaxos: Basic Paxos over ZeroMQ. Run three nodes, then propose values."""


cli.add_command(sim_command)  # zpaxos/cli_sim.py


# ---------------------------------------------------------------- node


@cli.command()
@click.argument("node_id", metavar="ID", type=click.IntRange(min=0))
@config_option
@click.option("-q", "--quiet", is_flag=True, help="Log to the log file only, not to stderr.")
@click.option("--new", "new", is_flag=True,
              help="Start empty on purpose over LOST or damaged state (old files are moved "
                   "to DATA_DIR/retired-*); see 'Operating zpaxos' in the README first.")
@click.option("--metrics-port", "metrics_port", type=click.IntRange(min=1, max=65535),
              default=None, metavar="PORT",
              help="Serve Prometheus metrics on this port (at [metrics] host; default: "
                   "[node.N] metrics_port, else [metrics] port, else none).")
def node(node_id: int, config: str | None, quiet: bool, new: bool,
         metrics_port: int | None) -> None:
    """Run node ID of the cluster in the foreground until Ctrl-C or SIGTERM."""
    import logging

    from zpaxos.runtime.config import ConfigError
    from zpaxos.runtime.node import Node
    from zpaxos.runtime.sockets import BindError
    from zpaxos.runtime.storage import SqliteStore, StorageError

    cluster = _load(config)
    try:
        cfg = cluster.node(node_id)
        cluster.node_keys(node_id)  # its CURVE keys, before anything is opened
    except ConfigError as e:
        raise Failure(str(e), EXIT_USAGE) from None
    log = _logging(cluster, cfg.name, quiet)
    import signal

    from zpaxos.runtime.log import reopen_logs

    # logrotate: move paxos.log aside, then SIGHUP; the next record opens a new file.
    signal.signal(signal.SIGHUP, lambda *_: reopen_logs())
    store = None
    try:
        # The store takes the data directory's lock first and holds it until n.close().
        store = SqliteStore(cfg.data_dir, new=new)
        n = Node(cluster, node_id, log, store, new=new,
                 metrics_at=cluster.metrics_address(node_id, metrics_port))
    except StorageError as e:
        if store is not None:
            store.close()
        raise Failure(f"{cfg.name}: {e}", e.exit_code) from None
    if store.retired is not None:
        log.event("started_new", "started empty on purpose (--new)",
                  retired=str(store.retired), incarnation=store.incarnation.hex())
        click.echo(f"{cfg.name}: started empty on purpose (--new); the old state files are "
                   f"in {store.retired}", err=True)

    from zpaxos.printable import printable

    def ready(_n: Any) -> None:
        # With [node.N] bind, say both: where it listens and where the others reach it.
        reached = f", reached at {cfg.endpoint}" if cfg.bind is not None else ""
        serving = n.metrics.serving if n.metrics is not None else None
        click.echo(f"{cfg.name} listening on {cfg.bind_endpoint}{reached} "
                   f"(data in {printable(str(cfg.data_dir))}, "
                   f"{n.keys_known} keys known"
                   f"{f', metrics on {serving.url}' if serving else ''}); Ctrl-C to stop")
        sys.stdout.flush()

    try:
        n.run(on_ready=ready)
    except BindError as e:
        hint = ""
        if not e.in_use and e.node_address:  # which key the address came from, what to do
            hint = (f" ([node.{node_id}] bind)" if cfg.bind is not None else
                    f" ([node.{node_id}] host: if the others reach this node at an address "
                    f"it cannot listen on, set [node.{node_id}] bind = 0.0.0.0 or one of its "
                    f"own addresses)")
        raise Failure(f"{cfg.name}: {e}{hint}") from None
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


client_key_option = click.option(
    "--client-key", "client_key", metavar="PATH", default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="With CURVE: this client's secret key file (default: [security] client_key).")


@cli.command()
@click.argument("value", required=False)
@click.option("--value-file", "value_file", metavar="PATH", default=None,
              help="Read the value from PATH ('-' for stdin) instead of VALUE.")
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
@click.option("--first-round", type=click.IntRange(min=1, max=1 << 31), default=None,
              metavar="N", help="Staging: start at round N, so this proposer's ballots "
              "are above (or below) another's whatever the random proposer ids.")
@click.option("--max-rounds", type=click.IntRange(min=1), default=None, metavar="N",
              help="Give up after N ballots (default from the config).")
@click.option("--timeout", type=click.FloatRange(min=0.001, max=1e9), default=None,
              metavar="S", help="Whole-proposal deadline in seconds (default from the config).")
@click.option("--round-timeout", type=click.FloatRange(min=0.001, max=1e9), default=None,
              metavar="S", help="Wait this long for a quorum in one phase.")
@click.option("--backoff", type=seconds, default=None, metavar="S",
              help="Base of the randomized retry backoff; 0 retries at once.")
@config_option
@client_key_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("-v", "--verbose", is_flag=True,
              help="Show every message sent and received on stderr, not one line per round.")
@click.option("-q", "--quiet", is_flag=True,
              help="Print only the result: nothing on stderr (the log file gets everything).")
def propose(value: str | None, value_file: str | None, key: str | None, delay: float,
            pause_between_phases: float | None, prepare_delay: dict, accept_delay: dict,
            first_round: int | None, max_rounds: int | None,
            timeout: float | None, round_timeout: float | None, backoff: float | None,
            config: str | None, client_key: Path | None, as_json: bool, verbose: bool,
            quiet: bool) -> None:
    """Propose VALUE; print the value chosen and how.

    The value chosen is this one (chosen now), an earlier proposal's value it had to adopt
    (chosen now), or a value already chosen; the ballot printed is the one that chose it.

    On stderr it shows one line per round (its Prepares and Promises, Accepts and
    Accepteds); -v shows every message instead, -q nothing. The log file always gets
    every event.
    """
    try:
        run_propose(value, value_file, key, delay, pause_between_phases, prepare_delay,
                    accept_delay, first_round, max_rounds, timeout, round_timeout, backoff,
                    config, client_key, as_json, verbose, quiet)
    except Usage as e:
        raise click.UsageError(str(e)) from None


# ---------------------------------------------------------------- status


@cli.command()
@config_option
@client_key_option
@click.option("--key", default=None, callback=_key_param, help="Show only this key.")
@click.option("--register", default=None, callback=_key_param, metavar="NAME",
              help="Show only this register (registers show as @NAME, with their version).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--timeout", type=click.FloatRange(min=0.01, max=60), default=1.0, metavar="S",
              help="How long to wait for each node (default 1 s).")
@click.option("--ranges", "list_ranges", is_flag=True,
              help="List each node's range promises (prefix and ballot), not only their count.")
def status(config: str | None, client_key: Path | None, key: str | None, register: str | None,
           as_json: bool, timeout: float, list_ranges: bool) -> None:
    """Show every node's state; exit code tells the cluster's health.

    Per node: reachable or not; per key: promised and accepted ballots, accepted value,
    chosen value.

    Like `etcdctl endpoint health`, the exit code tells the cluster's health: 0 every
    node answered; 3 some did not, but a majority did (values can still be chosen);
    1 a majority did not answer (nothing can be chosen).
    """
    from zpaxos.pictures.statusview import ranges_lines, status_json, status_table
    from zpaxos.protocol.core import quorum_size
    from zpaxos.runtime.client import Client
    from zpaxos.runtime.config import ConfigError
    from zpaxos.runtime.log import null_log

    cluster = _load(config)
    if register is not None:
        key = "@" + register  # a register's slot (zpaxos/protocol/regmessages.py)
    # The log file, not stderr: a reply that cannot be read is logged there (and its
    # node's row says so); status traffic itself is DEBUG. Status still runs where the
    # log cannot be opened (a read-only directory): the rows then say it alone.
    try:
        log = _logging(cluster, "status", quiet=True)
    except Failure:
        log = null_log("status")
    try:
        with Client(cluster, log, key_file=client_key) as client:
            nodes = client.status(key, timeout)
    except ConfigError as e:  # the client's CURVE key
        raise Failure(str(e), EXIT_USAGE) from None
    click.echo(status_json(nodes) if as_json else status_table(nodes, key))
    if not as_json:
        for line in ranges_lines(nodes, list_ranges):
            click.echo(line)
    up = sum(n.reachable for n in nodes)
    if up < quorum_size(len(nodes)):
        sys.exit(EXIT_FAILED)
    if up < len(nodes):
        sys.exit(EXIT_DEGRADED)


# ---------------------------------------------------------------- keygen


class _KeygenCommand(click.Command):
    """Its usage line shows the two ways to call it: DIR is needed only without --config
    (click would print a bare, required-looking DIR)."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return ["(DIR --name NAME... | --config PATH) [--force]"]


@cli.command(cls=_KeygenCommand)
@click.argument("directory", metavar="DIR", required=False,
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", "names", multiple=True, metavar="NAME",
              help="Make NAME.key and NAME.key_secret in DIR (repeatable).")
@click.option("--config", "config", metavar="PATH", default=None,
              help="Make every key this cluster file names that does not exist yet.")
@click.option("--force", is_flag=True, help="Replace keys that exist (default: keep them).")
def keygen(directory: Path | None, names: tuple[str, ...], config: str | None,
           force: bool) -> None:
    """Make CURVE key pairs (ZeroMQ certificates): DIR --name NAME..., or --config FILE.

    NAME.key is the public key (share it); NAME.key_secret holds both keys and is
    created mode 0600. An existing key is kept unless --force.
    """
    from zpaxos.runtime.security import KeyFileError
    from zpaxos.runtime.security import keygen as make

    if config is not None:
        if directory is not None or names:
            raise click.UsageError("--config makes the keys the cluster file names; give "
                                   "either --config or DIR --name NAME")
        jobs = _keys_of_config(config)
        if not jobs:
            raise Failure(f"{config}: [security] curve is not true: no keys to make",
                          EXIT_USAGE)
    else:
        if directory is None or not names:
            raise click.UsageError("give a directory and at least one --name (or --config)")
        jobs = [(directory, n) for n in names]
    made = 0
    for d, name in jobs:
        exists = (d / f"{name}.key").exists() or (d / f"{name}.key_secret").exists()
        if exists and config is not None and not force:
            continue  # --config makes what is missing
        try:
            public, secret = make(d, name, force)
        except KeyFileError as e:
            raise Failure(str(e), EXIT_USAGE) from None
        except OSError as e:
            raise Failure(f"{d}: cannot write keys ({e.strerror})", EXIT_USAGE) from None
        made += 1
        click.echo(f"{public} (public), {secret} (secret, mode 600)")
    if not made:
        click.echo("every key exists already (use --force to replace them)")


def _keys_of_config(config: str) -> list[tuple[Path, str]]:
    """(directory, name) of each key file a cluster file names, read without loading
    the keys (which may not exist yet)."""
    import configparser

    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None)
    try:
        with open(config, encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as e:
        raise Failure(f"{config}: cannot read ({e})", EXIT_USAGE) from None
    sec = parser["security"] if parser.has_section("security") else {}
    if str(sec.get("curve", "false")).strip().lower() not in ("true", "yes", "on", "1"):
        return []
    files = [parser[s].get("secret_key", "") for s in parser.sections() if s.startswith("node.")]
    files.append(sec.get("client_key", ""))
    jobs = []
    for raw in files:
        raw = raw.strip()
        if raw:
            path = Path(raw)
            jobs.append((path.parent, path.name.removesuffix(".key_secret")))
    return jobs


# ---------------------------------------------------------------- trace


@cli.command()
@click.argument("logfile", metavar="LOGFILE")
@click.option("--key", default=None, callback=_key_param, help="Chart only this key.")
@click.option("--since", default=None, metavar="TIME",
              help="Only events at or after TIME (epoch seconds, ISO date-time, or HH:MM:SS).")
@click.option("--out", default=None, metavar="FILE",
              help="Write the chart to FILE (.svg, .html or .txt) instead of the terminal.")
@click.option("--format", "fmt", type=click.Choice(["svg", "html", "text"]), default=None,
              help="svg, html (a page to step through the run) or text (default: from"
                   " --out's extension; text to the terminal).")
def trace(logfile: str, key: str | None, since: str | None, out: str | None,
          fmt: str | None) -> None:
    """Draw a message sequence chart of a run from its JSON log."""
    from pathlib import Path

    from zpaxos.pictures.chartmodel import clock, parse_since, select
    from zpaxos.pictures.draw import output_format, refuse_terminal, render
    from zpaxos.pictures.logmodel import TraceError, read_log

    try:
        fmt = output_format(out, fmt)
        refuse_terminal(out, fmt, sys.stdout)
        since_ts = parse_since(since) if since is not None else None
        model = read_log(logfile)
        if model.skipped:
            hint = (f"; {model.text_lines} look like text-format lines"
                    if model.text_lines else "")
            click.echo(f"zpaxos trace: skipped {model.skipped} line"
                       f"{'s' if model.skipped != 1 else ''} that are not zpaxos events "
                       f"(first: line {model.first_skipped}){hint}", err=True)
        charts = select(model, key, since_ts)
    except TraceError as e:
        raise Failure(str(e), EXIT_USAGE) from None
    for c in charts:
        if c.note:
            click.echo(f"zpaxos trace: key {c.key}: the {c.note}, from {clock(c.start)}; "
                       f"use --since to pick another", err=True)
    ascii_only = out is None and not _can_draw_boxes(sys.stdout)
    doc = render(charts, fmt, logfile, ascii_only=ascii_only, model=model)
    if out is None:
        click.echo(doc, nl=not doc.endswith("\n"))
        return
    try:
        Path(out).write_text(doc, encoding="utf-8")
    except OSError as e:
        raise Failure(f"cannot write {out}: {e.strerror}", EXIT_USAGE) from None
    keys = ", ".join(c.key for c in charts[:5])
    if len(charts) > 5:
        keys = f"{len(charts)} keys ({keys}, ...)"
    click.echo(f"wrote {fmt} chart{'s' if len(charts) > 1 else ''} of {keys} to {out}")


def _can_draw_boxes(stream: Any) -> bool:
    """Whether the terminal's encoding has the text chart's box-drawing characters."""
    try:
        "─▶◀│★◌".encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


# ---------------------------------------------------------------- log


@cli.command("log")
@click.argument("logfile", metavar="LOGFILE")
@click.option("--key", default=None, callback=_key_param, help="Show only events of this key.")
def log_(logfile: str, key: str | None) -> None:
    """Print a JSON log as readable text lines.

    LOGFILE is what nodes and proposers write (paxos.log); the lines are the ones they
    show on stderr. Values are escaped, so each event stays on one line.
    """
    import json

    from zpaxos.printable import printable
    from zpaxos.runtime.log import _TextFormatter

    try:
        f = open(logfile, encoding="utf-8", errors="backslashreplace")
    except OSError as e:
        raise Failure(f"{logfile}: cannot read ({e.strerror})", EXIT_USAGE) from None
    with f:
        for raw in f:
            raw = raw.rstrip("\n")
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):  # a text line, or one cut short by a kill -9
                if key is None and raw:
                    click.echo(printable(raw))
                continue
            if key is not None and obj.get("key") != key:
                continue
            click.echo(_TextFormatter.from_json(obj))


# ---------------------------------------------------------------- bench


@cli.command()
@click.option("--race-proposers", type=click.IntRange(min=0, max=16), default=3,
              show_default=True, metavar="P",
              help="Proposer processes racing on the same fresh keys (0: no race).")
@click.option("--race-keys", type=click.IntRange(min=1), default=200, show_default=True,
              metavar="N", help="Fresh keys they race on.")
@click.option("--million", type=click.IntRange(min=1), default=None, metavar="N",
              help="Instead: a node holding N decided keys (e.g. 1000000), its memory and "
                   "its restart time.")
@click.option("--config", "config", metavar="PATH", default=None,
              help="Measure this running cluster (default: start a temporary one).")
@click.option("--proposals", type=click.IntRange(min=1), default=2000, show_default=True,
              metavar="N", help="Proposals in each of the three runs.")
@click.option("--concurrency", type=click.IntRange(min=1), default=64, show_default=True,
              metavar="C", help="Proposals in flight at once.")
@click.option("--contended-keys", type=click.IntRange(min=1), default=4, show_default=True,
              metavar="K", help="Keys shared by every proposal in the contended run.")
@click.option("--value-size", type=click.IntRange(min=1, max=1 << 19), default=16,
              show_default=True, metavar="BYTES", help="Bytes per value.")
@click.option("--cli-runs", type=click.IntRange(min=0), default=10, show_default=True,
              metavar="N", help="Whole `zpaxos propose` processes to time (0 to skip).")
@click.option("--curve", is_flag=True,
              help="Also run on a temporary cluster with CURVE on, to compare (not with --config).")
@click.option("--fast", is_flag=True,
              help="Skip phase 1 for fresh keys through range promises (the Python API's "
                   "default; `zpaxos propose` never does).")
@click.option("--registers", is_flag=True,
              help="Measure registers instead: set, cas, get; contended or not; 1-RTT on/off "
                   "(--proposals operations per run, --concurrency registers).")
@click.option("--metrics-port", "metrics_port", type=click.IntRange(min=1, max=65535),
              default=None, metavar="PORT",
              help="Serve the benchmark client's Prometheus metrics on this port while it "
                   "runs (at [metrics] host of --config, else 127.0.0.1).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(config: str | None, proposals: int, concurrency: int, contended_keys: int,
          value_size: int, cli_runs: int, curve: bool, fast: bool, registers: bool,
          as_json: bool, race_proposers: int, race_keys: int, million: int | None,
          metrics_port: int | None) -> None:
    """Measure decisions per second and latency.

    End to end on real sockets; without --config on a temporary 3-node cluster.
    """
    from zpaxos.lab import bench as b
    from zpaxos.lab.launcher import NodeStartError
    from zpaxos.runtime.config import ConfigError

    if registers:
        from zpaxos.lab import regbench

        try:
            result = regbench.run_register_bench(config, proposals, concurrency,
                                                 contended_keys, value_size)
        except ConfigError as e:
            raise Failure(str(e), EXIT_USAGE) from None
        except (NodeStartError, RuntimeError) as e:
            raise Failure(str(e)) from None
        click.echo(b.as_json(result) if as_json else regbench.report(result))
        return
    if million is not None:
        from zpaxos.lab import million as m

        if config is not None:
            raise Failure("--million builds its own temporary cluster; it cannot be combined "
                          "with --config", EXIT_USAGE)
        try:
            mr = m.run_million(million)
        except (NodeStartError, RuntimeError) as e:
            raise Failure(str(e)) from None
        click.echo(b.as_json(mr) if as_json else m.report(mr))
        return
    metrics = None
    if metrics_port is not None:
        from zpaxos.runtime.config import MetricsConfig, load_config
        from zpaxos.runtime.metrics import ClientMetrics
        from zpaxos.runtime.sockets import BindError

        try:
            host = (load_config(config).metrics if config else MetricsConfig()).host
            metrics = ClientMetrics()
            metrics.serve(host, metrics_port)
        except ConfigError as e:
            raise Failure(str(e), EXIT_USAGE) from None
        except BindError as e:
            raise Failure(str(e)) from None
    try:
        result = b.run_bench(config, proposals, concurrency, contended_keys, value_size, cli_runs,
                             curve, fast, race_proposers=race_proposers,
                             race_keys=race_keys, metrics=metrics)
    except ConfigError as e:
        raise Failure(str(e), EXIT_USAGE) from None
    except (NodeStartError, RuntimeError) as e:
        raise Failure(str(e)) from None
    finally:
        if metrics is not None:
            metrics.close()
    click.echo(b.as_json(result) if as_json else b.report(result))


# ---------------------------------------------------------------- entry point


# ---------------------------------------------------------------- registers

def _add_register_commands() -> None:
    """get, set, cas, delete: rewritable registers (zpaxos/regcli.py)."""
    from zpaxos.regcli import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_add_register_commands()


def _add_transfer_commands() -> None:
    """export, import: JSON lines through the protocol (zpaxos/transfercli.py)."""
    from zpaxos.transfercli import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_add_transfer_commands()


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
        sys.exit(EXIT_USAGE)
    except click.UsageError as e:
        _fail(command, printable(_usage_hint(args, e.format_message())[1]), EXIT_USAGE)
    except click.ClickException as e:
        _fail(command, printable(e.format_message()), e.exit_code)
    except Failure as e:
        _fail(command, printable(str(e)), e.code)
    except (KeyboardInterrupt, click.Abort):
        click.echo(f"{command}: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:  # `zpaxos log paxos.log | head`: the reader has gone; fine
        sys.stderr.close()
        sys.exit(0)
    sys.exit(rv if isinstance(rv, int) else 0)
