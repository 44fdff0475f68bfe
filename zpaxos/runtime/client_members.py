"""A client's view of the cluster's membership (runtime/members.py): which configuration
it is in, asking the members, and moving to the configuration a refusal carries. A part of
:class:`~zpaxos.runtime.client.Client`, kept apart to keep that module small."""

from __future__ import annotations

import time
from collections.abc import Iterable

from zpaxos.protocol.membership import Config
from zpaxos.protocol.messages import MembersAsk, MembersInfo
from zpaxos.runtime import members as members_chain
from zpaxos.runtime.config import ClusterConfig
from zpaxos.runtime.log import EventLog
from zpaxos.runtime.sockets import Sockets


class FollowsMembers:
    """What the client needs: its sockets, its cluster (replaced as members change), its
    log; ``members``: the configuration it is in (None: the config file's nodes, and
    frames that carry no epoch)."""

    sockets: Sockets
    cluster: ClusterConfig
    log: EventLog
    members: Config | None
    quorum: int

    def _stop(self) -> None:
        """A signal asked us to stop (raises Interrupted: the client's)."""
        raise NotImplementedError

    def adopt(self, infos: Iterable[MembersInfo]) -> Config | None:
        """Move to the newest configuration ``infos`` carry, if it is newer than ours:
        reach its members (with CURVE, by the keys it lists), stamp its epoch on every
        frame. Returns it, or None when nothing changed. A configuration that does not
        decode is a broken node's: ignored."""
        best: Config | None = None
        for info in infos:
            if info.config and info.epoch > (best.epoch if best else self.epoch):
                try:
                    cfg = members_chain.decode(info.config)
                except ValueError:
                    continue
                if cfg.epoch == info.epoch:
                    best = cfg
        if best is None or best.epoch <= self.epoch:
            return None
        self.use(best)
        return best

    def use(self, best: Config) -> None:
        """Move to configuration ``best`` (newer than ours: the caller checked)."""
        for m in best.members:
            key = m.public_key.encode() if m.public_key is not None else None
            self.sockets.add_node(m.id, members_chain.endpoint_of(m), key)
        self.members = best
        self.cluster = members_chain.apply(self.cluster, best)
        self.quorum = len(best.members) // 2 + 1
        self.sockets.wire.epoch = best.epoch
        self.log.event("members_changed", epoch=best.epoch,
                       members=[m.id for m in best.members], prepare=list(best.prepare),
                       accept=list(best.accept))

    @property
    def epoch(self) -> int:
        return self.members.epoch if self.members is not None else 0

    def ask_members(self, timeout_s: float = 1.0) -> dict[int, MembersInfo]:
        """Ask every node we know which configuration it is in (and adopt the newest);
        the answers by node id, from those that answered within ``timeout_s``."""
        got: dict[int, MembersInfo] = {}
        asked = {n.id for n in self.cluster.nodes}
        self.sockets.send_all((i, MembersAsk(self.epoch)) for i in asked)
        deadline = time.monotonic() + timeout_s
        while asked - got.keys():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for src, msg in self.sockets.poll(left):
                if type(src) is int and type(msg) is MembersInfo and msg.node == src:
                    got[src] = msg
            if self.sockets.stop_requested:
                self._stop()
        if self.adopt(got.values()) is not None:  # new (or moved) members: ask them too
            more = {n.id for n in self.cluster.nodes} - got.keys()
            if more:
                self.sockets.send_all((i, MembersAsk(self.epoch)) for i in more)
                end = time.monotonic() + timeout_s
                while more - got.keys() and time.monotonic() < end:
                    for src, msg in self.sockets.poll(end - time.monotonic()):
                        if type(src) is int and type(msg) is MembersInfo and msg.node == src:
                            got[src] = msg
        return got

