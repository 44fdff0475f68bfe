"""The garbage collector of a process that is zpaxos's own (a node): never of a caller's.

A node keeps what it loaded at start (its modules, its config, the host's tables) for its
whole life, and Python's cyclic collector walks every tracked object of an older
generation each time that generation is collected. ``gc.freeze()`` once the node is up
moves all of them to the permanent generation, so a collection walks only what the loop
allocated since; and the young generation's threshold is raised, because a pass
allocates a few hundred short-lived objects (decoded messages, states, replies) that
reference counting frees and that are almost never in a cycle. The library (``Client``)
never does this: a library does not change the collector of its caller's process.
"""

from __future__ import annotations

import gc

__all__ = ["NODE_GC_YOUNG", "own_process_gc"]

# Allocations (net of frees) between young-generation collections in a node: Python's
# default is 700, about one pass of 64 keys.
NODE_GC_YOUNG = 10_000


def own_process_gc(young: int = NODE_GC_YOUNG) -> int:
    """Collect once, freeze what survives, and raise the young generation's threshold
    (the older generations' stay Python's); return how many objects were frozen."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young, older, oldest)
    return gc.get_freeze_count()
