#!/usr/bin/env bash
# Build every WASM guest under guests/ in release mode and copy the artifacts
# to guests/dist/<name>.wasm (committed, so host tests need no wasm toolchain).
#
#   scripts/build-guests.sh            # build into guests/dist
#   scripts/build-guests.sh OUT_DIR    # build into OUT_DIR instead (check-guests.sh)
#
# Builds are reproducible for a given rustc: absolute paths (cargo home, repo,
# target dir) are remapped, Cargo.lock is honoured (--locked), and the
# profile strips debug info/symbols (see guests/Cargo.toml).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GUESTS="$ROOT/guests"
OUT="${1:-$GUESTS/dist}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$GUESTS/target}"
mkdir -p "$CARGO_TARGET_DIR"
CARGO_TARGET_DIR=$(cd "$CARGO_TARGET_DIR" && pwd)
CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"
RUSTUP_HOME_DIR="${RUSTUP_HOME:-$HOME/.rustup}"

# Component guests (wasi:http/proxy) and preview-1 command guests.
# Format: <cargo package>:<artifact file stem>
P2_GUESTS=(hello:hello echo-json:echo_json object-rw:object_rw spin:spin membomb:membomb
           recurse:recurse bigout:bigout forbidden-fetch:forbidden_fetch html-page:html_page)
P1_GUESTS=(transform:transform heartbeat:heartbeat job-spin:job-spin job-bigout:job-bigout)

# Later --remap-path-prefix flags win, so the most specific paths come last.
unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS
export RUSTFLAGS="--remap-path-prefix=$CARGO_HOME_DIR=/cargo --remap-path-prefix=$RUSTUP_HOME_DIR=/rustup --remap-path-prefix=$ROOT=/xnode --remap-path-prefix=$CARGO_TARGET_DIR=/target"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export SOURCE_DATE_EPOCH=0

build() { # target, guests...
  local target=$1; shift
  local pkgs=()
  for g in "$@"; do pkgs+=(-p "${g%%:*}"); done
  echo "==> cargo build --release --target $target ${pkgs[*]}" >&2
  (cd "$GUESTS" && cargo build --locked --release --target "$target" "${pkgs[@]}")
  for g in "$@"; do
    local name=${g%%:*} stem=${g##*:}
    cp "$CARGO_TARGET_DIR/$target/release/$stem.wasm" "$OUT/$name.wasm"
  done
}

build wasm32-wasip2 "${P2_GUESTS[@]}"
build wasm32-wasip1 "${P1_GUESTS[@]}"

# Record the toolchain: byte-identical output is only expected from the same rustc.
rustc -vV > "$OUT/TOOLCHAIN.txt"

echo "==> guests written to $OUT" >&2
( cd "$OUT" && for f in *.wasm; do printf '%8d  %s\n' "$(wc -c < "$f")" "$f"; done ) >&2
