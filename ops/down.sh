#!/usr/bin/env bash
# Stops what `ops/up.sh --detach` started (by the PIDs it recorded in .run/), services first.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)
run="$root/.run"
for name in gateway notifications orders payments products users consul nats; do
    file="$run/$name.pid"
    [[ -f $file ]] || continue
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        echo "down: stopping $name (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && { echo "down: $name still running after 15 s; killing"; kill -KILL "$pid"; }
    fi
    rm -f "$file"
done
