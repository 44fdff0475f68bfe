"""The message registry: every message type is declared once, and everything that needs to
know message types (codec, log, charts, hosts) derives from the declaration.

These tests walk the registry: if a type is declared but something cannot handle it, or a
message class exists that nobody declared, they fail."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest

from zpaxos.protocol import messages, registry
from zpaxos.protocol.messages import Ballot, RegState
from zpaxos.protocol.registry import SPECS, Spec
from zpaxos.runtime import codec
from zpaxos.runtime.log import _jsonable

SAMPLE_BALLOT = Ballot(3, b"\x01\x02" * 8)


def sample(hint: Any) -> Any:
    """A valid value of a field's type, built from the type alone (nothing per message)."""
    meta = None
    if typing.get_origin(hint) is typing.Annotated:
        hint, meta = typing.get_args(hint)[:2]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, type) and issubclass(hint, Ballot):
        return SAMPLE_BALLOT
    if hint is RegState:
        return RegState(2, b"Value_\xffA", ((b"\x01" * 16, 2),))
    if isinstance(hint, type) and hasattr(hint, "__struct_fields__"):
        return build(hint)
    if hint is str:
        return "some-key"
    if hint is bytes:  # a short id (as long as it may be), else a value
        small = meta is not None and meta.max_length is not None and meta.max_length <= 64
        return b"\x07" * meta.max_length if small else b"Value_\xffA"
    if hint is bool:
        return True
    if hint is int:
        return (meta.ge if meta is not None and meta.ge is not None else 0) + 1
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return (sample(args[0]), sample(args[0]))
    if typing.get_origin(hint) is tuple:
        return tuple(sample(a) for a in args)
    if len(args) == 1:  # "X | None"
        return sample(args[0])
    raise AssertionError(f"no sample for type {hint!r}: add one here")


def build(cls: type) -> Any:
    hints = typing.get_type_hints(cls, include_extras=True)
    return cls(*(sample(hints[f]) for f in cls.__struct_fields__))


def test_every_message_class_is_declared_once() -> None:
    union = set(typing.get_args(messages.Message))
    declared = [s.cls for s in SPECS]
    assert len(declared) == len(set(declared)), "a class is declared twice"
    assert set(declared) == union, "messages.Message and the registry disagree"
    tags = [s.tag for s in SPECS]
    assert len(tags) == len(set(tags)), "two types share a wire tag"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.type_name)
def test_every_type_round_trips_through_codec_log_and_chart(spec: Spec) -> None:
    msg = build(spec.cls)
    # the wire's tag and fields are the Struct's, in order
    assert spec.fields == spec.cls.__struct_fields__
    assert spec.type_name == spec.cls.__struct_config__.tag
    # codec: encode, decode, equal
    frame = codec.encode(msg, "n0", 1)
    assert spec.tag in frame  # the type travels as readable text
    assert codec.decode(frame) == (msg, "n0:1")
    # log: the logged fields exist and are JSON-able
    fields = registry.log_fields(msg)
    assert set(fields) <= set(spec.logged) <= set(spec.fields)
    json.dumps({k: _jsonable(v) for k, v in fields.items()})
    # charts: a label naming the type, from the logged (JSON) fields alone, and a style
    logged = json.loads(json.dumps({k: _jsonable(v) for k, v in fields.items()}))
    label = registry.label(spec.type_name, logged)
    assert label.startswith(spec.type_name), label
    style = registry.style(spec.type_name)
    assert style.line.startswith("#") and style.ink.startswith("#")
    # direction: every type goes somewhere a host handles
    assert spec.direction in (registry.TO_ACCEPTOR, registry.TO_PROPOSER, registry.BOTH,
                              registry.RUNTIME)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.type_name)
def test_every_field_is_checked_on_decode(spec: Spec) -> None:
    """Replacing any one field by a wrong type is refused with DecodeError, never a crash."""
    good = codec.encode(build(spec.cls))
    import msgpack

    sender, seq, [entry] = msgpack.unpackb(good[len(codec.PROTOCOL):], raw=False)
    for i in range(1, len(entry)):
        bad = list(entry)
        bad[i] = {"not": "valid"} if entry[i] is not None else 12.5
        with pytest.raises(codec.DecodeError):
            codec.decode(codec.PROTOCOL + msgpack.packb([sender, seq, [bad]], use_bin_type=True))


def test_the_hosts_know_every_direction() -> None:
    to_acceptor = set(registry.TO_ACCEPTOR_TYPES)
    to_proposer = set(registry.TO_PROPOSER_TYPES)
    runtime = set(registry.RUNTIME_TYPES)
    assert to_acceptor | to_proposer | runtime == {s.cls for s in SPECS}
    assert messages.Decide in to_acceptor & to_proposer  # decisions travel both ways


def test_a_lock_record_shows_its_holder_and_token_in_a_chart():
    from zpaxos.protocol.lease import LockRecord, Waiter, encode_record
    from zpaxos.protocol.registry import _show_state
    from zpaxos.protocol.regmessages import RegState

    held = encode_record(LockRecord("A", "o1", 7, 1500, (Waiter("o2", 1500),)))
    assert _show_state(RegState(7, held)) == "v7=lock A #7 +1 waiting"
    assert _show_state(RegState(9, encode_record(LockRecord(token=7)))) == "v9=free #7"
    # Only exactly what a lock writes: other JSON shows as it is.
    assert _show_state(RegState(3, b'{"token":7,"x":1}')) == 'v3={"token":7,"x":1}'
    assert _show_state(RegState(3, b'{"holder": 5}')) == 'v3={"holder": 5}'
