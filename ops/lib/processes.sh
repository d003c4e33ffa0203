# shellcheck shell=bash
# What ops/up.sh, ops/down.sh and ops/check-system.sh share: the run folder, the processes of
# a run and their programs, waiting with a progress line, and stopping by PID.
#
# Sourced, not run. The sourcing script defines `say` (one line of progress on stdout).

# Every process ops/up.sh may start, in start order. A process's PID is in <run>/<name>.pid and
# its log in <run>/<name>.log.
COURIER_PROCESSES=(nats consul prometheus users products payments orders notifications gateway)
# The services, in start order; their admin ports are $COURIER_ADMIN_PORT_BASE + index.
COURIER_SERVICES=(users products payments orders notifications)

# The run folder: $COURIER_RUN_DIR (a relative one is in the repository <root>), or <root>/.run.
courier_run_dir() {
    local root=$1 dir=${COURIER_RUN_DIR:-.run}
    [[ $dir == /* ]] || dir="$root/$dir"
    printf '%s\n' "$dir"
}

# The program a process of the run executes (what its /proc/<pid>/cmdline starts with).
program_of() {
    case $1 in
        nats) echo nats-server ;;
        consul | prometheus) echo "$1" ;;
        *) echo "courier-$1" ;;
    esac
}

# Whether <pid> runs: exists and is not a zombie (one that exited and waits for its parent, or
# for init once its parent has gone, to collect its exit status).
alive() {
    local stat
    [[ $1 =~ ^[0-9]+$ ]] && kill -0 "$1" 2>/dev/null || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    # The state follows the command name, which is in parentheses and may hold any character.
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# Whether <pid> runs the program of process <name>: a PID file left from before a reboot may
# name someone else's process, which must not be signalled. Where /proc is missing, alive is
# enough.
is_process() {
    local pid=$1 name=$2 exe
    alive "$pid" || return 1
    [[ -r /proc/$pid/cmdline ]] || return 0
    exe=$(tr '\0' '\n' <"/proc/$pid/cmdline" | head -n 1)
    [[ ${exe##*/} == "$(program_of "$name")" ]]
}

# Microseconds since the epoch (EPOCHREALTIME's decimal separator follows the locale).
now_us() { local t=${EPOCHREALTIME/[.,]/}; printf '%s\n' "$((10#$t))"; }

# Seconds since <start_us>, with one decimal.
seconds_since() {
    local tenths=$((($(now_us) - $1) / 100000))
    printf '%d.%d\n' "$((tenths / 10))" "$((tenths % 10))"
}

# Whether progress may redraw one line: stdout is a terminal that can.
progress_tty() { [[ -t 1 && ${TERM:-dumb} != dumb ]]; }

# wait_until <label> <seconds> <pid or ""> <command...>: runs the command every 0.1 s until it
# succeeds (0), the process <pid> exits (2) or <seconds> pass (1). On a terminal, a spinner with
# the time waited so far; otherwise a line before and one after.
wait_until() {
    local label=$1 limit=$2 pid=$3 start frames='|/-'\\ i=0 tty=false
    shift 3
    start=$(now_us)
    progress_tty && tty=true
    $tty || say "waiting for $label"
    while :; do
        if "$@"; then
            $tty && printf '\r\033[K'
            say "$label: ready after $(seconds_since "$start") s"
            return 0
        fi
        if [[ -n $pid ]] && ! alive "$pid"; then
            $tty && printf '\r\033[K'
            return 2
        fi
        if (($(now_us) - start > limit * 1000000)); then
            $tty && printf '\r\033[K'
            return 1
        fi
        $tty && printf '\r%s waiting for %s  %s s ' "${frames:i++ % 4:1}" "$label" "$(seconds_since "$start")"
        sleep 0.1
    done
}

# stop_processes <entry>...: stops the processes given as "name pid", in the order that lets each
# go cleanly whatever order they come in: the gateway first, then every service at once (each
# leaves Consul and drains on SIGTERM), then Prometheus, Consul and NATS, one by one. Each gets
# SIGTERM and $COURIER_STOP_GRACE seconds (15), then SIGKILL. Entries whose PID is gone or runs
# another program are skipped.
stop_processes() {
    local -A pids=()
    local entry name pid
    for entry in "$@"; do
        read -r name pid <<<"$entry"
        is_process "$pid" "$name" && pids[$name]=$pid
    done
    local stage
    for stage in gateway "${COURIER_SERVICES[*]}" prometheus consul nats; do
        local group=()
        for name in $stage; do
            [[ -n ${pids[$name]:-} ]] && group+=("$name ${pids[$name]}")
        done
        ((${#group[@]})) && stop_group "${group[@]}"
    done
    return 0
}

# Sends SIGTERM to every "name pid" given, waits for all of them, and kills what is left.
stop_group() {
    local entry name pid grace=${COURIER_STOP_GRACE:-15} start
    local -a left=()
    for entry in "$@"; do
        read -r name pid <<<"$entry"
        say "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
    done
    start=$(now_us)
    while :; do
        left=()
        for entry in "$@"; do
            read -r name pid <<<"$entry"
            is_process "$pid" "$name" && left+=("$entry")
        done
        ((${#left[@]})) || return 0
        (($(now_us) - start > grace * 1000000)) && break
        sleep 0.1
    done
    for entry in "${left[@]}"; do
        read -r name pid <<<"$entry"
        say "$name (pid $pid) still running after $grace s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    done
}

# The "name pid" of every process of the run folder <run> whose PID file names a live process
# of its program, in start order.
recorded_processes() {
    local run=$1 name pid
    for name in "${COURIER_PROCESSES[@]}"; do
        [[ -f $run/$name.pid ]] || continue
        pid=$(<"$run/$name.pid")
        is_process "$pid" "$name" && printf '%s %s\n' "$name" "$pid"
    done
    return 0
}
