"""``zpaxos status`` output: a JSON document, or a table for people.

Every table cell goes through ``printable``: a value holding a newline stays in its row.
Values are shown as every command shows them (``value_text``), cut to VALUE_CHARS
characters with their size: a status reply carries whole values (up to 1 MiB each).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from zpaxos.naming import node_name
from zpaxos.printable import printable, value_text
from zpaxos.protocol.core import quorum_size
from zpaxos.protocol.messages import Ballot, KeyStatus
from zpaxos.protocol.regmessages import RegState, decode_state, register_of_slot
from zpaxos.runtime.client import NodeStatus
from zpaxos.runtime.log import show_value


def _ballot(b: Ballot) -> str | None:
    return None if b.is_zero else str(b)


def _register(k: KeyStatus) -> RegState | None:
    """A register's accepted state (its slot is "@name"), or None for a write-once key."""
    if register_of_slot(k.key) is None:
        return None
    return decode_state(k.value) if k.value is not None else RegState()


VALUE_CHARS = 20  # characters of a value the table shows (then '...' and its size)


def _reg_text(r: RegState) -> str:
    """``version 2: 'v2'``; absent: ``version 3: deleted`` (``version 0: never set``)."""
    if r.value is not None:
        return f"version {r.version}: {_value(r.value)}"
    return f"version {r.version}: {'deleted' if r.version else 'never set'}"


def _value(v: bytes | None) -> str:
    return "-" if v is None else value_text(v, VALUE_CHARS)


def status_json(nodes: Sequence[NodeStatus]) -> str:
    up = sum(n.reachable for n in nodes)
    return json.dumps({
        "reachable": up, "quorum": quorum_size(len(nodes)),
        "majority_reachable": up >= quorum_size(len(nodes)),
        "nodes": [
            {"id": n.id, "endpoint": n.endpoint, "reachable": n.reachable,
             "error": n.error or None, "counters": dict(n.stats),
             "truncated": n.truncated,
             "ranges": [{"prefix": p, "ballot": _ballot(b)} for p, b in n.ranges],
             "keys": {k.key: _key_json(k) for k in n.keys}}
            for n in nodes]})


def _key_json(k: KeyStatus) -> dict[str, object]:
    r = _register(k)
    if r is not None:  # a register: its version and value, not the encoded state
        return {"register": True, "promised": _ballot(k.promised),
                "accepted": _ballot(k.accepted), "version": r.version,
                "value": show_value(r.value)}
    return {"promised": _ballot(k.promised), "accepted": _ballot(k.accepted),
            "value": show_value(k.value), "chosen": show_value(k.chosen),
            "chosen_ballot": _ballot(k.chosen_ballot)}


REASON_CELL = 24  # a longer reason why a node is unreachable goes below the table


def _cell(v: bytes | str | None, width: int = 24) -> str:
    s = printable(v)
    return s if len(s) <= width else s[: width - 3] + "..."


def health(nodes: Sequence[NodeStatus]) -> str:
    """One line on how many nodes answered and what that means for choosing values."""
    up, n = sum(x.reachable for x in nodes), len(nodes)
    down = [node_name(x.id) for x in nodes if not x.reachable]
    if not down:
        return f"all {n} nodes reachable"
    if up >= quorum_size(n):
        return (f"unreachable: {', '.join(down)} ({up} of {n} reachable, a majority: values "
                f"can still be chosen)")
    return (f"unreachable: {', '.join(down)} ({up} of {n} reachable, no majority: nothing "
            f"can be chosen)")


def ranges_lines(nodes: Sequence[NodeStatus], listed: bool) -> list[str]:
    """How many range promises each node holds (zpaxos/protocol/ranges.py); ``listed``:
    each one too, as ``prefix* ballot``."""
    counts = [(n, dict(n.stats).get("ranges", 0)) for n in nodes if n.reachable]
    if not any(c for _, c in counts) and not listed:
        return []
    out = ["range promises: " + ", ".join(f"{node_name(n.id)} {c}" for n, c in counts)]
    if listed:
        for n, c in counts:
            out += [f"  {node_name(n.id)}  {printable(p)}*  {_ballot(b)}" for p, b in n.ranges]
            if c > len(n.ranges):
                out.append(f"  {node_name(n.id)}  ... ({c - len(n.ranges)} more)")
    return out


