"""The records a log is read into: events, messages and lifeline marks, and their names.

logmodel.py fills them from a JSON log, marks.py turns events into marks; the charts
(chartmodel.py and the renderers) read them. Nothing here reads a file or draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zpaxos.naming import as_node_name, node_id_of
from zpaxos.naming import is_node as is_node  # re-exported for the pictures
from zpaxos.naming import is_proposer as is_proposer
from zpaxos.protocol import registry

PAXOS_TYPES = registry.PAXOS_TYPES
DRAWN_TYPES = registry.DRAWN_TYPES  # Paxos, and the runtime exchanges a run's story needs
MAX_TS = 1e10  # year 2286: a larger "ts" is garbage, and localtime() would fail on it

# Bookkeeping; ``dropped`` (the simulator's network lost a message) shows on its arrow.
NOT_DRAWN = ("persisted", "value_file", "value_file_failed", "ignored", "dropped")

# What became of a message that was never received (Message.fate).
DELIVERED = ""
LOST = "lost"  # the network lost it (a simulated log says so), or nothing in the log explains it
UNDELIVERABLE = "undeliverable"  # its sender's socket refused it (``undeliverable`` event)
RECEIVER_DOWN = "receiver down"  # sent to a node that was not running
NOT_SENT = "not sent"  # its proposer finished and exited before the message left
UNREAD = "unread"  # a reply to a proposer that had already finished



class TraceError(Exception):
    """A user-facing problem with the log or the options: one line, no traceback."""


@dataclass(frozen=True)
class Event:
    """One valid log line; ``line`` (1-based) breaks ties between equal timestamps."""

    ts: float
    process: str
    name: str
    fields: dict[str, Any]
    line: int

    @property
    def key(self) -> str | None:
        k = self.fields.get("key")
        return k if isinstance(k, str) else None

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]


@dataclass
class Message:
    """A message: its send, and its receive unless it was never received (see ``fate``)."""

    type: str
    sender: str
    receiver: str
    msg_id: str
    key: str | None
    sent: float
    fields: dict[str, Any]
    line: int
    received: float | None = None
    recv_line: int = 0
    fate: str = DELIVERED  # LOST, UNDELIVERABLE, RECEIVER_DOWN, NOT_SENT or UNREAD
    why: str = ""  # the socket's own words for an undeliverable message

    @property
    def lost(self) -> bool:
        """Never received, for whatever reason (``fate`` says which)."""
        return self.received is None

    @property
    def fault(self) -> bool:
        """Never received and nothing explains it but a fault: only these count as lost.
        An answer nobody waited for, or a message its proposer never got to send, is not."""
        return self.lost and self.fate in (LOST, UNDELIVERABLE)


@dataclass
class Mark:
    """Something that happened on one lifeline: ``kind`` picks the symbol."""

    kind: str  # start stop crash restart round adopted pause backoff retry chosen
    #            learns (a proposer told by a DECIDE) gave_up applied learned conflict malformed
    process: str
    ts: float
    text: str
    line: float
    key: str | None = None
    until: float | None = None  # end of a pause or backoff box
    value: str | None = None
    via: list[Message] = field(default_factory=list)  # learned: the sync exchange it came by



def node_name(v: Any) -> str:
    """Events name nodes ``node1``; older logs gave an acceptor's number (1)."""
    return as_node_name(v)


def node_order(process: str) -> tuple[int, int, str]:
    i = node_id_of(process)
    return (0, i, "") if i is not None else (1, 0, process)


def num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def gap(s: float) -> str:
    """A span of time, for labels: '600 ms', '2.70 s', '75 s'."""
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s" if s < 100 else f"{s:.0f} s"
