"""What the wire types cannot say, and how a refusal reads.

The messages (messages.py, runtime_messages.py; their field types in wiretypes.py) are
msgspec Structs whose field types carry their bounds; msgspec checks those as it
decodes. Left here:

* rules across a value's parts or a message's fields, checked right after decoding and
  before anything acts on the message (:data:`CHECKS`): a ballot is ZERO or real, a
  promise's accepted ballot and value go together, an incarnation id is 16 bytes or none;
* fields the wire left out: msgspec fills a trailing field that has a default with that
  default, but every field travels, so a message without one is refused. Such defaults are
  objects a decoder never makes (:data:`~zpaxos.protocol.messages.ZERO` itself,
  :data:`~zpaxos.protocol.messages.NONE_YET`), so identity tells;
* the words of a refusal (:func:`explain`): built from the *path* of msgspec's error in
  the types and from its reason rephrased in our words, so no received value is ever
  formatted into it (a hostile value must not cost more than its type's name).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

from zpaxos.protocol.messages import (
    MAX_LEARN_ENTRIES,
    NONE_YET,
    PACK_SEP,
    ZERO,
    Accepteds,
    Accepts,
    After,
    Ballot,
    CatchUp,
    CatchUpReply,
    Counter,
    Decide,
    Decides,
    Hello,
    HelloReply,
    Key,
    KeyStatus,
    Nack,
    Nacks,
    Prepares,
    Promise,
    Promises,
    RAccept,
    RAccepted,
    RangeEntry,
    RangeNack,
    RecentOp,
    RegState,
    RNack,
    RPromise,
    RState,
    StatusKey,
    StatusReply,
    SyncEntry,
    SyncReply,
    UndecidedReply,
)
from zpaxos.protocol.wiretypes import KEY_PATTERN

# --------------------------------------------------------------------------- the rules


def _ballot(b: Ballot, name: str) -> str | None:
    """ZERO, ``[0, b""]``, or a real ballot: a round from 1 with a proposer id (the types
    bound each part; this is the rule between them)."""
    if (b[0] == 0) != (b[1] == b""):
        return f"{name}: not a valid ballot (a round is 0 exactly when the id is empty)"
    return None


def _left_out(name: str) -> str:
    return f"{name}: missing (every field travels)"


def _state(s: RegState, name: str) -> str | None:
    return _left_out(f"{name} recent") if s.recent is NONE_YET else None


def _promise(m: Promise) -> str | None:
    a = m.accepted  # spelt out: a promise is half of all phase-1 traffic
    zero = a[0] == 0
    if (m.value is None) != zero:
        return "an accepted ballot and its value go together"
    return None if zero == (a[1] == b"") else _ballot(a, "accepted")


def _decide(m: Decide) -> str | None:
    return _left_out("ballot") if m.ballot is ZERO else _ballot(m.ballot, "ballot")


def _promised(m: Nack | RangeNack | RNack) -> str | None:
    return _ballot(m.promised, "promised")


def _rpromise(m: RPromise | RState) -> str | None:
    if m.accepted.is_zero and m.state != RegState():
        return "a register state comes with the ballot that accepted it"
    return _state(m.state, "state") or _ballot(m.accepted, "accepted")


def _next(m: RAccept | RAccepted) -> str | None:
    return _left_out("next") if m.next is ZERO else _ballot(m.next, "next")


def _raccept(m: RAccept) -> str | None:
    return _state(m.state, "state") or _next(m)


def _status_reply(m: StatusReply) -> str | None:
    if m.ranges is NONE_YET:
        return _left_out("ranges")
    for k in m.keys:
        if k.chosen_ballot is ZERO:
            return _left_out("keys chosen ballot")
        problem = (_ballot(k.promised, "keys promised") or _ballot(k.accepted, "keys accepted")
                   or _ballot(k.chosen_ballot, "keys chosen ballot"))
        if problem:
            return problem
    return None


def _sync_reply(m: SyncReply) -> str | None:
    for e in m.chosen:
        problem = _ballot(e[2], "chosen ballot")
        if problem:
            return problem
    return None


def _hello(m: Hello | HelloReply | CatchUp | CatchUpReply) -> str | None:
    if len(m.incarnation) not in (0, 16):
        return "incarnation: expected 0 or 16 bytes"
    return None


# A catch-up page's keys, packed: keys and @slots joined by PACK_SEP, checked in one call.
_PACKED_KEY = f"@?{KEY_PATTERN}"  # a key, or a register's @slot
_VALID_PACKED = re.compile(f"{_PACKED_KEY}(?:{PACK_SEP}{_PACKED_KEY})*").fullmatch


def _catch_up_reply(m: CatchUpReply) -> str | None:
    bad = _hello(m)
    if bad:
        return bad
    if m.packed and not _VALID_PACKED(m.packed):
        return "keys: not keys joined by newlines"
    if m.packed.count(PACK_SEP) >= MAX_LEARN_ENTRIES:
        return f"keys: more than {MAX_LEARN_ENTRIES}"
    return None


# Column messages (colmessages.py): one length for every column (msgspec bounded each
# by MAX_ROWS), and each row's rule as its one-key message's.

def _columns(*cols: tuple[Any, ...]) -> str | None:
    n = len(cols[0])
    for c in cols[1:]:
        if len(c) != n:
            return "columns: not all of one length"
    return None


def _prepares(m: Prepares) -> str | None:
    return _columns(m.keys, m.ballots)


def _accepts(m: Accepts | Accepteds) -> str | None:
    return _columns(m.keys, m.ballots, m.values)


def _promises(m: Promises) -> str | None:
    bad = _columns(m.keys, m.ballots, m.accepted, m.values)
    for a, v in zip(m.accepted, m.values, strict=True):
        if bad:
            return bad
        zero = a[0] == 0
        if (v is None) != zero:
            return "an accepted ballot and its value go together"
        bad = None if zero == (a[1] == b"") else _ballot(a, "accepted")
    return bad


def _nacks(m: Nacks) -> str | None:
    return _columns(m.keys, m.ballots, m.promised) or _ballots(m.promised, "promised")


def _decides(m: Decides) -> str | None:
    return _columns(m.keys, m.values, m.ballots) or _ballots(m.ballots, "ballot")


def _ballots(col: tuple[Ballot, ...], name: str) -> str | None:
    for b in col:
        if (b[0] == 0) != (b[1] == b""):
            return _ballot(b, name)
    return None


def _undecided_reply(m: UndecidedReply) -> str | None:
    """The keys of a page are in order and none is past the cursor the page ends at (a
    lister that finds a page not moving on stops asking: runtime/settle.py)."""
    prev = ""
    for k in m.keys:
        if k < prev:
            return "keys: not in order"
        prev = k
    if m.last < prev:
        return "last: before the page's keys"
    return None


# Per type, the rule checked once msgspec has built the message (types without one need
# nothing more: every write-once hot-path type but PROMISE and DECIDE).
CHECKS: dict[type, Callable[[Any], str | None]] = {
    Promise: _promise, Nack: _promised, Decide: _decide, RangeNack: _promised,
    RPromise: _rpromise, RState: _rpromise, RAccept: _raccept, RAccepted: _next, RNack: _promised,
    StatusReply: _status_reply, SyncReply: _sync_reply, Hello: _hello, HelloReply: _hello,
    CatchUp: _hello, CatchUpReply: _catch_up_reply, UndecidedReply: _undecided_reply,
    Prepares: _prepares, Promises: _promises, Accepts: _accepts, Accepteds: _accepts,
    Nacks: _nacks, Decides: _decides,
}

# --------------------------------------------------------------------------- refusals

# Records inside messages, named as a refusal names them, with their parts' names.
_RECORDS: dict[Any, tuple[str, tuple[str, ...]]] = {
    RangeEntry: ("range promise", ("prefix", "ballot")),
    SyncEntry: ("sync entry", ("key", "value", "ballot")),
    Counter: ("counter", ("name", "count")),
    RecentOp: ("recent op", ("op id", "version")),
    KeyStatus: ("status entry", ()),
    RegState: ("register state", ()),
}
_KEYS = (Key, After, StatusKey)
KEY_RULE = ("a key may hold only letters, digits, '.', '_' and '-', at most 128 of them, "
            "and must not start with a dot")

# msgspec's names for what it expected or got, in ours; an unknown name stays unnamed.
_WORDS = {"str": "text", "bytes": "bytes", "int": "an integer", "bool": "true/false",
          "null": "none", "None": "none", "array": "a list", "object": "a map", "float": "a number",
          "ext": "an extension type"}
_EXPECTED = re.compile(r"Expected `([a-z |]+)`(.*)", re.S)
_GOT = re.compile(r", got `([A-Za-z]+)`")
_LENGTH = re.compile(r" of (?:at (least|most) )?length (\d+), got (\d+)")
_BOUND = re.compile(r" of length ([<>]=) (\d+)")
_NUMBER = re.compile(r" ([<>]=?) (-?\d+)")


def _word(name: str) -> str:
    return _WORDS.get(name.strip(), "another type")


def reason(raw: str) -> str:
    """msgspec's reason (the part before " - at `$...`") in our words: type names, bounds
    and lengths, nothing taken from the input but counts."""
    m = _EXPECTED.fullmatch(raw)
    if not m:
        return "not a valid value"
    kinds, tail = m.group(1).split("|"), m.group(2)
    what = " or ".join(_word(k) for k in kinds)
    if (g := _GOT.fullmatch(tail)):
        return f"expected {what}, got {_word(g.group(1))}"
    if (g := _LENGTH.fullmatch(tail)):
        limit = f"at {g.group(1)} " if g.group(1) else ""
        return f"expected {what} of {limit}{g.group(2)} items, got {g.group(3)}"
    if (g := _BOUND.fullmatch(tail)):
        n, unit = g.group(2), {"bytes": " bytes", "str": " characters"}.get(kinds[0], "")
        if g.group(1) == "<=":
            return (f"expected at most {n}{unit} (over the limit)" if unit
                    else f"expected {what} of at most {n}")
        return f"expected at least {n}{unit}" if unit else f"expected {what} of at least {n}"
    if (g := _NUMBER.fullmatch(tail)):
        return f"expected {what} {g.group(1)} {g.group(2)}"
    if tail.startswith(" matching regex"):
        return f"expected {what} of the allowed characters"
    return f"expected {what}"


def fields_of(cls: type) -> tuple[str, ...]:
    names: tuple[str, ...] = getattr(cls, "__struct_fields__", ())
    return names


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def explain(cls: type, path: list[int], raw: str) -> str:
    """The refusal of a message of type ``cls`` whose msgspec error reason ``raw`` is at
    ``path`` inside the message's entry (``[tag, field, ...]``)."""
    tag = cls.__struct_config__.tag  # type: ignore[attr-defined]
    names = fields_of(cls)
    if not path:
        m = _LENGTH.search(raw)
        if m:
            return f"{tag}: expected {len(names)} fields, got {int(m.group(3)) - 1}"
        return f"{tag}: expected [type, fields...] ({reason(raw)})"
    if path[0] == 0:
        return "unknown message type"
    name = names[path[0] - 1]
    return _walk(_hints(cls)[name], path[1:], f"{tag}: {name.replace('_', ' ')}", raw)


