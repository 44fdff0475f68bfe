"""The nemesis run: a cluster across network namespaces, a workload, a seeded fault
schedule, then healing, a full restart and the checker.

Only the public interfaces are used: ``zpaxos node``, ``zpaxos propose --json``,
``zpaxos status --json``, ``Client.stream`` (in tests/nemesis/worker.py) and the JSON log.
Every process, namespace and link made here is removed on success, failure, Ctrl-C and
SIGTERM (finally blocks, atexit, signal handlers).
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.nemesis import checker
from tests.nemesis.blaster import log_events
from tests.nemesis.crashnode import wiring
from tests.nemesis.netns import Topology
from tests.nemesis.nodes import ROOT, START_TIMEOUT_S, Nodes, _children, _reap, child_env
from tests.nemesis.proxy import ProxyControl
from tests.nemesis.report import Report
from tests.nemesis.schedule import CRASH_KINDS, KINDS, NETEM_KIND, Fault, make_schedule
from tests.nemesis.worker import hot_key
from zpaxos.lab.launcher import make_keys
from zpaxos.runtime.faults import CRASH_EXIT_CODE

PORT = 7000
CLI_TIMEOUT_S = 3.0  # a CLI proposer's whole-proposal deadline
CONVERGE_TIMEOUT_S = 60.0


@dataclass
class Options:
    seed: int
    seconds: float = 90.0
    nodes: int = 3
    workdir: Path = Path("out/nemesis")
    stream_workers: int = 2
    concurrency: int = 16
    rate: float = 40.0  # proposals per second per stream worker
    cli_threads: int = 2
    hot_keys: int = 4
    log_level: str = "WARNING"
    kinds: dict[str, int] | None = None  # fault kinds and weights (None: all)
    mutant: str | None = None  # deliberately broken nodes (crashnode.MUTANTS)
    verbose: bool = True
    curve: bool = False  # CURVE on every socket, keys of its own (see CURVE_KINDS)
    register_workers: int = 2  # register clients (regworker.py), checked for linearizability


def _b(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


class Nemesis:
    def __init__(self, opts: Options) -> None:
        self.o = opts
        self.dir = Path(opts.workdir).resolve()
        self.topo = Topology(opts.nodes)
        self.nodes = Nodes(self.topo, self.dir, opts.mutant)
        self.proxy_proc: subprocess.Popen | None = None
        self.proxy: ProxyControl | None = None
        self.ops: list[dict] = []
        self.ops_lock = threading.Lock()
        self.stop_workload = threading.Event()
        self.fault_log: list[dict] = []
        self.rng = random.Random(opts.seed ^ 0x5EED)

    def say(self, msg: str) -> None:
        if self.o.verbose:
            print(f"[nemesis {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    # ---- set-up

    def write_configs(self) -> None:
        n = self.o.nodes
        proposer = ["[proposer]", f"timeout_s = {CLI_TIMEOUT_S}", "round_timeout_s = 0.3",
                    "max_rounds = 30", "backoff_s = 0.05", "backoff_max_s = 0.5", ""]
        log = ["[log]", f"file = {self.dir / 'paxos.log'}", f"level = {self.o.log_level}",
               "format = json", ""]

        keys = self.dir / "keys"
        security: list[str] = []
        if self.o.curve:
            make_keys(self.dir, n)
            security = ["[security]", "curve = true", f"authorized_clients = {keys}/clients",
                        f"client_key = {keys}/clients/lab.key_secret", ""]

        def cfg(own: int | None) -> str:
            lines = []
            for i in range(n):
                host = self.topo.node_addr(i) if i == own else self.topo.proxy_addr(i)
                lines += [f"[node.{i}]", f"host = {host}", f"port = {PORT}",
                          f"data_dir = {self.dir / 'data' / f'node{i}'}", "value_files = *"]
                if self.o.curve:
                    lines += [f"public_key = {keys}/node{i}.key",
                              f"secret_key = {keys}/node{i}.key_secret"]
                lines.append("")
            return "\n".join(lines + proposer + log + security)

        for i in range(n):
            self.nodes.config(i).write_text(cfg(i))
        (self.dir / "client.ini").write_text(cfg(None))

    def client_cmd(self, *args: str) -> list[str]:
        return [*self.topo.exec_prefix(self.topo.client_ns), sys.executable, *args]

    def start_proxy(self) -> None:
        ctl = self.dir / "proxy.sock"
        with contextlib.suppress(FileNotFoundError):
            ctl.unlink()
        out = open(self.dir / "proxy.out", "w")
        self.proxy_proc = subprocess.Popen(
            [*self.topo.exec_prefix(self.topo.hub), sys.executable, "-m", "tests.nemesis.proxy",
             "--control", str(ctl), "--port", str(PORT), "--nodes", str(self.o.nodes),
             "--seed", str(self.o.seed)],
            cwd=ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
        out.close()
        _children.add(self.proxy_proc)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ctl.exists():
            if self.proxy_proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("fault proxy did not start: "
                                   + (self.dir / "proxy.out").read_text()[-500:])
            time.sleep(0.05)
        self.proxy = ProxyControl(str(ctl))

    # ---- workload

    def record(self, op: dict) -> None:
        with self.ops_lock:
            self.ops.append(op)

    def cli_loop(self, name: str, seed: int) -> None:
        rng = random.Random(seed)
        n = 0
        while not self.stop_workload.is_set():
            key = (hot_key(rng.randrange(self.o.hot_keys)) if rng.random() < 0.6
                   else f"x-{name}-{n}")
            value = f"{name}-{n}"
            n += 1
            t0 = time.time()
            try:
                r = subprocess.run(self.client_cmd("-m", "zpaxos", "propose", value, "--key", key,
                                                   "--config", str(self.dir / "client.ini"),
                                                   "--json", "-q"),
                                   cwd=self.dir, env=child_env(), capture_output=True, text=True,
                                   timeout=CLI_TIMEOUT_S + 30)
                chosen = json.loads(r.stdout)["chosen"] if r.returncode == 0 else None
                reason = r.stderr.strip()[-200:] if r.returncode else ""
            except (subprocess.TimeoutExpired, ValueError, KeyError) as e:
                chosen, reason = None, f"{type(e).__name__}"
            self.record({"proc": name, "via": "cli", "key": key, "value": value, "start": t0,
                         "end": time.time(), "chosen": chosen, "reason": reason})

    def start_stream_workers(self, seconds: float) -> list[tuple[subprocess.Popen, Path]]:
        workers = []
        for w in range(self.o.stream_workers):
            out = self.dir / f"stream{w}.jsonl"
            out.unlink(missing_ok=True)
            errf = open(self.dir / f"stream{w}.err", "w")
            p = subprocess.Popen(
                self.client_cmd("-m", "tests.nemesis.worker", "--config",
                                str(self.dir / "client.ini"), "--name", f"s{w}", "--out",
                                str(out), "--seconds", str(seconds), "--concurrency",
                                str(self.o.concurrency), "--hot-keys", str(self.o.hot_keys),
                                "--rate", str(self.o.rate), "--seed", str(self.o.seed * 100 + w)),
                cwd=ROOT, env=child_env(), stdout=errf, stderr=subprocess.STDOUT,
                start_new_session=True)
            errf.close()
            _children.add(p)
            workers.append((p, out))
        return workers

    def start_register_workers(self, seconds: float) -> list[tuple[subprocess.Popen, Path]]:
        workers = []
        for w in range(self.o.register_workers):
            out = self.dir / f"registers{w}.jsonl"
            out.unlink(missing_ok=True)
            errf = open(self.dir / f"registers{w}.err", "w")
            p = subprocess.Popen(
                self.client_cmd("-m", "tests.nemesis.regworker", "--config",
                                str(self.dir / "client.ini"), "--name", f"r{w}", "--out",
                                str(out), "--seconds", str(seconds),
                                "--seed", str(self.o.seed * 100 + 50 + w)),
                cwd=ROOT, env=child_env(), stdout=errf, stderr=subprocess.STDOUT,
                start_new_session=True)
            errf.close()
            _children.add(p)
            workers.append((p, out))
        return workers

    def check_registers(self, report: Report, paths: list[Path]) -> None:
        """The register clients' history must be linearizable (zpaxos/sim/lincheck.py)."""
        from zpaxos.sim.lincheck import Op, check

        ops = [Op(**{**d, "value": _b(d["value"]), "arg": _b(d["arg"]),
                     "expect_value": _b(d["expect_value"])})
               for path in paths for d in self.read_ops(path)]
        ok, why = check(ops)
        if not ok:
            report.violations.append(f"linearizability (registers): {why[:2000]}")
        report.operations["registers"] = len(ops)
        report.operations["registers_done"] = sum(o.ret is not None for o in ops)

    @staticmethod
    def read_ops(path: Path) -> list[dict]:
        if not path.exists():
            return []
        ops = []
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                ops.append(json.loads(line))
        return ops

    # ---- faults

    def apply(self, f: Fault) -> dict:
        """Start fault ``f``; its record (with a 'heal' closure kept aside)."""
        rec = {"kind": f.kind, "nodes": list(f.nodes), "params": f.params,
               "duration": f.duration, "at": f.at, "started": time.time(), "wired": True}
        k = f.kind
        assert self.proxy is not None
        if k in ("kill_minority", "kill_all"):
            for i in f.nodes:
                self.nodes.kill(i)
        elif k == "pause":
            for i in f.nodes:
                self.nodes.signal(i, signal.SIGSTOP)
        elif k == "partition_links":
            for i in f.nodes:
                self.topo.set_link(i, False)
        elif k == "partition_pair":
            a, b = (f"node{i}" for i in f.nodes)
            self.proxy.set([{"src": a, "dst": b, "drop": 1.0}, {"src": b, "dst": a, "drop": 1.0}])
        elif k == "one_way":
            src = "client" if f.params.get("from_client") else f"node{f.nodes[0]}"
            self.proxy.set([{"src": src, "dst": f"node{f.nodes[1]}", "drop": 1.0}])
        elif k == "loss":
            self.proxy.set([{"drop": f.params["p"]}])
        elif k == "delay":
            self.proxy.set([{"delay_ms": [0, f.params["ms"]]}])
        elif k == "duplicate":
            self.proxy.set([{"dup": f.params["p"]}])
        elif k == "reorder":
            self.proxy.set([{"reorder": f.params["p"], "reorder_ms": f.params["ms"]}])
        elif k == NETEM_KIND:
            for i in range(self.o.nodes):
                self.topo.set_netem(i, f.params["spec"])
        elif k in CRASH_KINDS:
            rec["crash_points"] = wiring()
            if rec["crash_points"] == "not wired":
                rec["wired"] = False
            else:
                i = f.nodes[0]
                self.nodes.kill(i)
                self.nodes.start(i, {"ZPAXOS_CRASH_AT": CRASH_KINDS[k],
                                     "ZPAXOS_CRASH_AFTER": str(f.params["after"])})
        return rec

    def heal(self, f: Fault, rec: dict) -> None:
        k = f.kind
        assert self.proxy is not None
        if k in ("kill_minority", "kill_all"):
            for i in f.nodes:
                self.restart(i)
        elif k == "pause":
            for i in f.nodes:
                self.nodes.signal(i, signal.SIGCONT)
        elif k == "partition_links":
            for i in f.nodes:
                self.topo.set_link(i, True)
        elif k == NETEM_KIND:
            for i in range(self.o.nodes):
                self.topo.set_netem(i, None)
        elif k in CRASH_KINDS and rec["wired"]:
            i = f.nodes[0]
            p = self.nodes.procs[i]
            rec["crashed"] = p.poll() == CRASH_EXIT_CODE
            self.nodes.kill(i)
            self.restart(i)
        else:
            self.proxy.clear()
        rec["healed"] = time.time()

    def restart(self, i: int) -> None:
        """Start node i; one that cannot start (say, a database a crash left damaged) is
        a finding for the report, not the end of the run."""
        try:
            self.nodes.start(i)
        except RuntimeError as e:
            self.nodes.unexpected.append(str(e))
            self.nodes.expected_exit[i] = True

    def heal_everything(self) -> None:
        if self.proxy is not None:
            with contextlib.suppress(OSError, ValueError):
                self.proxy.clear()
        for i in range(self.o.nodes):
            with contextlib.suppress(RuntimeError):
                self.topo.set_link(i, True)
            self.nodes.signal(i, signal.SIGCONT)
            if self.o.kinds and NETEM_KIND in self.o.kinds:
                self.topo.set_netem(i, None)

    # ---- the run

    def run(self) -> Report:
        o = self.o
        self.dir.mkdir(parents=True, exist_ok=True)
        for f in ("paxos.log", *(f"node{i}.out" for i in range(o.nodes))):
            (self.dir / f).unlink(missing_ok=True)
        schedule = make_schedule(o.seed, o.seconds, o.nodes, kinds=o.kinds)
        length = (f"--minutes {o.seconds / 60:g}" if o.seconds % 60 == 0
                  else f"--seconds {o.seconds:g}")
        replay = f"python -m tests.nemesis --seed {o.seed} {length} --nodes {o.nodes}"
        if o.kinds:
            plain = [k for k in o.kinds if k != NETEM_KIND]
            if set(plain) != set(KINDS):
                replay += f" --kinds {','.join(plain)}"
            if NETEM_KIND in o.kinds:
                replay += " --netem"
        if o.mutant:
            replay += f" --mutant {o.mutant}"
        self.say(f"seed {o.seed}: {len(schedule)} faults over {o.seconds:g} s; replay: {replay}")
        report = Report(o.seed, o.seconds, o.nodes, replay, workdir=str(self.dir))
        try:
            self.topo.setup()
            if o.kinds and NETEM_KIND in o.kinds and not self.topo.netem_available():
                raise RuntimeError("--netem: this kernel has no netem (tc qdisc ... netem)")
            self.write_configs()
            self.start_proxy()
            for i in range(o.nodes):
                self.nodes.start(i)
            self.say(f"cluster up in namespaces {', '.join(self.topo.namespaces)}")
            t_start = time.time()
            workers = self.start_stream_workers(o.seconds)
            reg_workers = self.start_register_workers(o.seconds)
            threads = [threading.Thread(target=self.cli_loop, args=(f"c{j}", o.seed * 10 + j),
                                        daemon=True) for j in range(o.cli_threads)]
            for t in threads:
                t.start()
            for f in schedule:
                self._sleep_until(t_start + f.at)
                rec = self.apply(f)
                self.say(f"fault  {f.describe()}" + ("" if rec["wired"] else "  (not wired)"))
                self._sleep_until(rec["started"] + f.duration)
                self.heal(f, rec)
                self.fault_log.append(rec)
                self.nodes.check_unexpected()
                self.nodes.sample_rss()
            self._sleep_until(t_start + o.seconds)
            self.stop_workload.set()
            t_end = time.time()
            self.say("workload ends; healing")
            self.heal_everything()
            for p, _ in workers + reg_workers:
                try:
                    p.wait(CLI_TIMEOUT_S + 30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            for t in threads:
                t.join(CLI_TIMEOUT_S + 35)
            for _, path in workers:
                self.ops += self.read_ops(path)
            self.nodes.check_unexpected()
            report.unexpected_exits = list(self.nodes.unexpected)
            report.proxy = self.proxy.stats() if self.proxy else {}
            self.finish(report, t_end)
            self.check_registers(report, [path for _, path in reg_workers])
            self.nodes.check_unexpected()
            report.unexpected_exits = list(self.nodes.unexpected)
        finally:
            self.stop_workload.set()
            self.nodes.stop_all()
            if self.proxy is not None:
                self.proxy.close()
            if self.proxy_proc is not None:
                self.proxy_proc.kill()
                self.proxy_proc.wait()
                _children.discard(self.proxy_proc)
            _reap()
            self.topo.close()
        (self.dir / "report.json").write_text(json.dumps(report.__dict__, indent=1, default=str))
        with open(self.dir / "history.jsonl", "w") as f:  # every operation, by start time
            for op in sorted(self.ops, key=lambda op: op["start"]):
                f.write(json.dumps(op) + "\n")
        return report

    def finish(self, report: Report, t_end: float) -> None:
        """Full restart (kill -9 every node), a repair proposal on every key, then check."""
        o = self.o
        self.say("full restart (kill -9 every node)")
        for i in range(o.nodes):
            self.nodes.kill(i)
        for i in range(o.nodes):
            self.restart(i)
        keys = sorted({op["key"] for op in self.ops})
        # Drive every key to a decision every node hears of: a proposer that finds a value
        # chosen (or accepted) adopts it, so this never changes a decision; it only makes
        # sure one exists and that every node is told it.
        keys_file = self.dir / "keys.txt"
        pending = keys
        for attempt in range(5):
            keys_file.write_text("\n".join(pending) + "\n")
            out = self.dir / f"repair{attempt}.jsonl"
            out.unlink(missing_ok=True)
            subprocess.run(self.client_cmd("-m", "tests.nemesis.worker", "--config",
                                           str(self.dir / "client.ini"), "--name",
                                           f"repair{attempt}", "--out", str(out), "--keys-file",
                                           str(keys_file), "--concurrency", "64"),
                           cwd=ROOT, env=child_env(), capture_output=True, timeout=300)
            done = self.read_ops(out)
            self.ops += done
            pending = sorted({op["key"] for op in done if op["chosen"] is None})
            if not pending:
                break
        decided, violations = checker.decisions(self.ops)
        data_dirs = {i: self.dir / "data" / f"node{i}" for i in range(o.nodes)}
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        while True:
            status = self.status()
            final_v, missing = checker.final_state(decided, set(keys), status, data_dirs)
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        violations += final_v + checker.cross_node(status)
        for e in self.log_events():
            if e.get("event") == "conflict":
                violations.append(f"log: {e.get('process')} conflict on {e.get('key')}: {e}")
        report.violations = violations
        report.liveness = missing
        report.keys = len(keys)
        via = [op["via"] for op in self.ops]
        report.operations = {
            "total": len(self.ops), "chosen": sum(op["chosen"] is not None for op in self.ops),
            "maybe": sum(op["chosen"] is None for op in self.ops),
            "cli": via.count("cli"), "stream": via.count("stream"), "repair": via.count("repair"),
        }
        report.fault_log = self.fault_log
        for rec in self.fault_log:
            bucket = report.faults if rec["wired"] else report.not_wired
            bucket[rec["kind"]] = bucket.get(rec["kind"], 0) + 1
            if rec["kind"] in CRASH_KINDS and rec["wired"]:
                c = report.crash_points.setdefault(rec["kind"], {
                    "scheduled": 0, "crashed": 0, "wiring": rec["crash_points"]})
                c["scheduled"] += 1
                c["crashed"] += bool(rec.get("crashed"))
        report.node_peak_rss_kb = dict(self.nodes.peak_rss_kb)
        report.unavailability = checker.unavailability(self.ops, self.fault_log, t_end)

    def status(self) -> dict[str, Any]:
        """``zpaxos status --json``. Its exit code tells the cluster's health (non-zero when
        nodes are down), so the JSON is read whatever the code."""
        r = subprocess.run(self.client_cmd("-m", "zpaxos", "status", "--json", "--config",
                                           str(self.dir / "client.ini"), "--timeout", "3"),
                           cwd=self.dir, env=child_env(), capture_output=True, text=True,
                           timeout=60)
        try:
            return json.loads(r.stdout)
        except ValueError:
            raise RuntimeError(f"zpaxos status failed ({r.returncode}): "
                               f"{r.stderr.strip()[-300:]}") from None

    def log_events(self) -> list[dict]:
        return log_events(self.dir / "paxos.log")

    @staticmethod
    def _sleep_until(t: float) -> None:
        while (left := t - time.time()) > 0:
            time.sleep(min(left, 0.2))
