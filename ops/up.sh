#!/usr/bin/env bash
# Runs Courier on this machine: installs what is missing, builds, starts NATS, Consul and
# Prometheus (unless they already answer), the services (users, products, payments, orders,
# notifications) and the HTTP gateway, and stops them all on Ctrl-C.
#
#   ops/up.sh               run in the foreground; Ctrl-C drains and stops everything it started
#   ops/up.sh --detach      start and return; stop later with ops/down.sh
#   ops/up.sh --debug       build and run debug binaries (cargo build --bins), not release ones
#   ops/up.sh --json-logs   every Courier process logs JSON lines (COURIER_LOG__FORMAT=json)
#   ops/up.sh --no-build    run the binaries built before (by ops/check-system.sh, a test run)
#
# Environment: NATS_URL (default nats://127.0.0.1:4222), CONSUL_HTTP_ADDR (127.0.0.1:8500),
# PROMETHEUS_ADDR (127.0.0.1:9090), COURIER_GATEWAY__BIND (127.0.0.1:8080),
# COURIER_ADMIN_PORT_BASE (9101: the services' admin listeners are 9101 users, 9102 products,
# 9103 payments, 9104 orders, 9105 notifications), COURIER_RUN_DIR (logs, PIDs, NATS and
# Prometheus data; default .run), COURIER_PROFILE (release, or debug as --debug),
# <SERVICE>_DATABASE_URL for each service (USERS_DATABASE_URL, PRODUCTS_..., PAYMENTS_...,
# ORDERS_..., NOTIFICATIONS_...; default sqlite://data/<service>.db: a database per service),
# any COURIER_* setting (see README). Binaries are taken from cargo's target directory
# (CARGO_TARGET_DIR is honoured). NATS, Consul and Prometheus are started only on loopback.
# Without COURIER_AUTH__JWT_SECRET or COURIER_AUTH__JWT_PUBLIC_KEY, a random local JWT secret
# is made on first use into <run>/gateway-secret.env. COURIER_USERS__ADMIN_EMAILS defaults to
# admin@example.com: sign up with it to get the admin role.
# A NATS started here runs ops/nats/nats-server.conf (users admin, service, gateway, guest);
# their passwords are made on first use into <run>/nats-passwords.env, and
# `. .run/nats-admin.env` sets up the nats CLI as admin.
set -euo pipefail

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)
cd "$root"

say() { printf 'up: %s\n' "$*"; }
die() { printf 'up: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=ops/lib/processes.sh
. "$root/ops/lib/processes.sh"

usage="usage: ops/up.sh [--detach] [--debug] [--json-logs] [--no-build]"
detach=false
build=true
profile=${COURIER_PROFILE:-release}
for arg in "$@"; do
    case $arg in
        --detach) detach=true ;;
        --debug) profile=debug ;;
        --json-logs) export COURIER_LOG__FORMAT=json ;;
        --no-build) build=false ;;
        -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
[[ $profile == release || $profile == debug ]] || die "COURIER_PROFILE=$profile: expected release or debug"

