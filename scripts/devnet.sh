#!/usr/bin/env bash
# Builds xnode (release: storage is about 15x faster than in a debug build) and runs a
# local 5-node devnet on loopback (API on 127.0.0.1:8080-8084).
# Extra arguments go to `xnode devnet`, e.g. `./scripts/devnet.sh --nodes 3`.
set -euo pipefail
cd "$(dirname "$0")/.."
# `--chain` needs a local EVM: anvil from npm, pinned by contracts/anvil/package-lock.json
# (installed once; the same install scripts/test.sh makes).
for arg in "$@"; do
  if [ "$arg" = "--chain" ] && [ ! -x contracts/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ]; then
    echo "==> npm ci (anvil, for --chain)"
    (cd contracts/anvil && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
cargo build --release -p xnode
echo "xnode is at $PWD/target/release/xnode (export PATH=\"$PWD/target/release:\$PATH\" to use it from another terminal)"
exec ./target/release/xnode devnet --nodes 5 "$@"
