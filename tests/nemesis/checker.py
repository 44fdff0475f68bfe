"""The nemesis checker: what Paxos promises, checked against the recorded history.

An operation is ``{key, value, start, end, chosen, via, proc}``; ``chosen`` None means
the proposer gave up or died (a timeout): its value is *maybe* chosen, never assumed
either way. The checks:

* agreement: every operation that reported a decision for a key reports the same value;
* validity: that value was proposed for that key by someone;
* durability: after healing and a full restart, every node's ``zpaxos status`` and its
  value file show, for every key, the value the operations reported (nothing reported
  chosen is lost; no node holds another value);
* the nodes' logs hold no ``conflict`` (a node told of a second value for a key).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any


def decisions(ops: list[dict]) -> tuple[dict[str, str], list[str]]:
    """The decided value per key, and agreement/validity violations."""
    proposed: dict[str, set[str]] = defaultdict(set)
    reported: dict[str, set[str]] = defaultdict(set)
    for op in ops:
        proposed[op["key"]].add(op["value"])
        if op["chosen"] is not None:
            reported[op["key"]].add(op["chosen"])
    violations, decided = [], {}
    for key, values in sorted(reported.items()):
        if len(values) > 1:
            violations.append(f"agreement: {key} reported chosen as {sorted(values)}")
        for v in values:
            if v not in proposed[key]:
                violations.append(f"validity: {key} chosen {v!r}, which nobody proposed")
        decided[key] = sorted(values)[0]
    return decided, violations


def final_state(decided: dict[str, str], keys: set[str], status: dict[str, Any],
                data_dirs: dict[int, Path]) -> tuple[list[str], list[str]]:
    """Violations and liveness problems in the healed cluster's status and value files."""
    violations: list[str] = []
    missing: list[str] = []
    for node in status["nodes"]:
        i = node["id"]
        if not node["reachable"]:
            missing.append(f"node{i} unreachable after the full restart")
            continue
        for key in sorted(keys):
            want = decided.get(key)
            if key not in node["keys"] and node.get("truncated"):
                # Past the status reply's page: the value file (a view of the node's
                # database, rebuilt from it at start-up) is the witness.
                vf = data_dirs[i] / f"{key}.txt"
                content = vf.read_text() if vf.is_file() else None
                if content is None:
                    missing.append(f"node{i} has no value file for {key} (past status page)")
                elif want is not None and content != want + "\n":
                    violations.append(f"durability: node{i} value file {key}={content!r}, "
                                      f"operations reported {want!r}")
                continue
            st = node["keys"].get(key) or {}
            have = st.get("chosen")
            if have is None:
                missing.append(f"node{i} does not know the decision for {key}")
            elif want is not None and have != want:
                violations.append(f"durability: node{i} has {key}={have!r}, "
                                  f"operations reported {want!r}")
            vf = data_dirs[i] / f"{key}.txt"
            if have is not None:
                content = vf.read_text() if vf.is_file() else None
                if content != have + "\n":
                    missing.append(f"node{i} value file {vf.name} is {content!r}, "
                                   f"status says {have!r}")
    return violations, missing


def cross_node(status: dict[str, Any]) -> list[str]:
    """No two nodes report different chosen values for a key."""
    seen: dict[str, tuple[int, str]] = {}
    out = []
    for node in status["nodes"]:
        for key, st in node.get("keys", {}).items():
            c = st.get("chosen")
            if c is None:
                continue
            if key in seen and seen[key][1] != c:
                out.append(f"agreement: node{seen[key][0]} has {key}={seen[key][1]!r}, "
                           f"node{node['id']} has {c!r}")
            seen.setdefault(key, (node["id"], c))
    return out


def unavailability(ops: list[dict], faults: list[dict], t_end: float) -> dict[str, dict]:
    """Per fault kind: the longest gap between successful decisions from the fault's start
    until the next fault starts (the fault, its healing and the recovery after it)."""
    ok = sorted(op["end"] for op in ops if op["chosen"] is not None and op["via"] != "repair")
    per_kind: dict[str, list[float]] = defaultdict(list)
    for n, f in enumerate(faults):
        if not f.get("wired", True):
            continue  # scheduled, but nothing was done: not a fault's window
        t0 = f["started"]
        t1 = faults[n + 1]["started"] if n + 1 < len(faults) else t_end
        gap, last = 0.0, t0
        for t in ok:
            if t < t0:
                continue
            if t > t1:
                break
            gap = max(gap, t - last)
            last = t
        gap = max(gap, t1 - last)
        f["unavailable_s"] = round(gap, 2)
        per_kind[f["kind"]].append(gap)
    return {k: {"count": len(v), "max_gap_s": round(max(v), 2),
                "mean_gap_s": round(sum(v) / len(v), 2)} for k, v in sorted(per_kind.items())}