run=$(courier_run_dir "$root")
# A path as messages show it: relative to the repository when inside it.
shown() { local p=$1; [[ $p == "$root/"* ]] && p=${p#"$root/"}; printf '%s\n' "$p"; }

# What the scripts need before anything else: cargo builds, curl asks the gateway and
# Prometheus, python3 reads cargo's metadata and picks free ports.
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) and run again"
for tool in curl python3; do
    command -v "$tool" >/dev/null || die "$tool not found: install it (Debian: apt-get install $tool) and run again"
done

admin_base=${COURIER_ADMIN_PORT_BASE:-9101}
if ! [[ $admin_base =~ ^[0-9]{1,5}$ ]] || ((admin_base < 1 || admin_base + ${#COURIER_SERVICES[@]} - 1 > 65535)); then
    die "COURIER_ADMIN_PORT_BASE=$admin_base: expected a port, with the next $((${#COURIER_SERVICES[@]} - 1)) free too"
fi

mkdir -p "$run"   # (each SQLite database makes its own folder, data/ by default)
# A second system from the same run folder would fight the first over its ports and PID files.
if running=$(recorded_processes "$run" | grep -Ev '^(nats|consul|prometheus) ') && [[ -n $running ]]; then
    die "Courier already runs from $(shown "$run") ($(tr '\n' ',' <<<"$running" | sed 's/,$//; s/,/, /g')): stop it with ops/down.sh"
fi

ops/install.sh
export PATH="$root/.tools/bin:$PATH"

if ! $build; then
    say "not building: running the $profile binaries there are"
elif [[ $profile == debug ]]; then
    say "building (debug)"
    cargo build --locked --bins
else
    say "building (release; the first build takes a few minutes)"
    cargo build --release --locked --bins
fi
# Where cargo put them: its target directory (CARGO_TARGET_DIR, build.target-dir), the target
# triple's folder when one is set, then the profile's.
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') ||
    die "cargo metadata failed: cannot tell where cargo puts binaries"
bin_dir="$target_dir${CARGO_BUILD_TARGET:+/$CARGO_BUILD_TARGET}/$profile"
for name in "${COURIER_SERVICES[@]}" gateway; do
    [[ -x $bin_dir/courier-$name ]] || die "$bin_dir/courier-$name is missing$($build || echo ": build it first, or run without --no-build")"
done

export NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
hostport=${NATS_URL#*://}; hostport=${hostport%%,*}; hostport=${hostport##*@}
nats_host=${hostport%:*}; nats_port=${hostport##*:}

# Prints the INFO line of the NATS server on host:port; fails when none greets there. A
# subshell with its stderr silenced: bash reports a refused /dev/tcp connection before any
# redirection on the `exec` applies, and `exec ... 2>/dev/null` would silence this script's
# stderr for good once a connection succeeds.
nats_info() (
    line=""
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    IFS= read -r -t 2 line <&3 || true
    [[ $line == INFO* ]] && printf '%s\n' "$line"
) 2>/dev/null

# Whether a NATS server greets on host:port.
nats_answers() { nats_info "$1" "$2" >/dev/null; }

# A URL list with users and passwords masked, for messages (like courier_config::redact_url).
redacted() { sed -E 's#(^|,)([^,]*://)?[^,]*@#\1\2***@#g' <<<"$1"; }

# Whether host is this machine's loopback, where this script may start servers.
loopback() { [[ $1 == 127.0.0.1 || $1 == localhost ]]; }

nats_conf="$root/ops/nats/nats-server.conf"
nats_passwords="$run/nats-passwords.env"

# Makes <run>/nats-passwords.env on first use: a random password for each user of
# ops/nats/authorization.conf, letters and digits starting with one, since nats-server parses
# the variables' values as configuration values. Readable by this user only.
ensure_nats_passwords() {
    [[ -s $nats_passwords ]] && return 0
    local role
    (
        umask 077
        for role in ADMIN SERVICE GATEWAY GUEST; do
            printf 'COURIER_NATS_%s_PASSWORD=p%s\n' "$role" "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
        done >"$nats_passwords.new"
    )
    mv "$nats_passwords.new" "$nats_passwords"
    say "made NATS passwords for admin, service, gateway and guest in $(shown "$nats_passwords")"
}

# The password of one user (admin, service, gateway, guest) from <run>/nats-passwords.env.
nats_password() { sed -n "s/^COURIER_NATS_${1^^}_PASSWORD=//p" "$nats_passwords"; }

# nats-server with Courier's users; the passwords are in its environment only.
run_nats_server() {
    set -a
    # shellcheck source=/dev/null
    . "$nats_passwords"
    set +a
    exec nats-server -c "$nats_conf" -a "$nats_host" -p "$nats_port" -sd "$run/nats"
}

# Writes <run>/nats-admin.env, which sets up the nats CLI as the admin user when sourced.
write_admin_env() {
    local file="$run/nats-admin.env" shown_file
    shown_file=$(shown "$file")
    (
        umask 077
        {
            printf '# For the nats CLI as Courier'"'"'s admin: . %s\n' "$shown_file"
            printf 'export NATS_URL=nats://%s:%s NATS_USER=admin NATS_PASSWORD=%s\n' \
                "$nats_host" "$nats_port" "$(nats_password admin)"
        } >"$file"
    )
}

started=()   # "name pid", in start order

# Starts a process in the background with its log in <run>/<name>.log.
launch() {
    local name=$1; shift
    "$@" >"$run/$name.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$run/$name.pid"
    started+=("$name $pid")
}

# await <name> <what> <seconds> <check...>: waits, with progress, until the check passes while
# the process <name> runs; on failure shows the end of its log and stops.
await() {
    local name=$1 what=$2 limit=$3 log="$run/$1.log" status=0
    shift 3
    wait_until "$what" "$limit" "$(<"$run/$name.pid")" "$@" || status=$?
    ((status == 0)) && return 0
    tail -n 20 "$log" >&2 || true
    ((status == 2)) && die "$name exited during start-up (log: $(shown "$log"))"
    die "$what: not within $limit s (log: $(shown "$log"))"
}

# Whether the log of <name> shows <pattern> (a fixed string, as found in both log formats).
log_shows() { grep -qF "$2" "$run/$1.log" 2>/dev/null; }

stop_all() {
    trap - INT TERM EXIT
    progress_tty && printf '\r\033[K'
    ((${#started[@]})) && stop_processes "${started[@]}"
    local entry
    for entry in "${started[@]}"; do
        rm -f "$run/${entry%% *}.pid"
    done
}

# Until the system is up, any failure stops what was started; in the foreground, so does Ctrl-C.
trap 'stop_all' EXIT
$detach || trap 'stop_all; exit 0' INT TERM

services_nats_url=$NATS_URL   # what the services connect to: with the service user's password when ours
ours=false                    # whether the NATS runs ops/nats/ with the passwords of <run>
if info=$(nats_info "$nats_host" "$nats_port"); then
    if [[ $info == *'"auth_required":true'* && $NATS_URL != *@* && -s $nats_passwords ]]; then
        # Most likely the server of an earlier `ops/up.sh --detach`.
        say "NATS at $NATS_URL asks for credentials: using the users of $(shown "$nats_passwords")"
        ours=true
    else
        say "NATS already answers at $(redacted "$NATS_URL"): using it"
    fi
else
    loopback "$nats_host" || die "no NATS answers at $(redacted "$NATS_URL")"
    [[ $NATS_URL != *@* ]] || die "NATS_URL carries credentials but no NATS answers there; unset it to start one"
    ensure_nats_passwords
    say "starting nats-server on $nats_host:$nats_port with ops/nats/nats-server.conf (JetStream on, data in $(shown "$run/nats"))"
    launch nats run_nats_server
    await nats nats 15 nats_answers "$nats_host" "$nats_port"
    ours=true
fi
if $ours; then
    services_nats_url="nats://service:$(nats_password service)@$nats_host:$nats_port"
    write_admin_env
fi

export CONSUL_HTTP_ADDR=${CONSUL_HTTP_ADDR:-127.0.0.1:8500}
consul_hostport=${CONSUL_HTTP_ADDR#*://}
consul_host=${consul_hostport%:*}; consul_port=${consul_hostport##*:}

# Whether a Consul agent on host:port has a leader (answers /v1/status/leader with an address).
# A subshell with its stderr silenced, as nats_info.
consul_answers() (
    exec 4<>"/dev/tcp/$1/$2" || exit 1
    printf 'GET /v1/status/leader HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&4
    reply=$(timeout 2 cat <&4 || true)
    [[ $reply == *' 200 '* && $reply == *'"'*':'*'"'* ]]
) 2>/dev/null

# consul with these arguments, in a folder of its own: `-dev` has no data directory, so the agent
# reads persisted service definitions from ./services, which in the repository is Courier's.
run_consul() {
    mkdir -p "$run/consul"
    cd "$run/consul"
    exec consul "$@"
}

if consul_answers "$consul_host" "$consul_port"; then
    say "Consul already answers at $CONSUL_HTTP_ADDR: using it"
else
    loopback "$consul_host" || die "no Consul answers at $CONSUL_HTTP_ADDR"
    consul_args=(agent -dev -bind 127.0.0.1 -client "$consul_host" -http-port "$consul_port" -ui)
    if [[ $consul_port != 8500 ]]; then
        # Beside another agent (a developer's on the default ports): its own server and Serf
        # ports, free ones, and no WAN, DNS or gRPC listener, which nothing here uses.
        read -r server_port serf_port < <(ops/lib/free-ports.py 1 1) || die "no free ports for consul"
        consul_args+=(-server-port "$server_port" -serf-lan-port "$serf_port"
            -serf-wan-port -1 -dns-port -1 -grpc-port -1)
    fi
    say "starting consul agent -dev on $consul_host:$consul_port (UI at http://$consul_host:$consul_port/ui/)"
    launch consul run_consul "${consul_args[@]}"
    await consul consul 30 consul_answers "$consul_host" "$consul_port"
fi

prometheus_addr=${PROMETHEUS_ADDR:-127.0.0.1:9090}
prometheus_addr=${prometheus_addr#http://}; prometheus_addr=${prometheus_addr%/}
prometheus_host=${prometheus_addr%:*}
prometheus_ready() { curl -fsS -o /dev/null --max-time 2 "http://$prometheus_addr/-/ready" 2>/dev/null; }

# Writes <run>/prometheus.yml: ops/prometheus/prometheus.yml with this Consul, this
# Prometheus's own address and the rule files' absolute paths (they are relative to the file).
render_prometheus_config() {
    local source=ops/prometheus/prometheus.yml target="$run/prometheus.yml"
    {
        printf '# Made by ops/up.sh from %s: edit that one.\n' "$source"
        sed -e "s#^\([[:space:]]*\(-[[:space:]]*\)\{0,1\}server:[[:space:]]*\)127\.0\.0\.1:8500\$#\1$consul_host:$consul_port#" \
            -e "s#^\([[:space:]]*-[[:space:]]*targets:[[:space:]]*\[\)localhost:9090\]\$#\1'$prometheus_addr']#" \
            -e "s#^\([[:space:]]*-[[:space:]]*\)rules/#\1$root/ops/prometheus/rules/#" "$source"
    } >"$target.new"
    # The file's shape is what the expressions above expect; fail loudly when it changed.
    if ! grep -qF "server: $consul_host:$consul_port" "$target.new" ||
        ! grep -qF "targets: ['$prometheus_addr']" "$target.new" ||
        grep -Eq '^[[:space:]]*-[[:space:]]*rules/' "$target.new"; then
        die "$source changed shape: cannot render it for this run (see render_prometheus_config in ops/up.sh)"
    fi
    mv "$target.new" "$target"
}

prometheus_ours=false
if prometheus_ready; then
    say "Prometheus already answers at http://$prometheus_addr: using it (it scrapes what its own configuration says)"
else
    loopback "$prometheus_host" || die "no Prometheus answers at $prometheus_addr"
    render_prometheus_config
    say "starting prometheus on $prometheus_addr (configuration $(shown "$run/prometheus.yml"), data in $(shown "$run/prometheus"))"
    launch prometheus prometheus --config.file="$run/prometheus.yml" --storage.tsdb.path="$run/prometheus" \
        --web.listen-address="$prometheus_addr"
    await prometheus prometheus 60 prometheus_ready
    prometheus_ours=true
fi

# Starts the service <name> (binary courier-<name>) with its admin listener on <port> and its
# own database, and waits until it serves.
start_service() {
    local name=$1 port=$2 db_var
    db_var="${1^^}_DATABASE_URL"
    local db=${!db_var:-sqlite://data/$name.db}
    say "starting $name (database $(redacted "$db"), admin http://127.0.0.1:$port)"
    launch "$name" env -u DATABASE_URL NATS_URL="$services_nats_url" COURIER_DATABASE__URL="$db" \
        COURIER_ADMIN__BIND="127.0.0.1:$port" "$bin_dir/courier-$name"
    await "$name" "$name" 60 log_shows "$name" "Service started"
}

export COURIER_USERS__ADMIN_EMAILS=${COURIER_USERS__ADMIN_EMAILS:-admin@example.com}
for i in "${!COURIER_SERVICES[@]}"; do
    start_service "${COURIER_SERVICES[$i]}" "$((admin_base + i))"
done

# The gateway signs tokens with a configured key, or with a local secret made here once.
gateway_secret="$run/gateway-secret.env"
if [[ -z ${COURIER_AUTH__JWT_SECRET:-} && -z ${COURIER_AUTH__JWT_PUBLIC_KEY:-} ]]; then
    if [[ ! -s $gateway_secret ]]; then
        (
            umask 077
            printf 'COURIER_AUTH__JWT_SECRET=%s\n' "$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" >"$gateway_secret"
        )
        say "made a local JWT secret in $(shown "$gateway_secret")"
    fi
    set -a
    # shellcheck source=/dev/null
    . "$gateway_secret"
    set +a
fi
gateway_bind=${COURIER_GATEWAY__BIND:-127.0.0.1:8080}
gateway_nats_url=$NATS_URL
$ours && gateway_nats_url="nats://gateway:$(nats_password gateway)@$nats_host:$nats_port"
say "starting the gateway on http://$gateway_bind"
NATS_URL=$gateway_nats_url COURIER_GATEWAY__BIND=$gateway_bind launch gateway "$bin_dir/courier-gateway"
await gateway gateway 60 log_shows gateway "Gateway listening"
# Ready once it has learned every service's routes from Consul and their $SRV.INFO.
learned() {
    local known subject
    known=$(curl -fsS --max-time 2 "http://$gateway_bind/services" 2>/dev/null) || return 1
    for subject in users.get products.get orders.create notifications.list; do
        [[ $known == *"\"$subject\""* ]] || return 1
    done
}
await gateway "the gateway learning every service's routes" 60 learned

admin_env=$(shown "$run/nats-admin.env")
if $ours; then
    nats_users="users admin, service, gateway, guest (ops/nats/); passwords in $(shown "$nats_passwords")"
    cli_setup="  . $admin_env      # NATS_URL, NATS_USER=admin, NATS_PASSWORD for the nats CLI"
else
    nats_users="not started here: its own users and permissions apply"
    cli_setup="  # (credentials for this server, if it asks for them: nats --user ... --password ...)"
fi
if $prometheus_ours; then
    prometheus_note="(log: $(shown "$run/prometheus.log"); scrapes every instance Consul lists)"
else
    prometheus_note="(not started here: scrapes what its own configuration says)"
fi
logs=$(shown "$run")
metrics_lines=""
for i in "${!COURIER_SERVICES[@]}"; do
    metrics_lines+=$(printf '\n              %-14s http://127.0.0.1:%s/metrics' "${COURIER_SERVICES[$i]}" "$((admin_base + i))")
done
cat <<EOF

Courier is up ($profile binaries from $(shown "$bin_dir")).
  NATS        $(redacted "$NATS_URL")   $nats_users
  Consul      http://$consul_host:$consul_port/ui/   (every instance with its checks)
  Prometheus  http://$prometheus_addr/   targets http://$prometheus_addr/targets
              $prometheus_note
  services    users, products, payments, orders, notifications   (logs: $logs/<service>.log)
              admin http://127.0.0.1:$admin_base (users) ... :$((admin_base + ${#COURIER_SERVICES[@]} - 1)) (notifications): /health /health/ready /metrics
  gateway     http://$gateway_bind   (log: $logs/gateway.log)
              Swagger UI  http://$gateway_bind/api/     OpenAPI  http://$gateway_bind/api-docs/openapi.json
              services    http://$gateway_bind/services
  metrics     gateway        http://$gateway_bind/metrics$metrics_lines
              prometheus     http://$prometheus_addr/metrics

Try it over HTTP (or run ops/demo.sh, which tells this story step by step):
  G=http://$gateway_bind; J='Content-Type: application/json'
  curl -s -X POST \$G/users -H "\$J" -d '{"name":"Admin","email":"admin@example.com","password":"correct horse"}'
  ADMIN=\$(curl -s -X POST \$G/auth/login -H "\$J" -d '{"email":"admin@example.com","password":"correct horse"}' | sed -E 's/.*"access_token":"([^"]+)".*/\\1/')
  curl -s -X POST \$G/products -H "\$J" -H "Authorization: Bearer \$ADMIN" \\
       -d '{"name":"Tea","price":450,"currency":"EUR","stock":20}'
  curl -s \$G/products
  curl -s -X POST \$G/orders -H "\$J" -H "Authorization: Bearer \$ADMIN" \\
       -d '{"items":[{"product_id":"<id from the list>","quantity":2}]}'
  curl -s \$G/orders -H "Authorization: Bearer \$ADMIN"          # pending, then confirmed
  curl -s \$G/notifications -H "Authorization: Bearer \$ADMIN"

Try it with the NATS CLI:
$cli_setup
  nats req users.create '{"name":"Ada","email":"ada@example.com","password":"correct horse"}'
  nats req users.list ''
  nats req products.list ''
  nats req orders.create '{"user_id":"<Ada's id>","items":[{"product_id":"<id>","quantity":1}]}'
  nats req orders.get '{"id":"<order id>"}'
  nats micro ls
  nats stream view COURIER_EVENTS

EOF
if $detach; then
    trap - EXIT
    say "detached; stop with ops/down.sh"
else
    say "Ctrl-C stops everything started here"
    while :; do
        for entry in "${started[@]}"; do
            read -r name pid <<<"$entry"
            alive "$pid" || { say "$name exited (log: $logs/$name.log)"; stop_all; exit 1; }
        done
        sleep 1
    done
fi
