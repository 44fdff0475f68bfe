"""Run a command only while a lock (or a leadership) is held: ``zpaxos lock`` and
``zpaxos elect``'s supervisor.

The command runs in a process group of its own, so that stopping it stops what it
started too (a shell's children), and (on Linux) dies with this process: a supervisor
killed with SIGKILL leaves no command running unsupervised. A supervisor that is
*paused* (SIGSTOP) cannot stop it in time: that is what fencing tokens are for.

The command is stopped (its group SIGTERMed, then SIGKILLed ``grace`` later) when the
lease is lost (at ``lock.lost_at`` on this process's clock, the moment the lease rule
says; the renewer thread may be late, the deadline is not), or when a signal asks us to
stop (Ctrl-C). The grace fits inside
the lease's margin (zpaxos/protocol/lease.py: SIGKILL at ``ttl - margin + margin / 2``
after the last renewal was sent, and no waiter acts before ``ttl + margin``), so the
command is dead before another holder can get the lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zpaxos.runtime.exits import Exit

if TYPE_CHECKING:
    from zpaxos.runtime.locks import Lock
    from zpaxos.runtime.sockets import SignalWakeup

__all__ = ["Ran", "hold_until_lost", "run_while_held", "with_parent_death"]

POLL_S = 0.05  # how often the supervisor looks at a signal or the child between deadlines


@dataclass(frozen=True, slots=True)
class Ran:
    """How a supervised run ended. ``status``: the command's exit status as a shell gives
    it (128 + N for a signal N), None when we stopped it; ``lost``: why the lease was
    lost ("" if it was not); ``interrupted``: a signal asked us to stop; ``killed``: it
    did not end on SIGTERM within the grace and was SIGKILLed."""

    status: int | None
    lost: str = ""
    interrupted: bool = False
    killed: bool = False


def run_while_held(lock: Lock, argv: Sequence[str], env: Mapping[str, str],
                   wakeup: SignalWakeup | None) -> Ran:
    """Run ``argv`` while ``lock`` is held; stop it when the lease is lost or a signal
    comes. OSError (no such command) is the caller's to report."""
    proc = subprocess.Popen(with_parent_death(argv), env=dict(env), start_new_session=True)
    grace = lock.grace
    try:
        while True:
            why = _lost(lock)
            if why:
                return Ran(None, why, killed=stop(proc, lock.lost_at + grace))
            if wakeup is not None and wakeup.stop_requested:
                return Ran(None, interrupted=True,
                           killed=stop(proc, time.monotonic() + grace))
            left = lock.lost_at - time.monotonic()
            try:
                rc = proc.wait(timeout=max(0.0, min(POLL_S, left)))
            except subprocess.TimeoutExpired:
                continue
            return Ran(128 - rc if rc < 0 else rc)
    finally:
        if proc.poll() is None:  # an exception of ours: never leave it running
            stop(proc, time.monotonic() + grace)


# Linux: ask the kernel to SIGKILL the command when its parent (this supervisor) dies,
# then exec it. Done by a tiny Python in the child rather than a preexec_fn, which is not
# safe to run in a process with threads (the lock's renewer is one). If the parent died
# before the prctl took effect, the child is already orphaned: it exits instead.
# A command that cannot be run exits CANNOT_RUN (127, as in a shell), with one line why.
_PDEATHSIG = ("import ctypes, os, signal, sys\n"
              "ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL\n"
              "if os.getppid() != int(sys.argv[1]): os.kill(os.getpid(), signal.SIGKILL)\n"
              "try:\n"
              "    os.execvp(sys.argv[2], sys.argv[2:])\n"
              "except OSError as e:\n"
              "    sys.stderr.write(f'zpaxos: cannot run {sys.argv[2]!r}: {e.strerror}\\n')\n"
              f"    sys.exit({int(Exit.CANNOT_RUN)})")


def with_parent_death(argv: Sequence[str]) -> list[str]:
    """``argv``, run so that it dies with this process (kill -9 of ``zpaxos lock`` must
    not leave its command running, unsupervised, past its lease). Linux only; elsewhere
    ``argv`` as it is."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-c", _PDEATHSIG, str(os.getpid()), *argv]


def hold_until_lost(lock: Lock, wakeup: SignalWakeup | None) -> Ran:
    """Hold ``lock`` (nothing to run) until its lease is lost or a signal comes."""
    while True:
        why = _lost(lock)
        if why:
            return Ran(None, why)
        if wakeup is not None and wakeup.stop_requested:
            return Ran(None, interrupted=True)
        time.sleep(max(0.0, min(POLL_S, lock.lost_at - time.monotonic())))


def _lost(lock: Lock) -> str:
    if lock.lost_reason:
        return lock.lost_reason
    if time.monotonic() >= lock.lost_at:
        return f"no renewal succeeded in {lock.lease_s:g} s"
    return ""


def stop(proc: subprocess.Popen[bytes], kill_at: float) -> bool:
    """SIGTERM ``proc``'s process group now, SIGKILL it at ``kill_at`` (monotonic) if
    it has not ended; True if it took the SIGKILL. Past ``kill_at`` already (a holder
    that was paused past its lease), no grace is left: SIGKILL at once."""
    if time.monotonic() >= kill_at:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        return True
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=max(0.0, kill_at - time.monotonic()))
        _signal_group(proc, signal.SIGKILL)  # what it started may outlive it
        return False
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        return True


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
