"""A proposer process for the nemesis: many keys in flight through ``Client.stream``.

Built on the public API only. Proposes distinct values (``<name>-<n>``) on a few
contended keys and on many fresh keys until ``--seconds`` have passed, or, with
``--keys-file``, once on each key listed there (the final repair pass). Every operation
is one JSON line on ``--out``: key, value, start and end (wall clock), chosen (None when
nothing was chosen in time: "maybe chosen"), reason.

    python -m tests.nemesis.worker --config client.ini --name w0 --seconds 60 --out w0.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Iterator

from zpaxos.client import Client, load_config

BATCH_S = 0.5
HOT_PERIOD_S = 3.0


def hot_key(i: int) -> str:
    """A contended key: every proposer (every process, on the shared clock) fights over the
    same few keys for HOT_PERIOD_S, then moves on to fresh ones, so contention never
    fades into "already chosen". They sort before the fresh keys ("x-...") in a status
    reply, which pages by key."""
    return f"hot-{int(time.time() // HOT_PERIOD_S)}-{i}"


def _text(b: bytes | None) -> str | None:
    return None if b is None else b.decode("utf-8", "replace")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--hot-keys", type=int, default=4)
    ap.add_argument("--hot-share", type=float, default=0.3)
    ap.add_argument("--rate", type=float, default=40.0,
                    help="proposals started per second (0: flat out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keys-file", default=None, help="propose once on each key listed")
    a = ap.parse_args()

    rng = random.Random(a.seed)
    deadline = time.time() + a.seconds

    def fresh(n: int) -> tuple[str, str]:
        if rng.random() < a.hot_share:
            return hot_key(rng.randrange(a.hot_keys)), f"{a.name}-{n}"
        return f"x-{a.name}-{n}", f"{a.name}-{n}"

    def batches() -> Iterator[list[tuple[str, str]]]:
        """All keys at once (repair), or ``rate/2`` proposals every half second (a
        generator that slept inside ``stream`` would stall the replies in flight)."""
        if a.keys_file:
            keys = [k for k in open(a.keys_file).read().split() if k]
            yield [(k, f"{a.name}-{n}") for n, k in enumerate(keys)]
            return
        n = 0
        while time.time() < deadline:
            tick = time.time()
            size = max(1, round(a.rate * BATCH_S)) if a.rate else a.concurrency * 4
            yield [fresh(n + j) for j in range(size)]
            n += size
            if a.rate:
                time.sleep(max(0.0, tick + BATCH_S - time.time()))

    with open(a.out, "a", buffering=1) as out, Client(load_config(a.config)) as client:
        for batch in batches():
            t0 = time.time()
            for index, outcome, seconds in client.stream(batch, a.concurrency):
                key, value = batch[index]
                end = time.time()
                out.write(json.dumps({
                    "proc": a.name, "via": "repair" if a.keys_file else "stream", "key": key,
                    "value": value, "start": max(t0, end - seconds), "end": end,
                    "chosen": _text(outcome.chosen), "reason": outcome.reason}) + "\n")


if __name__ == "__main__":
    main()
