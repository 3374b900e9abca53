#!/usr/bin/env bash
# What a large PUT costs the nodes, two builds side by side: a 3-node release devnet of each
# binary on loopback, batches of PUTs through node 1 (boto3, as in bench-put.sh) alternating
# between the two, and for each batch the CPU time the three nodes used (from
# /proc/PID/stat, so other load on the machine changes it little) and each PUT's wall time.
#   ./scripts/bench-put-cpu.sh BEFORE_BIN AFTER_BIN    (BENCH_ROUNDS=4 BENCH_PUTS=3 BENCH_MIB=64)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_BIN AFTER_BIN" >&2; exit 2; }
XNODE_BIN="$1" . scripts/bench-common.sh
rounds="${BENCH_ROUNDS:-4}" puts="${BENCH_PUTS:-3}" mib="${BENCH_MIB:-64}"
work="$(mktemp -d)"
trap 'for d in a b; do echo quit >"$work/$d/ctl" 2>/dev/null || true; done; sleep 2; kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
start_devnet() { # NAME BIN
  mkdir -p "$work/$1"; mkfifo "$work/$1/ctl"
  "$2" devnet --nodes 3 --api-port 0 --p2p-port 0 --dir "$work/$1/devnet" <"$work/$1/ctl" >"$work/$1/log" 2>&1 &
  sleep 100000 >"$work/$1/ctl" &
  for _ in $(seq 1 150); do grep -q "S3, with an access key" "$work/$1/log" 2>/dev/null && break; sleep 0.2; done
  grep -q "S3, with an access key" "$work/$1/log" || { cat "$work/$1/log"; exit 1; }
}
node_ticks() { # NAME: CPU clock ticks of the devnet's three nodes, summed
  local total=0
  for pid in $(pgrep -f "start --data-dir $work/$1/devnet/node-"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
start_devnet a "$1"
start_devnet b "$2"
hz=$(getconf CLK_TCK)
echo "two 3-node release devnets up; $(nproc) cores; load before: $(uptime)" >&2
for name in a b; do "$venv/bin/python" scripts/bench_put_cpu.py "$work/$name/devnet" 1 "$mib" >/dev/null; done
for round in $(seq 1 "$rounds"); do
  for name in a b; do
    before=$(node_ticks $name)
    walls=$("$venv/bin/python" scripts/bench_put_cpu.py "$work/$name/devnet" "$puts" "$mib" | paste -sd' ')
    used=$(( $(node_ticks $name) - before ))
    label=$([ $name = a ] && echo before || echo after)
    echo "round $round $label: nodes' CPU $((1000 * used / hz / puts)) ms per PUT; walls (ms) $walls"
  done
done
echo "load after: $(uptime)" >&2
