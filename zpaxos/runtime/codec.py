"""Frames <-> messages: the only module that knows the wire format.

One ZeroMQ frame carries a *batch*: every message one process sends to one peer in one
pass of its loop (a ROUTER adds the sender's routing id in front, as a frame of its own)::

    b"ZPAXOS/3" + msgpack([sender, first_seq, [[TAG, field, ...], [TAG, field, ...], ...]])

* the first 8 bytes, the protocol and version, so a stray client or another version is
  refused before anything else is read;
* ``sender``, a short ASCII name unique per sending process ("n0", "3f2a9c01"), and
  ``first_seq``, the sender's running count of messages before this batch: message ``i``
  of the batch has the id ``"<sender>:<first_seq + i + 1>"``, unique per sender, so that a
  chart of a run can pair each send with its receive exactly as when every message had a
  frame of its own;
* each message: its type in readable ASCII ("PREPARE", as packet captures show it) and
  its fields in the order its Struct (:mod:`zpaxos.protocol.messages`) declares them.
  Any message of the ``Message`` union can ride in a batch; nothing here names one.
  A run of Prepares, Accepts, Decides (and their replies) rides as one *column
  message* (protocol/colmessages.py: ``[TAG, [key, ...], [ballot, ...], ...]``), which
  stands for its rows: their ids run on as if each had been sent alone (runtime/wire.py).

Why one frame for many messages: libzmq's cost is per frame (a send of four frames cost
7.6 µs, of one 0.7 µs) and a pass of a busy node answers hundreds of keys per peer. Why
msgpack: values are arbitrary bytes, which JSON cannot carry without an extra encoding
layer; msgpack keeps bytes and text apart and is compact. Why msgspec: the messages are
its Structs (array-like, tagged by their type name), so one C call decodes a whole frame
into messages, checking every field's type and bound as it builds them; no nesting
deeper than the types' can be read, no list longer than its bound is allocated.
Decoding raises :class:`DecodeError` and nothing else for any garbage, never formats the
garbage itself into its message (protocol/wirerules.py words it), and refuses the whole
frame when any message in it is bad (the sender is broken or hostile).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Sequence
from typing import Annotated

import msgspec
from msgspec import Meta

from zpaxos.protocol.messages import MAX_ENTRIES, Count, Message
from zpaxos.protocol.registry import (
    BAD_ENVELOPE,
    BAD_FIELDS,
    BY_NAME,
    MAX_ROUND,
    MAX_VALUE_BYTES,
    NOT_MSGPACK,
    TOO_LARGE,
    UNKNOWN_PROTOCOL,
    UNKNOWN_TYPE,
    DecodeError,
    type_name,
)
from zpaxos.protocol.wirerules import CHECKS, explain, reason

__all__ = ["DecodeError", "MAX_BATCH", "MAX_BODY_BYTES", "MAX_ENTRIES", "MAX_FRAME_BYTES",
           "MAX_ROUND", "MAX_VALUE_BYTES", "PROTOCOL", "Batch", "decode_batch",
           "encode_batch", "msg_id", "type_name"]

PROTOCOL = b"ZPAXOS/3"  # 3: the column messages (protocol/colmessages.py)
# The largest valid body: a status reply holds one key's value and chosen value (1 MiB
# each) past its page limit, a sync page 1 MiB of values plus one more. A batch larger
# than this is split by the sender; a frame larger than MAX_FRAME_BYTES is refused by the
# socket before this process allocates it (MAXMSGSIZE).
MAX_BODY_BYTES = 4 << 20
MAX_FRAME_BYTES = MAX_BODY_BYTES + 4096
MAX_BATCH = 10_000  # messages in one frame (a node takes 1000 frames per socket per pass)
MAX_SENDER_BYTES = 32


def msg_id(sender: str, seq: int) -> str:
    return f"{sender}:{seq}"


class Batch(msgspec.Struct, frozen=True, array_like=True, gc=False,
            forbid_unknown_fields=True):
    """A decoded frame: the sender's name, its message count before this batch, and the
    messages (message ``i`` has id ``msg_id(sender, first_seq + i + 1)``). The body of a
    frame is exactly this, as ``[sender, first_seq, [message, ...]]``."""

    sender: Annotated[str, Meta(min_length=1, max_length=MAX_SENDER_BYTES,
                                pattern="^[\\x00-\\x7f]*\\Z")]
    first_seq: Count
    messages: Annotated[list[Message], Meta(max_length=MAX_BATCH)]
    # The sender's membership epoch (runtime/members.py): one number for the whole
    # frame, checked once by the receiving node's admission. 0: a sender that does not
    # say (then the frame has three items, as before epochs).
    epoch: Annotated[int, Meta(ge=0, le=2**53)] = 0


_DECODER = msgspec.msgpack.Decoder(Batch)
_ENCODER = msgspec.msgpack.Encoder()
_pack = _ENCODER.encode


# --------------------------------------------------------------------------- encoding


FRAME_CHUNK = 64  # messages packed in one call (a bigger batch is packed this many at a time)


def encode_frame(sender: str, first_seq: int, msgs: Sequence[Message],
                 epoch: int = 0) -> bytes | None:
    """The one frame carrying ``msgs`` (the common case: a pass's few messages to one
    peer), or None when they need :func:`encode_batch` (many, or over the body limit).
    Encoding what is no message is a bug: it raises."""
    if len(msgs) > FRAME_CHUNK:
        return None
    body = _pack((sender, first_seq, msgs, epoch) if epoch else (sender, first_seq, msgs))
    return PROTOCOL + body if len(body) <= MAX_BODY_BYTES else None


def encode_batch(sender: str, first_seq: int, msgs: Sequence[Message], epoch: int = 0,
                 ) -> Iterator[tuple[bytes, Sequence[Message]]]:
    """The frame(s) carrying ``msgs``, each with the messages it holds, made as they are
    taken: one frame, unless together they exceed the body limit (then as many as it
    takes, in order; a sender that stops taking them, because the peer's queue is full,
    never encodes more than FRAME_CHUNK messages past the frame it could not send).
    Encoding what is no message is a bug: it raises."""
    frame = encode_frame(sender, first_seq, msgs, epoch)
    if frame is not None:
        yield frame, msgs
        return
    limit = MAX_BODY_BYTES - 64  # room for the header
    start, size = 0, 0
    parts: list[bytes] = []
    for c in range(0, len(msgs), FRAME_CHUNK):
        chunk = msgs[c:c + FRAME_CHUNK]
        packed = _pack(chunk)  # one call for the chunk ...
        if size + len(packed) <= limit:  # ... which fits the frame being built: its
            # entries, without the chunk's own array header, join the frame's
            parts.append(packed[1 if len(chunk) <= 15 else 3:])
            size += len(packed)
            continue
        for i, msg in enumerate(chunk, c):  # else one message at a time
            part = _pack(msg)
            if parts and size + len(part) > limit:
                yield (_frame(sender, first_seq + start, i - start, parts, epoch),
                       msgs[start:i])
                start, size = i, 0
                parts = []
            parts.append(part)
            size += len(part)
    if parts:
        yield (_frame(sender, first_seq + start, len(msgs) - start, parts, epoch),
               msgs[start:])


def _frame(sender: str, first_seq: int, count: int, parts: list[bytes],
           epoch: int = 0) -> bytes:
    """A frame of ``count`` messages, already packed in ``parts`` (then the epoch)."""
    head = (b"\x94" if epoch else b"\x93") + _pack(sender) + _pack(first_seq) \
        + _array_header(count)
    return b"".join((PROTOCOL, head, *parts, _pack(epoch) if epoch else b""))


def _array_header(n: int) -> bytes:
    """msgpack's header of an array of ``n`` items (fixarray, array 16, array 32)."""
    if n < 16:
        return bytes((0x90 | n,))
    return b"\xdc" + struct.pack(">H", n) if n < 1 << 16 else b"\xdd" + struct.pack(">I", n)


