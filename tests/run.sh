#!/usr/bin/env bash
# The test suite, on a fresh machine too: sets up .venv on first use (tests/setup.sh, the
# only step that needs the network), then pytest.
#
#   tests/run.sh                 the default run (about 5 minutes on 2 cores)
#   tests/run.sh --slow          also the slow tests: the nemesis runs, the browser tests and
#                                the simulator's full 10,000 schedules (what .ci/run runs)
#   tests/run.sh -k e2e -x       any pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup.sh
exec .venv/bin/python -m pytest "$@"
