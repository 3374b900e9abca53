#!/usr/bin/env bash
# S3 gateway benchmark on a 3-node release devnet: 4 KiB PUT and GET operations/s and
# 64 MiB PUT and GET MiB/s through node 1's S3 port, next to the same measurements through
# node 1's native /v1 object API in the same run, with the same client (one Python process,
# urllib3, one connection; boto3 for S3). Prints a Markdown table for BENCHMARKS.md.
#   ./scripts/bench-s3.sh            (BENCH_OPS=300 BENCH_BIG_MIB=64 BENCH_BIG_ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p xnode >/dev/null
x="$target/release/xnode"
venv="$target/bench-venv"
if ! "$venv/bin/python" -c "import boto3, blake3, cryptography" 2>/dev/null; then
  echo "==> installing boto3, blake3 and cryptography into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet boto3 blake3 cryptography
fi
work="$(mktemp -d)"
trap 'echo quit >&3 2>/dev/null || true; sleep 2; kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkfifo "$work/ctl"
"$x" devnet --nodes 3 --api-port 0 --p2p-port 0 --dir "$work/devnet" <"$work/ctl" >"$work/devnet.log" 2>&1 &
exec 3>"$work/ctl"
for _ in $(seq 1 150); do grep -q "S3, with an access key" "$work/devnet.log" 2>/dev/null && break; sleep 0.2; done
grep -q "S3, with an access key" "$work/devnet.log" || { cat "$work/devnet.log"; exit 1; }
echo "3-node release devnet up; $(nproc) cores; $(date -u +%Y-%m-%d)" >&2
"$venv/bin/python" scripts/bench_s3.py "$work/devnet"
