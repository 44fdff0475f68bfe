"""Start, stop and kill a local cluster's node processes; run zpaxos commands against it.

Used by the scenario runner (``run_scenarios.sh``) and by the end-to-end tests. Every
process started here is tracked and stopped by :meth:`LocalCluster.close` (and, as a
last resort, at interpreter exit), whatever happened in between.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from zpaxos.naming import node_name
from zpaxos.pictures.logmodel import LogModel, read_log
from zpaxos.runtime.config import PROPOSER_KEYS, ProposerConfig
from zpaxos.runtime.exits import Exit

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
PACKAGE_ROOT = Path(__file__).resolve().parents[2]

_live: set[subprocess.Popen[str]] = set()
T = TypeVar("T")


def _reap_all() -> None:
    for p in list(_live):
        if p.poll() is None:
            p.kill()
            p.wait()
        _live.discard(p)


atexit.register(_reap_all)


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """Ports the kernel just handed out as free (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_config(path: Path, endpoints: Sequence[tuple[str, int]], *,
                 proposer: ProposerConfig | None = None, log_level: str = "INFO",
                 log_format: str = "json", value_files: str = "*", secure: bool = False,
                 keys_dir: str = "keys", binds: Sequence[str | None] = (),
                 metrics_ports: Sequence[int] = ()) -> Path:
    """A cluster file for ``endpoints``: data in data/nodeN and the log in paxos.log,
    both relative to the directory the processes run in. ``secure``: CURVE on, with the
    keys in keys/ there (make them with :func:`make_keys`). ``binds``: each node's
    ``bind`` (None: it listens on its host). ``metrics_ports``: each node's metrics_port
    (Prometheus metrics on 127.0.0.1), in node order."""
    p = proposer or ProposerConfig()
    lines = []
    for i, (host, port) in enumerate(endpoints):
        lines += [f"[node.{i}]", f"host = {host}", f"port = {port}", f"data_dir = data/node{i}",
                  f"value_files = {value_files or 'none'}"]
        if i < len(binds) and binds[i] is not None:
            lines.append(f"bind = {binds[i]}")
        if secure:
            lines += [f"public_key = {keys_dir}/node{i}.key",
                      f"secret_key = {keys_dir}/node{i}.key_secret"]
        if metrics_ports:
            lines.append(f"metrics_port = {metrics_ports[i]}")
        lines.append("")
    lines += ["[proposer]", *(f"{k} = {getattr(p, k)}" for k in PROPOSER_KEYS), "",
              "[log]", "file = paxos.log", f"level = {log_level}", f"format = {log_format}", ""]
    if secure:
        lines += ["[security]", "curve = true", f"authorized_clients = {keys_dir}/clients",
                  f"client_key = {keys_dir}/clients/lab.key_secret", ""]
    path.write_text("\n".join(lines))
    return path


def make_keys(workdir: Path, n_nodes: int, clients: Sequence[str] = ("lab",)) -> None:
    """The keys a ``write_config(..., secure=True)`` file names, under ``workdir``/keys."""
    from zpaxos.runtime.security import keygen

    for i in range(n_nodes):
        keygen(workdir / "keys", node_name(i), force=True)
    for name in clients:
        keygen(workdir / "keys" / "clients", name, force=True)


def zpaxos_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "zpaxos", *args]


def cached_bytecode_env(workdir: Path) -> dict[str, str]:
    """:func:`child_env` with bytecode cached under ``workdir`` whatever
    PYTHONDONTWRITEBYTECODE says: what an installed package's processes start with (a
    benchmark of start-up should not time a recompile of every module)."""
    e = child_env()
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    e["PYTHONPYCACHEPREFIX"] = str(Path(workdir) / "pycache")
    return e


