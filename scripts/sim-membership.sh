#!/usr/bin/env bash
# Runs the membership simulation (crates/sim: the real SWIM state machine and summary
# aggregator for many nodes over a simulated network, in virtual time) and prints its
# report: convergence on a death and on a join, bytes per node per second in steady state,
# how exact and how fast the aggregated network totals are, key movement.
#
#   scripts/sim-membership.sh                 # 10,000 nodes, or the largest size that fits
#   XNODE_SIM_NODES=1000 scripts/sim-membership.sh --deaths 5
#
# Environment: XNODE_SIM_NODES (default 10000), XNODE_SIM_PROFILE (release or dev,
# default release), XNODE_SIM_MAX_MIB (memory allowed; default: what the machine has
# available, less 1 GiB). Other arguments go to xnode-sim (--warmup, --steady, --deaths,
# --joins, --settle, --tail, --loss, --keys, --seed, --no-observe).
#
# Every simulated node holds a full membership table (a sorted vector of small entries
# that share each signed record), about 180 bytes per member: peak RSS 179 MiB at 1,000
# nodes, 1.4 GiB at 3,000, about 17 GiB at 10,000. A table is capped at 16,384 members
# (MAX_MEMBERS), so the run needs about nodes x min(nodes, 16384) x 180 bytes. Summary
# aggregation (on unless --no-observe) adds about 35 KiB per node and 5 KiB per node for
# every 10 s of virtual time (each node keeps an hour of network totals): 128 KiB per node
# is allowed, enough for a run of three minutes. A size that does not fit in
# XNODE_SIM_MAX_MIB is reduced to the largest that does, and the script says so.
set -euo pipefail
cd "$(dirname "$0")/.."

nodes="${XNODE_SIM_NODES:-10000}"
profile="${XNODE_SIM_PROFILE:-release}"
available_mib=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo 2>/dev/null || echo 6144)
max_mib="${XNODE_SIM_MAX_MIB:-$((available_mib > 2048 ? available_mib - 1024 : 1024))}"
bytes_per_member=180
cap=16384
observe_kib_per_node=128
for arg in "$@"; do
  if [[ "$arg" == --no-observe ]]; then observe_kib_per_node=0; fi
done

need_mib() {
  local n="$1" table="$1"
  if ((table > cap)); then table=$cap; fi
  echo $((n * table * bytes_per_member / 1048576 + n * observe_kib_per_node / 1024 + 256))
}

if (($(need_mib "$nodes") > max_mib)); then
  fit=$nodes
  while ((fit > 2)) && (($(need_mib "$fit") > max_mib)); do
    fit=$((fit * 9 / 10))
  done
  echo "sim-membership: $nodes nodes need about $(need_mib "$nodes") MiB (> $max_mib);" \
    "running $fit nodes instead (raise XNODE_SIM_MAX_MIB to run more)" >&2
  nodes=$fit
fi

case "$profile" in
  release) dir=release ;;
  dev | debug) profile=dev dir=debug ;;
  *) echo "sim-membership: XNODE_SIM_PROFILE must be release or dev" >&2; exit 2 ;;
esac
cargo build --profile "$profile" -p xnode-sim
echo "sim-membership: $nodes nodes, $profile build" >&2
exec "target/$dir/xnode-sim" --nodes "$nodes" --deaths 3 --joins 3 --keys 20000 "$@"
