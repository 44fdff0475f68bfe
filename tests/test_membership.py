"""The membership rules (zpaxos/protocol/membership.py): quorum checks, safe steps, plans."""

from __future__ import annotations

import itertools

import pytest

from zpaxos.protocol.membership import (
    MAX_MEMBERS,
    Config,
    Member,
    check_step,
    layout,
    plan_add,
    plan_remove,
    plan_replace,
    quorums_meet,
)


def members(n: int) -> list[Member]:
    return [Member(i, "127.0.0.1", 7000 + i) for i in range(1, n + 1)]


NEW = Member(9, "127.0.0.1", 7009)


def meet_by_brute_force(p: tuple[int, ...], pq: int, a: tuple[int, ...], aq: int) -> bool:
    return all(set(x) & set(y) for x in itertools.combinations(p, pq)
               for y in itertools.combinations(a, aq))


@pytest.mark.parametrize("n", range(1, 6))
def test_quorums_meet_agrees_with_every_pair_of_quorums(n: int) -> None:
    ids = tuple(range(n))
    for pn in range(1, n + 1):
        for an in range(1, n + 1):
            for off in range(0, n - min(pn, an) + 1):
                p, a = ids[:pn], ids[off:off + an]
                for pq in range(1, pn + 1):
                    for aq in range(1, len(a) + 1):
                        assert quorums_meet(p, pq, a, aq) == meet_by_brute_force(p, pq, a, aq)


def test_layout_majority_for_phase_two_and_the_least_that_meets_it_for_phase_one() -> None:
    assert [layout(n) for n in range(1, 8)] == [
        (1, 1), (1, 2), (2, 2), (2, 3), (3, 3), (3, 4), (4, 4)]


def test_prepare_ok_and_accept_ok_count_only_their_side() -> None:
    cfg = Config(2, tuple(members(4)), (1, 2, 3), 2, (1, 2, 3, 4), 3)
    assert cfg.problem() is None
    assert cfg.prepare_ok([1, 2]) and not cfg.prepare_ok([1, 4]) and not cfg.prepare_ok([4])
    assert cfg.accept_ok([1, 2, 4]) and not cfg.accept_ok([1, 4]) and not cfg.accept_ok([1, 9, 8])


def test_initial_is_epoch_one_with_everyone_voting() -> None:
    cfg = Config.initial(reversed(members(3)))
    assert (cfg.epoch, cfg.prepare, cfg.accept, cfg.prepare_quorum, cfg.accept_quorum) == (
        1, (1, 2, 3), (1, 2, 3), 2, 2)
    with pytest.raises(ValueError, match="1 to 15"):
        Config.initial(Member(i, "h", i) for i in range(MAX_MEMBERS + 1))
    with pytest.raises(ValueError, match="share one address"):
        Config.initial([Member(1, "h", 1), Member(2, "h", 1)])


@pytest.mark.parametrize(("cfg", "why"), [
    (Config(1, tuple(members(3)), (1, 2, 3), 1, (1, 2, 3), 2), "can miss"),
    (Config(1, tuple(members(3)), (1, 2, 3), 2, (1, 2), 2), "must be an accept member"),
    (Config(1, tuple(members(3)), (1, 2, 9), 2, (1, 2, 9), 2), "not a member"),
    (Config(1, tuple(members(3)), (1, 2, 3), 4, (1, 2, 3), 2), "outside 1..3"),
    (Config(0, tuple(members(3)), (1, 2, 3), 2, (1, 2, 3), 2), "below 1"),
])
def test_a_configuration_that_cannot_work_says_why(cfg: Config, why: str) -> None:
    problem = cfg.problem()
    assert problem is not None and why in problem


def test_one_step_from_three_to_four_is_refused_with_the_quorums_that_miss() -> None:
    old = Config.initial(members(3))
    pq, aq = layout(4)
    new = Config(2, tuple(members(3)) + (NEW,), (1, 2, 3, 9), pq, (1, 2, 3, 9), aq)
    why = check_step(old, new)
    assert why is not None and "phase 1 before it received phase 2" in why
    # Even a node already on the accept side may not vote with quorums that can miss.
    grown = Config(2, new.members, (1, 2, 3), 2, (1, 2, 3, 9), 3)
    assert check_step(old, grown) is None
    bad = Config(2, new.members, (1, 2, 3), 2, (1, 2, 3, 9), 2)
    why = check_step(old, bad)
    assert why is not None and "can miss" in why


