"""The guide "Running on separate machines" (docs/operating.md), followed across network
namespaces: each node on a machine of its own (a namespace with its own address on a
bridge, its own /etc/zpaxos and /var/lib/zpaxos), the operator on a fourth, every machine
reaching the others by the names in configs/three-machines.ini.

What it runs, as the guide writes it (paths moved under each machine's directory): the
cluster file, `zpaxos keygen --config`, the key distribution table, each node with the
unit's ExecStart, `zpaxos status`, the lab (`propose Value_A`, then `Value_B`), and a
rolling restart whose wait loop is the guide's shell text, run by bash. Not run: useradd,
pip, systemctl and ssh (the stop is the unit's SIGTERM, the start its ExecStart),
nftables/ufw (this kernel has no netfilter). Names resolve through /etc/netns/<ns>/hosts,
which `ip netns exec` puts over /etc/hosts inside the namespace only; the host's own
/etc/hosts is never touched, and every namespace and /etc/netns entry made here is removed
at the end, on failure and on Ctrl-C (and stale ones of a killed run at the next start).

Needs root, `ip` and `jq` (the guide's wait loop); skipped with the reason otherwise.
Marked slow (about a minute): only ``tests/run.sh --slow`` runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.nemesis.netns import Topology, unavailable_reason
from tests.nemesis.nodes import child_env
from zpaxos.lab.launcher import wait_for
from zpaxos.runtime.config import load_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "operating.md"
EXAMPLE = ROOT / "configs" / "three-machines.ini"
UNIT = ROOT / "deploy" / "zpaxos-node@.service"
CONFIG = "/etc/zpaxos/cluster.ini"
MOVED = ("/etc/zpaxos", "/var/lib/zpaxos", "/var/log/zpaxos")  # per machine, under its dir

# The guide's commands, word for word (checked against the guide below).
KEYGEN = f"sudo zpaxos keygen --config {CONFIG}"
STATUS = f"zpaxos status --config {CONFIG}"
PROPOSE_A = f"zpaxos propose Value_A --config {CONFIG}"
PROPOSE_B = f"zpaxos propose Value_B --config {CONFIG}"
STOP_TIMEOUT_S = 30  # the unit's TimeoutStopSec
START_TIMEOUT_S = 30
DOWN_DECISIONS = 3  # keys decided while each node is down, at least


def guide_wait_loop() -> str:
    """The guide's "until ... done" loop of step 8, exactly as written there."""
    m = re.search(r"^until zpaxos status.*?^do sleep 1; done$", GUIDE.read_text(),
                  re.MULTILINE | re.DOTALL)
    assert m, "docs/operating.md: the rolling upgrade's wait loop is gone"
    return m.group(0)


def unit_exec_start() -> list[str]:
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("ExecStart="))
    return line.removeprefix("ExecStart=").split()


# ---------------------------------------------------------------- the machines


