"""``python -m tests.nemesis --minutes M --seed S``: one nemesis run; exit 0 when clean.

Exit codes: 0 no violation and the healed cluster converged; 1 a violation or no
convergence; 77 namespaces are not available here (not root, no iproute2).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from tests.nemesis.crashnode import MUTANTS
from tests.nemesis.netns import install_signal_cleanup, unavailable_reason
from tests.nemesis.runner import Nemesis, Options
from tests.nemesis.schedule import CURVE_KINDS, KINDS, NETEM_KIND, make_schedule


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.nemesis", description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=2.0, help="length of the faulty phase")
    ap.add_argument("--seconds", type=float, default=None, help="the same, in seconds")
    ap.add_argument("--seed", type=int, default=None, help="fault schedule seed (default: random)")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--workdir", default="out/nemesis")
    ap.add_argument("--stream-workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=16, help="proposals in flight per worker")
    ap.add_argument("--rate", type=float, default=40.0,
                    help="proposals started per second per stream worker (0: flat out)")
    ap.add_argument("--cli-threads", type=int, default=2)
    ap.add_argument("--log-level", default="WARNING", help="nodes' and proposers' log level")
    ap.add_argument("--kinds", default=None, metavar="K1,K2",
                    help=f"only these fault kinds (of {','.join(KINDS)})")
    ap.add_argument("--netem", action="store_true",
                    help="add packet faults with kernel netem (where the kernel has it)")
    ap.add_argument("--mutant", choices=sorted(MUTANTS), default=None,
                    help="run deliberately broken nodes: the run must then find violations")
    ap.add_argument("--curve", action="store_true",
                    help="CURVE on every socket (node and link faults only: see CURVE_KINDS)")
    ap.add_argument("--print-schedule", action="store_true", help="print the faults and exit")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    a = ap.parse_args(argv)
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 31)
    seconds = a.seconds if a.seconds is not None else a.minutes * 60
    kinds = None
    if a.kinds:
        unknown = sorted(set(a.kinds.split(",")) - set(KINDS))
        if unknown:
            ap.error(f"--kinds: unknown {unknown} (known: {', '.join(KINDS)})")
        kinds = {k: KINDS[k] for k in a.kinds.split(",")}
    if a.curve:
        kinds = {k: w for k, w in (kinds or CURVE_KINDS).items() if k in CURVE_KINDS}
    if a.netem:
        kinds = {**(kinds or KINDS), NETEM_KIND: 3}
    if a.print_schedule:
        print(f"seed {seed}, {a.nodes} nodes, {seconds:g} s")
        for f in make_schedule(seed, seconds, a.nodes, kinds=kinds):
            print(f.describe())
        return 0
    reason = unavailable_reason()
    if reason:
        print(f"nemesis: skipped: {reason}", file=sys.stderr)
        return 77
    install_signal_cleanup()
    try:
        report = Nemesis(Options(seed=seed, seconds=seconds, nodes=a.nodes, workdir=Path(a.workdir),
                                 stream_workers=a.stream_workers, concurrency=a.concurrency,
                                 rate=a.rate, cli_threads=a.cli_threads,
                                 log_level=a.log_level, kinds=kinds,
                                 mutant=a.mutant, curve=a.curve)).run()
    except RuntimeError as e:  # a node or the proxy could not start; no netem
        print(f"nemesis: error: {e} (seed {seed})", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, SystemExit) as e:
        code = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 130
        print(f"nemesis: interrupted (seed {seed}); every process and namespace removed",
              file=sys.stderr)
        return code
    print(json.dumps(report.__dict__, default=str) if a.json else report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
