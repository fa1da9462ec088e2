#!/usr/bin/env bash
# Run a k6 load test: run_k6.sh smoke|step CONFIG.json [extra k6 flags]
# The thresholds live in the scripts; k6 exits non-zero when one is crossed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kind="${1:?usage: run_k6.sh smoke|step CONFIG.json}"
config="${2:?usage: run_k6.sh smoke|step CONFIG.json}"
shift 2
case "$kind" in smoke|step) ;; *) echo "unknown test: $kind (smoke or step)" >&2; exit 2 ;; esac
[ -f "$config" ] || { echo "no such config: $config" >&2; exit 2; }
exec k6 run --quiet -e CONFIG="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")" "$@" \
    "$here/k6/$kind.js"
