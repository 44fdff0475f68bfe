"""Every kind of event a zpaxos log can hold, in one table: the typed events of the core
and the hosts (zpaxos/protocol/events.py, each class names its own) and the events the
runtime and the commands log by name (``log.event("send", ...)``).

tests/test_log_events.py checks that every ``log.event("...")`` in the code names a kind
listed here, that every kind listed here is logged somewhere, and that the README's list
of log events (section "Logs") is exactly this table.
"""

from __future__ import annotations

from zpaxos.protocol import events as _typed

# Logged by name, by the runtime and the commands.
LOGGED: dict[str, str] = {
    "start": "a process started (a node, or a proposer with its key and value)",
    "stop": "a process stopped (a proposer: its rounds, or that it was interrupted)",
    "send": "a Paxos message sent (type, ballot, value, peer, message id)",
    "recv": "a Paxos message received",
    "persisted": "a node's pass made its state durable before replying",
    "value_file": "a node wrote <key>.txt",
    "value_file_failed": "a node could not write <key>.txt",
    "malformed": "a frame that is not a valid message was dropped",
    "undeliverable": "a message that could not be sent (the peer's queue full, or gone)",
    "refused": "CURVE: a peer whose key is not listed, or a node that refused us",
    "storage_error": "what stopped a node (see runtime/storage_errors.py)",
    "started_new": "a node started empty on purpose with --new",
    "admitted": "its peers confirmed a (re)started node; the phase it enters",
    "voting": "a --new node learned every decision and votes",
    "peer_refused": "a peer's Hello was refused: rolled back, replaced or retired",
    "peer_new_incarnation": "a peer rejoined with --new",
    "caught_up": "a node learned decisions or register states it missed, from a peer",
    "catch_up_cursors_unreadable": "a node's catch-up cursors could not be read",
    "catch_up_cursors_unsaved": "a node's catch-up cursors could not be saved",
    "lock_acquired": "a lock or a leadership was taken (its name, holder, fencing token)",
    "lock_lost": "a holder's lease was lost (why), or another took the lock",
    "lock_released": "a holder freed its lock (or resigned), or handed it over to the next waiter",
    "members_changed": "a node moved to a newer membership configuration (its epoch)",
    "members_removed": "the new configuration leaves this node out",
    "members_unreadable": "a chain key's value is no configuration (ignored)",
    "members_step": "zpaxos members: a reconfiguration step proposed, or waited for",
    "members_settled": "zpaxos members: the state moved into a configuration (its epoch)",
}

# The typed events: name -> the first line of the class's docstring.
TYPED: dict[str, str] = {
    c.name: (c.__doc__ or "").strip().splitlines()[0]
    for c in vars(_typed).values()
    if isinstance(c, type) and issubclass(c, _typed.Event) and c is not _typed.Event
}

EVENT_KINDS: dict[str, str] = {**TYPED, **LOGGED}
assert len(EVENT_KINDS) == len(TYPED) + len(LOGGED), "a kind declared twice"
