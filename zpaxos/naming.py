"""How processes are named in logs, charts and messages: declared once, parsed once.

Nodes are ``node0``, ``node1``...; a proposer process is ``proposer 3f2a`` (the first two
bytes of its 16-byte client id, in hex). Everything that builds or reads such a name goes
through these functions, so the spelling lives in exactly one place.
"""

from __future__ import annotations

import re

NODE_PREFIX = "node"
PROPOSER_PREFIX = "proposer "
_NODE = re.compile(r"^node(\d{1,5})$")


def node_name(node_id: int) -> str:
    """``node_name(2) == "node2"``."""
    return f"{NODE_PREFIX}{node_id}"


def node_id_of(name: object) -> int | None:
    """The id in a node's name ("node2" -> 2), or None for anything else."""
    if not isinstance(name, str):
        return None
    m = _NODE.match(name)
    return int(m.group(1)) if m else None


def proposer_name(client_id: bytes) -> str:
    """How a proposer process is named in logs and charts: 'proposer 3f2a'."""
    return f"{PROPOSER_PREFIX}{client_id[:2].hex()}"


def is_proposer(name: str) -> bool:
    return name.startswith(PROPOSER_PREFIX)


def is_node(name: str) -> bool:
    return node_id_of(name) is not None


def as_node_name(x: object) -> str:
    """A node named as people see it, whether given as an id (2) or a name ("node2")."""
    return node_name(x) if isinstance(x, int) and not isinstance(x, bool) else str(x)