def child_env() -> dict[str, str]:
    """The environment for child processes: this checkout importable, no stray config."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(PACKAGE_ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("ZPAXOS_CONFIG", None)
    return e


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.out)
        return doc


class NodeStartError(Exception):
    """A node process did not come up; the message carries what it printed."""


class LocalCluster:
    """The nodes of ``config`` as child processes running in ``workdir``."""

    def __init__(self, config: Path, workdir: Path, node_ids: Sequence[int],
                 env: dict[str, str] | None = None) -> None:
        """``env``: the nodes' environment (default :func:`child_env`)."""
        self.config = Path(config).resolve()
        self.env = env
        self.dir = Path(workdir)
        self.node_ids = list(node_ids)
        self.procs: dict[int, subprocess.Popen[str]] = {}

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- nodes

    def is_running(self, i: int) -> bool:
        p = self.procs.get(i)
        return p is not None and p.poll() is None

    def start(self, i: int, stderr: Path | None = None, *args: str,
              config: Path | None = None) -> None:
        """Start node ``i`` and wait until it says it is listening. ``stderr``: the node
        shows its log lines, as on a terminal, and they go to this file (default: -q).
        ``args``: more options (``--join``); ``config``: another cluster file for it (a
        joining node's, which names it)."""
        if self.is_running(i):
            raise RuntimeError(f"{node_name(i)} is already running")
        quiet = ("-q",) if stderr is None else ()
        err: Any = subprocess.PIPE
        if stderr is not None:
            err = open(stderr, "ab")  # noqa: SIM115 - the child holds it; closed below
        try:
            p = subprocess.Popen(zpaxos_cmd("node", str(i), "--config",
                                            str(Path(config).resolve() if config
                                                else self.config), *quiet, *args),
                                 cwd=self.dir, env=self.env or child_env(),
                                 stdout=subprocess.PIPE, stderr=err, text=True)
        finally:
            if stderr is not None:
                err.close()
        _live.add(p)
        self.procs[i] = p
        line = _read_line(p, START_TIMEOUT_S)
        if "listening on" not in line:
            p.kill()
            _, said = p.communicate()
            _live.discard(p)
            said = said or (stderr.read_text() if stderr is not None else "")
            raise NodeStartError(f"{node_name(i)} did not start: {(line + said).strip()}")

    def start_all(self) -> None:
        for i in self.node_ids:
            self.start(i)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> int | None:
        """Send ``sig`` to node ``i`` and wait for it to exit; its exit code."""
        p = self.procs.get(i)
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(sig)
        try:
            code = p.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            code = p.wait()
        _live.discard(p)
        for f in (p.stdout, p.stderr):
            if f:
                f.close()
        return code

    def stop(self, i: int) -> int | None:
        return self.kill(i, signal.SIGTERM)

    def close(self) -> None:
        for i in list(self.procs):
            self.stop(i)

    # ---- commands

    def run(self, *args: str, timeout: float = 120) -> Result:
        r = subprocess.run(zpaxos_cmd(*args, "--config", str(self.config)), cwd=self.dir,
                           env=child_env(), capture_output=True, text=True, timeout=timeout)
        return Result(r.returncode, r.stdout, r.stderr)

    def propose(self, value: str, *args: str, timeout: float = 120) -> Result:
        return self.run("propose", value, "--json", "-q", *args, timeout=timeout)

    def propose_bg(self, value: str, *args: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(zpaxos_cmd("propose", value, "--json", "-q", *args,
                                        "--config", str(self.config)),
                             cwd=self.dir, env=child_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        _live.add(p)
        return p

    @staticmethod
    def finish(p: subprocess.Popen[str], timeout: float = 120) -> Result:
        try:
            out, err = p.communicate(timeout=timeout)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            _live.discard(p)
        return Result(p.returncode, out, err)

    def status(self, key: str | None = None) -> dict[str, Any]:
        r = self.run("status", "--json", *(["--key", key] if key else []))
        # DEGRADED (some nodes down) and FAILED (a majority down) still print the document.
        if r.code not in (Exit.OK, Exit.FAILED, Exit.DEGRADED) or not r.out.strip():
            raise RuntimeError(f"zpaxos status failed: {r.err.strip()}")
        return r.json

    def log(self) -> LogModel:
        """The cluster's JSON log (``paxos.log`` in the work directory), read into the log
        model, which pairs messages and answers queries (``.events(name=..., ...)``)."""
        return read_log(self.dir / "paxos.log")

    def node_state(self, i: int, key: str) -> dict[str, Any] | None:
        """Node ``i``'s state for ``key`` (None if unreachable or it has none)."""
        for node in self.status(key)["nodes"]:
            if node["id"] == i:
                return node["keys"].get(key) if node["reachable"] else None
        return None


def join_all(procs: Sequence[Any], grace_s: float = 5.0) -> None:
    """Wait for each multiprocessing.Process in ``procs`` (at most ``grace_s`` each), and
    kill any still running: a benchmark's workers never outlive it."""
    for p in procs:
        p.join(grace_s)
        if p.is_alive():
            p.kill()
            p.join()


def wait_for(predicate: Callable[[], T], what: str, timeout_s: float = 20.0,
             every_s: float = 0.05) -> T:
    """Poll until ``predicate()`` is truthy: await an event instead of sleeping blindly."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)


def _read_line(p: subprocess.Popen[str], timeout_s: float) -> str:
    assert p.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout_s):
            return ""
        return str(p.stdout.readline())
    finally:
        sel.close()


@contextmanager
def bench_cluster(config: str | None, work: Path, secure: bool = False) -> Iterator[Path]:
    """The cluster file a benchmark runs against: ``config``'s (a running cluster), or
    with None a temporary 3-node cluster on loopback in ``work`` (with CURVE keys when
    ``secure``), started here and stopped on the way out, even on an error."""
    if config is not None:
        yield Path(config).resolve()
        return
    path = write_config(work / "cluster.ini", [("127.0.0.1", p) for p in free_ports(3)],
                        log_level="WARNING", value_files="", secure=secure,
                        keys_dir=str(work / "keys"))
    if secure:
        make_keys(work, 3)
    local = LocalCluster(path, work, range(3))
    try:
        local.start_all()
        yield path
    finally:
        local.close()
