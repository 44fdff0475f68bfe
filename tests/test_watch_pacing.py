"""The watch loop's own rules (zpaxos/runtime/watch.py), on a fake client and a fake clock:
confirming reads are paced however fast the notifications come, and the other nodes'
notes of the change being read ask for no second read. (The clock is the test's: no
timing is measured.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from zpaxos.protocol.messages import RNotify
from zpaxos.protocol.regops import GET, OK, RegResult
from zpaxos.runtime import watch as w


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


@dataclass
class Node:
    id: int


@dataclass
class Cluster:
    nodes: list[Node] = field(default_factory=lambda: [Node(0), Node(1), Node(2)])


class Register:
    """The register as the fake nodes hold it: ``changes_per_s`` changes while time runs,
    each announced by every node (the armed nodes would, at most once per read)."""

    def __init__(self, clock: Clock, changes_per_s: float) -> None:
        self.clock = clock
        self.rate = changes_per_s
        self.start = clock.now
        self.announced = 0
        self.reads = 0

    @property
    def version(self) -> int:
        return int((self.clock.now - self.start) * self.rate)

    def notes(self) -> list[tuple[int, RNotify]]:
        v = self.version
        if v <= self.announced:
            return []
        self.announced = v
        return [(n, RNotify("k", v, True)) for n in (0, 1, 2)]


class Sockets:
    watch = None
    stop_requested = False

    def __init__(self, clock: Clock, reg: Register) -> None:
        self.clock, self.reg = clock, reg

    def send(self, node: int, msg: Any) -> None:
        pass

    def poll(self, timeout: float) -> list[tuple[int, RNotify]]:
        # The next change's notes come when it happens (or nothing by the timeout).
        step = min(timeout, 1 / self.reg.rate) if self.reg.rate else timeout
        self.clock.now += max(step, 1e-6)
        return self.reg.notes()


class Registers:
    def __init__(self, clock: Clock, reg: Register) -> None:
        self.clock, self.reg = clock, reg

    def run(self, items: Any, opts: Any, n: int,
            aside: Callable[[list[Any]], None]) -> list[RegResult]:
        self.reg.reads += 1
        version = self.reg.version
        self.clock.now += 0.001  # a round trip; the notes of what it reads come meanwhile
        aside([(n, RNotify("k", version, True)) for n in (1, 2)])
        return [RegResult("k", GET, OK, version, b"v")]


class FakeClient:
    def __init__(self, clock: Clock, reg: Register) -> None:
        self.cluster = Cluster()
        self.sockets = Sockets(clock, reg)
        self._regs = Registers(clock, reg)

    def register_options(self, one_rtt: bool = True, **overrides: Any) -> Any:
        return None

    def _registers(self) -> Registers:
        return self._regs

    def _stop(self) -> None:
        raise KeyboardInterrupt


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(w.time, "monotonic", c.monotonic)
    return c


def run_for(clock: Clock, reg: Register, seconds: float) -> list[w.WatchState]:
    states = []
    end = clock.now + seconds
    for s in w.watch(FakeClient(clock, reg), "k"):  # type: ignore[arg-type]
        states.append(s)
        if clock.now >= end:
            break
    return states


def test_confirming_reads_are_paced_however_fast_the_register_changes(clock: Clock) -> None:
    reg = Register(clock, changes_per_s=1000.0)
    states = run_for(clock, reg, 2.0)
    assert reg.version >= 2000
    # At most one read per READ_GAP_S on average (and the first burst): 2 s / 20 ms = 100.
    assert reg.reads <= 2.0 / w.READ_GAP_S + w.READ_BURST + 1
    assert reg.reads >= 2.0 / w.READ_GAP_S / 2  # and it keeps up: no change left waiting
    versions = [s.version for s in states]
    assert versions == sorted(set(versions))
    assert any(s.skipped for s in states)  # coalesced changes are declared, not hidden


def test_a_change_is_read_once_though_every_node_announces_it(clock: Clock) -> None:
    reg = Register(clock, changes_per_s=5.0)  # a change every 200 ms: no pacing needed
    states = run_for(clock, reg, 2.0)
    changes = reg.version
    assert [s.version for s in states] == list(range(changes + 1))[:len(states)]
    # One read per change (and the first), though three nodes told of each.
    assert reg.reads <= changes + 2
