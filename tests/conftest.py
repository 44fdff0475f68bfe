"""Shared pytest options."""

from __future__ import annotations

import os

import pytest

# The simulator suite runs this many seeded schedules unless told otherwise; a long soak
# sets ZPAXOS_SIM_SEEDS=1000000 or passes --sim-seeds 1000000.
DEFAULT_SIM_SEEDS = 10_000


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--sim-seeds", type=int, default=None,
        help=f"seeded simulator schedules to run (default: $ZPAXOS_SIM_SEEDS or"
             f" {DEFAULT_SIM_SEEDS})",
    )


@pytest.fixture(scope="session")
def sim_seeds(request: pytest.FixtureRequest) -> int:
    """How many schedules the simulator tests run: --sim-seeds, $ZPAXOS_SIM_SEEDS, default."""
    n = request.config.getoption("--sim-seeds")
    if n is None:
        n = int(os.environ.get("ZPAXOS_SIM_SEEDS", DEFAULT_SIM_SEEDS))
    if n < 1:
        raise pytest.UsageError("--sim-seeds / ZPAXOS_SIM_SEEDS must be at least 1")
    return n
