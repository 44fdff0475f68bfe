"""``python -m zpaxos.sim``: replay one seeded schedule, or check many (see simulator.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from zpaxos.sim import simulator
from zpaxos.sim.mutants import KEY_MUTANTS as MUTANTS
from zpaxos.sim.runs import check_seeds_parallel
from zpaxos.sim.simulator import InvariantViolation, Simulation, fv, generate


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zpaxos.sim", description=simulator.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, help="replay this one seed")
    ap.add_argument("--trace", action="store_true", help="print the schedule's trace")
    ap.add_argument("--seeds", type=int, default=1000, help="how many seeds to check")
    ap.add_argument("--start", type=int, default=0, help="first seed to check")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mutant", help="run a broken variant: a name in zpaxos/sim/mutants.py")
    args = ap.parse_args(argv)
    variant: dict[str, Any] = {}
    if args.mutant:
        variant = MUTANTS[args.mutant].variant
    if args.seed is not None:
        try:
            r = Simulation(generate(args.seed), trace=args.trace, **variant).run()
        except InvariantViolation as e:
            print("\n".join(e.trace) if args.trace else "", file=sys.stderr)
            print(f"seed {e.seed}: VIOLATION: {e.what}", file=sys.stderr)
            return 1
        print(f"scenario: {r.scenario.describe()}")
        if args.trace:
            print("\n".join(r.trace))
        for name, o in r.outcomes.items():
            print(f"{name} at t={r.finished_at[name]:.4f}: chosen={fv(o.chosen)} own={o.own}"
                  f" rounds={o.rounds} ({o.reason})")
        print(f"seed {args.seed}: ok")
        return 0
    failures, cover = check_seeds_parallel(range(args.start, args.start + args.seeds),
                                           args.workers, **variant)
    print(dict(sorted(cover.items())))
    for f in failures:
        print(f, file=sys.stderr)
    print(f"{cover['schedules']} schedules ok, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
