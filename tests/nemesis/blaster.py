"""A bounded blaster: garbage at a live node, through ZeroMQ and through raw TCP.

Through a DEALER (libzmq frames it, so every message reaches the node's decoder):
random frame lists, the right protocol and type with msgpack bodies of the right and
wrong shapes, out-of-range fields, oversized values. Through raw TCP (libzmq's own
parser must cope): random bytes instead of a greeting, a valid greeting and handshake
followed by random frames, a frame header that declares an enormous size, and
connections left half-open.

``expected_malformed`` counts what the node must report as malformed: every DEALER
message that zpaxos's own codec (the oracle, run here) refuses.

    python -m tests.nemesis.blaster --seconds 20 --seed 1     # against a temporary cluster
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import zmq

from zpaxos.runtime import codec

PROTOCOL = codec.PROTOCOL
TAGS = [b"PREPARE", b"PROMISE", b"ACCEPT", b"ACCEPTED", b"NACK", b"DECIDE", b"STATUS",
        b"STATUS_REPLY", b"SYNC", b"SYNC_REPLY"]
ARITY = {b"PREPARE": 2, b"PROMISE": 4, b"ACCEPT": 3, b"ACCEPTED": 3, b"NACK": 3, b"DECIDE": 3,
         b"STATUS": 1, b"STATUS_REPLY": 3, b"SYNC": 1, b"SYNC_REPLY": 3}
# Keys of forged-but-valid messages stay in this namespace, away from real work.
FUZZ_KEY_PREFIX = "fuzz-"


def deep(depth: int) -> bytes:
    """A msgpack body of ``depth`` nested one-element arrays."""
    return b"\x91" * depth + b"\xc0"


def frame(proto: bytes, tag: bytes, sender: bytes, body: bytes) -> bytes:
    """One message in a wire frame (codec.py), built by hand from its parts so any of
    them can be wrong: ``tag`` is put in as text (or raw bytes when not UTF-8), ``body``
    (msgpack bytes, valid or not) stands for the message's fields; a body that packs a
    list is spliced in as the fields themselves."""
    try:
        tag_obj: object = tag.decode()
    except UnicodeDecodeError:
        tag_obj = tag
    try:
        fields = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception:  # noqa: BLE001 - garbage stays garbage
        fields = None
    if isinstance(fields, list) and len(fields) < 15:
        entry = (bytes([0x90 + len(fields) + 1]) + msgpack.packb(tag_obj, use_bin_type=True)
                 + b"".join(msgpack.packb(f, use_bin_type=True) for f in fields))
    else:
        entry = b"\x92" + msgpack.packb(tag_obj, use_bin_type=True) + body
    try:
        who = sender.decode("ascii").split(":")[0]
    except UnicodeDecodeError:
        who = ""
    head = b"\x93" + msgpack.packb(who or sender, use_bin_type=True) + b"\x00\x91"
    return proto + head + entry


@dataclass
class Counts:
    messages: int = 0
    expected_malformed: int = 0
    raw_connections: int = 0
    raw_bytes: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


class Blaster:
    def __init__(self, host: str, port: int, seed: int) -> None:
        self.host, self.port = host, port
        self.rng = random.Random(seed)
        self.counts = Counts()
        self.ctx = zmq.Context()
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.ROUTING_ID, b"fuzzer-%d" % seed)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(f"tcp://{host}:{port}")

    def close(self) -> None:
        self.dealer.close(0)
        self.ctx.term()

    # ---- values

    def scalar(self):
        r = self.rng
        return r.choice([
            None, True, False, 0, -1, 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), r.random(),
            "", "k", FUZZ_KEY_PREFIX + str(r.randrange(50)), "../etc/passwd", ".hidden",
            "x" * 129, "\u00e9\u0000", b"", b"\x00" * 16, r.randbytes(r.randrange(40)),
            r.randrange(-5, 5)])

    def anything(self, depth: int = 0):
        r = self.rng
        roll = r.random()
        if depth > 3 or roll < 0.6:
            return self.scalar()
        if roll < 0.85:
            return [self.anything(depth + 1) for _ in range(r.randrange(5))]
        return {str(r.randrange(9)): self.anything(depth + 1) for _ in range(r.randrange(3))}

    def ballot(self):
        r = self.rng
        if r.random() < 0.5:
            return [r.choice([0, 1, 2, 2**63 - 1, 2**63, -1]), r.choice([b"", r.randbytes(16),
                                                                         r.randbytes(40), "s"])]
        return self.anything()

    def shaped_fields(self, tag: bytes) -> list:
        """The right number of fields, each plausibly typed or not."""
        r = self.rng
        n = ARITY[tag]
        out = []
        for i in range(n):
            if i == 0 and tag not in (b"STATUS_REPLY",):
                out.append(FUZZ_KEY_PREFIX + str(r.randrange(50)) if r.random() < 0.5
                           else self.scalar())
            elif r.random() < 0.4:
                out.append(self.ballot())
            elif r.random() < 0.1:
                out.append(b"v" * (codec.MAX_VALUE_BYTES + 1))  # oversized value
            else:
                out.append(self.anything())
        if r.random() < 0.2:  # one too many or too few
            out = out[:-1] if r.random() < 0.5 else out + [None]
        return out

    # ---- through ZeroMQ

    def one_message(self) -> list[bytes]:
        r = self.rng
        roll = r.random()
        if roll < 0.2:
            self.counts.add("random frames")
            return [r.randbytes(r.randrange(64)) for _ in range(r.randrange(1, 7))]
        tag = r.choice(TAGS) if r.random() < 0.9 else r.randbytes(r.randrange(12))
        msg_id = b"fz:%d" % self.counts.messages if r.random() < 0.9 else r.randbytes(80)
        proto = PROTOCOL if r.random() < 0.95 else b"ZPAXOS/1"
        if roll < 0.5 and tag in ARITY:
            self.counts.add("right shape")
            body = msgpack.packb(self.shaped_fields(tag), use_bin_type=True)
        elif roll < 0.75:
            self.counts.add("wrong shape")
            body = msgpack.packb(self.anything(), use_bin_type=True)
        elif roll < 0.95:
            self.counts.add("random body")
            body = r.randbytes(r.randrange(200))
        else:
            self.counts.add("truncated body")
            full = msgpack.packb(self.shaped_fields(r.choice(TAGS)), use_bin_type=True)
            body = full[: r.randrange(max(1, len(full)))]
        frames = [frame(proto, tag, msg_id, body)]
        if r.random() < 0.05:
            frames = frames + [r.randbytes(r.randrange(8))]  # wrong frame count
        return frames

    def send(self, frames: list[bytes]) -> None:
        try:
            if len(frames) != 1:
                raise codec.DecodeError("expected 1 frame")
            codec.decode_batch(frames[0])
        except codec.DecodeError:
            self.counts.expected_malformed += 1
        self.dealer.send_multipart(frames)
        self.counts.messages += 1

    def blast_zmq(self, n: int) -> None:
        for _ in range(n):
            self.send(self.one_message())

    def drain_replies(self) -> int:
        """Read (and forget) what the node answered to forged messages that were valid."""
        n = 0
        while self.dealer.poll(0):
            self.dealer.recv_multipart()
            n += 1
        return n

    # ---- through raw TCP

    def _raw(self, data: bytes, hold: bool = False) -> socket.socket | None:
        self.counts.raw_connections += 1
        self.counts.raw_bytes += len(data)
        s = socket.create_connection((self.host, self.port), timeout=2)
        try:
            s.sendall(data)
        except OSError:
            s.close()
            return None
        if hold:
            return s
        try:
            s.settimeout(0.05)
            s.recv(4096)
        except OSError:
            pass
        s.close()
        return None

    @staticmethod
    def greeting() -> bytes:
        return (b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\x00")
                + b"\x00" + b"\x00" * 31)

    @staticmethod
    def command(name: bytes, props: dict[bytes, bytes]) -> bytes:
        body = bytes([len(name)]) + name + b"".join(
            bytes([len(k)]) + k + struct.pack(">I", len(v)) + v for k, v in props.items())
        return bytes([0x04, len(body)]) + body

    def handshake(self) -> bytes:
        return self.greeting() + self.command(b"READY", {b"Socket-Type": b"DEALER",
                                                        b"Identity": b""})

    def blast_raw(self, n: int) -> list[socket.socket]:
        """Raw TCP garbage; returns half-open connections for the caller to close."""
        r = self.rng
        held: list[socket.socket] = []
        for _ in range(n):
            roll = r.random()
            if roll < 0.3:
                self.counts.add("raw random bytes")
                self._raw(r.randbytes(r.randrange(1, 300)))
            elif roll < 0.55:
                self.counts.add("raw frames after handshake")
                frames = b"".join(bytes([r.randrange(256), r.randrange(256)]) +
                                  r.randbytes(r.randrange(64)) for _ in range(r.randrange(1, 8)))
                self._raw(self.handshake() + frames)
            elif roll < 0.7:
                self.counts.add("raw oversized frame header")
                self._raw(self.handshake() + b"\x02" + struct.pack(">Q", 2**62) + b"x" * 100)
            elif roll < 0.8:
                self.counts.add("raw bad greeting")
                g = bytearray(self.greeting())
                g[r.randrange(len(g))] = r.randrange(256)
                self._raw(bytes(g) + r.randbytes(50))
            elif roll < 0.9:
                self.counts.add("raw well-framed garbage message")
                body = r.randbytes(r.randrange(1, 100))
                self._raw(self.handshake() + b"\x00" + bytes([len(body)]) + body)
            else:
                self.counts.add("raw half-open")
                cut = self.handshake()[: r.randrange(1, 70)]
                s = self._raw(cut, hold=True)
                if s is not None:
                    held.append(s)
        return held


def rss_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":")
                out[name] = int(value.split()[0])
    return out


def log_events(path: Path) -> list[dict]:
    """The events of a JSON log: one object a line (a line cut short by a kill is skipped).
    Split on newlines only: a logged value may hold other line separators."""
    events = []
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events


def logged_malformed(cluster, process: str = "node0") -> int:
    """How many malformed messages the node's JSON log (workdir/paxos.log) reports dropping."""
    return sum(1 for e in log_events(Path(cluster.dir) / "paxos.log")
               if e.get("event") == "malformed" and e.get("process") == process)


