#!/usr/bin/env bash
# The set-up, the only step that needs the network: .venv with zpaxos and everything the
# tests and benchmarks use (the test and bench extras: pytest, hypothesis, selenium,
# PySyncObj). tests/run.sh and run_scenarios.sh call it; it does nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
if ! "$venv/bin/python" -c "import zpaxos, zmq, click, msgpack, pytest, hypothesis, selenium, pysyncobj" 2>/dev/null; then
    echo "setting up $venv (first run only) ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test,bench]"
fi
