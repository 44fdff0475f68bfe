"""The wire format: every message survives the round trip; garbage is one error type."""

from __future__ import annotations

import random

import msgpack
import pytest

from zpaxos.protocol.colmessages import Accepteds, Accepts, Decides, Nacks, Prepares, Promises
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
    Prepares(("a", "b"), (B1, BIG)),
    Promises(("a", "b"), (B1, B1), (ZERO, B1), (None, b"x")),
    Accepts(("a", "b"), (B1, B1), (b"1", b"")),
    Accepteds(("a",), (BIG,), (b"1",)),
    Nacks(("a", "b"), (B1, B1), (BIG, ZERO)),
    Decides(("a", "b"), (b"1", b"2"), (B1, ZERO)),
]


def _round_trip(msgs: list, first_seq: int) -> int:
    """Encode ``msgs`` as one batch from ``first_seq``, check every frame is under the
    limit and decodes to its part (first seq right, in order), and that together they
    give back ``msgs``; how many frames it took."""
    got, seq, frames = [], first_seq, 0
    for frame, part in codec.encode_batch("p", first_seq, msgs):
        assert len(frame) <= codec.MAX_FRAME_BYTES
        batch = codec.decode_batch(frame)
        assert batch.first_seq == seq and batch.messages == list(part)
        got += batch.messages
        seq += len(part)
        frames += 1
    assert got == msgs
    return frames


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    frame = codec.encode(msg, "n0", 1)
    assert frame.startswith(codec.PROTOCOL)
    assert codec.decode(frame) == (msg, "n0:1")


def test_a_batch_of_every_type_is_one_frame_and_round_trips():
    """Any registry message rides in a batch; message ids run on from ``first_seq``."""
    [(frame, part)] = codec.encode_batch("n0", 41, MESSAGES)
    assert part == MESSAGES
    batch = codec.decode_batch(memoryview(frame))  # a view of the socket's buffer is enough
    assert batch.messages == MESSAGES
    assert (batch.sender, batch.first_seq) == ("n0", 41)
    assert codec.msg_id(batch.sender, batch.first_seq + 1) == "n0:42"


def test_a_batch_over_the_body_limit_is_split_in_order():
    big = b"v" * codec.MAX_VALUE_BYTES
    msgs = [Accept(f"k{i}", B1, big) for i in range(9)]
    assert _round_trip(msgs, 0) > 1


def test_a_status_entry_holds_a_register_at_the_size_limit():
    """A register slot holds its encoded state: a value at the limit plus the state's own
    fields, every recent op at its longest (issue 26.1: such a reply was refused)."""
    from zpaxos.protocol.regmessages import (
        OP_ID_MAX_BYTES,
        RECENT_OPS,
        STATE_OVERHEAD_BYTES,
        RegState,
        encode_state,
    )

    ops = tuple((bytes([i]) * OP_ID_MAX_BYTES, i) for i in range(RECENT_OPS))
    state = encode_state(RegState(7, b"b" * codec.MAX_VALUE_BYTES, ops))
    assert len(state) == codec.MAX_VALUE_BYTES + STATE_OVERHEAD_BYTES
    reply = StatusReply(0, (KeyStatus("@r", B1, B1, state, None),), False)
    assert codec.decode(codec.encode(reply))[0] == reply
    too_big = StatusReply(0, (KeyStatus("@r", B1, B1, state + b"x", None),), False)
    with pytest.raises(codec.DecodeError, match="over the"):
        codec.decode(codec.encode(too_big))


def test_one_bad_message_refuses_the_whole_batch():
    good = next(codec.encode_batch("x", 0, MESSAGES[:3]))[0]
    body = msgpack.unpackb(bytes(good[8:]), raw=False)
    body[2][1][1] = "a/b"  # the second message's key
    with pytest.raises(codec.DecodeError, match="PREPARE: key"):
        codec.decode_batch(codec.PROTOCOL + msgpack.packb(body, use_bin_type=True))


def test_the_message_count_is_bounded_before_any_is_decoded():
    many = [["PREPARE", "k", [1, b"x"]]] * (codec.MAX_BATCH + 1)
    with pytest.raises(codec.DecodeError, match="at most"):
        codec.decode_batch(codec.PROTOCOL + msgpack.packb(["x", 0, many], use_bin_type=True))


def test_ballot_order_is_round_then_proposer():
    assert ZERO < Ballot(1, b"\x00") < Ballot(1, b"\x01") < Ballot(2, b"\x00")
    assert str(Ballot(2, bytes.fromhex("b7c1aa"))) == "2.b7c1"


