"""``zpaxos scenarios``: the lab's scenarios and the textbook orderings on a real local
cluster (what ``./run_scenarios.sh`` runs). Wiring only: zpaxos/lab/scenarios.py starts
the nodes, runs, checks and draws; this parses, loads the cluster file and prints."""

from __future__ import annotations

import click

from zpaxos.cli.common import Failure, echo
from zpaxos.runtime.exits import Exit


@click.command()
@click.argument("numbers", nargs=-1, type=int, metavar="[N]...")
@click.option("--config", "config", metavar="PATH", default=None,
              help="Cluster file (default: $ZPAXOS_CONFIG, else configs/cluster.ini).")
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@click.option("--out", default="out/scenarios", show_default=True, metavar="DIR",
              help="Working directory for the run (the nodes' data, logs and charts).")
@click.option("--no-charts", "no_charts", is_flag=True, help="Do not draw charts.")
def scenarios(numbers: tuple[int, ...], config: str | None, list_only: bool, out: str,
              no_charts: bool) -> None:
    """Run the lab's scenarios (N: their numbers; default all) on a local cluster.

    Starts every node of the cluster file, runs each scenario on its own key, checks
    each outcome against what Paxos guarantees, draws a chart of each and prints a
    summary table; exit 1 if any outcome was wrong. Every node it starts is stopped
    again, on success, failure, Ctrl-C and SIGTERM.
    """
    import signal
    import sys
    from pathlib import Path

    from zpaxos.lab.launcher import NodeStartError
    from zpaxos.lab.scenarios import ALL_SCENARIOS, run, summary
    from zpaxos.runtime.config import ConfigError, default_config_path, load_config

    if list_only:
        for i, (slug, title, _) in enumerate(ALL_SCENARIOS, 1):
            echo(f"{i}  {slug:<14} {title}")
        return
    bad = [n for n in numbers if not 1 <= n <= len(ALL_SCENARIOS)]
    if bad:
        raise Failure(f"no scenario {bad[0]} (1-{len(ALL_SCENARIOS)}; see --list)", Exit.USAGE)
    try:
        cfg = load_config(config or default_config_path(), keys=False)
    except ConfigError as e:
        raise Failure(str(e), Exit.USAGE) from None
    if len(cfg.nodes) < 3:
        raise Failure(f"{cfg.path}: the scenarios need at least 3 nodes", Exit.USAGE)
    # SIGTERM unwinds like Ctrl-C, so every node is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(Exit.TERMINATED))
    draw = None
    if not no_charts:
        from zpaxos.pictures.draw import draw_scenario

        draw = draw_scenario
    try:
        rows = run(cfg, list(numbers) or list(range(1, len(ALL_SCENARIOS) + 1)), Path(out),
                   draw)
    except NodeStartError as e:
        raise Failure(str(e)) from None
    except KeyboardInterrupt:
        raise Failure("interrupted; every node was stopped", Exit.INTERRUPTED) from None
    echo("")
    echo(summary(rows))
    if not all(r.passed for r in rows):
        sys.exit(Exit.FAILED)


COMMANDS = (scenarios,)
