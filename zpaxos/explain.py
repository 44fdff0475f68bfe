"""Why a command failed, said one way by every command (propose, get, set, cas, delete).

A failure is what did not happen, why, and which nodes never answered:

    no value chosen for k1: no value chosen within the 5 s deadline; no reply from node1, node2
    no quorum on register cfg, nothing written: no quorum within the 2 s deadline; no reply from node1, node2
    cannot set: node0 refused our key; node1 refused our key; node2 refused our key

The rules' own reasons name acceptors ("rejected by acceptor 1"); people see nodes named
as everywhere else ("node1"). A refusal (CURVE) is known from the handshake, at once:
the commands say it then, not at their deadline (runtime.client.Refused).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Hashable, Iterable

from zpaxos.naming import as_node_name, node_name
from zpaxos.printable import printable
from zpaxos.runtime.curve import HANDSHAKE_CLOSED


def with_node_names(text: str) -> str:
    """The core says "acceptor 1"; people see nodes named as everywhere else ("node1")."""
    return re.sub(r"\bacceptor (\d+)\b", lambda m: node_name(int(m.group(1))), text)


def failure_line(what: str, reason: str, silent: Iterable[Hashable] = (),
                 connected: Collection[Hashable] = (), closed: Collection[Hashable] = (),
                 ) -> str:
    """``WHAT: REASON; no reply from node1, node2`` (``what`` is already printable).
    A silent node whose connection is up (``connected``) is running but did not answer:
    most likely not voting yet (a restarted node waiting for its peers), which
    ``zpaxos status`` shows. A silent node whose handshake was closed (``closed``) gets
    the hint of :data:`zpaxos.runtime.curve.HANDSHAKE_CLOSED`: down behind a proxy, or
    CURVE set up differently on the two sides."""
    silent = list(silent)
    down = [as_node_name(n) for n in silent if n not in connected]
    up = [as_node_name(n) for n in silent if n in connected]
    who = f"; no reply from {', '.join(down)}" if down else ""
    if up:
        who += (f"; {', '.join(up)} {'is' if len(up) == 1 else 'are'} up but did not answer "
                f"(not voting yet? see zpaxos status)")
    hinted = [as_node_name(n) for n in silent if n in closed and n not in connected]
    if hinted:
        who += f"; {', '.join(hinted)}: {HANDSHAKE_CLOSED}"
    return f"{what}: {printable(with_node_names(reason))}{printable(who)}"


def refused_line(verb: str, refusal: object) -> str:
    """``cannot VERB: node0 refused our key; ...``: too many nodes refused us (CURVE)."""
    return failure_line(f"cannot {verb}", str(refusal))
