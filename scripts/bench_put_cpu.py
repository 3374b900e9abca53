"""PUTs of one size through node 1 of a devnet, timed one by one (see bench-put-cpu.sh).

Usage: bench_put_cpu.py DEVNET_DIR COUNT MIB. Prints one wall time in milliseconds per PUT.
"""

import json
import os
import sys
import time
import uuid

import boto3
from botocore.config import Config

devnet, count, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
nodes = json.load(open(os.path.join(devnet, "devnet.json")))["nodes"]
key = json.load(open(os.path.join(devnet, "s3-key.json")))
s3 = boto3.client(
    "s3",
    endpoint_url=nodes[0]["s3_url"],
    aws_access_key_id=key["access_key_id"],
    aws_secret_access_key=key["secret_access_key"],
    region_name="us-east-1",
    config=Config(
        s3={"addressing_style": "path"},
        max_pool_connections=1,
        retries={"max_attempts": 1, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    ),
)
bucket = "bench-put-cpu-" + uuid.uuid4().hex[:8]
s3.create_bucket(Bucket=bucket)
body = os.urandom(mib << 20)
for i in range(count):
    start = time.perf_counter()
    s3.put_object(Bucket=bucket, Key=f"k{i}", Body=body)
    print(round(1000 * (time.perf_counter() - start)))
    # Deleted at once, so rounds do not fill the disk (garbage collection frees the chunks).
    s3.delete_object(Bucket=bucket, Key=f"k{i}")
