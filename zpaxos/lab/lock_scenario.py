"""Scenario 12, ``lock-handover``: a lock's holder paused past its TTL, the waiter takes
over, and the paused one's stale write is refused by its fencing token.

Two workers contend for one lock (docs/locks.md) and write to a fenced resource
(zpaxos/lab/mutex.py: it accepts a write only with a token at least the highest it has
accepted). Each holds the lock through the Python API and writes after each piece of
work, checking its lease before the work (zpaxos.lab.mutex.scenario_holder), logging to
the cluster's log so that the chart draws both. A takes the lock; B queues up behind it.
A is SIGSTOPped in the middle of its work; B, which has watched A's lock record stay
unchanged for the TTL and the margin, takes the lock with a higher token and writes; A
is resumed, finishes its work and writes with its old token: refused. B writes for a
second and releases. The chart shows the hand-over on the lock's register: each RACCEPT
is labelled with the record it writes (``v5=lock A #1 +1 waiting``, ``v9=lock B #9``).
(``zpaxos lock`` meets the same faults in tests/test_mutex.py.)
"""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from zpaxos.lab.launcher import child_env, free_ports, wait_for
from zpaxos.lab.mutex import read_log
from zpaxos.lab.scenario_kit import Ctx, Failed, check

LOCK = "lab-12-lock"
TTL_S = 1.5
WORK_S = 0.2  # a holder's work between its lease check and its write
A_FOR_S = 120.0  # A would hold the lock this long
B_FOR_S = 1.0  # B holds it this long, then releases
TAKE_OVER_WITHIN_S = 30.0


def _mutex(*args: str) -> list[str]:
    return [sys.executable, "-m", "zpaxos.lab.mutex", *args]


def _line(p: subprocess.Popen[str], timeout_s: float) -> str:
    """The next line ``p`` prints (the workers print a line at each step)."""
    assert p.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        line = p.stdout.readline().strip() if sel.select(timeout_s) else ""
    if not line:
        raise Failed(f"a worker said nothing within {timeout_s:g} s (exit {p.poll()})")
    return line


def s12_lock_handover(ctx: Ctx) -> str:
    port = free_ports(1)[0]
    log = (ctx.workdir / "lock-resource.jsonl").resolve()  # the workers run in workdir
    log.unlink(missing_ok=True)
    procs: list[subprocess.Popen[str]] = []

    def start(cmd: list[str]) -> subprocess.Popen[str]:
        procs.append(subprocess.Popen(cmd, cwd=ctx.workdir, env=child_env(), text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        return procs[-1]
    try:
        res = start(_mutex("resource", str(port), str(log)))
        check(_line(res, 30) == "ready", "the fenced resource did not start")
        config = str(ctx.cluster.config)
        a = start(_holder(config, port, "A", A_FOR_S))
        said = _line(a, 60)
        check(said.startswith("holding "), f"A: {said}")
        b = start(_holder(config, port, "B", B_FOR_S))
        _wait(lambda: _accepted(log, "A") >= 2, "A's writes")
        a.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        try:
            _wait(lambda: _accepted(log, "B") >= 1, "B to take over and write",
                  TAKE_OVER_WITHIN_S)
        finally:
            a.send_signal(signal.SIGCONT)
        took = time.monotonic() - paused
        said = _line(a, 30)
        a.wait(30)
        check(_line(b, 60) == "holding " + str(_token(log, "B")), "B did not say it held")
        b_said = _line(b, 60)
        b.wait(30)
        check((b_said, b.returncode) == ("done", 0), f"B said {b_said!r}, exit {b.returncode}")
        return _verdict(ctx, log, said, a.returncode, took)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


def _holder(config: str, port: int, me: str, for_s: float) -> list[str]:
    return _mutex("scenario-holder", config, LOCK, str(TTL_S), str(port), me, str(WORK_S),
                  str(for_s))


def _token(log: Path, holder: str) -> int:
    return next((w.token for w in read_log(log) if w.holder == holder), 0)


def _wait(predicate: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    try:
        wait_for(predicate, what, timeout_s, every_s=0.01)
    except TimeoutError as e:
        raise Failed(str(e)) from None


def _accepted(log: Path, holder: str) -> int:
    if not log.exists():
        return 0
    return sum(1 for w in read_log(log) if w.holder == holder and w.accepted)


def _verdict(ctx: Ctx, log: Path, said: str, a_exit: int | None, took: float) -> str:
    writes = read_log(log)
    a_tokens = {w.token for w in writes if w.holder == "A"}
    b_tokens = {w.token for w in writes if w.holder == "B"}
    check(len(a_tokens) == 1 and len(b_tokens) == 1, f"tokens: A {a_tokens}, B {b_tokens}")
    ta, tb = a_tokens.pop(), b_tokens.pop()
    check(tb > ta, f"B's token {tb} is not above A's {ta}")
    check(said == f"refused {ta}" and a_exit == 3,
          f"A, resumed, said {said!r} and exited {a_exit}; expected its write refused")
    first_b = next(i for i, w in enumerate(writes) if w.holder == "B")
    late_a = [w for w in writes[first_b:] if w.holder == "A"]
    check(bool(late_a) and not any(w.accepted for w in late_a),
          f"A's writes after B's first: {late_a}")
    check(all(w.accepted for w in writes if w.holder == "B"), "a write of B was refused")
    ctx.row.chosen = f"B (token {tb})"
    ctx.row.rounds = f"{len(writes)} writes"
    return (f"A held {LOCK} (token {ta}) and was paused (SIGSTOP) mid-work; after "
            f"{took:.1f} s (TTL {TTL_S:g} s) B, watching A's record unchanged for the TTL "
            f"and the margin, took it over (token {tb}) and wrote; A, resumed, wrote with "
            f"token {ta}: refused by the resource, which had accepted {tb}")


LOCK_SCENARIOS: list[tuple[str, str, Callable[[Ctx], str]]] = [
    ("lock-handover", "A lock's holder paused past its TTL: taken over, its stale write "
     "refused", s12_lock_handover),
]
