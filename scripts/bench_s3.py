"""Benchmark client for scripts/bench-s3.sh: the same Python process and HTTP library
(urllib3, one connection) measures the S3 port (boto3, SigV4) and the native /v1 API
(ed25519-signed requests) with the same sizes, and prints a Markdown table of ratios."""

import hashlib
import json
import os
import sys
import time
import uuid

import blake3
import boto3
import urllib3
from botocore.config import Config
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

devnet = sys.argv[1]
ops = int(os.environ.get("BENCH_OPS", "300"))
big_mib = int(os.environ.get("BENCH_BIG_MIB", "64"))
rounds = int(os.environ.get("BENCH_BIG_ROUNDS", "3"))
nodes = json.load(open(os.path.join(devnet, "devnet.json")))["nodes"]
key = json.load(open(os.path.join(devnet, "s3-key.json")))
seed = open(os.path.join(devnet, "tenant.key"), "rb").read()[2:34]
signer = Ed25519PrivateKey.from_private_bytes(seed)
tenant = signer.public_key().public_bytes_raw().hex()
data_key = blake3.blake3(seed, derive_key_context="xnode 2026-11 tenant data key v1").hexdigest()
api, s3_url = nodes[0]["api_url"], nodes[0]["s3_url"]

s3 = boto3.client(
    "s3",
    endpoint_url=s3_url,
    aws_access_key_id=key["access_key_id"],
    aws_secret_access_key=key["secret_access_key"],
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, max_pool_connections=1,
                  request_checksum_calculation="when_required", response_checksum_validation="when_required"),
)
http = urllib3.PoolManager(maxsize=1)


# Signed requests name the node they go to; it says its id publicly.
node_id = json.loads(http.request("GET", api + "/v1/node").data)["id"]


def signed(method, path, extra=None, body=b""):
    # Request signing v2 (docs/http-api.md): binds the node, the body and the data key.
    ts = str(int(time.time() * 1000))
    nonce = uuid.uuid4().hex
    content = blake3.blake3(body).hexdigest()
    key_hash = blake3.blake3(data_key.encode()).hexdigest()
    text = (f"XNODE-REQUEST-V2\n{method}\n{path}\n\n{ts}\n{nonce}\n{tenant}\n"
            f"{node_id}\n{content}\n{key_hash}").encode()
    headers = {
        "x-xnode-tenant": tenant,
        "x-xnode-timestamp": ts,
        "x-xnode-nonce": nonce,
        "x-xnode-node": node_id,
        "x-xnode-content-blake3": content,
        "x-xnode-signature": signer.sign(text).hex(),
        "x-xnode-data-key": data_key,
    }
    headers.update(extra or {})
    return headers


def native_put(bucket, k, body):
    path = f"/v1/buckets/{bucket}/objects/{k}"
    r = http.request("PUT", api + path, body=body, headers=signed("PUT", path, {"content-type": "application/octet-stream"}, body))
    assert r.status == 200, r.data


def native_get(bucket, k):
    path = f"/v1/buckets/{bucket}/objects/{k}"
    r = http.request("GET", api + path, headers=signed("GET", path), preload_content=True)
    assert r.status == 200, r.status
    return r.data


def s3_put(bucket, k, body):
    s3.put_object(Bucket=bucket, Key=k, Body=body)


def s3_get(bucket, k):
    return s3.get_object(Bucket=bucket, Key=k)["Body"].read()


bucket = "bench-" + uuid.uuid4().hex[:8]
s3.create_bucket(Bucket=bucket)
small = os.urandom(4096)
big = os.urandom(big_mib * 1024 * 1024)
results = {}
for name, put, get in [("native /v1", native_put, native_get), ("S3", s3_put, s3_get)]:
    tag = "n" if name.startswith("native") else "s"
    put(bucket, f"{tag}-warm", small)
    get(bucket, f"{tag}-warm")
    t = time.perf_counter()
    for i in range(ops):
        put(bucket, f"{tag}-small-{i}", small)
    put_ops = ops / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(ops):
        assert get(bucket, f"{tag}-small-{i}") == small
    get_ops = ops / (time.perf_counter() - t)
    best_put = best_get = 0.0
    for r in range(rounds):
        t = time.perf_counter()
        put(bucket, f"{tag}-big-{r}", big)
        best_put = max(best_put, big_mib / (time.perf_counter() - t))
        t = time.perf_counter()
        got = get(bucket, f"{tag}-big-{r}")
        best_get = max(best_get, big_mib / (time.perf_counter() - t))
        assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()
    results[name] = (put_ops, get_ops, best_put, best_get)
    print(f"{name}: {put_ops:.0f} PUT/s, {get_ops:.0f} GET/s (4 KiB); {best_put:.0f} MiB/s PUT, {best_get:.0f} MiB/s GET ({big_mib} MiB, best of {rounds})", file=sys.stderr)

n, s = results["native /v1"], results["S3"]
print(f"| measure | native `/v1` (reference) | S3 port | S3 / native |")
print(f"|---|---|---|---|")
for i, label in enumerate(["4 KiB PUT, ops/s", "4 KiB GET, ops/s", f"{big_mib} MiB PUT, MiB/s", f"{big_mib} MiB GET, MiB/s"]):
    print(f"| {label} | {n[i]:.0f} | {s[i]:.0f} | {s[i] / n[i]:.2f} |")
