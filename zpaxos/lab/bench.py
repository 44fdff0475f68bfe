"""``zpaxos bench``: how fast a cluster decides, measured end to end on real sockets.

Without ``--config`` it starts its own temporary cluster (3 nodes on free loopback ports,
in a temporary directory, logging at WARNING so the measurement is of Paxos and SQLite,
not of log lines; no value files) and stops it afterwards. With ``--config`` it measures
a running cluster.

Every key it proposes is plainly its own: ``bench-<run id>-...``, the run id random per
run. Paxos never forgets a decision, so those keys stay in a measured cluster's state;
a cluster whose ``value_files`` glob would give each of them a ``.txt`` file (the lab's
``configs/cluster.ini`` gives every key one) is refused: measure a temporary cluster, or
narrow the glob.

It reports, for a run of independent keys (no contention) and for a run where every
proposal fights over a handful of keys (contention):
  decisions per second, latency percentiles, rounds per decision;
then a race (zpaxos/lab/race.py: several proposer processes proposing on the same fresh
keys at once, the case that really contends) with its histogram of rounds; and the wall
time of a whole ``zpaxos propose`` process (start-up included, bytecode cached as an
installed package has it). On a terminal a progress bar shows each run's progress.

``--fast`` runs the proposals with the fast path on (the Python API's default; see
zpaxos/protocol/ranges.py): each run's keys share a range (``bench-<run id>-serial-``...),
so after one range promise every fresh key needs phase 2 only. Without it every proposal
runs both phases, as the lab's ``zpaxos propose`` does (the race too: with ``--fast``
its proposers race for the range as well).
"""

from __future__ import annotations

import fnmatch
import json
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zpaxos.lab.launcher import (
    bench_cluster,
    cached_bytecode_env,
    zpaxos_cmd,
)
from zpaxos.lab.progress import Progress
from zpaxos.lab.race import as_dict, histogram, race
from zpaxos.printable import printable
from zpaxos.runtime.client import Client, options_from
from zpaxos.runtime.config import ClusterConfig, ConfigError, load_config
from zpaxos.runtime.log import null_log
from zpaxos.runtime.metrics import ClientMetrics


@dataclass
class Run:
    name: str
    proposals: int
    concurrency: int
    keys: int
    seconds: float
    chosen: int
    decisions_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_rounds: float


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


KEY_PREFIX = "bench-"


def new_run_id() -> str:
    return os.urandom(3).hex()


def refuse_value_files(cluster: ClusterConfig, run_id: str) -> None:
    """A cluster that would write a value file for every bench key is not measured."""
    probe = f"{KEY_PREFIX}{run_id}-0"
    for n in cluster.nodes:
        if n.value_files and fnmatch.fnmatchcase(probe, n.value_files):
            raise ConfigError(
                f"{cluster.path}: [node.{n.id}] value_files: {n.value_files!r} would give each "
                f"bench key ({KEY_PREFIX}*) a file in {n.data_dir}; run zpaxos bench without "
                f"--config (a temporary cluster), or narrow value_files (e.g. CISC5597)")


def measure(cluster: ClusterConfig, name: str, proposals: int, concurrency: int,
            keys: int | None, value_size: int, prefix: str, fast: bool = False,
            metrics: ClientMetrics | None = None) -> Run:
    """``proposals`` proposals, ``concurrency`` in flight; ``keys`` distinct keys shared
    by all of them (None: every proposal has a key of its own), named ``prefix<i>``.
    ``metrics``: the client counts its proposals there (runtime/metrics.py)."""
    value = b"v" * value_size
    items = [(f"{prefix}{i % keys if keys else i}", value + str(i).encode())
             for i in range(proposals)]
    opts = options_from(cluster.proposer, timeout_s=60.0, max_rounds=1000)
    latencies, rounds, chosen = [], [], 0
    with Client(cluster, null_log("bench"), fast=fast, metrics=metrics) as client, \
            Progress(name, proposals) as bar:
        t0 = time.perf_counter()
        for _, outcome, seconds in client.stream(items, concurrency, opts):
            latencies.append(seconds * 1000)
            rounds.append(outcome.rounds)
            chosen += outcome.chosen is not None
            bar.step()
        elapsed = time.perf_counter() - t0
    latencies.sort()
    return Run(name, proposals, concurrency, keys or proposals, round(elapsed, 3), chosen,
               round(proposals / elapsed, 1), round(_percentile(latencies, 0.5), 2),
               round(_percentile(latencies, 0.9), 2), round(_percentile(latencies, 0.99), 2),
               round(statistics.fmean(rounds), 2))


