#!/usr/bin/env bash
# Verifies that the committed contracts/out/*.json are exactly what contracts/src builds to
# with the pinned compiler. Skipped, with a notice, where node or npm is missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIST="$ROOT/contracts/out"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "==> node or npm not installed: skipping the contracts' rebuild comparison" >&2
  exit 0
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/xnode-contracts.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
"$ROOT/scripts/build-contracts.sh" "$TMP"

status=0
for f in "$DIST"/*.json; do
  name=$(basename "$f")
  if [ ! -f "$TMP/$name" ]; then
    echo "FAIL: contracts/out/$name is committed but no longer built" >&2; status=1
  elif ! cmp -s "$f" "$TMP/$name"; then
    echo "FAIL: contracts/out/$name differs from a fresh build (run scripts/build-contracts.sh and commit)" >&2
    status=1
  fi
done
for f in "$TMP"/*.json; do
  name=$(basename "$f")
  [ -f "$DIST/$name" ] || { echo "FAIL: $name is built but not committed in contracts/out" >&2; status=1; }
done
[ $status = 0 ] && echo "==> contracts OK: contracts/out/*.json match a fresh build" >&2
exit $status
