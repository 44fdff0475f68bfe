#!/usr/bin/env bash
# Run every scenario of the lab (and the textbook orderings) on a real local cluster, then
# render the simulator's lessons (out/lessons/: zpaxos sim --lessons).
#
#   ./run_scenarios.sh                 all scenarios on configs/cluster.ini
#   ./run_scenarios.sh 3               one scenario
#   ./run_scenarios.sh --list          what there is
#   ./run_scenarios.sh --config configs/five-nodes.ini
#
# On first use it creates .venv and installs zpaxos there (tests/setup.sh); later runs
# reuse it.
# Every node it starts is stopped again, on success, failure and Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")"

venv=.venv
tests/setup.sh
"$venv/bin/python" -m zpaxos.lab.scenarios "$@"

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