def cli_latency(config: Path, workdir: Path, runs: int, prefix: str) -> dict[str, float]:
    """Wall time of whole ``zpaxos propose`` processes, start-up included.

    With bytecode cached, as an installed package has it: the processes write and read
    their ``.pyc`` files under ``workdir`` (PYTHONPYCACHEPREFIX, after one untimed run),
    whatever PYTHONDONTWRITEBYTECODE says, so the figure is not a recompile of every
    module on every run."""
    env = cached_bytecode_env(workdir)
    times = []
    with Progress("zpaxos propose processes", runs) as bar:
        for i in range(-1, runs):  # -1: the untimed run that caches the bytecode
            t0 = time.perf_counter()
            r = subprocess.run(zpaxos_cmd("propose", f"v{i}", "--key", f"{prefix}{i + 1}",
                                          "-q", "--config", str(config)),
                               cwd=workdir, env=env, capture_output=True, timeout=60)
            if i >= 0:
                times.append((time.perf_counter() - t0) * 1000)
                bar.step()
            if r.returncode != 0:
                raise RuntimeError(f"zpaxos propose failed: {r.stderr.decode().strip()}")
    times.sort()
    return {"runs": runs, "median_ms": round(statistics.median(times), 1),
            "min_ms": round(times[0], 1), "max_ms": round(times[-1], 1)}


def run_bench(config: str | None, proposals: int, concurrency: int, contended_keys: int,
              value_size: int, cli_runs: int, curve: bool = False, fast: bool = False,
              race_proposers: int = 3, race_keys: int = 200,
              metrics: ClientMetrics | None = None) -> dict[str, Any]:
    """The three runs (and the CLI's wall time) on ``config``, or on a temporary cluster;
    ``curve``: the same runs again on a temporary cluster with CURVE on, in the same
    process, right after (the cost of CURVE, side by side). ``race_proposers`` processes
    race on ``race_keys`` fresh keys (0 proposers: no race)."""
    run_id = new_run_id()
    keys = f"{KEY_PREFIX}{run_id}-"
    if config is not None:  # checked before anything is proposed
        if curve:
            raise ConfigError("--curve measures temporary clusters, with and without CURVE; "
                              "it cannot be combined with --config")
        refuse_value_files(load_config(config), run_id)
    runs: list[Run] = []
    cli = None
    raced = None
    for secure in ((False, True) if curve else (False,)):
        tag = ", CURVE" if secure else (", plaintext" if curve else "")
        tag += ", fast" if fast else ""
        with tempfile.TemporaryDirectory(prefix="zpaxos-bench-") as tmp:
            work = Path(tmp)
            with bench_cluster(config, work, secure) as path:
                cluster = load_config(path)
                pre = f"{keys}{'c' if secure else ''}"
                runs += [
                    measure(cluster, f"independent keys{tag}", proposals, 1, None, value_size,
                            f"{pre}serial-", fast, metrics),
                    measure(cluster, f"independent keys{tag}", proposals, concurrency, None,
                            value_size, f"{pre}parallel-", fast, metrics),
                    measure(cluster, f"contended ({contended_keys} keys){tag}", proposals,
                            concurrency, contended_keys, value_size, f"{pre}contended-", fast,
                            metrics),
                ]
                if race_proposers and not secure:
                    raced = as_dict(race(path, f"{pre}race-", race_proposers, race_keys,
                                         max(1, concurrency // race_proposers), fast=fast))
                if cli_runs and not secure:
                    cli = cli_latency(path, work, cli_runs, f"{keys}cli-")
    return {"cluster": "temporary 3-node cluster on loopback" if config is None else str(path),
            "nodes": len(cluster.nodes), "value_bytes": value_size, "keys": f"{keys}*",
            "fast": fast,
            "runs": [asdict(r) for r in runs], "race": raced, "cli_propose": cli}


def report(result: dict[str, Any]) -> str:
    lines = [f"cluster: {printable(result['cluster'])} ({result['nodes']} nodes), values of "
             f"about {result['value_bytes']} bytes; keys {printable(result.get('keys'))}", ""]
    head = ("RUN", "PROPOSALS", "IN FLIGHT", "DECISIONS/S", "P50 MS", "P90 MS", "P99 MS",
            "ROUNDS", "CHOSEN")
    rows = [(printable(r["name"]), str(r["proposals"]), str(r["concurrency"]),
             f"{r['decisions_per_s']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}",
             f"{r['p99_ms']:.2f}", f"{r['mean_rounds']:.2f}", str(r["chosen"]))
            for r in result["runs"]]
    widths = [max(len(x[i]) for x in (head, *rows)) for i in range(len(head))]
    for r in (head, *rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    race = result.get("race")
    if race:
        r = race
        lines += ["", f"{printable(r['name'])}: {r['keys']} keys, {r['proposers']} proposer "
                      f"processes, {r['concurrency']} in flight each: {r['decided']} decided "
                      f"in {r['seconds']} s ({r['decisions_per_s']:.0f}/s), p50 "
                      f"{r['p50_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms, mean rounds "
                      f"{r['mean_rounds']:.2f}; keys won: "
                      + ", ".join(f"{k} {v}" for k, v in r["won"].items()),
                  "rounds per proposal:", *histogram({int(k): v for k, v in r["rounds"].items()})]
    cli = result.get("cli_propose")
    if cli:
        lines += ["", f"zpaxos propose, whole process: median {cli['median_ms']} ms "
                      f"(min {cli['min_ms']}, max {cli['max_ms']}, {cli['runs']} runs)"]
    return "\n".join(lines)


def as_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2)
