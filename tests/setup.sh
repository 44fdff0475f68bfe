#!/usr/bin/env bash
# The set-up, the only step that needs the network: .venv with zpaxos and everything the
# tests and benchmarks use (the test and bench extras: pytest, hypothesis, selenium,
# PySyncObj, ...). tests/run.sh and run_scenarios.sh call it; it does nothing when all is
# there. "All there" means: installed from this very pyproject.toml (its checksum is kept
# in .venv), so a dependency added to it is installed by the next run, and an import check.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
stamp="$venv/.zpaxos-setup"
want="$(cksum < pyproject.toml)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || \
        ! "$venv/bin/python" -c "import zpaxos, zmq, click, msgspec, msgpack, prometheus_client, pytest, hypothesis, selenium, pysyncobj" 2>/dev/null; then
    echo "setting up $venv (first run, or pyproject.toml changed) ..." >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test,bench]"
    echo "$want" > "$stamp"
fi
