"""The lab's scenarios and the textbook orderings, run against a real local cluster.

``./run_scenarios.sh`` runs them (``zpaxos scenarios``, zpaxos/cli/scenarios.py). It starts every
node of the cluster file, runs the chosen scenarios one after the other, each on its own
key, checks each outcome against what Paxos guarantees, draws a message sequence chart
of each, prints a summary table, stops every process it started (on success, failure,
Ctrl-C or SIGTERM) and exits 1 if any outcome was wrong.

This module is the runner (the cluster's set-up, the run, the summary); the scenarios are
in scenario_defs.py, and what each may use (Ctx, Row, the checks) in scenario_kit.py. All
their public names are importable from here too.
"""

from __future__ import annotations

import shutil
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from zpaxos.lab.launcher import LocalCluster, NodeStartError, make_keys, write_config
from zpaxos.lab.scenario_defs import (
    ALL_SCENARIOS,
    B_ABOVE_A,
    CATCH_UP_SCENARIOS,
    CATCH_UP_WITHIN_S,
    PAUSE_S,
    RACE_TRIES,
    RACERS,
    REGISTER_SCENARIOS,
    SCENARIOS,
    STAGE_S,
    s1_single,
    s2_a_then_b,
    s3_b_then_a,
    s4_minority_seen,
    s5_minority_missed,
    s6_livelock,
    s7_minority_down,
    s8_majority_down,
    s9_crash_restart,
    s10_cas_race,
    s11_paused_catch_up,
)
from zpaxos.lab.scenario_kit import Ctx, Failed, Row, check, finish, outcome, won
from zpaxos.printable import printable
from zpaxos.runtime.config import ClusterConfig

__all__ = ["ALL_SCENARIOS", "B_ABOVE_A", "CATCH_UP_SCENARIOS", "CATCH_UP_WITHIN_S",
           "DEFAULT_OUT", "PAUSE_S", "RACERS", "RACE_TRIES", "REGISTER_SCENARIOS",
           "SCENARIOS", "STAGE_S", "SUMMARY_WIDTH", "Ctx", "Failed", "Row", "check",
           "finish", "fresh_workdir", "outcome", "run", "s1_single", "s2_a_then_b",
           "s3_b_then_a", "s4_minority_seen", "s5_minority_missed", "s6_livelock",
           "s7_minority_down", "s8_majority_down", "s9_crash_restart", "s10_cas_race",
           "s11_paused_catch_up", "scenario_config", "summary", "won"]

DEFAULT_OUT = Path("out/scenarios")


# ---------------------------------------------------------------- running


def scenario_config(cfg: ClusterConfig, workdir: Path) -> Path:
    """The user's cluster (hosts, binds, ports, proposer settings) with fresh data directories
    and a JSON log inside ``workdir``, so runs never disturb each other or real data."""
    # A restarted node's sync with its peers (SYNC, SYNC_REPLY) is logged at INFO, so the
    # charts can draw it where it taught the node a decision.
    path = write_config(workdir / "cluster.ini", [(n.host, n.port) for n in cfg.nodes],
                        proposer=cfg.proposer, value_files=cfg.nodes[0].value_files,
                        secure=cfg.security.curve, binds=[n.bind for n in cfg.nodes])
    if cfg.security.curve:  # CURVE on, with keys of its own (in workdir/keys)
        make_keys(workdir, len(cfg.nodes))
    return path


def fresh_workdir(out: Path) -> None:
    """Start the cluster afresh in ``out`` (no data, no log), but keep the charts: the
    charts of scenarios that are not rerun (one scenario, or a run stopped by Ctrl-C)
    stay, and each rerun scenario's chart is replaced when it is drawn."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "data").exists():
        shutil.rmtree(out / "data")
    for name in ("paxos.log", "cluster.ini"):
        (out / name).unlink(missing_ok=True)


def run(cfg: ClusterConfig, numbers: list[int], out: Path,
        draw: Callable[[Path, str, Path, float], str] | None) -> list[Row]:
    fresh_workdir(out)
    config = scenario_config(cfg, out)
    rows = []
    with LocalCluster(config, out, [n.id for n in cfg.nodes]) as cluster:
        cluster.start_all()
        print(f"cluster of {len(cfg.nodes)} nodes up ({cfg.path}); working in {out}/",
              flush=True)
        for number in numbers:
            slug, title, fn = ALL_SCENARIOS[number - 1]
            row = Row(number, slug, title)
            ctx = Ctx(cluster, cfg, out, row)
            if draw is not None:  # a chart is replaced only by one of a new run
                (out / f"{number}-{slug}.svg").unlink(missing_ok=True)
            print(f"[{number}] {title} ...", flush=True)
            t0 = time.monotonic()
            since = time.time()
            try:
                row.happened = fn(ctx)
                row.passed = True
            except Failed as e:
                row.happened = f"FAILED: {e}"
            except (NodeStartError, TimeoutError, RuntimeError) as e:
                row.happened = f"FAILED: {e}"
            row.seconds = time.monotonic() - t0
            for node in cfg.nodes:  # leave every node up for the next scenario
                if not cluster.is_running(node.id):
                    cluster.start(node.id)
            if draw is not None:
                row.chart = draw(out / "paxos.log", f"{number}-{slug}", out, since)
            print(f"    {'pass' if row.passed else 'FAIL'}: {row.happened}", flush=True)
            rows.append(row)
    return rows


SUMMARY_WIDTH = 100  # columns: the summary fits a standard terminal


def summary(rows: list[Row], width: int = SUMMARY_WIDTH) -> str:
    """A table of the results, then what happened in each scenario, wrapped: nothing is
    wider than ``width`` columns and nothing is cut off."""
    head = ("#", "SCENARIO", "CHOSEN", "ROUNDS", "TIME", "RESULT")
    body = [(str(r.number), r.slug, printable(r.chosen), r.rounds, f"{r.seconds:.1f}s",
             "pass" if r.passed else "FAIL") for r in rows]
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    widths[2] = min(widths[2], 24)
    lines = []
    for r in (head, *body):
        cells = [c if len(c) <= w else c[: w - 3] + "..." for c, w in zip(r, widths, strict=True)]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    if rows:
        lines += ["", "what happened:"]
        number_w = max(len(str(r.number)) for r in rows)
        for row in rows:
            lines += textwrap.wrap(printable(row.happened) or "-", width,
                                   initial_indent=f"{row.number:<{number_w}}  ",
                                   subsequent_indent=" " * (number_w + 2),
                                   break_on_hyphens=False)
    charts = [r.chart for r in rows if r.chart]
    if charts:
        lines.append("")
        lines += textwrap.wrap("charts: " + ", ".join(charts), width, subsequent_indent="  ",
                               break_on_hyphens=False)
    failed = [r for r in rows if not r.passed]
    lines.append("")
    lines.append(f"{len(rows) - len(failed)} of {len(rows)} scenarios passed")
    return "\n".join(lines)
