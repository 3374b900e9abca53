#!/usr/bin/env bash
# Observability acceptance drill (issue: observability), on a 5-node release devnet of
# real `xnode` processes:
#   1. deploys `hello` (2 replicas) and `spin` (fuel-limited: every call fails, 502);
#   2. a client sends N requests (10,000 by default) spread round-robin over the 5 nodes,
#      5% of them to `spin`, from 8 threads with keep-alive connections, and counts
#      answers, failures and its own latency;
#   3. polls `GET /v1/observe/network` on every node until each reports the client's
#      request and error totals (scope `functions`, 1 min window) within 1%, and reports
#      how long that took (target 5 s) and every node's p99 against the client's;
#   4. kills one node (`kill -9`) and checks that every survivor shows it dead, while
#      the 5 min window still counts its requests.
# Usage: ./scripts/drill-observe.sh [REQUESTS]   (XNODE_BIN=path runs another build)
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-10000}"
if [ -z "${XNODE_BIN:-}" ]; then cargo build --release -p xnode >/dev/null; fi
x="${XNODE_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/xnode}"
work="$(mktemp -d)"
net_pid=""
cleanup() {
  if [ -n "$net_pid" ]; then
    echo quit >&3 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$net_pid" 2>/dev/null || break; sleep 0.2; done
    kill "$net_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

mkfifo "$work/ctl"
"$x" devnet --nodes 5 --api-port 0 --p2p-port 0 --dir "$work/devnet" <"$work/ctl" >"$work/devnet.log" 2>&1 &
net_pid=$!
exec 3>"$work/ctl"
for _ in $(seq 1 150); do grep -q "All 5 nodes are up" "$work/devnet.log" 2>/dev/null && break; sleep 0.2; done
grep -q "All 5 nodes are up" "$work/devnet.log" || { echo "devnet did not come up"; cat "$work/devnet.log"; exit 1; }
export XNODE_TENANT_KEY="$work/devnet/tenant.key"
api1="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nodes"][0]["api_url"])' "$work/devnet/devnet.json")"
"$x" deploy guests/hello/app.toml --replicas 2 --api "$api1" >/dev/null
"$x" deploy guests/spin/app.toml --replicas 2 --api "$api1" >/dev/null
echo "5-node release devnet up; hello and spin deployed; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$work/devnet/devnet.json" "$requests" <<'EOF'
import http.client, json, sys, threading, time, urllib.parse, urllib.request

devnet = json.load(open(sys.argv[1]))
total = int(sys.argv[2])
apis = [n["api_url"] for n in devnet["nodes"]]
pids = [n.get("pid") for n in devnet["nodes"]]

def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)

def functions(report, window):
    return report["windows"].get(window, {}).get("functions")

# Wait until every node can serve both functions.
deadline = time.time() + 60
for api in apis:
    for fn, want in (("hello", 200), ("spin", 502)):
        while True:
            try:
                u = urllib.parse.urlsplit(api)
                c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
                c.request("GET", f"/fn/{fn}/")
                r = c.getresponse(); r.read(); c.close()
                if r.status == want:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit(f"{fn} never answered {want} through {api}")
            time.sleep(0.2)
# The warm-up calls above are counted by the nodes too: measure from a baseline.
base = [functions(get_json(f"{a}/v1/observe/network"), "1m") or {"requests": 0, "server_errors": 0} for a in apis]
time.sleep(2.5)  # one summary interval, so the baseline has spread
base = [functions(get_json(f"{a}/v1/observe/network"), "1m") or {"requests": 0, "server_errors": 0} for a in apis]
base_req = max(b["requests"] for b in base)
base_err = max(b["server_errors"] for b in base)

