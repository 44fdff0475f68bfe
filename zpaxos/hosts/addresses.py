"""Who a message came from, or goes to, as the hosts see it (no sockets here).

* an ``int``: a node, reached through our own DEALER socket to it (a proposer's
  acceptors; a node's peers, whose replies to our sync requests come back that way);
* a :class:`Caller`: whoever reached our ROUTER socket (a proposer, a status client, a
  peer node's sync request); the reply goes back to its routing id.
"""

from __future__ import annotations

import msgspec


class Caller(msgspec.Struct, frozen=True, gc=False):
    ident: bytes
    # Who CURVE authenticated this connection as ("node:node1", "client:alice"); "" when
    # the cluster runs without CURVE (then nobody is authenticated).
    user: str = ""

    @property
    def is_node(self) -> bool:
        return self.user.startswith("node:")


Src = int | Caller
