#!/usr/bin/env bash
# A multi-region testbed: N real `xnode` processes, each in its own network namespace on
# one bridge (veth pairs), in R regions with a latency and loss matrix.
#
# These kernels have no `netem` qdisc, so latency, jitter and loss are the nodes' own
# per-peer link models (PUT /v1/admin/faults, `links`; see
# docs/decisions/2026-11-26-link-latency-and-loss-in-the-fault-layer.md). Partitions are
# real: blackhole routes inside the namespaces, so connections really break.
#
# Usage: scripts/testbed.sh VERB [ARGS]
#   up [N] [R]          start N nodes (default 5) in R regions (default 3); node i is in
#                       region i % R; 1 ms one way inside a region, 38-150 ms between
#                       (10 % jitter), 0.1 % loss on every link
#   down                stop every node and remove namespaces, veths and the bridge
#   status              per node: pid, region, address, members it sees alive, faults
#   partition A B       cut every link between node lists A and B (e.g. 0,1,2 3,4)
#   heal                remove every partition (latency and loss stay)
#   latency A B MS      one-way delay between nodes A and B (both ways), 10 % jitter
#   loss P [A B]        loss probability on every link, or on the link A-B only
#   skew NODE MS        offset NODE's object-version clock by MS (negative: behind)
#   kill NODE           kill -9 the node
#   restart NODE        start a killed node again (same data dir and address)
#   api NODE            print NODE's API URL (for scripts: curl "$(testbed.sh api 0)/v1/nodes")
#   delay A B           print the one-way delay in ms the link A-B is given (for scripts)
#
# Environment: XNODE_BIN (default target/debug/xnode, built if missing),
# XNODE_TESTBED_DIR (default /tmp/xnode-testbed), XNODE_TESTBED_MATRIX (`line`, the
# default, or `detour`; see region_delay).
# Needs root for namespaces; without it every verb prints SKIP and exits 0.
set -euo pipefail

DIR=${XNODE_TESTBED_DIR:-/tmp/xnode-testbed}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${XNODE_BIN:-$ROOT/target/debug/xnode}
BRIDGE=xtb0
SUBNET=10.77.0
NETWORK=testbed

if [ "$(id -u)" != 0 ]; then
  echo "SKIP: scripts/testbed.sh needs root (network namespaces, veth pairs, a bridge); run it as root" >&2
  exit 0
fi
for tool in ip curl jq; do
  command -v "$tool" >/dev/null || { echo "testbed.sh: $tool is required" >&2; exit 1; }
done

n_nodes() { cat "$DIR/n" 2>/dev/null || echo 0; }
n_regions() { cat "$DIR/r" 2>/dev/null || echo 1; }
ns() { echo "xtb-$1"; }
addr() { echo "$SUBNET.$((10 + $1))"; }
api() { echo "http://$(addr "$1"):8080"; }
region() { echo $(($1 % $(n_regions))); }

# One-way delay in ms between two regions: 1 inside; between, the distance along a line
# of regions whose gaps are 38, 72, 45 and 60 ms in turn, capped at 150 (3 regions: 38,
# 72 and 110 ms, about us-east/eu-west/ap-southeast). Distances along a line obey the
# triangle inequality, as real regions' latencies nearly do (a detour through a third
# region is not faster than the direct link), so network coordinates can represent them.
# XNODE_TESTBED_MATRIX=detour gives the first matrix instead (30 + 60 per extra step + 20
# by parity: 50, 30 and 130 ms for 3 regions), whose direct 0-2 link is 62 % slower than
# the detour through region 1: no coordinate system can embed it (Vivaldi's median error
# stays near 20 % however long it runs); kept to show that limit.
region_delay() {
  local a=$1 b=$2
  if [ "$a" = "$b" ]; then echo 1; return; fi
  local lo=$(( a < b ? a : b )) hi=$(( a < b ? b : a )) ms=0 r
  if [ "$(cat "$DIR/matrix" 2>/dev/null || echo line)" = detour ]; then
    ms=$(( 30 + (hi - lo - 1) * 60 + ((a + b) % 3) * 20 ))
  else
    local gaps=(38 72 45 60)
    for ((r = lo; r < hi; r++)); do ms=$(( ms + gaps[r % 4] )); done
  fi
  [ "$ms" -gt 150 ] && ms=150
  echo "$ms"
}

