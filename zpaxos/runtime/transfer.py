"""Export and import: every decided key and every register, as JSON lines, read and
written through the protocol.

**Listing.** The nodes list what they hold, a page at a time: the keys each has learned
as decided (``SyncRequest``, the pages peers sync with) and the names of the registers
it holds (``RegistersRequest``). :class:`Walk` asks every node at once and merges the
pages in key order (the union: a key only some nodes learned is listed), keeping at
most two pages per node in memory, so a million keys never sit in memory together.

**Reading.** A listed value is never what is exported. Each key is read by a proposal
at a fresh ballot (two phases, no range promise): a node that knows the decision answers
its Prepare with it, and Paxos guarantees that what a proposal ends with is *the*
chosen value, which never changes; so each line is a linearizable read of its key. (The
proposal's value is the one listed: if a listing ever named a key no quorum had chosen,
the proposal would choose it rather than export something unchosen.) Each register is
read with ``get``, a quorum round that writes back what it read (linearizable).

**Importing** proposes each key with the file's value and never overwrites: Paxos cannot
change a chosen value, so a key already decided differently comes back with its own value
and is reported. A register is written only if absent (``cas --expect-absent``).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import IO, Any

from zpaxos.protocol.messages import (
    RegistersReply,
    RegistersRequest,
    SyncReply,
    SyncRequest,
    key_problem,
)
from zpaxos.protocol.registry import MAX_VALUE_BYTES
from zpaxos.runtime.client import Client

PAGE_TIMEOUT_S = 5.0  # a node that answers no page request within this is left out
READ_CONCURRENCY = 256  # reads (or writes) in flight at once
MAX_LINE_BYTES = 4 * MAX_VALUE_BYTES  # a base64 1 MiB value and its key fit easily

__all__ = ["ImportReport", "TransferError", "Walk", "export_lines", "import_file",
           "parse_line", "validate_file"]


class TransferError(Exception):
    """What stopped an export or an import: one line for the operator."""


# --------------------------------------------------------------------------- listing


class Walk:
    """A merged, deduplicated walk over every node's pages, in key order.

    ``request(after)`` builds a page request, ``unpack(reply)`` gives a reply's
    ``(entries, more)`` where each entry starts with its key. A node that answers
    nothing for ``timeout_s`` is dropped from the walk; fewer than a majority left, and
    the walk stops (a decided key might then be known only to the nodes not heard)."""

    def __init__(self, client: Client, request: Callable[[str], Any], reply_type: type,
                 unpack: Callable[[Any], tuple[tuple[Any, ...], bool]],
                 timeout_s: float = PAGE_TIMEOUT_S) -> None:
        self.client = client
        self.request, self.reply_type, self.unpack = request, reply_type, unpack
        self.timeout_s = timeout_s
        nodes = [n.id for n in client.cluster.nodes]
        self.buf: dict[int, deque[tuple[Any, ...]]] = {n: deque() for n in nodes}
        self.asked: dict[int, str | None] = {n: None for n in nodes}  # after, if waiting
        self.cursor: dict[int, str] = dict.fromkeys(nodes, "")
        self.done: set[int] = set()
        self.dead: set[int] = set()
        self.page_size = 0  # the largest page seen: keep at most two per node

    def _ask(self, node: int) -> None:
        after = self.cursor[node]
        self.asked[node] = after
        self.client.sockets.send(node, self.request(after))

    def _live(self) -> list[int]:
        return [n for n in self.buf if n not in self.dead]

    def _fill(self) -> None:
        """Wait until every live node not done has something buffered."""
        for n in self._live():
            if n not in self.done and self.asked[n] is None and len(self.buf[n]) <= self.page_size:
                self._ask(n)
        deadline = time.monotonic() + self.timeout_s
        while any(not self.buf[n] and n not in self.done for n in self._live()):
            left = deadline - time.monotonic()
            if left <= 0:
                for n in self._live():
                    if not self.buf[n] and n not in self.done:
                        self.dead.add(n)
                break
            for src, msg in self.client.sockets.poll(left):
                if type(src) is int and type(msg) is self.reply_type:
                    self._take(src, msg)
        if len(self._live()) < self.client.quorum:
            raise TransferError(f"only {len(self._live())} of {len(self.buf)} nodes answered; "
                                f"a majority must, so that no decided key is missed")

    def _take(self, node: int, msg: Any) -> None:
        if node in self.dead or self.asked.get(node) != msg.after:
            return  # not the page we asked for (a duplicate, or late)
        entries, more = self.unpack(msg)
        self.asked[node] = None
        self.page_size = max(self.page_size, len(entries))
        self.buf[node].extend(entries)
        if entries:
            self.cursor[node] = entries[-1][0]
        if not more or not entries:
            self.done.add(node)
        elif len(self.buf[node]) <= self.page_size:
            self._ask(node)  # one page ahead: the next arrives while this one is read

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        last: str | None = None
        while True:
            self._fill()
            live = [n for n in self._live() if self.buf[n] or n not in self.done]
            if not live:
                return
            # Every key up to the smallest last-buffered key of a node with more to come
            # is final: no node can list a smaller one later.
            open_tails = [self.buf[n][-1][0] for n in live if n not in self.done]
            frontier = min(open_tails) if open_tails else None
            batch: dict[str, tuple[Any, ...]] = {}
            for n in live:
                b = self.buf[n]
                while b and (frontier is None or b[0][0] <= frontier):
                    e = b.popleft()
                    batch.setdefault(e[0], e)
            for key in sorted(batch):
                if key != last:
                    last = key
                    yield batch[key]


def decided_keys(client: Client) -> Walk:
    """(key, value the node learned, ballot) of every key some node learned as decided."""
    return Walk(client, SyncRequest, SyncReply, lambda m: (m.chosen, m.more))


def register_names(client: Client) -> Walk:
    """(name,) of every register some node holds a state for."""
    return Walk(client, RegistersRequest, RegistersReply,
                lambda m: (tuple((n,) for n in m.names), m.more))


# --------------------------------------------------------------------------- lines


def value_fields(value: bytes) -> dict[str, str]:
    """``{"value": text}``, or ``{"value_b64": ...}`` for bytes that are not UTF-8."""
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value_b64": base64.b64encode(value).decode("ascii")}


@dataclass(frozen=True, slots=True)
class Line:
    """One parsed line: a write-once key, or a register (``value`` None: deleted)."""

    key: str
    value: bytes | None
    register: bool


def parse_line(text: str) -> Line:
    """One JSON line of an export, checked as a node would check it; ValueError if bad."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    names = [k for k in ("key", "register") if k in obj]
    if len(names) != 1:
        raise ValueError('needs exactly one of "key" and "register"')
    register = names[0] == "register"
    allowed = {names[0], "value", "value_b64"} | ({"version"} if register else set())
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ValueError(f"unknown field {extra[0]!r}")
    key = obj[names[0]]
    problem = key_problem(key) if isinstance(key, str) else "not a string"
    if problem:
        raise ValueError(f"bad {names[0]} name: {problem}")
    if "value" in obj and "value_b64" in obj:
        raise ValueError('both "value" and "value_b64"')
    value: bytes | None
    if "value_b64" in obj:
        raw = obj["value_b64"]
        try:
            value = base64.b64decode(raw, validate=True) if isinstance(raw, str) else None
        except binascii.Error:
            value = None
        if value is None:
            raise ValueError('"value_b64" is not base64')
    elif "value" in obj:
        raw = obj["value"]
        if raw is None and not register:
            raise ValueError("a key needs a value")
        if raw is None:
            value = None  # a deleted register
        elif isinstance(raw, str):
            value = raw.encode("utf-8", "surrogatepass")
        else:
            raise ValueError('"value" is not a string')
    else:
        raise ValueError('no "value" or "value_b64"')
    if value is None and not register:
        raise ValueError("a key needs a value")
    if value is not None and len(value) > MAX_VALUE_BYTES:
        raise ValueError(f"value of {len(value)} bytes is over the 1 MiB limit")
    return Line(key, value, register)


