"""Shared pytest options: the slow switch and the simulator's seed count."""

from __future__ import annotations

import os

import pytest

# The simulator suite runs this many seeded schedules with --slow (CI), fewer by default,
# unless told otherwise; a long soak sets ZPAXOS_SIM_SEEDS=1000000 or --sim-seeds 1000000.
DEFAULT_SIM_SEEDS = 10_000
QUICK_SIM_SEEDS = 2_000  # without --slow: enough for every coverage count to mean something
SLOW = "--slow"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        SLOW, action="store_true",
        help="also run the slow suites (marked slow: the nemesis runs, the browser tests) and "
             f"the simulator's full {DEFAULT_SIM_SEEDS:,} schedules; .ci/run does",
    )
    parser.addoption(
        "--sim-seeds", type=int, default=None,
        help=f"seeded simulator schedules to run (default: $ZPAXOS_SIM_SEEDS, else"
             f" {DEFAULT_SIM_SEEDS} with {SLOW} and {QUICK_SIM_SEEDS} without)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --slow, the tests marked slow are skipped, saying how to run them."""
    if config.getoption(SLOW):
        return
    skip = pytest.mark.skip(reason=f"slow: tests/run.sh {SLOW} runs it")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def sim_seeds(request: pytest.FixtureRequest) -> int:
    """How many schedules the simulator tests run: --sim-seeds, $ZPAXOS_SIM_SEEDS, default."""
    n = request.config.getoption("--sim-seeds")
    if n is None:
        default = DEFAULT_SIM_SEEDS if request.config.getoption(SLOW) else QUICK_SIM_SEEDS
        n = int(os.environ.get("ZPAXOS_SIM_SEEDS", default))
    if n < 1:
        raise pytest.UsageError("--sim-seeds / ZPAXOS_SIM_SEEDS must be at least 1")
    return n
