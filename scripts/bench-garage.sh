#!/usr/bin/env bash
# Xnode against Garage 1.2.0, side by side, in one run on this machine: three nodes of each on
# loopback, three copies of every object, fsync before acknowledging on both (Garage's
# metadata_fsync and data_fsync; Xnode always fsyncs), the same boto3 client, interleaved
# rounds, medians. Prints a Markdown table for BENCHMARKS.md.
#   ./scripts/bench-garage.sh        (BENCH_ROUNDS=3 BENCH_OPS=200 BENCH_CLIENTS=16 BENCH_BIG_MIB=64)
# GARAGE points at the Garage binary (default: ../shared/bench/garage-1.2.0 beside the
# repository, built as its README says); XNODE_BIN at an xnode release binary to use instead
# of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
garage="${GARAGE:-../shared/bench/garage-1.2.0}"
[ -x "$garage" ] || { echo "no Garage binary at $garage (set GARAGE=...)" >&2; exit 1; }
garage="$(realpath "$garage")"
. scripts/bench-common.sh
work="$(mktemp -d)"
trap 'echo quit >&3 2>/dev/null || true; sleep 2; kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# Xnode: a 3-node release devnet (it makes a tenant, an S3 key and nodes in zones a, b, c).
mkfifo "$work/ctl"
"$x" devnet --nodes 3 --api-port 0 --p2p-port 0 --dir "$work/devnet" <"$work/ctl" >"$work/devnet.log" 2>&1 &
exec 3>"$work/ctl"
for _ in $(seq 1 150); do grep -q "S3, with an access key" "$work/devnet.log" 2>/dev/null && break; sleep 0.2; done
grep -q "S3, with an access key" "$work/devnet.log" || { cat "$work/devnet.log"; exit 1; }
"$venv/bin/python" - "$work/devnet" >"$work/xnode.json" <<'PY'
import json, os, sys
devnet = sys.argv[1]
nodes = json.load(open(os.path.join(devnet, "devnet.json")))["nodes"]
key = json.load(open(os.path.join(devnet, "s3-key.json")))
print(json.dumps({"endpoint": nodes[0]["s3_url"], "key": key["access_key_id"],
                  "secret": key["secret_access_key"], "region": "us-east-1"}))
PY

# Garage: three servers, one zone each, replication factor 3, fsync on.
secret="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for n in 1 2 3; do
  mkdir -p "$work/garage$n"
  rpc="127.0.0.1:$(free_port)"
  cat >"$work/garage$n.toml" <<TOML
metadata_dir = "$work/garage$n/meta"
data_dir = "$work/garage$n/data"
db_engine = "lmdb"
replication_factor = 3
metadata_fsync = true
data_fsync = true
rpc_secret = "$secret"
rpc_bind_addr = "$rpc"
rpc_public_addr = "$rpc"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$(free_port)"
root_domain = ".s3.garage.localhost"
TOML
  RUST_LOG=warn "$garage" -c "$work/garage$n.toml" server >"$work/garage$n.log" 2>&1 &
done
g() { "$garage" -c "$work/garage1.toml" "$@"; }
for _ in $(seq 1 100); do g status >/dev/null 2>&1 && break; sleep 0.2; done
for n in 2 3; do
  for _ in $(seq 1 100); do "$garage" -c "$work/garage$n.toml" node id -q >/dev/null 2>&1 && break; sleep 0.2; done
  g node connect "$("$garage" -c "$work/garage$n.toml" node id -q)" >/dev/null
done
zone=0
for n in 1 2 3; do
  zone=$((zone + 1))
  id="$("$garage" -c "$work/garage$n.toml" node id -q | cut -d@ -f1)"
  g layout assign -z "zone$zone" -c 10G "$id" >/dev/null
done
g layout apply --version 1 >/dev/null
key_info="$(g key create bench)"
key_id="$(echo "$key_info" | awk '/Key ID:/ {print $3}')"
key_secret="$(echo "$key_info" | awk '/Secret key:/ {print $3}')"
g key allow --create-bucket "$key_id" >/dev/null
s3_port="$(sed -n 's/^api_bind_addr = "127.0.0.1:\([0-9]*\)"/\1/p' "$work/garage1.toml")"
printf '{"endpoint": "http://127.0.0.1:%s", "key": "%s", "secret": "%s", "region": "garage"}\n' \
  "$s3_port" "$key_id" "$key_secret" >"$work/garage.json"

echo "3 Xnode nodes and 3 Garage nodes up on loopback; $(nproc) cores; $(date -u +%Y-%m-%d); load before: $(uptime)" >&2
"$venv/bin/python" scripts/bench_garage.py "$work/xnode.json" "$work/garage.json"
echo "load after: $(uptime)" >&2
