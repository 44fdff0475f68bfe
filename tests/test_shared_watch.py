"""Many watchers in one process share one watch (zpaxos.runtime.watch.SharedWatch): each
subscriber gets the register's states as a watch reports them (checked against the
writer's history), a late one the latest first, and an iterator subscriber the same."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.harness import Cluster
from zpaxos.client import Client, load_config
from zpaxos.runtime.watch import SharedWatch, WatchState
from zpaxos.sim.lincheck import Op, Seen, check_watch

pytestmark = pytest.mark.e2e


@pytest.fixture
def running(tmp_path: Path):
    c = Cluster(tmp_path, log_level="WARNING")
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


class Subscriber:
    def __init__(self, shared: SharedWatch) -> None:
        self.seen: list[Seen] = []
        self.got = threading.Event()
        shared.add(self.deliver)

    def deliver(self, s: WatchState | BaseException) -> None:
        if isinstance(s, WatchState):  # (else the watch failed: the test times out)
            self.seen.append(Seen(s.at, s.version, s.value, s.skipped))
            self.got.set()

    def wait_version(self, version: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not (self.seen and self.seen[-1].version >= version):
            assert time.monotonic() < deadline, f"stuck at {self.seen[-1:]}"
            self.got.wait(0.05)
            self.got.clear()


def test_subscribers_of_one_shared_watch_all_see_the_changes(running: Cluster) -> None:
    cfg = load_config(running.config)
    history: list[Op] = []
    with Client(cfg) as watcher, Client(cfg) as writer:
        shared = SharedWatch(watcher, "sw")
        subs = [Subscriber(shared) for _ in range(3)]
        shared.start()
        try:
            subs[0].wait_version(0)
            for i in range(20):
                t0 = time.monotonic()
                r = writer.set("sw", b"v%d" % i)
                history.append(Op("writer", "sw", "set", t0, time.monotonic(), r.status,
                                  r.version, r.value, b"v%d" % i))
            for s in subs:
                s.wait_version(20)
            late = Subscriber(shared)  # joins late: the latest state reported comes first
            late.wait_version(20)
        finally:
            shared.stop()
    for s in subs:
        assert s.seen == subs[0].seen  # all given the same states, in the same order
        assert check_watch(history, s.seen, "sw") == (True, "")
    assert late.seen == subs[0].seen[-1:]


def test_an_iterating_subscriber_gets_the_states_too(running: Cluster) -> None:
    cfg = load_config(running.config)
    with Client(cfg) as watcher, Client(cfg) as writer:
        writer.set("it", b"a")
        shared = SharedWatch(watcher, "it").start()
        try:
            states = shared.subscribe()
            assert next(states).value == b"a"
            writer.set("it", b"b")
            assert next(states).value == b"b"
        finally:
            shared.stop()
        assert not shared.running  # stopped while nothing changed: the client is free
