"""Mutual exclusion on real processes (zpaxos/lab/mutex.py): lock holders (``zpaxos lock
-- CMD`` and ``client.lock``) writing to a fenced resource, against a real 3-node cluster,
the holder of the moment SIGKILLed, SIGSTOPped past its TTL and cut off by the loopback
proxy (tests/nemesis/). The record must show one holder at a time and growing tokens; with
a token reused across holders it must not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.nemesis.loopback import LoopbackProxy
from zpaxos.lab import mutex
from zpaxos.lab.launcher import free_ports, write_config
from zpaxos.lab.mutex import Attempt, check

KINDS = ["cli", "api", "cli", "api"]


def A(t: float, token: int, holder: str, accepted: bool = True) -> Attempt:  # noqa: N802
    return Attempt(t, token, holder, accepted)


# ---------------------------------------------------------------- the check itself


def test_the_check_passes_one_holder_at_a_time_with_stale_writes_refused() -> None:
    v = check([A(1, 3, "a"), A(2, 3, "a"), A(3, 7, "b"), A(4, 3, "a", False), A(5, 9, "c")])
    assert v.violations == [] and (v.accepted, v.refused, v.holdings) == (4, 1, 3)


@pytest.mark.parametrize("attempts, cut, says", [
    ([A(1, 3, "a"), A(2, 3, "b")], (), "token 3 accepted from two holders: a and b"),
    ([A(1, 3, "a"), A(2, 4, "b"), A(3, 4, "a")], (), "a (token 4) accepted again after b"),
    ([A(1, 3, "a"), A(2, 3, "b")], (), "b's token 3 is not above the last holder's, a's 3"),
    ([A(1, 3, "a"), A(2, 4, "b"), A(3, 3, "a", False)], ("a",),
     "a, cut off, still wrote at t=3.000 after b began at t=2.000"),
])
def test_the_check_finds(attempts: list[Attempt], cut: tuple[str, ...], says: str) -> None:
    assert any(says in line for line in check(attempts, cut).violations)


# ---------------------------------------------------------------- real processes


def _proxied(tmp_path: Path, workers: int) -> tuple[Path, list[Path], LoopbackProxy]:
    """The cluster's config, and each worker's: the same nodes, reached through a proxy
    listener of its own per node (``w<k>n<i>``), so that one worker can be cut off."""
    real = free_ports(3)
    main = write_config(tmp_path / "cluster.ini", [("127.0.0.1", p) for p in real],
                        log_level="WARNING", value_files="")
    listeners, configs = {}, []
    for k in range(workers):
        px = free_ports(3)
        text = main.read_text()
        for i in range(3):
            listeners[f"w{k}n{i}"] = (px[i], real[i])
            text = text.replace(f"port = {real[i]}\n", f"port = {px[i]}\n")
        configs.append(tmp_path / f"worker{k}.ini")
        configs[-1].write_text(text)
    return main, configs, LoopbackProxy(listeners)


@pytest.mark.e2e
@pytest.mark.slow
def test_one_holder_at_a_time_under_kill_stop_and_cut(tmp_path: Path) -> None:
    main, configs, proxy = _proxied(tmp_path, len(KINDS))
    proxy.start()

    def cut(k: int, on: bool) -> None:
        if on:
            proxy.cut([f"w{k}n{i}" for i in range(3)])
        else:
            proxy.heal()
    try:
        v, faults = mutex.run(tmp_path, KINDS, ["stop-api", "cut", "kill", "stop-cli", "cut",
                                                "kill"],
                              configs=configs, cut=cut, cluster_config=main)
    finally:
        proxy.stop()
    print(f"faults: {faults}; {v.attempts} attempts, {v.accepted} accepted, {v.refused} "
          f"refused, {v.holdings} holdings")
    assert v.violations == []
    # Every fault hit a holder and holders changed hands many times. The paused api
    # holder wakes in the middle of its work and writes: its token refuses it. (A paused
    # ``zpaxos lock`` may stop its command before the command writes: a race, so its
    # stale write is not counted on.)
    assert not any("no holder" in f for f in faults), faults
    assert v.holdings >= 10 and v.refused >= 1


@pytest.mark.e2e
@pytest.mark.slow
def test_the_check_fails_when_a_take_over_reuses_the_token(tmp_path: Path) -> None:
    v, faults = mutex.run(tmp_path, ["api"] * 3, ["stop", "kill"], broken="token-reused")
    assert any("accepted from two holders" in line for line in v.violations), (faults, v)
