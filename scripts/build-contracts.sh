#!/usr/bin/env bash
# Builds the settlement contracts (contracts/src/*.sol) with the solc-js pinned by
# contracts/package-lock.json, installed into contracts/node_modules (idempotently), and
# writes contracts/out/<Name>.json (abi, bytecode, deployedBytecode), or into the directory
# given as the first argument. Compiler settings live in contracts/compile.js.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONTRACTS="$ROOT/contracts"
OUT="${1:-$CONTRACTS/out}"

if [ ! -f "$CONTRACTS/node_modules/solc/package.json" ] \
   || [ "$CONTRACTS/package-lock.json" -nt "$CONTRACTS/node_modules/.package-lock.json" ]; then
  echo "==> npm ci (solc-js for the contracts)" >&2
  (cd "$CONTRACTS" && npm ci --no-audit --no-fund --loglevel=error)
fi
node "$CONTRACTS/compile.js" "$OUT"