# --------------------------------------------------------------------------- decoding


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
    body = view[8:]
    try:
        batch: Batch = _DECODER.decode(body)
    except msgspec.ValidationError as e:
        raise DecodeError(*_refusal(str(e), body)) from None
    except Exception as e:  # noqa: BLE001 - whatever msgspec raises for garbage means one thing
        raise DecodeError(f"body is not valid msgpack ({_malformed(e)})", NOT_MSGPACK) from None
    # What the types cannot say, before anything acts on the batch (wirerules.py).
    for msg in batch.messages:
        check = _CHECK(type(msg))
        if check is not None:
            problem = check(msg)
            if problem:
                raise DecodeError(f"{type_name(msg)}: {problem}")
    return batch


_CHECK = CHECKS.get
_AT = re.compile(r"(.*) - at `\$((?:\[\d+\])*)`", re.S)


def _malformed(e: Exception) -> str:
    """Why msgspec could not read a body, in a fixed word (its text names bytes)."""
    if not isinstance(e, msgspec.DecodeError):
        return type(e).__name__
    text = str(e)
    return ("truncated" if "truncated" in text else "trailing bytes" if "trailing" in text
            else "malformed")


def _refusal(text: str, body: memoryview) -> tuple[str, str]:
    """msgspec's ``ValidationError`` text in our words: where in the frame (its path) and
    why, never a received value (wirerules.explain); and the reason it is counted under
    (registry.MALFORMED_REASONS)."""
    m = _AT.fullmatch(text)
    raw, path = (m.group(1), [int(i) for i in re.findall(r"\d+", m.group(2))]) if m \
        else (text, [])
    if not path:
        return f"expected [sender, first seq, messages] ({reason(raw)})", BAD_ENVELOPE
    if path[0] == 0:
        return f"sender must be 1-{MAX_SENDER_BYTES} ASCII characters", BAD_ENVELOPE
    if path[0] == 1:
        return f"first seq: {reason(raw)}", BAD_ENVELOPE
    if len(path) == 1:
        return f"messages: {reason(raw)}", BAD_ENVELOPE
    cls = _type_at(body, path[1])  # path[2:]: where inside message path[1]
    if cls is not None:
        return explain(cls, path[2:], raw), BAD_FIELDS
    if len(path) > 2 and path[2] == 0:
        return "unknown message type", UNKNOWN_TYPE
    return f"message: expected [type, fields...] ({reason(raw)})", BAD_ENVELOPE


