#!/usr/bin/env bash
# Two Xnode builds side by side on the S3 rows of bench-garage.sh: a 3-node release devnet
# of each binary on loopback, the same boto3 client (scripts/bench_garage.py), interleaved
# rounds, medians, and the ratio AFTER / BEFORE.
#   ./scripts/bench-ab.sh BEFORE_BIN AFTER_BIN    (BENCH_ROUNDS=3, as bench_garage.py)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_BIN AFTER_BIN" >&2; exit 2; }
XNODE_BIN="$1" . scripts/bench-common.sh
work="$(mktemp -d)"
trap 'for d in before after; do echo quit >"$work/$d.ctl" 2>/dev/null || true; done; sleep 2; kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
for name in before after; do
  bin=$([ $name = before ] && echo "$1" || echo "$2")
  mkfifo "$work/$name.ctl"
  "$bin" devnet --nodes 3 --api-port 0 --p2p-port 0 --dir "$work/$name" <"$work/$name.ctl" >"$work/$name.log" 2>&1 &
  sleep 100000 >"$work/$name.ctl" &
  for _ in $(seq 1 150); do grep -q "S3, with an access key" "$work/$name.log" 2>/dev/null && break; sleep 0.2; done
  grep -q "S3, with an access key" "$work/$name.log" || { cat "$work/$name.log"; exit 1; }
  "$venv/bin/python" - "$work/$name" "$name" >"$work/$name.json" <<'PY'
import json, os, sys
devnet, name = sys.argv[1], sys.argv[2]
nodes = json.load(open(os.path.join(devnet, "devnet.json")))["nodes"]
key = json.load(open(os.path.join(devnet, "s3-key.json")))
print(json.dumps({"endpoint": nodes[0]["s3_url"], "key": key["access_key_id"],
                  "secret": key["secret_access_key"], "region": "us-east-1",
                  "name": name, "title": name}))
PY
done
echo "two 3-node release devnets up; $(nproc) cores; load before: $(uptime)" >&2
"$venv/bin/python" scripts/bench_garage.py "$work/after.json" "$work/before.json"
echo "load after: $(uptime)" >&2
