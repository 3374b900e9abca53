"""PUTs of one size through node 1 of a devnet, timed one by one (see bench-put-cpu.sh).

Usage: bench_put_cpu.py DEVNET_DIR COUNT MIB. Prints one wall time in milliseconds per PUT.
"""

import os
import sys
import time
import uuid

from bench_s3 import devnet_client

devnet, count, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s3 = devnet_client(devnet)
bucket = "bench-put-cpu-" + uuid.uuid4().hex[:8]
s3.create_bucket(Bucket=bucket)
body = os.urandom(mib << 20)
for i in range(count):
    start = time.perf_counter()
    s3.put_object(Bucket=bucket, Key=f"k{i}", Body=body)
    print(round(1000 * (time.perf_counter() - start)))
    # Deleted at once, so rounds do not fill the disk (garbage collection frees the chunks).
    s3.delete_object(Bucket=bucket, Key=f"k{i}")
