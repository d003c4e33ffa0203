#!/usr/bin/env bash
# Runs every check and test of Courier on this machine, installing what is missing first.
#
#   ops/test.sh            formatting, the nats-server and Prometheus configurations (rules
#                          with their unit tests, Grafana dashboards linted), shellcheck,
#                          clippy, all tests (unit, real nats-server, SQLite,
#                          PostgreSQL when one answers), a seconds-long benchmark smoke, the
#                          deployment files checked against the binaries, and the whole system
#                          run on free ports with every Grafana panel's query checked
#
# Tests start their own nats-server and consul agent on free loopback ports; nothing here needs
# a running service. PostgreSQL tests use $COURIER_TEST_POSTGRES_URL
# (default postgres://postgres@127.0.0.1:5432/test) and are skipped, with a note, when it does
# not answer, unless COURIER_REQUIRE_POSTGRES=1 (as in CI).
set -euo pipefail

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)
cd "$root"

step() { printf '\n== %s\n' "$*"; }

step "tools"
ops/install.sh
export PATH="$root/.tools/bin:$PATH"

command -v cargo >/dev/null || {
    echo "test: cargo not found: install Rust (https://rustup.rs) and run again" >&2
    exit 1
}

step "format"
cargo fmt --all -- --check

step "nats-server configuration"
# Any password values do for the check; actors/tests/permissions.rs runs the real thing.
COURIER_NATS_ADMIN_PASSWORD=check COURIER_NATS_SERVICE_PASSWORD=check \
    COURIER_NATS_GATEWAY_PASSWORD=check COURIER_NATS_GUEST_PASSWORD=check \
    nats-server -c ops/nats/nats-server.conf -t

step "prometheus configuration, rules and their unit tests; grafana dashboards"
ops/check-dashboards.py --lint --rules

step "shellcheck"
shellcheck ops/*.sh ops/lib/*.sh .ci/run

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
# --all-targets also runs the benchmark binary once in its quick smoke mode.
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked

step "deployment files (Dockerfile, compose, Kubernetes) against the binaries"
cargo build --workspace --bins --locked
ops/check-deploy.sh

step "the whole system (up, the demo with errors, Prometheus, every dashboard panel, down)"
ops/check-system.sh
