"""Batches on the wire: encode, send and log them; decode and log what arrives.

The socket layer (:mod:`zpaxos.runtime.sockets`) owns the sockets and the poll loop and
hands each received frame, and each batch to send, to one :class:`Wire` per process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any, TypeAlias

import zmq

from zpaxos.hosts.addresses import Caller, Src
from zpaxos.naming import node_name, proposer_name
from zpaxos.protocol.columns import expand, pack, row_count
from zpaxos.protocol.messages import Message
from zpaxos.protocol.registry import FRAME_COUNT, spec_of, type_name
from zpaxos.protocol.registry import log_fields as message_fields
from zpaxos.runtime import codec
from zpaxos.runtime.log import EventLog

Sock: TypeAlias = "zmq.Socket[bytes]"

# pyzmq's flags are enum members, whose conversion is a Python call: plain ints here.
_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)

PEER_NAMES_CACHED = 4096  # routing ids whose readable names are kept (a bounded cache)


def src_name(src: Src) -> str:
    """A readable name for a message's source or destination (logs only)."""
    return peer_name(src.ident) if isinstance(src, Caller) else node_name(src)


@lru_cache(maxsize=PEER_NAMES_CACHED)
def peer_name(ident: bytes) -> str:
    """A readable name for whoever holds routing id ``ident`` (a stranger shows as hex).
    Cached: a node logging at INFO names the sender of every batch it receives."""
    try:
        kind, who, *_ = ident.decode("ascii").split(":")
        if kind == "p" and len(who) == 16:
            return proposer_name(bytes.fromhex(who[:4]))
        if kind == "n" and who.isdigit():
            return node_name(int(who))
    except (UnicodeDecodeError, ValueError):
        pass
    return f"unknown {ident[:16].hex()}"