def _sweep_stale_hosts_files() -> None:
    """/etc/netns/<ns> left by a run that was killed with SIGKILL (named after its pid)."""
    base = Path("/etc/netns")
    for d in base.glob("zpn*") if base.is_dir() else ():
        m = re.match(r"zpn(\d+)[hcn]\d*$", d.name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            shutil.rmtree(d, ignore_errors=True)


@dataclass
class Machines:
    """Three node machines and an operator's machine, each a namespace and a directory."""

    workdir: Path
    topo: Topology = field(default_factory=lambda: Topology(3))
    names: dict[str, str] = field(default_factory=dict)  # ns -> machine
    hosts_dirs: list[Path] = field(default_factory=list)
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)

    def setup(self) -> Machines:
        _sweep_stale_hosts_files()
        self.topo.setup()
        return self

    def root(self, machine: str) -> Path:
        return self.workdir / machine

    def ns(self, machine: str) -> str:
        return self.topo.client_ns if machine == "ops" else self.topo.node_ns(
            int(machine.removeprefix("node")))

    def localize(self, text: str, machine: str) -> str:
        for path in MOVED:
            text = text.replace(path, f"{self.root(machine)}{path}")
        return text

    def resolve_names(self, names: dict[str, str]) -> None:
        """Every machine resolves the others' names (/etc/netns/<ns>/hosts), but a node
        not its own, like a machine known by a name outside (NAT, a cloud's DNS): so it
        can listen only where bind says."""
        for machine in ("node0", "node1", "node2", "ops"):
            d = Path("/etc/netns") / self.ns(machine)
            self.hosts_dirs.append(d)
            d.mkdir(parents=True, exist_ok=True)
            (d / "hosts").write_text("127.0.0.1 localhost\n" + "".join(
                f"{a} {n}\n" for n, a in names.items() if not n.startswith(machine + ".")))

    def env(self) -> dict[str, str]:
        e = child_env()
        e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
        return e

    def sh(self, machine: str, command: str, timeout: float = 60,
           extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A command of the guide, run on ``machine`` by bash (sudo: we are root)."""
        command = self.localize(command, machine).removeprefix("sudo ")
        return subprocess.run([*self.topo.exec_prefix(self.ns(machine)), "bash", "-c",
                               command], env={**self.env(), **(extra_env or {})},
                              cwd=self.root(machine), capture_output=True, text=True,
                              timeout=timeout)

    # ---- the service, as systemd would run it

    def start(self, i: int) -> str:
        """The unit's ExecStart for instance i; the line it prints once listening."""
        machine = f"node{i}"
        argv = [a.replace("%i", str(i)) for a in unit_exec_start()[1:]]
        argv = [self.localize(a, machine) for a in argv]
        out = self.root(machine) / "journal.txt"  # what journalctl would show
        with open(out, "a") as f:
            f.write(f"--- start {time.time():.3f}\n")
            f.flush()
            p = subprocess.Popen([*self.topo.exec_prefix(self.ns(machine)),
                                  str(Path(sys.executable).parent / "zpaxos"), *argv],
                                 env=self.env(), cwd=self.root(machine) / "var/lib/zpaxos",
                                 stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[i] = p

        def listening() -> str | None:
            tail = out.read_text().rsplit("--- start", 1)[-1]
            if p.poll() is not None:
                raise AssertionError(f"node{i} exited with {p.returncode}: {tail[-800:]}")
            lines = [x for x in tail.splitlines() if "listening on" in x]
            return lines[0] if lines else None

        return wait_for(listening, f"node{i} listening", START_TIMEOUT_S)

    def stop(self, i: int) -> int:
        """systemctl stop: SIGTERM (KillSignal), SIGKILL after TimeoutStopSec."""
        p = self.procs.pop(i)
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise

    def close(self) -> None:
        for i in list(self.procs):
            p = self.procs.pop(i)
            with contextlib.suppress(OSError):
                p.kill()
            p.wait(10)
        self.topo.close()
        for d in self.hosts_dirs:
            shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(OSError):
            Path("/etc/netns").rmdir()  # only if nobody else keeps files there


# ---------------------------------------------------------------- the writer


@dataclass
class Writer:
    """Proposes a fresh key after another from the operator's machine, and records what
    each `zpaxos propose` reported."""

    machines: Machines
    done: list[tuple[str, str, float]] = field(default_factory=list)  # key, chosen, time
    failed: list[str] = field(default_factory=list)
    stop_flag: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop_flag.is_set():
            n += 1
            key, value = f"roll-{n:04d}", f"v{n}"
            r = self.machines.sh("ops", f"zpaxos propose {value} --key {key} --json -q "
                                        f"--config {CONFIG}")
            chosen = json.loads(r.stdout).get("chosen") if r.stdout.strip() else None
            if r.returncode == 0 and chosen is not None:
                self.done.append((key, chosen, time.monotonic()))
            else:
                self.failed.append(f"{key}: exit {r.returncode}: {r.stdout} {r.stderr}")

    def decided(self) -> dict[str, str]:
        return {k: v for k, v, _ in self.done}


def status(m: Machines) -> dict:
    r = m.sh("ops", f"{STATUS} --json")
    assert r.stdout.strip(), r.stderr
    return json.loads(r.stdout)


def chosen_on(doc: dict, i: int) -> dict[str, str]:
    node = doc["nodes"][i]
    assert not node["truncated"]
    return {k: s["chosen"] for k, s in node["keys"].items() if s.get("chosen") is not None}


# ---------------------------------------------------------------- the test


def test_three_machines_by_the_guide_with_a_rolling_restart(tmp_path, capsys):
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"separate machines skipped: {reason}")
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed (the guide's rolling-upgrade loop uses it)")
    if not (Path(sys.executable).parent / "zpaxos").exists():
        pytest.skip(f"no zpaxos command next to {sys.executable} (pip install -e .)")
    guide = GUIDE.read_text()
    for command in (KEYGEN, STATUS, PROPOSE_A, PROPOSE_B, " ".join(unit_exec_start())):
        assert command in guide, f"docs/operating.md no longer says: {command}"
    old = signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(SystemExit(143)))
    m = Machines(tmp_path)
    try:
        m.setup()
        _follow_the_guide(m, capsys)
    finally:
        m.close()
        signal.signal(signal.SIGTERM, old)
    assert not any(ns in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                        text=True).stdout for ns in m.topo.namespaces)


