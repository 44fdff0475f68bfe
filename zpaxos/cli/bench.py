"""``zpaxos bench``: decisions per second and latency, end to end on real sockets.
Wiring only: zpaxos/lab/bench.py, regbench.py and million.py measure."""

from __future__ import annotations

import click

from zpaxos.cli.common import Failure
from zpaxos.cli.options import JSON, click_option
from zpaxos.runtime.exits import Exit

# ---------------------------------------------------------------- bench


@click.command()
@click.option("--race-proposers", type=click.IntRange(min=0, max=16), default=3,
              show_default=True, metavar="P",
              help="Proposer processes racing on the same fresh keys (0: no race).")
@click.option("--race-keys", type=click.IntRange(min=1), default=200, show_default=True,
              metavar="N", help="Fresh keys they race on.")
@click.option("--million", type=click.IntRange(min=1), default=None, metavar="N",
              help="Instead: a node holding N decided keys (e.g. 1000000), its memory and "
                   "its restart time.")
@click.option("--config", "config", metavar="PATH", default=None,
              help="Measure this running cluster (default: start a temporary one).")
@click.option("--proposals", type=click.IntRange(min=1), default=2000, show_default=True,
              metavar="N", help="Proposals in each of the three runs.")
@click.option("--concurrency", type=click.IntRange(min=1), default=64, show_default=True,
              metavar="C", help="Proposals in flight at once.")
@click.option("--contended-keys", type=click.IntRange(min=1), default=4, show_default=True,
              metavar="K", help="Keys shared by every proposal in the contended run.")
@click.option("--value-size", type=click.IntRange(min=1, max=1 << 19), default=16,
              show_default=True, metavar="BYTES", help="Bytes per value.")
@click.option("--cli-runs", type=click.IntRange(min=0), default=10, show_default=True,
              metavar="N", help="Whole `zpaxos propose` processes to time (0 to skip).")
@click.option("--curve", is_flag=True,
              help="Also run on a temporary cluster with CURVE on, to compare (not with --config).")
@click.option("--fast", is_flag=True,
              help="Skip phase 1 for fresh keys through range promises (the Python API's "
                   "default; `zpaxos propose` never does).")
@click.option("--registers", is_flag=True,
              help="Measure registers instead: set, cas, get; contended or not; 1-RTT on/off "
                   "(--proposals operations per run, --concurrency registers).")
@click.option("--locks", is_flag=True,
              help="Measure locks instead: acquire and release latency, one process "
                   "(--lock-cycles cycles) and --lock-contenders processes on one lock for "
                   "--lock-seconds.")
@click.option("--lock-cycles", type=click.IntRange(min=1, max=100_000), default=200,
              show_default=True, metavar="N", help="Uncontended acquire/release cycles.")
@click.option("--lock-contenders", type=click.IntRange(min=1, max=64), default=8,
              show_default=True, metavar="C", help="Processes contending for one lock.")
@click.option("--lock-seconds", type=click.FloatRange(min=0.5, max=3600), default=10.0,
              show_default=True, metavar="S", help="How long the contenders run.")
@click.option("--metrics-port", "metrics_port", type=click.IntRange(min=1, max=65535),
              default=None, metavar="PORT",
              help="Serve the benchmark client's Prometheus metrics on this port while it "
                   "runs (at [metrics] host of --config, else 127.0.0.1).")
@click_option(JSON)
def bench(config: str | None, proposals: int, concurrency: int, contended_keys: int,
          value_size: int, cli_runs: int, curve: bool, fast: bool, registers: bool,
          as_json: bool, race_proposers: int, race_keys: int, million: int | None,
          metrics_port: int | None, locks: bool, lock_cycles: int, lock_contenders: int,
          lock_seconds: float) -> None:
    """Measure decisions per second and latency.

    End to end on real sockets; without --config on a temporary 3-node cluster.
    """
    from zpaxos.lab import bench as b
    from zpaxos.lab.launcher import NodeStartError
    from zpaxos.runtime.config import ConfigError

    if locks:
        from zpaxos.lab import lockbench

        try:
            lr = lockbench.run_lock_bench(config, lock_cycles, lock_contenders, lock_seconds)
        except ConfigError as e:
            raise Failure(str(e), Exit.USAGE) from None
        except (NodeStartError, RuntimeError, OSError) as e:
            raise Failure(str(e)) from None
        click.echo(b.as_json(lr) if as_json else lockbench.report(lr))
        return
    if registers:
        from zpaxos.lab import regbench

        try:
            result = regbench.run_register_bench(config, proposals, concurrency,
                                                 contended_keys, value_size)
        except ConfigError as e:
            raise Failure(str(e), Exit.USAGE) from None
        except (NodeStartError, RuntimeError) as e:
            raise Failure(str(e)) from None
        click.echo(b.as_json(result) if as_json else regbench.report(result))
        return
    if million is not None:
        from zpaxos.lab import million as m

        if config is not None:
            raise Failure("--million builds its own temporary cluster; it cannot be combined "
                          "with --config", Exit.USAGE)
        try:
            mr = m.run_million(million)
        except (NodeStartError, RuntimeError) as e:
            raise Failure(str(e)) from None
        click.echo(b.as_json(mr) if as_json else m.report(mr))
        return
    metrics = None
    if metrics_port is not None:
        from zpaxos.runtime.config import MetricsConfig, load_config
        from zpaxos.runtime.metrics import ClientMetrics
        from zpaxos.runtime.sockets import BindError

        try:
            host = (load_config(config).metrics if config else MetricsConfig()).host
            metrics = ClientMetrics()
            metrics.serve(host, metrics_port)
        except ConfigError as e:
            raise Failure(str(e), Exit.USAGE) from None
        except BindError as e:
            raise Failure(str(e)) from None
    try:
        result = b.run_bench(config, proposals, concurrency, contended_keys, value_size, cli_runs,
                             curve, fast, race_proposers=race_proposers,
                             race_keys=race_keys, metrics=metrics)
    except ConfigError as e:
        raise Failure(str(e), Exit.USAGE) from None
    except (NodeStartError, RuntimeError) as e:
        raise Failure(str(e)) from None
    finally:
        if metrics is not None:
            metrics.close()
    click.echo(b.as_json(result) if as_json else b.report(result))



COMMANDS = (bench,)