def _walk(hint: Any, path: list[int], what: str, raw: str) -> str:
    """Down the types along ``path``: a record's part adds its name to ``what``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # "X | None"
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint in _KEYS and not path:
        return f"{what}: {KEY_RULE}" if "regex" in raw else f"{what}: {reason(raw)}"
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
    if isinstance(base, type) and issubclass(base, Ballot):
        part = f"{Ballot._fields[path[0]]}: " if path else ""
        real = ("; the zero ballot cannot be proposed"
                if base is not Ballot and (">= 1" in raw or "least length 1" in raw) else "")
        return f"{what}: not a valid ballot ({part}{reason(raw)}{real})"
    record = _RECORDS.get(base)
    if not path:
        return f"{what}: not a valid {record[0]} ({reason(raw)})" if record else \
            f"{what}: {reason(raw)}"
    args = typing.get_args(base)
    if record and isinstance(base, type):  # a Struct record: its fields by name
        name = fields_of(base)[path[0]]
        return _walk(_hints(base)[name], path[1:], f"{what} {name.replace('_', ' ')}", raw)
    if record:  # a fixed tuple record: its parts by position
        return _walk(args[path[0]], path[1:], f"{what} {record[1][path[0]]}", raw)
    if len(args) == 2 and args[1] is Ellipsis:  # a list: each of its items
        return _walk(args[0], path[1:], what, raw)
    return f"{what}: {reason(raw)}"
