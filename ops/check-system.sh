#!/usr/bin/env bash
# The whole system, end to end, beside anything else on this machine: builds the debug
# binaries, picks free loopback ports and a temporary run folder, starts everything with
# `ops/up.sh --detach --debug --no-build` (its own NATS with JetStream, Consul -dev, Prometheus,
# every service and the gateway) and an SMTP sink for the notifications' mails, runs
# `ops/demo.sh --errors` (the story, caller errors and two cancelled sagas), waits until
# Prometheus has scraped every instance twice since and evaluated its rules, then requires:
#   - every Grafana panel's query to return series (ops/check-dashboards.py --prometheus),
#   - every instance Consul lists with the tag `courier` to be an `up` target in Prometheus,
#   - every process it started to be gone after ops/down.sh.
# Everything is stopped, by PID, however the check ends; on failure the logs' ends are shown
# and the temporary folder is kept.
#
#   ops/check-system.sh                 check ops/grafana/dashboards/*.json
#   ops/check-system.sh FILE.json...    check these dashboards instead
#   ops/check-system.sh --keep          keep the temporary folder after a pass too
#
# CHECK_SYSTEM_TIMEOUT (seconds, 170) bounds everything after the build.
set -euo pipefail

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)
cd "$root"

say() { printf 'check-system: %s\n' "$*"; }
# shellcheck source=ops/lib/processes.sh
. "$root/ops/lib/processes.sh"
started_us=$(now_us)
# A step's heading, with the time since the check began.
step() { printf '\n== check-system [%s s]: %s\n' "$(seconds_since "$started_us")" "$*"; }

keep=false
dashboards=()
for arg in "$@"; do
    case $arg in
        --keep) keep=true ;;
        -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "usage: ops/check-system.sh [--keep] [DASHBOARD.json...]" >&2; exit 2 ;;
        *) dashboards+=("$(readlink -f "$arg")") ;;
    esac
done

