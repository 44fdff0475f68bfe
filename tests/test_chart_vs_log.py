"""Every mark on a chart agrees with the log it was drawn from (issue 26, item 3).

Over many simulated runs, each message's arrow is judged against the raw JSON lines, read
here without the log model: delivered iff the log shows it received; "lost" iff the log
shows the network dropped it; never received and not dropped only for a reason the log
shows (its node down, its proposer finished); "not sent" never, since every simulated
message has its ``send`` line. The chart's summary counts must agree too.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from zpaxos.pictures.chartmodel import fate_text, select
from zpaxos.pictures.logmodel import (
    DRAWN_TYPES,
    LOST,
    RECEIVER_DOWN,
    UNREAD,
    is_proposer,
    read_log,
)
from zpaxos.sim.schedules import FAULTS, scenario
from zpaxos.sim.tape import TapedSimulation

SEEDS = range(1000)


def _simulated_log(seed: int, path: Path) -> Path:
    sim = TapedSimulation(scenario(seed, 3, 2, frozenset(FAULTS)), log=True, strict=False,
                          one_process_each=True)
    sim.run()
    path.write_text(sim.log_text(), encoding="utf-8")
    return path


def _facts(path: Path) -> tuple[dict, set, set, dict]:
    """From the raw lines: sends by (sender, msg_id), receives and drops by (sender,
    msg_id, receiver), and each process's starts, crashes and stops in time order."""
    sends: dict[tuple[str, str], dict] = {}
    recvs: set[tuple[str, str, str]] = set()
    drops: set[tuple[str, str, str]] = set()
    life: dict[str, list[tuple[float, str]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        e = json.loads(line)
        who, ev = e["process"], e["event"]
        if ev in ("send", "recv", "dropped") and e["type"] in DRAWN_TYPES:
            if ev == "send":
                sends[(who, e["msg_id"])] = e
            elif ev == "recv":
                recvs.add((e["peer"], e["msg_id"], who))
            else:
                drops.add((who, e["msg_id"], e["peer"]))
        elif ev in ("start", "crash", "stop"):
            life.setdefault(who, []).append((e["ts"], ev))
    return sends, recvs, drops, life


def _away(life: list[tuple[float, str]], ts: float) -> bool:
    """Down at ``ts``, or going down (crash, stop) at some time after it."""
    before = [ev for t, ev in life if t <= ts]
    return bool(before and before[-1] != "start") or any(t >= ts and ev != "start"
                                                         for t, ev in life)


def _check(seed: int, path: Path) -> list[str]:
    sends, recvs, drops, life = _facts(path)
    wrong = []
    for chart in select(read_log(path)):
        expected: Counter[str] = Counter()
        for m in chart.messages:
            where = (m.sender, m.msg_id, m.receiver)
            said = fate_text(m) or "delivered"
            if where in recvs:
                truth = "delivered"
            elif (m.sender, m.msg_id) not in sends:
                truth = "not sent"
            elif where in drops:
                truth = fate_text(_as(m, LOST))
            elif _away(life.get(m.receiver, []), m.sent):
                # Neither received nor dropped: its receiver went away before it arrived.
                truth = fate_text(_as(m, UNREAD if is_proposer(m.receiver) else RECEIVER_DOWN))
            else:
                truth = "in flight at the end of the log"
            if said != truth:
                wrong.append(f"seed {seed}: {m.type} {m.sender} -> {m.receiver} at"
                             f" {m.sent:.6f}: chart says {said!r}, the log {truth!r}")
            if truth != "delivered":
                expected[truth] += 1
        summary = chart.never_received()
        if summary != ", ".join(f"{n} {what}" for what, n in expected.items()):
            wrong.append(f"seed {seed}: summary {summary!r}, the log {dict(expected)}")
        shown = {(m.sender, m.msg_id) for m in chart.messages}
        missing = [k for k, e in sends.items() if e.get("key") == chart.key
                   and chart.start <= e["ts"] <= chart.end and k not in shown]
        if missing:
            wrong.append(f"seed {seed}: sent but not drawn: {missing}")
    return wrong


def _as(m, fate: str):
    from dataclasses import replace
    return replace(m, fate=fate)


def test_every_arrow_agrees_with_the_log(tmp_path):
    wrong: list[str] = []
    for seed in SEEDS:
        wrong += _check(seed, _simulated_log(seed, tmp_path / "sim.log"))
    assert not wrong, f"{len(wrong)} disagreements, first: " + "\n".join(wrong[:10])


def test_seed_7_prepare_is_lost_not_unsent(tmp_path):
    """The issue's case, also with the drop lines taken out (as a real log has none):
    P2's PREPARE to node1, sent 50 ms before P2 finished, is lost, not "not sent"."""
    log = _simulated_log(7, tmp_path / "seven.log")
    for keep_drops in (True, False):
        lines = [ln for ln in log.read_text().splitlines(keepends=True)
                 if keep_drops or '"event":"dropped"' not in ln]
        path = tmp_path / f"seven-{keep_drops}.log"
        path.write_text("".join(lines))
        [chart] = select(read_log(path))
        [prepare] = [m for m in chart.messages if m.type == "PREPARE"
                     and m.sender == "proposer P2" and m.receiver == "node1"
                     and m.fields["ballot"] == "1.P2"]
        assert fate_text(prepare) == "lost", keep_drops
        assert "lost" in chart.never_received() and chart.faults >= 1
        assert "not sent" not in chart.never_received()
