"""Admission (zpaxos/hosts/admission.py) driven as the node loop drives it, over a tiny
in-memory network: a (re)started node votes only once its peers agree it has not lost
state, and nodes starting together never wait for each other.

The real-process tests (a data directory restored from a copy, or deleted) are in
tests/test_incarnation_e2e.py."""

from __future__ import annotations

import os
from collections import deque

from zpaxos.hosts.acceptor_host import AcceptorHost
from zpaxos.hosts.addresses import Caller
from zpaxos.hosts.admission import CHECKING, LEARNING, REFUSED, VOTING, Admission
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import (
    Accept,
    Ballot,
    Decide,
    Hello,
    Nack,
    Prepare,
    Promise,
    StatusRequest,
)
from zpaxos.runtime.peers import OK, REPLACED, RETIRED, ROLLED_BACK, STALE, PeerRecord, judge

CLIENT = Caller(b"p:0123456789abcdef:0")
B1 = Ballot(1, b"\x01" * 16)


class Disk:
    """What a node keeps across a restart: states, incarnation, commits, peer memory."""

    def __init__(self) -> None:
        self.states: dict[str, KeyState] = {}
        self.incarnation = os.urandom(16)
        self.commit_seq = 0
        self.memory: dict[int, PeerRecord] = {}

    def copy(self) -> Disk:
        d = Disk()
        d.states, d.incarnation, d.commit_seq = dict(self.states), self.incarnation, \
            self.commit_seq
        d.memory = {n: PeerRecord(r.incarnation, r.commit_seq, list(r.past))
                    for n, r in self.memory.items()}
        return d


class Net:
    """Nodes 0..n-1; a message to a node that is down is lost. Replies to the client
    collect in ``client``."""

    def __init__(self, n: int = 3) -> None:
        self.n = n
        self.disks = {i: Disk() for i in range(n)}
        self.up: dict[int, Admission] = {}
        self.queue: deque = deque()
        self.client: list = []
        self.now = 0.0
        self.handed: list = []  # (node, notes, refusal, peers changed) of every Ready
        self.boots = 0

    def start(self, i: int, fresh: bool = False) -> Admission:
        d = self.disks[i]
        peers = [p for p in range(self.n) if p != i]
        self.boots += 1  # every start is a new process, with a boot id of its own
        adm = Admission(AcceptorHost(i, d.states, peers), i, peers, d.incarnation,
                        d.commit_seq, fresh, d.memory, boot=self.boots.to_bytes(8, "big"))
        self.up[i] = adm
        self._after(i, adm.start(self.now))
        return adm

    def stop(self, i: int) -> None:
        del self.up[i]

    def _after(self, i: int, ready) -> None:
        d = self.disks[i]
        self.handed.append((i, ready.notes, ready.refusal, ready.peers_changed))
        if ready.persist or ready.lazy:  # learned decisions: committed at once here
            d.states.update(ready.lazy)
            d.states.update(ready.persist)
            d.commit_seq += 1
            self.up[i].commit_seq = d.commit_seq
        for dst, msg in ready.send:
            self.queue.append((i, dst, msg))

    def send(self, i: int, msg) -> None:
        self.queue.append((None, i, msg))

    def run(self) -> None:
        while self.queue:
            sender, dst, msg = self.queue.popleft()
            if sender is None:  # from the client
                target, src = dst, CLIENT
            elif isinstance(dst, int):  # on the sender's DEALER to dst
                target, src = dst, Caller(f"n:{sender}:{dst}:0".encode())
            elif dst == CLIENT:
                self.client.append((sender, msg))
                continue
            else:  # a reply to a node's DEALER
                target, src = int(dst.ident.split(b":")[1]), sender
            if target in self.up:
                self._after(target, self.up[target].handle([(src, msg)]))

    def tick(self, seconds: float = 1.1) -> None:
        self.now += seconds
        for i, adm in list(self.up.items()):
            self._after(i, adm.due(self.now))
        self.run()

    def decide(self, key: str, value: bytes) -> None:
        for i in list(self.up):
            self.send(i, Decide(key, value, B1))
        self.run()


