#!/usr/bin/env bash
# Runs Courier on this machine: installs what is missing, builds, starts NATS (unless one
# already answers at $NATS_URL) and the services, and stops them all on Ctrl-C.
#
#   ops/up.sh             run in the foreground; Ctrl-C drains and stops everything it started
#   ops/up.sh --detach    start and return; stop later with ops/down.sh
#
# Environment: NATS_URL (default nats://127.0.0.1:4222), DATABASE_URL for the users service
# (default sqlite://data/users.db), any COURIER_* setting (see README). Logs and PIDs: .run/
set -euo pipefail

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)
cd "$root"
run="$root/.run"
mkdir -p "$run" data

detach=false
case ${1:-} in
    "") ;;
    --detach) detach=true ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: ops/up.sh [--detach]" >&2; exit 2 ;;
esac

say() { printf 'up: %s\n' "$*"; }
die() { printf 'up: error: %s\n' "$*" >&2; exit 1; }

ops/install.sh
export PATH="$root/.tools/bin:$PATH"
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) and run again"

say "building (release; the first build takes a few minutes)"
cargo build --release --locked --bins

export NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
hostport=${NATS_URL#*://}; hostport=${hostport%%,*}; hostport=${hostport##*@}
nats_host=${hostport%:*}; nats_port=${hostport##*:}

# Whether a NATS server greets on host:port.
nats_answers() {
    local line
    exec 3<>"/dev/tcp/$1/$2" 2>/dev/null || return 1
    IFS= read -r -t 2 line <&3 || true
    exec 3<&- 3>&-
    [[ $line == INFO* ]]
}

started=()   # "name pid", in start order

# Starts a process in the background with its log in .run/<name>.log.
launch() {
    local name=$1; shift
    "$@" >"$run/$name.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$run/$name.pid"
    started+=("$name $pid")
}

# Waits until the log of <name> shows <pattern>, or its process dies.
wait_for_log() {
    local name=$1 pattern=$2 pid
    pid=$(cat "$run/$name.pid")
    for _ in $(seq 1 300); do
        grep -q "$pattern" "$run/$name.log" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$run/$name.log" >&2; die "$name exited during start-up (log: .run/$name.log)"; }
        sleep 0.1
    done
    die "$name did not start within 30 s (log: .run/$name.log)"
}

stop_all() {
    trap - INT TERM EXIT
    local i name pid
    for ((i = ${#started[@]} - 1; i >= 0; i--)); do
        read -r name pid <<<"${started[$i]}"
        if kill -0 "$pid" 2>/dev/null; then
            say "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && { say "$name still running after 15 s; killing"; kill -KILL "$pid"; }
        fi
        rm -f "$run/$name.pid"
    done
}

if nats_answers "$nats_host" "$nats_port"; then
    say "NATS already answers at $NATS_URL: using it"
else
    [[ $nats_host == 127.0.0.1 || $nats_host == localhost ]] || die "no NATS answers at $NATS_URL"
    say "starting nats-server on $nats_host:$nats_port (JetStream on, data in .run/nats)"
    launch nats nats-server -a "$nats_host" -p "$nats_port" -js -sd "$run/nats"
    for _ in $(seq 1 100); do nats_answers "$nats_host" "$nats_port" && break; sleep 0.1; done
    nats_answers "$nats_host" "$nats_port" || { tail -n 20 "$run/nats.log" >&2; die "nats-server did not start"; }
fi
# Until the system is up, any failure stops what was started; in the foreground, so does Ctrl-C.
trap 'stop_all' EXIT
$detach || trap 'stop_all; exit 0' INT TERM

export CONSUL_HTTP_ADDR=${CONSUL_HTTP_ADDR:-127.0.0.1:8500}
consul_hostport=${CONSUL_HTTP_ADDR#*://}
consul_host=${consul_hostport%:*}; consul_port=${consul_hostport##*:}

# Whether a Consul agent on host:port has a leader (answers /v1/status/leader with an address).
consul_answers() {
    local reply
    exec 4<>"/dev/tcp/$1/$2" 2>/dev/null || return 1
    printf 'GET /v1/status/leader HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&4
    reply=$(timeout 2 cat <&4 || true)
    exec 4<&- 4>&-
    [[ $reply == *' 200 '* && $reply == *'"'*':'*'"'* ]]
}

if consul_answers "$consul_host" "$consul_port"; then
    say "Consul already answers at $CONSUL_HTTP_ADDR: using it"
else
    [[ $consul_host == 127.0.0.1 || $consul_host == localhost ]] || die "no Consul answers at $CONSUL_HTTP_ADDR"
    say "starting consul agent -dev on $consul_host:$consul_port (UI at http://$consul_host:$consul_port/ui/)"
    launch consul consul agent -dev -bind 127.0.0.1 -client "$consul_host" -http-port "$consul_port" -ui
    for _ in $(seq 1 150); do consul_answers "$consul_host" "$consul_port" && break; sleep 0.1; done
    consul_answers "$consul_host" "$consul_port" || { tail -n 20 "$run/consul.log" >&2; die "consul did not start"; }
fi

say "starting users (database ${DATABASE_URL:-sqlite://data/users.db})"
users_admin=${USERS_ADMIN_BIND:-127.0.0.1:9101}
DATABASE_URL=${DATABASE_URL:-sqlite://data/users.db} COURIER_ADMIN__BIND=$users_admin \
    launch users target/release/courier-users
wait_for_log users "Service started"

cat <<EOF

Courier is up.
  NATS      $NATS_URL
  Consul    http://$consul_host:$consul_port/ui/   (every instance with its checks)
  users     users.create / get / list / update / delete / authenticate   (log: .run/users.log)
            http://$users_admin/health  /health/ready  /metrics

Try it with the NATS CLI:
  nats req users.create '{"name":"Ada","email":"ada@example.com","password":"correct horse"}'
  nats req users.list ''
  nats micro ls

EOF
if $detach; then
    trap - EXIT
    say "detached; stop with ops/down.sh"
else
    say "Ctrl-C stops everything started here"
    while :; do
        for entry in "${started[@]}"; do
            read -r name pid <<<"$entry"
            kill -0 "$pid" 2>/dev/null || { say "$name exited (log: .run/$name.log)"; stop_all; exit 1; }
        done
        sleep 1
    done
fi
