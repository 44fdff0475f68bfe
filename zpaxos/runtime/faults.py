"""Crash points for fault injection, chosen from the environment (tests only).

The runtime calls :func:`crash_point` at the moments where a crash is most likely to
break durability; a nemesis test picks one by name for one node process:

    ZPAXOS_CRASH_AT=after_commit ZPAXOS_CRASH_AFTER=3 zpaxos node 1 --config F

kills node 1 (``os._exit``, no cleanup, no flush: as close to ``kill -9`` as a process can
do to itself) the third time it reaches ``after_commit``. The environment is read once, at
import; without ``ZPAXOS_CRASH_AT`` a crash point costs one comparison.

The names, and where the runtime places them:

    before_commit       the pass's state changes are staged, the transaction not committed
    after_commit        committed and fsynced, no reply of the pass sent yet
    mid_value_write     a value file's temporary copy is half written, not yet renamed
    mid_fold            a slice of a fold written into state.db's open transaction, the
                        fold not committed (zpaxos/runtime/storage_fold.py)
    after_fold          a fold committed, the journal it came from not yet emptied
"""

from __future__ import annotations

import os
import sys

from zpaxos.runtime.exits import Exit

CRASH_POINTS = ("before_commit", "after_commit", "mid_value_write", "mid_fold",
                "after_fold")
CRASH_EXIT_CODE = Exit.CRASH_POINT  # 99: tells a test "died at the crash point", not of a bug

ENV_AT = "ZPAXOS_CRASH_AT"
ENV_AFTER = "ZPAXOS_CRASH_AFTER"

_hits: dict[str, int] = {}


def _armed() -> tuple[str, int] | None:
    name = os.environ.get(ENV_AT, "")
    if not name:
        return None
    try:
        after = max(1, int(os.environ.get(ENV_AFTER, "1")))
    except ValueError:
        after = 1
    return name, after


# Read once: a process's crash point is chosen when it starts, and an unarmed call (the
# normal case, on the node's hot path) must cost next to nothing.
_ARMED = _armed()


def crash_point(name: str) -> None:
    """Exit at once with CRASH_EXIT_CODE if the environment arms ``name`` and this is its
    ``ZPAXOS_CRASH_AFTER``-th hit (default the first)."""
    armed = _ARMED
    if armed is None or armed[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= armed[1]:
        try:
            sys.stderr.write(f"crash point {name} (hit {_hits[name]}): exiting\n")
            sys.stderr.flush()
        finally:
            os._exit(CRASH_EXIT_CODE)
