#!/usr/bin/env bash
# Runs the ceph/s3-tests conformance suite (s3tests/functional/test_s3.py, unmodified)
# against a fresh 3-node devnet and prints the passes per feature.
#
#   scripts/s3-conformance.sh                 # the whole suite (835 items)
#   scripts/s3-conformance.sh --gate          # only crates/s3/tests/conformance/gate.txt; fails unless all pass
#   scripts/s3-conformance.sh -- -k multipart # any pytest arguments after --
#
# Options: --release (a release binary; the whole suite is much quicker), --node N (the
# node whose S3 port the suite talks to, default 1), --out DIR (results.tsv, summary.md,
# pytest.log; default $CARGO_TARGET_DIR/s3-conformance).
# The suite is found at ../shared/conformance/s3-tests beside the repository, or
# $XNODE_CONFORMANCE_DIR/s3-tests. Its requirements go into a virtualenv under the target
# dir ($CARGO_TARGET_DIR/s3tests-venv), installed from PyPI once.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

gate=0
profile=debug
node=1
out=""
pytest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --gate) gate=1 ;;
    --release) profile=release ;;
    --node) node="$2"; shift ;;
    --out) out="$2"; shift ;;
    --) shift; pytest_args=("$@"); break ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

conformance="${XNODE_CONFORMANCE_DIR:-$root/../shared/conformance}"
if [ ! -d "$conformance/s3-tests" ]; then
  echo "no conformance suite at $conformance/s3-tests (set XNODE_CONFORMANCE_DIR)" >&2
  exit 2
fi
conformance="$(cd "$conformance" && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
[[ "$target" = /* ]] || target="$root/$target"
out="${out:-$target/s3-conformance}"

# The suite's requirements, in their own virtualenv (gevent and lxml take a while the
# first time). A marker holding the requirements' hash makes this a no-op afterwards.
venv="$target/s3tests-venv"
req="$conformance/s3-tests/requirements.txt"
marker="$venv/.requirements-$(sha256sum "$req" | cut -c1-16)"
if [ ! -f "$marker" ]; then
  echo "==> installing the suite's requirements into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  touch "$marker"
fi

echo "==> building xnode ($profile)"
if [ "$profile" = release ]; then
  cargo build --quiet --release -p xnode
else
  cargo build --quiet -p xnode
fi

args=(--xnode "$target/$profile/xnode" --suite "$conformance/s3-tests" --node "$node" --out "$out")
[ -f "$conformance/s3-tests-results-78bc5cc.tsv" ] && args+=(--tsv "$conformance/s3-tests-results-78bc5cc.tsv")
[ "$gate" = 1 ] && args+=(--gate "$root/crates/s3/tests/conformance/gate.txt")
exec "$venv/bin/python" "$root/crates/s3/tests/conformance/run.py" "${args[@]}" -- "${pytest_args[@]}"
