"""One-key messages <-> column messages (colmessages.py), and the column replies' builder.

* :func:`pack`: a pass's messages to one peer, with every run of one hot type (Prepare,
  Promise, Accept, Accepted, Nack, Decide) made one column message (a run of one stays
  what it is: one key is cheaper as its own message). Only *runs* are packed, so the
  order of the messages is kept exactly: a column message stands for its rows, in
  order, where they were.
* :func:`rows`: a column message's rows as one-key messages (logs, traces, tests, and
  the rare paths that take one message at a time); any other message is its own row.
* :class:`Replies`: what the core's row rules answer, as one-key messages or as column
  messages (one per run of one reply type, so the order is the rows' order).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgspec

from zpaxos.protocol.colmessages import (
    COLUMN_TYPES,
    Accepteds,
    Accepts,
    ColumnMessage,
    Decides,
    Nacks,
    Prepares,
    Promises,
)
from zpaxos.protocol.messages import (
    Accept,
    Accepted,
    Decide,
    Message,
    Nack,
    Prepare,
    Promise,
)

__all__ = ["COLUMNS_OF", "ROWS_OF", "ColumnMessage", "Replies", "expand", "is_columns", "pack",
           "row_count", "rows"]

# A one-key type -> its column type, and back.
COLUMNS_OF: dict[type, type] = {Prepare: Prepares, Promise: Promises, Accept: Accepts,
                                Accepted: Accepteds, Nack: Nacks, Decide: Decides}
ROWS_OF: dict[type, type] = {c: r for r, c in COLUMNS_OF.items()}
_COLUMN_SET = frozenset(COLUMN_TYPES)


def pack(msgs: Sequence[Message]) -> tuple[list[Message], int]:
    """``msgs`` with each run of two or more of one hot one-key type as one column
    message (the rest, column messages included, as they are), and how many rows they
    all stand for."""
    out: list[Message] = []
    columns_of = COLUMNS_OF
    column_set = _COLUMN_SET
    n = len(msgs)
    count = 0
    i = 0
    while i < n:
        m = msgs[i]
        t = type(m)
        cols = columns_of.get(t)
        if cols is None:
            out.append(m)
            count += len(m.keys) if t in column_set else 1  # type: ignore[union-attr]
            i += 1
            continue
        j = i + 1
        while j < n and type(msgs[j]) is t:
            j += 1
        if j - i == 1:
            out.append(m)  # a run of one: its one-key message is the cheaper of the two
        else:  # the rows' fields, each as one column (a Struct's fields are its columns)
            out.append(cols(*zip(*[_fields(m) for m in msgs[i:j]], strict=True)))
        count += j - i
        i = j
    return out, count


_fields = msgspec.structs.astuple


def rows(msg: Message) -> list[Message]:
    """The one-key messages ``msg`` stands for, in order (``[msg]`` for any other)."""
    t = ROWS_OF.get(type(msg))
    if t is None:
        return [msg]
    cols = [getattr(msg, f) for f in msg.__struct_fields__]
    return [t(*row) for row in zip(*cols, strict=True)]


def row_count(msg: Message) -> int:
    """How many one-key messages ``msg`` stands for."""
    return len(msg.keys) if type(msg) in _COLUMN_SET else 1  # type: ignore[union-attr]


def expand(msgs: Iterable[Message]) -> Iterator[Message]:
    """Every message's rows, in order."""
    for m in msgs:
        yield from rows(m)


class Replies:
    """The replies of one run of rows (the core's ``*_rows`` rules), in order: as one-key
    messages (``columns=False``: a one-key message's handler) or as column messages, one
    per run of one reply type. ``add`` takes a reply's type (its one-key class) and its
    fields in that class's order."""

    __slots__ = ("columns", "out", "_type", "_rows")

    def __init__(self, columns: bool) -> None:
        self.columns = columns
        self.out: list[Message] = []
        self._type: type | None = None
        self._rows: list[tuple[Any, ...]] = []

    def add(self, t: type, *fields: Any) -> None:
        if not self.columns:
            self.out.append(t(*fields))
            return
        if t is not self._type:
            self._close()
            self._type = t
        self._rows.append(fields)  # a row now, its fields made columns once the run ends

    def _close(self) -> None:
        if self._type is not None:
            self.out.append(COLUMNS_OF[self._type](*zip(*self._rows, strict=True)))
            self._type = None
            self._rows = []

    def messages(self) -> list[Message]:
        """The replies, once every row was added."""
        self._close()
        return self.out


def is_columns(msg: Message) -> bool:
    return type(msg) in _COLUMN_SET
