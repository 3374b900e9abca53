#!/usr/bin/env bash
# Measures failure-detection latency on a 5-node network of real xnode processes
# (20 kill -9 trials, 5 graceful stops) and prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
XNODE_BENCH_TRIALS="${XNODE_BENCH_TRIALS:-20}" \
  cargo test -p xnode --test black_box -- --ignored --nocapture --test-threads 1 bench_failure_detection::
