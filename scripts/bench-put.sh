#!/usr/bin/env bash
# Large PUTs against the machine's physical limit, in one run (issue 16, item 4): a 3-node
# release devnet on loopback takes 64 MiB and 1 GiB objects through node 1's S3 port
# (boto3, as in bench-garage.sh), and in rounds interleaved with the PUTs, the example
# `put_limits` measures the limit for a 3-replica PUT of the same size on the same disk
# (three fsynced copies, MD5, BLAKE3, XChaCha20-Poly1305; see its docs). Prints a Markdown
# table of medians: the limit, Xnode's PUT rate, and the fraction.
#   ./scripts/bench-put.sh           (BENCH_ROUNDS=3 BENCH_SIZES_MIB="64 1024")
# XNODE_BIN and LIMITS_BIN point at release binaries to use instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh
if [ -n "${LIMITS_BIN:-}" ]; then
  limits="$LIMITS_BIN"
else
  cargo build --release -p xnode-storage --example put_limits >/dev/null
  limits="$target/release/examples/put_limits"
fi
# The devnet's data and the limit's files go on the same disk (under the target directory's
# file system unless TMPDIR says otherwise).
work="$(mktemp -d)"
trap 'echo quit >&3 2>/dev/null || true; sleep 2; kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkfifo "$work/ctl"
"$x" devnet --nodes 3 --api-port 0 --p2p-port 0 --dir "$work/devnet" <"$work/ctl" >"$work/devnet.log" 2>&1 &
exec 3>"$work/ctl"
for _ in $(seq 1 150); do grep -q "S3, with an access key" "$work/devnet.log" 2>/dev/null && break; sleep 0.2; done
grep -q "S3, with an access key" "$work/devnet.log" || { cat "$work/devnet.log"; exit 1; }
echo "3-node release devnet up; $(nproc) cores; $(date -u +%Y-%m-%d); load before: $(uptime)" >&2
"$venv/bin/python" scripts/bench_put.py "$work/devnet" "$limits" "$work"
echo "load after: $(uptime)" >&2
