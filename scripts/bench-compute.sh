#!/usr/bin/env bash
# Compute benchmark (issue: compute), on release devnets of real `xnode` processes:
#   1. throughput and p50/p99 of `GET /fn/hello/` on a 1-node devnet, against
#      `wasmtime serve` running the same component (guests/dist/hello.wasm), same load
#      tool and settings, in the same run, rounds interleaved;
#   2. p99 of hello alone, then while the hostile `spin` guest is called in parallel
#      (same node, same run); acceptance: within 2x;
#   3. the latency the gateway adds when it forwards to a replica on another node
#      (3-node devnet, hello with 1 replica: through the replica's node and through a node
#      without a replica; `x-xnode-served-by` is checked).
# Needs wrk and wasmtime-cli 48 (`WASMTIME=/path/to/wasmtime`, else the one on PATH). Without
# the CLI, `WASI_HTTP_SERVE=target/release/examples/wasi_http_serve` (built with
# `cargo build --release -p xnode-compute --example wasi_http_serve`) serves the same guest
# the way `wasmtime serve` does, with the wasmtime crate the workspace links.
# Knobs: XNODE_BENCH_SECS (15), XNODE_BENCH_ROUNDS (2), XNODE_BENCH_CONNS (32),
# XNODE_BENCH_SPIN_CLIENTS (3), XNODE_BENCH_PARTS (123: which parts to run). Usage: ./scripts/bench-compute.sh
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${XNODE_BENCH_SECS:-15}"
rounds="${XNODE_BENCH_ROUNDS:-2}"
conns="${XNODE_BENCH_CONNS:-32}"
spin_clients="${XNODE_BENCH_SPIN_CLIENTS:-3}"
parts="${XNODE_BENCH_PARTS:-123}"
wasmtime="${WASMTIME:-$(command -v wasmtime || true)}"
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }
serve_harness="${WASI_HTTP_SERVE:-}"
[[ "$parts" != *1* ]] || [ -x "$wasmtime" ] || [ -x "$serve_harness" ] \
  || { echo "wasmtime-cli is needed: set WASMTIME or put it on PATH (or set WASI_HTTP_SERVE)"; exit 1; }
# XNODE_BIN runs another build (skips cargo build).
if [ -z "${XNODE_BIN:-}" ]; then cargo build --release -p xnode >/dev/null; fi
x="${XNODE_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/xnode}"
work="$(mktemp -d)"
net_pid=""
wt_pid=""
stop_net() {
  if [ -n "$net_pid" ]; then
    echo quit >&3 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$net_pid" 2>/dev/null || break; sleep 0.2; done
    kill "$net_pid" 2>/dev/null || true
    exec 3>&-
    net_pid=""
  fi
}
cleanup() {
  stop_net
  [ -n "$wt_pid" ] && kill "$wt_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# start_net N: a fresh N-node devnet; fills apis[] (node i+1 at apis[i]) and ids[].
start_net() {
  local n="$1" d="$work/devnet-$1"
  rm -f "$work/ctl"; mkfifo "$work/ctl"
  "$x" devnet --nodes "$n" --api-port 0 --p2p-port 0 --dir "$d" <"$work/ctl" >"$work/devnet-$n.log" 2>&1 &
  net_pid=$!
  exec 3>"$work/ctl"
  for _ in $(seq 1 150); do grep -q "All $n nodes are up" "$work/devnet-$n.log" 2>/dev/null && break; sleep 0.2; done
  grep -q "All $n nodes are up" "$work/devnet-$n.log" || { echo "devnet of $n did not come up"; cat "$work/devnet-$n.log"; exit 1; }
  mapfile -t apis < <(python3 -c 'import json,sys; print("\n".join(n["api_url"] for n in json.load(open(sys.argv[1]))["nodes"]))' "$d/devnet.json")
  ids=()
  for a in "${apis[@]}"; do ids+=("$(curl -s "$a/v1/node" | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])')"); done
  export XNODE_TENANT_KEY="$d/tenant.key"
  devnet_dir="$d"
}

# deploy MANIFEST REPLICAS API: deploys and waits until the function answers through API.
deploy() {
  local manifest="$1" replicas="$2" api="$3" name
  name="$(python3 -c 'import sys,tomllib; print(tomllib.load(open(sys.argv[1],"rb"))["name"])' "$manifest")"
  "$x" deploy "$manifest" --replicas "$replicas" --api "$api" --tenant-key "$XNODE_TENANT_KEY" >"$work/deploy-$name.log" 2>&1 \
    || { echo "deploy $manifest failed:"; cat "$work/deploy-$name.log"; exit 1; }
  # Wait for as many running replicas as asked.
  for _ in $(seq 1 150); do
    [ "$(running_replicas "$api" "$name" | wc -l)" -ge "$replicas" ] && return 0
    sleep 0.2
  done
  echo "$name: $replicas running replicas not reported within 30 s:"; curl -s "$api/v1/deployments/$name"; echo; exit 1
}

# running_replicas API NAME: the node ids of the running replicas, one per line.
running_replicas() {
  curl -s "$1/v1/deployments/$2" | python3 -c '
import sys, json
try: d = json.load(sys.stdin)
except Exception: sys.exit(0)
for r in d.get("replicas", []):
    if r.get("state") == "running": print(r["node"])'
}

# bench LABEL URL WRK_ARGS...: runs wrk, prints a line, appends "label rps p50 p99 non2xx errors" to results.
bench() {
  local label="$1" url="$2"; shift 2
  wrk "$@" --latency "$url" >"$work/wrk.out" 2>&1 || { echo "wrk failed:"; cat "$work/wrk.out"; exit 1; }
  python3 - "$label" "$work/wrk.out" >>"$work/results" <<'EOF'
import re, sys
label, path = sys.argv[1], sys.argv[2]
text = open(path).read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    n, u = float(m.group(1)), m.group(2)
    return n * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[u]
pct = {p: ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M)}
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errs = re.search(r"Socket errors: (.*)", text)
print(label, f"{rps:.0f}", f"{pct['50']:.3f}", f"{pct['99']:.3f}",
      non2xx.group(1) if non2xx else "0", (errs.group(1).replace(" ", "") if errs else "none"))
EOF
  tail -1 "$work/results" | awk '{printf "  %-34s %8s req/s  p50 %8s ms  p99 %8s ms  non-2xx %s  socket errors %s\n", $1, $2, $3, $4, $5, $6}'
}

