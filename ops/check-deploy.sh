#!/usr/bin/env bash
# Checks the deployment files without a container engine or a cluster: Dockerfile,
# .dockerignore, ops/compose.yaml and ops/k8s/ (docker-compose config, kubernetes-validate
# --strict), and each Courier container in them against the workspace: its binary exists,
# its ports are the ones it binds, its probes are routes it serves, it accepts its environment
# (`courier-<bin> --check-config`, so the binaries must be built: cargo build --bins), its stop
# grace outlasts its shutdown. Ends with a self-test of deliberate mistakes that must fail.
#
#   ops/check-deploy.sh     one line per check; exit 1 when any fails
#
# The logic is ops/lib/check_deploy.py; this installs what is missing and runs it.
set -euo pipefail

case ${1:-} in
    "") ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: ops/check-deploy.sh [--help]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)
cd "$root"
ops/install.sh --check >/dev/null || ops/install.sh
export PATH="$root/.tools/bin:$PATH"
# PyYAML for the checker: the one kubernetes-validate brings.
PYTHONPATH="$root/.tools/py-k8s${PYTHONPATH:+:$PYTHONPATH}" exec python3 ops/lib/check_deploy.py
