"""The message registry: every message type declared once, everything else derived.

The wire itself (a type's tag, its fields in order, their types and bounds) is the
message class's: a msgspec Struct in :mod:`zpaxos.protocol.messages`, which the codec
decodes and checks. A declaration here (:class:`Spec`) adds, for one message class, what
only zpaxos knows:

* its ``direction`` (to an acceptor, to a proposer, or runtime plumbing between
  processes), which also fixes its log level;
* which fields the log records (``logged``), how a field shows in a log line where its
  type does not say (``shown``), and how a chart labels and colours it.

The codec (:mod:`zpaxos.runtime.codec`), the event log, the log model and the charts all
read this table; a test walks it and round-trips every type through each of them. So a
new message type is one Struct in messages.py (runtime_messages.py for one that is not
Paxos), one ``Spec`` here, and its handler.

Decoding is strict: any garbage raises :class:`DecodeError`, and its text never formats
the offending value itself (a hostile, deeply nested value must not cost more than its
type name to describe): see :mod:`zpaxos.protocol.wirerules`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from msgspec import Struct, field

from zpaxos.protocol.messages import (
    MAX_BUSY,
    MAX_ENTRIES,
    MAX_LEARN_ENTRIES,
    MAX_NAMES,
    MAX_RANGE_ENTRIES,
    MAX_ROUND,
    MAX_SLOT_BYTES,
    MAX_VALUE_BYTES,
    NONE_YET,
    Accept,
    Accepted,
    AcceptedAt,
    Accepteds,
    Accepts,
    Ballot,
    CatchUp,
    CatchUpReply,
    CheckAccepted,
    Decide,
    Decides,
    Fetch,
    FetchReply,
    Hello,
    HelloReply,
    MembersAsk,
    MembersInfo,
    Nack,
    Nacks,
    Prepare,
    Prepares,
    Promise,
    Promises,
    RangeNack,
    RangePrepare,
    RangePromise,
    RealBallot,
    RegistersReply,
    RegistersRequest,
    RNotify,
    RWatch,
    StatusReply,
    StatusRequest,
    SyncReply,
    SyncRequest,
    UndecidedReply,
    UndecidedRequest,
)
from zpaxos.protocol.regmessages import (
    RAccept,
    RAccepted,
    RegState,
    RNack,
    RPrepare,
    RPromise,
    RRead,
    RState,
)

__all__ = ["BOTH", "MAX_BUSY", "MAX_ENTRIES", "MAX_LEARN_ENTRIES", "MAX_NAMES",
           "MAX_RANGE_ENTRIES", "MAX_ROUND", "MAX_SLOT_BYTES", "MAX_VALUE_BYTES", "RUNTIME",
           "SPECS", "TO_ACCEPTOR", "TO_PROPOSER", "ChartStyle", "DecodeError", "Part", "Spec",
           "label", "label_parts", "log_fields", "spec_of", "style", "type_name"]

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


def _show_state(s: RegState) -> str:
    if s.value is not None and s.value.startswith(b'{"'):
        shown = _show_lock(s.value)
        if shown:
            return f"v{s.version}={shown}"
    shown = "absent" if s.value is None else s.value.decode("utf-8", "backslashreplace")
    return f"v{s.version}={shown[:40]}"


def _show_lock(value: bytes) -> str:
    """A lock's record as a chart shows it: its holder and fencing token (``lock A #7``,
    ``free #7``), so a hand-over reads off the arrows; "" when it is not one (exactly
    as a lock writes it)."""
    from zpaxos.protocol.lease import LockRecordError, decode_record, encode_record

    try:
        r = decode_record(value)
    except LockRecordError:
        return ""
    if encode_record(r) != value:
        return ""
    queue = f" +{len(r.queue)} waiting" if r.queue else ""
    held = f"lock {r.holder[:24]}" if r.held else "free"
    return f"{held} #{r.token}{queue}"


def _token(v: bytes) -> str:
    return v[:4].hex()  # a random id: its first bytes tell it apart in a log


# How a logged field shows, by its value's type: logs count a list's entries, they never
# dump a page; other values (keys, values, numbers) go as they are.
_SHOW: dict[type, Callable[[Any], Any]] = {
    Ballot: str, RealBallot: str, RegState: _show_state, tuple: len, type(NONE_YET): len,
}


# --------------------------------------------------------------------------- declarations


class Part(Struct, frozen=True):
    """One piece of a chart label. ``word`` parts connect (``accepted``, ``promised``): a
    renderer short of room uses ``short``, then drops them; the others (type, ballots,
    value) stay."""

    text: str
    word: bool = False
    short: str = ""
    glue: str = " "  # what joins it to the part before


class ChartStyle(Struct, frozen=True):
    """How a chart draws a message: line colour, text colour, SVG dash pattern."""

    line: str
    ink: str
    dash: str = ""


class Spec(Struct, frozen=True):
    """One message type's declaration (a Struct, as the messages: cheap to define)."""

    cls: type
    direction: str
    logged: tuple[str, ...]  # fields recorded in the log (and so available to charts)
    parts: Callable[[Mapping[str, Any]], list[Part]]  # chart label, from the logged fields
    style: ChartStyle
    drawn: bool = True  # charts draw it (status traffic is not part of a run's story)
    shown: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)  # else by type

    @property
    def type_name(self) -> str:
        """The wire name of the type ("PREPARE"): the Struct's tag."""
        tag: str = self.cls.__struct_config__.tag  # type: ignore[attr-defined]
        return tag

    @property
    def tag(self) -> bytes:
        return self.type_name.encode()

    @property
    def fields(self) -> tuple[str, ...]:
        """The message's fields, in wire order."""
        names: tuple[str, ...] = self.cls.__struct_fields__  # type: ignore[attr-defined]
        return names

    @property
    def paxos(self) -> bool:
        return self.direction != RUNTIME