# The current one-way delay and loss of link a-b (overrides win over the matrix).
link_delay() {
  local a=$1 b=$2 lo=$(( $1 < $2 ? $1 : $2 )) hi=$(( $1 < $2 ? $2 : $1 ))
  if [ -f "$DIR/latency.$lo.$hi" ]; then cat "$DIR/latency.$lo.$hi"; else region_delay "$(region "$a")" "$(region "$b")"; fi
}
link_loss() {
  local lo=$(( $1 < $2 ? $1 : $2 )) hi=$(( $1 < $2 ? $2 : $1 ))
  if [ -f "$DIR/loss.$lo.$hi" ]; then cat "$DIR/loss.$lo.$hi"; else cat "$DIR/loss" 2>/dev/null || echo 0.001; fi
}

node_id() { cat "$DIR/node-$1.id"; }

# Pushes node i's link models (the whole row of the matrix) to its fault API, keeping
# whatever else is set there (clock offset, handling faults).
apply_links() {
  local i=$1 n links="{}" j ms jitter loss
  n=$(n_nodes)
  for ((j = 0; j < n; j++)); do
    [ "$j" = "$i" ] && continue
    [ -f "$DIR/node-$j.id" ] || continue
    ms=$(link_delay "$i" "$j"); jitter=$(( ms / 10 )); loss=$(link_loss "$i" "$j")
    links=$(jq -c --arg id "$(node_id "$j")" --argjson d "$ms" --argjson jt "$jitter" --argjson l "$loss" \
      '. + {($id): {delay_ms: $d, jitter_ms: $jt, loss: $l, cut: false}}' <<<"$links")
  done
  local current
  current=$(curl -sf "$(api "$i")/v1/admin/faults") || return 1
  jq -c --argjson links "$links" '.links = $links' <<<"$current" |
    curl -sf -X PUT -H 'content-type: application/json' --data-binary @- "$(api "$i")/v1/admin/faults" >/dev/null
}

wait_api() {
  local i=$1
  for _ in $(seq 1 300); do
    if curl -sf "$(api "$i")/v1/node" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "node $i did not answer on $(api "$i") within 30 s; see $DIR/node-$i.log" >&2
  return 1
}

start_node() {
  local i=$1 bootstrap=""
  [ "$i" != 0 ] && bootstrap="--bootstrap /ip4/$(addr 0)/tcp/4001"
  # shellcheck disable=SC2086
  ip netns exec "$(ns "$i")" "$BIN" start \
    --data-dir "$DIR/node-$i" --listen "/ip4/$(addr "$i")/tcp/4001" \
    --api "$(addr "$i"):8080" --s3 "$(addr "$i"):9000" $bootstrap \
    --zone "region-$(region "$i")" --network "$NETWORK" --no-mdns --enable-fault-injection \
    >>"$DIR/node-$i.log" 2>&1 &
  echo $! >"$DIR/node-$i.pid"
  wait_api "$i"
  curl -sf "$(api "$i")/v1/node" | jq -r .id >"$DIR/node-$i.id"
}

is_running() { [ -f "$DIR/node-$1.pid" ] && kill -0 "$(cat "$DIR/node-$1.pid")" 2>/dev/null; }

apply_all_links() {
  local i
  for ((i = 0; i < $(n_nodes); i++)); do
    is_running "$i" && apply_links "$i"
  done
}

up() {
  local n=${1:-5} r=${2:-3} i
  [ -f "$DIR/n" ] && { echo "a testbed is already up in $DIR; run down first" >&2; exit 1; }
  if [ ! -x "$BIN" ]; then (cd "$ROOT" && cargo build -p xnode --bin xnode); fi
  mkdir -p "$DIR"
  echo "$n" >"$DIR/n"; echo "$r" >"$DIR/r"; echo "${XNODE_TESTBED_MATRIX:-line}" >"$DIR/matrix"
  ip link add "$BRIDGE" type bridge
  ip addr add "$SUBNET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for ((i = 0; i < n; i++)); do
    ip netns add "$(ns "$i")"
    ip link add "xtbh-$i" type veth peer name "xtbn-$i"
    ip link set "xtbh-$i" master "$BRIDGE" up
    ip link set "xtbn-$i" netns "$(ns "$i")"
    ip -n "$(ns "$i")" addr add "$(addr "$i")/24" dev "xtbn-$i"
    ip -n "$(ns "$i")" link set "xtbn-$i" up
    ip -n "$(ns "$i")" link set lo up
  done
  for ((i = 0; i < n; i++)); do start_node "$i"; done
  apply_all_links
  echo "testbed up: $n nodes in $r regions; node i's API is $(api 0 | sed 's/10\.77\.0\.10/10.77.0.(10+i)/')"
}

down() {
  local n i
  n=$(n_nodes)
  for ((i = 0; i < n; i++)); do
    if is_running "$i"; then kill "$(cat "$DIR/node-$i.pid")" 2>/dev/null || true; fi
  done
  sleep 1
  for ((i = 0; i < n; i++)); do
    if is_running "$i"; then kill -9 "$(cat "$DIR/node-$i.pid")" 2>/dev/null || true; fi
    ip netns del "$(ns "$i")" 2>/dev/null || true
    ip link del "xtbh-$i" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -rf "$DIR"
  echo "testbed down"
}

