"""Benchmark client for scripts/bench-put.sh: PUTs of large objects through the S3 port of
a devnet, each round preceded by the physical limit for the same size measured by the
`put_limits` example, and a Markdown table of medians.

Usage: bench_put.py DEVNET_DIR PUT_LIMITS_BIN WORK_DIR. BENCH_ROUNDS (3),
BENCH_SIZES_MIB ("64 1024")."""

import json
import os
import statistics
import subprocess
import sys
import time
import uuid

from bench_s3 import devnet_client

devnet, limits_bin, work = sys.argv[1], sys.argv[2], sys.argv[3]
rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
sizes = [int(s) for s in os.environ.get("BENCH_SIZES_MIB", "64 1024").split()]
s3 = devnet_client(devnet)
bucket = "bench-put-" + uuid.uuid4().hex[:8]
s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key="warm", Body=os.urandom(1 << 20))

rows = []
for mib in sizes:
    body = os.urandom(mib * 1024 * 1024)
    limit_runs, put_runs = [], []
    for r in range(rounds):
        out = subprocess.run([limits_bin, work, str(mib)], check=True, capture_output=True, text=True)
        limit = json.loads(out.stdout)
        limit_runs.append(limit)
        print(out.stderr.rstrip(), file=sys.stderr)
        t = time.perf_counter()
        s3.put_object(Bucket=bucket, Key=f"big-{mib}-{r}", Body=body)
        rate = mib / (time.perf_counter() - t)
        put_runs.append(rate)
        print(f"  Xnode PUT {mib} MiB: {rate:.0f} MiB/s ({rate / limit['limit_mibs']:.2f} of the limit)", file=sys.stderr)
        # Deleting keeps the disk from filling over rounds of 1 GiB (garbage collection
        # removes the chunks later; the next round's limit is measured meanwhile).
        s3.delete_object(Bucket=bucket, Key=f"big-{mib}-{r}")
    med = lambda field: statistics.median(l[field] for l in limit_runs)
    rows.append((mib, med("disk_mibs"), med("cpu_limit_mibs"), med("limit_mibs"),
                 med("disk_chunk_files_mibs"), statistics.median(put_runs)))
    del body

print(f"| object | disk: 3 fsynced copies, MiB/s | CPU: hashing + encryption on {os.cpu_count()} cores, MiB/s "
      f"| physical limit, MiB/s | Xnode PUT, MiB/s | Xnode / limit | (disk as one file per 1 MiB chunk, MiB/s) |")
print("|---|---|---|---|---|---|---|")
for mib, disk, cpu, limit, chunk_files, put in rows:
    print(f"| {mib} MiB | {disk:.0f} | {cpu:.0f} | {limit:.0f} | {put:.0f} | {put / limit:.2f} | {chunk_files:.0f} |")