# --------------------------------------------------------------------------- export


@dataclass
class ExportCounts:
    keys: int = 0
    registers: int = 0
    seconds: float = 0.0


def export_lines(lister: Client, reader: Client, out: IO[str], keys_glob: str | None,
                 registers: bool, step: Callable[[int], None] = lambda n: None,
                 concurrency: int = READ_CONCURRENCY) -> ExportCounts:
    """Write one JSON line per decided key (matching ``keys_glob``, if given) and, with
    ``registers``, one per register. ``lister`` walks the pages, ``reader`` reads each
    key through the protocol: two clients, so neither loop takes the other's replies."""
    counts = ExportCounts()
    t0 = time.monotonic()
    listed: Iterable[tuple[Any, ...]] = decided_keys(lister)
    if keys_glob is not None:
        glob = keys_glob
        listed = (e for e in listed if fnmatchcase(e[0], glob))
    items = ((e[0], e[1]) for e in listed)
    for _, outcome, _ in reader.stream(items, concurrency, fast=False):
        if outcome.chosen is None:
            raise TransferError(f"cannot read key {outcome.key!r}: {outcome.reason or 'no quorum'}"
                                f" ({counts.keys} keys written so far)")
        out.write(json.dumps({"key": outcome.key, **value_fields(outcome.chosen)}) + "\n")
        counts.keys += 1
        step(1)
    if registers:
        from zpaxos.protocol.register import GET, OK, RegOp

        names = ((e[0], RegOp(GET)) for e in register_names(lister))
        for _, r, _ in reader.register_stream(names, concurrency):
            if r.status != OK:
                raise TransferError(f"cannot read register {r.key!r}: {r.status}"
                                    f"{' (' + r.reason + ')' if r.reason else ''}")
            line: dict[str, Any] = {"register": r.key, "version": r.version}
            line.update(value_fields(r.value) if r.value is not None else {"value": None})
            out.write(json.dumps(line) + "\n")
            counts.registers += 1
            step(1)
    counts.seconds = time.monotonic() - t0
    return counts


