"""Who a message came from, or goes to, as the hosts see it (no sockets here).

* an ``int``: a node, reached through our own DEALER socket to it (a proposer's
  acceptors; a node's peers, whose replies to our sync requests come back that way);
* a :class:`Caller`: whoever reached our ROUTER socket (a proposer, a status client, a
  peer node's sync request); the reply goes back to its routing id.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    ident: bytes


Src = int | Caller
