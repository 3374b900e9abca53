#!/usr/bin/env bash
# Installs what the tests need (idempotently) and runs the whole test suite:
# formatting and lints, every unit, in-process cluster and black-box test, then the
# CPU-hog soak test (60 s; XNODE_SOAK_SECS changes it).
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools. cargo-nextest ships with the machine image; install it if a machine lacks it.
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# The Studio's end-to-end test runs Debian's Chromium driven by playwright-core (from npm,
# pinned by crates/studio/e2e/package-lock.json). Playwright's own browser download does not
# work here, so the test uses /usr/bin/chromium. Without either, the test fails under CI=true.
if [ ! -x /usr/bin/chromium ]; then
  echo "==> installing chromium (Debian)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium \
    || echo "warning: could not install chromium; the Studio end-to-end test will fail under CI"
fi
e2e=crates/studio/e2e
if [ ! -d "$e2e/node_modules/playwright-core" ] || [ "$e2e/package-lock.json" -nt "$e2e/node_modules/.package-lock.json" ]; then
  echo "==> npm ci (Studio end-to-end test)"
  (cd "$e2e" && npm ci --no-audit --no-fund --loglevel=error)
fi
# S3 compatibility clients: boto3 and the aws CLI in a virtualenv under the target dir
# (XNODE_S3_PYTHON points the s3_compat test at it), and rclone from Debian if it installs.
s3_venv="${CARGO_TARGET_DIR:-target}/s3-venv"
if ! "$s3_venv/bin/python" -c "import boto3, awscli" >/dev/null 2>&1; then
  echo "==> installing boto3 and awscli into $s3_venv"
  python3 -m venv "$s3_venv" && "$s3_venv/bin/pip" install --quiet boto3 awscli \
    || echo "warning: could not install boto3/awscli; the S3 compatibility suite will be skipped"
fi
if "$s3_venv/bin/python" -c "import boto3, awscli" >/dev/null 2>&1; then
  export XNODE_S3_PYTHON="$PWD/$s3_venv/bin/python"
  [[ "$s3_venv" = /* ]] && export XNODE_S3_PYTHON="$s3_venv/bin/python"
fi
# The S3 conformance gate (crates/xnode/tests/s3_conformance.rs) runs the ceph/s3-tests suite
# from ../shared/conformance beside the repository, when it is there, with the suite's own
# requirements in a second virtualenv (XNODE_S3TESTS_PYTHON points the test at it).
conformance="${XNODE_CONFORMANCE_DIR:-../shared/conformance}"
if [ -f "$conformance/s3-tests/requirements.txt" ]; then
  s3tests_venv="${CARGO_TARGET_DIR:-target}/s3tests-venv"
  req="$conformance/s3-tests/requirements.txt"
  marker="$s3tests_venv/.requirements-$(sha256sum "$req" | cut -c1-16)"
  if [ ! -f "$marker" ]; then
    echo "==> installing the S3 conformance suite's requirements into $s3tests_venv"
    { python3 -m venv "$s3tests_venv" && "$s3tests_venv/bin/pip" install --quiet -r "$req" && touch "$marker"; } \
      || echo "warning: could not install the suite's requirements; the S3 conformance gate will be skipped"
  fi
  if [ -f "$marker" ]; then
    export XNODE_S3TESTS_PYTHON="$PWD/$s3tests_venv/bin/python"
    [[ "$s3tests_venv" = /* ]] && export XNODE_S3TESTS_PYTHON="$s3tests_venv/bin/python"
  fi
else
  echo "note: no S3 conformance suite at $conformance; its gate is skipped"
fi
if ! command -v rclone >/dev/null 2>&1; then
  apt-get install -y rclone >/dev/null 2>&1 || sudo -n apt-get install -y rclone >/dev/null 2>&1 \
    || echo "note: rclone is not installed; its S3 checks are skipped"
fi

# anvil (a local EVM node) for the settlement contracts' end-to-end test, from npm, pinned by
# contracts/anvil/package-lock.json. Linux x86-64 only; elsewhere the test says it skipped.
anvil_dir=contracts/anvil
if [ ! -x "$anvil_dir/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" ] \
   || [ "$anvil_dir/package-lock.json" -nt "$anvil_dir/node_modules/.package-lock.json" ]; then
  echo "==> npm ci (anvil, for the settlement contracts' end-to-end test)"
  (cd "$anvil_dir" && npm ci --no-audit --no-fund --loglevel=error) \
    || echo "warning: could not install anvil; crates/chain/tests/anvil_e2e.rs will be skipped"
fi

# A fresh clone (as in CI) builds everything once: incremental compilation only adds work
# there (it writes the query caches a later rebuild would reuse). Local runs keep it.
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL=0
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> example guests: valid, and identical to what their sources build to"
./scripts/check-guests.sh

echo "==> settlement contracts: identical to what their sources build to"
./scripts/check-contracts.sh

echo "==> Nix files: they parse (and the NixOS module evaluates where nixpkgs is at hand)"
./scripts/check-nix.sh

# Clippy lints the workspace while it compiles for the tests: clippy-driver wraps rustc for
# the workspace's own crates (RUSTC_WORKSPACE_WRAPPER, which is how `cargo clippy` itself
# works) and generates code as rustc would, and CLIPPY_ARGS is how `cargo clippy` hands it
# `-D warnings`. A separate `cargo clippy` would type-check every dependency a second time
# in check mode, several minutes of a 2-core CI run, for the same lints. Where clippy-driver
# is missing, plain `cargo clippy` runs first.
if clippy_driver=$(rustup which clippy-driver 2>/dev/null) && [ -x "$clippy_driver" ]; then
  export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
  export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
  echo "==> tests (workspace compiled through clippy-driver, warnings denied)"
else
  echo "==> cargo clippy"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
  echo "==> tests"
fi
cargo nextest run --workspace --no-fail-fast

echo "==> soak: no false suspicion with one core busy for ${XNODE_SOAK_SECS:-60} s"
# Selected from the whole workspace so cargo reuses the build above (building one
# package alone would unify features differently and recompile dependencies).
cargo nextest run --workspace --run-ignored only --no-capture -E 'test(no_false_suspicion_under_a_cpu_hog)'
