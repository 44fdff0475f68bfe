"""Who a message came from, or goes to, as the hosts see it (no sockets here).

* an ``int``: a node, reached through our own DEALER socket to it (a proposer's
  acceptors; a node's peers, whose replies to our sync requests come back that way);
* a :class:`Caller`: whoever reached our ROUTER socket (a proposer, a status client, a
  peer node's sync request); the reply goes back to its routing id.
"""

from __future__ import annotations


class Caller:
    """Whoever reached our ROUTER socket: its routing id ``ident``; ``user``, who CURVE
    authenticated the connection as ("node:node1", "client:alice"; "" without CURVE);
    ``epoch``, the membership epoch its frame carried (0: it did not say). The epoch is
    not part of who the caller is: a reply goes to the same routing id whatever the
    epoch, so equality and hash leave it out (which is why this is a plain class: a
    msgspec Struct compares every field, and a dataclass costs its import on the
    propose path)."""

    __slots__ = ("epoch", "ident", "user")

    def __init__(self, ident: bytes, user: str = "", epoch: int = 0) -> None:
        self.ident = ident
        self.user = user
        self.epoch = epoch

    def __eq__(self, other: object) -> bool:
        return (type(other) is Caller and other.ident == self.ident
                and other.user == self.user)

    def __hash__(self) -> int:
        return hash((self.ident, self.user))

    def __repr__(self) -> str:
        return f"Caller(ident={self.ident!r}, user={self.user!r}, epoch={self.epoch})"

    @property
    def is_node(self) -> bool:
        return self.user.startswith("node:")


Src = int | Caller
