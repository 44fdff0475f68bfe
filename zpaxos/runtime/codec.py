"""Frames <-> messages: the only module that knows the wire format.

A message is four ZeroMQ frames (a ROUTER adds the sender's routing id in front)::

    [b"ZPAXOS/1", b"PREPARE", b"<msg id>", <body>]

* frame 1, the protocol and version, so a stray client or a future version is refused
  before anything else is read;
* frame 2, the message type, in readable ASCII (it shows up as such in packet captures);
* frame 3, a message id, unique per sender ("3f2a9c01:17"), so that a chart of a run can
  pair each send with its receive;
* frame 4, the body: a msgpack array of the message's fields.

Why msgpack: values are arbitrary bytes, which JSON cannot carry without an extra
encoding layer; msgpack keeps bytes and text apart, is compact, and its C decoder is
fast and bounded (we cap every length). We still check every field's type and range
ourselves: the decoder raises :class:`DecodeError` and nothing else for any garbage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from zpaxos.protocol.messages import (
    PROPOSER_ID_BYTES,
    ZERO,
    Accept,
    Accepted,
    Ballot,
    Decide,
    KeyStatus,
    Message,
    Nack,
    Prepare,
    Promise,
    StatusReply,
    StatusRequest,
    SyncReply,
    SyncRequest,
    key_problem,
)

PROTOCOL = b"ZPAXOS/1"
MAX_VALUE_BYTES = 1 << 20  # 1 MiB per value
MAX_BODY_BYTES = 64 << 20  # a status or sync page holds many values
MAX_MSG_ID_BYTES = 64
MAX_ROUND = (1 << 63) - 1  # fits SQLite's signed 64-bit integers


class DecodeError(Exception):
    """A peer sent something that is not a valid zpaxos message (the peer's fault)."""


# ---------------------------------------------------------------- field encoders


def _ballot(b: Ballot) -> list[Any]:
    return [b.round, b.proposer]


def _status(k: KeyStatus) -> list[Any]:
    return [k.key, _ballot(k.promised), _ballot(k.accepted), k.value, k.chosen,
            _ballot(k.chosen_ballot)]


_ENCODERS: dict[type, tuple[bytes, Callable[[Any], list[Any]]]] = {
    Prepare: (b"PREPARE", lambda m: [m.key, _ballot(m.ballot)]),
    Promise: (b"PROMISE", lambda m: [m.key, _ballot(m.ballot), _ballot(m.accepted), m.value]),
    Accept: (b"ACCEPT", lambda m: [m.key, _ballot(m.ballot), m.value]),
    Accepted: (b"ACCEPTED", lambda m: [m.key, _ballot(m.ballot), m.value]),
    Nack: (b"NACK", lambda m: [m.key, _ballot(m.ballot), _ballot(m.promised)]),
    Decide: (b"DECIDE", lambda m: [m.key, m.value, _ballot(m.ballot)]),
    StatusRequest: (b"STATUS", lambda m: [m.key]),
    StatusReply: (b"STATUS_REPLY", lambda m: [m.node, [_status(k) for k in m.keys], m.truncated]),
    SyncRequest: (b"SYNC", lambda m: [m.after]),
    SyncReply: (b"SYNC_REPLY", lambda m: [m.after, [[k, v, _ballot(b)] for k, v, b in m.chosen],
                                             m.more]),
}


def type_name(msg: Message) -> str:
    """The wire name of a message's type ("PREPARE"), as logs and charts show it."""
    return _ENCODERS[type(msg)][0].decode()


def encode(msg: Message, msg_id: bytes) -> list[bytes]:
    """The frames of ``msg``. Encoding our own malformed message is a bug: it raises."""
    tag, fields = _ENCODERS[type(msg)]
    return [PROTOCOL, tag, msg_id, msgpack.packb(fields(msg), use_bin_type=True)]


# ---------------------------------------------------------------- field decoders


def _int(x: Any, what: str, lo: int = 0, hi: int = MAX_ROUND) -> int:
    if type(x) is not int or not lo <= x <= hi:
        raise DecodeError(f"{what}: expected an integer in [{lo}, {hi}], got {x!r:.40}")
    return x


def _bool(x: Any, what: str) -> bool:
    if type(x) is not bool:
        raise DecodeError(f"{what}: expected true/false, got {x!r:.40}")
    return x


def _key(x: Any, what: str = "key") -> str:
    if type(x) is not str:
        raise DecodeError(f"{what}: expected text, got {x!r:.40}")
    problem = key_problem(x)
    if problem:
        raise DecodeError(f"{what}: {problem}")
    return x


def _value(x: Any, what: str = "value") -> bytes:
    if type(x) is not bytes or len(x) > MAX_VALUE_BYTES:
        raise DecodeError(f"{what}: expected at most {MAX_VALUE_BYTES} bytes, got {x!r:.40}")
    return x


def _opt_value(x: Any, what: str = "value") -> bytes | None:
    return None if x is None else _value(x, what)


def _list(x: Any, n: int | None, what: str) -> list[Any]:
    if type(x) is not list or (n is not None and len(x) != n):
        want = "a list" if n is None else f"a list of {n}"
        raise DecodeError(f"{what}: expected {want}, got {x!r:.40}")
    return x


def _ballot_of(x: Any, what: str = "ballot") -> Ballot:
    r, p = _list(x, 2, what)
    r = _int(r, f"{what} round")
    if type(p) is not bytes:
        raise DecodeError(f"{what} proposer: expected bytes, got {p!r:.40}")
    if r == 0 and not p:
        return ZERO
    if r == 0 or not 1 <= len(p) <= 2 * PROPOSER_ID_BYTES:
        raise DecodeError(f"{what}: not a valid ballot ({r}, {p!r:.40})")
    return Ballot(r, p)


def _real_ballot(x: Any, what: str = "ballot") -> Ballot:
    b = _ballot_of(x, what)
    if b.is_zero:
        raise DecodeError(f"{what}: the zero ballot cannot be proposed")
    return b


def _status_of(x: Any) -> KeyStatus:
    k, pr, ac, v, ch, cb = _list(x, 6, "status entry")
    return KeyStatus(_key(k), _ballot_of(pr, "promised"), _ballot_of(ac, "accepted"),
                     _opt_value(v), _opt_value(ch, "chosen"), _ballot_of(cb, "chosen ballot"))


def _promise(f: Sequence[Any]) -> Promise:
    accepted = _ballot_of(f[2], "accepted")
    value = _opt_value(f[3])
    if (value is None) != accepted.is_zero:
        raise DecodeError("promise: an accepted ballot and its value go together")
    return Promise(_key(f[0]), _real_ballot(f[1]), accepted, value)


def _sync_reply(f: Sequence[Any]) -> SyncReply:
    after = f[0] if f[0] == "" else _key(f[0], "after")
    pairs = tuple((_key(k), _value(v), _ballot_of(b, "chosen ballot")) for k, v, b in
                  (_list(e, 3, "sync entry") for e in _list(f[1], None, "entries")))
    return SyncReply(after, pairs, _bool(f[2], "more"))


_DECODERS: dict[bytes, tuple[int, Callable[[Sequence[Any]], Message]]] = {
    b"PREPARE": (2, lambda f: Prepare(_key(f[0]), _real_ballot(f[1]))),
    b"PROMISE": (4, _promise),
    b"ACCEPT": (3, lambda f: Accept(_key(f[0]), _real_ballot(f[1]), _value(f[2]))),
    b"ACCEPTED": (3, lambda f: Accepted(_key(f[0]), _real_ballot(f[1]), _value(f[2]))),
    b"NACK": (3, lambda f: Nack(_key(f[0]), _real_ballot(f[1]), _ballot_of(f[2], "promised"))),
    b"DECIDE": (3, lambda f: Decide(_key(f[0]), _value(f[1]), _ballot_of(f[2]))),
    b"STATUS": (1, lambda f: StatusRequest(None if f[0] is None else _key(f[0]))),
    b"STATUS_REPLY": (3, lambda f: StatusReply(
        _int(f[0], "node", 0, 65535),
        tuple(_status_of(e) for e in _list(f[1], None, "keys")), _bool(f[2], "truncated"))),
    b"SYNC": (1, lambda f: SyncRequest(f[0] if f[0] == "" else _key(f[0], "after"))),
    b"SYNC_REPLY": (3, _sync_reply),
}


def decode(frames: Sequence[bytes]) -> tuple[Message, bytes]:
    """``(message, msg_id)`` from the four frames, or :class:`DecodeError` saying why not."""
    if len(frames) != 4:
        raise DecodeError(f"expected 4 frames, got {len(frames)}")
    proto, tag, msg_id, body = (bytes(f) for f in frames)
    if proto != PROTOCOL:
        raise DecodeError(f"unknown protocol {proto[:32]!r} (expected {PROTOCOL!r})")
    spec = _DECODERS.get(tag)
    if spec is None:
        raise DecodeError(f"unknown message type {tag[:32]!r}")
    if len(msg_id) > MAX_MSG_ID_BYTES or not msg_id.isascii():
        raise DecodeError("message id must be at most 64 ASCII bytes")
    if len(body) > MAX_BODY_BYTES:
        raise DecodeError(f"body of {len(body)} bytes is over the limit")
    try:
        fields = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True,
                                 max_bin_len=MAX_BODY_BYTES, max_str_len=MAX_BODY_BYTES)
    except Exception as e:  # noqa: BLE001 - msgpack raises many types for garbage; all mean one thing
        raise DecodeError(f"{tag.decode()}: body is not valid msgpack ({e})") from None
    count, build = spec
    _list(fields, count, f"{tag.decode()} body")
    try:
        return build(fields), msg_id
    except DecodeError as e:
        raise DecodeError(f"{tag.decode()}: {e}") from None
