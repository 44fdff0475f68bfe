"""The command line of a seeded simulator: ``--seed N`` replays one schedule with its
trace, ``--seeds N`` runs that many and reports what they covered, ``--mutant NAME`` runs
a broken variant instead (``python -m zpaxos.sim.membersim``, ``...catchup_sim``)."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from zpaxos.sim.ghost import InvariantViolation

Variant = dict[str, Any]


def seeds_main(description: str, default_seeds: int, mutants: Iterable[str],
               variant_of: Callable[[str], Variant], run_one: Callable[..., object],
               check: Callable[..., tuple[list[InvariantViolation], Counter[str]]],
               argv: Sequence[str] | None = None) -> int:
    """``run_one(seed, trace=True, **variant)`` replays a seed; ``check(seeds,
    **variant)`` runs many; ``variant_of(mutant)`` is what a mutant changes."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--seeds", type=int, default=default_seeds)
    ap.add_argument("--mutant", choices=sorted(mutants))
    a = ap.parse_args(argv)
    variant = variant_of(a.mutant) if a.mutant else {}
    if a.seed is not None:
        try:
            run_one(a.seed, trace=True, **variant)
        except InvariantViolation as e:
            print(e)
            return 1
        print(f"seed {a.seed}: ok")
        return 0
    failures, cover = check(range(a.seeds), **variant)
    if failures:
        print(f"caught at seed {failures[0].seed}: {failures[0].what}")
        return 1
    print(f"{a.seeds} schedules: no violation; {dict(cover)}")
    return 0
