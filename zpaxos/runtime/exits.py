"""Every exit code of every zpaxos process, declared once: each number means one thing.

The commands (zpaxos/cli/), the node's storage errors (storage_errors.py), the scenario
runner and the crash points of the tests all exit with a member of :class:`Exit`. The
README's exit-code table is :func:`markdown_table` (tests/test_exit_codes.py checks it),
so the docs cannot drift from the code.

3-7 are the node's storage errors, kept as they have always been: operators' runbooks
and the systemd unit (``RestartPreventExitStatus=2 3 4``) depend on them; 8 and 9 are
left free for more of them. The outcomes of the client commands that are neither success
nor plain failure sit above them, at 10-12, so that a number never means one thing for
``node`` and another for ``status`` or ``cas``.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    STATE_DAMAGED = 3
    STATE_LOST = 4
    NOT_WRITABLE = 5
    DISK_FULL = 6
    CHANGED_UNDERNEATH = 7
    DEGRADED = 10
    CONFLICT = 11
    UNKNOWN = 12
    CANNOT_RUN = 127
    CRASH_POINT = 99
    INTERRUPTED = 130
    TERMINATED = 143

    def __str__(self) -> str:
        return str(self.value)  # the number, as Python 3.11's IntEnum does, on 3.10 too


# What each code means, as the README's table says it (markdown). CRASH_POINT is not
# here: only the tests arm crash points (runtime/faults.py), no user ever sees it.
MEANING: dict[Exit, str] = {
    Exit.OK: "success (`propose`: a value was chosen, its own or another; `status`: every "
             "node answered; `import`: every line is in the cluster)",
    Exit.FAILED: "the operation failed: `propose` chose nothing in time (the message names "
                 "the nodes that did not answer) or too many nodes refused its key; a "
                 "register command found no quorum (nothing was written); `lock`/`elect`: "
                 "the lease was lost and the command stopped, or `--timeout` passed; "
                 "`export`/`import` "
                 "could not read or write a key in time; `node` cannot listen (port in use) "
                 "or its data directory is in use by another process; `status`: a majority "
                 "of nodes did not answer; `sim`: a schedule broke an invariant, or "
                 "`--break` found no seed; a scenario failed",
    Exit.USAGE: "usage or configuration error: one line on stderr naming the file, section "
                "and key, or the option (also `node --new` over a healthy state)",
    Exit.STATE_DAMAGED: "`node`: its state is damaged (see "
                        "[Storage errors](operating.md#storage-errors))",
    Exit.STATE_LOST: "`node`: its state is lost, rolled back or replaced (see "
                     "[Storage errors](operating.md#storage-errors))",
    Exit.NOT_WRITABLE: "`node`: its healthy state cannot be written (read-only, "
                       "permissions)",
    Exit.DISK_FULL: "`node`: the disk is full; everything committed before is intact (free "
                    "space and start it again)",
    Exit.CHANGED_UNDERNEATH: "`node`: its files changed underneath it while it ran",
    Exit.DEGRADED: "`status`: some nodes did not answer, but a majority did (values can "
                   "still be chosen)",
    Exit.CONFLICT: "the cluster holds something else, and nothing was overwritten: `cas`'s "
                   "comparison failed (the current value and version are printed); "
                   "`import`: some keys or registers were already decided differently "
                   "(listed on stderr, kept)",
    Exit.UNKNOWN: "`get`/`set`/`cas`/`delete`: outcome unknown (a change reached some "
                  "nodes but no quorum confirmed it in time; read the register to find out)",
    Exit.CANNOT_RUN: "`lock`/`elect`: the command to run could not be run (not found, not "
                     "executable), as in a shell; the lock was released",
    Exit.INTERRUPTED: "interrupted (Ctrl-C)",
    Exit.TERMINATED: "`run_scenarios.sh` / `zpaxos scenarios`: stopped by SIGTERM (every "
                     "node it started was stopped)",
}


def markdown_table() -> str:
    """The README's table under ``### Exit codes``, row for row."""
    rows = ["| code | name | meaning |", "|---|---|---|"]
    rows += [f"| {code.value} | `{code.name}` | {text} |" for code, text in MEANING.items()]
    return "\n".join(rows) + "\n"
