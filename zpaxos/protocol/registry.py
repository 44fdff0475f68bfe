"""The message registry: every message type declared once, everything else derived.

A declaration (:class:`Spec`) says, for one message class:

* its wire ``tag`` and its ``fields`` in wire order, each with a :class:`Kind` that
  encodes it, decodes and checks it, and shows it in a log;
* its ``direction`` (to an acceptor, to a proposer, or runtime plumbing between
  processes), which also fixes its log level;
* which fields the log records (``logged``), and how a chart labels and colours it.

The codec (:mod:`zpaxos.runtime.codec`), the event log, the log model and the charts all
read this table; a test walks it and round-trips every type through each of them. So a
new message type is one ``Spec`` here plus its handler.

Decoding is strict: any garbage raises :class:`DecodeError`, and its text never formats
the offending value itself (a hostile, deeply nested value must not cost more than its
type name to describe).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from zpaxos.protocol.messages import (
    KEY_MAX_LEN,
    PROPOSER_ID_BYTES,
    ZERO,
    Accept,
    Accepted,
    AcceptedAt,
    Ballot,
    CatchUp,
    CatchUpReply,
    CheckAccepted,
    Decide,
    Fetch,
    FetchReply,
    Hello,
    HelloReply,
    KeyStatus,
    Nack,
    Prepare,
    Promise,
    RangeNack,
    RangePrepare,
    RangePromise,
    RegistersReply,
    RegistersRequest,
    StatusReply,
    StatusRequest,
    SyncReply,
    SyncRequest,
    key_problem,
)
from zpaxos.protocol.regmessages import (
    OP_ID_MAX_BYTES,
    RECENT_OPS,
    REGISTER_PREFIX,
    STATE_OVERHEAD_BYTES,
    RAccept,
    RAccepted,
    RegState,
    RNack,
    RPrepare,
    RPromise,
)

MAX_VALUE_BYTES = 1 << 20  # 1 MiB per value
# A status entry's accepted value is what the acceptor holds: for a register's slot, its
# encoded state, a value of up to MAX_VALUE_BYTES and the state's own fields.
MAX_SLOT_BYTES = MAX_VALUE_BYTES + STATE_OVERHEAD_BYTES
MAX_ROUND = (1 << 63) - 1  # fits SQLite's signed 64-bit integers
MAX_ENTRIES = 100_000  # entries in one status or sync page
MAX_NAMES = 1000  # register names in one RegistersReply
MAX_RANGE_ENTRIES = 4096  # range promises in one status reply (ranges.MAX_RANGES)
MAX_LEARN_ENTRIES = 4096  # keys in one catch-up page, and asked for in one Fetch
MAX_BUSY = 1024  # keys a RangePromise names as not fresh (more: two phases for the range)

# Directions: a Paxos message goes to acceptors, to proposers or (Decide) both ways;
# runtime messages (status, sync) are plumbing between processes, not Paxos.
TO_ACCEPTOR, TO_PROPOSER, BOTH, RUNTIME = "to_acceptor", "to_proposer", "both", "runtime"


# Why a frame was malformed, in a few words a metric can carry as a label (the error's
# text says more, and is unbounded): the frame as a whole, then each message in it.
TOO_LARGE, FRAME_COUNT, UNKNOWN_PROTOCOL, NOT_MSGPACK = (
    "too_large", "frame_count", "unknown_protocol", "not_msgpack")
BAD_ENVELOPE, UNKNOWN_TYPE, BAD_FIELDS = "bad_envelope", "unknown_type", "bad_fields"
MALFORMED_REASONS = (TOO_LARGE, FRAME_COUNT, UNKNOWN_PROTOCOL, NOT_MSGPACK, BAD_ENVELOPE,
                     UNKNOWN_TYPE, BAD_FIELDS)


class DecodeError(Exception):
    """A peer sent something that is not a valid zpaxos message (the peer's fault).
    ``reason``: one of MALFORMED_REASONS (a field that fails its check, unless said)."""

    def __init__(self, text: str, reason: str = BAD_FIELDS) -> None:
        super().__init__(text)
        self.reason = reason


def describe(x: Any) -> str:
    """A bounded description of a received value for an error message: never its repr,
    which could be huge or deeply nested."""
    if x is None or type(x) in (bool, int, float):
        text = repr(x)
        return text if len(text) <= 24 else text[:24] + "..."
    size = f" of {len(x)}" if isinstance(x, (bytes, str, list, dict, tuple)) else ""
    return f"{type(x).__name__}{size}"


# --------------------------------------------------------------------------- field kinds


class Kind:
    """How one field travels: ``enc`` to a msgpack-able value, ``dec`` back (checked),
    ``show`` for a log line."""

    name = "?"

    def enc(self, v: Any) -> Any:
        return v

    def dec(self, x: Any, what: str) -> Any:
        raise NotImplementedError

    def show(self, v: Any) -> Any:
        return v


# Every valid key matches this (key_problem says why one does not): one C call per key.
_VALID_KEY = re.compile(f"[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{KEY_MAX_LEN - 1}}}").fullmatch


class _Key(Kind):
    name = "key"

    def dec(self, x: Any, what: str) -> str:
        if type(x) is str and _VALID_KEY(x):
            return x
        if type(x) is not str:
            raise DecodeError(f"{what}: expected text, got {describe(x)}")
        problem = key_problem(x)
        if problem:
            raise DecodeError(f"{what}: {problem}")
        return x


class _OptKey(Kind):
    """A key, or None ("every key")."""

    name = "key or none"

    def dec(self, x: Any, what: str) -> str | None:
        return None if x is None else KEY.dec(x, what)


class _After(_Key):
    """A key to page after, or "" for the first page."""

    name = "key or empty"

    def dec(self, x: Any, what: str) -> str:
        return "" if x == "" else super().dec(x, what)


class _Value(Kind):
    name = "value"

    def __init__(self, limit: int = MAX_VALUE_BYTES) -> None:
        self.limit = limit

    def dec(self, x: Any, what: str) -> bytes:
        if type(x) is not bytes:
            raise DecodeError(f"{what}: expected bytes, got {describe(x)}")
        if len(x) > self.limit:
            raise DecodeError(f"{what}: {len(x)} bytes is over the {self.limit}-byte limit")
        return x


class _OptValue(Kind):
    name = "value or none"

    def __init__(self, limit: int = MAX_VALUE_BYTES) -> None:
        self.value = _Value(limit)

    def dec(self, x: Any, what: str) -> bytes | None:
        return None if x is None else self.value.dec(x, what)


class _Bool(Kind):
    name = "bool"

    def dec(self, x: Any, what: str) -> bool:
        if type(x) is not bool:
            raise DecodeError(f"{what}: expected true/false, got {describe(x)}")
        return x


class _Int(Kind):
    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def dec(self, x: Any, what: str) -> int:
        if type(x) is not int or not self.lo <= x <= self.hi:
            raise DecodeError(f"{what}: expected an integer in [{self.lo}, {self.hi}], "
                              f"got {describe(x)}")
        return x


_ballot = partial(tuple.__new__, Ballot)  # Ballot((round, proposer)) minus a Python call


class _Ballot(Kind):
    """``[round, proposer id]``; ZERO is ``[0, b""]``."""

    name = "ballot"

    def dec(self, x: Any, what: str) -> Ballot:
        if type(x) is list and len(x) == 2:  # the common case, checked in one go
            r, p = x
            if (type(r) is int and type(p) is bytes and 0 < r <= MAX_ROUND
                    and 0 < len(p) <= 2 * PROPOSER_ID_BYTES):
                return _ballot((r, p))
            if r == 0 and p == b"" and type(r) is int and type(p) is bytes:
                return ZERO  # "accepted nothing": the other common case
        return self._slow(x, what)

    def _slow(self, x: Any, what: str) -> Ballot:
        """ZERO, or the reason ``x`` is no ballot."""
        if type(x) is not list or len(x) != 2:
            raise DecodeError(f"{what}: expected [round, proposer], got {describe(x)}")
        r, p = x
        if type(r) is not int or not 0 <= r <= MAX_ROUND:
            raise DecodeError(f"{what} round: expected an integer in [0, {MAX_ROUND}], "
                              f"got {describe(r)}")
        if type(p) is not bytes:
            raise DecodeError(f"{what} proposer: expected bytes, got {describe(p)}")
        if r == 0 and not p:
            return ZERO
        if r == 0 or not 1 <= len(p) <= 2 * PROPOSER_ID_BYTES:
            raise DecodeError(f"{what}: not a valid ballot (round {r}, {len(p)}-byte id)")
        return Ballot(r, p)

    def show(self, b: Ballot) -> str:
        return str(b)


class _RealBallot(_Ballot):
    """A ballot someone proposes: never ZERO."""

    def dec(self, x: Any, what: str) -> Ballot:
        if type(x) is list and len(x) == 2:  # the common case, as _Ballot's (no super call)
            r, p = x
            if (type(r) is int and type(p) is bytes and 0 < r <= MAX_ROUND
                    and 0 < len(p) <= 2 * PROPOSER_ID_BYTES):
                return _ballot((r, p))
        b = self._slow(x, what)
        if b is ZERO:
            raise DecodeError(f"{what}: the zero ballot cannot be proposed")
        return b


class _Record(Kind):
    """A fixed-length list of kinds, built into ``build(*values)`` (a status entry...)."""

    def __init__(self, name: str, kinds: Sequence[tuple[str, Kind]],
                 build: Callable[..., Any], split: Callable[[Any], Sequence[Any]]) -> None:
        self.name = name
        self.kinds = tuple(kinds)
        self.build = build
        self.split = split

    def enc(self, v: Any) -> list[Any]:
        return [k.enc(x) for (_, k), x in zip(self.kinds, self.split(v), strict=True)]

    def dec(self, x: Any, what: str) -> Any:
        if type(x) is not list or len(x) != len(self.kinds):
            raise DecodeError(f"{what}: expected a {self.name} of {len(self.kinds)} fields, "
                              f"got {describe(x)}")
        return self.build(*(k.dec(v, f"{what} {n}") for (n, k), v in zip(self.kinds, x,
                                                                          strict=True)))


class _ListOf(Kind):
    def __init__(self, item: Kind, max_len: int = MAX_ENTRIES) -> None:
        self.item, self.max_len = item, max_len

    def enc(self, v: Sequence[Any]) -> list[Any]:
        return [self.item.enc(x) for x in v]

    def dec(self, x: Any, what: str) -> tuple[Any, ...]:
        if type(x) is not list or len(x) > self.max_len:
            raise DecodeError(f"{what}: expected a list of at most {self.max_len}, "
                              f"got {describe(x)}")
        return tuple(self.item.dec(v, what) for v in x)

    def show(self, v: Sequence[Any]) -> int:
        return len(v)  # logs count entries; they never dump a page


def nests(kind: Kind) -> bool:
    """Whether a field holds lists of records (its nesting is checked before decoding)."""
    return isinstance(kind, (_ListOf, _Record, _RegState))


class _Name(Kind):
    """A short ASCII name (a counter's)."""

    name = "name"

    def dec(self, x: Any, what: str) -> str:
        if type(x) is not str or not 0 < len(x) <= 32 or not x.isascii():
            raise DecodeError(f"{what}: expected a name of 1-32 ASCII characters, "
                              f"got {describe(x)}")
        return x


class _Token(Kind):
    """Random bytes of one of the given lengths: a database's incarnation id (16 bytes,
    or empty for "none known"), a process's boot id (8)."""

    def __init__(self, name: str, sizes: tuple[int, ...]) -> None:
        self.name, self.sizes = name, sizes

    def dec(self, x: Any, what: str) -> bytes:
        if type(x) is not bytes or len(x) not in self.sizes:
            raise DecodeError(f"{what}: expected {' or '.join(map(str, self.sizes))} bytes, "
                              f"got {describe(x)}")
        return x

    def show(self, v: bytes) -> str:
        return v[:4].hex()


class _StatusKey(_Key):
    """A key in a status entry: a write-once key, or a register's slot ("@name")."""

    name = "key or @register"

    def dec(self, x: Any, what: str) -> str:
        if type(x) is str and x.startswith(REGISTER_PREFIX):
            return REGISTER_PREFIX + super().dec(x[1:], what)
        return super().dec(x, what)


class _OptStatusKey(Kind):
    """A status request's key: a write-once key, a register's slot, or None (all)."""

    name = "key, @register or none"

    def dec(self, x: Any, what: str) -> str | None:
        return None if x is None else STATUS_KEY.dec(x, what)


# A page's keys, packed: keys and @slots joined by a newline (no key may hold one), checked
# by one regular expression and split in one call, not decoded one object at a time.
_KEY_RE = f"@?[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{KEY_MAX_LEN - 1}}}"
_VALID_PACKED = re.compile(f"{_KEY_RE}(?:\n{_KEY_RE})*").fullmatch
PACK_SEP = "\n"


class _PackedKeys(Kind):
    """Up to ``max_len`` keys (or @slots), sent as one text: ``"a\\nb\\n@r"``; "" is none."""

    name = "packed keys"

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.max_chars = max_len * (KEY_MAX_LEN + 2)

    def enc(self, v: Sequence[str]) -> str:
        return PACK_SEP.join(v)

    def dec(self, x: Any, what: str) -> tuple[str, ...]:
        if type(x) is not str or len(x) > self.max_chars:
            raise DecodeError(f"{what}: expected packed keys of at most {self.max_chars} "
                              f"characters, got {describe(x)}")
        if not x:
            return ()
        if not _VALID_PACKED(x):
            raise DecodeError(f"{what}: not keys joined by newlines")
        keys = tuple(x.split(PACK_SEP))
        if len(keys) > self.max_len:
            raise DecodeError(f"{what}: more than {self.max_len} keys")
        return keys

    def show(self, v: Sequence[str]) -> int:
        return len(v)


class _RegState(Kind):
    """A register state: ``[version, value or none, [[op id, version], ...]]``."""

    name = "register state"

    def enc(self, s: RegState) -> list[Any]:
        return [s.version, s.value, [[op, v] for op, v in s.recent]]

    def dec(self, x: Any, what: str) -> RegState:
        if type(x) is not list or len(x) != 3:
            raise DecodeError(f"{what}: expected [version, value, recent], got {describe(x)}")
        version = VERSION.dec(x[0], f"{what} version")
        value = OPT_VALUE.dec(x[1], f"{what} value")
        recent = x[2]
        if type(recent) is not list or len(recent) > RECENT_OPS:
            raise DecodeError(f"{what} recent: expected a list of at most {RECENT_OPS}, "
                              f"got {describe(recent)}")
        ops = []
        for e in recent:
            if (type(e) is not list or len(e) != 2 or type(e[0]) is not bytes
                    or not 0 < len(e[0]) <= OP_ID_MAX_BYTES):
                raise DecodeError(f"{what} recent: expected [op id, version], got {describe(e)}")
            ops.append((e[0], VERSION.dec(e[1], f"{what} recent version")))
        return RegState(version, value, tuple(ops))

    def show(self, s: RegState) -> str:
        shown = "absent" if s.value is None else s.value.decode("utf-8", "backslashreplace")
        return f"v{s.version}={shown[:40]}"


KEY, OPT_KEY, AFTER = _Key(), _OptKey(), _After()
STATUS_KEY, OPT_STATUS_KEY = _StatusKey(), _OptStatusKey()
VALUE, OPT_VALUE, BOOL = _Value(), _OptValue(), _Bool()
OPT_SLOT_VALUE = _OptValue(MAX_SLOT_BYTES)  # an acceptor's value: a register's is its state
BALLOT, REAL_BALLOT = _Ballot(), _RealBallot()
NODE_ID = _Int(0, 65535)
INCARNATION = _Token("incarnation", (0, 16))
BOOT = _Token("boot id", (8,))


VERSION = _Int(0, MAX_ROUND)
REG_STATE = _RegState()

KEY_STATUS = _Record(
    "status entry",
    [("key", STATUS_KEY), ("promised", BALLOT), ("accepted", BALLOT),
     ("value", OPT_SLOT_VALUE), ("chosen", OPT_VALUE), ("chosen ballot", BALLOT)],
    KeyStatus,
    lambda k: (k.key, k.promised, k.accepted, k.value, k.chosen, k.chosen_ballot),
)
COUNTER = _Record("counter", [("name", _Name()), ("count", _Int(0, MAX_ROUND))],
                  lambda n, c: (n, c), lambda e: e)
RANGE_ENTRY = _Record("range promise", [("prefix", KEY), ("ballot", REAL_BALLOT)],
                      lambda p, b: (p, b), lambda e: e)
SYNC_ENTRY = _Record("sync entry", [("key", KEY), ("value", VALUE), ("ballot", BALLOT)],
                     lambda k, v, b: (k, v, b), lambda e: e)

# Catching up (runtime/catchup.py): pages of keys, then the values fetched.
SLOT_ENTRY = _Record("slot entry", [("slot", STATUS_KEY), ("ballot", BALLOT)],
                     lambda k, b: (k, b), lambda e: e)
KNOWN_ENTRY = _Record("known entry", [("key", STATUS_KEY), ("value", _Value(MAX_SLOT_BYTES)),
                                      ("ballot", BALLOT)], lambda k, v, b: (k, v, b),
                      lambda e: e)


# --------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Part:
    """One piece of a chart label. ``word`` parts connect (``accepted``, ``promised``): a
    renderer short of room uses ``short``, then drops them; the others (type, ballots,
    value) stay."""

    text: str
    word: bool = False
    short: str = ""
    glue: str = " "  # what joins it to the part before


@dataclass(frozen=True)
class ChartStyle:
    """How a chart draws a message: line colour, text colour, SVG dash pattern."""

    line: str
    ink: str
    dash: str = ""


@dataclass(frozen=True)
class Spec:
    cls: type
    tag: bytes
    fields: tuple[tuple[str, Kind], ...]
    direction: str
    logged: tuple[str, ...]  # fields recorded in the log (and so available to charts)
    parts: Callable[[Mapping[str, Any]], list[Part]]  # chart label, from the logged fields
    style: ChartStyle
    check: Callable[[Any], str | None] = lambda m: None  # a cross-field rule, or None
    drawn: bool = True  # charts draw it (status traffic is not part of a run's story)

    @property
    def type_name(self) -> str:
        return self.tag.decode()

    @property
    def paxos(self) -> bool:
        return self.direction != RUNTIME


def _b(v: Any) -> str:
    return "?" if v is None else str(v)


def _promise_check(m: Promise) -> str | None:
    if (m.value is None) != m.accepted.is_zero:
        return "an accepted ballot and its value go together"
    return None


def _simple(*names: str) -> Callable[[Mapping[str, Any]], list[Part]]:
    """A label of the type name and some fields' values: ``ACCEPT 2.b7 Value_A``."""
    def parts(f: Mapping[str, Any]) -> list[Part]:
        return [Part(str(f.get("type", "?")))] + [Part(_b(f.get(n))) for n in names]
    return parts


def _promise_parts(f: Mapping[str, Any]) -> list[Part]:
    parts = [Part("PROMISE"), Part(_b(f.get("ballot")))]
    if "accepted" in f:
        parts += [Part("accepted", True, "acc."), Part(_b(f["accepted"])),
                  Part(str(f.get("value")), glue="=")]
    return parts


def _nack_parts(f: Mapping[str, Any]) -> list[Part]:
    return [Part(str(f.get("type", "NACK"))), Part(_b(f.get("ballot"))),
            Part("promised", True, "prom."), Part(_b(f.get("promised")))]


def _decide_parts(f: Mapping[str, Any]) -> list[Part]:
    parts = [Part("DECIDE"), Part(str(f.get("value")))]
    if f.get("ballot") not in (None, "0", "0.0"):
        parts += [Part("chosen at", True, "@"), Part(_b(f["ballot"]))]
    return parts


def _rpromise_check(m: RPromise) -> str | None:
    if m.accepted.is_zero and m.state != RegState():
        return "a register state comes with the ballot that accepted it"
    return None


def _rpromise_parts(f: Mapping[str, Any]) -> list[Part]:
    parts = [Part("RPROMISE"), Part(_b(f.get("ballot")))]
    if "accepted" in f:
        parts += [Part("accepted", True, "acc."), Part(_b(f["accepted"])),
                  Part(str(f.get("state")), glue="=")]
    return parts


def _raccept_parts(f: Mapping[str, Any]) -> list[Part]:
    parts = [Part(str(f.get("type", "RACCEPT"))), Part(_b(f.get("ballot")))]
    if "state" in f:
        parts.append(Part(str(f["state"])))
    if f.get("next") not in (None, "0"):
        parts += [Part("+next", True, "+"), Part(_b(f["next"]))]
    return parts


def _sync_reply_parts(f: Mapping[str, Any]) -> list[Part]:
    n = f.get("chosen", f.get("entries", "?"))  # "entries": logs of zpaxos before 0.2
    return [Part("SYNC_REPLY"), Part(f"({n} chosen value{'' if n == 1 else 's'})", True,
                                     f"({n})")]


def _range_parts(*names: str) -> Callable[[Mapping[str, Any]], list[Part]]:
    """``RANGE_PREPARE bench-1f-* 2.b7``: the range shown as its prefix and a star."""
    def parts(f: Mapping[str, Any]) -> list[Part]:
        return ([Part(str(f.get("type", "?"))), Part(f"{f.get('prefix')}*"),
                 Part(_b(f.get("ballot")))] + [Part(_b(f.get(n))) for n in names])
    return parts


def _checked_parts(f: Mapping[str, Any]) -> list[Part]:
    value = str(f["value"]) if "value" in f else "not accepted"
    return [Part("CHECKED"), Part(_b(f.get("ballot"))), Part(value)]


SPECS: tuple[Spec, ...] = (
    Spec(Prepare, b"PREPARE", (("key", KEY), ("ballot", REAL_BALLOT)), TO_ACCEPTOR,
         ("key", "ballot"), _simple("ballot"), ChartStyle("#1f5fbf", "#174a94")),
    Spec(Promise, b"PROMISE",
         (("key", KEY), ("ballot", REAL_BALLOT), ("accepted", BALLOT), ("value", OPT_VALUE)),
         TO_PROPOSER, ("key", "ballot", "accepted", "value"), _promise_parts,
         ChartStyle("#5a9ee0", "#2363a8"), check=_promise_check),
    Spec(Accept, b"ACCEPT", (("key", KEY), ("ballot", REAL_BALLOT), ("value", VALUE)),
         TO_ACCEPTOR, ("key", "ballot", "value"), _simple("ballot", "value"),
         ChartStyle("#1e8a3c", "#17692e")),
    Spec(Accepted, b"ACCEPTED", (("key", KEY), ("ballot", REAL_BALLOT), ("value", VALUE)),
         TO_PROPOSER, ("key", "ballot", "value"), _simple("ballot"),
         ChartStyle("#6cbf6c", "#2f7d32")),
    Spec(Nack, b"NACK", (("key", KEY), ("ballot", REAL_BALLOT), ("promised", BALLOT)),
         TO_PROPOSER, ("key", "ballot", "promised"), _nack_parts,
         ChartStyle("#d62728", "#b71c1c", "6 4")),
    Spec(Decide, b"DECIDE", (("key", KEY), ("value", VALUE), ("ballot", BALLOT)),
         BOTH, ("key", "value", "ballot"), _decide_parts, ChartStyle("#8e44ad", "#6c3483")),
    Spec(RangePrepare, b"RANGE_PREPARE", (("prefix", KEY), ("ballot", REAL_BALLOT)),
         TO_ACCEPTOR, ("prefix", "ballot"), _range_parts(), ChartStyle("#1f5fbf", "#174a94"),
         drawn=False),
    Spec(RangePromise, b"RANGE_PROMISE",
         (("prefix", KEY), ("ballot", REAL_BALLOT), ("busy", _ListOf(KEY, MAX_BUSY)),
          ("more", BOOL)), TO_PROPOSER, ("prefix", "ballot", "busy", "more"),
         _range_parts("busy"), ChartStyle("#5a9ee0", "#2363a8"), drawn=False),
    Spec(RangeNack, b"RANGE_NACK", (("prefix", KEY), ("ballot", REAL_BALLOT), ("promised", BALLOT)),
         TO_PROPOSER, ("prefix", "ballot", "promised"), _range_parts("promised"),
         ChartStyle("#d62728", "#b71c1c", "6 4"), drawn=False),
    Spec(StatusRequest, b"STATUS", (("key", OPT_STATUS_KEY),), RUNTIME, ("key",), _simple(),
         ChartStyle("#7f7f7f", "#555555", "2 3"), drawn=False),
    Spec(StatusReply, b"STATUS_REPLY",
         (("node", NODE_ID), ("keys", _ListOf(KEY_STATUS)), ("truncated", BOOL),
          ("stats", _ListOf(COUNTER, 64)), ("ranges", _ListOf(RANGE_ENTRY, MAX_RANGE_ENTRIES))),
         RUNTIME,
         ("keys", "truncated"), _simple("keys"), ChartStyle("#7f7f7f", "#555555", "2 3"),
         drawn=False),
    Spec(SyncRequest, b"SYNC", (("after", AFTER),), RUNTIME, ("after",),
         lambda f: [Part("SYNC"), Part("(what was chosen?)", True, "")],
         ChartStyle("#7f8c8d", "#555f60", "2 3")),
    Spec(SyncReply, b"SYNC_REPLY",
         (("after", AFTER), ("chosen", _ListOf(SYNC_ENTRY)), ("more", BOOL)), RUNTIME,
         ("after", "chosen", "more"), _sync_reply_parts,
         ChartStyle("#16a085", "#0e6655", "2 3")),
    Spec(RegistersRequest, b"REGISTERS", (("after", AFTER),), RUNTIME, ("after",), _simple(),
         ChartStyle("#7f7f7f", "#555555", "2 3"), drawn=False),
    Spec(RegistersReply, b"REGISTERS_REPLY",
         (("after", AFTER), ("names", _ListOf(KEY, MAX_NAMES)), ("more", BOOL)), RUNTIME,
         ("after", "more"), _simple(), ChartStyle("#7f7f7f", "#555555", "2 3"), drawn=False),
    Spec(CatchUp, b"CATCHUP", (("incarnation", INCARNATION), ("pos", _Int(0, MAX_ROUND))),
         RUNTIME, ("pos",), _simple("pos"), ChartStyle("#7f8c8d", "#555f60", "2 3"),
         drawn=False),
    Spec(CatchUpReply, b"CATCHUP_REPLY",
         (("incarnation", INCARNATION), ("pos", _Int(0, MAX_ROUND)),
          ("end", _Int(0, MAX_ROUND)), ("keys", _PackedKeys(MAX_LEARN_ENTRIES)),
          ("slots", _ListOf(SLOT_ENTRY, MAX_LEARN_ENTRIES)), ("more", BOOL)), RUNTIME,
         ("pos", "end", "more"), _simple("end"), ChartStyle("#16a085", "#0e6655", "2 3"),
         drawn=False),
    Spec(Fetch, b"FETCH", (("keys", _ListOf(STATUS_KEY, MAX_LEARN_ENTRIES)),), RUNTIME,
         ("keys",), _simple("keys"), ChartStyle("#7f8c8d", "#555f60", "2 3"), drawn=False),
    Spec(FetchReply, b"FETCH_REPLY",
         (("known", _ListOf(KNOWN_ENTRY, MAX_LEARN_ENTRIES)), ("more", BOOL)), RUNTIME,
         ("known", "more"), _simple("known"), ChartStyle("#16a085", "#0e6655", "2 3"),
         drawn=False),
    Spec(CheckAccepted, b"CHECK", (("key", KEY), ("ballot", REAL_BALLOT)), RUNTIME,
         ("key", "ballot"), _simple("ballot"), ChartStyle("#8e44ad", "#6c3483", "2 3")),
    Spec(AcceptedAt, b"CHECKED", (("key", KEY), ("ballot", REAL_BALLOT), ("value", OPT_VALUE)),
         RUNTIME, ("key", "ballot", "value"), _checked_parts,
         ChartStyle("#8e44ad", "#6c3483", "2 3")),
    Spec(Hello, b"HELLO",
         (("node", NODE_ID), ("boot", BOOT), ("incarnation", INCARNATION),
          ("commit_seq", _Int(0, MAX_ROUND)), ("fresh", BOOL)), RUNTIME,
         ("node", "incarnation", "commit_seq", "fresh"),
         _simple("node", "commit_seq"), ChartStyle("#7f7f7f", "#555555", "2 3"), drawn=False),
    Spec(HelloReply, b"HELLO_REPLY",
         (("node", NODE_ID), ("boot", BOOT), ("verdict", _Int(0, 15)),
          ("incarnation", INCARNATION), ("commit_seq", _Int(0, MAX_ROUND))), RUNTIME,
         ("node", "verdict", "incarnation", "commit_seq"), _simple("verdict"),
         ChartStyle("#7f7f7f", "#555555", "2 3"), drawn=False),


    # Registers (CASPaxos, protocol/register.py): their own types, so a key is never both.
    Spec(RPrepare, b"RPREPARE", (("key", KEY), ("ballot", REAL_BALLOT)), TO_ACCEPTOR,
         ("key", "ballot"), _simple("ballot"), ChartStyle("#1f5fbf", "#174a94")),
    Spec(RPromise, b"RPROMISE",
         (("key", KEY), ("ballot", REAL_BALLOT), ("accepted", BALLOT), ("state", REG_STATE)),
         TO_PROPOSER, ("key", "ballot", "accepted", "state"), _rpromise_parts,
         ChartStyle("#5a9ee0", "#2363a8"), check=_rpromise_check),
    Spec(RAccept, b"RACCEPT",
         (("key", KEY), ("ballot", REAL_BALLOT), ("state", REG_STATE), ("next", BALLOT)),
         TO_ACCEPTOR, ("key", "ballot", "state", "next"), _raccept_parts,
         ChartStyle("#1e8a3c", "#17692e")),
    Spec(RAccepted, b"RACCEPTED", (("key", KEY), ("ballot", REAL_BALLOT), ("next", BALLOT)),
         TO_PROPOSER, ("key", "ballot", "next"), _raccept_parts,
         ChartStyle("#6cbf6c", "#2f7d32")),
    Spec(RNack, b"RNACK", (("key", KEY), ("ballot", REAL_BALLOT), ("promised", BALLOT)),
         TO_PROPOSER, ("key", "ballot", "promised"), _nack_parts,
         ChartStyle("#d62728", "#b71c1c", "6 4")),
)

BY_CLASS: dict[type, Spec] = {s.cls: s for s in SPECS}
BY_TAG: dict[bytes, Spec] = {s.tag: s for s in SPECS}
BY_NAME: dict[str, Spec] = {s.type_name: s for s in SPECS}
PAXOS_TYPES: tuple[str, ...] = tuple(s.type_name for s in SPECS if s.paxos)
DRAWN_TYPES: tuple[str, ...] = tuple(s.type_name for s in SPECS if s.drawn)
STYLES: dict[str, ChartStyle] = {s.type_name: s.style for s in SPECS if s.drawn}
TO_ACCEPTOR_TYPES: tuple[type, ...] = tuple(s.cls for s in SPECS
                                            if s.direction in (TO_ACCEPTOR, BOTH))
TO_PROPOSER_TYPES: tuple[type, ...] = tuple(s.cls for s in SPECS
                                            if s.direction in (TO_PROPOSER, BOTH))
RUNTIME_TYPES: tuple[type, ...] = tuple(s.cls for s in SPECS if s.direction == RUNTIME)
REGISTER_TYPES: tuple[type, ...] = (RPrepare, RPromise, RAccept, RAccepted, RNack)


def spec_of(msg: object) -> Spec:
    return BY_CLASS[type(msg)]


def type_name(msg: object) -> str:
    """The wire name of a message's type ("PREPARE"), as logs and charts show it."""
    return BY_CLASS[type(msg)].type_name


def log_fields(msg: object) -> dict[str, Any]:
    """The fields of a message worth logging (and drawing). An empty accepted ballot
    (and its absent value) is left out: "accepted nothing" is the common case."""
    spec = BY_CLASS[type(msg)]
    kinds = dict(spec.fields)
    out: dict[str, Any] = {}
    for name in spec.logged:
        v = getattr(msg, name)
        if v is None or (isinstance(v, Ballot) and v.is_zero and name == "accepted"):
            continue
        out[name] = kinds[name].show(v)
    return out


def label_parts(type_name: str, fields: Mapping[str, Any]) -> list[Part]:
    """A chart's label for a logged message, in parts; an unknown type shows its name."""
    spec = BY_NAME.get(type_name)
    return spec.parts({**fields, "type": type_name}) if spec else [Part(type_name)]


def label(type_name: str, fields: Mapping[str, Any]) -> str:
    """``PREPARE 2.b7``, ``PROMISE 2.b7 accepted 1.a3=Value_A``, ``DECIDE Value_A``..."""
    out = ""
    for p in label_parts(type_name, fields):
        if p.text:
            out += (p.glue if out else "") + p.text
    return out


def style(type_name: str) -> ChartStyle:
    spec = BY_NAME.get(type_name)
    return spec.style if spec else ChartStyle("#7f8c8d", "#555f60", "2 2")
