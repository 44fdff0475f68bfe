"""A peer's verdict on a node that says hello: the pure rules of admission.

A node tells its peers which incarnation of its state it is and how many commits it has
made; each peer judges that against what it remembers of the node (:func:`judge`), and a
refused node must not vote (:func:`refusal_text` says why, in one clause). Pure: no file,
no clock. What a node remembers is kept in ``peers.json`` by :mod:`zpaxos.runtime.peers`;
the protocol around the verdict is :mod:`zpaxos.hosts.admission`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zpaxos.naming import node_name

MAX_PAST = 32  # retired incarnations remembered per peer

# A peer's verdict on a Hello.
OK, ROLLED_BACK, REPLACED, RETIRED = 0, 1, 2, 3
VERDICTS = {OK: "ok", ROLLED_BACK: "rolled back", REPLACED: "replaced", RETIRED: "retired"}
STALE = -1  # a delayed or duplicated Hello of a process already heard further: no answer


@dataclass
class PeerRecord:
    incarnation: bytes
    commit_seq: int
    past: list[bytes] = field(default_factory=list)
    boot: bytes = b""  # the process that reported commit_seq


def judge(rec: PeerRecord | None, incarnation: bytes, commit_seq: int,
          fresh: bool, boot: bytes = b"") -> tuple[int, PeerRecord | None]:
    """A peer's verdict on a node that says it is ``incarnation`` at ``commit_seq``, and
    the record to remember afterwards (None: keep the old one). Pure.

    * never heard of it: OK (a new node, or one this peer never met), remembered;
    * the same incarnation at fewer commits than already heard: from the same process
      (``boot``), a Hello that was delayed or duplicated on the way (STALE: ignored); from
      another process, ROLLED_BACK (its whole data directory is an older copy);
    * an incarnation this peer saw retired by ``--new``: RETIRED (an old copy is back);
    * another incarnation: OK only if it says it was started empty on purpose (``fresh``,
      ``--new``), and then the old one is retired; else REPLACED (its state was deleted
      or swapped, marker and all, and it started as if new).
    """
    if rec is None:
        return OK, PeerRecord(incarnation, commit_seq, [], boot)
    if incarnation == rec.incarnation:
        if commit_seq < rec.commit_seq:
            return (STALE if boot and boot == rec.boot else ROLLED_BACK), None
        if commit_seq == rec.commit_seq and boot == rec.boot:
            return OK, None
        return OK, PeerRecord(incarnation, commit_seq, rec.past, boot)
    if incarnation in rec.past:
        return RETIRED, None
    if not fresh:
        return REPLACED, None
    return OK, PeerRecord(incarnation, commit_seq, [*rec.past, rec.incarnation][-MAX_PAST:],
                          boot)


def refusal_text(verdict: int, peer: int, me: int, known: bytes, known_seq: int,
                 mine: bytes, seq: int) -> str:
    """Why ``peer``'s verdict means this node must not vote, in one clause."""
    who, inc = node_name(peer), mine[:4].hex()
    if verdict == ROLLED_BACK:
        return (f"rolled back: {who} has seen this incarnation ({inc}) at {known_seq} "
                f"commits, but this data directory holds {seq} (it was restored from an "
                f"older copy)")
    if verdict == RETIRED:
        return (f"retired: {who} knows this incarnation ({inc}) was replaced by --new "
                f"(an old copy of this data directory was restored)")
    return (f"replaced: {who} knows {node_name(me)} as incarnation {known[:4].hex()} "
            f"({known_seq} commits), but this data directory holds another one ({inc}): "
            f"its state was deleted or swapped, marker and all")


__all__ = ["MAX_PAST", "OK", "REPLACED", "RETIRED", "ROLLED_BACK", "STALE", "VERDICTS",
           "PeerRecord", "judge", "refusal_text"]