def test_judge_rules() -> None:
    x, y = os.urandom(16), os.urandom(16)
    assert judge(None, x, 5, False, b"b1") == (OK, PeerRecord(x, 5, [], b"b1"))
    assert judge(PeerRecord(x, 5, [], b"b1"), x, 4, False, b"b2") == (ROLLED_BACK, None)
    assert judge(PeerRecord(x, 5, [], b"b1"), x, 4, False, b"b1") == (STALE, None)
    assert judge(PeerRecord(x, 5), x, 7, False)[1] == PeerRecord(x, 7)
    assert judge(PeerRecord(x, 5), y, 0, False) == (REPLACED, None)
    verdict, rec = judge(PeerRecord(x, 5), y, 0, True)
    assert verdict == OK and rec == PeerRecord(y, 0, [x])
    assert judge(rec, x, 9, True) == (RETIRED, None)  # an old copy of a retired one


def test_a_new_cluster_starts_without_waiting_and_peers_learn_each_other() -> None:
    net = Net()
    nodes = [net.start(i) for i in range(3)]
    net.run()
    assert [a.phase for a in nodes] == [VOTING] * 3
    for i in range(3):
        assert set(net.disks[i].memory) == {p for p in range(3) if p != i}
        for p, rec in net.disks[i].memory.items():
            assert rec.incarnation == net.disks[p].incarnation


def test_a_full_restart_one_node_at_a_time_does_not_deadlock() -> None:
    net = Net()
    for i in range(3):
        net.start(i)
    net.run()
    for i in range(3):
        net.stop(i)
    a = net.start(0)
    net.run()
    net.tick()
    assert a.phase == CHECKING  # nobody to hear from: it does not vote alone
    b = net.start(1)
    net.run()
    assert b.phase == VOTING  # node 0 answered it at once, though itself still checking
    net.tick(2.5)  # node 0 says hello again (backing off); node 1 answers
    assert a.phase == VOTING


def test_messages_wait_while_checking_and_are_answered_once_cleared() -> None:
    net = Net()
    for i in range(3):
        net.start(i)
    net.run()
    net.stop(0)
    net.stop(1)
    net.stop(2)
    a = net.start(0)
    net.send(0, Prepare("k", B1))
    net.send(0, StatusRequest(None))
    net.run()
    assert a.phase == CHECKING
    assert [type(m).__name__ for _, m in net.client] == ["StatusReply"]  # read-only: answered
    assert "k" not in net.disks[0].states  # nothing written before it is cleared
    net.start(1)
    net.run()
    net.tick()
    assert a.phase == VOTING
    promises = [m for _, m in net.client if isinstance(m, Promise)]
    assert promises == [Promise("k", B1, Ballot(0, b""), None)]


def _run_a_while(net: Net, node: int, keys: range) -> None:
    for k in keys:
        net.send(node, Prepare(f"k{k}", B1))
        net.run()
    net.tick()  # the node tells its peers how far it got


def test_a_data_directory_restored_from_an_older_copy_is_refused() -> None:
    net = Net()
    for i in range(3):
        net.start(i)
    net.run()
    _run_a_while(net, 2, range(3))
    backup = net.disks[2].copy()
    _run_a_while(net, 2, range(3, 6))
    net.stop(2)
    net.disks[2] = backup  # the whole directory, marker and peers.json included
    c = net.start(2)
    net.send(2, Prepare("k9", B1))
    net.run()
    assert c.phase == REFUSED
    assert "rolled back" in c.refusal and "restored from an older copy" in c.refusal
    assert "k9" not in net.disks[2].states and not [m for _, m in net.client
                                                     if getattr(m, "key", "") == "k9"]


