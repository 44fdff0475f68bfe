"""INI cluster files -> frozen, validated dataclasses.

Everything is checked once, at load time; a problem is a :class:`ConfigError` whose text
names the file, the section and the key, so the CLI can print it as one line.
Defaults live here and nowhere else.
"""

from __future__ import annotations

import configparser
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from zpaxos.naming import node_name
from zpaxos.protocol.core import ProposerOptions
from zpaxos.runtime.security import (
    KeyFileError,
    KeyPair,
    load_authorized,
    load_public,
    load_secret,
)

DEFAULT_CONFIG = "configs/cluster.ini"
CONFIG_ENV = "ZPAXOS_CONFIG"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


class ConfigError(Exception):
    """The user's configuration is wrong; the message says where and what."""


def _address(host: str, port: int) -> str:
    """``host:port`` as people (and ZeroMQ) write it: ``127.0.0.1:5001``, ``[::1]:5001``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One node. ``host`` is where the others reach it (what peers, proposers and
    ``zpaxos status`` connect to, and what status shows); ``bind`` is where the node
    itself listens, when that differs (``0.0.0.0`` or one interface's address on a
    machine reached by a name, or behind NAT). Without ``bind`` the node listens on
    ``host``, as it always did, so a config without it means what it meant before."""

    id: int
    host: str
    port: int
    data_dir: Path
    value_files: str  # glob of keys that get a <data_dir>/<key>.txt file; "" for none
    public_key: bytes | None = None  # CURVE: the node's public key (Z85), when curve is on
    secret_key_file: Path | None = None  # CURVE: where the node's key pair lives
    bind: str | None = None  # where the node listens, when not on ``host``
    metrics_port: int | None = None  # this node's own [metrics] port, if it has one

    @property
    def ipv6(self) -> bool:
        """True when ``host`` is an IPv6 address. ZeroMQ then needs the endpoint in
        brackets (``endpoint`` does that) and ``zmq.IPV6 = 1`` on every socket that binds
        or connects to it: the node's ROUTER, and each DEALER (a proposer's or a peer
        node's) that connects to this node."""
        return ":" in self.host

    @property
    def address(self) -> str:
        """``host:port`` as people write it: ``127.0.0.1:5001``, ``[::1]:5001``."""
        return _address(self.host, self.port)

    @property
    def endpoint(self) -> str:
        """Where the others connect: the advertised ``host``."""
        return f"tcp://{self.address}"

    @property
    def bind_endpoint(self) -> str:
        """Where this node listens: ``bind`` if set, else ``host`` (the same endpoint)."""
        return self.endpoint if self.bind is None else f"tcp://{_address(self.bind, self.port)}"

    @property
    def name(self) -> str:
        return node_name(self.id)


# [proposer] is the core's ProposerOptions (its defaults are the only ones); these are the
# fields a cluster file may set.
ProposerConfig = ProposerOptions
PROPOSER_KEYS = ("timeout_s", "round_timeout_s", "max_rounds", "backoff_s", "backoff_max_s")


MIN_LOG_BYTES = 4096  # a rotated log file holds at least this much (a few records)


