"""A linearizability checker for registers (get, set, compare-and-set, delete).

In the style of Knossos and Porcupine: Wing & Gong's search for a linearization, with
Lowe's memoization ("Testing for linearizability", 2017): a configuration already seen,
the same set of operations linearized leading to the same register state, is never
explored twice. Registers are independent, so a history is checked one key at a time
(linearizability is compositional: P-compositionality in Porcupine's terms).

An operation is a call and a return in real time. One whose outcome is unknown (the
client gave up after a change may have reached some acceptors; or the client process
died) has no return: it may take effect at any point after its call, or never.

The model register is ``(version, value)``, starting at ``(0, None)``; ``value`` None is
absent (never set, or deleted). ``set`` makes the next version; ``delete`` of a present
value makes the next version with None, of an absent one changes nothing; ``cas``
compares the version, ``cas_value`` the value, and either changes like ``set`` or fails
and reports the current state; ``get`` reports the current state.

    ok, why = check(history)   # history: a list of Op
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

INF = float("inf")
OK, CAS_FAILED, UNKNOWN = "ok", "cas_failed", "unknown"
State = tuple[int, bytes | None]
INITIAL: State = (0, None)


@dataclass(frozen=True)
class Op:
    process: Hashable
    key: str
    kind: str  # get, set, cas, cas_value, delete
    call: float
    ret: float | None  # None: outcome unknown
    status: str = OK  # ok, cas_failed or unknown
    version: int = 0  # what the operation returned (ok / cas_failed)
    value: bytes | None = None
    arg: bytes | None = None  # the new value (set, cas, cas_value)
    expect_version: int = 0
    expect_value: bytes | None = None

    def __str__(self) -> str:
        ret = "?" if self.ret is None else f"{self.ret:.4f}"
        args = {"set": f"({self.arg!r})", "delete": "()", "get": "()",
                "cas": f"(v{self.expect_version} -> {self.arg!r})",
                "cas_value": f"({self.expect_value!r} -> {self.arg!r})"}[self.kind]
        out = "" if self.status == UNKNOWN else f" = {self.status} v{self.version} {self.value!r}"
        return (f"[{self.call:.4f}, {ret}] {self.process} {self.key}.{self.kind}{args}{out}")


def step(s: State, op: Op) -> State | None:
    """The state after ``op`` at ``s``, or None when ``op``'s result contradicts ``s``."""
    version, value = s
    k = op.kind
    if k == "get":
        return s if op.status == UNKNOWN or (op.version, op.value) == s else None
    if k == "set":
        change = True
    elif k == "delete":
        if value is None:
            return s if op.status == UNKNOWN or op.version == version else None
        change = True
    elif k == "cas":
        change = version == op.expect_version
    elif k == "cas_value":
        change = value == op.expect_value
    else:
        raise ValueError(f"unknown operation {k!r}")
    new: State = (version + 1, None if k == "delete" else op.arg)
    if op.status == UNKNOWN:
        return new if change else s
    if op.status == CAS_FAILED:
        return s if not change and (op.version, op.value) == s else None
    return new if change and op.version == version + 1 else None


class _Entry:
    __slots__ = ("op", "index", "is_call", "match", "prev", "next")

    def __init__(self, op: Op, index: int, is_call: bool) -> None:
        self.op, self.index, self.is_call = op, index, is_call
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _lift(e: _Entry) -> None:
    """Take a call and its return out of the list (they stay linked, to put back)."""
    assert e.prev is not None and e.match is not None and e.match.prev is not None
    e.prev.next = e.next
    if e.next is not None:
        e.next.prev = e.prev
    r = e.match
    assert r.prev is not None
    r.prev.next = r.next
    if r.next is not None:
        r.next.prev = r.prev


def _unlift(e: _Entry) -> None:
    r = e.match
    assert r is not None and r.prev is not None and e.prev is not None
    r.prev.next = r
    if r.next is not None:
        r.next.prev = r
    e.prev.next = e
    if e.next is not None:
        e.next.prev = e


def check_key(ops: list[Op], initial: State = INITIAL, max_steps: int = 5_000_000
              ) -> tuple[bool, str]:
    """Is this one register's history linearizable? ``(True, "")`` or ``(False, why)``."""
    ops = [o for o in ops if not (o.kind == "get" and o.status == UNKNOWN)]  # no effect
    if not ops:
        return True, ""
    events: list[tuple[float, int, int, bool]] = []
    for i, o in enumerate(ops):
        events.append((o.call, 1, i, True))
        # A return sorts before a call at the same instant: it happened first.
        events.append((INF if o.ret is None else o.ret, 0, i, False))
    events.sort()
    head = _Entry(ops[0], -1, False)
    calls: dict[int, _Entry] = {}
    prev = head
    for _, _, i, is_call in events:
        e = _Entry(ops[i], i, is_call)
        if is_call:
            calls[i] = e
        else:
            calls[i].match = e
        e.prev, prev.next = prev, e
        prev = e
    must = 0
    for i, o in enumerate(ops):
        if o.ret is not None:
            must |= 1 << i
    state = initial
    linearized = 0
    cache: set[tuple[int, State]] = set()
    stack: list[tuple[_Entry, State]] = []
    best = 0
    entry = head.next
    steps = 0
    while True:
        if linearized & must == must:
            return True, ""
        steps += 1
        if steps > max_steps:
            raise RuntimeError(f"search too long ({max_steps} steps) for key {ops[0].key}")
        assert entry is not None
        if entry.is_call:
            new = step(state, entry.op)
            if new is not None:
                lin = linearized | (1 << entry.index)
                if (lin, new) not in cache:
                    cache.add((lin, new))
                    stack.append((entry, state))
                    state, linearized = new, lin
                    best = max(best, len(stack))
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if not stack:
                return False, _explain(ops, best)
            entry, state = stack.pop()
            linearized &= ~(1 << entry.index)
            _unlift(entry)
            entry = entry.next


def _explain(ops: list[Op], best: int) -> str:
    shown = "\n  ".join(str(o) for o in sorted(ops, key=lambda o: o.call)[:40])
    return (f"key {ops[0].key}: no linearization of {len(ops)} operations "
            f"(the longest linearizable prefix found had {best}); the history:\n  {shown}")


def check(history: Iterable[Op]) -> tuple[bool, str]:
    """Check every key's history; the first violation's explanation."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for o in history:
        by_key[o.key].append(o)
    for key in sorted(by_key):
        ok, why = check_key(by_key[key])
        if not ok:
            return False, why
    return True, ""
