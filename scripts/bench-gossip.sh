#!/usr/bin/env bash
# Measures gossip overhead (payload bytes per node per second) for 5 and 50 in-process
# nodes and prints a Markdown table for BENCHMARKS.md. XNODE_BENCH_SECONDS sets the
# measuring period (default 30 s).
set -euo pipefail
cd "$(dirname "$0")/.."
# A release build: 50 nodes in one debug-built process on 2 cores starve each other.
cargo test --release -p xnode-test-cluster --test multi_node -- --ignored --nocapture --test-threads 1 bench_gossip::
