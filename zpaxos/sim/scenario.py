"""What a write-once simulation runs: the proposals, the faults, and :func:`generate`,
which draws a whole schedule from a seed (zpaxos/sim/simulator.py runs it)."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from zpaxos.hosts.staging import NO_STAGING, StagingOptions
from zpaxos.protocol.core import ProposerOptions

INF = float("inf")


@dataclass(frozen=True)
class ProposerSpec:
    """One proposal: its name, what it proposes, when it starts, how it paces.

    Proposals with the same ``process`` run in one ProposerHost (one client process);
    by default each proposal is a process of its own. Its ballots carry ``proposer_id``
    (default: the name), so ids are distinct."""

    name: str
    key: str
    value: bytes
    start_s: float
    options: ProposerOptions
    proposer_id: bytes = b""
    staging: StagingOptions = NO_STAGING
    process: str = ""
    fast: bool = False  # skip phase 1 through a range promise when it may

    @property
    def proc(self) -> str:
        return self.process or self.name


@dataclass(frozen=True)
class Chaos:
    """What goes wrong until ``end_s``: lost messages and crashing nodes."""

    end_s: float = 0.0
    drop_p: float = 0.0
    crash_gap_s: float = INF  # mean virtual time between two random crashes
    downtime_s: float = 0.1  # a crashed node stays down up to this long
    crash_in_step_p: float = 0.0  # a pass crashes after its persist, before its sends
    restart_all: bool = True  # at end_s restart every node, else just a majority
    forge_sync_p: float = 0.0  # a sync reply also names a wrong value for a decided key
    forge_decides: int = 0  # a rogue (authorized) client's Decides for values not chosen


@dataclass(frozen=True)
class Scenario:
    """Everything a run depends on besides the seed's random stream."""

    seed: int
    n_acceptors: int
    proposers: tuple[ProposerSpec, ...]
    min_delay_s: float = 0.001
    max_delay_s: float = 0.01
    dup_p: float = 0.0  # duplicates (and reordering) go on after the chaos
    chaos: Chaos = Chaos()
    must_choose: bool = False  # liveness: every proposal ends with a chosen value
    bound_s: float = 10.0  # ... within this virtual time after the chaos and last start
    drop_if: Any = None  # a test's rule (src, dst, msg) -> bool for messages always lost
    pass_delay_s: float = 0.0  # a node's pass runs up to this long after a message lands
    status_probes: int = 0  # status requests sent to random nodes during the run
    check_client_decides: bool = False  # nodes check clients' Decides (CURVE roles)
    lease_tag: bytes = b"Q"  # leases' ballot ids: b"Q<name>" sorts above b"P<n>", b"A<name>" below
    lease_after: int = 1  # a process asks for a range from this proposal of it on
    # The batched wire: what one pass (a node's, or a proposer process's) sends to one
    # destination travels as one frame, through the real codec, and is delayed, lost or
    # duplicated whole; off, every message travels on its own.
    batch_wire: bool = False

    def describe(self) -> str:
        c = self.chaos
        ps = ", ".join(
            f"{p.name}@{p.proc}({p.key}={p.value.decode()} at {p.start_s:.3f}"
            f"{' fast' if p.fast else ''}"
            f" max_rounds={p.options.max_rounds} timeout={p.options.timeout_s:g})"
            for p in self.proposers
        )
        return (
            f"N={self.n_acceptors}, delay {self.min_delay_s:g}..{self.max_delay_s:.3f} s,"
            f" pass delay {self.pass_delay_s:.4f} s, dup {self.dup_p:.2f}; chaos until"
            f" {c.end_s:.3f} s: drop {c.drop_p:.2f}, crash every ~{c.crash_gap_s:.3f} s,"
            f" in-step crash {c.crash_in_step_p:.2f}, forged sync {c.forge_sync_p:.2f},"
            f" forged decides {c.forge_decides} (checked: {self.check_client_decides}),"
            f" restart {'all' if c.restart_all else 'a majority'};"
            f" batched wire: {self.batch_wire};"
            f" must_choose={self.must_choose}; proposals: {ps}"
        )