command -v cargo >/dev/null || { say "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
for tool in curl python3; do
    command -v "$tool" >/dev/null || { say "$tool not found: install it (Debian: apt-get install $tool)" >&2; exit 1; }
done

limit=${CHECK_SYSTEM_TIMEOUT:-170}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/courier-check-system.XXXXXX")
run="$tmp/run"
failed=""          # why the check failed, once it has
step_pid=""        # the step running now (in the background, so that a signal is seen at once)
smtp_pid=""
watchdog_pid=""
stopped=false

fail() { [[ -n $failed ]] || failed=$*; printf 'check-system: FAIL: %s\n' "$*" >&2; }

# Runs one step in the background and waits for it; its exit code is returned.
run_step() {
    "$@" &
    step_pid=$!
    local status=0
    wait "$step_pid" || status=$?
    step_pid=""
    return "$status"
}

# Every "name pid" the run folder records, plus the SMTP sink.
our_processes() {
    recorded_processes "$run"
    [[ -n $smtp_pid ]] && alive "$smtp_pid" && printf 'smtp %s\n' "$smtp_pid"
    return 0
}

# Stops everything started here and checks that it is gone; runs once, on any exit.
finish() {
    local status=$?
    $stopped && return
    stopped=true
    trap - EXIT INT TERM
    [[ -n $watchdog_pid ]] && kill "$watchdog_pid" 2>/dev/null
    if [[ -n $step_pid ]] && kill -0 "$step_pid" 2>/dev/null; then
        kill -TERM "$step_pid" 2>/dev/null || true
        wait "$step_pid" 2>/dev/null || true
    fi
    ((status == 0)) || [[ -n $failed ]] || fail "stopped (exit code $status)"

    step "stopping everything (ops/down.sh)"
    local before
    mapfile -t before < <(our_processes)
    COURIER_RUN_DIR=$run ops/down.sh || fail "ops/down.sh failed"
    [[ -n $smtp_pid ]] && { kill -TERM "$smtp_pid" 2>/dev/null; wait "$smtp_pid" 2>/dev/null || true; }
    local entry name pid left=()
    for entry in "${before[@]}"; do
        read -r name pid <<<"$entry"
        alive "$pid" && left+=("$entry")
    done
    # Anything else of this run: its folder is unique, and in the command line of NATS and
    # Prometheus at least.
    local strays
    mapfile -t strays < <(grep -lF "$tmp" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3)
    for pid in "${strays[@]}"; do
        [[ $pid != "$$" && $pid != "$BASHPID" ]] && alive "$pid" && left+=("unknown $pid")
    done
    if ((${#left[@]})); then
        fail "still running after ops/down.sh: ${left[*]}"
        for entry in "${left[@]}"; do kill -KILL "${entry##* }" 2>/dev/null || true; done
    else
        say "all ${#before[@]} processes started here are gone"
    fi

    local took
    took=$(seconds_since "$started_us")
    if [[ -z $failed ]]; then
        if $keep; then say "kept $tmp"; else rm -rf "$tmp"; fi
        printf '\ncheck-system: PASS in %s s\n' "$took"
        exit 0
    fi
    step "logs (ends; whole files in $tmp/ and $run/)"
    local log
    for log in "$tmp/up.log" "$tmp/demo.log" "$run"/*.log; do
        [[ -s $log ]] || continue
        printf '\n--- %s\n' "$log"
        tail -n 12 "$log" | cut -c1-400
    done
    printf '\ncheck-system: FAIL after %s s: %s\n  logs and data kept in %s\n' "$took" "$failed" "$tmp" >&2
    exit 1
}
trap finish EXIT
trap 'fail "interrupted"; exit 130' INT
trap 'fail "terminated (over CHECK_SYSTEM_TIMEOUT=$limit s?)"; exit 143' TERM

step "building the debug binaries"
cargo build --locked --bins
limit_us=$(($(now_us) + limit * 1000000))
# After the build, time is bounded: a watchdog ends the check, which stops everything.
(
    while (($(now_us) < limit_us)); do sleep 1; done
    kill -TERM $$ 2>/dev/null
) &
watchdog_pid=$!

# Ports: NATS, Consul, Prometheus, the gateway, the SMTP sink, five admin listeners.
read -r nats_port consul_port prometheus_port gateway_port smtp_port admin_base < <(ops/lib/free-ports.py 1 1 1 1 1 5) ||
    { fail "no free ports"; exit 1; }
export COURIER_RUN_DIR=$run
export NATS_URL=nats://127.0.0.1:$nats_port
export CONSUL_HTTP_ADDR=127.0.0.1:$consul_port
export PROMETHEUS_ADDR=127.0.0.1:$prometheus_port
export COURIER_GATEWAY__BIND=127.0.0.1:$gateway_port
export COURIER_ADMIN_PORT_BASE=$admin_base
for name in "${COURIER_SERVICES[@]}"; do
    export "${name^^}_DATABASE_URL=sqlite://$tmp/data/$name.db"
done
# What the demo counts on, whatever the caller's environment says.
export COURIER_USERS__ADMIN_EMAILS=admin@example.com COURIER_PAYMENTS__USER_LIMIT=100000
export COURIER_NOTIFICATIONS__SMTP_URL=smtp://127.0.0.1:$smtp_port
# The orders census every second, so that a saga's end shows in courier_sagas at once.
export COURIER_ORDERS__CENSUS_EVERY=1s
unset COURIER_AUTH__JWT_PUBLIC_KEY COURIER_AUTH__JWT_PRIVATE_KEY COURIER_AUTH__JWT_SECRET CONSUL_HTTP_TOKEN
say "run folder $run; NATS :$nats_port, Consul :$consul_port, Prometheus :$prometheus_port, gateway :$gateway_port, admin :$admin_base-$((admin_base + 4)), SMTP :$smtp_port"

# Built above, outside the time bound: up.sh need not build again.
step "starting the system (ops/up.sh --detach --debug --no-build; output in $tmp/up.log)"
up_status=0
run_step ops/up.sh --detach --debug --no-build >"$tmp/up.log" 2>&1 || up_status=$?
grep -E '^up: ' "$tmp/up.log" | grep -v '^up: waiting for ' || true
((up_status == 0)) || { fail "ops/up.sh failed (exit code $up_status)"; exit 1; }

# The notifications service connects to SMTP only for its first mail: the sink may come now.
step "starting an SMTP sink (aiosmtpd) for the notifications' mails"
[[ -x .tools/bin/aiosmtpd ]] || { fail ".tools/bin/aiosmtpd is missing: run ops/install.sh"; exit 1; }
mkdir -p "$tmp/mail"
.tools/bin/aiosmtpd -n -l "127.0.0.1:$smtp_port" -c aiosmtpd.handlers.Mailbox "$tmp/mail/box" \
    >"$run/smtp.log" 2>&1 &
smtp_pid=$!
smtp_answers() { (exec 5<>"/dev/tcp/127.0.0.1/$smtp_port") 2>/dev/null; }
wait_until smtp 15 "$smtp_pid" smtp_answers || { fail "aiosmtpd did not listen on :$smtp_port"; exit 1; }

step "the demo, with its errors and cancelled sagas (ops/demo.sh --errors; output in $tmp/demo.log)"
demo_status=0
GATEWAY=http://$COURIER_GATEWAY__BIND run_step ops/demo.sh --errors >"$tmp/demo.log" 2>&1 || demo_status=$?
grep -E '^(== |demo: )' "$tmp/demo.log" || true
((demo_status == 0)) || { fail "ops/demo.sh --errors failed (exit code $demo_status)"; exit 1; }
traffic_end=$(date +%s.%N)

step "waiting until Prometheus has scraped every instance twice since, and evaluated its rules"
run_step ops/lib/system_check.py wait-scraped --consul "http://$CONSUL_HTTP_ADDR" \
    --prometheus "http://$PROMETHEUS_ADDR" --since "$traffic_end" --timeout 60 ||
    fail "Prometheus did not scrape every instance twice within 60 s (the checks below say more)"

step "every Grafana panel returns series (ops/check-dashboards.py --prometheus http://$PROMETHEUS_ADDR)"
run_step ops/check-dashboards.py --prometheus "http://$PROMETHEUS_ADDR" "${dashboards[@]}" ||
    fail "a dashboard panel returned no series (see FAIL lines above)"

step "every Courier instance in Consul is an up target in Prometheus"
run_step ops/lib/system_check.py targets --consul "http://$CONSUL_HTTP_ADDR" --prometheus "http://$PROMETHEUS_ADDR" \
    --expect "${COURIER_SERVICES[@]}" gateway ||
    fail "an instance Consul lists is not an up target in Prometheus"

step "mails reached the SMTP sink"
mails=$(find "$tmp/mail/box/new" -type f 2>/dev/null | wc -l)
if ((mails > 0)); then
    say "$mails mails"
else
    fail "no mail reached the SMTP sink (log: $run/notifications.log)"
fi

[[ -z $failed ]] || exit 1
