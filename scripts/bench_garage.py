"""Benchmark client for scripts/bench-garage.sh: the same Python process, boto3 and sizes
against two S3 endpoints, Xnode's and Garage's (three nodes each, three copies, fsync on),
in interleaved rounds, and a Markdown table of medians with the ratio Xnode / Garage.

Usage: bench_garage.py XNODE_JSON GARAGE_JSON, each {"endpoint", "key", "secret",
"region"}. BENCH_ROUNDS (3), BENCH_OPS (200 per client for 4 KiB), BENCH_CLIENTS (16),
BENCH_BIG_MIB (64).

Other pairs (scripts/bench-tls.sh: the same node over HTTPS and plain HTTP) name themselves
with optional keys: "name" (a column, default Xnode and Garage), "title" (its heading) and
"verify" (a CA bundle for an https endpoint). The first file is the one measured, the
second the baseline of the ratio."""

import json
import os
import statistics
import sys
import threading
import time
import uuid

import bench_s3

rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
ops = int(os.environ.get("BENCH_OPS", "200"))
clients = int(os.environ.get("BENCH_CLIENTS", "16"))
big_mib = int(os.environ.get("BENCH_BIG_MIB", "64"))


def client(system):
    return bench_s3.client(
        system["endpoint"],
        system["key"],
        system["secret"],
        region=system["region"],
        verify=system.get("verify"),
    )


def small_rate(system, bucket, parallel, operation, tag):
    """4 KiB operations a second with `parallel` clients, each doing `ops` in a row."""
    body = os.urandom(4096)
    per_client = ops if parallel == 1 else max(ops // 4, 20)
    conns = [client(system) for _ in range(parallel)]
    if operation == "GET":
        for c in range(parallel):
            for i in range(per_client):
                conns[c].put_object(Bucket=bucket, Key=f"{tag}-{c}-{i}", Body=body)
    errors = []

    def work(c):
        try:
            for i in range(per_client):
                key = f"{tag}-{c}-{i}"
                if operation == "PUT":
                    conns[c].put_object(Bucket=bucket, Key=key, Body=body)
                else:
                    got = conns[c].get_object(Bucket=bucket, Key=key)["Body"].read()
                    assert got == body, "a GET returned other bytes"
        except Exception as e:  # noqa: BLE001 - reported after the run
            errors.append(e)

    threads = [threading.Thread(target=work, args=(c,)) for c in range(parallel)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return parallel * per_client / elapsed


def big_rate(system, bucket, operation, tag, body):
    c = client(system)
    key = f"{tag}-big"
    if operation == "GET":
        c.put_object(Bucket=bucket, Key=key, Body=body)
    start = time.perf_counter()
    if operation == "PUT":
        c.put_object(Bucket=bucket, Key=key, Body=body)
    else:
        got = c.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert len(got) == len(body) and got == body, "a GET returned other bytes"
    return big_mib / (time.perf_counter() - start)


subject, baseline = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
subject.setdefault("name", "Xnode")
baseline.setdefault("name", "Garage")
baseline.setdefault("title", "Garage 1.2.0 (fsync on)")
systems = {subject["name"]: subject, baseline["name"]: baseline}
buckets = {}
for name, system in systems.items():
    buckets[name] = "bench-" + uuid.uuid4().hex[:8]
    client(system).create_bucket(Bucket=buckets[name])
    # Warm up connections, placement and caches.
    small_rate(system, buckets[name], 1, "PUT", "warm")

big = os.urandom(big_mib * 1024 * 1024)
measures = [
    ("4 KiB PUT ops/s, 1 client", lambda s, b, t: small_rate(s, b, 1, "PUT", t)),
    ("4 KiB GET ops/s, 1 client", lambda s, b, t: small_rate(s, b, 1, "GET", t)),
    (f"4 KiB PUT ops/s, {clients} clients", lambda s, b, t: small_rate(s, b, clients, "PUT", t)),
    (f"4 KiB GET ops/s, {clients} clients", lambda s, b, t: small_rate(s, b, clients, "GET", t)),
    (f"{big_mib} MiB PUT MiB/s", lambda s, b, t: big_rate(s, b, "PUT", t, big)),
    (f"{big_mib} MiB GET MiB/s", lambda s, b, t: big_rate(s, b, "GET", t, big)),
]
samples = {(label, name): [] for label, _ in measures for name in systems}
for r in range(rounds):
    # Interleaved: each measure runs on one system then the other, alternating which goes
    # first, so drift on a shared machine falls on both alike.
    order = list(systems) if r % 2 == 0 else list(reversed(list(systems)))
    for label, measure in measures:
        for name in order:
            value = measure(systems[name], buckets[name], f"r{r}-{uuid.uuid4().hex[:6]}")
            samples[(label, name)].append(value)
            print(f"round {r + 1}/{rounds}: {name}: {label}: {value:.1f}", file=sys.stderr)

a, b = subject["name"], baseline["name"]
print(f"| measure | {baseline.get('title', b)} | {subject.get('title', a)} | {a} / {b} |")
print("|---|---|---|---|")
for label, _ in measures:
    base = statistics.median(samples[(label, b)])
    measured = statistics.median(samples[(label, a)])
    print(f"| {label} | {base:.0f} | {measured:.0f} | {measured / base:.2f} |")
