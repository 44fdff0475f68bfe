"""Why a command failed, said one way by every command (propose, get, set, cas, delete).

A failure is what did not happen, why, and which nodes never answered:

    no value chosen for k1: no value chosen within the 5 s deadline; no reply from node1, node2
    no quorum on register cfg, nothing written: no quorum within the 2 s deadline; no reply
        from node1, node2   (one line; wrapped here)
    cannot set: node0 refused our key; node1 refused our key; node2 refused our key

The rules' own reasons name acceptors ("rejected by acceptor 1"); people see nodes named
as everywhere else ("node1"). A refusal (CURVE) is known from the handshake, at once:
the commands say it then, not at their deadline (runtime.client.Refused).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from zpaxos.naming import as_node_name, node_name
from zpaxos.printable import printable
from zpaxos.runtime.curve import HANDSHAKE_CLOSED


def with_node_names(text: str) -> str:
    """The core says "acceptor 1"; people see nodes named as everywhere else ("node1")."""
    return re.sub(r"\bacceptor (\d+)\b", lambda m: node_name(int(m.group(1))), text)


NOT_VOTING_CHECK_S = 0.5  # after a failure: how long to wait for the silent nodes' status


@dataclass(frozen=True)
class Reach:
    """What a client knows of the nodes that did not answer, to say why each was silent.

    ``connected``: its connection is up (the process runs); ``closed``: its last handshake
    was closed (down behind a proxy, or CURVE set up differently on the two sides);
    ``waiting``: it answered a status request but does not vote yet (a restarted node
    waiting for its peers to confirm it lost no state, as ``zpaxos status`` shows)."""

    connected: frozenset[int] = frozenset()
    closed: frozenset[int] = frozenset()
    waiting: frozenset[int] = frozenset()


def reach_of(client: Any, silent: Collection[Hashable]) -> Reach:
    """Ask ``client`` (a runtime.client.Client) what it knows of the ``silent`` nodes: its
    connections at once, and, when some node was silent, their status (up to
    NOT_VOTING_CHECK_S): "no reply" would send the user looking for a dead process where
    the node is up and only waiting to vote."""
    waiting: frozenset[int] = frozenset()
    if silent:
        from zpaxos.pictures.statusview import not_voting

        nodes = client.status(None, NOT_VOTING_CHECK_S)
        waiting = frozenset(n.id for n in not_voting(nodes) if n.id in silent)
    return Reach(frozenset(client.connected), frozenset(client.handshake_closed()), waiting)


def failure_line(what: str, reason: str, silent: Iterable[Hashable] = (),
                 reach: Reach = Reach()) -> str:
    """``WHAT: REASON; no reply from node1, node2`` (``what`` is already printable), each
    silent node said as what ``reach`` knows of it: up but not voting yet, up but silent,
    its handshake closed (with the hint), or simply no reply."""
    from zpaxos.pictures.statusview import NOT_VOTING_WHY

    silent = list(silent)
    waiting = [as_node_name(n) for n in silent if n in reach.waiting]
    up = [as_node_name(n) for n in silent if n in reach.connected and n not in reach.waiting]
    down = [n for n in silent if n not in reach.connected and n not in reach.waiting]
    who = f"; no reply from {', '.join(as_node_name(n) for n in down)}" if down else ""
    if waiting:
        who += (f"; {', '.join(waiting)} {'is' if len(waiting) == 1 else 'are'} up but not "
                f"voting yet ({NOT_VOTING_WHY})")
    if up:
        who += (f"; {', '.join(up)} {'is' if len(up) == 1 else 'are'} up but did not answer "
                f"(not voting yet? see zpaxos status)")
    hinted = [as_node_name(n) for n in down if n in reach.closed]
    if hinted:
        who += f"; {', '.join(hinted)}: {HANDSHAKE_CLOSED}"
    return f"{what}: {printable(with_node_names(reason))}{printable(who)}"


def refused_line(verb: str, refusal: object) -> str:
    """``cannot VERB: node0 refused our key; ...``: too many nodes refused us (CURVE)."""
    return failure_line(f"cannot {verb}", str(refusal))