def test_a_deleted_data_directory_is_refused_and_rejoins_with_new() -> None:
    net = Net()
    for i in range(3):
        net.start(i)
    net.run()
    net.decide("done", b"v")
    _run_a_while(net, 2, range(2))
    old = net.disks[2].incarnation
    net.stop(2)
    net.disks[2] = Disk()  # deleted: it comes back as a new incarnation, not fresh
    c = net.start(2)
    net.run()
    assert c.phase == REFUSED and "replaced" in c.refusal
    assert net.disks[0].memory[2].incarnation == old  # the refusal changed nobody's memory
    # --new: a fresh incarnation. The peers take it, and it learns before it votes.
    net.stop(2)
    net.disks[2] = Disk()
    net.client.clear()
    c = net.start(2, fresh=True)
    net.send(2, Prepare("k0", Ballot(5, b"\x02" * 16)))  # a key it may have voted on
    net.send(2, Prepare("done", Ballot(5, b"\x02" * 16)))  # a key it knows once synced
    net.run()
    assert c.phase == VOTING  # every peer accepted it and it synced from all of them
    assert net.disks[0].memory[2].incarnation == c.incarnation
    assert net.disks[0].memory[2].past == [old]
    assert net.disks[2].states["done"].chosen == b"v"
    # Which of the two Prepares got an answer depends on when they arrived; never a
    # Promise for a key it could have promised before it lost its state, while learning.
    assert not [m for _, m in net.client if isinstance(m, (Promise, Nack))]


def test_a_fresh_incarnation_stays_a_learner_until_every_peer_synced_it() -> None:
    net = Net()
    for i in range(3):
        net.start(i)
    net.run()
    net.decide("done", b"v")
    net.stop(1)
    net.stop(2)
    net.disks[2] = Disk()
    c = net.start(2, fresh=True)
    net.run()
    assert c.phase == CHECKING  # node 1 is down: not every peer has accepted it yet
    net.start(1)
    net.run()
    net.tick()
    assert c.phase in (LEARNING, VOTING)
    net.tick()
    assert c.phase == VOTING
    net.send(2, Accept("new-key", B1, b"x"))
    net.run()
    assert net.disks[2].states["new-key"].accepted == B1


def test_learning_answers_only_for_keys_known_chosen() -> None:
    net = Net()
    for i in range(3):
        net.start(i)
    net.run()
    net.decide("done", b"v")
    net.stop(2)
    net.disks[2] = Disk()
    c = net.start(2, fresh=True)
    c.phase = LEARNING  # as if cleared by all, sync not complete
    c.host.acceptor.states["done"] = KeyState(chosen=b"v", chosen_ballot=B1)
    ready = c.handle([(CLIENT, Prepare("done", Ballot(2, b"\x03" * 16))),
                      (CLIENT, Prepare("open", Ballot(2, b"\x03" * 16)))])
    assert [m for _, m in ready.send] == [Decide("done", b"v", B1)]
    assert not ready.persist and c.dropped == 1


def test_a_hello_must_come_from_the_node_it_names() -> None:
    net = Net()
    for i in range(3):
        net.start(i)
    net.run()
    a = net.up[0]
    forged = Hello(1, b"12345678", os.urandom(16), 0, True)
    ready = a.handle([(CLIENT, forged), (Caller(b"n:2:0:0"), forged)])
    assert not ready.send and a.dropped == 2
    assert net.disks[0].memory[1].incarnation == net.disks[1].incarnation


def test_a_single_node_cluster_votes_at_once() -> None:
    net = Net(1)
    a = net.start(0)
    assert a.phase == VOTING
    b = Net(1).start(0, fresh=True)
    assert b.phase == VOTING


# ---------------------------------------------------------------- seeded chaos