@dataclass(frozen=True, slots=True)
class LogConfig:
    file: Path | None = Path("paxos.log")
    level: str = "INFO"
    # The file is JSON by default: `zpaxos trace` draws charts from it and `zpaxos log`
    # prints it as text. stderr always shows text.
    format: str = "json"
    # Rotation by size (runtime/log.py): 0 = never (then logrotate, with SIGHUP to the
    # nodes); else the file is renamed .1 (.1 to .2, ...) once it reaches max_bytes, and
    # backup_count old files are kept. Safe with several processes on one file.
    max_bytes: int = 0
    backup_count: int = 5


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """``[node]``: what every node of the cluster does alike. ``catch_up_s``: how often a
    node asks each peer what it learned since it last asked (docs/catching-up.md); 0 turns
    catching up off (a restart then walks every peer's chosen keys, as before it)."""

    catch_up_s: float = 0.5


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``[metrics]``: where each node serves Prometheus metrics (runtime/metrics.py).
    ``port`` None: not served (unless ``zpaxos node --metrics-port`` asks)."""

    host: str = "127.0.0.1"
    port: int | None = None


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """``[security]``: CURVE on every socket (see runtime/security.py)."""

    curve: bool = False
    authorized_clients: dict[bytes, str] | None = None  # public key -> client name
    client_key_file: Path | None = None  # this client's key pair (propose, status)

    def client_keys(self, path: Path, override: Path | None = None) -> KeyPair | None:
        """The client key pair to connect with, or None without CURVE; ConfigError if it
        is missing or bad (``override``: --key on the command line)."""
        if not self.curve:
            return None
        key_file = override or self.client_key_file
        if key_file is None:
            raise ConfigError(f"{path}: [security] client_key: missing (required with curve "
                              f"= true to propose or ask for status; or give --key)")
        try:
            return load_secret(key_file)
        except KeyFileError as e:
            raise ConfigError(f"{path}: [security] client_key: {e}") from None


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    path: Path
    nodes: tuple[NodeConfig, ...]
    proposer: ProposerConfig
    log: LogConfig
    security: SecurityConfig = SecurityConfig()
    options: NodeOptions = NodeOptions()
    metrics: MetricsConfig = MetricsConfig()

    def metrics_address(self, node_id: int, port: int | None = None) -> tuple[str, int] | None:
        """Where node ``node_id`` serves its metrics: ``port`` (--metrics-port), else its
        [node.N] metrics_port, else [metrics] port; None when none is set."""
        port = port or self.node(node_id).metrics_port or self.metrics.port
        return None if port is None else (self.metrics.host, port)

    def node_keys(self, node_id: int) -> KeyPair | None:
        """A node's own key pair, or None without CURVE (ConfigError if missing/bad)."""
        if not self.security.curve:
            return None
        n = self.node(node_id)
        try:
            assert n.secret_key_file is not None
            pair = load_secret(n.secret_key_file)
        except KeyFileError as e:
            raise ConfigError(f"{self.path}: [node.{node_id}] secret_key: {e}") from None
        if pair.public != n.public_key:
            raise ConfigError(f"{self.path}: [node.{node_id}] secret_key: "
                              f"{n.secret_key_file} does not belong to public_key")
        return pair

    def node(self, node_id: int) -> NodeConfig:
        for n in self.nodes:
            if n.id == node_id:
                return n
        ids = ", ".join(str(n.id) for n in self.nodes)
        raise ConfigError(f"{self.path}: there is no [node.{node_id}] (nodes: {ids})")


# Every key a section may hold, with its default; an unknown key is an error (a typo
# would otherwise be silently ignored).
_NODE_KEYS = {"host": None, "bind": None, "port": None, "data_dir": None, "value_files": "*",
              "public_key": None, "secret_key": None, "metrics_port": None}
_METRICS_KEYS: dict[str, object] = {f.name: f.default for f in fields(MetricsConfig)}
_SECURITY_KEYS = {"curve": "false", "authorized_clients": None, "client_key": None}
_PROPOSER_KEYS: dict[str, object] = {k: getattr(ProposerOptions(), k) for k in PROPOSER_KEYS}
_LOG_KEYS: dict[str, object] = {f.name: f.default for f in fields(LogConfig)}


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: str | os.PathLike[str] | None = None, *,
                keys: bool = True) -> ClusterConfig:
    """Read and validate a cluster file (default: $ZPAXOS_CONFIG or configs/cluster.ini).

    A relative path is taken from the current directory, as ``open`` takes it. Any
    problem raises :class:`ConfigError` (importable from ``zpaxos.client``), one line
    naming the file (the full path tried, when it is missing), section and key."""
    p = Path(path) if path is not None else default_config_path()
    parser = configparser.ConfigParser(
        inline_comment_prefixes=(";", "#"), interpolation=None, strict=True
    )
    try:
        text = p.read_text(encoding="utf-8")
        _check_headers(p, text)
        parser.read_string(text, source=str(p))
    except FileNotFoundError:
        # A relative path is from the current directory: say where that was.
        tried = "" if p.is_absolute() else f"looked for {p.absolute()}; "
        raise ConfigError(f"{p}: config file not found ({tried}give one with --config or "
                          f"${CONFIG_ENV})") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read config file ({e})") from None
    except configparser.DuplicateSectionError as e:
        raise ConfigError(f"{p}: section [{e.section}] appears twice (line {e.lineno})") from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(f"{p}: [{e.section}] {e.option}: key appears twice "
                          f"(line {e.lineno})") from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(f"{p}: line {e.lineno}: text before the first [section]") from None
    except configparser.Error as e:
        first = str(e).splitlines()[0]
        raise ConfigError(f"{p}: not a valid INI file ({first})") from None
    return _build(p, parser, keys)


