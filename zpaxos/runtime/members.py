"""Where the cluster's membership lives: a chain of write-once keys, decided by Paxos.

The configuration of epoch ``e`` is the chosen value of the key ``_members.<e>`` (the
epoch zero-padded, so the keys sort by epoch). ``_members.1`` holds the INI file's
nodes; ``_members.<e+1>`` is proposed with epoch ``e``'s quorums, so the chain is a
chain of decisions, and it survives every crash exactly as any chosen value does (it
is one: the acceptors' durable state). A node reads the highest link it holds when it
starts, and moves on whenever it learns a higher one; clients ask any member
(``MembersAsk``) and are told, in a refusal, when they are behind.

Bounded: a configuration is at most MAX_CONFIG_BYTES once encoded (15 members, each
with a host name and a CURVE key, fit in well under half of it), and a node reads at
most MAX_CHAIN links of the chain when it starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import msgspec
from msgspec.structs import replace

from zpaxos.protocol.membership import MAX_MEMBERS, Config, Member
from zpaxos.protocol.state import KeyState
from zpaxos.runtime.config import ClusterConfig, ConfigError, NodeConfig


class NotAMember(ConfigError):
    """This node is not in the cluster's configuration (removed, or not added yet)."""


PREFIX = "_members."
EPOCH_DIGITS = 12
MAX_CONFIG_BYTES = 16 << 10
MAX_CHAIN = 100_000

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Config)


class Prefixed(Protocol):
    def prefixed(self, prefix: str, limit: int) -> list[tuple[str, KeyState]]: ...


def key_of(epoch: int) -> str:
    return f"{PREFIX}{epoch:0{EPOCH_DIGITS}d}"


def epoch_of(key: str) -> int | None:
    """The epoch a chain key names, or None when ``key`` is no chain key."""
    if not key.startswith(PREFIX):
        return None
    digits = key[len(PREFIX):]
    return int(digits) if digits.isdigit() and len(digits) == EPOCH_DIGITS else None


def encode(cfg: Config) -> bytes:
    data = _ENCODER.encode(cfg)
    if len(data) > MAX_CONFIG_BYTES:
        raise ValueError(f"configuration of {len(data)} bytes is over {MAX_CONFIG_BYTES}")
    return data


def decode(data: bytes) -> Config:
    """A configuration from the wire or the store; ValueError says why it is none."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ValueError(f"configuration of {len(data)} bytes is over {MAX_CONFIG_BYTES}")
    try:
        cfg = _DECODER.decode(data)
    except msgspec.DecodeError as e:
        raise ValueError(f"not a configuration ({e})") from None
    problem = cfg.problem()
    if problem:
        raise ValueError(f"configuration of epoch {cfg.epoch}: {problem}")
    return cfg


def latest(store: Prefixed) -> Config | None:
    """The highest chosen link of the chain ``store`` holds (None: none yet)."""
    best: Config | None = None
    for key, state in store.prefixed(PREFIX, MAX_CHAIN):
        epoch = epoch_of(key)
        if epoch is None or state.chosen is None:
            continue
        try:
            cfg = decode(state.chosen)
        except ValueError:
            continue  # not ours to act on (a user's key under the prefix); never trusted
        if cfg.epoch == epoch and (best is None or epoch > best.epoch):
            best = cfg
    return best


def endpoint_of(m: Member) -> str:
    """Where ZeroMQ reaches member ``m`` (an IPv6 address in brackets)."""
    return f"tcp://[{m.host}]:{m.port}" if ":" in m.host else f"tcp://{m.host}:{m.port}"


def member_of(node: NodeConfig) -> Member:
    key = node.public_key.decode() if node.public_key is not None else None
    return Member(node.id, node.host, node.port, key)


def initial(cluster: ClusterConfig) -> Config:
    """Epoch 1: the INI file's nodes, majority quorums."""
    if len(cluster.nodes) > MAX_MEMBERS:
        raise ValueError(f"{cluster.path}: at most {MAX_MEMBERS} nodes")
    return Config.initial(member_of(n) for n in cluster.nodes)


def apply(cluster: ClusterConfig, cfg: Config) -> ClusterConfig:
    """``cluster`` with the nodes of ``cfg``: each member's address and key from the
    configuration; a node the INI file also names keeps its local settings (data_dir,
    bind, key file), and one it does not gets ``data/node<ID>`` (never opened: only a
    node's own data directory ever is)."""
    local = {n.id: n for n in cluster.nodes}
    nodes: list[NodeConfig] = []
    for m in cfg.members:
        base = local.get(m.id) or NodeConfig(m.id, m.host, m.port, Path(f"data/node{m.id}"), "*")
        key = m.public_key.encode() if m.public_key is not None else None
        nodes.append(replace(base, host=m.host, port=m.port, public_key=key))
    return replace(cluster, nodes=tuple(nodes))


def describe(cfg: Config) -> str:
    """One line: ``epoch 3: node0, node1, node2 (phase 1: 2 of 0,1,2; phase 2: ...)``."""
    def ids(xs: Sequence[int]) -> str:
        return ",".join(str(x) for x in xs)
    names = ", ".join(f"node{m.id}" for m in cfg.members)
    return (f"epoch {cfg.epoch}: {names} (phase 1: {cfg.prepare_quorum} of {ids(cfg.prepare)};"
            f" phase 2: {cfg.accept_quorum} of {ids(cfg.accept)})")
