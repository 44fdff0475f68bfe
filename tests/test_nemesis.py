"""The nemesis: the checker on made-up histories, then a real run across namespaces.

The runs need root and network namespaces (CI has both) and take about three minutes, so
they are slow tests (``tests/run.sh --slow``); elsewhere they are skipped with the reason.
``ZPAXOS_NEMESIS_SEED`` and ``ZPAXOS_NEMESIS_SECONDS`` pick the schedule; longer runs:
``python -m tests.nemesis``.
"""

from __future__ import annotations

import os
import random
import signal

import pytest

from tests.nemesis import checker
from tests.nemesis.netns import unavailable_reason
from tests.nemesis.proxy import Rule, peer_of
from tests.nemesis.schedule import KINDS, make_schedule


def op(key, value, chosen, end=0.0, via="stream"):
    return {"key": key, "value": value, "chosen": chosen, "start": end - 0.01, "end": end,
            "via": via, "proc": "t"}


# ---------------------------------------------------------------- the checker itself


def test_checker_accepts_a_clean_history():
    ops = [op("k", "a", "a"), op("k", "b", "a"), op("k", "c", None), op("j", "d", "d")]
    decided, violations = checker.decisions(ops)
    assert decided == {"k": "a", "j": "d"} and violations == []


def test_checker_catches_two_values_chosen():
    _, v = checker.decisions([op("k", "a", "a"), op("k", "b", "b")])
    assert v == ["agreement: k reported chosen as ['a', 'b']"]


def test_checker_catches_a_value_nobody_proposed():
    _, v = checker.decisions([op("k", "a", "zzz")])
    assert v == ["validity: k chosen 'zzz', which nobody proposed"]


def status(*nodes):
    return {"nodes": [{"id": i, "reachable": True, "truncated": False,
                       "keys": {k: {"chosen": c} for k, c in keys.items()}}
                      for i, keys in enumerate(nodes)]}


def test_checker_catches_a_lost_decision_and_a_diverged_node(tmp_path):
    dirs = {i: tmp_path / f"n{i}" for i in range(3)}
    for i, d in dirs.items():
        d.mkdir()
        (d / "k.txt").write_text(("a" if i < 2 else "b") + "\n")
    st = status({"k": "a"}, {"k": "a"}, {"k": "b"})
    v, missing = checker.final_state({"k": "a"}, {"k"}, st, dirs)
    assert v == ["durability: node2 has k='b', operations reported 'a'"] and missing == []
    assert checker.cross_node(st) == ["agreement: node0 has k='a', node2 has 'b'"]
    v, missing = checker.final_state({"k": "a"}, {"k"}, status({}, {"k": "a"}, {"k": "a"}),
                                     dirs)
    assert "node0 does not know the decision for k" in missing


def test_unavailability_is_the_longest_gap_between_successes():
    ops = [op("k", "a", "a", end=t) for t in (10.0, 10.5, 13.0, 13.2)] + \
          [op("k", "b", None, end=12.0)]
    faults = [{"kind": "pause", "started": 10.2}, {"kind": "loss", "started": 13.1}]
    u = checker.unavailability(ops, faults, t_end=14.0)
    assert u["pause"]["max_gap_s"] == 2.5  # 10.5 -> 13.0
    assert u["loss"]["max_gap_s"] == 0.8  # 13.2 -> the end


def test_the_schedule_is_a_function_of_its_seed():
    a, b = make_schedule(7, 120, 3), make_schedule(7, 120, 3)
    assert a == b and a != make_schedule(8, 120, 3)
    kinds = {f.kind for s in range(20) for f in make_schedule(s, 120, 3)}
    assert kinds == set(KINDS)
    for f in a:
        if f.kind in ("kill_minority", "partition_links"):
            assert 1 <= len(f.nodes) <= 1  # a minority of three


def test_proxy_rules_and_peers():
    assert peer_of("10.77.0.11") == "node1" and peer_of("10.77.0.30") == "client"
    r = Rule(src="node0", dst="node2", drop=1.0)
    assert r.matches("node0", "node2") and not r.matches("node2", "node0")
    assert Rule().matches("client", "node1")


# ---------------------------------------------------------------- the real thing


@pytest.mark.e2e
@pytest.mark.nemesis
@pytest.mark.slow
def test_nemesis_across_namespaces(tmp_path, capsys):
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"nemesis skipped: {reason}")
    from tests.nemesis.runner import Nemesis, Options

    seed = int(os.environ.get("ZPAXOS_NEMESIS_SEED") or random.SystemRandom().randrange(1 << 31))
    seconds = float(os.environ.get("ZPAXOS_NEMESIS_SECONDS", "80"))
    old = signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(SystemExit(143)))
    try:
        report = Nemesis(Options(seed=seed, seconds=seconds, workdir=tmp_path / "nemesis",
                                 verbose=False)).run()
    finally:
        signal.signal(signal.SIGTERM, old)
    with capsys.disabled():  # the figures and the replay command, in every CI log
        print("\n" + report.summary())
    assert report.violations == [], report.summary()
    assert report.liveness == [], report.summary()
    assert report.unexpected_exits == [], report.summary()
    assert report.operations["chosen"] > 100
    assert report.operations["registers_done"] > 50, report.summary()  # and linearizable
    assert sum(report.faults.values()) >= (5 if seconds >= 60 else 1), report.summary()


@pytest.mark.e2e
@pytest.mark.nemesis
@pytest.mark.slow
def test_nemesis_catches_a_node_that_forgets(tmp_path):
    """The mutation check: nodes whose commit does nothing lose decisions at the first
    kill -9 of every node, and the run must say so."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"nemesis skipped: {reason}")
    from tests.nemesis.runner import Nemesis, Options

    report = Nemesis(Options(seed=1, seconds=12, workdir=tmp_path / "mutant", verbose=False,
                             kinds={"kill_all": 1}, mutant="forget", stream_workers=1,
                             cli_threads=0)).run()
    assert report.faults == {"kill_all": len(report.fault_log)} and report.fault_log
    kinds = {v.split(":")[0] for v in report.violations}
    assert kinds & {"agreement", "durability"}, report.summary()


@pytest.mark.e2e
@pytest.mark.nemesis
@pytest.mark.slow
def test_nemesis_with_curve(tmp_path, capsys):
    """The same across namespaces with CURVE on every socket: kill -9, pauses, link
    partitions and crash points (CurveZMQ itself forbids the proxy's message faults)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"nemesis skipped: {reason}")
    from tests.nemesis.runner import Nemesis, Options
    from tests.nemesis.schedule import CURVE_KINDS

    seed = int(os.environ.get("ZPAXOS_NEMESIS_SEED") or random.SystemRandom().randrange(1 << 31))
    report = Nemesis(Options(seed=seed, seconds=30, workdir=tmp_path / "curve", verbose=False,
                             kinds=CURVE_KINDS, curve=True, stream_workers=1,
                             cli_threads=1)).run()
    with capsys.disabled():
        print("\nCURVE " + report.summary())
    assert report.violations == [], report.summary()
    assert report.unexpected_exits == [], report.summary()
    assert report.operations["chosen"] > 50
    assert "curve = true" in (tmp_path / "curve" / "client.ini").read_text()
