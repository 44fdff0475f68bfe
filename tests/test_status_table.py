"""``zpaxos status``'s table stays narrow: a long reason a node is unreachable (a CURVE
handshake failure explains itself in ~90 characters) goes below the table, not into the
REACHABLE column (issue 26, item 10)."""

from __future__ import annotations

from zpaxos.pictures.statusview import status_table
from zpaxos.runtime.client import NodeStatus
from zpaxos.runtime.curve import _FAILURES, _PLAINTEXT_FAILURE


def test_a_long_refusal_goes_below_the_table():
    for why in [*_FAILURES.values(), _PLAINTEXT_FAILURE]:
        nodes = [NodeStatus(0, "tcp://127.0.0.1:5001", True),
                 NodeStatus(1, "tcp://127.0.0.1:5002", False, error=why),
                 NodeStatus(2, "tcp://127.0.0.1:5003", False)]
        lines = status_table(nodes).splitlines()
        head, rows = lines[0], lines[1:4]
        column = head.index("KEY") - head.index("REACHABLE")  # its width and the gap
        assert column <= len("NO ()") + 24 + 2, lines
        assert rows[1].split()[:2] + rows[1].split()[2:3] == ["node1", "tcp://127.0.0.1:5002",
                                                               "NO"]
        assert ("NO (see below)" in rows[1]) == (len(why) > 24)
        assert "NO (down?)" in rows[2]
        if len(why) > 24:
            assert lines[-1] == f"node1: {why}"
        else:
            assert f"NO ({why})" in rows[1]