def _one(tag, *fields, sender="x", seq=0):
    """A frame of one message, built by hand (so it can be wrong)."""
    return codec.PROTOCOL + msgpack.packb([sender, seq, [[tag, *fields]]], use_bin_type=True)


def _raw(*top):
    return codec.PROTOCOL + msgpack.packb(list(top), use_bin_type=True)


GARBAGE = [
    (b"ZPAXOS/1" + msgpack.packb(["x", 0, []]), "unknown protocol"),
    (b"ZPAX", "unknown protocol"),
    (codec.PROTOCOL + b"\xc1", "not valid msgpack"),
    (_raw("x", 0), "expected .sender"),
    (_raw("", 0, []), "sender"),
    (_raw("\u00e9", 0, []), "sender"),
    (_raw("x", -1, []), "first seq"),
    (_raw("x", 0, {}), "messages: expected a list"),
    (_raw("x", 0, [[]]), "expected .type"),
    (_raw("x", 0, ["PREPARE"]), "expected .type"),
    (_one("PREPAR", "k", [1, b"x"]), "unknown message type"),
    (_one(b"PREPARE", "k", [1, b"x"]), "unknown message type"),
    (_one("PREPARE", "k"), "expected 2 fields"),
    (_one("PREPARE", "k", [0, b""]), "zero ballot"),
    (_one("PREPARE", "k", [-1, b"x"]), "round"),
    (_one("PREPARE", "k", [1 << 63, b"x"]), "round"),
    (_one("PREPARE", "k", [True, b"x"]), "round"),
    (_one("PREPARE", "k", [1, "x"]), "expected bytes"),
    (_one("PREPARE", "k", [1, b"x" * 33]), "not a valid ballot"),
    (_one("PREPARE", "a/b", [1, b"x"]), "may hold only"),
    (_one("ACCEPT", "k", [1, b"x"], "text"), "bytes"),
    (_one("ACCEPT", "k", [1, b"x"], b"v" * (codec.MAX_VALUE_BYTES + 1)), "bytes"),
    (_one("PROMISE", "k", [1, b"x"], [1, b"y"], None), "go together"),
    (_one("STATUS_REPLY", 1, [["k"]], False, [], []), "status entry"),
    (_one("STATUS_REPLY", 1, [], False, [], [["p-", [0, b"x"]]]), "ranges ballot"),
    (_one("SYNC_REPLY", "", [["k", b"v", [0, b""]]], 1), "true/false"),
]


@pytest.mark.parametrize("frame,why", GARBAGE)
def test_garbage_is_a_decode_error(frame, why):
    with pytest.raises(codec.DecodeError, match=why):
        codec.decode_batch(frame)


def test_random_garbage_never_raises_anything_else():
    """Mutated valid batches decode to valid messages or raise DecodeError, nothing else;
    and what does decode is real messages that survive the round trip again."""
    rng = random.Random(5597)
    valid = [next(codec.encode_batch("x", 0, MESSAGES[i:i + 3]))[0]
             for i in range(len(MESSAGES))]
    decoded = 0
    for _ in range(5000):
        f = bytearray(rng.choice(valid))
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.7:
                f[rng.randrange(8, len(f))] = rng.randrange(256)
            else:
                f.extend(rng.randbytes(rng.randint(1, 4)))
        try:
            batch = codec.decode_batch(bytes(f))
        except codec.DecodeError:
            continue
        decoded += 1
        [(again, _)] = codec.encode_batch(batch.sender, batch.first_seq, batch.messages)
        assert codec.decode_batch(again) == batch
    assert decoded > 100  # the mutations leave some batches valid: those were checked too


def test_deep_nesting_is_refused_without_recursion():
    """A body of a million nested arrays once crashed a node (RecursionError while the
    error message formatted the value). Now it is one DecodeError, quickly."""
    for body in (b"\x91" * 1_000_000 + b"\xc0",
                 msgpack.packb(["x", 0, [["PREPARE", "k", [[[[[[[[1]]]]]]]]]]]),
                 msgpack.packb(["x", 0, [["SYNC_REPLY", "", [[[[[[[["k"]]]]]]]], True]]])):
        with pytest.raises(codec.DecodeError):
            codec.decode_batch(codec.PROTOCOL + body)


@pytest.mark.parametrize("count,value_bytes", [
    (codec.FRAME_CHUNK + 1, 16), (15 + codec.FRAME_CHUNK, 16), (16 + codec.FRAME_CHUNK, 16),
    (1000, 16), (130, 100_000), (70, codec.MAX_VALUE_BYTES)])
