"""``zpaxos status``'s table stays narrow: a long reason a node is unreachable (a CURVE
handshake failure explains itself in ~90 characters) goes below the table, not into the
REACHABLE column (issue 26, item 10)."""

from __future__ import annotations

import zmq

from zpaxos.pictures.statusview import status_table
from zpaxos.runtime.client import NodeStatus
from zpaxos.runtime.curve import HANDSHAKE_CLOSED, refusal


def test_a_long_refusal_goes_below_the_table():
    reasons = [refusal(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, True),
               refusal(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                       zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH, True),
               refusal(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                       zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH, False),
               HANDSHAKE_CLOSED]
    for why in reasons:
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
