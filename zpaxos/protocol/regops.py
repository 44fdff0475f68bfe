"""Register operations: what a client asks of a register and what it gets back (pure data).

A change ``f`` (:meth:`RegOp.apply`) is what a CASPaxos round applies to the register's
current state; the rules that run the round are in :mod:`zpaxos.protocol.register`.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from zpaxos.protocol.messages import RegState
from zpaxos.protocol.pacing import ProposerOptions

__all__ = ["CAS", "CAS_FAILED", "CAS_VALUE", "DELETE", "GET", "NO_QUORUM", "OK", "SET",
           "UNKNOWN", "RegOp", "RegResult", "RegisterOptions"]


GET, SET, CAS, CAS_VALUE, DELETE = "get", "set", "cas", "cas_value", "delete"
OK, CAS_FAILED, NO_QUORUM, UNKNOWN = "ok", "cas_failed", "no_quorum", "unknown"


@dataclass(frozen=True, slots=True)
class RegOp:
    """One operation on a register. ``op_id`` is unique per operation (the host makes it)."""

    kind: str
    value: bytes | None = None  # set, cas, cas_value: the new value
    expect_version: int = 0  # cas: change only at this version (0: never written)
    expect_value: bytes | None = None  # cas_value: only if the value is this (None: absent)
    op_id: bytes = b""

    @property
    def mutates(self) -> bool:
        return self.kind != GET

    def apply(self, s: RegState) -> tuple[RegState, bool]:
        """``f``: the new state, and False when a compare-and-set's comparison failed."""
        if self.kind == GET:
            return s, True
        if self.kind == SET:
            return s.changed(self.value, self.op_id), True
        if self.kind == DELETE:
            return (s.changed(None, self.op_id) if s.exists else s), True
        if self.kind == CAS:
            ok = s.version == self.expect_version
        elif self.kind == CAS_VALUE:
            ok = s.value == self.expect_value
        else:
            raise ValueError(f"unknown register operation {self.kind!r}")
        return (s.changed(self.value, self.op_id) if ok else s), ok


@dataclass(frozen=True, slots=True)
class RegResult:
    """How an operation ended. ``status``: OK (``version``/``value``: the register after
    the operation, the read state for a get), CAS_FAILED (the comparison failed; the
    register's current state), NO_QUORUM (not done: nothing was written) or UNKNOWN (no
    quorum in time after a change was sent: it may or may not take effect)."""

    key: str
    kind: str
    status: str
    version: int = 0
    value: bytes | None = None
    rounds: int = 0
    fast: bool = False  # finished on the 1-RTT path
    reason: str = ""
    # Acceptors that never answered this operation (as Outcome.silent for a proposal):
    # what a failure names, beside its reason.
    silent: tuple[Hashable, ...] = ()


class RegisterOptions(ProposerOptions, frozen=True):
    """A proposer's pacing, the 1-RTT path and quorum reads (registers only)."""

    one_rtt: bool = True
    quorum_reads: bool = True  # a get first tries a read that writes nothing (register.py)
    # A quorum read asks only a quorum of acceptors first, and the others only when those
    # do not agree or are slow (READ_WIDEN_S): fewer questions and answers per read.
    read_quorum_first: bool = False