def _check_headers(p: Path, text: str) -> None:
    """A ``[node.1`` line without its ``]`` is no section header to configparser: it goes
    on with the section before, and reports whatever that breaks (a key appearing twice,
    say). Name the real mistake first. (An indented line continues a value: not a header.)"""
    for n, line in enumerate(text.splitlines(), 1):
        bare = re.split(r"\s[;#]", line, maxsplit=1)[0].rstrip()  # less an inline comment
        if bare.startswith("[") and not configparser.ConfigParser.SECTCRE.match(bare):
            raise ConfigError(f"{p}: line {n}: section header {bare!r} has no closing ']'")


def _build(p: Path, parser: configparser.ConfigParser, keys: bool = True) -> ClusterConfig:
    """``keys`` False: read a CURVE config without loading its key files (the scenario
    runner makes keys of its own for its temporary cluster)."""
    nodes: list[NodeConfig] = []
    proposer = ProposerConfig()
    log = LogConfig()
    security = SecurityConfig()
    options = NodeOptions()
    metrics = MetricsConfig()
    for section in parser.sections():
        sec = parser[section]
        if section.startswith("node."):
            nodes.append(_node(p, section, sec))
        elif section == "proposer":
            proposer = _proposer(p, sec)
        elif section == "log":
            log = _log(p, sec)
        elif section == "security":
            security = _security(p, sec, keys)
        elif section == "node":
            options = _node_options(p, sec)
        elif section == "metrics":
            metrics = _metrics(p, sec)
        else:
            raise ConfigError(f"{p}: [{section}]: unknown section (expected [node.N], "
                              f"[node], [proposer], [log], [security] or [metrics])")
    if not nodes:
        raise ConfigError(f"{p}: no [node.N] sections: a cluster needs at least one node")
    nodes.sort(key=lambda n: n.id)
    for want, n in enumerate(nodes):
        if n.id != want:
            raise ConfigError(f"{p}: [node.{want}] is missing (node ids run 0..N-1 without gaps)")
    seen: dict[tuple[str, int], int] = {}
    for n in nodes:
        other = seen.setdefault((n.host, n.port), n.id)
        if other != n.id:
            raise ConfigError(f"{p}: [node.{n.id}] port: {n.address} is already used by "
                              f"[node.{other}]")
    served: dict[int, int] = {}  # one metrics host for all: two nodes on one port clash
    for n in nodes:
        port = n.metrics_port or metrics.port
        if port is None:
            continue
        other = served.setdefault(port, n.id)
        if other != n.id and nodes[other].host == n.host:
            raise ConfigError(f"{p}: [node.{n.id}] metrics_port: {port} is already used by "
                              f"[node.{other}] on the same host (give each node its own "
                              f"metrics_port)")
    dirs: dict[Path, int] = {}
    for n in nodes:
        other = dirs.setdefault(n.data_dir.resolve(), n.id)
        if other != n.id:
            raise ConfigError(f"{p}: [node.{n.id}] data_dir: {n.data_dir} is already used by "
                              f"[node.{other}]")
    if security.curve and keys:
        nodes = [_node_keys(p, n, parser[f"node.{n.id}"]) for n in nodes]
    elif not security.curve:
        for n in nodes:
            for key in ("public_key", "secret_key"):
                if parser[f"node.{n.id}"].get(key, "").strip():
                    raise ConfigError(f"{p}: [node.{n.id}] {key}: set, but [security] curve "
                                      f"is not true (turn curve on, or remove the key)")
    return ClusterConfig(p, tuple(nodes), proposer, log, security, options, metrics)