def wait_logged(cluster, expected: int, timeout_s: float = 60.0) -> bool:
    """Wait until the node has logged at least ``expected`` malformed messages (the node
    handles a connection's messages in order, but a reply cannot say which request it
    answers, so the log is the witness)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if logged_malformed(cluster) >= expected:
            return True
        time.sleep(0.2)
    return False


def main() -> None:
    import tempfile

    from tests.harness import Cluster

    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d, Cluster(Path(d), log_level="WARNING") as c:
        c.start_all()
        pid = c.procs[0].pid
        before = rss_kb(pid)
        b = Blaster("127.0.0.1", c.ports[0], a.seed)
        t0 = time.monotonic()
        held: list[socket.socket] = []
        series, next_sample = [], t0
        while time.monotonic() - t0 < a.seconds:
            b.blast_zmq(200)
            held += b.blast_raw(5)
            if len(held) > 100:  # at most ~100 half-open connections at a time
                for s in held[:50]:
                    s.close()
                del held[:50]
            if time.monotonic() >= next_sample:
                series.append(rss_kb(pid)["VmRSS"] // 1024)
                next_sample += 5
        elapsed = time.monotonic() - t0
        b.drain_replies()
        flushed = wait_logged(c, b.counts.expected_malformed)
        after = rss_kb(pid)
        for s in held:
            s.close()
        malformed = logged_malformed(c)
        r = c.propose("after-fuzz", "--key", "after-fuzz")
        print(f"{b.counts.messages} zmq messages in {elapsed:.1f} s "
              f"({b.counts.messages / elapsed:.0f}/s), {b.counts.raw_connections} raw "
              f"connections; expected malformed {b.counts.expected_malformed}, node0 logged "
              f"{malformed}; flushed {flushed}; node0 RSS {before['VmRSS']} -> "
              f"{after['VmRSS']} KiB, peak {after['VmHWM']} KiB; alive {c.is_running(0)}; "
              f"propose after: exit {r.code} {r.out.strip()}")
        print(f"node0 RSS every 5 s (MiB): {series}")
        print(b.counts.kinds)
        b.close()


if __name__ == "__main__":
    main()
