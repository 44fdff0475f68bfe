"""What ``zpaxos propose`` shows on stderr by default: one line per round.

The proposer logs every message it sends and receives (the log file keeps all of them;
``-v`` shows them on stderr). A student running one proposal wants the shape of the
run instead, so this handler folds a round's events into one line::

    round 1, ballot 1.3f2a: Prepare to 3 nodes, 3 promises; Accept to 3 nodes, 2 accepted:
      chosen: Value_A
    round 1, ballot 1.9c41: Prepare to 3 nodes, 1 promise, 2 rejections (node1 promised
      2.3f2a): retry in 0.04 s
    round 2, ballot 3.9c41: Prepare to 3 nodes, 3 promises; adopted Value_A (accepted at
      2.3f2a); Accept to 3 nodes, 3 accepted: chosen: Value_A

(each one line on the screen). It reads the same events the log gets, so it needs no hook
in the proposer.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from zpaxos.naming import as_node_name
from zpaxos.pictures.explain import with_node_names
from zpaxos.printable import printable, value_text


def _value(v: Any) -> str:
    """A value as every command shows it (a log event holds bytes, or text)."""
    return value_text(v) if isinstance(v, (bytes, str)) else printable(v)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _rejections(nacks: dict[str, str]) -> list[str]:
    if not nacks:
        return []
    peer, promised = next(iter(nacks.items()))
    return [f"{_plural(len(nacks), 'rejection')} ({peer} promised {promised})"]


class _Round:
    def __init__(self, number: Any, ballot: str) -> None:
        self.number = number
        self.ballot = ballot
        self.prepares: set[str] = set()
        self.promises: set[str] = set()
        self.nacks: dict[str, str] = {}  # rejections of the Prepare
        self.accepts: set[str] = set()
        self.accept_nacks: dict[str, str] = {}
        self.accepted: set[str] = set()
        self.notes: list[str] = []


class RoundSummary(logging.Handler):
    """A logging handler that prints one line per proposer round to ``stream``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.round: _Round | None = None
        self.done = False

    def _write(self, line: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._on(getattr(record, "event", ""), getattr(record, "fields", {}))
        except Exception:  # noqa: BLE001 -- a display problem must never break a proposal
            self.handleError(record)

    def _on(self, event: str, f: dict[str, Any]) -> None:
        if self.done:
            return
        if event == "round":
            self.round = _Round(f.get("round"), str(f.get("ballot")))
            return
        r = self.round
        if r is None:
            return
        if event in ("send", "recv"):
            self._message(r, event, str(f.get("type")), str(f.get("peer")), f)
        elif event == "adopted":
            r.notes.append(f"adopted {_value(f.get('value'))} (accepted at "
                           f"{f.get('from_ballot')})")
        elif event == "pause":
            r.notes.append(f"pause {f.get('seconds')} s")
        elif event == "retry":
            self._flush(r, self._retry_text(f))
        elif event == "chosen":
            told = f.get("told_by")
            if told is not None:
                self._flush(r, f"{as_node_name(told)} says {_value(f.get('value'))} was already "
                               f"chosen (at {f.get('chosen_ballot')})")
            else:
                self._flush(r, f"chosen: {_value(f.get('value'))}")
            self.done = True
        elif event == "gave_up":
            self._flush(r, f"gave up: {printable(with_node_names(str(f.get('reason'))))}")
            self.done = True

    def _message(self, r: _Round, event: str, kind: str, peer: str, f: dict[str, Any]) -> None:
        same_round = str(f.get("ballot")) == r.ballot
        if event == "send" and kind == "PREPARE":
            r.prepares.add(peer)
        elif event == "send" and kind == "ACCEPT":
            r.accepts.add(peer)
        elif event == "recv" and kind == "PROMISE" and same_round:
            r.promises.add(peer)
        elif event == "recv" and kind == "NACK" and same_round:
            (r.accept_nacks if r.accepts else r.nacks)[peer] = str(f.get("promised"))
        elif event == "recv" and kind == "ACCEPTED" and same_round:
            r.accepted.add(peer)

    @staticmethod
    def _retry_text(f: dict[str, Any]) -> str:
        backoff = f.get("backoff_s") or 0
        silent = f.get("no_reply_from")
        when = f"in {backoff:.2f} s" if backoff else "at once"
        if silent:
            nodes = ", ".join(as_node_name(n) for n in silent)
            return f"no reply in time from {nodes}: retry {when}"
        return f"retry {when}"  # after a rejection, which the line already shows

    def _flush(self, r: _Round, end: str) -> None:
        phases = []
        if r.prepares:
            p = [f"Prepare to {_plural(len(r.prepares), 'node')}", _plural(len(r.promises),
                                                                           "promise")]
            p += _rejections(r.nacks)
            phases.append(", ".join(p))
        if r.notes:
            phases.append(", ".join(r.notes))
        if r.accepts:
            p = [f"Accept to {_plural(len(r.accepts), 'node')}", f"{len(r.accepted)} accepted"]
            p += _rejections(r.accept_nacks)
            phases.append(", ".join(p))
        self._write(f"round {r.number}, ballot {r.ballot}: {'; '.join(phases)}: {end}")
        self.round = None
