#!/usr/bin/env bash
# Run every scenario of the lab (and the textbook orderings) on a real local cluster, then
# render the simulator's lessons (out/lessons/: zpaxos sim --lessons).
#
#   ./run_scenarios.sh                 all scenarios on configs/cluster.ini
#   ./run_scenarios.sh 3               one scenario
#   ./run_scenarios.sh --list          what there is
#   ./run_scenarios.sh --config configs/five-nodes.ini
#
# On first use it creates .venv and installs zpaxos there; later runs reuse it.
# Every node it starts is stopped again, on success, failure and Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")"

venv=.venv
if ! "$venv/bin/python" -c "import zpaxos.cli.scenarios, zmq, click, msgpack" 2>/dev/null; then
    echo "run_scenarios.sh: setting up $venv (first run only) ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"
fi
"$venv/bin/python" -m zpaxos scenarios "$@"

# Then the lessons (zpaxos sim --lessons, simulated: seconds, no cluster): each breakable
# rule's shortest run that chooses two values, drawn into out/lessons/. Not for --list,
# --no-charts, or a run of chosen scenarios.
lessons=yes
for arg in "$@"; do
    case "$arg" in --list|--no-charts|[0-9]*) lessons=no ;; esac
done
if [ "$lessons" = yes ]; then
    exec "$venv/bin/python" -m zpaxos sim --lessons --out-dir out/lessons
fi
