"""What a node remembers of its peers' incarnations, and what it knows of its own.

The local checks (:mod:`zpaxos.runtime.datadir`) cannot see a *whole* data directory
restored from an old copy (marker included), nor one deleted entirely: both look like a
healthy node, or a new one. Only the other nodes can tell, because they heard this node's
incarnation and commit count while it ran. So every node keeps, in ``peers.json`` next to
its database:

* for each peer: the incarnation it last accepted for that node, the highest commit
  count (``commit_seq``) it heard for it, and the incarnations it knows were retired by
  ``--new`` (so an old copy of a retired incarnation is not taken back);
* for itself (``self``): its node id, its incarnation, and whether that incarnation was
  started empty on purpose (``fresh``, by ``zpaxos node ID --new``).

The peers' part is only ever raised: a Hello (see :mod:`zpaxos.hosts.admission`) is judged
by :func:`judge` and remembered only when it is acceptable. The file is replaced
atomically (temporary file, fsync, rename, fsync of the directory) whenever it changes,
which is at most about once a second per peer.

``state.lost`` is written when peers refused this node: it makes every later start refuse
locally (exit 4) even with no peer reachable, and ``--new`` retires it with the state
files. ``peers.json`` is kept by ``--new``: it is this node's memory of the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zpaxos.hosts.verdicts import (  # (the pure rules, re-exported for their users)
    OK,
    REPLACED,
    RETIRED,
    ROLLED_BACK,
    STALE,
    VERDICTS,
    PeerRecord,
    judge,
    refusal_text,
)
from zpaxos.naming import node_name
from zpaxos.runtime.datadir import write_atomic
from zpaxos.runtime.storage_errors import REJOIN_DOCS, StateDamaged, StateLost, from_os_error

PEERS_NAME = "peers.json"
LOST_NAME = "state.lost"


@dataclass
class SelfRecord:
    node: int
    incarnation: bytes
    fresh: bool


def advice() -> str:
    return (f"it will not vote on state the cluster has seen it lose: put back this node's "
            f"own latest files if you still have them, else follow {REJOIN_DOCS} to rejoin "
            f"with --new")


# --------------------------------------------------------------------------- the file


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, data)
    except OSError as e:
        raise from_os_error(path, e, running=True) from None


class PeersFile:
    """``peers.json``: the self record and the peer records (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / PEERS_NAME
        self.me: SelfRecord | None = None
        self.peers: dict[int, PeerRecord] = {}

    def load(self) -> PeersFile:
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return self
        except OSError as e:
            raise from_os_error(self.path, e) from None
        try:
            doc = json.loads(text)
            me = doc["self"]
            self.me = None if me is None else SelfRecord(
                int(me["node"]), bytes.fromhex(me["incarnation"]), bool(me["fresh"]))
            self.peers = {int(n): PeerRecord(bytes.fromhex(r["incarnation"]),
                                             int(r["commit_seq"]),
                                             [bytes.fromhex(p) for p in r["past"]],
                                             bytes.fromhex(r.get("boot", "")))
                          for n, r in doc["peers"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise StateDamaged(
                f"{self.path}: damaged ({type(e).__name__}); the node's own state is not "
                f"in it: move it away and the node starts forgetting what it knew of its "
                f"peers (their restored or deleted data directories go unnoticed until "
                f"they are heard again)") from None
        return self

    def save(self) -> None:
        doc: dict[str, Any] = {
            "self": None if self.me is None else {
                "node": self.me.node, "incarnation": self.me.incarnation.hex(),
                "fresh": self.me.fresh},
            "peers": {str(n): {"incarnation": r.incarnation.hex(), "commit_seq": r.commit_seq,
                               "past": [p.hex() for p in r.past], "boot": r.boot.hex()}
                      for n, r in sorted(self.peers.items())},
        }
        _write_atomic(self.path, json.dumps(doc, indent=1).encode() + b"\n")


def adopt_self(peers: PeersFile, node_id: int, incarnation: bytes, commit_seq: int,
               new: bool) -> bool:
    """Check the state files against this node's own record and update it; returns
    whether this incarnation is ``fresh`` (started empty on purpose).

    Raises :class:`StateLost` when the record says these files are not this node's: the
    database, its write-ahead log and its marker were all replaced or deleted (which the
    marker alone cannot see), or the directory belongs to another node id."""
    me = peers.me
    if me is not None and me.node != node_id:
        raise StateLost(f"{peers.path.parent}: this data directory belongs to "
                        f"{node_name(me.node)}, not {node_name(node_id)}; give each node its "
                        f"own data_dir")
    if me is not None and me.incarnation == incarnation:
        return me.fresh
    if me is not None and not new:
        raise StateLost(f"{peers.path.parent}: replaced: this node was incarnation "
                        f"{me.incarnation[:4].hex()} but its state files now hold "
                        f"{incarnation[:4].hex()} ({commit_seq} commits): they were deleted "
                        f"or swapped, marker and all; {advice()}")
    # A first start (no record, or a data directory from before peers.json), or --new.
    fresh = new and commit_seq == 0
    peers.me = SelfRecord(node_id, incarnation, fresh)
    peers.save()
    return fresh


def write_lost(data_dir: Path, why: str) -> None:
    """Record that the peers refused this state (see the module docstring)."""
    _write_atomic(Path(data_dir) / LOST_NAME, why.encode() + b"\n")


def read_lost(data_dir: Path) -> str | None:
    path = Path(data_dir) / LOST_NAME
    try:
        return path.read_text(errors="replace").strip() or "state lost"
    except FileNotFoundError:
        return None
    except OSError as e:
        raise from_os_error(path, e) from None


__all__ = ["LOST_NAME", "OK", "PEERS_NAME", "REPLACED", "RETIRED", "ROLLED_BACK", "STALE",
           "VERDICTS", "PeerRecord", "PeersFile", "SelfRecord", "adopt_self", "judge", "read_lost",
           "refusal_text", "write_lost"]
