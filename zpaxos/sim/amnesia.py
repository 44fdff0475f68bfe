"""The simulator with admission (zpaxos/hosts/admission.py) in every node, and a node
whose whole disk is put back to an older copy: what a restored backup does.

:class:`AmnesiaSimulation` runs the same seeded schedules and checks the same invariants
as :class:`~zpaxos.sim.simulator.Simulation`; in addition, every node is an
:class:`~zpaxos.hosts.admission.Admission` around its AcceptorHost, with an incarnation,
a commit count and a memory of its peers on its disk, and HELLO traffic on the simulated
network (delayed, duplicated, reordered and lost like the rest). One node of each run, the
*victim*, has its disk copied at one restart; when it crashes again after its peers have
heard of later commits, it comes back from that copy (state, commit count and memory:
the whole data directory).

* With admission, the victim must be refused (and stays down) before it votes, and every
  invariant and the liveness bound hold; a node that kept its disk is never refused.
* :class:`Unchecked` (``AmnesiaSimulation(..., admission=False)``) is the mutant: nodes
  vote at once and ignore refusals, so the restored victim votes on forgotten promises,
  and the ghost state catches it (a vote below a promise it had sent, or two values).

Run: ``python -m zpaxos.sim.amnesia --seeds 2000`` (``--no-admission`` for the mutant).
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zpaxos.hosts.acceptor_host import Ready
from zpaxos.hosts.addresses import Caller
from zpaxos.hosts.admission import Admission
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import HelloReply
from zpaxos.runtime.peers import PeerRecord
from zpaxos.sim.simulator import PASS, InvariantViolation, Simulation, generate

HELLO_S = 0.005  # virtual seconds between Hellos (the runtime's is 1 s; runs are shorter)
REPLAY = "python -m zpaxos.sim.amnesia --seed {seed}"


def _sim_peer(src: Caller) -> int | None:
    """The simulator names a node's caller ``n<id>``."""
    name = src.ident
    return int(name[1:]) if name[:1] == b"n" and name[1:].isdigit() else None


class Unchecked(Admission):
    """The mutant: votes at once, and takes no notice of any peer's refusal."""

    def start(self, now: float) -> Ready:
        self.needed = 0
        return super().start(now)

    def _on_verdict(self, src: Any, msg: HelloReply) -> None:
        pass


@dataclass
class Disk:
    """Beyond the key states (Simulation.disk): incarnation, commits, peer memory."""

    incarnation: bytes
    commit_seq: int = 0
    memory: dict[int, PeerRecord] = field(default_factory=dict)

    def copy(self) -> Disk:
        return Disk(self.incarnation, self.commit_seq,
                    {n: PeerRecord(r.incarnation, r.commit_seq, list(r.past), r.boot)
                     for n, r in self.memory.items()})