def _b(v: Any) -> str:
    return "?" if v is None else str(v)


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


_COLUMNS = ChartStyle("#7f8c8d", "#555f60", "2 2")

SPECS: tuple[Spec, ...] = (
    Spec(Prepare, TO_ACCEPTOR, ("key", "ballot"), _simple("ballot"),
         ChartStyle("#1f5fbf", "#174a94")),
    Spec(Promise, TO_PROPOSER, ("key", "ballot", "accepted", "value"), _promise_parts,
         ChartStyle("#5a9ee0", "#2363a8")),
    Spec(Accept, TO_ACCEPTOR, ("key", "ballot", "value"), _simple("ballot", "value"),
         ChartStyle("#1e8a3c", "#17692e")),
    Spec(Accepted, TO_PROPOSER, ("key", "ballot", "value"), _simple("ballot"),
         ChartStyle("#6cbf6c", "#2f7d32")),
    Spec(Nack, TO_PROPOSER, ("key", "ballot", "promised"), _nack_parts,
         ChartStyle("#d62728", "#b71c1c", "6 4")),
    Spec(Decide, BOTH, ("key", "value", "ballot"), _decide_parts,
         ChartStyle("#8e44ad", "#6c3483")),
    # Column messages (colmessages.py): runs of the six above. The wire logs their rows,
    # as the one-key messages they stand for (runtime/wire.py), so no chart draws them.
    Spec(Prepares, TO_ACCEPTOR, ("keys",), _simple("keys"), _COLUMNS, drawn=False),
    Spec(Promises, TO_PROPOSER, ("keys",), _simple("keys"), _COLUMNS, drawn=False),
    Spec(Accepts, TO_ACCEPTOR, ("keys",), _simple("keys"), _COLUMNS, drawn=False),
    Spec(Accepteds, TO_PROPOSER, ("keys",), _simple("keys"), _COLUMNS, drawn=False),
    Spec(Nacks, TO_PROPOSER, ("keys",), _simple("keys"), _COLUMNS, drawn=False),
    Spec(Decides, BOTH, ("keys",), _simple("keys"), _COLUMNS, drawn=False),
    Spec(RangePrepare, TO_ACCEPTOR, ("prefix", "ballot"), _range_parts(),
         ChartStyle("#1f5fbf", "#174a94"), drawn=False),
    Spec(RangePromise, TO_PROPOSER, ("prefix", "ballot", "busy", "more"), _range_parts("busy"),
         ChartStyle("#5a9ee0", "#2363a8"), drawn=False),
    Spec(RangeNack, TO_PROPOSER, ("prefix", "ballot", "promised"), _range_parts("promised"),
         ChartStyle("#d62728", "#b71c1c", "6 4"), drawn=False),
    Spec(StatusRequest, RUNTIME, ("key",), _simple(), ChartStyle("#7f7f7f", "#555555", "2 3"),
         drawn=False),
    Spec(StatusReply, RUNTIME, ("keys", "truncated"), _simple("keys"),
         ChartStyle("#7f7f7f", "#555555", "2 3"), drawn=False),
    Spec(SyncRequest, RUNTIME, ("after",),
         lambda f: [Part("SYNC"), Part("(what was chosen?)", True, "")],
         ChartStyle("#7f8c8d", "#555f60", "2 3")),
    Spec(SyncReply, RUNTIME, ("after", "chosen", "more"), _sync_reply_parts,
         ChartStyle("#16a085", "#0e6655", "2 3")),
    Spec(RegistersRequest, RUNTIME, ("after",), _simple(),
         ChartStyle("#7f7f7f", "#555555", "2 3"), drawn=False),
    Spec(RegistersReply, RUNTIME, ("after", "more"), _simple(),
         ChartStyle("#7f7f7f", "#555555", "2 3"), drawn=False),
    # A membership change lists the keys accepted but not decided (runtime/reconfig.py).
    Spec(UndecidedRequest, RUNTIME, ("after",), _simple(),
         ChartStyle("#7f7f7f", "#555555", "2 3"), drawn=False),
    Spec(UndecidedReply, RUNTIME, ("after", "last", "more"), _simple(),
         ChartStyle("#7f7f7f", "#555555", "2 3"), drawn=False),
    # Catching up (hosts/catchup.py): keys-only pages of a peer's learn log, then the
    # values of just the keys this node lacks.
    Spec(CatchUp, RUNTIME, ("pos",), _simple("pos"), ChartStyle("#7f8c8d", "#555f60", "2 3"),
         drawn=False),
    Spec(CatchUpReply, RUNTIME, ("pos", "end", "more"), _simple("end"),
         ChartStyle("#16a085", "#0e6655", "2 3"), drawn=False),
    Spec(Fetch, RUNTIME, ("keys",), _simple("keys"), ChartStyle("#7f8c8d", "#555f60", "2 3"),
         drawn=False),
    Spec(FetchReply, RUNTIME, ("known", "more"), _simple("known"),
         ChartStyle("#16a085", "#0e6655", "2 3"), drawn=False),
    Spec(CheckAccepted, RUNTIME, ("key", "ballot"), _simple("ballot"),
         ChartStyle("#8e44ad", "#6c3483", "2 3")),
    Spec(AcceptedAt, RUNTIME, ("key", "ballot", "value"), _checked_parts,
         ChartStyle("#8e44ad", "#6c3483", "2 3")),
    Spec(Hello, RUNTIME, ("node", "incarnation", "commit_seq", "fresh"),
         _simple("node", "commit_seq"), ChartStyle("#7f7f7f", "#555555", "2 3"), drawn=False,
         shown={"incarnation": _token}),
    Spec(HelloReply, RUNTIME, ("node", "verdict", "incarnation", "commit_seq"),
         _simple("verdict"), ChartStyle("#7f7f7f", "#555555", "2 3"), drawn=False,
         shown={"incarnation": _token}),

    # Membership (runtime/members.py): asked of any node; a stale epoch's refusal.
    Spec(MembersAsk, RUNTIME, ("epoch",), _simple("epoch"),
         ChartStyle("#7f7f7f", "#555555", "2 3"), drawn=False),
    Spec(MembersInfo, RUNTIME, ("node", "epoch", "refused"), _simple("epoch", "refused"),
         ChartStyle("#c0392b", "#922b21", "2 3")),

    # Registers (CASPaxos, protocol/register.py): their own types, so a key is never both.
    Spec(RPrepare, TO_ACCEPTOR, ("key", "ballot"), _simple("ballot"),
         ChartStyle("#1f5fbf", "#174a94")),
    Spec(RPromise, TO_PROPOSER, ("key", "ballot", "accepted", "state"), _rpromise_parts,
         ChartStyle("#5a9ee0", "#2363a8")),
    Spec(RAccept, TO_ACCEPTOR, ("key", "ballot", "state", "next"), _raccept_parts,
         ChartStyle("#1e8a3c", "#17692e")),
    Spec(RAccepted, TO_PROPOSER, ("key", "ballot", "next"), _raccept_parts,
         ChartStyle("#6cbf6c", "#2f7d32")),
    Spec(RNack, TO_PROPOSER, ("key", "ballot", "promised"), _nack_parts,
         ChartStyle("#d62728", "#b71c1c", "6 4")),
    # A quorum read's question and answers (promise nothing, persist nothing).
    Spec(RRead, TO_ACCEPTOR, ("key", "read"), _simple("read"),
         ChartStyle("#1f5fbf", "#174a94", "2 3")),
    Spec(RState, TO_PROPOSER, ("key", "read", "accepted", "state"), _simple("accepted", "state"),
         ChartStyle("#5a9ee0", "#2363a8", "2 3")),
    # Watching a register (hosts/watchers.py): not Paxos, a hint to read again.
    Spec(RWatch, RUNTIME, ("key",), _simple(), ChartStyle("#7f7f7f", "#555555", "2 3"),
         drawn=False),
    Spec(RNotify, RUNTIME, ("key", "version", "watching"), _simple("version"),
         ChartStyle("#7f7f7f", "#555555", "2 3"), drawn=False),
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
REGISTER_TYPES: tuple[type, ...] = (RPrepare, RPromise, RAccept, RAccepted, RNack, RRead,
                                    RState)


def spec_of(msg: object) -> Spec:
    return BY_CLASS[type(msg)]


def type_name(msg: object) -> str:
    """The wire name of a message's type ("PREPARE"), as logs and charts show it."""
    return BY_CLASS[type(msg)].type_name


def log_fields(msg: object) -> dict[str, Any]:
    """The fields of a message worth logging (and drawing). An empty accepted ballot
    (and its absent value) is left out: "accepted nothing" is the common case."""
    spec = BY_CLASS[type(msg)]
    out: dict[str, Any] = {}
    for name in spec.logged:
        v = getattr(msg, name)
        if v is None or (isinstance(v, Ballot) and v.is_zero and name == "accepted"):
            continue
        show = spec.shown.get(name) or _SHOW.get(type(v))
        out[name] = v if show is None else show(v)
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