_ENTRIES = msgspec.msgpack.Decoder(tuple[msgspec.Raw, msgspec.Raw, list[msgspec.Raw]])
_PARTS = msgspec.msgpack.Decoder(list[msgspec.Raw])
_TAG = msgspec.msgpack.Decoder(str)


def _type_at(body: memoryview, i: int) -> type | None:
    """The type of message ``i`` of a refused body, to name it (None: not even that)."""
    try:
        spec = BY_NAME.get(_TAG.decode(_PARTS.decode(_ENTRIES.decode(body)[2][i])[0]))
    except Exception:  # noqa: BLE001 - garbage past the refused message: no name then
        return None
    return spec.cls if spec is not None else None


def encode(msg: Message, sender: str = "x", seq: int = 1) -> bytes:
    """One message in a frame of its own (tests, tools): message id ``sender:seq``."""
    return next(encode_batch(sender, seq - 1, [msg]))[0]


def decode(frame: bytes | memoryview) -> tuple[Message, str]:
    """``(message, msg_id)`` from a frame that must hold exactly one message."""
    batch = decode_batch(frame)
    if len(batch.messages) != 1:
        raise DecodeError(f"expected one message, got {len(batch.messages)}")
    return batch.messages[0], msg_id(batch.sender, batch.first_seq + 1)
