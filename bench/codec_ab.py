"""Codec cost per message: encode and decode whole frames through the public codec API.

Uses only ``codec.encode_batch``/``codec.decode_batch`` and the message constructors, so
the same file measures any checkout (A/B: run it from each tree in turn, alternating)::

    .venv/bin/python bench/codec_ab.py [--rounds 7] [--batch 100]

Batches, each of ``--batch`` messages in zpaxos's shape (16-byte proposer ids, short keys):
``accept`` (a proposer's phase 2), ``accepted`` (the replies), ``promise`` (phase 1 replies,
half of them carrying an accepted value), ``mixed`` (every Paxos type in turn). Prints the
best of ``--rounds`` runs in nanoseconds per message (best: the machine is shared).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from zpaxos.protocol.messages import (
    ZERO,
    Accept,
    Accepted,
    Ballot,
    Decide,
    Nack,
    Prepare,
    Promise,
)
from zpaxos.runtime import codec

PID = bytes(range(16))
B = Ballot(7, PID)
A = Ballot(6, PID[::-1])


def batches(n: int) -> dict[str, list[object]]:
    return {
        "accept": [Accept(f"key-{i}", B, b"Value_%d" % i) for i in range(n)],
        "accepted": [Accepted(f"key-{i}", B, b"Value_%d" % i) for i in range(n)],
        "promise": [Promise(f"key-{i}", B, *((A, b"v%d" % i) if i % 2 else (ZERO, None)))
                    for i in range(n)],
        "mixed": [[Prepare(f"k{i}", B), Promise(f"k{i}", B, ZERO, None),
                   Accept(f"k{i}", B, b"v"), Accepted(f"k{i}", B, b"v"),
                   Nack(f"k{i}", B, A), Decide(f"k{i}", b"v", B)][i % 6] for i in range(n)],
    }


def best_ns(fn: Callable[[], object], per: int, rounds: int, seconds: float = 0.2) -> float:
    """Best of ``rounds`` timed loops (each about ``seconds``), in ns per message."""
    loops = 1
    while True:  # calibrate
        t = time.perf_counter()
        for _ in range(loops):
            fn()
        if time.perf_counter() - t > seconds / 4:
            break
        loops *= 2
    loops = max(1, int(loops * seconds / max(time.perf_counter() - t, 1e-9)))
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - t) / loops / per * 1e9)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=100)
    a = ap.parse_args()
    for name, msgs in batches(a.batch).items():
        [(frame, _)] = codec.encode_batch("n0", 5, msgs)  # type: ignore[arg-type]
        assert codec.decode_batch(frame).messages == msgs
        enc = best_ns(lambda m=msgs: list(codec.encode_batch("n0", 5, m)), len(msgs), a.rounds)
        dec = best_ns(lambda f=frame: codec.decode_batch(f), len(msgs), a.rounds)
        print(f"{name:9s} decode {dec:6.0f} ns/msg   encode {enc:6.0f} ns/msg   "
              f"({len(frame)} bytes)")


if __name__ == "__main__":
    main()
