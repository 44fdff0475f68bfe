"""A node following the membership chain (runtime/members.py): when a link is chosen,
the node moves to it, fences older proposers, makes the new members its peers, and stops
if it is left out. A part of :class:`~zpaxos.runtime.node.Node`."""

from __future__ import annotations

import logging

from zpaxos.hosts.acceptor_host import AcceptorHost
from zpaxos.hosts.admission import Admission
from zpaxos.naming import node_name
from zpaxos.protocol.membership import Config
from zpaxos.runtime import members as members_chain
from zpaxos.runtime.config import NodeConfig
from zpaxos.runtime.log import EventLog
from zpaxos.runtime.sockets import Sockets


class FollowsChain:
    """What the node keeps of the chain; the node sets these fields."""

    members: Config | None
    cfg: NodeConfig
    admission: Admission
    host: AcceptorHost
    sockets: Sockets | None
    peer_names: dict[int, str]
    log: EventLog
    removed_at: int | None

    def _learn_members(self, key: str, value: bytes) -> bool:
        """A link of the membership chain was chosen: move to it if it is newer (True).
        The epoch then fences older proposers (admission), and the new members are peers."""
        epoch = members_chain.epoch_of(key)
        try:
            cfg = members_chain.decode(value)
        except ValueError as e:
            self.log.event("members_unreadable", str(e), logging.WARNING, key=key)
            return False
        if epoch != cfg.epoch or (self.members is not None and epoch <= self.members.epoch):
            return False
        self.members = cfg
        me = self.cfg.id
        self.admission.epoch = cfg.epoch
        self.admission.config = members_chain.encode(cfg)
        peers = [m for m in cfg.members if m.id != me]
        self.admission.members = frozenset(m.id for m in peers)
        if self.host.follower is not None:  # catch up from the members, new ones included
            self.host.follower.peers = tuple(m.id for m in peers)
        if self.sockets is not None:
            self.sockets.wire.epoch = cfg.epoch
            for m in peers:
                added = self.sockets.add_node(
                    m.id, members_chain.endpoint_of(m),
                    m.public_key.encode() if m.public_key is not None else None)
                if added:
                    self.peer_names[m.id] = node_name(m.id)
        self.log.event("members_changed", epoch=cfg.epoch,
                       members=[m.id for m in cfg.members], prepare=list(cfg.prepare),
                       accept=list(cfg.accept))
        if cfg.member(me) is None:
            # Out of both sides: no proposer counts this node any more. It stops, and a
            # later start says it is no member (members_chain.NotAMember); its data stays on disk.
            self.log.event("members_removed", level=logging.WARNING, epoch=cfg.epoch)
            self.removed_at = cfg.epoch
            if self.sockets is not None and self.sockets.wakeup is not None:
                self.sockets.wakeup.request_stop()
        return True
