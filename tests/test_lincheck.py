"""The linearizability checker on hand-made histories, linearizable and not."""

from __future__ import annotations

from zpaxos.sim.lincheck import CAS_FAILED, UNKNOWN, Op, check, check_key


def op(p: str, kind: str, call: float, ret: float | None, version: int = 0,
       value: bytes | None = None, status: str = "ok", key: str = "r", **kw: object) -> Op:
    return Op(p, key, kind, call, ret, status, version, value, **kw)  # type: ignore[arg-type]


def test_sequential_history_is_linearizable() -> None:
    h = [op("a", "set", 0, 1, 1, b"x", arg=b"x"),
         op("a", "get", 2, 3, 1, b"x"),
         op("a", "cas", 4, 5, 2, b"y", arg=b"y", expect_version=1),
         op("a", "delete", 6, 7, 3, None),
         op("a", "get", 8, 9, 3, None),
         op("a", "delete", 10, 11, 3, None)]
    assert check(h) == (True, "")


def test_stale_read_after_a_write_returned_is_caught() -> None:
    h = [op("a", "set", 0, 1, 1, b"x", arg=b"x"),
         op("b", "get", 2, 3, 0, None)]  # the write had returned: the read must see it
    ok, why = check(h)
    assert not ok and "no linearization" in why


def test_concurrent_read_may_see_either() -> None:
    for seen in [(0, None), (1, b"x")]:
        h = [op("a", "set", 0, 5, 1, b"x", arg=b"x"), op("b", "get", 1, 2, *seen)]
        assert check(h)[0]


def test_reads_must_not_go_back_in_time() -> None:
    # Two reads during a write: the first sees the new value, the later one the old.
    h = [op("a", "set", 0, 10, 1, b"x", arg=b"x"),
         op("b", "get", 1, 2, 1, b"x"),
         op("c", "get", 3, 4, 0, None)]
    assert not check(h)[0]


def test_two_cas_on_one_version_cannot_both_win() -> None:
    both = [op("a", "cas", 0, 2, 1, b"A", arg=b"A", expect_version=0),
            op("b", "cas", 1, 3, 1, b"B", arg=b"B", expect_version=0)]
    assert not check(both)[0]
    one = [both[0], op("b", "cas", 1, 3, 1, b"A", status=CAS_FAILED, arg=b"B",
                       expect_version=0)]
    assert check(one)[0]


def test_failed_cas_must_report_the_state() -> None:
    h = [op("a", "set", 0, 1, 1, b"x", arg=b"x"),
         op("b", "cas", 2, 3, 0, None, status=CAS_FAILED, arg=b"B", expect_version=0)]
    assert not check(h)[0]  # it reported version 0 after version 1 was written
    h[1] = op("b", "cas", 2, 3, 1, b"x", status=CAS_FAILED, arg=b"B", expect_version=0)
    assert check(h)[0]


def test_cas_on_value() -> None:
    h = [op("a", "set", 0, 1, 1, b"x", arg=b"x"),
         op("a", "cas_value", 2, 3, 2, b"y", arg=b"y", expect_value=b"x"),
         op("b", "cas_value", 4, 5, 2, b"y", status=CAS_FAILED, arg=b"z", expect_value=b"x")]
    assert check(h)[0]
    bad = h[:2] + [op("b", "cas_value", 4, 5, 3, b"z", arg=b"z", expect_value=b"x")]
    assert not check(bad)[0]


def test_unknown_write_may_take_effect_late_or_never() -> None:
    unknown = op("a", "set", 0, None, status=UNKNOWN, arg=b"x")
    assert check([unknown, op("b", "get", 5, 6, 0, None)])[0]  # never
    assert check([unknown, op("b", "get", 5, 6, 0, None),
                  op("b", "get", 7, 8, 1, b"x")])[0]  # later
    # But not un-happen: once seen, it stays.
    assert not check([unknown, op("b", "get", 5, 6, 1, b"x"),
                      op("b", "get", 7, 8, 0, None)])[0]


def test_versions_count_every_change() -> None:
    h = [op("a", "set", 0, 1, 1, b"x", arg=b"x"), op("b", "set", 2, 3, 1, b"y", arg=b"y")]
    assert not check(h)[0]  # two writes, one after the other, cannot both be version 1


def test_keys_are_independent() -> None:
    h = [op("a", "set", 0, 1, 1, b"x", key="k1", arg=b"x"),
         op("b", "get", 2, 3, 0, None, key="k2")]
    assert check(h)[0]


def test_many_concurrent_operations_finish_quickly() -> None:
    # 12 writers all concurrent, then a read: 12! orders without memoization.
    h = [op(f"p{i}", "set", 0, 100, i + 1, bytes([65 + i]), arg=bytes([65 + i]))
         for i in range(12)]
    h.append(op("r", "get", 101, 102, 12, bytes([65 + 11])))
    assert check_key(h, max_steps=200_000)[0]
