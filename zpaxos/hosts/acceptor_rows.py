"""The acceptor host's hot path: a run of Prepares, Accepts or Decides as columns
(colmessages.py) through the core's row rules in one loop (:class:`RowsMixin`), and what
the host takes one message at a time instead (:func:`unpacked`).

Its own module so that the host (acceptor_host.py) stays one screenful per part; the
rules themselves are the core's (``Acceptor.prepare_rows``, ``accept_rows``,
``decide_rows``), which a one-key message goes through too.
"""

from __future__ import annotations

from collections.abc import Iterable

from zpaxos.hosts.acceptor_ready import (
    _REPLY_OUTCOME,
    CONFLICT,
    KNOWN,
    LEARNED,
    Ready,
    StateSource,
)
from zpaxos.hosts.addresses import Src
from zpaxos.protocol.columns import ROWS_OF, Replies, rows
from zpaxos.protocol.core import Acceptor
from zpaxos.protocol.events import Event, Learned
from zpaxos.protocol.messages import (
    COLUMN_TYPES,
    Accepts,
    Decide,
    Decides,
    Message,
    Prepares,
)

__all__ = ["COLUMNS", "RowsMixin", "unpacked"]

COLUMNS = frozenset(COLUMN_TYPES)


def unpacked(batch: Iterable[tuple[Src, Message]], check_decides: bool,
             ) -> list[tuple[Src, Message]]:
    """``batch`` with each column message that is no run for the row rules as its rows
    (replies meant for a proposer, ignored one by one; with ``check_decides``, Decides,
    which a client's must be checked with the peers one by one)."""
    out: list[tuple[Src, Message]] = []
    for src, msg in batch:
        t = type(msg)
        if t not in COLUMNS or t is Accepts or t is Prepares or (
                t is Decides and not check_decides):
            out.append((src, msg))
        else:
            out.extend((src, m) for m in rows(msg))
    return out


class RowsMixin:
    """Part of :class:`~zpaxos.hosts.acceptor_host.AcceptorHost`: runs of rows."""

    acceptor: Acceptor
    source: StateSource | None
    handled: dict[tuple[type, str], int]
    created_keys: int
    _pass_new: list[str]
    _new_keys: list[str]
    _new_chosen: list[str]

    def _apply_rows(self, src: Src, msg: Prepares | Accepts | Decides, ready: Ready) -> None:
        """A run of Prepares, Accepts or Decides from ``src``, through the core's row
        rules in one loop; the replies go back to ``src`` as columns too. What becomes
        of it (states, replies, counts, indexes) is what its rows one at a time make."""
        acceptor = self.acceptor
        states = acceptor.states
        keys = msg.keys
        fresh = [k for k in dict.fromkeys(keys) if k not in states]
        handled = self.handled
        if type(msg) is Decides:
            events: list[Event] = []
            persist = acceptor.decide_rows(keys, msg.values, msg.ballots, events)
            done, lazy = ready.persist, ready.lazy
            for key, state in persist:
                # A decision alone may wait for a later commit (Ready.lazy); the latest
                # state of a key in this pass wins.
                if key in done:
                    done[key] = state
                else:
                    lazy[key] = state
            learned = 0
            for ev in events:
                ready.events.append((src, ev))
                if type(ev) is Learned:
                    learned += 1
                    ready.learned.append((ev.key, ev.value))
                    if self.source is None:
                        self._new_chosen.append(ev.key)
            counts = {LEARNED: learned, CONFLICT: len(events) - learned}
            counts[KNOWN] = len(keys) - len(events)
            for outcome, n in counts.items():
                if n:
                    handled[Decide, outcome] = handled.get((Decide, outcome), 0) + n
        else:
            out = Replies(columns=True)
            if type(msg) is Accepts:
                persist = acceptor.accept_rows(keys, msg.ballots, msg.values, out)
            else:
                persist = acceptor.prepare_rows(keys, msg.ballots, out)
            done, lazy = ready.persist, ready.lazy
            for key, state in persist:
                done[key] = state
                if lazy:
                    lazy.pop(key, None)
            one = ROWS_OF[type(msg)]
            send = ready.send
            for reply in out.messages():
                send.append((src, reply))  # the core answers the sender
                k = (one, _REPLY_OUTCOME[ROWS_OF[type(reply)]])
                handled[k] = handled.get(k, 0) + len(reply.keys)  # type: ignore[union-attr]
        if fresh:
            created = [k for k in fresh if k in states]  # the first states of new keys
            self.created_keys += len(created)
            if self.source is not None:
                self._pass_new.extend(created)
            else:
                self._new_keys.extend(created)

