"""How the simulators write what happened: ballots, values, messages, states, events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zpaxos.hosts.addresses import Caller
from zpaxos.protocol.columns import is_columns, rows
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.events import Event
from zpaxos.protocol.messages import Ballot
from zpaxos.protocol.registry import spec_of


def fb(b: Ballot) -> str:
    """A ballot as 'round.id', the id printed as text: '2.P1'."""
    return "0" if b.is_zero else f"{b.round}.{b.proposer.decode('ascii', 'backslashreplace')}"


def fv(v: bytes | None) -> str:
    return "-" if v is None else v.decode("utf-8", "backslashreplace")


def _fany(v: Any) -> str:
    if isinstance(v, Ballot):
        return fb(v)
    if v is None or isinstance(v, bytes):
        return fv(v)
    if isinstance(v, tuple):
        return "[" + ", ".join(":".join(map(_fany, x))
                               if isinstance(x, tuple) and not isinstance(x, Ballot)
                               else _fany(x) for x in v) + "]"
    return str(v) if v != "" else "-"


def fmsg(m: Any) -> str:
    """``Prepare(k0, 2.P1)``, ``Nack(k0, 1.P1, promised=2.P2)``: any message, from its
    registry declaration (the first two fields bare, the rest named); a column message
    as its rows, as the one-key messages they stand for."""
    if is_columns(m):
        return " ".join(map(fmsg, rows(m)))
    spec = spec_of(m)
    parts = [(name, _fany(getattr(m, name))) for name in spec.fields]
    shown = [v if i < 2 else f"{n}={v}" for i, (n, v) in enumerate(parts)]
    return f"{spec.cls.__name__}({', '.join(shown)})"


def fstate(s: KeyState) -> str:
    chosen = f" chosen={fv(s.chosen)}" if s.chosen is not None else ""
    return f"promised={fb(s.promised)} accepted={fb(s.accepted)}:{fv(s.value)}{chosen}"


def fevent(e: Event) -> str:
    def f(v: Any) -> str:
        if isinstance(v, Ballot):
            return fb(v)
        if isinstance(v, bytes):
            return fv(v)
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    fields = e.fields()
    fields.pop("key", None)
    return f"[{e.name} {' '.join(f'{k}={f(v)}' for k, v in fields.items())}]"


def fsends(sends: Iterable[tuple[Any, Any]]) -> str:
    groups: dict[Any, list[str]] = {}
    for dst, m in ((d, r) for d, x in sends for r in rows(x)):
        groups.setdefault(m, []).append(str(dst.ident.decode() if isinstance(dst, Caller)
                                            else f"n{dst}"))
    return "; ".join(f"{fmsg(m)} -> {','.join(dsts)}" for m, dsts in groups.items())


def who(x: Any) -> str:
    if isinstance(x, Caller):
        return x.ident.decode()
    return f"n{x}" if isinstance(x, int) else str(x)


def reply_to(dst: Any) -> Any:
    """Where a node's reply goes: a Caller's ident names a process or another node."""
    if isinstance(dst, Caller):
        name = dst.ident.decode()
        return int(name[1:]) if name[0] == "n" and name[1:].isdigit() else name
    return dst
