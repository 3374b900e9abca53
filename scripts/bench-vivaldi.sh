#!/usr/bin/env bash
# Network coordinates and latency-aware routing on the multi-region testbed (issue 18,
# item 5). Brings up NODES nodes (default 6) in REGIONS regions (default 3; 1 ms one way
# inside a region, 38-150 ms between, 10 % jitter, 0.1 % loss; XNODE_TESTBED_MATRIX=detour
# for the first matrix, see scripts/testbed.sh), lets the Vivaldi
# coordinates settle, then reports:
#   1. Vivaldi's relative error per ordered pair, |estimated - actual| / actual, where
#      actual is the probe round trip the node measured itself (smoothed) and, second, the
#      round trip the link model configures (2 x one-way delay, jitter's mean included);
#   2. the p50 latency of GET /fn/hello/ (2 replicas) through each node that holds no
#      replica, against the best it could do in the same run: a call served by the
#      replica itself plus the measured round trip from the edge to its nearest replica.
# Usage: scripts/bench-vivaldi.sh [NODES] [REGIONS] [SETTLE_SECS]
# Needs root (network namespaces); without it prints SKIP and exits 0.
set -euo pipefail
NODES=${1:-6}
REGIONS=${2:-3}
SETTLE=${3:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TB="$ROOT/scripts/testbed.sh"
BIN=${XNODE_BIN:-$ROOT/target/debug/xnode}
export XNODE_BIN=$BIN
export XNODE_TESTBED_DIR=${XNODE_TESTBED_DIR:-/tmp/xnode-vivaldi-testbed}
WORK=$(mktemp -d /tmp/xnode-vivaldi.XXXXXX)
if [ "$(id -u)" != 0 ]; then
  echo "SKIP: scripts/bench-vivaldi.sh needs root (it runs scripts/testbed.sh)" >&2
  exit 0
fi
cleanup() { "$TB" down >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$TB" up "$NODES" "$REGIONS"
export XNODE_TENANT_KEY="$WORK/tenant.key"
"$BIN" key new >/dev/null
"$BIN" deploy "$ROOT/guests/hello/app.toml" --replicas 2 --api "$("$TB" api 0)" >"$WORK/deploy.log" 2>&1 \
  || { echo "deploy failed:"; cat "$WORK/deploy.log"; exit 1; }
echo "letting coordinates settle for ${SETTLE}s"
sleep "$SETTLE"

for ((i = 0; i < NODES; i++)); do
  echo "$i $(cat "$XNODE_TESTBED_DIR/node-$i.id") $("$TB" api "$i")"
done >"$WORK/nodes"
# The one-way delay of every link as the testbed set it (its matrix, see region_delay).
for ((i = 0; i < NODES; i++)); do
  for ((j = 0; j < NODES; j++)); do
    [ "$i" = "$j" ] || echo "$i $j $("$TB" delay "$i" "$j")"
  done
done >"$WORK/delays"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$WORK/nodes" "$WORK/delays" <<'PY'
import json, statistics, sys, time, urllib.request
nodes = [l.split() for l in open(sys.argv[1])]
api = {int(i): url for i, _, url in nodes}
index = {nid: int(i) for i, nid, _ in nodes}
delay = {(int(i), int(j)): float(ms) for i, j, ms in (l.split() for l in open(sys.argv[2]))}

def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()

# 1. Vivaldi's error.
vs_measured, vs_model = [], []
measured = {}
for i, url in api.items():
    view = json.loads(get(url + "/v1/network/coordinates")[1])
    for p in view["peers"]:
        j = index.get(p["id"])
        est, meas = p.get("estimated_rtt_ms"), p.get("measured_rtt_ms")
        if j is None or est is None:
            continue
        if meas:
            measured[(i, j)] = meas
            vs_measured.append(abs(est - meas) / meas)
        model = 2 * delay[(i, j)] * 1.05
        vs_model.append(abs(est - model) / model)
def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")
print(f"vivaldi: {len(vs_measured)} pairs; relative error against the measured round trip: "
      f"median {100 * statistics.median(vs_measured):.1f} %, p90 {100 * pct(vs_measured, 0.9):.1f} %")
print(f"vivaldi: relative error against the link model's round trip: "
      f"median {100 * statistics.median(vs_model):.1f} %, p90 {100 * pct(vs_model, 0.9):.1f} %")

# 2. Latency through an edge against the best replica.
d = json.loads(get(api[0] + "/v1/deployments/hello")[1])
replicas = [index[r["node"]] for r in d.get("replicas", []) if r.get("state") == "running" and r["node"] in index]
if len(replicas) < 2:
    print(f"hello has {len(replicas)} running replicas; skipping the latency part"); sys.exit(0)
def p50_of(url, n=40):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        status, _ = get(url + "/fn/hello/")
        if status == 200:
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)
served_here = statistics.median([p50_of(api[r]) for r in replicas])
print(f"hello: replicas on nodes {replicas}; p50 served by the replica itself: {served_here:.1f} ms")
ratios = []
for e in sorted(set(api) - set(replicas)):
    best = min(measured.get((e, r), 2 * delay[(e, r)] * 1.05) for r in replicas)
    worst = max(measured.get((e, r), 2 * delay[(e, r)] * 1.05) for r in replicas)
    through = p50_of(api[e])
    ideal = served_here + best
    ratios.append(through / ideal)
    print(f"  edge {e}: p50 {through:.1f} ms; best possible {ideal:.1f} ms (nearest replica {best:.1f} ms away, "
          f"farthest {worst:.1f} ms); ratio {through / ideal:.2f}")
print(f"hello through an edge / best replica: median ratio {statistics.median(ratios):.2f}, worst {max(ratios):.2f}")
PY
