"""Schedules for ``zpaxos sim``: a cluster size, a proposer count and a fault mix, made
into one seeded :class:`Scenario` per seed.

Unlike ``simulator.generate`` (which draws every knob from the seed, for the test
suite's soak), the person at the command line fixes the shape and the seed varies only
the timing: when each proposer starts, how long messages take, which are lost or
duplicated, when nodes crash. Every proposal is a process of its own, proposing
``v1``, ``v2``... for key ``k0``, so every schedule is a contest for one value.

Faults (``--faults``, any of):

* ``loss``: messages are lost (until the chaos ends);
* ``dup``: messages are delivered twice;
* ``reorder``: message delays vary widely (without it they are nearly equal, so
  messages mostly arrive in the order they were sent);
* ``crash``: nodes crash and restart from their disks (until the chaos ends).

After the chaos, every node is back and the network is fair again, so every proposal
must end with the chosen value (liveness is checked too).
"""

from __future__ import annotations

import random

from zpaxos.protocol.core import ProposerOptions
from zpaxos.sim.simulator import INF, Chaos, ProposerSpec, Scenario

FAULTS = ("loss", "dup", "reorder", "crash")
KEY = "k0"


def fault_set(text: str) -> frozenset[str]:
    """``loss,crash`` -> {"loss", "crash"}; "none" or "" -> none. Raises ValueError."""
    names = {f.strip() for f in text.split(",") if f.strip() and f.strip() != "none"}
    if "all" in names:
        names = (names - {"all"}) | set(FAULTS)
    unknown = sorted(names - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault {unknown[0]!r} (choose from {', '.join(FAULTS)},"
                         f" all, none)")
    return frozenset(names)


def scenario(seed: int, nodes: int = 3, proposers: int = 2,
             faults: frozenset[str] = frozenset()) -> Scenario:
    """The schedule of ``seed`` for this shape: proposers started close enough together
    to contend (sometimes one after another), with the faults asked for."""
    rng = random.Random(f"zpaxos sim/{seed}")
    max_delay = rng.uniform(0.003, 0.03)
    min_delay = 0.0005 if "reorder" in faults else 0.9 * max_delay
    spread = rng.choice((0.2, 1.0, 1.0, 4.0, 20.0)) * max_delay
    specs = []
    for i in range(proposers):
        options = ProposerOptions(round_timeout_s=rng.uniform(2.5, 8) * max_delay,
                                  timeout_s=INF, max_rounds=10**9,
                                  backoff_s=rng.uniform(0.5, 2) * max_delay,
                                  backoff_max_s=20 * max_delay)
        specs.append(ProposerSpec(f"P{i + 1}", KEY, f"v{i + 1}".encode(),
                                  rng.uniform(0, spread), options))
    chaos = Chaos(
        end_s=rng.uniform(0.02, 0.3),
        drop_p=rng.uniform(0.05, 0.3) if "loss" in faults else 0.0,
        crash_gap_s=rng.uniform(0.005, 0.1) if "crash" in faults else INF,
        downtime_s=rng.uniform(0.005, 0.15),
        restart_all=True,
    )
    return Scenario(seed, nodes, tuple(specs), min_delay, max_delay,
                    dup_p=rng.uniform(0.02, 0.2) if "dup" in faults else 0.0,
                    chaos=chaos, must_choose=True)
