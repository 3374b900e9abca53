#!/usr/bin/env bash
# Builds xnode (release: storage is about 15x faster than in a debug build) and runs a
# local 5-node devnet on loopback (API on 127.0.0.1:8080-8084).
# Extra arguments go to `xnode devnet`, e.g. `./scripts/devnet.sh --nodes 3`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p xnode
echo "xnode is at $PWD/target/release/xnode (export PATH=\"$PWD/target/release:\$PATH\" to use it from another terminal)"
exec ./target/release/xnode devnet --nodes 5 "$@"