# --------------------------------------------------------------------------- import


def read_lines(stream: IO[str]) -> Iterator[tuple[int, Line]]:
    """(line number, parsed line) for every non-blank line; TransferError names the
    first bad one."""
    for number, text in enumerate(stream, 1):
        if len(text) > MAX_LINE_BYTES:
            raise TransferError(f"line {number}: longer than {MAX_LINE_BYTES} characters")
        if not text.strip():
            continue
        try:
            yield number, parse_line(text)
        except ValueError as e:
            raise TransferError(f"line {number}: {e}") from None


def validate_file(stream: IO[str]) -> tuple[int, int]:
    """Check every line before anything is proposed; (keys, registers) in the file."""
    keys = regs = 0
    for _, line in read_lines(stream):
        if line.register:
            regs += 1
        else:
            keys += 1
    return keys, regs


@dataclass
class ImportReport:
    imported: int = 0
    same: int = 0  # already decided (set) to the file's value
    differ: int = 0  # already decided differently: reported, kept
    failed: int = 0  # no quorum in time: not done (run the import again)
    seconds: float = 0.0


def import_file(client: Client, stream: IO[str], report_differ: Callable[[str], None],
                step: Callable[[int], None] = lambda n: None,
                concurrency: int = READ_CONCURRENCY) -> ImportReport:
    """Propose every key of ``stream`` (already validated) and write absent registers.
    Nothing is ever overwritten: what was decided differently is reported line by line
    through ``report_differ``."""
    from zpaxos.printable import printable
    from zpaxos.protocol.register import CAS_FAILED, CAS_VALUE, GET, OK, RegOp

    rep = ImportReport()
    t0 = time.monotonic()

    def shown(v: bytes | None) -> str:
        return "absent" if v is None else repr(printable(v.decode("utf-8", "backslashreplace")))

    def differ(what: str) -> None:
        rep.differ += 1
        report_differ(what)

    stream.seek(0)
    keys = ((ln.key, ln.value or b"") for _, ln in read_lines(stream) if not ln.register)
    for _, outcome, _ in client.stream(keys, concurrency):
        if outcome.chosen is None:
            rep.failed += 1
        elif outcome.chosen != outcome.proposed:
            differ(f"key {outcome.key}: decided {shown(outcome.chosen)}, the file has "
                   f"{shown(outcome.proposed)}; kept")
        elif outcome.how == "proposed":
            rep.imported += 1
        else:
            rep.same += 1
        step(1)
    stream.seek(0)
    wanted: dict[int, bytes | None] = {}  # the file's value of each register in flight

    def registers() -> Iterator[tuple[str, RegOp]]:
        for i, (_, ln) in enumerate((n, ln) for n, ln in read_lines(stream) if ln.register):
            wanted[i] = ln.value
            # Deleted in the file: only read (absent here too is "the same").
            yield ln.key, (RegOp(GET) if ln.value is None
                           else RegOp(CAS_VALUE, ln.value, expect_value=None))

    for i, r, _ in client.register_stream(registers(), concurrency):
        want = wanted.pop(i)
        if r.status == OK and r.kind != GET:
            rep.imported += 1
        elif r.status in (OK, CAS_FAILED) and r.value == want:
            rep.same += 1
        elif r.status in (OK, CAS_FAILED):
            differ(f"register {r.key}: holds {shown(r.value)} (version {r.version}), the file "
                   f"has {shown(want)}; kept")
        else:
            rep.failed += 1
        step(1)
    rep.seconds = time.monotonic() - t0
    return rep

