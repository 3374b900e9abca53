#!/usr/bin/env bash
# What TLS costs on the S3 port (issue 13, item 5), in one run: a 3-node release devnet whose
# nodes have `[http.tls]` with `allow_plain_http = true`, so node 1's S3 port answers both
# HTTPS and plain HTTP; the same boto3 client (scripts/bench_garage.py) then runs 4 KiB and
# 64 MiB PUT and GET over HTTPS and over plain HTTP to the same port, in interleaved rounds,
# and prints a Markdown table of medians with the ratio HTTPS / plain.
#   ./scripts/bench-tls.sh           (BENCH_ROUNDS=3 BENCH_OPS=200 BENCH_CLIENTS=16 BENCH_BIG_MIB=64)
# XNODE_BIN points at an xnode release binary to use instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh
work="$(mktemp -d)"
trap 'echo quit >&3 2>/dev/null || true; sleep 2; kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# A self-signed certificate for 127.0.0.1 (ECDSA P-256, as most ACME certificates are now);
# the client trusts exactly it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat >"$work/tls.toml" <<TOML
[http.tls]
certificate_chain = "$work/cert.pem"
private_key = "$work/key.pem"
allow_plain_http = true
TOML

# The devnet's nodes read the file through XNODE_CONFIG (flags set everything else).
mkfifo "$work/ctl"
XNODE_CONFIG="$work/tls.toml" "$x" devnet --nodes 3 --api-port 0 --p2p-port 0 --dir "$work/devnet" \
  <"$work/ctl" >"$work/devnet.log" 2>&1 &
exec 3>"$work/ctl"
for _ in $(seq 1 150); do grep -q "S3, with an access key" "$work/devnet.log" 2>/dev/null && break; sleep 0.2; done
grep -q "S3, with an access key" "$work/devnet.log" || { cat "$work/devnet.log"; exit 1; }
"$venv/bin/python" - "$work/devnet" "$work/cert.pem" "$work" <<'PY'
import json, os, sys
devnet, cert, work = sys.argv[1:]
nodes = json.load(open(os.path.join(devnet, "devnet.json")))["nodes"]
key = json.load(open(os.path.join(devnet, "s3-key.json")))
plain = nodes[0]["s3_url"]
assert plain.startswith("http://"), plain
common = {"key": key["access_key_id"], "secret": key["secret_access_key"], "region": "us-east-1"}
json.dump(dict(common, name="HTTPS", title="HTTPS (TLS 1.3)", endpoint="https://" + plain[len("http://"):],
               verify=cert), open(os.path.join(work, "https.json"), "w"))
json.dump(dict(common, name="plain", title="plain HTTP (same port)", endpoint=plain),
          open(os.path.join(work, "plain.json"), "w"))
PY
# Check that TLS is really on: the handshake succeeds with the certificate.
"$venv/bin/python" - "$work/https.json" <<'PY'
import json, socket, ssl, sys, urllib.parse
system = json.load(open(sys.argv[1]))
url = urllib.parse.urlparse(system["endpoint"])
ctx = ssl.create_default_context(cafile=system["verify"])
with socket.create_connection((url.hostname, url.port)) as raw, ctx.wrap_socket(raw, server_hostname=url.hostname) as tls:
    print(f"TLS on node 1's S3 port: {tls.version()}, {tls.cipher()[0]}", file=sys.stderr)
PY
echo "3-node release devnet with [http.tls] up; $(nproc) cores; $(date -u +%Y-%m-%d); load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$venv/bin/python" scripts/bench_garage.py "$work/https.json" "$work/plain.json"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