def status_table(nodes: Sequence[NodeStatus], key: str | None = None) -> str:
    """One row per node and key; an unreachable node is one loud row."""
    head = ("NODE", "ENDPOINT", "REACHABLE", "KEY", "PROMISED", "ACCEPTED", "VALUE", "CHOSEN")
    rows: list[tuple[str, ...]] = []
    below: list[str] = []  # reasons too long for the REACHABLE column
    for n in nodes:
        name = node_name(n.id)
        if not n.reachable:
            why = printable(n.error or "down?")
            if len(why) > REASON_CELL:  # a CURVE failure explains itself at length
                below.append(f"{name}: {why}")
                why = "see below"
            rows.append((name, n.endpoint, f"NO ({why})", "-", "-", "-", "-", "-"))
            continue
        if n.error:  # it answered, with a reply that could not be read
            rows.append((name, n.endpoint, "yes", f"({printable(n.error)})", "-", "-", "-", "-"))
            continue
        if not n.keys:
            rows.append((name, n.endpoint, "yes", f"(no state for {printable(key)})" if key
                         else "(no keys)",
                         "-", "-", "-", "-"))
        for k in n.keys:
            r = _register(k)
            value = _value(k.value) if r is None else _reg_text(r)
            chosen = _value(k.chosen) if r is None else "(register)"
            rows.append((name, n.endpoint, "yes", _cell(k.key, 32), _cell(_ballot(k.promised)),
                         _cell(_ballot(k.accepted)), value, chosen))
        if n.truncated:
            rows.append((name, n.endpoint, "yes", "... (more keys; use --key)", "", "", "", ""))
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in (head, *rows)]
    lines.append(health(nodes))
    lines.extend(below)
    noted = [f"{node_name(n.id)} dropped {c} {what}" for n in nodes
             for what, c in n.stats if c and what in ("malformed", "refused")]
    if noted:
        lines.append("counters: " + "; ".join(noted) + " (see the node's log)")
    waiting = [node_name(n.id) for n in not_voting(nodes)]
    if waiting:
        lines.append(f"not voting yet: {', '.join(waiting)} ({NOT_VOTING_WHY})")
    lines.extend(decided_lines(nodes))
    syncing = [node_name(n.id) for n in nodes
               if n.reachable and dict(n.stats).get("syncing", 0) and ("voting", 1) in n.stats]
    if syncing:
        lines.append(f"catching up: {', '.join(syncing)} (fetching from its peers the "
                     f"decisions it missed while down)")
    return "\n".join(lines)


def decided_lines(nodes: Sequence[NodeStatus]) -> list[str]:
    """Per node: the decided keys it knows, how far behind the most-informed reachable
    node it is, and when it last caught up with a peer (docs/catching-up.md)."""
    known = [(n, dict(n.stats)) for n in nodes if n.reachable and not n.error]
    known = [(n, st) for n, st in known if "decided" in st]
    if not known:
        return []
    best, top = max(known, key=lambda x: x[1]["decided"])
    out = ["decided keys known:"]
    for n, st in known:
        behind = top["decided"] - st["decided"]
        parts = [f"  {node_name(n.id)}  {st['decided']}",
                 f"{behind} behind {node_name(best.id)}" if behind else "up to date"]
        if "caught_up_ms_ago" in st:
            parts.append(f"last caught up {st['caught_up_ms_ago'] / 1000:.1f} s ago")
        elif "caught_up_keys" in st:
            parts.append("not caught up with any peer yet")
        if st.get("caught_up_keys"):
            parts.append(f"{st['caught_up_keys']} keys learned by catching up")
        out.append("; ".join(parts))
    return out


# Why a node that answers does not vote (hosts/admission.py): status and propose say it.
NOT_VOTING_WHY = ("waiting for its peers to confirm it lost no state, or learning every "
                  "decision after --new")


def not_voting(nodes: Sequence[NodeStatus]) -> list[NodeStatus]:
    """The nodes that answered but do not vote yet (their ``voting`` counter is 0)."""
    return [n for n in nodes if n.reachable and ("voting", 0) in n.stats]
