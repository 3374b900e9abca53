#!/usr/bin/env bash
# Coverage-guided fuzzing of the decoders of peer and disk bytes (crates/fuzz), with
# libFuzzer on the stable toolchain. Usage: scripts/fuzz.sh [TARGET|all|list] [SECONDS]
#
# Builds fuzz/ (a separate workspace) once with sanitizer-coverage instrumentation, then
# runs each target for SECONDS (default 60) over its committed corpus in
# crates/fuzz/corpus/<target>/. New interesting inputs are merged back into that folder
# (libFuzzer's -merge=1 keeps it minimal); crashes land in target/fuzz-crashes/<target>/.
# The explicit --target keeps the instrumentation off build scripts and proc macros.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
which="${1:-all}"
seconds="${2:-60}"
triple="x86_64-unknown-linux-gnu"

export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
(cd "$root/fuzz" && cargo build --release --target "$triple" --bin fuzz_decoder)
binary="$root/fuzz/target/$triple/release/fuzz_decoder"

# The target names are the corpus folders; the CI test checks both lists agree.
mapfile -t all_targets < <(find "$root/crates/fuzz/corpus" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
if [[ "$which" == "list" ]]; then
    printf '%s\n' "${all_targets[@]}"
    exit 0
elif [[ "$which" == "all" ]]; then
    targets=("${all_targets[@]}")
else
    targets=("$which")
fi

status=0
for target in "${targets[@]}"; do
    corpus="$root/crates/fuzz/corpus/$target"
    crashes="$root/target/fuzz-crashes/$target"
    work="$(mktemp -d)"
    mkdir -p "$crashes" "$corpus"
    echo "== $target: ${seconds}s"
    # New inputs go to a scratch folder first, so the committed corpus only grows by the
    # minimal merge below.
    if ! XNODE_FUZZ_TARGET="$target" "$binary" "$work" "$corpus" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$crashes/" -print_final_stats=1 2>"$work.log"; then
        echo "!! $target found a crash: see $crashes/ and $work.log"
        status=1
    fi
    grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)" "$work.log" || tail -3 "$work.log"
    XNODE_FUZZ_TARGET="$target" "$binary" -merge=1 "$corpus" "$work" 2>/dev/null | tail -0
    rm -rf "$work"
done
exit "$status"
