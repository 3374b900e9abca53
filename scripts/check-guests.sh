#!/usr/bin/env bash
# Verify that the committed guests/dist/*.wasm are exactly what the sources
# build to, and that every artifact is a valid component/module with the
# expected imports/exports.
#
# * If the wasm32-wasip1/wasm32-wasip2 targets are not installed: only the
#   structural check runs (it needs just the host toolchain), and the rebuild
#   comparison is skipped with a notice.
# * If the local rustc differs from guests/dist/TOOLCHAIN.txt, byte-identical
#   output cannot be expected: the comparison is skipped with a notice, unless
#   CHECK_GUESTS_STRICT=1 (then it fails).
#
# The rebuild goes to a temporary directory (own target dir); guests/dist and
# guests/target are not touched.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GUESTS="$ROOT/guests"
DIST="$GUESTS/dist"
status=0

echo "==> structural check of $DIST" >&2
if ! (cd "$GUESTS" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$GUESTS/target}" \
        cargo run --locked -q -p guest-verify -- "$DIST"); then
  echo "FAIL: guest-verify rejected an artifact" >&2
  status=1
fi

if ! (cd "$GUESTS" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$GUESTS/target}" \
        cargo test --locked -q -p xnode-guest >/dev/null); then
  echo "FAIL: xnode-guest unit tests" >&2
  status=1
fi

installed=$(rustup target list --installed 2>/dev/null || true)
if ! grep -qx wasm32-wasip1 <<<"$installed" || ! grep -qx wasm32-wasip2 <<<"$installed"; then
  echo "==> wasm32-wasip1/wasm32-wasip2 targets not installed: skipping rebuild comparison" >&2
  exit $status
fi

if ! diff -q <(rustc -vV) "$DIST/TOOLCHAIN.txt" >/dev/null; then
  echo "==> rustc differs from the one recorded in guests/dist/TOOLCHAIN.txt:" >&2
  diff <(rustc -vV) "$DIST/TOOLCHAIN.txt" >&2 || true
  if [ "${CHECK_GUESTS_STRICT:-0}" = 1 ]; then
    echo "FAIL: CHECK_GUESTS_STRICT=1 and toolchain mismatch" >&2
    exit 1
  fi
  echo "==> skipping byte comparison (rebuild with scripts/build-guests.sh to refresh)" >&2
  exit $status
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/xnode-guests.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
echo "==> rebuilding into $TMP" >&2
CARGO_TARGET_DIR="$TMP/target" "$ROOT/scripts/build-guests.sh" "$TMP/dist"

for f in "$DIST"/*.wasm; do
  name=$(basename "$f")
  if [ ! -f "$TMP/dist/$name" ]; then
    echo "FAIL: $name is committed but no longer built" >&2; status=1
  elif ! cmp -s "$f" "$TMP/dist/$name"; then
    echo "FAIL: guests/dist/$name differs from a fresh build (run scripts/build-guests.sh and commit)" >&2
    status=1
  fi
done
for f in "$TMP/dist"/*.wasm; do
  name=$(basename "$f")
  [ -f "$DIST/$name" ] || { echo "FAIL: $name is built but not committed in guests/dist" >&2; status=1; }
done

[ $status = 0 ] && echo "==> guests OK: dist/*.wasm match a fresh build" >&2
exit $status
