"""The membership lessons (zpaxos/sim/memberlesson.py, ``zpaxos sim --break
one-step-reconfig``): found, shrunk, explained, drawn beside the safe plan."""

from __future__ import annotations

import pytest

from zpaxos.cli import main
from zpaxos.pictures.chartmodel import select
from zpaxos.pictures.logmodel import read_log
from zpaxos.sim.memberlesson import (
    MEMBER_RULES,
    NotFound,
    break_membership,
    draw_member_lesson,
    write_member_lessons,
)

ONE_STEP_SEED = 1851  # the first seed whose calm schedule splits in one step (3 -> 4)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(["sim", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(e.value.code or 0), out, err


@pytest.fixture(scope="module")
def one_step():
    return break_membership("one-step-reconfig", start=ONE_STEP_SEED)


def test_one_step_from_three_to_four_chooses_two_values_and_shrinks(one_step) -> None:
    lesson = one_step
    assert lesson.seed == ONE_STEP_SEED and lesson.key == "k0"
    assert len(lesson.scenario.ops) <= 3 < lesson.ops_before
    assert lesson.broken.violation.startswith("two values chosen for k0")
    # The paragraph names the quorum that chose and the phase 1 that missed it.
    assert ("c0v0 was chosen for k0 by node1 and node3 at ballot 1.c0 (epoch 1); then the"
            " phase 1 of ballot 2.c2 (epoch 2) heard node2 and node4 -- no node in both"
            in lesson.paragraph)
    # The same operations through the safe plan: one value, every invariant kept.
    assert lesson.intact.violation == ""
    assert {c for c in lesson.intact.chosen() if c.startswith("k0=")} == {"k0=c0v0"}
    assert len(lesson.intact.run.configs) == 3  # two steps: accept side, then prepare side


def test_the_lesson_log_draws_both_decisions(one_step, tmp_path) -> None:
    files = draw_member_lesson(one_step, tmp_path / "one.txt", "text")
    (chart,) = select(read_log(files[0]), key="k0")
    assert [d.value for d in chart.decisions] == ["c0v0", "c2v0"]
    assert "node4" in chart.processes


def test_cli_break_compares_with_the_safe_plan(capsys, tmp_path) -> None:
    out = tmp_path / "one.svg"
    code, text, err = run_cli(capsys, "--break", "one-step-reconfig", "--seed",
                              str(ONE_STEP_SEED), "--compare", "--out", str(out))
    assert code == 0, err
    assert f"rule one-step-reconfig: seed {ONE_STEP_SEED} chose two values for k0" in text
    assert "the same operations through the safe plan: safe" in text
    doc = out.read_text()
    assert doc.count('<svg x="') == 2 and "the safe plan, same operations" in doc
    assert (tmp_path / "one.log").exists() and (tmp_path / "one-intact.log").exists()


def test_cli_lists_and_refuses_membership_rules(capsys) -> None:
    code, out, _ = run_cli(capsys, "--rules")
    assert code == 0
    for name in MEMBER_RULES:
        assert out.count(f"{name} (membership)\n") == 1
    code, out, err = run_cli(capsys, "--break", "nosuch")
    assert code == 2 and "one-step-reconfig" in err and err.count("\n") == 1


def test_a_search_that_finds_nothing_says_so(capsys) -> None:
    with pytest.raises(NotFound, match="searched up to 1 seeds"):
        break_membership("one-step-reconfig", 0, 1)
    code, out, err = run_cli(capsys, "--break", "removed-while-needed", "--max-seeds", "1")
    assert code == 1 and out == ""
    assert err == ("zpaxos sim: error: no schedule from seed 0 on chose two values with"
                   " removed-while-needed broken (searched up to 1 seeds / 50 s)\n")


def test_member_lessons_join_the_lessons_readme(tmp_path) -> None:
    (tmp_path / "README.md").write_text("# Lessons\n")
    (lesson, files), = write_member_lessons(tmp_path, ["removed-while-needed"])
    assert sorted(f.name for f in files) == [
        "removed-while-needed-intact.log", "removed-while-needed.html",
        "removed-while-needed.log", "removed-while-needed.svg", "removed-while-needed.txt"]
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# Lessons\n") and "## removed-while-needed (membership)" in readme
    assert lesson.paragraph in readme
    assert "step" in (tmp_path / "removed-while-needed.html").read_text()
