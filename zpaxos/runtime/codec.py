"""Frames <-> messages: the only module that knows the wire format.

A message is four ZeroMQ frames (a ROUTER adds the sender's routing id in front)::

    [b"ZPAXOS/1", b"PREPARE", b"<msg id>", <body>]

* frame 1, the protocol and version, so a stray client or a future version is refused
  before anything else is read;
* frame 2, the message type, in readable ASCII (it shows up as such in packet captures);
* frame 3, a message id, unique per sender ("3f2a9c01:17"), so that a chart of a run can
  pair each send with its receive;
* frame 4, the body: a msgpack array of the message's fields, in the order the message
  registry (:mod:`zpaxos.protocol.registry`) declares them.

Why msgpack: values are arbitrary bytes, which JSON cannot carry without an extra
encoding layer; msgpack keeps bytes and text apart, is compact, and its C decoder is
fast and bounded (we cap every length and the nesting depth). We still check every
field's type and range ourselves: decoding raises :class:`DecodeError` and nothing else
for any garbage, and never formats the garbage itself into its message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from zpaxos.protocol.messages import Message
from zpaxos.protocol.registry import (
    BY_CLASS,
    BY_TAG,
    MAX_ENTRIES,
    MAX_ROUND,
    MAX_VALUE_BYTES,
    DecodeError,
    type_name,
)

__all__ = ["DecodeError", "MAX_BODY_BYTES", "MAX_FRAME_BYTES", "MAX_ROUND", "MAX_VALUE_BYTES",
           "decode", "encode", "type_name"]

PROTOCOL = b"ZPAXOS/1"
# The largest valid body: a status reply holds one key's value and chosen value (1 MiB
# each) past its page limit, a sync page 1 MiB of values plus one more. Anything larger
# is refused by the socket before this process allocates it (MAXMSGSIZE).
MAX_BODY_BYTES = 4 << 20
MAX_FRAME_BYTES = MAX_BODY_BYTES + 4096  # the socket refuses any larger frame (MAXMSGSIZE)
MAX_MSG_ID_BYTES = 64
MAX_DEPTH = 4  # the deepest valid body: [page, [entry, [ballot]]]


def encode(msg: Message, msg_id: bytes) -> list[bytes]:
    """The frames of ``msg``. Encoding our own malformed message is a bug: it raises."""
    spec = BY_CLASS[type(msg)]
    body = [kind.enc(getattr(msg, name)) for name, kind in spec.fields]
    return [PROTOCOL, spec.tag, msg_id, msgpack.packb(body, use_bin_type=True)]


def _depth_ok(x: Any, depth: int) -> bool:
    """No list nests deeper than ``depth``: checked before any field is looked at, so a
    hostile body of a million nested arrays costs one bounded walk, not a recursion."""
    if type(x) is not list:
        return True
    if depth == 0:
        return False
    return all(_depth_ok(v, depth - 1) for v in x if type(v) is list)


def decode(frames: Sequence[bytes]) -> tuple[Message, bytes]:
    """``(message, msg_id)`` from the four frames, or :class:`DecodeError` saying why not."""
    if len(frames) != 4:
        raise DecodeError(f"expected 4 frames, got {len(frames)}")
    proto, tag, msg_id, body = (bytes(f) for f in frames)
    if proto != PROTOCOL:
        raise DecodeError(f"unknown protocol (expected {PROTOCOL!r})")
    spec = BY_TAG.get(tag)
    if spec is None:
        raise DecodeError(f"unknown message type ({len(tag)} bytes)")
    if len(msg_id) > MAX_MSG_ID_BYTES or not msg_id.isascii():
        raise DecodeError("message id must be at most 64 ASCII bytes")
    if len(body) > MAX_BODY_BYTES:
        raise DecodeError(f"body of {len(body)} bytes is over the limit")
    name = spec.type_name
    try:
        # Every length is capped by the body's size anyway; maps and ext types never
        # occur in a valid body, so they are refused outright.
        fields = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True,
                                 max_bin_len=MAX_BODY_BYTES, max_str_len=MAX_BODY_BYTES,
                                 max_array_len=MAX_ENTRIES, max_map_len=0, max_ext_len=0)
    except Exception as e:  # noqa: BLE001 - msgpack raises many types for garbage; all mean one thing
        raise DecodeError(f"{name}: body is not valid msgpack ({type(e).__name__})") from None
    if type(fields) is not list or len(fields) != len(spec.fields):
        raise DecodeError(f"{name} body: expected a list of {len(spec.fields)}")
    if not _depth_ok(fields, MAX_DEPTH):
        raise DecodeError(f"{name} body: nested deeper than any valid message")
    try:
        msg = spec.cls(*[kind.dec(x, fname) for (fname, kind), x in zip(spec.fields, fields,
                                                                        strict=True)])
    except DecodeError as e:
        raise DecodeError(f"{name}: {e}") from None
    problem = spec.check(msg)
    if problem:
        raise DecodeError(f"{name}: {problem}")
    return msg, msg_id