class ChaosNet:
    """Admission under a seeded network that delays (so reorders), duplicates and drops
    messages, with nodes crashing and restarting (each start a new process with its own
    boot id; a reply to a dead process is lost, as on real sockets). Virtual time."""

    def __init__(self, seed: int, n: int) -> None:
        import heapq
        import random

        self.heapq = heapq
        self.rng = random.Random(seed)
        self.n = n
        self.disks = {i: Disk() for i in range(n)}
        self.up: dict[int, Admission] = {}
        self.queue: list = []
        self.seq = 0
        self.now = 0.0
        self.chaos = True
        self.refused_ever: dict[int, str] = {}

    def push(self, t: float, *item) -> None:
        self.seq += 1
        self.heapq.heappush(self.queue, (t, self.seq, *item))

    def start(self, i: int) -> None:
        d = self.disks[i]
        peers = [p for p in range(self.n) if p != i]
        adm = Admission(AcceptorHost(i, d.states, peers), i, peers, d.incarnation,
                        d.commit_seq, False, d.memory, boot=self.rng.randbytes(8))
        self.up[i] = adm
        self._after(i, adm.start(self.now))

    def _after(self, i: int, ready) -> None:
        adm, d = self.up[i], self.disks[i]
        if ready.persist or ready.lazy:  # learned decisions: committed at once here
            d.states.update(ready.lazy)
            d.states.update(ready.persist)
            d.commit_seq += 1
            adm.commit_seq = d.commit_seq
        for dst, msg in ready.send:
            if self.chaos and self.rng.random() < 0.1:
                continue  # lost
            for _ in range(2 if self.rng.random() < 0.1 else 1):
                late = self.chaos and self.rng.random() < 0.05  # held up for a long time
                delay = self.rng.uniform(0.2, 3.0) if late else self.rng.uniform(0.001, 0.2)
                self.push(self.now + delay, "msg", (i, adm.boot), dst, msg)
        if adm.refusal is not None:
            self.refused_ever[i] = adm.refusal
            del self.up[i]

    def deliver(self, sender, dst, msg) -> None:
        if sender is None:
            target, src = dst, CLIENT
        elif isinstance(dst, int):
            target, src = dst, Caller(f"n:{sender[0]}:{dst}:{sender[1].hex()}".encode())
        elif dst == CLIENT:
            return
        else:
            _, node, _, boot = dst.ident.decode().split(":")
            target, src = int(node), sender[0]
            if target in self.up and self.up[target].boot.hex() != boot:
                return  # that process is gone: its routing id is unknown now
        if target in self.up:
            self._after(target, self.up[target].handle([(src, msg)]))

    def run(self, chaos_s: float = 5.0, end_s: float = 20.0) -> None:
        for i in range(self.n):
            self.start(i)
        self.push(0.3, "tick")
        self.push(self.rng.uniform(0, 1), "chaos")
        self.push(chaos_s, "end")
        while self.queue and self.queue[0][0] <= end_s:
            self.now, _, kind, *args = self.heapq.heappop(self.queue)
            if kind == "msg":
                self.deliver(*args)
            elif kind == "tick":
                for i in list(self.up):
                    if i in self.up:
                        self._after(i, self.up[i].due(self.now))
                self.push(self.now + 0.3, "tick")
            elif kind == "chaos" and self.chaos:
                i = self.rng.randrange(self.n)
                what = self.rng.random()
                if what < 0.5 and i in self.up:
                    self.push(self.now, "msg", None, i,
                              Prepare(f"k{self.rng.randrange(50)}",
                                      Ballot(self.rng.randrange(1, 9), b"\x01" * 16)))
                elif what < 0.8 and i in self.up:
                    del self.up[i]  # crash: memory gone, the disk stays
                elif i not in self.up and i not in self.refused_ever:
                    self.start(i)
                self.push(self.now + self.rng.uniform(0, 0.3), "chaos")
            elif kind == "end":
                self.chaos = False
                for i in range(self.n):
                    if i not in self.up and i not in self.refused_ever:
                        self.start(i)


def test_seeded_chaos_never_refuses_a_healthy_node_and_always_admits_everyone() -> None:
    """Restarts, reordered, duplicated and lost Hellos (the nemesis's proxy does all of
    them): a node that kept its state is never refused, and once the network heals every
    node votes: nobody waits for anybody forever."""
    for seed in range(int(os.environ.get("ZPAXOS_ADMISSION_SEEDS", "150"))):
        for n in (3, 5):
            net = ChaosNet(seed, n)
            net.run()
            assert not net.refused_ever, (seed, n, net.refused_ever)
            assert {i: a.phase for i, a in net.up.items()} == {i: VOTING for i in range(n)}, \
                (seed, n)


