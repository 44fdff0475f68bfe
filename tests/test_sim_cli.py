"""``zpaxos sim``: seeded schedules as a command, the breakable rules found, shrunk,
explained and drawn, and the simulated log read like a real one (zpaxos/sim/tape.py,
shrink.py, rules.py, lesson.py; zpaxos/cli/sim.py)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from zpaxos.cli import main
from zpaxos.pictures.chartmodel import select
from zpaxos.pictures.logmodel import read_log
from zpaxos.sim.lesson import break_rule, charts_of
from zpaxos.sim.rules import RULES, find_split
from zpaxos.sim.schedules import FAULTS, scenario
from zpaxos.sim.shrink import ddmin, run
from zpaxos.sim.tape import TapedSimulation

SVG = "{http://www.w3.org/2000/svg}"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(["sim", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return e.value.code, out, err


@pytest.fixture(scope="module")
def lessons():
    """Every breakable rule broken once (each takes a second or so)."""
    return {name: break_rule(name) for name in RULES}


# ---------------------------------------------------------------- the machinery


def test_ddmin_finds_a_one_minimal_subset():
    calls = []

    def fails(xs):
        calls.append(list(xs))
        return {3, 11, 12}.issubset(xs)

    assert sorted(ddmin(list(range(20)), fails)) == [3, 11, 12]
    assert ddmin([1, 2], lambda xs: True) == []


def test_replaying_the_whole_tape_reproduces_the_run():
    """The shrinker's ground: a run replayed from its own tape is the same run, message
    for message, crash for crash (faults on, so drops, duplicates and crashes are taped)."""
    for seed in range(40):
        sc = scenario(seed, 3, 3, frozenset(FAULTS))
        first = TapedSimulation(sc, log=True, one_process_each=True)
        first.run()
        again = TapedSimulation(sc, tape=first.recording, log=True, one_process_each=True)
        again.run()
        assert again.log_text() == first.log_text(), seed
        assert again.recording == first.recording


def test_the_simulated_log_reads_like_a_real_one(tmp_path):
    sim = TapedSimulation(scenario(3, 3, 2, frozenset({"crash", "loss"})), log=True,
                          one_process_each=True)
    sim.run()
    path = tmp_path / "sim.log"
    path.write_text(sim.log_text())
    for line in sim.log_text().splitlines():  # the fields every real log line has
        obj = json.loads(line)
        assert {"ts", "process", "level", "event"} <= obj.keys()
    model = read_log(path)
    assert model.skipped == 0
    (chart,) = select(model)
    assert sorted(chart.processes) == ["node0", "node1", "node2", "proposer P1", "proposer P2"]
    assert chart.decision is not None and chart.split is None
    delivered = sum(1 for d in sim.recorded.values() if d)
    assert sum(not m.lost for m in model.messages) >= delivered - len(sim.crashed) * 3 - 10
    assert any(m.kind == "crash" for m in chart.marks) == bool(sim.crashed)


# ---------------------------------------------------------------- the rules


@pytest.mark.parametrize("name", list(RULES))
def test_each_broken_rule_chooses_two_values_and_shrinks(lessons, name):
    lesson = lessons[name]
    assert lesson.broken.split == "k0"
    s = lesson.split
    assert s.first[0] != s.second[0]  # two values
    assert s.node in s.first[2] and s.node in s.second[2]  # the quorums' common node
    after, before = lesson.shrunk.after, lesson.shrunk.before
    assert after["delivered"] < before["delivered"] or before["delivered"] <= 18
    # Both quorums' Prepare, Promise, Accept and Accepted: at least 16 messages.
    assert 16 <= after["delivered"] <= 30
    if "crash" in RULES[name].faults:
        assert after["crashes"] >= 1
    assert f"Broken rule: {name}" in lesson.paragraph
    assert "the message that let it happen is the " in lesson.paragraph
    assert lesson.intact_safe == ""  # the same seed with the rule kept: safe
    assert lesson.intact.split is None and len({d.value for d in lesson.intact.decisions}) == 1


@pytest.mark.parametrize("name", ["lab-ballots", "ignores-accepted"])
def test_the_shrunk_schedule_is_one_minimal(lessons, name):
    """Losing any one more of its deliveries, the split goes away."""
    lesson = lessons[name]
    tape = lesson.shrunk.tape
    delivered = tape.delivered
    for m in delivered:
        smaller = tape.keeping(set(delivered) - {m}, set(tape.crashes))
        assert run(lesson.scenario, lesson.rule.variant, smaller).split is None, m


def test_lab_ballots_culprit_is_the_second_accept_at_the_same_ballot(lessons):
    lesson = lessons["lab-ballots"]
    s = find_split(lesson.broken)
    assert s is not None and s.first[1] == s.second[1]  # one ballot, two values
    assert s.culprit.startswith("ACCEPT 1.P ")


def test_each_paragraph_names_the_message_the_rule_should_have_stopped(lessons):
    # A proposer that ignores what it was told: the Promise that told it.
    s = lessons["ignores-accepted"].split
    assert s.culprit.startswith("PROMISE ") and " accepted " in s.culprit
    assert s.culprit_ids[0] == f"node{s.node}" and s.culprit_ids[1].startswith("proposer ")
    # An acceptor that forgot or ignored its promise: the Accept it took below it.
    for name in ("forgets-promise", "accepts-below-promise"):
        lesson = lessons[name]
        below = [w for _, w in lesson.broken.violations if "below the promise" in w]
        assert below and below[0].startswith(f"n{lesson.split.node} accepted ")
        assert lesson.split.culprit.startswith("ACCEPT ")
        assert lesson.split.culprit_ids[1] == f"node{lesson.split.node}"


# ---------------------------------------------------------------- the pictures


def test_lesson_chart_marks_both_decisions_and_both_quorums(lessons, tmp_path):
    from zpaxos.sim.lesson import draw_lesson

    files = draw_lesson(lessons["lab-ballots"], tmp_path / "lab.svg", "svg")
    root = ET.parse(files[-1]).getroot()
    decisions = root.findall(f".//{SVG}g[@class='decision']")
    assert sorted(d.get("data-value") for d in decisions) == ["v1", "v2"]
    heads = root.findall(f".//{SVG}rect")
    outlined = [(r.get("class"), r.get("data-process")) for r in heads
                if (r.get("class") or "").startswith("quorum-head")]
    s = lessons["lab-ballots"].split
    both = f"node{s.node}"
    assert ("quorum-head quorum-1", both) in outlined and ("quorum-head quorum-2", both) in outlined
    assert len(root.findall(f".//{SVG}line[@class='quorum-vote quorum-1']")) >= 2
    # The log beside it reads as a real log does, with the split found from it alone.
    (chart,) = charts_of(files[0])
    assert chart.split is not None and len(chart.decisions) == 2


def test_cli_break_draws_and_compares(capsys, tmp_path):
    out = tmp_path / "lab.svg"
    code, text, err = run_cli(capsys, "--break", "lab-ballots", "--compare", "--out", str(out))
    assert code == 0, err
    assert "rule lab-ballots: seed 0 chose two values" in text
    assert "the same seed with the rule intact: safe" in text
    doc = out.read_text()
    assert doc.count('<svg x="') == 2 and "rule kept" in doc
    assert (tmp_path / "lab.log").exists() and (tmp_path / "lab-intact.log").exists()


def test_cli_break_prints_the_text_chart(capsys):
    code, text, _ = run_cli(capsys, "--break", "accepts-below-promise")
    assert code == 0
    assert "TWO VALUES CHOSEN" in text and "in both quorums:" in text


def test_cli_many_schedules(capsys):
    code, text, _ = run_cli(capsys, "--seeds", "40", "--nodes", "5", "--proposers", "3")
    assert code == 0
    assert "40 schedules (5 nodes, 3 proposers, faults: crash, dup, loss, reorder)" in text
    assert "40 safe, 0 broke an invariant" in text
    assert "no node votes below a promise it sent" in text


def test_cli_one_seed_drawn_as_trace_would(capsys, tmp_path):
    out = tmp_path / "run.svg"
    code, text, _ = run_cli(capsys, "--seed", "5", "--faults", "loss", "--out", str(out))
    assert code == 0 and f"wrote svg chart to {out}" in text
    assert out.read_text().startswith("<svg")
    with pytest.raises(SystemExit) as e:
        main(["trace", str(tmp_path / "run.log"), "--out", str(tmp_path / "again.svg")])
    assert e.value.code == 0
    again = (tmp_path / "again.svg").read_text()
    assert again.count('class="arrow ') == out.read_text().count('class="arrow ') > 10


@pytest.mark.parametrize("args, message", [
    (["--break", "nosuch"], "'nosuch' is not a breakable rule (choose from lab-ballots,"),
    (["--faults", "fire"], "unknown fault 'fire'"),
    (["--out", "x.svg"], "--out and --compare need --seed or --break"),
    (["--seed", "1", "--out", "x.png"], "cannot tell the chart format"),
])
def test_cli_errors_are_one_line(capsys, args, message):
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("zpaxos sim: error: ") and message in err
    assert err.count("\n") == 1


def test_cli_lists_the_rules(capsys):
    code, out, _ = run_cli(capsys, "--rules")
    assert code == 0
    for name in ("lab-ballots", "forgets-promise", "accepts-below-promise", "ignores-accepted",
                 "sends-before-persisting"):
        assert out.count(f"{name}\n") == 1


def test_lessons_are_written_with_their_readme(tmp_path):
    from zpaxos.sim.lesson import write_lessons

    (lesson, files), = write_lessons(tmp_path, ["accepts-below-promise"])
    names = sorted(f.name for f in files)
    assert names == ["accepts-below-promise-intact.log", "accepts-below-promise.html",
                     "accepts-below-promise.log", "accepts-below-promise.svg",
                     "accepts-below-promise.txt"]
    readme = (tmp_path / "README.md").read_text()
    assert "## accepts-below-promise" in readme and lesson.paragraph in readme
    assert "TWO VALUES CHOSEN" in (tmp_path / "accepts-below-promise.txt").read_text()


def test_steps_show_a_forgotten_promise(lessons, tmp_path):
    """The step-through panel of forgets-promise: before the crash the node has promised
    a ballot; reloaded from its disk it has not (the simulator logs what it reloaded)."""
    from zpaxos.pictures.steps import steps
    from zpaxos.sim.lesson import draw_lesson

    lesson = lessons["forgets-promise"]
    log = draw_lesson(lesson, tmp_path / "f.txt", "text")[0]
    node = f"node{lesson.split.node}"
    data = steps(read_log(log), charts_of(log, delivered_only=True))["steps"]
    states = [s["nodes"][node] for s in data]
    back = next(i for i, st in enumerate(states) if st["status"].startswith("restarted"))
    assert any(st["promised"] != "-" for st in states[:back])  # it had promised
    assert states[back]["promised"] == "-"  # and forgot


def test_cli_break_that_finds_nothing_says_so(capsys):
    code, out, err = run_cli(capsys, "--break", "ignores-accepted", "--max-seeds", "1")
    assert code == 1 and out == ""
    assert err == ("zpaxos sim: error: no schedule from seed 0 on chose two values with"
                   " ignores-accepted broken (searched up to 1 seeds / 50 s)\n")
