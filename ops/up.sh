#!/usr/bin/env bash
# Runs Courier on this machine: installs what is missing, builds, starts NATS and Consul (unless
# they already answer), the services (users, products, payments, orders, notifications) and the
# HTTP gateway, and stops them all on Ctrl-C.
#
#   ops/up.sh             run in the foreground; Ctrl-C drains and stops everything it started
#   ops/up.sh --detach    start and return; stop later with ops/down.sh
#
# Environment: NATS_URL (default nats://127.0.0.1:4222), CONSUL_HTTP_ADDR (127.0.0.1:8500),
# <SERVICE>_DATABASE_URL for each service (USERS_DATABASE_URL, PRODUCTS_..., PAYMENTS_...,
# ORDERS_..., NOTIFICATIONS_...; default sqlite://data/<service>.db: a database per service),
# COURIER_GATEWAY__BIND (127.0.0.1:8080), any COURIER_* setting (see README). Logs and PIDs: .run/
# Without COURIER_AUTH__JWT_SECRET or COURIER_AUTH__JWT_PUBLIC_KEY, a random local JWT secret
# is made on first use into .run/gateway-secret.env. COURIER_USERS__ADMIN_EMAILS defaults to
# admin@example.com: sign up with it to get the admin role.
# A NATS started here runs ops/nats/nats-server.conf (users admin, service, gateway, guest);
# their passwords are made on first use into .run/nats-passwords.env, and
# `. .run/nats-admin.env` sets up the nats CLI as admin.
set -euo pipefail

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)
cd "$root"
run="$root/.run"
mkdir -p "$run" data

detach=false
case ${1:-} in
    "") ;;
    --detach) detach=true ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

nats_conf="$root/ops/nats/nats-server.conf"
nats_passwords="$run/nats-passwords.env"

# Makes .run/nats-passwords.env on first use: a random password for each user of
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
    say "made NATS passwords for admin, service, gateway and guest in .run/nats-passwords.env"
}

# The password of one user (admin, service, gateway, guest) from .run/nats-passwords.env.
nats_password() { sed -n "s/^COURIER_NATS_${1^^}_PASSWORD=//p" "$nats_passwords"; }

# nats-server with Courier's users; the passwords are in its environment only.
run_nats_server() {
    set -a
    # shellcheck source=/dev/null
    . "$nats_passwords"
    set +a
    exec nats-server -c "$nats_conf" -a "$nats_host" -p "$nats_port" -sd "$run/nats"
}

