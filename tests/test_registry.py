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
from zpaxos.protocol.messages import Ballot
from zpaxos.protocol.registry import SPECS, Kind, Spec
from zpaxos.runtime import codec
from zpaxos.runtime.log import _jsonable

SAMPLE_BALLOT = Ballot(3, b"\x01\x02" * 8)


def sample(kind: Kind) -> Any:
    """A valid value of ``kind``, built from the kind alone (nothing per message type)."""
    if isinstance(kind, registry._Ballot):
        return SAMPLE_BALLOT
    if isinstance(kind, (registry._Key, registry._OptKey, registry._After)):
        return "some-key"
    if isinstance(kind, (registry._Value, registry._OptValue)):
        return b"Value_\xffA"
    if isinstance(kind, registry._Token):
        return b"\x07" * kind.sizes[-1]
    if isinstance(kind, registry._Name):
        return "malformed"
    if isinstance(kind, registry._Bool):
        return True
    if isinstance(kind, registry._Int):
        return kind.lo + 1
    if isinstance(kind, registry._ListOf):
        return (sample(kind.item), sample(kind.item))
    if isinstance(kind, registry._Record):
        return kind.build(*(sample(k) for _, k in kind.kinds))
    raise AssertionError(f"no sample for kind {kind!r}: add one here")


def build(spec: Spec) -> Any:
    return spec.cls(*(sample(k) for _, k in spec.fields))


def test_every_message_class_is_declared_once() -> None:
    union = set(typing.get_args(messages.Message))
    declared = [s.cls for s in SPECS]
    assert len(declared) == len(set(declared)), "a class is declared twice"
    assert set(declared) == union, "messages.Message and the registry disagree"
    tags = [s.tag for s in SPECS]
    assert len(tags) == len(set(tags)), "two types share a wire tag"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.type_name)
def test_every_type_round_trips_through_codec_log_and_chart(spec: Spec) -> None:
    msg = build(spec)
    # declared fields are the dataclass's fields, in order
    assert [f for f, _ in spec.fields] == list(spec.cls.__dataclass_fields__)
    # codec: encode, decode, equal
    frame = codec.encode(msg, "n0", 1)
    assert spec.tag in frame  # the type travels as readable text
    assert codec.decode(frame) == (msg, "n0:1")
    # log: the logged fields exist and are JSON-able
    fields = registry.log_fields(msg)
    assert set(fields) <= set(spec.logged) <= {f for f, _ in spec.fields}
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
    good = codec.encode(build(spec))
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
