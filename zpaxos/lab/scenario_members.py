"""The membership scenarios (13-15): the cluster grows from 3 nodes to 5 while a
proposer runs, loses one again, and replaces a node whose data directory was deleted.
With a CURVE cluster (``run_scenarios.sh --config configs/cluster-secure.ini``) each new
node gets a key pair of its own, admitted through the configuration (``--public-key``).

Each scenario leaves the config file's nodes members and running, as the runner expects:
what it adds beyond them are the ids after theirs.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from zpaxos.lab.launcher import child_env, free_ports, wait_for, write_config, zpaxos_cmd
from zpaxos.lab.scenario_kit import Ctx, Failed, check
from zpaxos.naming import node_name
from zpaxos.runtime.config import load_config

COMMAND_TIMEOUT_S = 120.0  # one members command, start to done (a few seconds when quiet)


PACE_S = 0.1  # between two proposals of the scenarios' proposer: a chart stays readable


class Load:
    """A proposer running through a scenario: one proposal every PACE_S (at most
    ``limit``), each of a fresh key; every one must be chosen."""

    def __init__(self, ctx: Ctx, prefix: str, limit: int = 1000) -> None:
        self.ctx, self.prefix, self.limit = ctx, prefix, limit
        self.done = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # `zpaxos propose` processes, one after another, in the cluster's directory (its
        # file's relative paths, CURVE keys included, are from there)
        for i in range(self.limit):
            if self._stop.is_set():
                return
            r = self.ctx.cluster.propose(f"v{i}", "--key", f"{self.prefix}-{i}")
            self.done += 1
            if r.code != 0:
                self.failed.append(f"{self.prefix}-{i}: exit {r.code} {r.err.strip()[-200:]}")
            self._stop.wait(PACE_S)

    def __enter__(self) -> Load:
        self._thread.start()
        wait_for(lambda: self.done > 0 or not self._thread.is_alive(), "a first decision", 20)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def check(self) -> str:
        check(not self.failed, f"{len(self.failed)} proposals failed: {self.failed[:2]}")
        return f"{self.done} proposals, none failed"


def _members_file(ctx: Ctx, n: int, moved: dict[int, int] | None = None) -> Path:
    """A cluster file naming nodes 0..n-1 (the config file's, then new ones on free
    ports, remembered in ctx.workdir/members-ports), ``moved``: node -> another port."""
    ports_file = ctx.workdir / "members-ports"
    known = [int(p) for p in ports_file.read_text().split()] if ports_file.exists() else []
    base = [node.port for node in ctx.cfg.nodes]
    extra = known + free_ports(max(0, n - len(base) - len(known)))
    ports_file.write_text(" ".join(map(str, extra)))
    ports = (base + extra)[:n]
    for i, port in (moved or {}).items():
        ports[i] = port
    secure = ctx.cfg.security.curve
    if secure:
        from zpaxos.runtime.security import keygen

        for i in range(len(base), n):
            if not (ctx.workdir / "keys" / f"{node_name(i)}.key").exists():
                keygen(ctx.workdir / "keys", node_name(i), force=True)
    name = f"members-{n}" + "".join(f"-{i}at{p}" for i, p in (moved or {}).items())
    return write_config(ctx.workdir / f"{name}.ini", [("127.0.0.1", p) for p in ports],
                        proposer=ctx.cfg.proposer, secure=secure)


def members(ctx: Ctx, *args: str, join: dict[int, Path] | None = None) -> list[str]:
    """Run ``zpaxos members ARGS`` to its end, starting (with --join) each node it waits
    for; its lines."""
    p = subprocess.Popen(zpaxos_cmd("members", *args, "--config", str(ctx.cluster.config)),
                         cwd=ctx.workdir, env=child_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert p.stderr is not None
        lines.extend(line.rstrip("\n") for line in p.stderr)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        def finished() -> bool:
            for i, config in (join or {}).items():
                if not ctx.cluster.is_running(i) and any(f"{node_name(i)} to start" in x
                                                         for x in lines):
                    ctx.cluster.start(i, None, "--join", config=config)
            return p.poll() is not None
        wait_for(finished, f"zpaxos members {' '.join(args)}", COMMAND_TIMEOUT_S)
    except TimeoutError:
        raise Failed(f"zpaxos members {' '.join(args)} did not finish: {lines[-3:]}") from None
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        reader.join(5)
    check(p.returncode == 0, f"zpaxos members {' '.join(args)}: {lines[-1:]}")
    return lines


def _key_args(ctx: Ctx, i: int) -> list[str]:
    if not ctx.cfg.security.curve:
        return []
    return ["--public-key", f"keys/{node_name(i)}.key"]  # the command runs in the workdir


def _epoch_everywhere(ctx: Ctx, ids: list[int]) -> int:
    """Every member answers in one epoch; that epoch."""
    import json

    def agreed() -> int | None:
        r = ctx.cluster.run("members", "--json")
        if r.code != 0:
            return None
        doc = json.loads(r.out)
        rows = doc["members"]
        ok = sorted(x["id"] for x in rows) == ids and all(x["epoch"] == doc["epoch"]
                                                          for x in rows)
        return int(doc["epoch"]) if ok else None
    try:
        return int(wait_for(agreed, f"nodes {ids} in one configuration", 30) or 0)
    except TimeoutError as e:
        raise Failed(str(e)) from None


def s13_grow(ctx: Ctx) -> str:
    """3 -> 5 while a proposer runs: each new node joins the accept side, catches up
    (started with --join), then counts in phase 1 too."""
    n0 = len(ctx.cfg.nodes)
    grow = _members_file(ctx, n0 + 2)
    with Load(ctx, "grow") as load:
        for i in (n0, n0 + 1):
            port = str(load_config(grow, keys=False).node(i).port)
            members(ctx, "add", str(i), "--host", "127.0.0.1", "--port", port,
                    *_key_args(ctx, i), join={i: grow})
    said = load.check()
    epoch = _epoch_everywhere(ctx, list(range(n0 + 2)))
    ctx.row.chosen, ctx.row.rounds = f"epoch {epoch}", f"{n0}->{n0 + 2} nodes"
    return f"{n0} nodes grew to {n0 + 2} (epoch {epoch}) while a proposer ran: {said}"


def s14_remove(ctx: Ctx) -> str:
    """The highest member is removed while a proposer runs (one is added first when
    the cluster has only the config file's nodes): it stops, and the rest agree."""
    n0 = len(ctx.cfg.nodes)
    r = ctx.cluster.run("members", "--json")
    import json

    ids = sorted(x["id"] for x in json.loads(r.out)["members"]) if r.code == 0 else []
    if max(ids, default=0) < n0:
        grow = _members_file(ctx, n0 + 1)
        port = str(load_config(grow, keys=False).node(n0).port)
        members(ctx, "add", str(n0), "--host", "127.0.0.1", "--port", port,
                *_key_args(ctx, n0), join={n0: grow})
        ids = list(range(n0 + 1))
    gone = max(ids)
    with Load(ctx, "remove") as load:
        members(ctx, "remove", str(gone))
    said = load.check()
    try:
        wait_for(lambda: not ctx.cluster.is_running(gone), f"{node_name(gone)} to stop", 20)
    except TimeoutError as e:
        raise Failed(str(e)) from None
    epoch = _epoch_everywhere(ctx, [i for i in ids if i != gone])
    ctx.row.chosen, ctx.row.rounds = f"epoch {epoch}", f"-{node_name(gone)}"
    return f"{node_name(gone)} removed (epoch {epoch}) and stopped while a proposer ran: {said}"


def s15_replace(ctx: Ctx) -> str:
    """The last of the config file's nodes loses its disk: killed, its data directory
    deleted; `members replace` takes it out, and a new node (empty, another port) joins
    in its place, catching up before it votes."""
    import shutil

    last = ctx.cfg.nodes[-1].id
    ctx.cluster.kill(last)
    shutil.rmtree(ctx.workdir / "data" / node_name(last))
    r = ctx.cluster.run("members", "--json")
    import json

    n = max(x["id"] for x in json.loads(r.out)["members"]) + 1
    port = free_ports(1)[0]
    moved = _members_file(ctx, n, {last: port})
    with Load(ctx, "replace") as load:
        members(ctx, "replace", str(last), "--host", "127.0.0.1", "--port", str(port),
                *_key_args(ctx, last), join={last: moved})
    said = load.check()
    epoch = _epoch_everywhere(ctx, sorted(x["id"] for x in json.loads(
        ctx.cluster.run("members", "--json").out)["members"]))
    ctx.row.chosen, ctx.row.rounds = f"epoch {epoch}", f"{node_name(last)} moved"
    return (f"{node_name(last)}'s data directory deleted; a new {node_name(last)} on port "
            f"{port} took its place and caught up (epoch {epoch}): {said}")
