"""``zpaxos members``: the cluster's membership, and changing it while it serves.

Wiring only: the configuration chain is zpaxos/runtime/members.py, the steps and their
waits zpaxos/runtime/reconfig.py, the rules zpaxos/protocol/membership.py. See
docs/membership.md ("What the operator sees")."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from zpaxos.cli.common import Failure, load_cluster, open_log
from zpaxos.cli.options import CLIENT_KEY, CONFIG, JSON, click_option
from zpaxos.runtime.exits import Exit

if TYPE_CHECKING:
    from zpaxos.protocol.membership import Config, Member
    from zpaxos.runtime.client import Client


@click.group(invoke_without_command=True)
@click_option(CONFIG)
@click_option(CLIENT_KEY)
@click_option(JSON)
@click.pass_context
def members(ctx: click.Context, config: str | None, client_key: Path | None,
            as_json: bool) -> None:
    """List the members, the epoch and each member's catch-up state (or change them:
    add, remove, replace)."""
    ctx.obj = {"config": config, "client_key": client_key}
    if ctx.invoked_subcommand is not None:
        return
    with _client(config, client_key) as client:
        infos = client.ask_members()
        cfg = client.members
        rows = []
        for n in client.cluster.nodes:
            info = infos.get(n.id)
            rows.append({"id": n.id, "address": n.address, "reachable": info is not None,
                         "epoch": info.epoch if info else None,
                         "caught_up": info.caught_up if info else None,
                         "decided": info.decided if info else None,
                         "prepare": cfg is None or n.id in cfg.prepare,
                         "accept": cfg is None or n.id in cfg.accept})
    if as_json:
        click.echo(json.dumps({"epoch": cfg.epoch if cfg else 0, "members": rows,
                               "prepare_quorum": cfg.prepare_quorum if cfg else None,
                               "accept_quorum": cfg.accept_quorum if cfg else None}))
        return
    from zpaxos.runtime import members as chain

    click.echo(chain.describe(cfg) if cfg else
               "epoch 0: no configuration recorded yet (the config file's nodes)")
    for r in rows:
        votes = "+".join(p for p in ("prepare", "accept") if r[p]) or "no vote"
        state = ("not reachable" if not r["reachable"] else
                 f"epoch {r['epoch']}, {'caught up' if r['caught_up'] else 'catching up'}, "
                 f"{r['decided']} decided keys")
        click.echo(f"  node{r['id']}  {r['address']:<22} {votes:<15} {state}")
    if not any(r["reachable"] for r in rows):
        raise Failure("no node answered: is the cluster running?")


def _client(config: str | None, client_key: Path | None) -> Client:
    from zpaxos.runtime.client import Client
    from zpaxos.runtime.config import ConfigError

    cluster = load_cluster(config)
    log = open_log(cluster, "members", quiet=True)
    try:
        return Client(cluster, log, key_file=client_key, fast=False)
    except ConfigError as e:
        raise Failure(str(e), Exit.USAGE) from None


def _member(node_id: int, host: str, port: int, public_key: Path | None) -> Member:
    from zpaxos.protocol.membership import Member
    from zpaxos.runtime.config import host_problem
    from zpaxos.runtime.security import KeyFileError, load_public

    problem = host_problem(host)
    if problem:
        raise Failure(f"--host: {host!r} {problem}", Exit.USAGE)
    key = None
    if public_key is not None:
        try:
            key = load_public(public_key).decode()
        except KeyFileError as e:
            raise Failure(f"--public-key: {e}", Exit.USAGE) from None
    return Member(node_id, host, port, key)


def _reconfigure(obj: dict[str, Any], config: str | None, client_key: Path | None,
                 change: str, goal_of: Any, new: Member | None = None) -> None:
    """Run the change to its end: each step said on stderr, a catch-up as a bar.
    ``new``: the member the change brings in (with CURVE it needs its key)."""
    if new is not None and new.public_key is None and \
            load_cluster(config or obj["config"]).security.curve:
        raise Failure(f"--public-key: required with CURVE (node{new.id}'s public key file, "
                      f"made by zpaxos keygen)", Exit.USAGE)
    from zpaxos.lab.progress import Progress
    from zpaxos.runtime import members as chain
    from zpaxos.runtime.client import Interrupted
    from zpaxos.runtime.reconfig import ReconfigError, Runner, Waiting
    from zpaxos.runtime.sockets import SignalWakeup

    last: list[str] = [""]
    bars: dict[str, Progress] = {}

    def say(line: str) -> None:
        for bar in bars.values():
            bar.close()
        bars.clear()
        click.echo(f"members {change}: {line}", err=True)

    def wait(w: Waiting) -> None:
        if w.what != last[0]:
            last[0] = w.what
            say(f"waiting for {w.what}")
        if w.total:
            bar = bars.get(w.what) or bars.setdefault(w.what, Progress("  keys", w.total))
            bar.total = w.total
            bar.step(w.done - bar.done)

    wakeup = SignalWakeup()
    wakeup.install()
    try:
        with _client(config or obj["config"], client_key or obj["client_key"]) as client:
            client.sockets.use_wakeup(wakeup)
            runner = Runner(client, say, wait)
            try:
                cfg = runner.current()
                done = runner.run(goal_of(cfg))
            except (ReconfigError, ValueError) as e:
                raise Failure(str(e)) from None
            except Interrupted:
                where = chain.describe(client.members) if client.members else "epoch 0"
                raise Failure(f"interrupted; the cluster is in {where}: run the command "
                              f"again to finish the change", Exit.INTERRUPTED) from None
    finally:
        wakeup.close()
    say(f"done: {chain.describe(done)}")


def _new_node_options(f: Callable[..., None]) -> Callable[..., None]:
    """Where the new node of ``add`` and ``replace`` is reached, and its CURVE key."""
    for option in reversed([
            click.option("--host", required=True, help="Where the others reach the new node."),
            click.option("--port", required=True, type=click.IntRange(min=1, max=65535)),
            click.option("--public-key", "public_key", type=click.Path(path_type=Path),
                         default=None,
                         help="With CURVE: the new node's public key file (zpaxos keygen).")]):
        f = option(f)
    return f


@members.command("add")
@click_option(CONFIG)
@click_option(CLIENT_KEY)
@click.argument("node_id", metavar="ID", type=click.IntRange(min=0, max=9999))
@_new_node_options
@click.pass_obj
def add(obj: dict[str, Any], config: str | None, client_key: Path | None, node_id: int,
        host: str, port: int, public_key: Path | None) -> None:
    """Add node ID: it joins the accept side, catches up, then votes in both phases.
    Start it with `zpaxos node ID --join` once the command says it waits for it."""
    new = _member(node_id, host, port, public_key)

    def goal(cfg: Config) -> tuple[Member, ...]:
        old = cfg.member(node_id)
        if old is not None and old != new:
            raise Failure(f"node{node_id} is already a member at {old.host}:{old.port} "
                          f"(to move it, use 'zpaxos members replace')")
        return (*[m for m in cfg.members if m.id != node_id], new)

    _reconfigure(obj, config, client_key, "add", goal, new)


@members.command("remove")
@click_option(CONFIG)
@click_option(CLIENT_KEY)
@click.argument("node_id", metavar="ID", type=click.IntRange(min=0, max=9999))
@click.pass_obj
def remove(obj: dict[str, Any], config: str | None, client_key: Path | None,
           node_id: int) -> None:
    """Remove node ID: it stops voting in phase 1, then leaves (and stops)."""
    def goal(cfg: Config) -> tuple[Member, ...]:
        rest = tuple(m for m in cfg.members if m.id != node_id)
        if not rest:
            raise Failure("the last member cannot be removed")
        return rest

    _reconfigure(obj, config, client_key, "remove", goal)


@members.command("replace")
@click_option(CONFIG)
@click_option(CLIENT_KEY)
@click.argument("node_id", metavar="ID", type=click.IntRange(min=0, max=9999))
@_new_node_options
@click.pass_obj
def replace(obj: dict[str, Any], config: str | None, client_key: Path | None, node_id: int,
            host: str, port: int, public_key: Path | None) -> None:
    """Replace node ID (a dead disk): the old one is removed, then a new node with an
    empty data directory is added under the same id at HOST:PORT. It never votes with
    state it does not have: it catches up first, as a --new node does."""
    new = _member(node_id, host, port, public_key)

    def goal(cfg: Config) -> tuple[Member, ...]:
        # Already there: the change is done (a rerun), or the new node has the dead
        # one's very address (then: members remove ID, then members add ID).
        if cfg.member(node_id) == new:
            return cfg.members
        return (*[m for m in cfg.members if m.id != node_id], new)

    _reconfigure(obj, config, client_key, "replace", goal, new)


COMMANDS = (members,)
