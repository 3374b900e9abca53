#!/usr/bin/env bash
# Object reads through an edge against the best replica, on the multi-region testbed
# (issue 18, item 5). Brings up NODES nodes (default 6) in REGIONS regions (default 3,
# scripts/testbed.sh's matrix), writes one small object through S3 (boto3) with the
# default three copies, lets the coordinates settle, then measures the p50 of GetObject
# through every node:
#   - the *holders* are the nodes that keep the object's chunks (found on their disks);
#   - the baseline for an edge is the best replica's p50 as a client at the edge gets it
#     by sending its GET to that replica itself, measured in the same run: the smallest,
#     over the holders, of the holder's own p50 plus the measured probe round trip from
#     the edge to it;
#   - the ratio is the edge's p50 over that baseline (the goal: within 1.10);
#   - for reference, a bound no placement guarantees: the fastest holder's p50 plus the
#     round trip to the *nearest* holder (two different holders when the fastest is far),
#     which runs before 2026-11-28 used as their baseline.
# A GET needs the metadata from a read quorum of the bucket's metadata replicas as well
# as the chunks, so even a holder's own read waits for a round trip to another replica.
# With PIN_REGION=N, the bucket is pinned to region N (zone region-N) with two copies
# (`xnode bucket create --region region-N --replication-factor 2`): its metadata quorum
# is then inside one region, and reads through that region's nodes stay there.
# Usage: [PIN_REGION=N] scripts/bench-edge-reads.sh [NODES] [REGIONS] [SETTLE_SECS] [GETS]
# Needs root (network namespaces); without it prints SKIP and exits 0.
set -euo pipefail
NODES=${1:-6}
REGIONS=${2:-3}
SETTLE=${3:-30}
GETS=${4:-30}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TB="$ROOT/scripts/testbed.sh"
BIN=${XNODE_BIN:-$ROOT/target/debug/xnode}
PY=${XNODE_S3_PYTHON:-$ROOT/target/s3-venv/bin/python}
export XNODE_BIN=$BIN
export XNODE_TESTBED_DIR=${XNODE_TESTBED_DIR:-/tmp/xnode-edge-reads-testbed}
if [ "$(id -u)" != 0 ]; then
  echo "SKIP: scripts/bench-edge-reads.sh needs root (it runs scripts/testbed.sh)" >&2
  exit 0
fi
"$PY" -c "import boto3" 2>/dev/null || {
  echo "bench-edge-reads.sh: $PY has no boto3; set XNODE_S3_PYTHON to a python that has it" >&2
  exit 1
}
WORK=$(mktemp -d /tmp/xnode-edge-reads.XXXXXX)
cleanup() { "$TB" down >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$TB" up "$NODES" "$REGIONS"
export XNODE_TENANT_KEY="$WORK/tenant.key"
"$BIN" key new >/dev/null
apis=$(for ((i = 0; i < NODES; i++)); do printf '%s,' "$("$TB" api "$i")"; done)
"$BIN" key s3 create --api "${apis%,}" --json >"$WORK/s3key.json"
for ((i = 0; i < NODES; i++)); do
  echo "$i $(cat "$XNODE_TESTBED_DIR/node-$i.id") $("$TB" api "$i") http://10.77.0.$((10 + i)):9000 $XNODE_TESTBED_DIR/node-$i"
done >"$WORK/nodes"

if [ -n "${PIN_REGION:-}" ]; then
  "$BIN" bucket create edge-reads --region "region-$PIN_REGION" --replication-factor 2 \
    --api "$("$TB" api 0)"
fi
echo "letting coordinates settle for ${SETTLE}s"
sleep "$SETTLE"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

"$PY" - "$WORK/nodes" "$WORK/s3key.json" "$GETS" "$REGIONS" <<'PY'
import json, os, statistics, sys, time, urllib.request
import boto3
from botocore.config import Config
nodes = [l.split() for l in open(sys.argv[1])]
key = json.load(open(sys.argv[2]))
gets = int(sys.argv[3])
regions = int(sys.argv[4])
api = {int(i): a for i, _, a, _, _ in nodes}
s3url = {int(i): s for i, _, _, s, _ in nodes}
data = {int(i): d for i, _, _, _, d in nodes}
index = {nid: int(i) for i, nid, _, _, _ in nodes}
def client(i):
    return boto3.client("s3", endpoint_url=s3url[i], aws_access_key_id=key["access_key_id"],
                        aws_secret_access_key=key["secret_access_key"], region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))
def chunk_files(i):
    out = set()
    for root, _, files in os.walk(os.path.join(data[i], "chunks")):
        out.update(f for f in files if len(f) == 64)
    return out
before = {i: chunk_files(i) for i in api}
c0 = client(0)
if not os.environ.get("PIN_REGION"):
    c0.create_bucket(Bucket="edge-reads")
body = os.urandom(64 * 1024)
c0.put_object(Bucket="edge-reads", Key="k", Body=body)
time.sleep(3)  # the background copies
holders = sorted(i for i in api if chunk_files(i) - before[i])
# Each node's measured round trips (its own smoothed probes).
rtt = {}
for i in api:
    with urllib.request.urlopen(api[i] + "/v1/network/coordinates", timeout=10) as r:
        for p in json.loads(r.read())["peers"]:
            j = index.get(p["id"])
            if j is not None and p.get("measured_rtt_ms"):
                rtt[(i, j)] = p["measured_rtt_ms"]
def p50(i):
    c = client(i)
    times = []
    for _ in range(gets):
        t = time.perf_counter()
        got = c.get_object(Bucket="edge-reads", Key="k")["Body"].read()
        times.append((time.perf_counter() - t) * 1000)
        assert got == body, f"node {i} returned other bytes"
    return statistics.median(times)
p = {i: p50(i) for i in sorted(api)}
print(f"object of 64 KiB; chunk holders: nodes {holders}")
for i in sorted(api):
    print(f"  node {i} (region {i % regions}): p50 {p[i]:.1f} ms{' (holder)' if i in holders else ''}")
best_holder = min(p[h] for h in holders)
ratios, bound_ratios = [], []
for e in sorted(set(api) - set(holders)):
    best = min(holders, key=lambda h: p[h] + rtt.get((e, h), float("inf")))
    baseline = p[best] + rtt.get((e, best), float("nan"))
    nearest = min(holders, key=lambda h: rtt.get((e, h), float("inf")))
    bound = best_holder + rtt.get((e, nearest), float("nan"))
    ratios.append(p[e] / baseline)
    bound_ratios.append(p[e] / bound)
    print(f"  edge {e}: p50 {p[e]:.1f} ms; best replica from there: node {best} ({p[best]:.1f} ms + "
          f"{rtt.get((e, best), float('nan')):.1f} ms away) = {baseline:.1f} ms, ratio {p[e] / baseline:.2f}; "
          f"bound (fastest holder {best_holder:.1f} ms + nearest holder {nearest} "
          f"{rtt.get((e, nearest), float('nan')):.1f} ms) {bound:.1f} ms, ratio {p[e] / bound:.2f}")
if ratios:
    print(f"GetObject through an edge / best replica: median ratio {statistics.median(ratios):.2f}, worst {max(ratios):.2f}")
    print(f"  against the bound: median {statistics.median(bound_ratios):.2f}, worst {max(bound_ratios):.2f}")
PY
