"""The epoch rules, as the membership simulator's nodes and proposers run them.

A model of what the runtime does on the wire (zpaxos/sim/membersim.py drives it), one
generic CASPaxos round for every kind of key: a write-once key's change keeps a value once
there is one, a register's makes the next ``version:value``, an identity round (moving the
state to a new configuration) writes back what it read. The rules it adds to Paxos:

* every message a proposer sends carries its configuration; an acceptor refuses one from
  an older epoch with :class:`Stale`, which carries the acceptor's configuration, and the
  proposer retries at once with the right members and quorums; an acceptor that sees a
  newer configuration adopts it (durable, like a promise) before it answers;
* a proposer counts a phase's replies with its configuration's quorums
  (``Config.prepare_ok`` / ``accept_ok``), from that configuration's members only;
* a range promise (the phase-1 skip, zpaxos/protocol/ranges.py) is bound to the epoch it
  was granted in: a proposer drops its lease when it moves to a new epoch, so a skip never
  runs on a phase 1 that another configuration's quorums did.

The broken variants (``ignores_epoch``, ``keeps_lease``) each drop one of these rules.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from zpaxos.protocol.membership import Config
from zpaxos.protocol.messages import ZERO, Ballot

ROUND_TIMEOUT_S = 0.15
BACKOFF_S = 0.03
LEASE_ROUND = 40  # a lease's ballots start here: above the rounds of two-phase rivals
IDENTITY, WRITE, SET, GET, FAST = "identity", "write", "set", "get", "fast"


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Prepare:
    cfg: Config
    key: str
    ballot: Ballot


@dataclass(frozen=True)
class Accept:
    cfg: Config
    key: str
    ballot: Ballot
    value: bytes


@dataclass(frozen=True)
class RangePrepare:
    cfg: Config
    prefix: str
    ballot: Ballot


@dataclass(frozen=True)
class Promise:
    key: str
    ballot: Ballot
    accepted: Ballot
    value: bytes | None


@dataclass(frozen=True)
class Accepted:
    key: str
    ballot: Ballot


@dataclass(frozen=True)
class Nack:
    key: str
    ballot: Ballot
    promised: Ballot


@dataclass(frozen=True)
class RangePromise:
    prefix: str
    ballot: Ballot
    busy: tuple[str, ...]


@dataclass(frozen=True)
class Stale:
    """The refusal of a message from an older epoch: here is the current configuration."""

    cfg: Config
    about: str  # the key or prefix of the refused message


@dataclass(frozen=True)
class Install:
    """The reconfigurer's: move to ``cfg`` (chosen by Paxos in the epoch before it)."""

    cfg: Config


@dataclass(frozen=True)
class Installed:
    epoch: int


ToNode = Prepare | Accept | RangePrepare | Install
ToProposer = Promise | Accepted | Nack | RangePromise | Stale | Installed


# --------------------------------------------------------------------------- the node


@dataclass
class Disk:
    """A node's durable state: its configuration, each key's (promised, accepted, value),
    and its range promises. A handler writes here before it returns its reply."""

    cfg: Config
    keys: dict[str, tuple[Ballot, Ballot, bytes | None]] = field(default_factory=dict)
    ranges: dict[str, Ballot] = field(default_factory=dict)


Vote = tuple[int, str, Ballot, bytes]  # (epoch, key, ballot, value)


def node_handle(disk: Disk, msg: ToNode) -> tuple[ToProposer, Vote | None]:
    """One message in, the reply out (and the vote it cast, for the ghost)."""
    if isinstance(msg, Install):
        if msg.cfg.epoch > disk.cfg.epoch:
            disk.cfg = msg.cfg
        return Installed(disk.cfg.epoch), None
    about = msg.prefix if isinstance(msg, RangePrepare) else msg.key
    if msg.cfg.epoch < disk.cfg.epoch:
        return Stale(disk.cfg, about), None
    if msg.cfg.epoch > disk.cfg.epoch:
        disk.cfg = msg.cfg  # adopted, durable, before the answer
    if isinstance(msg, RangePrepare):
        top = max((b for p, b in disk.ranges.items()
                   if p.startswith(msg.prefix) or msg.prefix.startswith(p)), default=ZERO)
        if msg.ballot <= top:
            return Nack(msg.prefix, msg.ballot, top), None
        disk.ranges[msg.prefix] = msg.ballot
        busy = tuple(sorted(k for k, (p, a, _) in disk.keys.items()
                            if k.startswith(msg.prefix) and (not a.is_zero or p > msg.ballot)))
        return RangePromise(msg.prefix, msg.ballot, busy), None
    promised, accepted, value = disk.keys.get(msg.key, (ZERO, ZERO, None))
    for p, b in disk.ranges.items():
        if msg.key.startswith(p) and b > promised:
            promised = b
    if isinstance(msg, Prepare):
        if msg.ballot <= promised:
            return Nack(msg.key, msg.ballot, promised), None
        disk.keys[msg.key] = (msg.ballot, accepted, value)
        return Promise(msg.key, msg.ballot, accepted, value), None
    if msg.ballot < promised:
        return Nack(msg.key, msg.ballot, promised), None
    disk.keys[msg.key] = (msg.ballot, msg.ballot, msg.value)
    return Accepted(msg.key, msg.ballot), (msg.cfg.epoch, msg.key, msg.ballot, msg.value)