# summary LABEL: the median over rounds of rps, p50, p99 for LABEL.
median_of() {
  python3 - "$1" "$work/results" <<'EOF'
import sys, statistics
label = sys.argv[1]
rows = [l.split() for l in open(sys.argv[2]) if l.split()[0] == label]
print(*(f"{statistics.median(float(r[i]) for r in rows):.3f}" for i in (1, 2, 3)))
EOF
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "xnode: $("$x" --version); wasmtime: $("$wasmtime" --version 2>/dev/null || echo "none (harness: ${serve_harness:-none})"); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
: >"$work/results"

if [[ "$parts" == *1* ]]; then
echo
echo "== 1. hello on one node: xnode /fn/hello/ vs wasmtime serve (wrk -t2 -c$conns -d${secs}s, $rounds rounds interleaved)"
start_net 1
deploy guests/hello/app.toml 1 "${apis[0]}"
curl -s -D - "${apis[0]}/fn/hello/" | tr -d '\r' | grep -iE '^(HTTP|x-xnode-served-by)|hello|path'
wt_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
if [ -x "$wasmtime" ]; then
  "$wasmtime" serve -Scli --addr "127.0.0.1:$wt_port" guests/dist/hello.wasm >"$work/wasmtime.log" 2>&1 &
else
  "$serve_harness" "127.0.0.1:$wt_port" guests/dist/hello.wasm >"$work/wasmtime.log" 2>&1 &
fi
wt_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$wt_port/" >/dev/null && break; sleep 0.1; done
curl -s -D - "http://127.0.0.1:$wt_port/" | tr -d '\r' | grep -iE '^HTTP|hello|path'
# Warm-up (compilation caches, connection pools), not counted.
wrk -t2 -c"$conns" -d3s "${apis[0]}/fn/hello/" >/dev/null
wrk -t2 -c"$conns" -d3s "http://127.0.0.1:$wt_port/" >/dev/null
for r in $(seq 1 "$rounds"); do
  bench xnode "${apis[0]}/fn/hello/" -t2 -c"$conns" -d"${secs}s"
  bench wasmtime "http://127.0.0.1:$wt_port/" -t2 -c"$conns" -d"${secs}s"
done
kill "$wt_pid" 2>/dev/null || true; wait "$wt_pid" 2>/dev/null || true; wt_pid=""
read -r x_rps x_p50 x_p99 < <(median_of xnode)
read -r w_rps w_p50 w_p99 < <(median_of wasmtime)
python3 - "$x_rps" "$x_p50" "$x_p99" "$w_rps" "$w_p50" "$w_p99" <<'EOF'
import sys
xr, x50, x99, wr, w50, w99 = map(float, sys.argv[1:])
print(f"  median  xnode {xr:.0f} req/s p50 {x50:.2f} ms p99 {x99:.2f} ms | wasmtime serve {wr:.0f} req/s p50 {w50:.2f} ms p99 {w99:.2f} ms")
print(f"  ratio xnode/wasmtime: throughput {xr/wr:.2f}x, p50 {x50/w50:.2f}x, p99 {x99/w99:.2f}x")
EOF
fi

if [[ "$parts" == *2* ]]; then
echo
echo "== 2. hello p99 alone vs while the hostile spin guest runs ($spin_clients clients calling spin), same node (wrk -t1 -c4 -d${secs}s, $rounds rounds interleaved)"
[ -n "$net_pid" ] || { start_net 1; deploy guests/hello/app.toml 1 "${apis[0]}"; }
deploy guests/spin/app.toml 1 "${apis[0]}"
echo "  one spin call: $(curl -s -o "$work/spin.body" -w '%{http_code} in %{time_total} s' "${apis[0]}/fn/spin/"): $(head -c 200 "$work/spin.body")"
# Rounds interleaved (alone, then with spin), medians compared: the machine is shared and
# noisy, one round each proves little.
for r in $(seq 1 "$rounds"); do
  bench hello-alone "${apis[0]}/fn/hello/" -t1 -c4 -d"${secs}s"
  wrk -t1 -c"$spin_clients" -d"$((secs + 4))s" --timeout 10s "${apis[0]}/fn/spin/" >"$work/wrk-spin.out" 2>&1 &
  spin_pid=$!
  sleep 2
  bench hello-with-spin "${apis[0]}/fn/hello/" -t1 -c4 -d"${secs}s"
  wait "$spin_pid" || true
  echo "  spin load: $(grep -E 'Requests/sec' "$work/wrk-spin.out" | tr -s ' '), $(grep -E 'requests in' "$work/wrk-spin.out" | tr -s ' '), non-2xx: $(grep -oE 'Non-2xx or 3xx responses: [0-9]+' "$work/wrk-spin.out" | grep -oE '[0-9]+$' || echo 0)"
done
bench hello-after-spin "${apis[0]}/fn/hello/" -t1 -c4 -d"${secs}s"
read -r _ a50 a99 < <(median_of hello-alone)
read -r _ s50 s99 < <(median_of hello-with-spin)
python3 -c "import sys; a,s=float(sys.argv[1]),float(sys.argv[2]); print(f'  median hello p99 alone {a:.2f} ms, with spin {s:.2f} ms: {s/a:.2f}x (acceptance: at most 2x)')" "$a99" "$s99"
echo "  node rss: $(awk '/VmHWM/ {printf "peak %d MiB", $2/1024}' /proc/"$(pgrep -f "$x start --data-dir $devnet_dir" | head -1)"/status)"
stop_net
fi

if [[ "$parts" == *3* ]]; then
echo
echo "== 3. forwarding: 3-node devnet, hello with 1 replica, through the replica's node vs another node"
start_net 3
deploy guests/hello/app.toml 1 "${apis[0]}"
replica="$(running_replicas "${apis[0]}" hello | head -1)"
local_i=-1; remote_i=-1
for i in "${!ids[@]}"; do
  if [ "${ids[$i]}" = "$replica" ]; then local_i=$i; elif [ "$remote_i" = -1 ]; then remote_i=$i; fi
done
[ "$local_i" != -1 ] || { echo "replica node $replica is not one of ${ids[*]}"; exit 1; }
for i in "$local_i" "$remote_i"; do
  served="$(curl -s -D - -o /dev/null "${apis[$i]}/fn/hello/" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-xnode-served-by" {print $2}')"
  echo "  through node $((i + 1)): served by ${served:-?} ($( [ "$served" = "$replica" ] && echo replica || echo 'NOT the replica'))"
done
wrk -t1 -c1 -d3s "${apis[$remote_i]}/fn/hello/" >/dev/null
wrk -t1 -c1 -d3s "${apis[$local_i]}/fn/hello/" >/dev/null
for r in $(seq 1 "$rounds"); do
  bench local-c1 "${apis[$local_i]}/fn/hello/" -t1 -c1 -d"${secs}s"
  bench forwarded-c1 "${apis[$remote_i]}/fn/hello/" -t1 -c1 -d"${secs}s"
done
bench local-c$conns "${apis[$local_i]}/fn/hello/" -t2 -c"$conns" -d"${secs}s"
bench forwarded-c$conns "${apis[$remote_i]}/fn/hello/" -t2 -c"$conns" -d"${secs}s"
read -r l_rps l50 l99 < <(median_of local-c1)
read -r f_rps f50 f99 < <(median_of forwarded-c1)
python3 - "$l50" "$l99" "$f50" "$f99" <<'EOF'
import sys
l50, l99, f50, f99 = map(float, sys.argv[1:])
print(f"  one client: local p50 {l50:.3f} ms p99 {l99:.3f} ms, forwarded p50 {f50:.3f} ms p99 {f99:.3f} ms: forwarding adds {f50-l50:.3f} ms at p50, {f99-l99:.3f} ms at p99")
EOF
stop_net
fi
echo
echo "raw results (label req/s p50_ms p99_ms non2xx socket_errors):"
cat "$work/results"
