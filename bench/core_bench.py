"""How fast the pure protocol core decides, with no sockets, disk or logging.

    .venv/bin/python bench/core_bench.py [--proposals N]

Runs N independent single-proposer decisions on 3 in-memory acceptors, delivering
messages directly. The gap between this and `zpaxos bench` is the price of the runtime
(ZeroMQ, msgpack, SQLite fsyncs, logging).
"""

from __future__ import annotations

import argparse
import random
import time

from zpaxos.protocol.core import Acceptor, Proposer, ProposerOptions
from zpaxos.protocol.messages import Accept, Decide, Prepare


def decide_all(n: int) -> float:
    acceptors = [Acceptor() for _ in range(3)]
    opts = ProposerOptions()
    rng = random.Random(1)
    t0 = time.perf_counter()
    for i in range(n):
        p = Proposer(f"k{i}", b"value", (i + 1).to_bytes(16, "big"), [0, 1, 2], opts, rng)
        queue = list(p.start(0.0).send)
        while queue:
            dst, msg = queue.pop()
            if isinstance(msg, (Prepare, Accept, Decide)):
                for _, reply in acceptors[dst].handle("p", msg).send:
                    queue.extend(p.receive(0.0, dst, reply).send)
        assert p.outcome is not None and p.outcome.chosen == b"value"
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proposals", type=int, default=50_000)
    args = ap.parse_args()
    seconds = decide_all(args.proposals)
    print(f"pure core: {args.proposals} decisions in {seconds:.2f} s = "
          f"{args.proposals / seconds:,.0f} decisions/s (3 acceptors, no I/O)")


if __name__ == "__main__":
    main()