def _follow_the_guide(m: Machines, capsys: pytest.CaptureFixture[str]) -> None:
    machines = ("node0", "node1", "node2", "ops")
    example = load_config(EXAMPLE, keys=False)
    # 1. Names: every machine resolves node0..2.paxos.example to its namespace's address.
    m.resolve_names({n.host: m.topo.node_addr(n.id) for n in example.nodes})
    # 3. The same cluster file on every machine.
    for machine in machines:
        cfg = m.root(machine) / "etc/zpaxos/cluster.ini"
        cfg.parent.mkdir(parents=True)
        cfg.write_text(m.localize(EXAMPLE.read_text(), machine))
        (m.root(machine) / "var/lib/zpaxos").mkdir(parents=True)  # StateDirectory=
        (m.root(machine) / "var/log/zpaxos").mkdir(parents=True)  # LogsDirectory=
    # 4. Keys, made on the operator's machine, then copied as the guide's table says.
    r = m.sh("ops", KEYGEN)
    assert r.returncode == 0, r.stderr
    made = m.root("ops") / "etc/zpaxos/keys"
    for i in range(3):
        keys = m.root(f"node{i}") / "etc/zpaxos/keys"
        (keys / "clients").mkdir(parents=True)
        for j in range(3):
            shutil.copy2(made / f"node{j}.key", keys)
        shutil.copy2(made / "clients/ops.key", keys / "clients")
        shutil.copy2(made / f"node{i}.key_secret", keys)  # mode 600 kept
    for i in range(3):
        (made / f"node{i}.key_secret").unlink()  # "delete the node secrets afterwards"
    # 1. Without bind, node0 would listen on its host, a name it cannot resolve itself.
    no_bind = m.root("node0") / "no-bind.ini"
    no_bind.write_text(m.localize(EXAMPLE.read_text(), "node0").replace("bind = 0.0.0.0", ""))
    r = m.sh("node0", f"zpaxos node 0 --config {no_bind}")
    assert (r.returncode, r.stdout) == (1, ""), r.stdout + r.stderr
    assert r.stderr.startswith("zpaxos node: error: node0: cannot listen on "
                               "tcp://node0.paxos.example:5001: ") and r.stderr.endswith(
        "([node.0] host: if the others reach this node at an address it cannot listen on, "
        "set [node.0] bind = 0.0.0.0 or one of its own addresses)\n"), r.stderr
    # 6. Each node as its unit runs it: listens on 0.0.0.0, reached by its name.
    for i in range(3):
        line = m.start(i)
        assert line.startswith(f"node{i} listening on tcp://0.0.0.0:5001, reached at "
                               f"tcp://node{i}.paxos.example:5001 "), line
    # 7. The lab, from the operator's machine.
    r = m.sh("ops", STATUS)
    assert r.returncode == 0 and "all 3 nodes reachable" in r.stdout, r.stdout + r.stderr
    for command in (PROPOSE_A, PROPOSE_B):
        r = m.sh("ops", command)
        assert r.returncode == 0 and r.stdout.startswith("CISC5597 = 'Value_A': "), r.stdout
    files = [m.root(f"node{i}") / f"var/lib/zpaxos/node{i}/CISC5597.txt" for i in range(3)]
    wait_for(lambda: all(f.is_file() and f.read_text() == "Value_A\n" for f in files),
             "CISC5597.txt holding Value_A on every node")
    doc = status(m)
    assert [chosen_on(doc, i).get("CISC5597") for i in range(3)] == ["Value_A"] * 3
    assert [n["endpoint"] for n in doc["nodes"]] == [f"tcp://node{i}.paxos.example:5001"
                                                    for i in range(3)]

    # 8. A rolling restart, one node at a time, while the operator keeps proposing.
    writer = Writer(m)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    timeline = []
    try:
        wait_for(lambda: len(writer.done) >= 3, "the first keys decided", 60)
        for i in range(3):
            before = writer.decided()
            assert m.stop(i) == 0, f"node{i} did not stop cleanly on SIGTERM"
            stopped = time.monotonic()
            n0 = len(writer.done)
            wait_for(lambda n0=n0: len(writer.done) >= n0 + DOWN_DECISIONS,
                     f"{DOWN_DECISIONS} keys decided while node{i} is down", 60)
            while_down = {k: v for k, v, t in writer.done if t > stopped}
            m.start(i)
            t0 = time.monotonic()
            r = m.sh("ops", guide_wait_loop(), timeout=90, extra_env={"N": str(i)})
            assert r.returncode == 0, f"node{i} not back and caught up: {r.stderr}"
            timeline.append(f"node{i}: {len(while_down)} keys decided while down, back and "
                            f"caught up {time.monotonic() - t0:.1f} s after its start")
            # Caught up: it has every decision made before and while it was down.
            known = chosen_on(status(m), i)
            missing = {k: v for k, v in {**before, **while_down}.items() if known.get(k) != v}
            assert not missing, f"node{i} caught up without {sorted(missing)[:10]}"
        n0 = len(writer.done)
        wait_for(lambda: len(writer.done) >= n0 + 3, "keys decided after the last restart", 60)
    finally:
        writer.stop_flag.set()
        thread.join(60)
    assert not writer.failed, writer.failed[:5]

    # Nothing lost: every decided key has its value on every node, in status and files.
    decided = {"CISC5597": "Value_A", **writer.decided()}
    assert all(v == f"v{int(k[5:])}" for k, v in decided.items() if k != "CISC5597")

    def everywhere() -> bool:
        doc = status(m)
        return all(all(chosen_on(doc, i).get(k) == v for k, v in decided.items())
                   for i in range(3))

    wait_for(everywhere, "every decided key on every node", 30)
    doc = status(m)
    for i in range(3):
        assert chosen_on(doc, i) == chosen_on(doc, 0)  # and nothing else anywhere
        data = m.root(f"node{i}") / f"var/lib/zpaxos/node{i}"
        wait_for(lambda d=data: all((d / f"{k}.txt").is_file() for k in decided),
                 f"node{i}'s value files")
        assert {k: (data / f"{k}.txt").read_text() for k in decided} == {
            k: v + "\n" for k, v in decided.items()}
    with capsys.disabled():
        print(f"\nthree machines: {len(decided)} keys decided, none lost; " +
              "; ".join(timeline))
