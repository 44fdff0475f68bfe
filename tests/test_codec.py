"""The wire format: every message survives the round trip; garbage is one error type."""

from __future__ import annotations

import random

import msgpack
import pytest

from zpaxos.protocol.messages import (
    ZERO,
    Accept,
    Accepted,
    Ballot,
    Decide,
    KeyStatus,
    Nack,
    Prepare,
    Promise,
    StatusReply,
    StatusRequest,
    SyncReply,
    SyncRequest,
)
from zpaxos.runtime import codec

B1 = Ballot(1, b"\xff" * 16)
BIG = Ballot(codec.MAX_ROUND, b"\x00" * 15 + b"\x01")

MESSAGES = [
    Prepare("CISC5597", B1),
    Prepare("k", BIG),
    Promise("k", B1, ZERO, None),
    Promise("k", BIG, B1, b"\x00\xffbinary"),
    Accept("k", B1, b""),
    Accept("k-1.x_y", B1, "héllo".encode()),
    Accepted("k", BIG, b"v" * 1000),
    Nack("k", B1, BIG),
    Nack("k", B1, ZERO),
    Decide("k", b"Value_A"),
    Decide("k", b"Value_A", B1),
    StatusRequest(None),
    StatusRequest("k"),
    StatusReply(2, (KeyStatus("k", B1, ZERO, None, None), KeyStatus("j", BIG, B1, b"x", b"x", B1)),
                False),
    SyncRequest(""),
    SyncReply("a", (("b", b"1", B1), ("c", b"2", ZERO)), True),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    frames = codec.encode(msg, b"n0:1")
    assert frames[0] == codec.PROTOCOL and len(frames) == 4
    assert codec.decode(frames) == (msg, b"n0:1")


def test_ballot_order_is_round_then_proposer():
    assert ZERO < Ballot(1, b"\x00") < Ballot(1, b"\x01") < Ballot(2, b"\x00")
    assert str(Ballot(2, bytes.fromhex("b7c1aa"))) == "2.b7c1"


def _body(*fields):
    return msgpack.packb(list(fields), use_bin_type=True)


@pytest.mark.parametrize("frames,why", [
    ([b"ZPAXOS/1", b"PREPARE", b"1"], "expected 4 frames"),
    ([b"ZPAXOS/2", b"PREPARE", b"1", b""], "unknown protocol"),
    ([b"ZPAXOS/1", b"PREPAR", b"1", b""], "unknown message type"),
    ([b"ZPAXOS/1", b"PREPARE", b"1", b"\xc1"], "not valid msgpack"),
    ([b"ZPAXOS/1", b"PREPARE", b"1", _body("k")], "expected a list of 2"),
    ([b"ZPAXOS/1", b"PREPARE", b"1", _body("k", [0, b""])], "zero ballot"),
    ([b"ZPAXOS/1", b"PREPARE", b"1", _body("k", [-1, b"x"])], "round"),
    ([b"ZPAXOS/1", b"PREPARE", b"1", _body("k", [1 << 63, b"x"])], "round"),
    ([b"ZPAXOS/1", b"PREPARE", b"1", _body("k", [True, b"x"])], "round"),
    ([b"ZPAXOS/1", b"PREPARE", b"1", _body("k", [1, "x"])], "expected bytes"),
    ([b"ZPAXOS/1", b"PREPARE", b"1", _body("k", [1, b"x" * 33])], "not a valid ballot"),
    ([b"ZPAXOS/1", b"PREPARE", b"1", _body("a/b", [1, b"x"])], "may hold only"),
    ([b"ZPAXOS/1", b"ACCEPT", b"1", _body("k", [1, b"x"], "text")], "bytes"),
    ([b"ZPAXOS/1", b"ACCEPT", b"1", _body("k", [1, b"x"], b"v" * (codec.MAX_VALUE_BYTES + 1))],
     "bytes"),
    ([b"ZPAXOS/1", b"PROMISE", b"1", _body("k", [1, b"x"], [1, b"y"], None)], "go together"),
    ([b"ZPAXOS/1", b"DECIDE", b"\x80", _body("k", b"v")], "message id"),
    ([b"ZPAXOS/1", b"STATUS_REPLY", b"1", _body(1, [["k"]], False, [])], "status entry"),
    ([b"ZPAXOS/1", b"SYNC_REPLY", b"1", _body("", [["k", b"v", [0, b""]]], 1)], "true/false"),
])
def test_garbage_is_a_decode_error(frames, why):
    with pytest.raises(codec.DecodeError, match=why.replace("[", r"\[")):
        codec.decode(frames)


def test_random_garbage_never_raises_anything_else():
    """Mutated valid messages decode to a valid message or raise DecodeError, nothing else;
    and what does decode is a real message that survives the round trip again."""
    rng = random.Random(5597)
    valid = [codec.encode(m, b"x") for m in MESSAGES]
    decoded = 0
    for _ in range(5000):
        frames = [bytearray(f) for f in rng.choice(valid)]
        for _ in range(rng.randint(1, 4)):
            f = rng.choice(frames[1:])
            if f and rng.random() < 0.7:
                f[rng.randrange(len(f))] = rng.randrange(256)
            else:
                f.extend(rng.randbytes(rng.randint(1, 4)))
        try:
            msg, msg_id = codec.decode([bytes(f) for f in frames])
        except codec.DecodeError:
            continue
        decoded += 1
        assert codec.decode(codec.encode(msg, msg_id)) == (msg, msg_id)
    assert decoded > 100  # the mutations leave some messages valid: those were checked too


def test_valid_messages_round_trip_under_the_fuzzer_too():
    for m in MESSAGES:
        frames = codec.encode(m, b"id")
        assert codec.decode(frames) == (m, b"id")


def test_deep_nesting_is_refused_without_recursion():
    """A body of a million nested arrays once crashed a node (RecursionError while the
    error message formatted the value). Now it is one DecodeError, quickly."""
    for body in (b"\x91" * 1_000_000 + b"\xc0", b"\x92" + b"\x91" * 5000 + b"\xc0" + b"\xc0",
                 msgpack.packb(["k", [[[[[[[[1]]]]]]]]])):
        with pytest.raises(codec.DecodeError):
            codec.decode([b"ZPAXOS/1", b"PREPARE", b"1", body])
