"""A WatchSession keeps every node's watch armed (zpaxos/runtime/watch.py).

A node disarms a watch when it notifies it and re-arms it at the watcher's next message
about the register (zpaxos/hosts/watchers.py). A notice that asks for no read (a lock's
waiter far back in the queue, ``read_ahead`` > 1; the note of our own write) left that
node silent until the next renewal, seconds later: with 8 contenders for a lock, hand-overs
fell to about 3 per second. The session now sends such a node an RWatch (no register
round) before it waits again, once per new version. And the nodes' notes of the very
state an operation returned, arriving while it ran, ask for no second read. On fakes: no
timing is measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zpaxos.protocol.messages import RNotify, RWatch
from zpaxos.protocol.regops import GET, OK, RegResult
from zpaxos.runtime.watch import WatchSession


@dataclass
class Node:
    id: int


@dataclass
class Cluster:
    nodes: list[Node] = field(default_factory=lambda: [Node(0), Node(1), Node(2)])


class Sockets:
    """Sends are recorded; each poll returns the next scripted batch of messages."""

    watch = None
    stop_requested = False

    def __init__(self, batches: list[list[tuple[int, Any]]]) -> None:
        self.batches = batches
        self.sent: list[tuple[int, Any]] = []

    def send(self, node: int, msg: Any) -> None:
        self.sent.append((node, msg))

    def poll(self, timeout: float) -> list[tuple[int, Any]]:
        return self.batches.pop(0) if self.batches else []


class Registers:
    """A read returns ``version``; ``during`` is what the nodes say while it runs."""

    def __init__(self, version: int, during: list[tuple[int, Any]]) -> None:
        self.version, self.during = version, during

    def run(self, items: Any, opts: Any, n: int,
            aside: Callable[[list[Any]], None]) -> list[RegResult]:
        aside(self.during)
        return [RegResult("k", GET, OK, self.version, b"v")]


class FakeClient:
    def __init__(self, sockets: Sockets, regs: Registers) -> None:
        self.cluster = Cluster()
        self.sockets = sockets
        self.regs = regs

    def register_options(self, one_rtt: bool = True, **overrides: Any) -> Any:
        return None

    def _registers(self) -> Registers:
        return self.regs

    def _stop(self) -> None:
        raise KeyboardInterrupt


def session(batches: list[list[tuple[int, Any]]], version: int = 10,
            during: list[tuple[int, Any]] | None = None) -> tuple[WatchSession, Sockets]:
    sockets = Sockets(batches)
    s = WatchSession(FakeClient(sockets, Registers(version, during or [])),  # type: ignore[arg-type]
                     "k")
    s.renew_at = float("inf")  # no renewals: only what the rules send
    return s, sockets


def test_a_notice_that_asks_for_no_read_rearms_its_node_once() -> None:
    # A waiter third in the queue read version 10: it reads again at 13, not before.
    s, sockets = session([[(1, RNotify("k", 11, True))],   # node 1 tells of 11 (disarmed)
                          [(1, RNotify("k", 11, True))],   # the RWatch's answer: still 11
                          [(2, RNotify("k", 13, True))]])  # 13: time to read
    s.read()
    s.read_ahead = 3
    assert s.wait(float("inf"))
    watches = [(node, msg) for node, msg in sockets.sent if type(msg) is RWatch]
    assert watches == [(1, RWatch("k"))]  # node 1 re-armed, once: no ping-pong


def test_a_read_rearms_every_node_it_reaches() -> None:
    # A notice followed by an operation of ours sends no RWatch: the operation's messages
    # re-arm the nodes they reach.
    s, sockets = session([[(1, RNotify("k", 11, True))], [(0, RNotify("k", 12, True))]])
    s.read()
    s.read_ahead = 2
    s.take([(1, RNotify("k", 11, True))])
    s.read()
    assert s.wait(float("inf"))
    assert [m for _, m in sockets.sent if type(m) is RWatch] == []


def test_notes_of_what_an_operation_returned_ask_for_no_second_read() -> None:
    same = [(n, RNotify("k", 10, True)) for n in (0, 1, 2)]
    s, _ = session([], version=10, during=same)
    s.read()
    assert not s.want_read
    newer = [(1, RNotify("k", 11, True))]
    s, _ = session([], version=10, during=newer)
    s.read()
    assert s.want_read  # a change after the one read: read again


def test_an_answer_to_our_rwatch_is_not_a_notification_no_ping_pong() -> None:
    # On a register changing faster than a round trip, each answer carries a newer
    # version. Taken for a notification, it re-armed its node again: an RWatch
    # ping-pong per watcher and node, past every pacing (1,000 watchers cost the
    # writes 70%).
    s, sockets = session([])
    s.read()  # version 10
    s.read_ahead = 5  # (no reads: only the re-arming is looked at)
    s.take([(1, RNotify("k", 11, True))])  # a notification: node 1 disarmed
    s.rearm()
    s.take([(1, RNotify("k", 12, True))])  # the RWatch's answer: newer, node 1 armed
    s.rearm()
    s.take([(1, RNotify("k", 13, True))])  # a notification again
    s.rearm()
    watches = [node for node, msg in sockets.sent if type(msg) is RWatch]
    assert watches == [1, 1]  # after each notification, not after the answer


def test_a_rearms_answer_asks_for_no_read_but_a_renewals_does() -> None:
    # After a read, the nodes that answered it were armed by its question: a re-arm's
    # answer with a newer version is told again by them. A renewal's answer is what a
    # watcher the pacing left out, or whose notification was lost, hears.
    s, sockets = session([])
    s.read()  # version 10
    s.take([(1, RNotify("k", 10, True))])  # the note of what it read: no read
    assert not s.want_read
    s.rearm()  # node 1 re-armed
    s.take([(1, RNotify("k", 11, True))])  # its answer: 11
    assert not s.want_read
    s.renew_at = 0.0
    s.renew(1.0)  # a renewal to every node
    s.take([(0, RNotify("k", 11, True))])
    assert s.want_read


def test_a_waiter_reading_ahead_reads_on_a_rearms_answer() -> None:
    # A lock's waiter far back (read_ahead > 1) has no read to lean on: a re-arm's
    # answer that reaches its turn asks for a read.
    s, _ = session([])
    s.read()  # version 10
    s.read_ahead = 2
    s.take([(1, RNotify("k", 11, True))])  # a notification, below its turn
    assert not s.want_read
    s.rearm()
    s.take([(1, RNotify("k", 12, True))])  # the answer: its turn
    assert s.want_read


def test_a_node_back_up_is_renewed_at_once_even_if_the_register_loop_saw_it_first() -> None:
    # The register loop clears ``came_up`` when it retries its operations; the watch
    # session counts comebacks instead, so a restarted node (which forgot the watch) gets
    # it back at once, not at the next renewal, 10 s on.
    from types import SimpleNamespace

    s, sockets = session([])
    sockets.watch = SimpleNamespace(came_up=set(), comebacks=0)  # type: ignore[assignment]
    s.renew_at = 100.0
    s.renew(1.0)
    assert sockets.sent == []
    sockets.watch.comebacks = 1  # node 2 came back; the loop already cleared came_up
    s.renew(2.0)
    assert [m for _, m in sockets.sent] == [RWatch("k")] * 3
    s.renew(3.0)
    assert len(sockets.sent) == 3  # once per comeback
