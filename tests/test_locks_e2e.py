"""Locks and elections end to end: real node processes, real `zpaxos lock` / `elect` /
`leader` processes, kill -9, SIGSTOP, and a quorum stopped under a holder.

What is checked: contending holders never overlap and see strictly increasing fencing
tokens; a holder whose renewals fail (quorum gone, or paused past its TTL) stops its
command and exits 1 with one line; Ctrl-C stops the command and releases at once; an
election has one leader at a time, and when the leader is killed the other takes over
with a higher term, which `zpaxos leader` shows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Cluster
from zpaxos.client import Client, load_config
from zpaxos.lab.launcher import zpaxos_cmd
from zpaxos.protocol.lease import decode_record
from zpaxos.runtime.locks import LockTimeout

pytestmark = pytest.mark.e2e

TTL = "2"  # the smallest practical lease: ttl 2 s, margin 0.5 s, renewed every 0.5 s


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, log_level="WARNING")
    try:
        c.start_all()
        yield c
    finally:
        for p in Proc.started:  # a failed test leaves none running (their commands die
            p.proc.kill()       # with them: zpaxos lock's parent-death signal)
            p.proc.wait()
        Proc.started.clear()
        c.stop_all()


class Proc:
    """A zpaxos command in its own process, its stdout lines collected as they come."""

    started: list[Proc] = []

    def __init__(self, cluster: Cluster, *args: str, cmd: tuple[str, ...] = ()) -> None:
        argv = zpaxos_cmd(*args, "--config", str(cluster.config))
        # With a faulthandler: a process that hangs shows where (see finish).
        env = {**(cluster.env or os.environ), "PYTHONFAULTHANDLER": "1"}
        if cmd:
            argv += ["--", *cmd]
        self.proc = subprocess.Popen(argv, cwd=cluster.dir, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        Proc.started.append(self)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.err: list[str] = []
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, part: str, timeout_s: float = 30.0) -> str:
        return Cluster.wait_for(lambda: next((x for x in self.lines if part in x), None),
                                f"a line with {part!r} in {self.lines}", timeout_s)

    def finish(self, timeout_s: float = 30.0) -> tuple[int, str]:
        """Its exit code and stderr. (Both pipes are read only until it exits: a command
        it left running may hold them open.)"""
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # its threads' stacks, on its stderr
            time.sleep(1)
            pytest.fail(f"{self.proc.args} hangs: {self._stderr()}")
        self._reader.join(1)
        return code, self._stderr()

    def _stderr(self) -> str:
        self._err_reader.join(1)
        return "".join(self.err)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)


def shell(script: str) -> tuple[str, ...]:
    return ("sh", "-c", script)


def events(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_contending_holders_never_overlap_and_tokens_increase(running: Cluster,
                                                              tmp_path: Path) -> None:
    log = tmp_path / "events"
    body = shell(f'echo "start $ZPAXOS_FENCING_TOKEN" >> {log}; sleep 0.3; '
                 f'echo "end $ZPAXOS_FENCING_TOKEN" >> {log}; exit 7')
    procs = [Proc(running, "lock", "jobs", "--ttl", TTL, cmd=body) for _ in range(3)]
    results = [p.finish() for p in procs]
    assert [code for code, _ in results] == [7, 7, 7], results  # CMD's status passes through
    seen = events(log)
    assert len(seen) == 6
    tokens = []
    for start, end in zip(seen[0::2], seen[1::2], strict=True):
        assert start[0] == "start" and end == ["end", start[1]], seen  # no overlap
        tokens.append(int(start[1]))
    assert tokens == sorted(tokens) and len(set(tokens)) == 3, tokens


def test_quorum_lost_under_the_holder_stops_its_command(running: Cluster,
                                                        tmp_path: Path) -> None:
    log = tmp_path / "events"
    body = shell(f"trap 'echo term >> {log}; exit 0' TERM; echo start >> {log}; "
                 f"while :; do sleep 0.05; done")
    p = Proc(running, "lock", "jobs", "--ttl", TTL, cmd=body)
    Cluster.wait_for(lambda: events(log), "the command to start")
    running.kill(1)
    running.kill(2)  # no quorum: no renewal can succeed
    code, err = p.finish()
    assert code == 1
    ours = [x for x in err.splitlines() if x.startswith("zpaxos")]  # (sh: "Terminated")
    assert ours == ["zpaxos lock: error: lost lock 'jobs' (token 1: no renewal succeeded "
                    "in 1.5 s); stopped 'sh' (SIGTERM)"], err
    assert events(log) == [["start"], ["term"]]


def test_holder_paused_past_its_ttl_loses_the_lock_and_stops_its_command(
        running: Cluster, tmp_path: Path) -> None:
    log = tmp_path / "events"
    a_body = shell(f'echo "a-start $$" >> {log}; while :; do sleep 0.05; done')
    a = Proc(running, "lock", "jobs", "--ttl", TTL, cmd=a_body)
    Cluster.wait_for(lambda: events(log), "the first holder's command to start")
    a.proc.send_signal(signal.SIGSTOP)  # the holder (not its command) pauses
    b = Proc(running, "lock", "jobs", "--ttl", TTL,
             cmd=shell(f'echo "b-start $ZPAXOS_FENCING_TOKEN" >> {log}'))
    assert b.finish()[0] == 0  # it waited out a's ttl + margin, then took the lock
    a.proc.send_signal(signal.SIGCONT)
    code, err = a.finish()
    # Woken past its deadline, it SIGKILLs its command at once (no grace left).
    assert code == 1 and "lost lock 'jobs' (token 1: " in err and "(SIGKILL)" in err, err
    seen = events(log)
    assert [e[0] for e in seen] == ["a-start", "b-start"]
    assert int(seen[1][1]) > 1  # b's token is above a's
    with pytest.raises(ProcessLookupError):
        os.kill(int(seen[0][1]), 0)  # a's command is gone


def test_kill_9_of_the_holder_kills_its_command(running: Cluster, tmp_path: Path) -> None:
    log = tmp_path / "events"
    p = Proc(running, "lock", "jobs", cmd=shell(f'echo "start $$" >> {log}; '
                                                f"while :; do sleep 0.05; done"))
    pid = int(Cluster.wait_for(lambda: events(log), "the command to start")[0][1])
    p.proc.kill()
    p.finish()
    try:
        Cluster.wait_for(lambda: not _alive(pid), "the command to die with its holder")
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_stops_the_command_and_releases_at_once(running: Cluster,
                                                       tmp_path: Path) -> None:
    log = tmp_path / "events"
    body = shell(f"trap 'echo term >> {log}; exit 0' TERM; echo start >> {log}; "
                 f"while :; do sleep 0.05; done")
    p = Proc(running, "lock", "jobs", "--ttl", "60", cmd=body)
    Cluster.wait_for(lambda: events(log), "the command to start")
    p.proc.send_signal(signal.SIGINT)
    code, err = p.finish()
    assert code == 130 and "interrupted: stopped 'sh' and released 'jobs'" in err, err
    assert events(log) == [["start"], ["term"]]
    # Released: the next holder gets it at once, not after the 60 s lease.
    q = Proc(running, "lock", "jobs", "--timeout", "10", cmd=("true",))
    assert q.finish()[0] == 0


def test_election_one_leader_then_the_other_after_kill_9(running: Cluster) -> None:
    a = Proc(running, "elect", "sched", "--id", "alice", "--ttl", TTL)
    a.wait_line("alice is leader (term ")
    b = Proc(running, "elect", "sched", "--id", "bob", "--ttl", TTL)
    shown = leader(running)
    assert shown["leader"] == "alice"
    first_term = shown["term"]
    time.sleep(1.5)  # (not a wait for an event: bob must stay a follower meanwhile)
    assert not any("bob is leader" in x for x in b.lines)
    a.proc.kill()
    a.finish()
    line = b.wait_line("bob is leader (term ")
    term = int(line.split("term ")[1].rstrip(")"))
    assert term > first_term
    assert leader(running) == {"name": "sched", "leader": "bob", "term": term}
    out = subprocess.run(zpaxos_cmd("leader", "sched", "--config", str(running.config)),
                         cwd=running.dir, env=running.env, capture_output=True, text=True)
    assert out.stdout == f"sched: bob is leader (term {term})\n"
    b.proc.send_signal(signal.SIGINT)
    code, _ = b.finish()
    assert code == 130 and b.lines[-1] == f"sched: bob resigned (term {term})"
    assert leader(running)["leader"] is None


def test_election_a_paused_leader_learns_it_lost_and_runs_again(running: Cluster,
                                                                tmp_path: Path) -> None:
    log = tmp_path / "events"
    body = shell(f'echo "$ZPAXOS_TERM" >> {log}; trap "exit 0" TERM; '
                 f"while :; do sleep 0.05; done")
    a = Proc(running, "elect", "sched", "--id", "alice", "--ttl", TTL, cmd=body)
    a.wait_line("alice is leader")
    ran(log, 1)
    a.proc.send_signal(signal.SIGSTOP)
    b = Proc(running, "elect", "sched", "--id", "bob", "--ttl", TTL, cmd=body)
    b.wait_line("bob is leader")
    ran(log, 2)
    a.proc.send_signal(signal.SIGCONT)
    a.wait_line("alice is no longer leader")
    b.proc.send_signal(signal.SIGINT)
    b.finish()
    Cluster.wait_for(lambda: sum("alice is leader" in x for x in a.lines) == 2,
                     "alice to campaign again and lead")
    ran(log, 3)
    a.proc.send_signal(signal.SIGINT)
    a.finish()
    terms = [int(x[0]) for x in events(log)]
    assert terms == sorted(terms) and len(set(terms)) == 3, terms


def ran(log: Path, n: int) -> None:
    Cluster.wait_for(lambda: len(events(log)) >= n, f"command {n} to start")


def leader(cluster: Cluster) -> dict[str, object]:
    out = subprocess.run(zpaxos_cmd("leader", "sched", "--json", "--config",
                                    str(cluster.config)),
                         cwd=cluster.dir, env=cluster.env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_python_api_lock_campaign_and_timeout(running: Cluster) -> None:
    cfg = load_config(running.config)
    with Client(cfg) as a, Client(cfg) as b:
        lock = a.lock("res", ttl=2)
        with lock as token:
            assert lock.token == token and lock.valid() and not lock.lost
            with pytest.raises(LockTimeout):
                b.lock("res", ttl=2, timeout=0.3).acquire()
            assert decode_record(a.get("res").value).queue == ()  # it left the queue
            time.sleep(1.0)  # longer than a lease's third: renewed meanwhile
            assert lock.valid()
        assert lock.lost  # released
        with b.lock("res", ttl=2, timeout=5) as token2:
            assert token2 > token
        assert a.leader("el") is None
        with a.campaign("el", "me", ttl=2) as leadership:
            assert a.leader("el") == ("me", leadership.term) and not leadership.lost
        assert b.leader("el") is None


def test_lock_refuses_a_register_that_is_not_a_lock(running: Cluster) -> None:
    with Client(load_config(running.config)) as c:
        c.set("cfg", "v1")
    p = Proc(running, "lock", "cfg", cmd=("true",))
    code, err = p.finish()
    assert code == 1 and err.startswith("zpaxos lock: error: register 'cfg' is not a "
                                        "lock: not a lock record"), err



def test_a_command_that_cannot_run_exits_127_and_releases(running: Cluster) -> None:
    code, err = Proc(running, "lock", "jobs", "--ttl", "60",
                     cmd=("no-such-command-here",)).finish()
    assert (code, err) == (127, "zpaxos: cannot run 'no-such-command-here': No such file "
                                "or directory\n")
    assert Proc(running, "lock", "jobs", "--timeout", "10", cmd=("true",)).finish()[0] == 0


def test_a_waiter_stopped_by_ctrl_c_leaves_the_queue(running: Cluster) -> None:
    holder = Proc(running, "lock", "jobs", "--ttl", "60", cmd=shell("sleep 60"))
    with Client(load_config(running.config)) as c:
        def queue() -> int:
            r = c.get("jobs")
            return len(decode_record(r.value).queue) if r.value else -1

        Cluster.wait_for(lambda: queue() == 0, "the holder to take the lock")
        waiter = Proc(running, "lock", "jobs", cmd=("true",))
        Cluster.wait_for(lambda: queue() == 1, "the waiter to queue up")
        waiter.proc.send_signal(signal.SIGINT)
        assert waiter.finish()[0] == 130
        assert queue() == 0
    holder.proc.send_signal(signal.SIGINT)
    assert holder.finish()[0] == 130


def test_a_release_hands_the_lock_over_to_the_waiter_at_the_head(running: Cluster) -> None:
    cfg = load_config(running.config)
    with Client(cfg) as a, Client(cfg) as b:
        first = a.lock("res", ttl=2)
        token_a = first.acquire()
        second = b.lock("res", ttl=2, timeout=30)
        waiter = threading.Thread(target=second.acquire)  # (b is used by this thread only)
        waiter.start()
        Cluster.wait_for(lambda: len(decode_record(a.get("res").value).queue) == 1,
                         "the waiter to queue up")
        first.release()
        waiter.join()
        # Handed over: its token is the version A's release wrote (above A's token), and
        # it held the lock only once its own renewal (a later version) succeeded.
        assert token_a < second.token < second._version  # type: ignore[operator]
        rec = decode_record(a.get("res").value)
        assert (rec.owner, rec.token, rec.queue) == (second.owner, second.token, ())
        second.release()
