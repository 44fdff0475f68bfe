"""Frames <-> messages: the only module that knows the wire format.

One ZeroMQ frame carries a *batch*: every message one process sends to one peer in one
pass of its loop (a ROUTER adds the sender's routing id in front, as a frame of its own)::

    b"ZPAXOS/2" + msgpack([sender, first_seq, [[TAG, field, ...], [TAG, field, ...], ...]])

* the first 8 bytes, the protocol and version, so a stray client or another version is
  refused before anything else is read;
* ``sender``, a short ASCII name unique per sending process ("n0", "3f2a9c01"), and
  ``first_seq``, the sender's running count of messages before this batch: message ``i``
  of the batch has the id ``"<sender>:<first_seq + i + 1>"``, unique per sender, so that a
  chart of a run can pair each send with its receive exactly as when every message had a
  frame of its own;
* each message: its type in readable ASCII ("PREPARE", as packet captures show it) and
  its fields in the order the message registry (:mod:`zpaxos.protocol.registry`)
  declares them. Any registry message can ride in a batch; nothing here names one.

Why one frame for many messages: libzmq's cost is per frame (a send of four frames cost
7.6 µs, of one 0.7 µs) and a pass of a busy node answers hundreds of keys per peer. Why
msgpack: values are arbitrary bytes, which JSON cannot carry without an extra encoding
layer; msgpack keeps bytes and text apart, is compact, and its C decoder is fast and
bounded (we cap every length, the batch's message count, and nesting). We still check
every field's type and range ourselves: decoding raises :class:`DecodeError` and nothing
else for any garbage, never formats the garbage itself into its message, and refuses
the whole frame when any message in it is bad (the sender is broken or hostile).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

import msgpack

from zpaxos.protocol.messages import Message
from zpaxos.protocol.registry import (
    BAD_ENVELOPE,
    MAX_ENTRIES,
    MAX_ROUND,
    MAX_VALUE_BYTES,
    NOT_MSGPACK,
    SPECS,
    TOO_LARGE,
    UNKNOWN_PROTOCOL,
    UNKNOWN_TYPE,
    DecodeError,
    Kind,
    Spec,
    describe,
    nests,
    type_name,
)

__all__ = ["DecodeError", "MAX_BATCH", "MAX_BODY_BYTES", "MAX_FRAME_BYTES", "MAX_ROUND",
           "MAX_VALUE_BYTES", "PROTOCOL", "Batch", "decode_batch", "encode_batch", "msg_id",
           "type_name"]

PROTOCOL = b"ZPAXOS/2"
# The largest valid body: a status reply holds one key's value and chosen value (1 MiB
# each) past its page limit, a sync page 1 MiB of values plus one more. A batch larger
# than this is split by the sender; a frame larger than MAX_FRAME_BYTES is refused by the
# socket before this process allocates it (MAXMSGSIZE).
MAX_BODY_BYTES = 4 << 20
MAX_FRAME_BYTES = MAX_BODY_BYTES + 4096
MAX_BATCH = 10_000  # messages in one frame (a node takes 1000 frames per socket per pass)
MAX_SENDER_BYTES = 32
MAX_DEPTH = 4  # the deepest valid message body: [page, [entry, [ballot]]]


def msg_id(sender: str, seq: int) -> str:
    return f"{sender}:{seq}"


@dataclass(frozen=True, slots=True)
class Batch:
    """A decoded frame: the sender's name, its message count before this batch, and the
    messages (message ``i`` has id ``msg_id(sender, first_seq + i + 1)``)."""

    sender: str
    first_seq: int
    messages: list[Message]


# --------------------------------------------------------------------------- per-type tables
# Built once from the registry: the per-message work is a table lookup and one call per
# field, with the field's error prefix ready-made.


def _encoder(spec: Spec) -> Callable[[Any], Any]:
    tag = spec.type_name
    names = [n for n, _ in spec.fields]
    kinds = [k for _, k in spec.fields]
    if all(type(k).enc is Kind.enc for k in kinds):  # fields go out as they are
        if len(names) == 1:
            one = attrgetter(names[0])
            return lambda m: (tag, one(m))
        get = attrgetter(*names)
        return lambda m: (tag, *get(m))
    pairs = list(zip(names, kinds, strict=True))
    return lambda m: [tag, *[k.enc(getattr(m, n)) for n, k in pairs]]


_ENCODE: dict[type, Callable[[Any], Any]] = {s.cls: _encoder(s) for s in SPECS}


def _builder(spec: Spec) -> Callable[[list[Any]], Any]:
    """``entry -> message``: each field through its kind's checks, then the class. Spelt
    out for the common arities, so a message costs one call per field and no loop."""
    cls = spec.cls
    decs = [(k.dec, f"{spec.type_name}: {n}") for n, k in spec.fields]
    if len(decs) == 2:
        (d1, w1), (d2, w2) = decs
        return lambda e: cls(d1(e[1], w1), d2(e[2], w2))
    if len(decs) == 3:
        (d1, w1), (d2, w2), (d3, w3) = decs
        return lambda e: cls(d1(e[1], w1), d2(e[2], w2), d3(e[3], w3))
    if len(decs) == 4:
        (d1, w1), (d2, w2), (d3, w3), (d4, w4) = decs
        return lambda e: cls(d1(e[1], w1), d2(e[2], w2), d3(e[3], w3), d4(e[4], w4))
    return lambda e: cls(*[d(x, w) for (d, w), x in zip(decs, e[1:], strict=True)])


_NO_CHECK = next(f.default for f in fields(Spec) if f.name == "check")

# Per type: (arity: fields + the tag, nests: holds lists of records, so its depth is
# checked before its fields, build, the cross-field check or None, the type's name).
_Decoder = tuple[int, bool, Callable[[list[Any]], Any], Callable[[Any], str | None] | None, str]
_DECODE: dict[str, _Decoder] = {
    s.type_name: (len(s.fields) + 1, any(nests(k) for _, k in s.fields), _builder(s),
                  None if s.check is _NO_CHECK else s.check, s.type_name)
    for s in SPECS
}


# --------------------------------------------------------------------------- encoding


FRAME_CHUNK = 64  # messages packed in one call (a bigger batch is packed this many at a time)


def encode_frame(sender: str, first_seq: int, msgs: Sequence[Message]) -> bytes | None:
    """The one frame carrying ``msgs`` (the common case: a pass's few messages to one
    peer), or None when they need :func:`encode_batch` (many, or over the body limit).
    Encoding our own malformed message is a bug: it raises."""
    if len(msgs) > FRAME_CHUNK:
        return None
    body = msgpack.packb([sender, first_seq, [_ENCODE[type(m)](m) for m in msgs]],
                         use_bin_type=True)
    return PROTOCOL + body if len(body) <= MAX_BODY_BYTES else None


def encode_batch(sender: str, first_seq: int, msgs: Sequence[Message],
                 ) -> Iterator[tuple[bytes, Sequence[Message]]]:
    """The frame(s) carrying ``msgs``, each with the messages it holds, made as they are
    taken: one frame, unless together they exceed the body limit (then as many as it
    takes, in order; a sender that stops taking them, because the peer's queue is full,
    never encodes more than FRAME_CHUNK messages past the frame it could not send).
    Encoding our own malformed message is a bug: it raises."""
    frame = encode_frame(sender, first_seq, msgs)
    if frame is not None:
        yield frame, msgs
        return
    pack = msgpack.Packer(use_bin_type=True).pack
    limit = MAX_BODY_BYTES - 64  # room for the header
    start, size = 0, 0
    parts: list[bytes] = []
    for c in range(0, len(msgs), FRAME_CHUNK):
        entries = [_ENCODE[type(m)](m) for m in msgs[c:c + FRAME_CHUNK]]
        packed = pack(entries)  # one call for the chunk ...
        if size + len(packed) <= limit:  # ... which fits the frame being built: its
            # entries, without the chunk's own array header, join the frame's
            parts.append(packed[1 if len(entries) <= 15 else 3:])
            size += len(packed)
            continue
        for i, entry in enumerate(entries, c):  # else one message at a time
            part = pack(entry)
            if parts and size + len(part) > limit:
                yield _frame(pack, sender, first_seq + start, i - start, parts), msgs[start:i]
                start, size = i, 0
                parts = []
            parts.append(part)
            size += len(part)
    if parts:
        yield (_frame(pack, sender, first_seq + start, len(msgs) - start, parts),
               msgs[start:])


def _frame(pack: Callable[[Any], bytes], sender: str, first_seq: int, count: int,
           parts: list[bytes]) -> bytes:
    """A frame of ``count`` messages, already packed in ``parts``."""
    head = b"\x93" + pack(sender) + pack(first_seq) + msgpack.Packer().pack_array_header(
        count)
    return b"".join((PROTOCOL, head, *parts))


# --------------------------------------------------------------------------- decoding


def _depth_ok(x: Any, depth: int) -> bool:
    """No list nests deeper than ``depth``: checked before any field is looked at, so a
    hostile body of nested arrays costs one bounded walk, not a recursion."""
    if type(x) is not list:
        return True
    if depth == 0:
        return False
    return all(_depth_ok(v, depth - 1) for v in x if type(v) is list)


def _unpack(body: Any) -> Any:
    try:
        # Every length is capped by the frame's size anyway; maps and ext types never
        # occur in a valid body, so they are refused outright.
        return msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True,
                               max_bin_len=MAX_BODY_BYTES, max_str_len=MAX_BODY_BYTES,
                               max_array_len=MAX_ENTRIES, max_map_len=0, max_ext_len=0)
    except Exception as e:  # noqa: BLE001 - msgpack raises many types for garbage; all mean one thing
        raise DecodeError(f"body is not valid msgpack ({type(e).__name__})", NOT_MSGPACK) from None


def decode_batch(frame: bytes | memoryview) -> Batch:
    """The batch in one frame, or :class:`DecodeError` saying why not (then none of its
    messages counts: a sender that puts garbage in a batch is broken or hostile).

    ``frame`` may be a memoryview of the socket's buffer: nothing is copied but the
    values themselves."""
    view = memoryview(frame)
    if len(view) > MAX_FRAME_BYTES:
        raise DecodeError(f"frame of {len(view)} bytes is over the limit", TOO_LARGE)
    if view[:8] != PROTOCOL:
        raise DecodeError(f"unknown protocol (expected {PROTOCOL!r})", UNKNOWN_PROTOCOL)
    top = _unpack(view[8:])
    if type(top) is not list or len(top) != 3:
        raise DecodeError(f"expected [sender, first seq, messages], got {describe(top)}",
                          BAD_ENVELOPE)
    sender, first_seq, entries = top
    if type(sender) is not str or not 0 < len(sender) <= MAX_SENDER_BYTES \
            or not sender.isascii():
        raise DecodeError(f"sender must be 1-{MAX_SENDER_BYTES} ASCII characters",
                          BAD_ENVELOPE)
    if type(first_seq) is not int or not 0 <= first_seq <= MAX_ROUND:
        raise DecodeError(f"first seq: expected an integer in [0, {MAX_ROUND}], "
                          f"got {describe(first_seq)}", BAD_ENVELOPE)
    if type(entries) is not list or len(entries) > MAX_BATCH:
        raise DecodeError(f"messages: expected a list of at most {MAX_BATCH}, "
                          f"got {describe(entries)}", BAD_ENVELOPE)
    out: list[Message] = []
    append = out.append
    for entry in entries:
        if type(entry) is not list or not entry:
            raise DecodeError(f"message: expected [type, fields...], got {describe(entry)}",
                              BAD_ENVELOPE)
        tag = entry[0]
        d = _DECODE.get(tag) if type(tag) is str else None
        if d is None:
            raise DecodeError(f"unknown message type ({describe(tag)})", UNKNOWN_TYPE)
        arity, nested, build, check, name = d
        if len(entry) != arity:
            raise DecodeError(f"{name}: expected {arity - 1} fields, got {len(entry) - 1}")
        if nested and not _depth_ok(entry, MAX_DEPTH + 1):
            raise DecodeError(f"{name}: nested deeper than any valid message")
        msg = build(entry)
        if check is not None:
            problem = check(msg)
            if problem:
                raise DecodeError(f"{name}: {problem}")
        append(msg)
    return Batch(sender, first_seq, out)


def encode(msg: Message, sender: str = "x", seq: int = 1) -> bytes:
    """One message in a frame of its own (tests, tools): message id ``sender:seq``."""
    return next(encode_batch(sender, seq - 1, [msg]))[0]


def decode(frame: bytes | memoryview) -> tuple[Message, str]:
    """``(message, msg_id)`` from a frame that must hold exactly one message."""
    batch = decode_batch(frame)
    if len(batch.messages) != 1:
        raise DecodeError(f"expected one message, got {len(batch.messages)}")
    return batch.messages[0], msg_id(batch.sender, batch.first_seq + 1)
