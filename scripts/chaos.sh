#!/usr/bin/env bash
# Chaos under load on the multi-region testbed (scripts/testbed.sh): for DURATION seconds
# (default 180), kill -9 a random node every 10 s and restart it 5 s later, while
# WRITERS clients (default 2) store objects through random live nodes with the `xnode`
# CLI and CALLERS clients (default 1) call a function (guests/hello, two replicas)
# through random live nodes. Afterwards every node is restarted if needed, and every
# acknowledged write is read back through every node and compared byte for byte.
#
# Prints: writes acknowledged, lost, corrupt; the success rate of writes and of calls
# whose node was not killed while they ran (the goal is >= 99.9 %). Exits non-zero on any
# lost or corrupt acknowledged write, or a success rate under 99.9 %.
#
# Usage: scripts/chaos.sh [DURATION] [NODES] [REGIONS]
# The write log is kept in $CHAOS_LOG (default /tmp/xnode-chaos-writes.log).
# Needs root (the testbed's namespaces); without it prints SKIP and exits 0.
# A call's node is the edge it was sent to; a call forwarded by a live edge to a replica
# that is killed meanwhile counts, and must be answered by the other replica.
set -euo pipefail

DURATION=${1:-180}
NODES=${2:-5}
REGIONS=${3:-3}
WRITERS=${WRITERS:-2}
CALLERS=${CALLERS:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TB="$ROOT/scripts/testbed.sh"
BIN=${XNODE_BIN:-$ROOT/target/debug/xnode}
export XNODE_TESTBED_DIR=${XNODE_TESTBED_DIR:-/tmp/xnode-chaos-testbed}
WORK=$(mktemp -d /tmp/xnode-chaos.XXXXXX)

if [ "$(id -u)" != 0 ]; then
  echo "SKIP: scripts/chaos.sh needs root (it runs scripts/testbed.sh)" >&2
  exit 0
fi

# On failure the write and kill logs and the nodes' logs are kept here.
KEEP=${CHAOS_KEEP:-/tmp/xnode-chaos-failed}
cleanup() {
  if [ -f "$WORK/failed" ]; then
    rm -rf "$KEEP"; mkdir -p "$KEEP"
    cp "$WORK"/*.log "$XNODE_TESTBED_DIR"/*.log "$KEEP"/ 2>/dev/null || true
    echo "logs kept in $KEEP" >&2
  fi
  "$TB" down >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$TB" up "$NODES" "$REGIONS"
api() { "$TB" api "$1"; }
export XNODE_TENANT_KEY="$WORK/tenant.key"
"$BIN" key new >/dev/null
# Creating the bucket and seeing it on every node.
"$BIN" bucket create chaos --api "$(api 0)" >/dev/null
for i in $(seq 0 $((NODES - 1))); do
  for _ in $(seq 1 100); do
    "$BIN" bucket ls --api "$(api "$i")" 2>/dev/null | grep -q chaos && break
    sleep 0.1
  done
done

# A function with two replicas, answering GET /fn/hello/ on every node.
"$BIN" deploy "$ROOT/guests/hello/app.toml" --replicas 2 --api "$(api 0)" >"$WORK/deploy.log" 2>&1 \
  || { echo "deploy failed:"; cat "$WORK/deploy.log"; exit 1; }
for _ in $(seq 1 300); do
  ready=1
  for i in $(seq 0 $((NODES - 1))); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "$(api "$i")/fn/hello/")" = 200 ] || ready=0
  done
  [ "$ready" = 1 ] && break
  sleep 0.2
done
[ "$ready" = 1 ] || { echo "hello does not answer through every node"; exit 1; }

echo none >"$WORK/killed"
end=$(( $(date +%s) + DURATION ))

now_ms() { date +%s%3N; }

writer() {
  local w=$1 n=0 node before started
  while [ "$(date +%s)" -lt "$end" ]; do
    n=$((n + 1))
    before=$(cat "$WORK/killed")
    node=$(( RANDOM % NODES ))
    [ "$node" = "$before" ] && continue
    started=$(now_ms)
    head -c $(( 1024 + RANDOM * 2 )) /dev/urandom >"$WORK/w$w-$n.bin"
    if timeout 30 "$BIN" put "$WORK/w$w-$n.bin" "chaos/w$w-$n" --api "$(api "$node")" >/dev/null 2>"$WORK/w$w-$n.err"; then
      result=ok
    else
      result=fail
    fi
    echo "w$w-$n $node $result $started $(now_ms)" >>"$WORK/writes.log"
  done
}

caller() {
  local c=$1 n=0 node before started code
  while [ "$(date +%s)" -lt "$end" ]; do
    n=$((n + 1))
    before=$(cat "$WORK/killed")
    node=$(( RANDOM % NODES ))
    [ "$node" = "$before" ] && continue
    started=$(now_ms)
    code=$(curl -s -o /dev/null -w '%{http_code}' -m 30 "$(api "$node")/fn/hello/" || true)
    [ "$code" = 200 ] && result=ok || result="fail:$code"
    echo "c$c-$n $node $result $started $(now_ms)" >>"$WORK/calls.log"
    sleep 0.05
  done
}

for w in $(seq 1 "$WRITERS"); do writer "$w" & done
for c in $(seq 1 "$CALLERS"); do caller "$c" & done

kills=0
while [ "$(date +%s)" -lt "$end" ]; do
  sleep 5
  [ "$(date +%s)" -ge "$end" ] && break
  victim=$(( RANDOM % NODES ))
  echo "$victim" >"$WORK/killed"
  killed_at=$(now_ms)
  "$TB" kill "$victim" >/dev/null
  kills=$((kills + 1))
  sleep 5
  "$TB" restart "$victim" >/dev/null
  echo none >"$WORK/killed"
  echo "$victim $killed_at $(now_ms)" >>"$WORK/kills.log"
done
wait
touch "$WORK/kills.log"
# A write was sent to the killed node if its node was down (killed, not yet answering
# again) at any moment while it ran; those are left out of the success rate.
touch "$WORK/writes.log" "$WORK/calls.log"
for log in writes calls; do
  awk 'NR == FNR { k[NR] = $0; nk = NR; next }
       { victim = "no"
         for (i = 1; i <= nk; i++) { split(k[i], f, " ")
           if (f[1] == $2 && $4 <= f[3] && $5 >= f[2]) victim = "yes" }
         print $1, $2, $3, victim }' "$WORK/kills.log" "$WORK/$log.log" >"$WORK/classified.log"
  mv "$WORK/classified.log" "$WORK/$log.log"
done
# Keep the write log (name, node, result, whether the node was killed meanwhile).
cp "$WORK/writes.log" "${CHAOS_LOG:-/tmp/xnode-chaos-writes.log}"

# Every node up and seeing every other.
for i in $(seq 0 $((NODES - 1))); do
  "$TB" status | grep -q "node $i  DOWN" && "$TB" restart "$i" >/dev/null
done
for _ in $(seq 1 300); do
  converged=1
  for i in $(seq 0 $((NODES - 1))); do
    alive=$(curl -sf --max-time 2 "$(api "$i")/v1/nodes" | jq '[.[]|select(.state=="alive")]|length' 2>/dev/null || echo 0)
    [ "$alive" = "$NODES" ] || converged=0
  done
  [ "$converged" = 1 ] && break
  sleep 0.2
done

# Read every acknowledged write back through every node, four reads at a time.
readback() {
  local name=$1 i out
  for i in $(seq 0 $((NODES - 1))); do
    out="$WORK/read-$name-$i.bin"
    if ! timeout 30 "$BIN" get "chaos/$name" "$out" --api "$(api "$i")" >/dev/null 2>&1; then
      echo "LOST chaos/$name through node $i"
    elif ! cmp -s "$out" "$WORK/$name.bin"; then
      echo "CORRUPT chaos/$name through node $i"
    fi
    rm -f "$out"
  done
}
export -f readback api
export BIN WORK NODES TB
awk '$3 == "ok" { print $1 }' "$WORK/writes.log" | xargs -r -P 4 -I{} bash -c 'readback {}' >"$WORK/readback.log"
acked=$(awk '$3 == "ok"' "$WORK/writes.log" | wc -l)
lost=$(grep -c '^LOST' "$WORK/readback.log" || true)
corrupt=$(grep -c '^CORRUPT' "$WORK/readback.log" || true)
head -20 "$WORK/readback.log" >&2
counted=$(awk '$4 == "no"' "$WORK/writes.log" | wc -l)
counted_ok=$(awk '$4 == "no" && $3 == "ok"' "$WORK/writes.log" | wc -l)
calls=$(awk '$4 == "no"' "$WORK/calls.log" | wc -l)
calls_ok=$(awk '$4 == "no" && $3 == "ok"' "$WORK/calls.log" | wc -l)

rate=$(awk -v ok="$counted_ok" -v n="$counted" 'BEGIN { if (n == 0) print 0; else printf "%.3f", 100 * ok / n }')
echo "chaos: ${DURATION}s, $NODES nodes in $REGIONS regions, $kills kill -9s"
echo "writes acknowledged: $acked; lost reads: $lost; corrupt reads: $corrupt (each checked through all $NODES nodes)"
call_rate=$(awk -v ok="$calls_ok" -v n="$calls" 'BEGIN { if (n == 0) print 0; else printf "%.3f", 100 * ok / n }')
echo "success of writes not sent to the killed node: $counted_ok / $counted = $rate %"
echo "success of function calls not sent to the killed node: $calls_ok / $calls = $call_rate %"
awk '$4 == "no" && $3 != "ok" { print "failed call:", $0 }' "$WORK/calls.log" | head -5 >&2
awk '$4 == "no" && $3 != "ok" { print $1 }' "$WORK/writes.log" | head -5 | while read -r name; do
  echo "failed write $name: $(cat "$WORK/$name.err" 2>/dev/null)" >&2
done
if [ "$counted" -gt 0 ] && [ "$(awk -v r="$rate" 'BEGIN { print (r >= 99.9) }')" = 1 ] \
   && { [ "$CALLERS" = 0 ] || { [ "$calls" -gt 0 ] && [ "$(awk -v r="$call_rate" 'BEGIN { print (r >= 99.9) }')" = 1 ]; }; } \
   && [ "$lost" = 0 ] && [ "$corrupt" = 0 ]; then
  echo "PASS"
else
  grep -h . "$WORK"/*.err 2>/dev/null | sort | uniq -c | sort -rn | head -5 >&2 || true
  echo "FAIL"
  touch "$WORK/failed"
  exit 1
fi
