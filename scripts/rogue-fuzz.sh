#!/usr/bin/env bash
# The long rogue-fuzz run (issue 12): five honest nodes and one rogue that sends random
# mutations of valid messages of every kind for XNODE_ROGUE_SECS (default 120) seconds
# while a client writes and reads. CI runs the same test for 20 s.
#
#   ./scripts/rogue-fuzz.sh                 # 120 s, random seed (printed)
#   XNODE_ROGUE_SECS=600 ./scripts/rogue-fuzz.sh
#   XNODE_ROGUE_SEED=1234 ./scripts/rogue-fuzz.sh   # replay a run
set -euo pipefail
cd "$(dirname "$0")/.."
export XNODE_ROGUE_SECS="${XNODE_ROGUE_SECS:-120}"
exec cargo nextest run --workspace --no-capture \
  -E 'test(/^rogue_fuzz::/)'
