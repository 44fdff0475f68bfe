"""Fuzzing the codec with hypothesis: any frames give a message or DecodeError, nothing else.

Deep msgpack nesting is here too; the live node gets the same in test_fuzz_node.py.
"""

from __future__ import annotations

import msgpack
import pytest

from tests.nemesis.blaster import ARITY, PROTOCOL, TAGS, deep, frame
from zpaxos.runtime import codec

pytestmark = pytest.mark.fuzz
hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the [test] extra: "
                                 "pip install -e '.[test]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# ---------------------------------------------------------------- the codec, by hypothesis

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
           | st.text(max_size=40) | st.binary(max_size=40))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=5)
                      | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=20)
ballots = st.lists(st.integers(-1, 2**64 - 1) | st.binary(max_size=40) | st.none(),
                   min_size=0, max_size=3)
fields_ = values | ballots | st.sampled_from(["CISC5597", "k", ".x", "a/b", "x" * 129, ""])


def decodes_or_refuses(frames: list[bytes]) -> None:
    try:
        if len(frames) != 1:
            raise codec.DecodeError("expected 1 frame")  # as the socket layer refuses it
        batch = codec.decode_batch(frames[0])
    except codec.DecodeError as e:
        assert str(e)  # one readable reason
        return
    # Whatever passes decodes to messages that encode back to the same fields.
    [(again, _)] = codec.encode_batch(batch.sender, batch.first_seq, batch.messages)
    assert codec.decode_batch(again) == batch


def one(proto: bytes, tag: bytes, msg_id: bytes, body: bytes) -> list[bytes]:
    return [frame(proto, tag, msg_id, body)]


SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(st.binary(max_size=64), max_size=7))
def test_any_frames(frames):
    decodes_or_refuses(frames)
    decodes_or_refuses([PROTOCOL + b"".join(frames)])


@SETTINGS
@given(st.sampled_from(TAGS) | st.binary(max_size=12), values)
def test_right_header_any_body(tag, body):
    decodes_or_refuses(one(PROTOCOL, tag, b"id:1", msgpack.packb(body, use_bin_type=True)))


@SETTINGS
@given(st.sampled_from(TAGS), st.data())
def test_right_shape_any_fields(tag, data):
    n = ARITY[tag] + data.draw(st.sampled_from([0, 0, 0, -1, 1]))
    body = data.draw(st.lists(fields_, min_size=max(0, n), max_size=max(0, n)))
    decodes_or_refuses(one(PROTOCOL, tag, b"id:1", msgpack.packb(body, use_bin_type=True)))


@SETTINGS
@given(st.sampled_from(TAGS), st.binary(max_size=200))
def test_right_header_random_bytes(tag, body):
    decodes_or_refuses(one(PROTOCOL, tag, b"id:1", body))


def test_oversized_value_is_refused():
    body = msgpack.packb(["k", [1, b"p" * 16], b"v" * (codec.MAX_VALUE_BYTES + 1)])
    with pytest.raises(codec.DecodeError):
        codec.decode_batch(frame(PROTOCOL, b"ACCEPT", b"id:1", body))


@pytest.mark.parametrize("depth", [10, 100, 5_000, 1_000_000])
def test_nesting_far_from_the_limit_is_refused(depth):
    with pytest.raises(codec.DecodeError):
        codec.decode_batch(frame(PROTOCOL, b"PREPARE", b"id:1", deep(depth)))


def test_nesting_near_the_limit_is_refused():
    for depth in range(900, 1100, 3):
        for body in (deep(depth), b"\x92\xa1k" + deep(depth)):
            with pytest.raises(codec.DecodeError):
                codec.decode_batch(frame(PROTOCOL, b"PREPARE", b"id:1", body))


