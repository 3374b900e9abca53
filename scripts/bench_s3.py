"""The boto3 client every S3 benchmark here uses, so that they all measure alike:
path-style addressing, one connection, no retries, and checksums only where S3 requires
them (the scripts import it from this directory)."""

import json
import os

import boto3
from botocore.config import Config


def client(endpoint, access_key, secret_key, region="us-east-1", verify=None):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=1,
            retries={"max_attempts": 1, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
        verify=verify,
    )


def devnet_client(devnet_dir):
    """A client of node 1 of the devnet `xnode devnet --dir DEVNET_DIR` made."""
    with open(os.path.join(devnet_dir, "devnet.json")) as f:
        nodes = json.load(f)["nodes"]
    with open(os.path.join(devnet_dir, "s3-key.json")) as f:
        key = json.load(f)
    return client(nodes[0]["s3_url"], key["access_key_id"], key["secret_access_key"])