class Wire:
    """Encodes, sends and logs batches for one process; decodes and logs what arrives.

    ``prefix`` names this sender in every batch, so message ids ("n0:17", "3f2a9c01:3")
    are unique per sender; ``sent`` counts messages, so ids run on across batches.
    Logging costs nothing per message unless its level is on.
    """

    def __init__(self, log: EventLog, prefix: str) -> None:
        self.log = log
        self.prefix = prefix
        self.sent = 0
        # The membership epoch stamped on every frame sent (0: none), and the one the
        # last frame parsed carried (runtime/members.py; admission checks it).
        self.epoch = 0
        self.last_epoch = 0
        self.malformed = 0
        self.malformed_by: dict[str, int] = {}  # the same, by DecodeError.reason
        self.undeliverable = 0
        # Why the last frame from each node (a DEALER's source: a node id, so bounded)
        # was dropped: a client can then say "its reply could not be read", not "down".
        self.unreadable: dict[int, str] = {}

    def send(self, sock: Sock, msgs: Sequence[Message], dst: Src,
             ident: bytes | None = None) -> bool:
        """Send without blocking; a batch that cannot leave is logged, never hangs us.

        Each run of one hot one-key type leaves as one column message (columns.pack);
        ids and the log count rows, so a message has the id, and the log the lines, it
        would have as a one-key message. Each send is logged just before its batch
        leaves, so in the log every send comes before its receive; a batch that then
        fails is logged again, message by message, as undeliverable."""
        if not msgs:
            return True
        packed, count = pack(msgs)
        first = self.sent
        self.sent += count
        if self.log.enabled(logging.INFO):  # else no message of the batch is logged
            peer = src_name(dst)
            for msg, level, msg_id in self._loggable(packed, self.prefix, first):
                self.log.event("send", level=level, type=type_name(msg), msg_id=msg_id,
                               peer=peer, **message_fields(msg))
        frame = codec.encode_frame(self.prefix, first, packed, self.epoch)
        if frame is not None:  # the common case: the batch fits one frame
            return self._send(sock, frame, ident, packed, first, dst)
        done = 0
        each = list(expand(packed))  # else one-key messages, as many frames as it takes
        for frame, part in codec.encode_batch(self.prefix, first, each, self.epoch):
            # The rest is not even encoded once one fails: a peer that never reads costs
            # at most its queue (SNDHWM frames), however much one pass had for it.
            if not self._send(sock, frame, ident, each[done:], first + done, dst):
                return False
            done += len(part)
        return True

    def _send(self, sock: Sock, frame: bytes, ident: bytes | None, msgs: Sequence[Message],
              first: int, dst: Src) -> bool:
        """One frame (``msgs`` onward are logged as undeliverable if it cannot leave)."""
        try:
            if ident is not None:
                # As send_multipart does, minus its type checks: a ROUTER refuses (or
                # takes) a message at its first part, so the body never fails alone.
                sock.send(ident, _NOBLOCK_MORE)
            sock.send(frame, _NOBLOCK)
        except zmq.ZMQError as e:
            self._undeliverable(e, msgs, first, src_name(dst))
            return False
        return True

    def _undeliverable(self, e: zmq.ZMQError, msgs: Sequence[Message], first: int,
                       peer: str) -> None:
        self.undeliverable += sum(map(row_count, msgs))  # rows, as ids count them
        gone = e.errno == zmq.EHOSTUNREACH
        why = ("peer has gone away" if gone else
               "send queue full" if e.errno == zmq.EAGAIN else e.strerror)
        # A peer that has gone away is normal: a proposer leaves once a quorum answered,
        # before the slower nodes' replies reach it (and a restarted peer reconnects
        # under a new routing id). Paxos needs no reply to arrive. A full queue is not.
        level = logging.DEBUG if gone else logging.WARNING
        if not self.log.enabled(level):
            return
        for msg, _, msg_id in self._loggable(msgs, self.prefix, first, level):
            self.log.event("undeliverable", why, level, type=type_name(msg),
                           msg_id=msg_id, peer=peer, **message_fields(msg))

    def _loggable(self, msgs: Sequence[Message], sender: str, first: int,
                  at: int | None = None) -> Iterator[tuple[Message, int, str]]:
        """The one-key messages of a batch (a column message's rows, in order) whose
        level is on (or ``at``), with that level and their ids."""
        enabled = self.log.enabled
        seq = first
        for msg in expand(msgs):
            seq += 1
            level = _level(msg) if at is None else at
            if at is not None or enabled(level):
                yield msg, level, codec.msg_id(sender, seq)

    def parse(self, frames: Sequence[Any], src: Src) -> list[Message]:
        """Decode one received batch; garbage is the peer's fault: log it, count it, drop
        it (the whole frame)."""
        try:
            if len(frames) != 1:
                raise codec.DecodeError(f"expected 1 frame, got {len(frames)}", FRAME_COUNT)
            batch = codec.decode_batch(frames[0])
        except codec.DecodeError as e:
            self.malformed += 1
            self.malformed_by[e.reason] = self.malformed_by.get(e.reason, 0) + 1
            self.log.event("malformed", str(e), logging.WARNING, peer=src_name(src),
                           dropped=self.malformed)
            if type(src) is int:
                self.unreadable[src] = str(e)
            return []
        msgs = batch.messages
        self.last_epoch = batch.epoch
        if self.log.enabled(logging.INFO):  # else no message of the batch is logged
            peer = src_name(src)
            for msg, level, msg_id in self._loggable(msgs, batch.sender, batch.first_seq):
                self.log.event("recv", level=level, type=type_name(msg), msg_id=msg_id,
                               peer=peer, **message_fields(msg))
        return msgs


def _level(msg: Message) -> int:
    """What charts draw is the story of a run (INFO: Paxos, a restarted node's sync, a
    node checking a client's Decide); status traffic is plumbing (DEBUG)."""
    return logging.INFO if spec_of(msg).drawn else logging.DEBUG
