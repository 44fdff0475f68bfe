"""Find a schedule where a broken rule lets two values be chosen, then shrink it.

``search`` runs seeds (schedules.py) with the rule broken until two proposals report
different values for one key. ``shrink`` then takes the run's :class:`Tape` and removes
choices -- deliveries (each becomes a lost message) and crashes -- with delta debugging
(Zeller's ddmin): try dropping large chunks first, then smaller ones, keeping any
removal after which the replay still decides two values. The result is 1-minimal:
taking away any single delivery or crash left on it makes the split go away. Every
candidate is a real replay of the real hosts, so the shrunk schedule is a run that
happens, not a description of one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from zpaxos.sim.schedules import scenario
from zpaxos.sim.simulator import Scenario
from zpaxos.sim.tape import CrashAt, MsgId, Tape, TapedSimulation, summary

T = TypeVar("T")


def run(sc: Scenario, variant: dict[str, Any], tape: Tape | None = None,
        log: bool = False, unknown_delay_s: float | None = None) -> TapedSimulation:
    """One lesson run: violations noted, not raised; it ends where two values are decided."""
    sim = TapedSimulation(sc, tape=tape, log=log, strict=False, stop_at_split=True,
                          one_process_each=True, unknown_delay_s=unknown_delay_s, **variant)
    sim.run()
    return sim


@dataclass
class Found:
    seed: int
    seeds_searched: int
    scenario: Scenario
    sim: TapedSimulation  # the first run that split


def search(variant: dict[str, Any], start: int = 0, limit: int = 100_000, nodes: int = 3,
           proposers: int = 2, faults: frozenset[str] = frozenset(),
           deadline_s: float = 60.0) -> Found | None:
    """The first seed from ``start`` whose schedule decides two values, or None when
    ``limit`` seeds (or ``deadline_s`` seconds) find none."""
    t0 = time.monotonic()
    for n, seed in enumerate(range(start, start + limit), 1):
        sc = scenario(seed, nodes, proposers, faults)
        sim = run(sc, variant)
        if sim.split is not None:
            return Found(seed, n, sc, sim)
        if time.monotonic() - t0 > deadline_s:
            break
    return None


def ddmin(items: Sequence[T], fails: Callable[[list[T]], bool]) -> list[T]:
    """A 1-minimal sublist of ``items`` for which ``fails`` still holds (``fails(items)``
    must). Zeller and Hildebrandt, "Simplifying and Isolating Failure-Inducing Input"."""
    current, n = list(items), 2
    while len(current) >= 2:
        size = len(current) // n
        chunks = [current[i:i + size] for i in range(0, len(current), size)]
        reduced = False
        for i in range(len(chunks)):
            complement = [x for j, c in enumerate(chunks) if j != i for x in c]
            if fails(complement):
                current, n, reduced = complement, max(n - 1, 2), True
                break
        if not reduced:
            if n >= len(current):
                break
            n = min(len(current), 2 * n)
    if len(current) == 1 and fails([]):
        return []
    return current


@dataclass
class Shrunk:
    tape: Tape
    replays: int
    before: dict[str, int]
    after: dict[str, int]


def shrink(sc: Scenario, variant: dict[str, Any], tape: Tape) -> Shrunk:
    """The smallest tape (by ddmin) whose replay still decides two values."""
    replays = 0

    def splits(t: Tape) -> bool:
        nonlocal replays
        replays += 1
        return run(sc, variant, t).split is not None

    before = summary(run(sc, variant, tape))
    if not splits(tape):  # cannot happen while replays are faithful; keep what we have
        return Shrunk(tape, replays, before, before)
    items: list[MsgId | CrashAt] = [*tape.crashes, *tape.delivered]

    def fails(kept: list[MsgId | CrashAt]) -> bool:
        keep = set(kept)
        msgs = {m for m in tape.delivered if m in keep}
        crashes = {c for c in tape.crashes if c in keep}
        return splits(tape.keeping(msgs, crashes))

    kept = set(ddmin(items, fails))
    small = tape.keeping({m for m in tape.delivered if m in kept},
                         {c for c in tape.crashes if c in kept})
    final = run(sc, variant, small)
    # Keep only what the final run used: the tape of the run itself.
    return Shrunk(final.recording, replays, before, summary(final))