# --------------------------------------------------------------------------- proposer


RECENT = 8  # a register remembers its last sets' tokens (the runtime's RECENT_OPS)


def reg_state(state: bytes | None) -> tuple[int, list[tuple[str, int]], bytes | None]:
    """A register's ``version|token@version,...|value`` as (version, recent sets, value)."""
    if not state:
        return 0, [], None
    version, recent, value = state.split(b"|", 2)
    done = [(t, int(v)) for t, v in (x.split("@") for x in recent.decode().split(",") if x)]
    return int(version), done, value


def change(kind: str, state: bytes | None, arg: bytes | None, token: str = "") -> bytes | None:
    """The new state a round proposes, from the state it read (None: nothing to write).

    A retried set that finds its own token among the register's recent sets changes
    nothing: it took effect already (maybe in a round that timed out)."""
    if kind in (WRITE, FAST):
        return state if state is not None else arg
    if kind == SET:
        version, done, _ = reg_state(state)
        if any(t == token for t, _ in done):
            return state
        done = (done + [(token, version + 1)])[-RECENT:]
        recent = ",".join(f"{t}@{v}" for t, v in done).encode()
        return b"%d|%s|%s" % (version + 1, recent, arg or b"")
    return state  # GET and IDENTITY write back what they read


@dataclass
class Op:
    token: str
    kind: str
    key: str
    arg: bytes | None = None
    must: frozenset[int] = frozenset()  # nodes that must accept too (a joining node)


@dataclass
class Lease:
    prefix: str
    ballot: Ballot
    epoch: int
    granted: set[int] = field(default_factory=set)
    busy: set[str] = field(default_factory=set)
    used: dict[str, bytes | None] = field(default_factory=dict)  # key -> its one value
    held: bool = False
    lost: bool = False


