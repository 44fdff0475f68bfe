"""The seeded fault schedule: the same seed, node count and length give the same faults.

Faults come one at a time: a fault starts, lasts ``duration`` seconds, is healed, and
a quiet gap follows in which the cluster must recover. Every fault is plain data, so a
schedule can be printed, compared and replayed (``python -m tests.nemesis --seed S
--minutes M --print-schedule``).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

# kind -> weight. Crash points need the runtime to call zpaxos.runtime.faults.crash_point.
KINDS: dict[str, int] = {
    "kill_minority": 3,  # kill -9 a minority, restart it after the duration
    "kill_all": 1,  # kill -9 every node, restart them all
    "pause": 2,  # SIGSTOP any subset (a majority too), SIGCONT after the duration
    "partition_links": 2,  # a minority's veth links down (cut off both ways)
    "partition_pair": 1,  # the proxy cuts the link between two nodes, both ways
    "one_way": 2,  # the proxy drops everything on one directed link
    "loss": 2,  # every link loses a share of messages
    "delay": 2,  # every link adds latency (order kept)
    "duplicate": 2,  # every link delivers a share of messages twice
    "reorder": 2,  # every link lets a share of messages overtake others
    "crash_before_commit": 1,  # crash points: ZPAXOS_CRASH_AT on one restarted node
    "crash_after_commit": 1,
    "crash_mid_value_write": 1,
}
# Only with --netem (a kernel with netem): packet-level delay, loss, duplication and
# reordering on every bridge port, under TCP (which hides loss as retransmission delay).
NETEM_KIND = "packet_chaos"
CRASH_KINDS = {"crash_before_commit": "before_commit", "crash_after_commit": "after_commit",
               "crash_mid_value_write": "mid_value_write"}
MESSAGE_KINDS = ("loss", "delay", "duplicate", "reorder")
# With CURVE on, the proxy sees only encrypted commands whose nonces must grow: it cannot
# duplicate, reorder or pick out messages (that is the point of CURVE), so a CURVE run
# uses the faults that act on whole nodes and links.
CURVE_KINDS = {k: w for k, w in KINDS.items()
               if k not in (*MESSAGE_KINDS, "partition_pair", "one_way")}


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the workload starts
    kind: str
    duration: float
    nodes: tuple[int, ...] = ()  # whom it hits
    params: dict = field(default_factory=dict)

    def describe(self) -> str:
        who = ",".join(f"node{i}" for i in self.nodes)
        if self.kind == "one_way":
            a, b = self.nodes
            who = f"{'client' if self.params.get('from_client') else f'node{a}'}->node{b}"
        extra = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"t={self.at:6.1f}s {self.kind:22} {self.duration:4.1f}s {who} {extra}".rstrip()


def make_schedule(seed: int, seconds: float, n: int, warmup_s: float = 3.0,
                  kinds: dict[str, int] | None = None) -> list[Fault]:
    rng = random.Random(seed)
    weights = kinds or KINDS
    names, w = list(weights), list(weights.values())
    minority = (n - 1) // 2
    t = warmup_s
    faults: list[Fault] = []
    while True:
        kind = rng.choices(names, w)[0]
        duration = round(rng.uniform(1.0, 4.0), 1)
        if t + duration > seconds - 2.0:
            break
        nodes: tuple[int, ...] = ()
        params: dict = {}
        if kind in ("kill_minority", "partition_links"):
            nodes = tuple(sorted(rng.sample(range(n), rng.randint(1, minority))))
        elif kind == "kill_all":
            nodes = tuple(range(n))
        elif kind == "pause":
            nodes = tuple(sorted(rng.sample(range(n), rng.randint(1, n))))
        elif kind == "partition_pair":
            nodes = tuple(sorted(rng.sample(range(n), 2)))
        elif kind == "one_way":
            nodes = tuple(rng.sample(range(n), 2))  # (from, to)
            if rng.random() < 0.3:
                params["from_client"] = True  # proposers -> nodes[1] instead
        elif kind == "loss":
            params["p"] = round(rng.uniform(0.05, 0.4), 2)
        elif kind == "delay":
            params["ms"] = round(rng.uniform(20, 300))
        elif kind == "duplicate":
            params["p"] = round(rng.uniform(0.1, 0.6), 2)
        elif kind == "reorder":
            params["p"] = round(rng.uniform(0.2, 0.6), 2)
            params["ms"] = round(rng.uniform(20, 200))
        elif kind == NETEM_KIND:
            params["spec"] = ["delay", f"{rng.randint(5, 100)}ms", f"{rng.randint(1, 50)}ms",
                              "loss", f"{rng.randint(1, 20)}%", "duplicate",
                              f"{rng.randint(1, 20)}%", "reorder", f"{rng.randint(5, 40)}%"]
        elif kind in CRASH_KINDS:
            nodes = (rng.randrange(n),)
            params["after"] = rng.randint(1, 30)
        faults.append(Fault(round(t, 1), kind, duration, nodes, params))
        t += duration + round(rng.uniform(1.0, 3.0), 1)
    return faults


def as_dicts(faults: list[Fault]) -> list[dict]:
    return [asdict(f) for f in faults]