def _node_keys(p: Path, n: NodeConfig, sec: configparser.SectionProxy) -> NodeConfig:
    section = f"node.{n.id}"
    public_file = Path(_need(p, section, sec, "public_key"))
    secret_file = Path(_need(p, section, sec, "secret_key"))
    try:
        public = load_public(public_file)
    except KeyFileError as e:
        raise ConfigError(f"{p}: [{section}] public_key: {e}") from None
    return replace(n, public_key=public, secret_key_file=secret_file)


def _security(p: Path, sec: configparser.SectionProxy, keys: bool = True) -> SecurityConfig:
    _check_keys(p, "security", sec, _SECURITY_KEYS)
    raw = sec.get("curve", "false").strip().lower()
    if raw not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        raise ConfigError(f"{p}: [security] curve: {raw!r} is not true or false")
    if raw in ("false", "no", "off", "0"):
        return SecurityConfig()
    import zmq

    if not zmq.has("curve"):
        raise ConfigError(f"{p}: [security] curve: this pyzmq/libzmq has no CURVE support")
    if not keys:
        return SecurityConfig(True)
    clients_dir = Path(_need(p, "security", sec, "authorized_clients"))
    try:
        clients = load_authorized(clients_dir)
    except KeyFileError as e:
        raise ConfigError(f"{p}: [security] authorized_clients: {e}") from None
    client_key = sec.get("client_key", "").strip()
    return SecurityConfig(True, clients, Path(client_key) if client_key else None)


def _node_options(p: Path, sec: configparser.SectionProxy) -> NodeOptions:
    default = NodeOptions().catch_up_s
    _check_keys(p, "node", sec, {"catch_up_s": default})
    raw = sec.get("catch_up_s", str(default)).strip()
    try:
        every = float(raw)
    except ValueError:
        every = -1.0
    if not (every == 0 or 0.05 <= every <= 3600):
        raise ConfigError(f"{p}: [node] catch_up_s: {raw!r} is not 0 (off) or a number of "
                          f"seconds from 0.05 to 3600")
    return NodeOptions(every)


def _check_keys(p: Path, section: str, sec: configparser.SectionProxy,
                allowed: Mapping[str, object]) -> None:
    for key in sec:
        if key not in allowed:
            raise ConfigError(f"{p}: [{section}] {key}: unknown key (known: "
                              f"{', '.join(allowed)})")


def _need(p: Path, section: str, sec: configparser.SectionProxy, key: str) -> str:
    value = sec.get(key, "").strip()
    if not value:
        raise ConfigError(f"{p}: [{section}] {key}: missing (required)")
    return value


def _node(p: Path, section: str, sec: configparser.SectionProxy) -> NodeConfig:
    raw_id = section[len("node."):]
    if not raw_id.isdigit() or len(raw_id) > 4:
        raise ConfigError(f"{p}: [{section}]: node sections are named [node.N] with N = 0, 1, 2...")
    _check_keys(p, section, sec, _NODE_KEYS)
    host = _host(p, section, "host", _need(p, section, sec, "host"))
    bind_raw = sec.get("bind", "").strip()
    bind = _host(p, section, "bind", bind_raw, wildcard=True) if bind_raw else None
    port = _port(p, section, "port", _need(p, section, sec, "port"))
    data_dir = Path(_need(p, section, sec, "data_dir"))
    value_files = sec.get("value_files", "*").strip()
    if value_files.lower() == "none":
        value_files = ""
    raw_metrics = sec.get("metrics_port", "").strip()
    metrics_port = _port(p, section, "metrics_port", raw_metrics) if raw_metrics else None
    return NodeConfig(int(raw_id), host, port, data_dir, value_files, bind=bind,
                      metrics_port=metrics_port)