# Writes .run/nats-admin.env, which sets up the nats CLI as the admin user when sourced.
write_admin_env() {
    (
        umask 077
        {
            printf '# For the nats CLI as Courier'"'"'s admin: . .run/nats-admin.env\n'
            printf 'export NATS_URL=nats://%s:%s NATS_USER=admin NATS_PASSWORD=%s\n' \
                "$nats_host" "$nats_port" "$(nats_password admin)"
        } >"$run/nats-admin.env"
    )
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

# Until the system is up, any failure stops what was started; in the foreground, so does Ctrl-C.
trap 'stop_all' EXIT
$detach || trap 'stop_all; exit 0' INT TERM

services_nats_url=$NATS_URL   # what the services connect to: with the service user's password when ours
ours=false                    # whether the NATS runs ops/nats/ with the passwords of .run/
if info=$(nats_info "$nats_host" "$nats_port"); then
    if [[ $info == *'"auth_required":true'* && $NATS_URL != *@* && -s $nats_passwords ]]; then
        # Most likely the server of an earlier `ops/up.sh --detach`.
        say "NATS at $NATS_URL asks for credentials: using the users of .run/nats-passwords.env"
        ours=true
    else
        say "NATS already answers at $(redacted "$NATS_URL"): using it"
    fi
else
    [[ $nats_host == 127.0.0.1 || $nats_host == localhost ]] || die "no NATS answers at $(redacted "$NATS_URL")"
    [[ $NATS_URL != *@* ]] || die "NATS_URL carries credentials but no NATS answers there; unset it to start one"
    ensure_nats_passwords
    say "starting nats-server on $nats_host:$nats_port with ops/nats/nats-server.conf (JetStream on, data in .run/nats)"
    launch nats run_nats_server
    for _ in $(seq 1 100); do nats_answers "$nats_host" "$nats_port" && break; sleep 0.1; done
    nats_answers "$nats_host" "$nats_port" || { tail -n 20 "$run/nats.log" >&2; die "nats-server did not start"; }
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

if consul_answers "$consul_host" "$consul_port"; then
    say "Consul already answers at $CONSUL_HTTP_ADDR: using it"
else
    [[ $consul_host == 127.0.0.1 || $consul_host == localhost ]] || die "no Consul answers at $CONSUL_HTTP_ADDR"
    say "starting consul agent -dev on $consul_host:$consul_port (UI at http://$consul_host:$consul_port/ui/)"
    launch consul consul agent -dev -bind 127.0.0.1 -client "$consul_host" -http-port "$consul_port" -ui
    for _ in $(seq 1 150); do consul_answers "$consul_host" "$consul_port" && break; sleep 0.1; done
    consul_answers "$consul_host" "$consul_port" || { tail -n 20 "$run/consul.log" >&2; die "consul did not start"; }
fi

# Starts the service <name> (binary courier-<name>) with its admin listener on <port> and its
# own database, and waits until it serves.
start_service() {
    local name=$1 port=$2 db_var
    db_var="${1^^}_DATABASE_URL"
    local db=${!db_var:-sqlite://data/$name.db}
    say "starting $name (database $(redacted "$db"), admin http://127.0.0.1:$port)"
    launch "$name" env -u DATABASE_URL NATS_URL="$services_nats_url" COURIER_DATABASE__URL="$db" \
        COURIER_ADMIN__BIND="127.0.0.1:$port" "target/release/courier-$name"
    wait_for_log "$name" "Service started"
}

export COURIER_USERS__ADMIN_EMAILS=${COURIER_USERS__ADMIN_EMAILS:-admin@example.com}
services=(users:9101 products:9102 payments:9103 orders:9104 notifications:9105)
for entry in "${services[@]}"; do
    start_service "${entry%%:*}" "${entry##*:}"
done

# The gateway signs tokens with a configured key, or with a local secret made here once.
gateway_secret="$run/gateway-secret.env"
if [[ -z ${COURIER_AUTH__JWT_SECRET:-} && -z ${COURIER_AUTH__JWT_PUBLIC_KEY:-} ]]; then
    if [[ ! -s $gateway_secret ]]; then
        (
            umask 077
            printf 'COURIER_AUTH__JWT_SECRET=%s\n' "$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" >"$gateway_secret"
        )
        say "made a local JWT secret in .run/gateway-secret.env"
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
NATS_URL=$gateway_nats_url COURIER_GATEWAY__BIND=$gateway_bind launch gateway target/release/courier-gateway
wait_for_log gateway "Gateway listening"
# Ready once it has learned every service's routes from Consul and their $SRV.INFO.
learned() {
    local known
    known=$(curl -fsS "http://$gateway_bind/services" 2>/dev/null) || return 1
    for subject in users.get products.get orders.create notifications.list; do
        [[ $known == *"\"$subject\""* ]] || return 1
    done
}
for _ in $(seq 1 300); do learned && break; sleep 0.1; done
learned || die "the gateway did not learn every service's routes within 30 s (logs: .run/gateway.log, .run/*.log)"

if $ours; then
    nats_users="users admin, service, gateway, guest (ops/nats/); passwords in .run/nats-passwords.env"
    cli_setup="  . .run/nats-admin.env      # NATS_URL, NATS_USER=admin, NATS_PASSWORD for the nats CLI"
else
    nats_users="not started here: its own users and permissions apply"
    cli_setup="  # (credentials for this server, if it asks for them: nats --user ... --password ...)"
fi
cat <<EOF

Courier is up.
  NATS      $(redacted "$NATS_URL")   $nats_users
  Consul    http://$consul_host:$consul_port/ui/   (every instance with its checks)
  services  users, products, payments, orders, notifications   (logs: .run/<service>.log)
            admin http://127.0.0.1:9101 (users) ... :9105 (notifications): /health /health/ready /metrics
  gateway   http://$gateway_bind   (log: .run/gateway.log)
            Swagger UI  http://$gateway_bind/api/     OpenAPI  http://$gateway_bind/api-docs/openapi.json
            services    http://$gateway_bind/services   metrics  http://$gateway_bind/metrics

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
            kill -0 "$pid" 2>/dev/null || { say "$name exited (log: .run/$name.log)"; stop_all; exit 1; }
        done
        sleep 1
    done
fi
