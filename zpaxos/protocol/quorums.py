"""Who counts in each phase of a round: what a proposer needs of a configuration.

During a membership change the prepare and accept sides differ (protocol/membership.py's
``Config`` has these fields); without one, every acceptor counts in both, by majorities.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Quorums(Protocol):
    """Who counts in each phase (protocol/membership.Config has these fields)."""

    @property
    def prepare(self) -> Sequence[int]: ...
    @property
    def prepare_quorum(self) -> int: ...
    @property
    def accept(self) -> Sequence[int]: ...
    @property
    def accept_quorum(self) -> int: ...