def generate(seed: int) -> Scenario:
    """A random but modest schedule: small enough that 10,000 run in well under a minute,
    hostile enough (contention on one key, crashes, lost promises, batched passes,
    several proposals per process) to expose broken rules."""
    rng = random.Random(f"scenario/{seed}")
    n = rng.choice((3, 3, 5, 5, 7))
    keys = ("k0",) if rng.random() < 0.7 else ("k0", "k1")
    n_prop = rng.choice((2, 3, 3, 4)) if len(keys) == 1 else rng.choice((3, 4))
    max_delay = rng.uniform(0.003, 0.03)
    must_choose = rng.random() < 0.75
    spread = rng.choice((0.2, 1.0, 1.0, 4.0, 20.0)) * max_delay  # how far apart starts are
    n_procs = rng.choice((n_prop, n_prop, max(1, n_prop - 1), max(1, n_prop - 2)))
    proposers = []
    for i in range(n_prop):
        key = keys[0] if i < 2 else rng.choice(keys)  # the first two always conflict
        pause = rng.uniform(0, 3 * max_delay) if rng.random() < 0.3 else 0.0
        options = ProposerOptions(
            round_timeout_s=rng.uniform(2.5, 8) * max_delay,
            timeout_s=INF if must_choose else rng.uniform(0.1, 1.0),
            max_rounds=10**9 if must_choose else rng.randint(1, 6),
            backoff_s=rng.choice((0.0, 0.5, 1.0, 2.0)) * max_delay if not must_choose
            else rng.uniform(0.5, 2) * max_delay,
            backoff_max_s=20 * max_delay,
        )
        staging = StagingOptions(pause_between_phases_s=pause) if pause else NO_STAGING
        proc = f"C{i % n_procs + 1}"
        proposers.append(ProposerSpec(f"P{i + 1}", key, f"v{i + 1}".encode(),
                                      rng.uniform(0, spread), options, staging=staging,
                                      process=proc))
    chaos = Chaos(
        end_s=rng.uniform(0.02, 0.3),
        drop_p=rng.choice((0.0, rng.uniform(0, 0.3))),
        crash_gap_s=rng.choice((INF, rng.uniform(0.005, 0.1))),
        downtime_s=rng.uniform(0.005, 0.15),
        crash_in_step_p=rng.choice((0.0, rng.uniform(0, 0.15))),
        restart_all=rng.random() < 0.5,
        forge_sync_p=rng.choice((0.0, 0.0, 0.5)),
        forge_decides=rng.choice((0, 0, 3)),
    )
    checked = chaos.forge_decides > 0 or rng.random() < 0.3
    # The fast path, from a stream of its own (the schedules above stay as they were): in
    # half the schedules some proposals are fast, and a fast process may also propose a few
    # fresh keys of the range after its first, so its lease serves several keys.
    frng = random.Random(f"fast/{seed}")
    lease_tag = frng.choice((b"A", b"Q"))
    lease_after = frng.choice((1, 1, 2))
    if frng.random() < 0.5:
        fast = [replace(p, fast=frng.random() < 0.6) for p in proposers]
        if not any(p.fast for p in fast):
            fast[0] = replace(fast[0], fast=True)
        extra = frng.choice((0, 1, 3))
        base = next(p for p in fast if p.fast)
        for j in range(extra):
            i = len(fast) + 1
            fast.append(replace(base, name=f"P{i}", key=f"k{2 + j}", value=f"v{i}".encode(),
                                start_s=base.start_s + frng.uniform(0, spread + 4 * max_delay),
                                staging=NO_STAGING))
        proposers = fast
    return Scenario(seed, n, tuple(proposers), 0.0005, max_delay,
                    dup_p=rng.choice((0.0, rng.uniform(0, 0.2))), chaos=chaos,
                    must_choose=must_choose,
                    pass_delay_s=rng.choice((0.0, 0.3 * max_delay, max_delay)),
                    status_probes=rng.choice((0, 0, 1, 3)), check_client_decides=checked,
                    lease_tag=lease_tag, lease_after=lease_after,
                    # its own stream: the rest of a seed's schedule is as it was before
                    batch_wire=random.Random(f"wire/{seed}").random() < 0.7)


