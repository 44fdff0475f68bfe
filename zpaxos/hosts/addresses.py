"""Who a message came from, or goes to, as the hosts see it (no sockets here).

* an ``int``: a node, reached through our own DEALER socket to it (a proposer's
  acceptors; a node's peers, whose replies to our sync requests come back that way);
* a :class:`Caller`: whoever reached our ROUTER socket (a proposer, a status client, a
  peer node's sync request); the reply goes back to its routing id.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Caller:
    ident: bytes
    # Who CURVE authenticated this connection as ("node:node1", "client:alice"); "" when
    # the cluster runs without CURVE (then nobody is authenticated).
    user: str = ""
    # The membership epoch the caller's frame carried (0: it did not say). Not part of
    # who the caller is: a reply goes to the same routing id whatever the epoch.
    epoch: int = field(default=0, compare=False)

    @property
    def is_node(self) -> bool:
        return self.user.startswith("node:")


Src = int | Caller
