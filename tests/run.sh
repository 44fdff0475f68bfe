#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: sets up .venv on first use, then pytest.
#
#   tests/run.sh                 everything (unit, simulator, end-to-end, scenario script)
#   tests/run.sh -k e2e -x       any pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
if ! "$venv/bin/python" -c "import zpaxos, zmq, click, msgpack, pytest, hypothesis, selenium, pysyncobj" 2>/dev/null; then
    echo "tests/run.sh: setting up $venv (first run only) ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test,bench]"
fi
exec "$venv/bin/python" -m pytest "$@"
