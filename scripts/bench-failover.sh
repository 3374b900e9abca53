#!/usr/bin/env bash
# Failover without waiting (issue 18, item 4): the compute failover drill twice in one run,
# first as a baseline with the gateway's hedging off (`compute.hedging = false`; suspect
# marks and connection-loss detection stay on), then with the defaults. Each run kills -9
# a replica's node TRIALS times during a steady stream of calls (every 10 ms) through a
# surviving node and reports the longest gap without a 200: p50, p99 and max.
# Acceptance: p99 under 500 ms over 20 trials with the defaults.
# Usage: ./scripts/bench-failover.sh [TRIALS]   (default 20; XNODE_BIN as for the drill)
set -euo pipefail
cd "$(dirname "$0")/.."
trials="${1:-20}"
if [ -z "${XNODE_BIN:-}" ]; then cargo build --release -p xnode >/dev/null; fi
export XNODE_BIN="${XNODE_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/xnode}"
conf="$(mktemp)"
trap 'rm -f "$conf"' EXIT
printf '[compute]\nhedging = false\n' >"$conf"
echo "== baseline: hedging off =="
XNODE_CONFIG="$conf" ./scripts/drill-compute-failover.sh "$trials" | tail -3
echo "== hedging on (defaults) =="
env -u XNODE_CONFIG ./scripts/drill-compute-failover.sh "$trials" | tail -3