def test_seeded_chaos_refuses_a_restored_copy_whatever_the_order() -> None:
    for seed in range(60):
        net = ChaosNet(seed, 3)
        net.run(end_s=8)
        backup = net.disks[2].copy()
        for k in range(3):  # node 2 moves on, and the peers hear of it
            net.push(net.now, "msg", None, 2, Prepare(f"later{k}", Ballot(50, b"\x02" * 16)))
        net.push(net.now + 0.001, "end")
        _drain(net, net.now + 5)
        assert all(net.disks[p].memory[2].commit_seq > backup.commit_seq for p in (0, 1))
        del net.up[2]
        net.disks[2] = backup
        net.start(2)
        _drain(net, net.now + 5)
        assert 2 in net.refused_ever and "rolled back" in net.refused_ever[2], seed


def _drain(net: ChaosNet, until: float) -> None:
    net.push(net.now + 0.3, "tick")
    while net.queue and net.queue[0][0] <= until:
        net.now, _, kind, *args = net.heapq.heappop(net.queue)
        if kind == "msg":
            net.deliver(*args)
        elif kind == "tick":
            for i in list(net.up):
                net._after(i, net.up[i].due(net.now))
            net.push(net.now + 0.3, "tick")
    net.queue = [e for e in net.queue if e[2] != "tick"]
    net.heapq.heapify(net.queue)


def test_status_names_the_nodes_that_do_not_vote_yet() -> None:
    from zpaxos.pictures.statusview import status_table
    from zpaxos.runtime.client import NodeStatus

    nodes = [NodeStatus(0, "tcp://a:1", True, stats=(("voting", 1),)),
             NodeStatus(1, "tcp://a:2", True, stats=(("voting", 0),))]
    text = status_table(nodes)
    assert "not voting yet: node1 (waiting for its peers" in text
    assert "node0" not in text.split("not voting yet")[1]


def test_what_waits_during_the_check_is_bounded() -> None:
    from zpaxos.hosts import admission

    net = Net()
    a = net.start(0)  # nobody else up: it stays checking
    big = b"x" * (1 << 20)
    a.handle([(CLIENT, Accept(f"k{i}", B1, big)) for i in range(80)])
    assert a.phase == CHECKING
    assert len(a.held) == admission.MAX_HELD_BYTES // len(big) and a.dropped == 80 - len(a.held)
    a.handle([(CLIENT, Prepare(f"p{i}", B1)) for i in range(admission.MAX_HELD)])
    assert len(a.held) == admission.MAX_HELD


def test_admission_hands_the_loop_its_notes_refusal_and_peer_changes_in_its_ready():
    """The loop (node.py) learns what admission has for it from each Ready, never by
    reaching into the admission object: notes to log, peers.json to save, a refusal."""
    net = Net()
    for i in range(3):
        net.start(i)
    net.run()
    notes = {(i, n.name) for i, ns, _, _ in net.handed for n in ns}
    assert {(i, "admitted") for i in range(3)} <= notes
    assert all(changed for i, _, _, changed in net.handed if i == 0) is False
    assert any(changed for i, _, _, changed in net.handed if i == 0)  # it heard its peers
    assert all(refusal is None for _, _, refusal, _ in net.handed)
    assert not any(adm.notes for adm in net.up.values())  # handed over, none kept back


def test_the_hosts_timed_work_reaches_the_loop_whole_sends_and_cursors() -> None:
    """A voting node's timer (Admission.due) hands the loop what the host's tick made:
    its sends (owed watch notifications, catch-up requests) and the catch-up cursors that
    moved, which the loop saves (they were dropped: a restarted node asked again from
    an older cursor)."""
    from zpaxos.hosts.acceptor_ready import Ready
    from zpaxos.protocol.messages import RWatch

    net = Net(1)
    a = net.start(0)
    assert a.phase == VOTING
    cursor = (b"peer", 3)
    sent = [(5, RWatch("k"))]

    class Ticking:
        def __init__(self, host: AcceptorHost) -> None:
            self.host = host

        def __getattr__(self, name: str) -> object:
            return getattr(self.host, name)

        def tick(self, now: float) -> Ready:
            return Ready(send=list(sent), cursors={1: cursor})

    a.host = Ticking(a.host)  # type: ignore[assignment]
    ready = a.due(0.0)
    assert ready.send[-1:] == sent and ready.cursors == {1: cursor}
