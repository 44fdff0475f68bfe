"""The watch checker (lincheck.check_watch) accepts a good watch and catches bad ones."""

from __future__ import annotations

from zpaxos.sim.lincheck import Op, Seen, check_watch

H = [Op("w", "k", "set", 1.0, 1.1, version=1, value=b"a", arg=b"a"),
     Op("w", "k", "set", 2.0, 2.1, version=2, value=b"b", arg=b"b"),
     Op("w", "k", "set", 3.0, 3.1, version=3, value=b"c", arg=b"c")]


def test_a_good_watch_passes() -> None:
    assert check_watch(H, [Seen(0.5, 0, None), Seen(1.2, 1, b"a"), Seen(3.2, 3, b"c", (2, 2))],
                       "k") == (True, "")
    assert check_watch(H, [Seen(3.2, 3, b"c", (2, 2))], "k", from_version=2)[0]


def test_bad_watches_are_caught() -> None:
    assert "after version" in check_watch(H, [Seen(2.2, 2, b"b"), Seen(2.3, 1, b"a")], "k")[1]
    assert "skipped" in check_watch(H, [Seen(1.2, 1, b"a"), Seen(3.2, 3, b"c")], "k")[1]
    assert "written" in check_watch(H, [Seen(1.2, 1, b"x")], "k")[1]
    assert "before its write" in check_watch(H, [Seen(0.9, 1, b"a")], "k")[1]
    assert "never written" in check_watch(H, [Seen(5.0, 4, b"d")], "k")[1]
