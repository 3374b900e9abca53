# Shared set-up of the S3 benchmark scripts (bench-garage.sh, bench-put.sh, bench-tls.sh),
# sourced from the repository root: sets `target`, `x` (the xnode release binary: XNODE_BIN,
# or one built here) and `venv` (a virtualenv with boto3, made on first use).
target="${CARGO_TARGET_DIR:-target}"
if [ -n "${XNODE_BIN:-}" ]; then
  x="$XNODE_BIN"
else
  cargo build --release -p xnode >/dev/null
  x="$target/release/xnode"
fi
venv="$target/bench-venv"
if ! "$venv/bin/python" -c "import boto3" 2>/dev/null; then
  echo "==> installing boto3 into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet boto3
fi