class Proposer:
    """One process's proposer: one operation at a time, retried until it ends.

    ``send`` collects (node, message) pairs; ``done`` the finished (token, state) pairs
    (state None: a write-once key read nothing, or a read of an empty key)."""

    def __init__(self, pid: bytes, cfg: Config, rng: random.Random, *,
                 ignores_epoch: bool = False, keeps_lease: bool = False) -> None:
        self.pid, self.cfg, self.rng = pid, cfg, rng
        self.counting = cfg  # whose members and quorums count the replies
        self.ignores_epoch, self.keeps_lease = ignores_epoch, keeps_lease
        self.op: Op | None = None
        self.round = 0
        self.ballot = ZERO
        self.phase = ""
        self.promises: dict[int, Promise] = {}
        self.accepted: set[int] = set()
        self.value: bytes | None = None
        self.wake = float("inf")
        self.leases: dict[str, Lease] = {}
        self.send: list[tuple[int, ToNode]] = []
        self.done: list[tuple[str, bytes | None]] = []
        self.stats: dict[str, int] = {"stale": 0, "fast": 0, "lease_dropped": 0, "stale_lease": 0}

    # ---- configuration

    def learn(self, cfg: Config) -> bool:
        """A newer configuration (from a Stale refusal): True if it is news."""
        if cfg.epoch <= self.cfg.epoch:
            return False
        self.cfg = cfg
        if not self.ignores_epoch:
            self.counting = cfg
        if not self.keeps_lease:
            # A range promise is bound to its epoch: its phase 1 was another
            # configuration's quorum's, which may miss this one's accept quorums.
            self.stats["lease_dropped"] += len(self.leases)
            self.leases.clear()
        return True

    def _to(self, side: tuple[int, ...], msg: ToNode) -> None:
        self.send.extend((n, msg) for n in side)

    # ---- operations

    def start(self, now: float, op: Op) -> None:
        assert self.op is None, "one operation at a time"
        self.op = op
        if op.kind == FAST and self._fast(now):
            return
        self._round(now)

    def _fast(self, now: float) -> bool:
        op = self.op
        assert op is not None
        prefix = op.key.split("-", 1)[0] + "-"
        lease = self.leases.get(prefix)
        if lease is None or lease.lost:
            self.leases[prefix] = lease = Lease(prefix, Ballot(LEASE_ROUND + self.round,
                                                               self.pid + b"L"), self.cfg.epoch)
            self.round += 1
            self._to(self.counting.prepare, RangePrepare(self.cfg, prefix, lease.ballot))
            return False
        if not lease.held or op.key in lease.busy or lease.used.get(op.key, op.arg) != op.arg:
            return False
        if not self.keeps_lease and lease.epoch != self.cfg.epoch:
            return False
        lease.used[op.key] = op.arg  # one value per ballot and key: this one
        self.stats["fast"] += 1
        self.stats["stale_lease"] += lease.epoch != self.cfg.epoch
        self.ballot, self.phase, self.value = lease.ballot, "accept", op.arg
        self.accepted = set()
        self.wake = now + ROUND_TIMEOUT_S
        self._to(self.counting.accept, Accept(self.cfg, op.key, lease.ballot, op.arg or b""))
        return True

    def _round(self, now: float) -> None:
        op = self.op
        assert op is not None
        self.round = max(self.round, self.ballot.round) + 1
        self.ballot = Ballot(self.round, self.pid)
        self.phase, self.promises, self.accepted = "prepare", {}, set()
        self.wake = now + ROUND_TIMEOUT_S
        self._to(self.counting.prepare, Prepare(self.cfg, op.key, self.ballot))

    def tick(self, now: float) -> None:
        if self.op is not None and now >= self.wake:
            if self.phase == "backoff" or self.phase in ("prepare", "accept"):
                self._round(now)

    def _retry(self, now: float, above: Ballot) -> None:
        self.round = max(self.round, above.round)
        self.phase = "backoff"
        self.wake = now + self.rng.uniform(0, BACKOFF_S)

    def receive(self, now: float, src: int, msg: ToProposer) -> None:
        if isinstance(msg, RangePromise) or (isinstance(msg, Nack) and msg.key in self.leases):
            self._lease_reply(src, msg)
            return
        op = self.op
        if isinstance(msg, Installed):
            return
        if isinstance(msg, Stale):
            if self.learn(msg.cfg):
                self.stats["stale"] += 1
                if op is not None and not (op.kind == FAST and self._fast(now)):
                    self._round(now)  # at once, with the right members
            return
        if op is None or msg.key != op.key:
            return
        if isinstance(msg, Nack):
            if msg.ballot == self.ballot and msg.promised > self.ballot \
                    and self.phase in ("prepare", "accept"):
                for lease in self.leases.values():
                    if lease.ballot == msg.ballot:
                        lease.lost = True  # a refused skip: the range is lost
                self._retry(now, msg.promised)
        elif isinstance(msg, Promise):
            if self.phase == "prepare" and msg.ballot == self.ballot \
                    and src in self.counting.prepare:
                self.promises[src] = msg
                if self.counting.prepare_ok(self.promises):
                    self._phase2(now)
        elif isinstance(msg, Accepted):
            if self.phase == "accept" and msg.ballot == self.ballot \
                    and src in self.counting.accept:
                self.accepted.add(src)
                if self.counting.accept_ok(self.accepted) and op.must <= self.accepted:
                    self._finish(self.value)

    def _phase2(self, now: float) -> None:
        op = self.op
        assert op is not None
        best = max(self.promises.values(), key=lambda p: p.accepted)
        state = best.value if not best.accepted.is_zero else None
        self.value = change(op.kind, state, op.arg, op.token)
        if self.value is None:
            self._finish(None)  # nothing to write: an empty key read, or moved
            return
        self.phase, self.accepted = "accept", set()
        self.wake = now + ROUND_TIMEOUT_S
        self._to(self.counting.accept, Accept(self.cfg, op.key, self.ballot, self.value))

    def _finish(self, state: bytes | None) -> None:
        op = self.op
        assert op is not None
        self.done.append((op.token, state))
        self.op, self.phase, self.wake = None, "", float("inf")

    def _lease_reply(self, src: int, msg: RangePromise | Nack) -> None:
        prefix = msg.prefix if isinstance(msg, RangePromise) else msg.key
        lease = self.leases.get(prefix)
        if lease is None or msg.ballot != lease.ballot or lease.held or lease.lost:
            return
        if isinstance(msg, Nack):
            lease.lost = True
            self.round = max(self.round, msg.promised.round)
            return
        if src in self.counting.prepare:
            lease.granted.add(src)
            lease.busy.update(msg.busy)
            lease.held = self.counting.prepare_ok(lease.granted)
