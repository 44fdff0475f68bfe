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
    ap.add_argument("--rate", type=float, default=0.0, help="operations/s cap (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keys-file", default=None, help="propose once on each key listed")
    a = ap.parse_args()

    rng = random.Random(a.seed)
    started: dict[int, tuple[str, str, float]] = {}
    deadline = time.time() + a.seconds

    def items() -> Iterator[tuple[str, str]]:
        if a.keys_file:
            keys = [k for k in open(a.keys_file).read().split() if k]
            for n, key in enumerate(keys):
                value = f"{a.name}-{n}"
                started[n] = (key, value, time.time())
                yield key, value
            return
        n = 0
        while time.time() < deadline:
            if a.rate:
                time.sleep(rng.expovariate(a.rate))
            if rng.random() < a.hot_share:
                key = f"hot-{rng.randrange(a.hot_keys)}"
            else:
                key = f"f-{a.name}-{n}"
            value = f"{a.name}-{n}"
            started[n] = (key, value, time.time())
            n += 1
            yield key, value

    with open(a.out, "a", buffering=1) as out, Client(load_config(a.config)) as client:
        for index, outcome, _seconds in client.stream(items(), a.concurrency):
            key, value, t0 = started.pop(index)
            out.write(json.dumps({
                "proc": a.name, "via": "repair" if a.keys_file else "stream", "key": key,
                "value": value, "start": t0, "end": time.time(),
                "chosen": _text(outcome.chosen), "reason": outcome.reason}) + "\n")


if __name__ == "__main__":
    main()