lock = threading.Lock()
latencies, statuses = [], {}
counter = iter(range(total))
def worker():
    conns = {}
    while True:
        with lock:
            i = next(counter, None)
        if i is None:
            break
        api = apis[i % len(apis)]
        fn = "spin" if i % 20 == 7 else "hello"   # 5%
        u = urllib.parse.urlsplit(api)
        c = conns.get(api) or http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conns[api] = c
        started = time.perf_counter()
        try:
            c.request("GET", f"/fn/{fn}/")
            r = c.getresponse(); r.read()
            status = r.status
        except OSError:
            c.close(); conns.pop(api, None); status = "error"
        took = (time.perf_counter() - started) * 1000
        with lock:
            latencies.append(took)
            statuses[status] = statuses.get(status, 0) + 1
threads = [threading.Thread(target=worker) for _ in range(8)]
started = time.time()
for t in threads: t.start()
for t in threads: t.join()
sent_at = time.time()
lat = sorted(latencies)
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
sent, failed = len(lat), sum(v for k, v in statuses.items() if k != 200)
print(f"client: {sent} requests in {sent_at - started:.1f} s ({sent / (sent_at - started):.0f}/s), "
      f"statuses {dict(sorted(statuses.items(), key=str))}; latency p50 {p(0.5):.2f} ms p99 {p(0.99):.2f} ms")

# Every node's network-wide view, until all agree with the client within 1%.
seen_ok = {}
views = {}
while time.time() - sent_at < 30 and len(seen_ok) < len(apis):
    for a in apis:
        if a in seen_ok:
            continue
        f = functions(get_json(f"{a}/v1/observe/network"), "1m") or {}
        req = f.get("requests", 0) - base_req
        err = f.get("server_errors", 0) - base_err
        views[a] = (req, err, f.get("latency_ms", {}))
        if abs(req - sent) <= 0.01 * sent and abs(err - failed) <= max(1, 0.01 * failed):
            seen_ok[a] = time.time() - sent_at
    time.sleep(0.1)
print("node  agrees after  requests  server errors  p50 ms  p99 ms  p99 / client p99")
for i, a in enumerate(apis):
    req, err, l = views[a]
    agreed = f"{seen_ok[a]:.2f} s" if a in seen_ok else "NOT within 30 s"
    print(f"{i + 1:>4}  {agreed:>12}  {req:>8}  {err:>13}  {l.get('p50', 0):>6.2f}  {l.get('p99', 0):>6.2f}  {l.get('p99', 0) / p(0.99):.2f}")
worst = max(seen_ok.values()) if len(seen_ok) == len(apis) else None
print(f"every node within 1% of the client after {worst:.2f} s (target 5 s)" if worst is not None
      else "some node never agreed with the client")

# Kill one node; the survivors show it dead and keep its requests in the 5 min window.
victim = len(apis) - 1
import os, signal
five_before = functions(get_json(f"{apis[0]}/v1/observe/network"), "5m")["requests"]
os.kill(pids[victim], signal.SIGKILL)
killed_at = time.time()
dead_seen = {}
while time.time() - killed_at < 30 and len(dead_seen) < len(apis) - 1:
    for a in apis[:victim]:
        if a in dead_seen:
            continue
        nodes = get_json(f"{a}/v1/nodes")
        nodes = nodes.get("nodes", nodes) if isinstance(nodes, dict) else nodes
        live_ids = {n["id"] for n in get_json(f"{a}/v1/observe/network")["nodes"]}
        states = {n["api_url"]: n["state"] for n in nodes if n.get("api_url")}
        if states.get(apis[victim]) == "dead" and len(live_ids) == len(apis) - 1:
            dead_seen[a] = time.time() - killed_at
    time.sleep(0.1)
five_after = functions(get_json(f"{apis[0]}/v1/observe/network"), "5m")["requests"]
print(f"killed node {victim + 1}: shown dead (and out of the live view) on "
      f"{len(dead_seen)}/{len(apis) - 1} survivors, the last after {max(dead_seen.values(), default=float('nan')):.2f} s; "
      f"5 min window requests {five_before} before, {five_after} after (its requests still counted: {five_after >= five_before})")
EOF
