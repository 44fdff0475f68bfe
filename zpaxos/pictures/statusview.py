"""``zpaxos status`` output: a JSON document, or a table for people."""

from __future__ import annotations

import json
from collections.abc import Sequence

from zpaxos.runtime.client import NodeStatus
from zpaxos.runtime.log import show_value


def _ballot(b) -> str | None:
    return None if b.is_zero else str(b)


def status_json(nodes: Sequence[NodeStatus]) -> str:
    return json.dumps({"nodes": [
        {"id": n.id, "endpoint": n.endpoint, "reachable": n.reachable, "truncated": n.truncated,
         "keys": {k.key: {"promised": _ballot(k.promised), "accepted": _ballot(k.accepted),
                          "value": show_value(k.value), "chosen": show_value(k.chosen)}
                  for k in n.keys}}
        for n in nodes]})


def _cell(s: str | None, width: int = 24) -> str:
    s = "-" if s is None else s
    return s if len(s) <= width else s[: width - 3] + "..."


def status_table(nodes: Sequence[NodeStatus], key: str | None = None) -> str:
    """One row per node and key; an unreachable node is one loud row."""
    head = ("NODE", "ENDPOINT", "REACHABLE", "KEY", "PROMISED", "ACCEPTED", "VALUE", "CHOSEN")
    rows: list[tuple[str, ...]] = []
    for n in nodes:
        name = f"node{n.id}"
        if not n.reachable:
            rows.append((name, n.endpoint, "NO (down?)", "-", "-", "-", "-", "-"))
            continue
        if not n.keys:
            rows.append((name, n.endpoint, "yes", f"(no state for {key})" if key else "(no keys)",
                         "-", "-", "-", "-"))
        for k in n.keys:
            rows.append((name, n.endpoint, "yes", _cell(k.key, 32), _cell(_ballot(k.promised)),
                         _cell(_ballot(k.accepted)), _cell(show_value(k.value)),
                         _cell(show_value(k.chosen))))
        if n.truncated:
            rows.append((name, n.endpoint, "yes", "... (more keys; use --key)", "", "", "", ""))
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in (head, *rows)]
    down = [f"node{n.id}" for n in nodes if not n.reachable]
    if down:
        lines.append(f"unreachable: {', '.join(down)}")
    return "\n".join(lines)
