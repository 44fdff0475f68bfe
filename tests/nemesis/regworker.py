"""A register client for the nemesis: random get/set/cas/delete on a few registers.

Built on the public API only. Until ``--seconds`` have passed, runs one operation at a time
on one of ``--registers`` registers (``reg-0``...), and writes each as one JSON line on
``--out``: the fields of zpaxos.sim.lincheck.Op, times on the wall clock (shared by every
process on the machine), ``ret`` null when the outcome is unknown. An operation that found
no quorum wrote nothing and is left out.

    python -m tests.nemesis.regworker --config client.ini --name r0 --seconds 60 --out r0.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import time

from zpaxos.client import Client, RegOp, load_config

OP_TIMEOUT_S = 2.0


def _text(b: bytes | None) -> str | None:
    return None if b is None else b.decode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--registers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    deadline = time.time() + a.seconds
    seen: dict[str, tuple[int, bytes | None]] = {}
    n = 0
    with open(a.out, "a", buffering=1) as out, Client(load_config(a.config)) as client:
        opts = client.register_options(timeout_s=OP_TIMEOUT_S, round_timeout_s=0.25)
        while time.time() < deadline:
            n += 1
            key = f"reg-{rng.randrange(a.registers)}"
            version, current = seen.get(key, (0, None))
            value = f"{a.name}.{n}".encode()
            x = rng.random()
            op = (RegOp("get") if x < 0.3 else RegOp("set", value) if x < 0.55
                  else RegOp("cas", value, expect_version=version) if x < 0.8
                  else RegOp("cas_value", value, expect_value=current) if x < 0.9
                  else RegOp("delete"))
            t0 = time.time()
            r = client.registers([(key, op)], opts)[0]
            t1 = time.time()
            if r.status in ("ok", "cas_failed"):
                seen[key] = (r.version, r.value)
            if r.status == "no_quorum":
                continue
            out.write(json.dumps({
                "process": a.name, "key": key, "kind": op.kind, "call": t0,
                "ret": None if r.status == "unknown" else t1, "status": r.status,
                "version": r.version, "value": _text(r.value), "arg": _text(op.value),
                "expect_version": op.expect_version,
                "expect_value": _text(op.expect_value)}) + "\n")


if __name__ == "__main__":
    main()
