#!/usr/bin/env bash
# Stops what `ops/up.sh --detach` started, by the PIDs it recorded in the run folder
# ($COURIER_RUN_DIR, default .run): the gateway first, then the services (each leaves Consul and
# drains on SIGTERM), then Prometheus, Consul and NATS. A process still running 15 s after
# SIGTERM ($COURIER_STOP_GRACE) is killed. A PID file whose process is gone, or now runs another
# program, is only removed.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)

say() { printf 'down: %s\n' "$*"; }
# shellcheck source=ops/lib/processes.sh
. "$root/ops/lib/processes.sh"

case ${1:-} in
    "") ;;
    -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: ops/down.sh" >&2; exit 2 ;;
esac

run=$(courier_run_dir "$root")
mapfile -t running < <(recorded_processes "$run")
if ((${#running[@]})); then
    stop_processes "${running[@]}"
else
    say "nothing of $run runs"
fi
for name in "${COURIER_PROCESSES[@]}"; do
    rm -f "$run/$name.pid"
done
