#!/usr/bin/env bash
# The storage acceptance drill, end to end on a 5-node release devnet:
#   put a file (1 GiB by default) -> kill -9 one node -> read it back through every
#   survivor -> kill -9 a second node 5 s later -> wait for the repair grace (10 s on the
#   devnet) and for repair -> read it back through every survivor again.
# Prints timings, each node's peak RSS and the storage health. Usage:
#   ./scripts/drill-storage.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib="${1:-1024}"
cargo build --release -p xnode >/dev/null
x="$PWD/target/release/xnode"
work="$(mktemp -d)"
trap 'echo quit >&3 2>/dev/null || true; sleep 2; kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkfifo "$work/ctl"
"$x" devnet --nodes 5 --api-port 0 --p2p-port 0 --dir "$work/devnet" <"$work/ctl" >"$work/devnet.log" 2>&1 &
exec 3>"$work/ctl"
for _ in $(seq 1 100); do grep -q "All 5 nodes are up" "$work/devnet.log" 2>/dev/null && break; sleep 0.2; done
mapfile -t apis < <(python3 -c 'import json,sys; print("\n".join(n["api_url"] for n in json.load(open(sys.argv[1]))["nodes"]))' "$work/devnet/devnet.json")
export XNODE_TENANT_KEY="$work/devnet/tenant.key"
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f} s')" "$1" "$(now)"; }
rss() { for p in $(pgrep -f "$x start"); do awk '/VmHWM/ {printf "%d MiB ", $2/1024}' /proc/$p/status; done; echo; }
health() { curl -s "$1/v1/storage/health" | python3 -c 'import sys,json; d=json.load(sys.stdin); print(d["under_replicated_chunks"], d["under_replicated_objects"], d["storage_nodes"])'; }

head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$work/data.bin"
# Baseline, same run, same disk: a plain durable copy of the file (one copy, no network,
# no encryption), to compare the 3 encrypted, verified replicas of a put against.
t=$(now); cp "$work/data.bin" "$work/baseline.bin"; sync "$work/baseline.bin"; baseline=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t" "$(now)"); rm -f "$work/baseline.bin"
echo "baseline: cp + sync of ${size_mib} MiB on the same disk: $(printf '%.1f' "$baseline") s"
"$x" bucket create drill --api "${apis[0]}" >/dev/null
t=$(now); "$x" put "$work/data.bin" drill/data.bin --api "${apis[0]}" --json >/dev/null
put=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t" "$(now)")
echo "put ${size_mib} MiB through node 1 (3 replicas): $(printf '%.1f' "$put") s = $(python3 -c "print(f'{$size_mib/$put:.0f}')") MiB/s, $(python3 -c "print(f'{$put/$baseline:.1f}')")x the baseline"
t=$(now); "$x" get drill/data.bin "$work/out.bin" --api "${apis[4]}" --json >/dev/null; get=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t" "$(now)"); rm -f "$work/out.bin"
echo "get ${size_mib} MiB through node 5: $(printf '%.1f' "$get") s = $(python3 -c "print(f'{$size_mib/$get:.0f}')") MiB/s, $(python3 -c "print(f'{$get/$baseline:.1f}')")x the baseline"
echo "peak RSS per node after put: $(rss)"

read_all() {
  for i in "$@"; do
    t=$(now)
    if "$x" get drill/data.bin "$work/out.bin" --api "${apis[$i]}" --json >/dev/null && cmp -s "$work/data.bin" "$work/out.bin"; then
      echo "  node $((i + 1)): identical ($(since "$t"))"
    else
      echo "  node $((i + 1)): FAILED"; exit 1
    fi
    rm -f "$work/out.bin"
  done
}

echo "kill 2" >&3; killed=$(now)
# Node 3 dies 5 s after node 2, so it is read first; the other survivors are read right
# after, while node 3 is already down and repair has not started (the grace is 10 s).
echo "kill -9 node 2; reads through every survivor, node 3 first:"
read_all 2
sleep "$(python3 -c "import sys; print(max(0.0, 5 - (float(sys.argv[2]) - float(sys.argv[1]))))" "$killed" "$(now)")"
echo "kill 3" >&3; second=$(now)
echo "kill -9 node 3, $(since "$killed") after node 2; reads through the other survivors:"
read_all 0 3 4
echo "waiting for repair on the survivors ..."
while :; do
  sleep 1
  ok=1
  for i in 0 3 4; do [ "$(health "${apis[$i]}")" = "0 0 3" ] || ok=0; done
  [ "$ok" = 1 ] && break
  if python3 -c "import sys; sys.exit(0 if float(sys.argv[2]) - float(sys.argv[1]) > 300 else 1)" "$second" "$(now)"; then
    echo "repair did not finish within 300 s"; exit 1
  fi
done
echo "every chunk and metadata entry on 3 live nodes $(since "$second") after the second kill (repair grace 10 s)"
echo "reads through every survivor after repair:"
read_all 0 3 4
echo "peak RSS per node at the end: $(rss)"