status() {
  local i alive faults
  for ((i = 0; i < $(n_nodes); i++)); do
    if is_running "$i"; then
      alive=$(curl -sf --max-time 2 "$(api "$i")/v1/nodes" | jq '[.[] | select(.state == "alive")] | length' 2>/dev/null || echo "?")
      faults=$(curl -sf --max-time 2 "$(api "$i")/v1/admin/faults" | jq -c '{clock_offset_ms, cut: [.links[] | select(.cut)] | length}' 2>/dev/null || echo "?")
      echo "node $i  pid $(cat "$DIR/node-$i.pid")  region $(region "$i")  $(addr "$i")  sees $alive alive  $faults"
    else
      echo "node $i  DOWN  region $(region "$i")  $(addr "$i")"
    fi
  done
  ls "$DIR"/cut.* >/dev/null 2>&1 && echo "partitions: $(cd "$DIR" && ls cut.* | sed 's/cut\.//' | tr '\n' ' ')"
  return 0
}

# Real cuts: a blackhole route to the other node inside each namespace.
cut() {
  local a=$1 b=$2
  ip -n "$(ns "$a")" route replace blackhole "$(addr "$b")/32"
  ip -n "$(ns "$b")" route replace blackhole "$(addr "$a")/32"
  touch "$DIR/cut.$a-$b"
}

partition() {
  local a b
  [ $# = 2 ] || { echo "usage: partition A B (node lists, e.g. 0,1,2 3,4)" >&2; exit 2; }
  for a in ${1//,/ }; do
    for b in ${2//,/ }; do cut "$a" "$b"; done
  done
  echo "partitioned {$1} from {$2}"
}

heal() {
  local f pair a b
  for f in "$DIR"/cut.*; do
    [ -e "$f" ] || continue
    pair=${f##*/cut.}; a=${pair%-*}; b=${pair#*-}
    ip -n "$(ns "$a")" route del blackhole "$(addr "$b")/32" 2>/dev/null || true
    ip -n "$(ns "$b")" route del blackhole "$(addr "$a")/32" 2>/dev/null || true
    rm -f "$f"
  done
  echo "healed"
}

set_fault_field() {
  local i=$1 filter=$2 current
  current=$(curl -sf "$(api "$i")/v1/admin/faults")
  jq -c "$filter" <<<"$current" |
    curl -sf -X PUT -H 'content-type: application/json' --data-binary @- "$(api "$i")/v1/admin/faults" >/dev/null
}

verb=${1:-}
shift || true
case "$verb" in
  up) up "$@" ;;
  down) down ;;
  status) status ;;
  partition) partition "$@" ;;
  heal) heal ;;
  latency)
    [ $# = 3 ] || { echo "usage: latency A B MS" >&2; exit 2; }
    lo=$(( $1 < $2 ? $1 : $2 )); hi=$(( $1 < $2 ? $2 : $1 ))
    echo "$3" >"$DIR/latency.$lo.$hi"
    apply_links "$1"; apply_links "$2"
    echo "link $1-$2: $3 ms one way" ;;
  loss)
    if [ $# = 1 ]; then echo "$1" >"$DIR/loss"; apply_all_links; echo "loss $1 on every link"
    elif [ $# = 3 ]; then
      lo=$(( $2 < $3 ? $2 : $3 )); hi=$(( $2 < $3 ? $3 : $2 ))
      echo "$1" >"$DIR/loss.$lo.$hi"; apply_links "$2"; apply_links "$3"; echo "link $2-$3: loss $1"
    else echo "usage: loss P [A B]" >&2; exit 2; fi ;;
  skew)
    [ $# = 2 ] || { echo "usage: skew NODE MS" >&2; exit 2; }
    set_fault_field "$1" ".clock_offset_ms = $2"
    echo "node $1: clock offset $2 ms" ;;
  kill)
    [ $# = 1 ] || { echo "usage: kill NODE" >&2; exit 2; }
    kill -9 "$(cat "$DIR/node-$1.pid")"
    echo "node $1 killed" ;;
  restart)
    [ $# = 1 ] || { echo "usage: restart NODE" >&2; exit 2; }
    is_running "$1" && { echo "node $1 is running" >&2; exit 1; }
    start_node "$1"
    # Its links are gone with the process; its peers kept theirs.
    apply_links "$1"
    echo "node $1 restarted" ;;
  api) api "$1" ;;
  delay)
    [ $# = 2 ] || { echo "usage: delay A B" >&2; exit 2; }
    link_delay "$1" "$2" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