class AmnesiaSimulation(Simulation):
    # Its nodes are Admissions around the hosts (an Admission is driven as a host is).
    nodes: dict[int, Any]

    def __init__(self, scenario: Any, *, admission: bool = True, **variant: Any) -> None:
        self.admission_cls = Admission if admission else Unchecked
        rng = random.Random(f"amnesia/{scenario.seed}")
        self.disks = {a: Disk(rng.randbytes(16)) for a in range(scenario.n_acceptors)}
        self.victim = rng.randrange(scenario.n_acceptors)
        self.backup: tuple[dict[str, KeyState], dict[str, Any], Disk] | None = None
        self.restored = False
        self.refused: dict[int, str] = {}
        self.boots = rng
        self.due_at: dict[int, float] = {}
        super().__init__(scenario, replay=REPLAY + ("" if admission else " --no-admission"),
                         **variant)
        for a, host in self.nodes.items():  # the first start: hello to the peers
            if host is not None:
                self._do_node(a, host, host.start(0.0), {}, "start: hello to the peers")

    # ---- nodes: an Admission around the host, with its part of the disk

    def _host(self, a: int) -> Admission:  # type: ignore[override]
        host = super()._host(a)
        d = self.disks[a]
        return self.admission_cls(host, a, [b for b in range(self.sc.n_acceptors) if b != a],
                                  d.incarnation, d.commit_seq, False, d.memory,
                                  boot=self.boots.randbytes(8), hello_interval=HELLO_S,
                                  peer_of=_sim_peer)

    def _do_node(self, a: int, host: Any, ready: Ready,
                 before: dict[str, KeyState | None], what: str) -> None:
        if ready.persist or ready.ranges:  # the commit count moves with the state
            d = self.disks[a]
            d.commit_seq += 1
            host.commit_seq = d.commit_seq
        super()._do_node(a, host, ready, before, what)
        if self.nodes[a] is host and host.refusal is not None:
            self.refused[a] = host.refusal
            self.stats["refused"] += 1
            if self.tracing:
                self._log(f"n{a} REFUSED by a peer: {host.refusal}")
            self.nodes[a] = None  # it stops, and every later start refuses (state.lost)
            self.inbox[a] = []
            if a != self.victim or not self.restored:
                self._violate(f"n{a} kept its disk but was refused: {host.refusal}")
            if not self.chaos_on:
                self._keep_quorum()
        self._schedule_due(a)

    def _schedule_due(self, a: int) -> None:
        host = self.nodes[a]
        at = host.next_due() if host is not None else None
        if at is not None and self.due_at.get(a) != at:
            self.due_at[a] = at
            self.push(max(at, self.now), PASS, a)

    def _pass(self, a: int) -> None:
        super()._pass(a)
        host = self.nodes[a]
        if host is None:
            return
        at = host.next_due()
        if at is not None and at <= self.now:
            ready = host.due(self.now)
            self._do_node(a, host, ready, dict(host.states), "due: hello")

    def _land(self, src: Any, dst: int, msg: Any) -> None:
        if not (isinstance(msg, HelloReply) and isinstance(src, int)):
            super()._land(src, dst, msg)
            return
        self.inbox[dst].append((src, msg))  # the answer on dst's own socket to src
        if dst not in self.pass_due:
            due = self.now + self.rng.uniform(0, self.sc.pass_delay_s)
            self.pass_due[dst] = due
            self.push(due, PASS, dst)

    def _flush(self, a: int) -> None:
        host = self.nodes[a]
        if host is not None and self.lazy[a]:  # learned decisions, committed when idle
            self.disks[a].commit_seq += 1
            host.commit_seq = self.disks[a].commit_seq
        super()._flush(a)

    def _restart(self, a: int) -> None:
        if self.nodes[a] is not None or a in self.stay_down or a in self.refused:
            return
        if a == self.victim:
            self._restore_or_copy(a)
        host = self.nodes[a] = self._host(a)
        if self.tracing:
            self._log(f"restart n{a} from disk ({self.disks[a].commit_seq} commits)")
        self._do_node(a, host, host.start(self.now), {}, "start: hello to the peers")
        for name, proc in self.procs.items():
            if proc.running:
                self._after_proc(name, proc.nudge(self.now), f"nudge {name}: n{a} is back")

    def _restore_or_copy(self, a: int) -> None:
        """The victim's first restart copies its disk; a later one, once every peer has
        heard of commits past the copy, puts the copy back (whole: states, commit count,
        memory)."""
        d = self.disks[a]
        if self.backup is None:
            self.backup = (dict(self.disk[a]), dict(self.disk_ranges[a]), d.copy())
            return
        states, ranges, old = self.backup
        heard = [self.disks[p].memory.get(a) for p in self.disks if p != a]
        if self.restored or not self.chaos_on or not all(
                r is not None and r.commit_seq > old.commit_seq for r in heard):
            return
        self.restored = True
        self.stats["restored"] += 1
        self.disk[a] = dict(states)
        self.disk_ranges[a] = dict(ranges)  # its range promises too: the whole directory
        self.lazy[a] = {}
        self.disks[a] = old.copy()
        if self.tracing:
            self._log(f"n{a}'s whole disk put back to the copy at {old.commit_seq} commits "
                      f"(it had made {d.commit_seq})")

    def _end_chaos(self) -> None:
        super()._end_chaos()
        self._keep_quorum()

    def _keep_quorum(self) -> None:
        up = [a for a in self.ids if self.nodes[a] is not None]
        for a in sorted(self.stay_down):  # a refused node is down for good: bring a spare
            if len(up) >= self.quorum:
                break
            self.stay_down.discard(a)
            self._restart(a)
            up.append(a)


def check(seeds: Iterable[int], stop_at_first: bool = True,
          **variant: Any) -> tuple[list[InvariantViolation], Counter[str]]:
    failures: list[InvariantViolation] = []
    cover: Counter[str] = Counter()
    for seed in seeds:
        try:
            r = AmnesiaSimulation(generate(seed), **variant).run()
        except InvariantViolation:
            try:  # deterministic: the same run again, with its trace
                AmnesiaSimulation(generate(seed), trace=True, **variant).run()
            except InvariantViolation as e:
                failures.append(e)
            if stop_at_first:
                break
            continue
        cover["schedules"] += 1
        for k in ("restored", "refused"):
            cover[k] += r.stats[k]
    return failures, cover


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zpaxos.sim.amnesia", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, help="replay this one seed, with its trace")
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--no-admission", action="store_true", help="the mutant: no admission")
    args = ap.parse_args(argv)
    variant = {"admission": not args.no_admission}
    if args.seed is not None:
        try:
            AmnesiaSimulation(generate(args.seed), trace=True, **variant).run()
        except InvariantViolation as e:
            print("\n".join(e.trace), file=sys.stderr)
            print(f"seed {e.seed}: VIOLATION: {e.what}", file=sys.stderr)
            return 1
        print(f"seed {args.seed}: ok")
        return 0
    failures, cover = check(range(args.seeds), **variant)
    print(dict(sorted(cover.items())))
    for f in failures:
        print(f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