def _port(p: Path, section: str, key: str, raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise ConfigError(f"{p}: [{section}] {key}: {raw!r} is not a port number (1-65535)")
    return port


def _metrics(p: Path, sec: configparser.SectionProxy) -> MetricsConfig:
    _check_keys(p, "metrics", sec, _METRICS_KEYS)
    host = _host(p, "metrics", "host", sec.get("host", str(_METRICS_KEYS["host"])).strip())
    raw = sec.get("port", "").strip()
    return MetricsConfig(host, _port(p, "metrics", "port", raw) if raw else None)


_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be a node's address, as "is ..." (None if it can): it must be
    an IPv4 address, an IPv6 address (``::1`` or ``[::1]``) or a DNS host name. Checked
    by form only; nothing is resolved."""
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else None
    try:
        ip = ipaddress.ip_address(host if inner is None else inner)
    except ValueError:
        ip = None
    if ip is not None:
        if inner is not None and ip.version == 4:
            return "is an IPv4 address in brackets (brackets are for IPv6 only)"
        return None
    if inner is not None or ":" in host:
        return "is not an IPv6 address"
    labels = host.split(".")
    if all(label.isdigit() for label in labels):
        return "is not an IPv4 address"
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        return "is not an IP address or host name"
    return None


def _host(p: Path, section: str, key: str, raw: str, wildcard: bool = False) -> str:
    """``host`` or ``bind``: checked by form. ``bind`` may also be ZeroMQ's ``*`` (every
    interface); its host names are interface names or names of this machine's own
    addresses, which ZeroMQ resolves when the node binds."""
    if wildcard and raw == "*":
        return raw
    problem = host_problem(raw)
    if problem:
        hint = " (or * for every interface)" if wildcard and "name" in problem else ""
        raise ConfigError(f"{p}: [{section}] {key}: {raw!r} {problem}{hint}")
    if ":" in raw:  # IPv6, kept in one spelling so that duplicates are found
        return str(ipaddress.ip_address(raw.strip("[]")))
    return raw


def _number(p: Path, section: str, key: str, raw: str, *, integer: bool, minimum: float) -> float:
    try:
        v = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{p}: [{section}] {key}: {raw!r} is not {kind}") from None
    if math.isnan(v) or v < minimum or (math.isinf(v) and key != "timeout_s"):
        raise ConfigError(f"{p}: [{section}] {key}: {raw!r} must be at least {minimum:g}")
    return v


def _proposer(p: Path, sec: configparser.SectionProxy) -> ProposerConfig:
    _check_keys(p, "proposer", sec, _PROPOSER_KEYS)
    values: dict[str, Any] = {}
    for key, default in _PROPOSER_KEYS.items():
        if key in sec:
            integer = isinstance(default, int)
            minimum = 1 if integer else (0.0 if "backoff" in key else 0.001)
            values[key] = _number(p, "proposer", key, sec[key].strip(), integer=integer,
                                  minimum=minimum)
    return ProposerConfig(**values)


def _log(p: Path, sec: configparser.SectionProxy) -> LogConfig:
    _check_keys(p, "log", sec, _LOG_KEYS)
    file_s = sec.get("file", str(_LOG_KEYS["file"])).strip()
    level = sec.get("level", str(_LOG_KEYS["level"])).strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{p}: [log] level: {level!r} is not one of {', '.join(LOG_LEVELS)}")
    fmt = sec.get("format", str(_LOG_KEYS["format"])).strip().lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"{p}: [log] format: {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    sizes: dict[str, int] = {}
    for key, minimum in (("max_bytes", 0), ("backup_count", 1)):
        if key in sec:
            sizes[key] = int(_number(p, "log", key, sec[key].strip(), integer=True,
                                     minimum=minimum))
    if sizes.get("max_bytes", 0) and sizes["max_bytes"] < MIN_LOG_BYTES:
        raise ConfigError(f"{p}: [log] max_bytes: {sizes['max_bytes']} is below "
                          f"{MIN_LOG_BYTES} (0 turns rotation off)")
    return LogConfig(Path(file_s) if file_s else None, level, fmt, **sizes)