@pytest.mark.parametrize(("new", "why"), [
    (Config(3, tuple(members(3)), (1, 2, 3), 2, (1, 2, 3), 2), "does not follow"),
    (Config(2, tuple(members(5)), (1, 2, 3), 2, (1, 2, 3, 4, 5), 4), "2 nodes at once"),
    (Config(2, tuple(members(3)), (1,), 1, (1, 2, 3), 3), "prepare changes by 2"),
    (Config(2, tuple(members(3)), (1, 2), 1, (1, 2, 3), 2), "can miss"),
    # Each fine on its own, but not after epoch 1: phase 1 lowered before phase 2 grew...
    (Config(2, tuple(members(3)), (1, 2, 3), 1, (1, 2, 3), 3),
     "a prepare quorum of epoch 2 (1 of [1, 2, 3]) can miss an accept quorum of epoch 1"),
    # ... and phase 2 lowered while the old phase 1 may still run.
    (Config(2, tuple(members(2)), (1, 2), 2, (1, 2), 1),
     "a prepare quorum of epoch 1 (2 of [1, 2, 3]) can miss an accept quorum of epoch 2"),
])
def test_unsafe_steps_are_refused_with_a_reason(new: Config, why: str) -> None:
    reason = check_step(Config.initial(members(3)), new)
    assert reason is not None and why in reason, reason


def assert_plan(start: Config, steps: list, final_ids: set[int]) -> None:  # type: ignore[type-arg]
    prev = start
    for step in steps:
        assert check_step(prev, step.config) is None, (prev.describe(), step.config.describe())
        joined = set(step.config.prepare) - set(prev.prepare)
        assert set(step.needs_caught_up) == joined
        assert step.why
        prev = step.config
    pq, aq = layout(len(final_ids))
    assert set(prev.ids) == set(prev.prepare) == set(prev.accept) == final_ids
    assert (prev.prepare_quorum, prev.accept_quorum) == (pq, aq)


@pytest.mark.parametrize("n", range(1, 8))
def test_plans_for_add_remove_replace_pass_check_step_at_every_step(n: int) -> None:
    cfg = Config.initial(members(n))
    ids = set(cfg.ids)
    assert_plan(cfg, plan_add(cfg, NEW), ids | {9})
    assert_plan(cfg, plan_replace(cfg, 1, NEW), (ids - {1}) | {9})
    if n > 1:
        assert_plan(cfg, plan_remove(cfg, 1), ids - {1})
        back = Member(1, "127.0.0.1", 7101)
        steps = plan_replace(cfg, 1, back)
        assert_plan(cfg, steps, ids)
        # The same id comes back only after it left both sides: its old votes are gone.
        assert any(1 not in s.config.accept for s in steps)
        assert steps[-1].config.member(1) == back


def test_adding_grows_the_accept_side_first_then_the_prepare_side_once_caught_up() -> None:
    steps = plan_add(Config.initial(members(3)), NEW)
    assert [(s.config.prepare, s.config.prepare_quorum, s.config.accept,
             s.config.accept_quorum, set(s.needs_caught_up)) for s in steps] == [
        ((1, 2, 3), 2, (1, 2, 3, 9), 3, set()),
        ((1, 2, 3, 9), 2, (1, 2, 3, 9), 3, {9}),
    ]
    assert [s.config.epoch for s in steps] == [2, 3]


def test_removing_never_waits_for_the_removed_node() -> None:
    for n in range(3, 8):  # (of two members, each is needed already)
        cfg = Config.initial(members(n))
        for s in plan_remove(cfg, 1):
            c = s.config
            rest_p, rest_a = set(c.prepare) - {1}, set(c.accept) - {1}
            assert c.prepare_quorum <= len(rest_p) and c.accept_quorum <= len(rest_a)


def test_plans_refuse_impossible_changes() -> None:
    cfg = Config.initial(members(3))
    with pytest.raises(ValueError, match="already a member"):
        plan_add(cfg, Member(2, "h", 1))
    with pytest.raises(ValueError, match="not a member"):
        plan_remove(cfg, 9)
    with pytest.raises(ValueError, match="last member"):
        plan_remove(Config.initial(members(1)), 1)
    full = Config.initial(Member(i, "h", i) for i in range(MAX_MEMBERS))
    with pytest.raises(ValueError, match="at most 15"):
        plan_add(full, Member(99, "h", 99))
