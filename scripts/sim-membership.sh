#!/usr/bin/env bash
# Runs the membership simulation (crates/sim: the real SWIM state machine for many nodes
# over a simulated network, in virtual time) and prints its report: convergence on a
# death and on a join, bytes per node per second in steady state, key movement.
#
#   scripts/sim-membership.sh                 # 10,000 nodes, or the largest size that fits
#   XNODE_SIM_NODES=1000 scripts/sim-membership.sh --deaths 5
#
# Environment: XNODE_SIM_NODES (default 10000), XNODE_SIM_PROFILE (release or dev,
# default release), XNODE_SIM_MAX_MIB (memory allowed, default 6144). Other arguments go
# to xnode-sim (--steady, --deaths, --joins, --settle, --loss, --keys, --seed).
#
# Every simulated node holds a full membership table with signed records, about 1.5 KiB
# per member (peak RSS 57 MiB at 200 nodes, 1.6 GiB at 1,000), and a table is capped at 4,096 members (MAX_MEMBERS), so the run needs about
# nodes x min(nodes, 4096) KiB. A size that does not fit in XNODE_SIM_MAX_MIB is reduced
# to the largest that does, and the script says so.
set -euo pipefail
cd "$(dirname "$0")/.."

nodes="${XNODE_SIM_NODES:-10000}"
profile="${XNODE_SIM_PROFILE:-release}"
max_mib="${XNODE_SIM_MAX_MIB:-6144}"
bytes_per_member=1536
cap=4096

need_mib() {
  local n="$1" table="$1"
  if ((table > cap)); then table=$cap; fi
  echo $((n * table * bytes_per_member / 1048576 + 256))
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