def test_a_big_batch_packed_a_chunk_at_a_time_round_trips_in_order(count, value_bytes):
    """Past FRAME_CHUNK messages a batch is packed a chunk at a time (and a chunk that
    does not fit the frame, one message at a time): frames stay under the limit, in
    order, with their first seq right, whatever the chunk's array header was."""
    msgs = [Accept(f"k{i}", B1, bytes([i % 256]) * (value_bytes if i % 3 else 5))
            for i in range(count)]
    frames = _round_trip(msgs, 7)
    if value_bytes == 16:
        assert frames == 1


def test_frames_are_encoded_only_as_they_are_taken():
    """A sender that stops at a full queue never encodes the rest of a huge pass."""
    big = b"v" * (100 << 10)
    msgs = [Accept(f"k{i}", B1, big) for i in range(80)] + [object()]  # the last: unencodable
    frames = codec.encode_batch("p", 0, msgs)
    frame, part = next(frames)
    assert codec.decode_batch(frame).messages == list(part)
    with pytest.raises(TypeError):  # msgspec: "Encoding objects of type object is unsupported"
        list(frames)  # only taking them all reaches the last message


def _plain(v):
    """A message as the wire format spells it, built by hand: ``[TAG, field, ...]``, records
    and ballots as lists (so msgpack-python can pack it, as the codec before msgspec did)."""
    if hasattr(v, "__struct_fields__"):
        tag = v.__struct_config__.tag
        return ([tag] if tag else []) + [_plain(getattr(v, f)) for f in v.__struct_fields__]
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_the_wire_bytes_are_msgpack_of_the_documented_layout(msg):
    """ZPAXOS/3 is as documented: b"ZPAXOS/3" + msgpack([sender, first_seq, [[TAG, field...]]])
    byte for byte, as any msgpack library packs it."""
    assert codec.encode(msg, "n0", 1) == codec.PROTOCOL + msgpack.packb(
        ["n0", 0, [_plain(msg)]], use_bin_type=True)


def test_a_refusal_never_quotes_the_value_it_refuses():
    """Whatever field a hostile value sits in (a tag, a key, a ballot part, a record's
    part, any type), the error names the place and the reason, never the value."""
    marker = "Q7xQ7xQ7x"
    bad = [marker, marker.encode(), "k/" + marker, [1, marker.encode() * 9], [marker], 2**64 - 1]
    rng = random.Random(20)
    for msg in MESSAGES:
        entry = _plain(msg)
        for i in range(len(entry)):
            for v in bad:
                e = list(entry)
                e[i] = v if rng.random() < 0.5 or type(e[i]) is not list or not e[i] else \
                    [v, *e[i][1:]]
                try:
                    codec.decode_batch(codec.PROTOCOL + msgpack.packb(["x", 0, [e]],
                                                                      use_bin_type=True))
                except codec.DecodeError as err:
                    assert marker not in str(err) and str(2**64 - 1) not in str(err), err


_WITHOUT_TYPING_EXTENSIONS = """
import sys
sys.modules["typing_extensions"] = None  # as zpaxos.cli.entry does for a propose process
import json
from zpaxos.runtime import codec
out = []
for h in json.load(sys.stdin):
    try:
        b = codec.decode_batch(bytes.fromhex(h))
        out.append(["ok", b"".join(f for f, _ in codec.encode_batch(
            b.sender, b.first_seq, b.messages)).hex()])
    except codec.DecodeError as e:
        out.append(["error", str(e)])
print(json.dumps([out, "typing_extensions" in sys.modules and
                  sys.modules["typing_extensions"] is not None]))
"""


def test_the_codec_is_the_same_without_typing_extensions():
    """``zpaxos propose`` keeps msgspec's optional typing_extensions out of its process
    (zpaxos.cli.entry); every message type still round-trips to the same bytes and every
    malformed frame is refused with the same words as in a process that has it."""
    import json
    import subprocess
    import sys

    from zpaxos.lab.launcher import child_env

    good = [codec.encode(m, "n0", 1) for m in MESSAGES]
    frames = good + [f for f, _ in GARBAGE]
    r = subprocess.run([sys.executable, "-c", _WITHOUT_TYPING_EXTENSIONS],
                       input=json.dumps([f.hex() for f in frames]), capture_output=True,
                       text=True, env=child_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    got, had_it = json.loads(r.stdout)
    assert not had_it
    expected = [["ok", f.hex()] for f in good]
    for f, _ in GARBAGE:
        with pytest.raises(codec.DecodeError) as e:
            codec.decode_batch(f)
        expected.append(["error", str(e.value)])
    assert got == expected
