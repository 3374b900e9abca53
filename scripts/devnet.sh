#!/usr/bin/env bash
# Builds xnode and runs a local 5-node devnet on loopback (API on 127.0.0.1:8080-8084).
# Extra arguments go to `xnode devnet`, e.g. `./scripts/devnet.sh --nodes 3`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p xnode
echo "xnode is at $PWD/target/debug/xnode (export PATH=\"$PWD/target/debug:\$PATH\" to use it from another terminal)"
exec ./target/debug/xnode devnet --nodes 5 "$@"
