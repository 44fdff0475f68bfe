"""One racer of the lab's compare-and-set race (scenario "cas-race"), as its own process.

    python -m zpaxos.lab.casrace --config C --name A --register R --tries N --start-at T

At wall-clock time ``T``, ``T + step``, ... (so two racers try together), ``N`` times: read
the register, and half a step later compare-and-set it from the version read to
``<name><version + 1>``: both read the same version, and both try to move it up.
Prints one JSON line per compare-and-set: its status, and the register's version and
value after it (for a failed one, the state that beat it). Its messages go to the
cluster's log under its proposer name, so the scenario's chart draws the race.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from zpaxos.naming import proposer_name
from zpaxos.protocol.register import CAS, GET, RegOp
from zpaxos.runtime.client import Client
from zpaxos.runtime.config import load_config
from zpaxos.runtime.log import setup_logging


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--register", required=True)
    ap.add_argument("--tries", type=int, default=3)
    ap.add_argument("--start-at", type=float, default=0.0)
    ap.add_argument("--step", type=float, default=0.3, help="seconds between tries")
    args = ap.parse_args(argv)
    cluster = load_config(args.config)
    client_id = os.urandom(16)
    log = setup_logging(cluster.log, proposer_name(client_id), stderr=False)
    with Client(cluster, log, client_id=client_id) as c:
        opts = c.register_options()
        print(json.dumps({"name": args.name, "proposer": c.name}), flush=True)
        for i in range(args.tries):
            # Both racers start each try at the same moment: both read the same version.
            time.sleep(max(0.0, args.start_at + i * args.step - time.time()))
            seen = c.registers([(args.register, RegOp(GET))], opts)[0]
            value = f"{args.name}{seen.version + 1}".encode()
            # ... and both compare-and-set together, once both have read.
            time.sleep(max(0.0, args.start_at + (i + 0.5) * args.step - time.time()))
            r = c.registers([(args.register, RegOp(CAS, value, expect_version=seen.version))],
                            opts)[0]
            print(json.dumps({"name": args.name, "expect": seen.version, "status": r.status,
                              "version": r.version,
                              "value": None if r.value is None else r.value.decode(),
                              "fast": r.fast}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
