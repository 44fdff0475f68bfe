"""``zpaxos node``, ``status`` and ``keygen``: running the cluster, looking at it, and
making its CURVE keys. Wiring only: the node is zpaxos/runtime/node.py, the status table
zpaxos/pictures/statusview.py, the keys zpaxos/runtime/security.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from zpaxos.cli.common import Failure, load_cluster, open_log
from zpaxos.cli.options import CLIENT_KEY, CONFIG, JSON, click_option, key_param
from zpaxos.runtime.exits import Exit

# ---------------------------------------------------------------- node


@click.command()
@click.argument("node_id", metavar="ID", type=click.IntRange(min=0))
@click_option(CONFIG)
@click.option("-q", "--quiet", is_flag=True, help="Log to the log file only, not to stderr.")
@click.option("--new", "new", is_flag=True,
              help="Start empty on purpose over LOST or damaged state (old files are moved "
                   "to DATA_DIR/retired-*); see 'Rejoining empty' in docs/operating.md first.")
@click.option("--metrics-port", "metrics_port", type=click.IntRange(min=1, max=65535),
              default=None, metavar="PORT",
              help="Serve Prometheus metrics on this port (at [metrics] host; default: "
                   "[node.N] metrics_port, else [metrics] port, else none).")
@click.option("--join", "join", is_flag=True,
              help="Join a running cluster that added this node ('zpaxos members add'): "
                   "learn its configuration from the config file's other nodes; an empty "
                   "data directory catches up before it votes.")
def node(node_id: int, config: str | None, quiet: bool, new: bool,
         metrics_port: int | None, join: bool) -> None:
    """Run node ID of the cluster in the foreground until Ctrl-C or SIGTERM."""
    import logging

    from zpaxos.runtime.config import ConfigError
    from zpaxos.runtime.node import Node
    from zpaxos.runtime.sockets import BindError
    from zpaxos.runtime.storage import SqliteStore, StorageError

    cluster = load_cluster(config)
    try:
        cfg = cluster.node(node_id)
        cluster.node_keys(node_id)  # its CURVE keys, before anything is opened
    except ConfigError as e:
        raise Failure(str(e), Exit.USAGE) from None
    log = open_log(cluster, cfg.name, quiet)
    import signal

    from zpaxos.runtime.log import reopen_logs

    # logrotate: move paxos.log aside, then SIGHUP; the next record opens a new file.
    signal.signal(signal.SIGHUP, lambda *_: reopen_logs())
    members = _join(cluster, node_id) if join else None
    store = None
    try:
        # The store takes the data directory's lock first and holds it until n.close().
        store = SqliteStore(cfg.data_dir, new=new)
        # Joining with nothing: a fresh incarnation, which votes only once every peer
        # took it and it synced every decision (the --new machinery, docs/operating.md).
        empty = join and store.commit_seq == 0 and store.count() == 0
        n = Node(cluster, node_id, log, store, new=new or empty,
                 metrics_at=cluster.metrics_address(node_id, metrics_port), members=members)
    except StorageError as e:
        if store is not None:
            store.close()
        raise Failure(f"{cfg.name}: {e}", e.exit_code) from None
    except ConfigError as e:  # not a member of the cluster's configuration
        if store is not None:
            store.close()
        raise Failure(str(e), Exit.USAGE) from None
    if store.retired is not None:
        log.event("started_new", "started empty on purpose (--new)",
                  retired=str(store.retired), incarnation=store.incarnation.hex())
        click.echo(f"{cfg.name}: started empty on purpose (--new); the old state files are "
                   f"in {store.retired}", err=True)

    from zpaxos.printable import printable
    from zpaxos.runtime.gctune import own_process_gc

    def ready(_n: Any) -> None:
        # This process is ours: what the node loaded is frozen out of the collector's
        # way, and its young generation collected less often (runtime/gctune.py).
        own_process_gc()
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
    if n.removed_at is not None:
        click.echo(f"{cfg.name} stopped: removed from the cluster (epoch {n.removed_at})")
        return
    click.echo(f"{cfg.name} stopped")


def _join(cluster: Any, node_id: int) -> Any:
    """The cluster's configuration, as the config file's other nodes tell it."""
    from msgspec.structs import replace as with_nodes

    from zpaxos.runtime.client import Client
    from zpaxos.runtime.log import null_log

    seeds = with_nodes(cluster, nodes=tuple(n for n in cluster.nodes if n.id != node_id))
    if not seeds.nodes:
        raise Failure("--join: the config file names no other node to ask", Exit.USAGE)
    key = cluster.node(node_id).secret_key_file  # with CURVE: asks as the node it is
    with Client(seeds, null_log("join"), key_file=key, fast=False) as client:
        client.ask_members(2.0)
        cfg = client.members
    if cfg is None:
        raise Failure(f"--join: no node of {cluster.path} told a configuration (is the "
                      f"cluster running, and was 'zpaxos members add {node_id}' run?)")
    if cfg.member(node_id) is None:
        raise Failure(f"--join: node{node_id} is not a member (epoch {cfg.epoch}): run "
                      f"'zpaxos members add {node_id} --host H --port P' first", Exit.USAGE)
    return cfg


# ---------------------------------------------------------------- status

MEMBERS_ASK_S = 0.5  # status first asks the members for the configuration: this long at most


@click.command()
@click_option(CONFIG)
@click_option(CLIENT_KEY)
@click.option("--key", default=None, callback=key_param, help="Show only this key.")
@click.option("--register", default=None, callback=key_param, metavar="NAME",
              help="Show only this register (registers show as @NAME, with their version).")
@click_option(JSON)
@click.option("--timeout", type=click.FloatRange(min=0.01, max=60), default=1.0, metavar="S",
              help="How long to wait for each node (default 1 s).")
@click.option("--ranges", "list_ranges", is_flag=True,
              help="List each node's range promises (prefix and ballot), not only their count.")
def status(config: str | None, client_key: Path | None, key: str | None, register: str | None,
           as_json: bool, timeout: float, list_ranges: bool) -> None:
    """Show every node's state; exit code tells the cluster's health.

    Per node: reachable or not; per key: promised and accepted ballots, accepted value,
    chosen value.

    The nodes are the cluster's current members (learned from the config file's nodes:
    see `zpaxos members`). Like `etcdctl endpoint health`, the exit code tells the
    cluster's health: 0 every node answered; 10 some did not, but a majority did (values
    can still be chosen); 1 a majority did not answer (nothing can be chosen).
    """
    from zpaxos.pictures.statusview import ranges_lines, status_json, status_table
    from zpaxos.protocol.core import quorum_size
    from zpaxos.runtime.client import Client
    from zpaxos.runtime.config import ConfigError
    from zpaxos.runtime.log import null_log

    cluster = load_cluster(config)
    if register is not None:
        key = "@" + register  # a register's slot (zpaxos/protocol/regmessages.py)
    # The log file, not stderr: a reply that cannot be read is logged there (and its
    # node's row says so); status traffic itself is DEBUG. Status still runs where the
    # log cannot be opened (a read-only directory): the rows then say it alone.
    try:
        log = open_log(cluster, "status", quiet=True)
    except Failure:
        log = null_log("status")
    try:
        with Client(cluster, log, key_file=client_key) as client:
            # The cluster's current members, once it has changed them (zpaxos members):
            # the config file's nodes are only where to ask.
            client.ask_members(min(timeout, MEMBERS_ASK_S))
            nodes = client.status(key, timeout)
    except ConfigError as e:  # the client's CURVE key
        raise Failure(str(e), Exit.USAGE) from None
    click.echo(status_json(nodes) if as_json else status_table(nodes, key))
    if not as_json:
        for line in ranges_lines(nodes, list_ranges):
            click.echo(line)
    up = sum(n.reachable for n in nodes)
    if up < quorum_size(len(nodes)):
        sys.exit(Exit.FAILED)
    if up < len(nodes):
        sys.exit(Exit.DEGRADED)


# ---------------------------------------------------------------- keygen


class _KeygenCommand(click.Command):
    """Its usage line shows the two ways to call it: DIR is needed only without --config
    (click would print a bare, required-looking DIR)."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return ["(DIR --name NAME... | --config PATH) [--force]"]


@click.command(cls=_KeygenCommand)
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
                          Exit.USAGE)
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
            raise Failure(str(e), Exit.USAGE) from None
        except OSError as e:
            raise Failure(f"{d}: cannot write keys ({e.strerror})", Exit.USAGE) from None
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
        raise Failure(f"{config}: cannot read ({e})", Exit.USAGE) from None
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



COMMANDS = (node, status, keygen)
