"""S3 compatibility suite: real clients (boto3, the aws CLI, rclone when installed)
against a running Xnode devnet's S3 ports, through each node.

Driven by crates/xnode/tests/s3_compat.rs, which starts a 3-node devnet and sets:
  XNODE_BIN         the xnode binary (to make a second tenant and its S3 key)
  XNODE_DEVNET_DIR  the devnet's directory (devnet.json, s3-key.json, tenant.key)
  XNODE_BIG_MIB     size of the big multipart upload (default 40: five 8 MiB parts)
Run by hand against a devnet you started yourself:
  XNODE_BIN=target/debug/xnode XNODE_DEVNET_DIR=.xnode-devnet python3 -m unittest -v test_s3
"""

import base64
import datetime
import filecmp
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

DEVNET = os.environ.get("XNODE_DEVNET_DIR", ".xnode-devnet")
XNODE = os.environ.get("XNODE_BIN", "xnode")
BIG_MIB = int(os.environ.get("XNODE_BIG_MIB", "40"))
MIB = 1024 * 1024

with open(os.path.join(DEVNET, "devnet.json")) as f:
    NODES = json.load(f)["nodes"]
with open(os.path.join(DEVNET, "s3-key.json")) as f:
    KEY_A = json.load(f)
ENDPOINTS = [n["s3_url"] for n in NODES]
APIS = [n["api_url"] for n in NODES]

WORK = tempfile.mkdtemp(prefix="xnode-s3-compat-")
AWS_CONFIG = os.path.join(WORK, "aws-config")
with open(AWS_CONFIG, "w") as f:
    f.write("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")


def client(endpoint, key=None, secret=None):
    key = key or KEY_A
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=secret or key["secret_access_key"],
        region_name="us-east-1",
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=5,
            read_timeout=120,
        ),
    )


def code_of(err):
    return err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"]


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def kms_key(key_file, *args):
    """Runs `xnode kms ARGS` as the tenant of KEY_FILE through the first node."""
    out = subprocess.run(
        [XNODE, "kms", *args, "--tenant-key", key_file, "--api", APIS[0], "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def second_tenant():
    """A second tenant with its own key file and S3 key, registered on every node."""
    path = os.path.join(WORK, "tenant-b.key")
    if not os.path.exists(path):
        subprocess.run([XNODE, "key", "new", "--file", path], check=True, capture_output=True)
    out = subprocess.run(
        [XNODE, "key", "s3", "create", "--tenant-key", path, "--json"]
        + [a for api in APIS for a in ("--api", api)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


# Error-code checks run with a single attempt so that errors surface as they are. Bulk
# transfers (cp, sync of tens of MiB) use the CLI's retries, as users do: a debug-built node
# busy replicating the upload in the background can answer 503 SlowDown/ServiceUnavailable,
# which S3 clients retry by design.
def aws(endpoint, *args, key=None, check=True, attempts=1):
    key = key or KEY_A
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID=key["access_key_id"],
        AWS_SECRET_ACCESS_KEY=key["secret_access_key"],
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=AWS_CONFIG,
        AWS_SHARED_CREDENTIALS_FILE=os.path.join(WORK, "no-credentials"),
        AWS_MAX_ATTEMPTS=str(attempts),
    )
    result = subprocess.run(
        ["aws", "--endpoint-url", endpoint, *args],
        env=env,
        capture_output=True,
        text=True,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"aws {' '.join(args)} failed: {result.stdout}\n{result.stderr}")
    return result


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


class S3Compat(unittest.TestCase):
    maxDiff = None

    def each_node(self):
        """(writer, reader) client pairs: every node writes once, and reads go through the next."""
        for i, ep in enumerate(ENDPOINTS):
            yield i, client(ep), client(ENDPOINTS[(i + 1) % len(ENDPOINTS)])

    # ----- buckets -----------------------------------------------------------------------

    def test_buckets(self):
        for i, s3, other in self.each_node():
            with self.subTest(node=i + 1):
                b = name("bkt")
                s3.create_bucket(Bucket=b)
                other.head_bucket(Bucket=b)
                names = [x["Name"] for x in other.list_buckets()["Buckets"]]
                self.assertIn(b, names)
                loc = other.get_bucket_location(Bucket=b)
                self.assertIn(loc.get("LocationConstraint"), (None, ""))
                # us-east-1's answer to the owner creating its bucket again: a no-op; asking
                # for another ACL on the way is refused.
                other.create_bucket(Bucket=b)
                with self.assertRaises(ClientError) as e:
                    other.create_bucket(Bucket=b, ACL="public-read")
                self.assertEqual(code_of(e.exception), ("BucketAlreadyExists", 409))
                s3.put_object(Bucket=b, Key="k", Body=b"x")
                other.create_bucket(Bucket=b)
                self.assertEqual(s3.get_object(Bucket=b, Key="k")["Body"].read(), b"x")
                with self.assertRaises(ClientError) as e:
                    other.delete_bucket(Bucket=b)
                self.assertEqual(code_of(e.exception), ("BucketNotEmpty", 409))
                s3.delete_object(Bucket=b, Key="k")
                other.delete_bucket(Bucket=b)
                with self.assertRaises(ClientError) as e:
                    s3.head_bucket(Bucket=b)
                self.assertEqual(code_of(e.exception)[1], 404)
                with self.assertRaises(ClientError) as e:
                    s3.delete_bucket(Bucket=b)
                self.assertEqual(code_of(e.exception), ("NoSuchBucket", 404))
                with self.assertRaises(ClientError) as e:
                    s3.list_objects_v2(Bucket=b)
                self.assertEqual(code_of(e.exception), ("NoSuchBucket", 404))

    # ----- objects -----------------------------------------------------------------------

    def test_objects(self):
        for i, s3, other in self.each_node():
            with self.subTest(node=i + 1):
                b = name("obj")
                s3.create_bucket(Bucket=b)
                body = os.urandom(300_000)
                md5 = hashlib.md5(body).hexdigest()
                put = s3.put_object(
                    Bucket=b,
                    Key="dir/file one.bin",
                    Body=body,
                    ContentType="application/x-test",
                    Metadata={"colour": "blue", "Mixed-Case": "Yes"},
                )
                self.assertEqual(put["ETag"], f'"{md5}"')
                got = other.get_object(Bucket=b, Key="dir/file one.bin")
                self.assertEqual(got["Body"].read(), body)
                self.assertEqual(got["ETag"], f'"{md5}"')
                self.assertEqual(got["ContentType"], "application/x-test")
                self.assertEqual(got["Metadata"], {"colour": "blue", "mixed-case": "Yes"})
                self.assertEqual(got["ContentLength"], len(body))
                head = other.head_object(Bucket=b, Key="dir/file one.bin")
                self.assertEqual(head["ContentLength"], len(body))
                self.assertEqual(head["Metadata"]["colour"], "blue")
                last_modified = head["LastModified"]

                # Ranges.
                r = other.get_object(Bucket=b, Key="dir/file one.bin", Range="bytes=1000-1999")
                self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 206)
                self.assertEqual(r["ContentRange"], f"bytes 1000-1999/{len(body)}")
                self.assertEqual(r["Body"].read(), body[1000:2000])
                r = other.get_object(Bucket=b, Key="dir/file one.bin", Range="bytes=-10")
                self.assertEqual(r["Body"].read(), body[-10:])
                r = other.get_object(Bucket=b, Key="dir/file one.bin", Range=f"bytes={len(body) - 5}-")
                self.assertEqual(r["Body"].read(), body[-5:])
                with self.assertRaises(ClientError) as e:
                    other.get_object(Bucket=b, Key="dir/file one.bin", Range=f"bytes={len(body)}-")
                self.assertEqual(code_of(e.exception), ("InvalidRange", 416))

                # Conditional GETs.
                ok = other.get_object(Bucket=b, Key="dir/file one.bin", IfMatch=md5)
                self.assertEqual(ok["Body"].read(), body)
                with self.assertRaises(ClientError) as e:
                    other.get_object(Bucket=b, Key="dir/file one.bin", IfMatch="0" * 32)
                self.assertEqual(code_of(e.exception), ("PreconditionFailed", 412))
                with self.assertRaises(ClientError) as e:
                    other.get_object(Bucket=b, Key="dir/file one.bin", IfNoneMatch=md5)
                self.assertEqual(code_of(e.exception)[1], 304)
                ok = other.get_object(Bucket=b, Key="dir/file one.bin", IfNoneMatch="0" * 32)
                self.assertEqual(len(ok["Body"].read()), len(body))
                with self.assertRaises(ClientError) as e:
                    other.get_object(Bucket=b, Key="dir/file one.bin", IfModifiedSince=last_modified)
                self.assertEqual(code_of(e.exception)[1], 304)
                earlier = last_modified.replace(year=last_modified.year - 1)
                ok = other.get_object(Bucket=b, Key="dir/file one.bin", IfModifiedSince=earlier)
                self.assertEqual(ok["ResponseMetadata"]["HTTPStatusCode"], 200)
                with self.assertRaises(ClientError) as e:
                    other.get_object(Bucket=b, Key="dir/file one.bin", IfUnmodifiedSince=earlier)
                self.assertEqual(code_of(e.exception), ("PreconditionFailed", 412))

                # Copies: metadata kept, or replaced.
                c = other.copy_object(Bucket=b, Key="copy", CopySource={"Bucket": b, "Key": "dir/file one.bin"})
                self.assertEqual(c["CopyObjectResult"]["ETag"], f'"{md5}"')
                got = s3.get_object(Bucket=b, Key="copy")
                self.assertEqual(got["Body"].read(), body)
                self.assertEqual(got["Metadata"]["colour"], "blue")
                self.assertEqual(got["ContentType"], "application/x-test")
                other.copy_object(
                    Bucket=b,
                    Key="copy2",
                    CopySource=f"{b}/copy",
                    MetadataDirective="REPLACE",
                    ContentType="text/plain",
                    Metadata={"new": "1"},
                )
                head = s3.head_object(Bucket=b, Key="copy2")
                self.assertEqual(head["Metadata"], {"new": "1"})
                self.assertEqual(head["ContentType"], "text/plain")
                with self.assertRaises(ClientError) as e:
                    s3.copy_object(Bucket=b, Key="copy", CopySource=f"{b}/copy")
                self.assertEqual(code_of(e.exception)[1], 400)

                # Empty objects, overwrite, delete.
                s3.put_object(Bucket=b, Key="empty", Body=b"")
                self.assertEqual(other.get_object(Bucket=b, Key="empty")["Body"].read(), b"")
                s3.put_object(Bucket=b, Key="copy", Body=b"new")
                self.assertEqual(other.get_object(Bucket=b, Key="copy")["Body"].read(), b"new")
                other.delete_object(Bucket=b, Key="copy")
                with self.assertRaises(ClientError) as e:
                    s3.get_object(Bucket=b, Key="copy")
                self.assertEqual(code_of(e.exception), ("NoSuchKey", 404))
                with self.assertRaises(ClientError) as e:
                    s3.head_object(Bucket=b, Key="copy")
                self.assertEqual(code_of(e.exception)[1], 404)
                other.delete_object(Bucket=b, Key="never-existed")  # S3 says 204 either way
                res = s3.delete_objects(
                    Bucket=b,
                    Delete={"Objects": [{"Key": "dir/file one.bin"}, {"Key": "copy2"}, {"Key": "empty"}]},
                )
                self.assertEqual(sorted(d["Key"] for d in res["Deleted"]), ["copy2", "dir/file one.bin", "empty"])
                self.assertEqual(other.list_objects_v2(Bucket=b)["KeyCount"], 0)
                s3.delete_bucket(Bucket=b)

    # ----- listings ----------------------------------------------------------------------

    def test_listings(self):
        for i, s3, other in self.each_node():
            with self.subTest(node=i + 1):
                b = name("lst")
                s3.create_bucket(Bucket=b)
                keys = ["a/1", "a/2", "a/b/3", "c", "d e", "x+y%z", "é/ü"]
                for k in keys:
                    s3.put_object(Bucket=b, Key=k, Body=k.encode())
                all_keys = [o["Key"] for o in other.list_objects_v2(Bucket=b)["Contents"]]
                self.assertEqual(all_keys, sorted(keys, key=lambda k: k.encode()))
                r = other.list_objects_v2(Bucket=b, Delimiter="/")
                self.assertEqual([o["Key"] for o in r["Contents"]], ["c", "d e", "x+y%z"])
                self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["a/", "é/"])
                r = other.list_objects_v2(Bucket=b, Prefix="a/", Delimiter="/")
                self.assertEqual([o["Key"] for o in r["Contents"]], ["a/1", "a/2"])
                self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["a/b/"])
                r = other.list_objects_v2(Bucket=b, StartAfter="a/b/3")
                self.assertEqual([o["Key"] for o in r["Contents"]][0], "c")
                # Pages of two, with continuation tokens, also across common prefixes.
                seen, token = [], None
                while True:
                    kw = {"Bucket": b, "MaxKeys": 2, "Delimiter": "/"}
                    if token:
                        kw["ContinuationToken"] = token
                    r = other.list_objects_v2(**kw)
                    seen += [o["Key"] for o in r.get("Contents", [])]
                    seen += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
                    self.assertLessEqual(r["KeyCount"], 2)
                    if not r["IsTruncated"]:
                        break
                    token = r["NextContinuationToken"]
                self.assertEqual(sorted(seen), sorted(["a/", "c", "d e", "x+y%z", "é/"]))
                paginator = other.get_paginator("list_objects_v2")
                flat = [o["Key"] for page in paginator.paginate(Bucket=b, PaginationConfig={"PageSize": 3}) for o in page.get("Contents", [])]
                self.assertEqual(flat, all_keys)
                # ListObjects (v1) with markers.
                r = other.list_objects(Bucket=b, MaxKeys=3)
                self.assertTrue(r["IsTruncated"])
                first = [o["Key"] for o in r["Contents"]]
                r2 = other.list_objects(Bucket=b, Marker=first[-1])
                self.assertEqual(first + [o["Key"] for o in r2["Contents"]], all_keys)
                r = other.list_objects(Bucket=b, Delimiter="/", Prefix="a/")
                self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["a/b/"])
                r = other.list_objects_v2(Bucket=b, MaxKeys=0)
                self.assertEqual(r["KeyCount"], 0)
                s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k} for k in keys]})
                s3.delete_bucket(Bucket=b)

    # ----- multipart ---------------------------------------------------------------------

    def test_multipart(self):
        for i, s3, other in self.each_node():
            with self.subTest(node=i + 1):
                b = name("mpu")
                s3.create_bucket(Bucket=b)
                part1 = os.urandom(5 * MIB)
                part2 = os.urandom(100_000)
                up = s3.create_multipart_upload(Bucket=b, Key="big", ContentType="video/x-test", Metadata={"m": "v"})
                uid = up["UploadId"]
                e1 = s3.upload_part(Bucket=b, Key="big", UploadId=uid, PartNumber=1, Body=part1)["ETag"]
                e2 = other.upload_part(Bucket=b, Key="big", UploadId=uid, PartNumber=2, Body=part2)["ETag"]
                parts = other.list_parts(Bucket=b, Key="big", UploadId=uid)["Parts"]
                self.assertEqual([(p["PartNumber"], p["ETag"], p["Size"]) for p in parts], [(1, e1, len(part1)), (2, e2, len(part2))])
                ups = other.list_multipart_uploads(Bucket=b).get("Uploads", [])
                self.assertIn(("big", uid), [(u["Key"], u["UploadId"]) for u in ups])
                # Nothing is visible before Complete.
                self.assertEqual(other.list_objects_v2(Bucket=b)["KeyCount"], 0)
                with self.assertRaises(ClientError) as e:
                    other.head_object(Bucket=b, Key="big")
                self.assertEqual(code_of(e.exception)[1], 404)
                with self.assertRaises(ClientError) as e:
                    other.complete_multipart_upload(Bucket=b, Key="big", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})
                self.assertEqual(code_of(e.exception), ("InvalidPartOrder", 400))
                with self.assertRaises(ClientError) as e:
                    other.complete_multipart_upload(Bucket=b, Key="big", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": '"' + "0" * 32 + '"'}]})
                self.assertEqual(code_of(e.exception), ("InvalidPart", 400))
                with self.assertRaises(ClientError) as e:
                    other.complete_multipart_upload(Bucket=b, Key="big", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 3, "ETag": e2}]})
                self.assertEqual(code_of(e.exception), ("InvalidPart", 400))
                done = other.complete_multipart_upload(Bucket=b, Key="big", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
                digest = hashlib.md5(hashlib.md5(part1).digest() + hashlib.md5(part2).digest()).hexdigest()
                self.assertEqual(done["ETag"], f'"{digest}-2"')
                got = s3.get_object(Bucket=b, Key="big")
                self.assertEqual(got["ETag"], f'"{digest}-2"')
                self.assertEqual(got["ContentType"], "video/x-test")
                self.assertEqual(got["Metadata"], {"m": "v"})
                self.assertEqual(got["Body"].read(), part1 + part2)
                # A range across the part boundary.
                r = other.get_object(Bucket=b, Key="big", Range=f"bytes={len(part1) - 3}-{len(part1) + 2}")
                self.assertEqual(r["Body"].read(), (part1 + part2)[len(part1) - 3 : len(part1) + 3])
                # The upload is gone.
                with self.assertRaises(ClientError) as e:
                    other.list_parts(Bucket=b, Key="big", UploadId=uid)
                self.assertEqual(code_of(e.exception), ("NoSuchUpload", 404))
                self.assertEqual(other.list_multipart_uploads(Bucket=b).get("Uploads", []), [])

                # Parts below 5 MiB (but the last) are refused; abort removes the upload.
                up2 = s3.create_multipart_upload(Bucket=b, Key="small")["UploadId"]
                a = s3.upload_part(Bucket=b, Key="small", UploadId=up2, PartNumber=1, Body=b"a" * 1024)["ETag"]
                c = s3.upload_part(Bucket=b, Key="small", UploadId=up2, PartNumber=2, Body=b"c" * 1024)["ETag"]
                with self.assertRaises(ClientError) as e:
                    other.complete_multipart_upload(Bucket=b, Key="small", UploadId=up2, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": a}, {"PartNumber": 2, "ETag": c}]})
                self.assertEqual(code_of(e.exception), ("EntityTooSmall", 400))
                other.abort_multipart_upload(Bucket=b, Key="small", UploadId=up2)
                with self.assertRaises(ClientError) as e:
                    s3.upload_part(Bucket=b, Key="small", UploadId=up2, PartNumber=3, Body=b"x")
                self.assertEqual(code_of(e.exception), ("NoSuchUpload", 404))
                with self.assertRaises(ClientError) as e:
                    s3.abort_multipart_upload(Bucket=b, Key="small", UploadId="f" * 32)
                self.assertEqual(code_of(e.exception), ("NoSuchUpload", 404))
                with self.assertRaises(ClientError) as e:
                    s3.head_object(Bucket=b, Key="small")
                self.assertEqual(code_of(e.exception)[1], 404)
                s3.delete_object(Bucket=b, Key="big")
                s3.delete_bucket(Bucket=b)

    # ----- presigned URLs and authentication ---------------------------------------------

    def test_presigned_urls_and_auth_errors(self):
        for i, s3, other in self.each_node():
            with self.subTest(node=i + 1):
                b = name("pre")
                s3.create_bucket(Bucket=b)
                put_url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "p"}, ExpiresIn=300)
                req = urllib.request.Request(put_url, data=b"presigned body", method="PUT")
                with urllib.request.urlopen(req) as resp:
                    self.assertEqual(resp.status, 200)
                get_url = other.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "p"}, ExpiresIn=300)
                with urllib.request.urlopen(get_url) as resp:
                    self.assertEqual(resp.read(), b"presigned body")
                # A tampered signature, an unsigned request.
                sig = get_url.split("X-Amz-Signature=")[1][:64]
                flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
                bad = get_url.replace(sig, flipped)
                with self.assertRaises(urllib.error.HTTPError) as e:
                    urllib.request.urlopen(bad)
                self.assertEqual(e.exception.code, 403)
                self.assertIn(b"SignatureDoesNotMatch", e.exception.read())
                with self.assertRaises(urllib.error.HTTPError) as e:
                    urllib.request.urlopen(f"{ENDPOINTS[i]}/{b}/p")
                self.assertEqual(e.exception.code, 403)
                self.assertIn(b"AccessDenied", e.exception.read())
                # A wrong secret and an unknown key.
                wrong = client(ENDPOINTS[i], secret="x" * 40)
                with self.assertRaises(ClientError) as e:
                    wrong.list_buckets()
                self.assertEqual(code_of(e.exception), ("SignatureDoesNotMatch", 403))
                unknown = client(ENDPOINTS[i], key={"access_key_id": "XNUNKNOWNKEY00000000", "secret_access_key": "y" * 40})
                with self.assertRaises(ClientError) as e:
                    unknown.list_buckets()
                self.assertEqual(code_of(e.exception), ("InvalidAccessKeyId", 403))
                s3.delete_object(Bucket=b, Key="p")
                s3.delete_bucket(Bucket=b)

    def test_browser_form_uploads_signed_with_sigv4(self):
        """A form from boto3's generate_presigned_post (SigV4, as browsers get them): the
        policy is held to, ${filename} expands, and what it does not allow is refused."""

        def post(endpoint, bucket, fields, body, filename="hello.txt"):
            boundary = uuid.uuid4().hex
            parts = []
            for k, v in fields.items():
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                f"Content-Type: text/plain\r\n\r\n".encode() + body + f"\r\n--{boundary}--\r\n".encode()
            )
            req = urllib.request.Request(
                f"{endpoint}/{bucket}",
                data=b"".join(parts),
                method="POST",
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
            try:
                with urllib.request.urlopen(req) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        i, s3, other = 0, client(ENDPOINTS[0]), client(ENDPOINTS[1])
        b = name("form")
        s3.create_bucket(Bucket=b)
        form = s3.generate_presigned_post(
            b,
            "uploads/${filename}",
            Fields={"success_action_status": "201"},
            Conditions=[{"success_action_status": "201"}, ["content-length-range", 1, 1024]],
            ExpiresIn=600,
        )
        status, body = post(ENDPOINTS[i], b, form["fields"], b"form body")
        self.assertEqual(status, 201, body)
        self.assertIn(b"<Key>uploads/hello.txt</Key>", body)
        got = other.get_object(Bucket=b, Key="uploads/hello.txt")["Body"].read()
        self.assertEqual(got, b"form body")
        refusals = [
            # A key outside the policy's prefix, a field it does not name, a file too big.
            (dict(form["fields"], key="elsewhere/x"), b"x", 403, b"Policy Condition failed"),
            (dict(form["fields"], **{"x-amz-meta-extra": "1"}), b"x", 403, b"Extra input fields"),
            (form["fields"], b"x" * 2000, 400, b"EntityTooLarge"),
            # A field the gateway does not honour, and a form without its signature.
            (dict(form["fields"], submit="Upload"), b"x", 501, b"NotImplemented"),
            ({k: v for k, v in form["fields"].items() if k != "x-amz-signature"}, b"x", 400, b"InvalidArgument"),
        ]
        for fields, data, code, message in refusals:
            status, body = post(ENDPOINTS[i], b, fields, data, filename="refused.txt")
            self.assertEqual((status, message in body), (code, True), body)
        # Whatever the policy allows, a form's file is held in memory, so the gateway takes
        # at most 64 MiB of it (MAX_POST_OBJECT_BYTES).
        big = s3.generate_presigned_post(b, "big", Conditions=[["content-length-range", 1, 1 << 30]], ExpiresIn=600)
        status, body = post(ENDPOINTS[i], b, big["fields"], b"x" * (64 * 1024 * 1024 + 1))
        self.assertEqual((status, b"EntityTooLarge" in body), (400, True), body[:300])
        # An unsigned form is a write of the key it names: a bucket policy that lets anyone
        # put under open/ grants it there and nowhere else.
        self.assertEqual(post(ENDPOINTS[i], b, {"key": "open/a"}, b"x")[0], 403)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{b}/open/*"}],
        }
        s3.put_bucket_policy(Bucket=b, Policy=json.dumps(policy))
        self.assertEqual(post(ENDPOINTS[i], b, {"key": "open/a"}, b"x")[0], 204)
        self.assertEqual(post(ENDPOINTS[i], b, {"key": "closed/a"}, b"x")[0], 403)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=b).get("Contents", [])]
        self.assertEqual(keys, ["open/a", "uploads/hello.txt"])
        for key in keys:
            s3.delete_object(Bucket=b, Key=key)
        s3.delete_bucket_policy(Bucket=b)
        s3.delete_bucket(Bucket=b)

    # ----- object lock ---------------------------------------------------------------------

    def test_an_object_lock_set_through_one_node_holds_on_every_node(self):
        """A version's retention and legal hold, set through one node, are in its replicated
        metadata: every node shows them and refuses to delete the version until they allow."""
        s3 = [client(e) for e in ENDPOINTS]
        b = name("lock")
        s3[0].create_bucket(Bucket=b, ObjectLockEnabledForBucket=True)
        self.assertEqual(s3[0].get_bucket_versioning(Bucket=b)["Status"], "Enabled")
        until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).replace(microsecond=0)
        vid = s3[0].put_object(Bucket=b, Key="k", Body=b"kept", ObjectLockMode="GOVERNANCE",
                               ObjectLockRetainUntilDate=until, ObjectLockLegalHoldStatus="ON")["VersionId"]
        last = len(s3) - 1
        head = s3[last].head_object(Bucket=b, Key="k", VersionId=vid)
        self.assertEqual((head["ObjectLockMode"], head["ObjectLockRetainUntilDate"], head["ObjectLockLegalHoldStatus"]),
                         ("GOVERNANCE", until, "ON"))
        # The legal hold holds even against the bypass; the retention holds without it.
        for i, bypass in [(1 % len(s3), True), (last, False)]:
            with self.assertRaises(ClientError) as e:
                s3[i].delete_object(Bucket=b, Key="k", VersionId=vid, BypassGovernanceRetention=bypass)
            self.assertEqual(code_of(e.exception), ("AccessDenied", 403))
        s3[last].put_object_legal_hold(Bucket=b, Key="k", VersionId=vid, LegalHold={"Status": "OFF"})
        with self.assertRaises(ClientError) as e:
            s3[0].delete_object(Bucket=b, Key="k", VersionId=vid)
        self.assertEqual(code_of(e.exception), ("AccessDenied", 403))
        # A delete marker is allowed: the locked version stays readable by its id.
        s3[0].delete_object(Bucket=b, Key="k")
        self.assertEqual(s3[last].get_object(Bucket=b, Key="k", VersionId=vid)["Body"].read(), b"kept")
        with self.assertRaises(ClientError) as e:
            s3[last].put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
        self.assertEqual(code_of(e.exception), ("InvalidBucketState", 409))
        # The owner bypasses GOVERNANCE; then the bucket empties and goes.
        s3[last].delete_object(Bucket=b, Key="k", VersionId=vid, BypassGovernanceRetention=True)
        for v in s3[0].list_object_versions(Bucket=b).get("DeleteMarkers", []):
            s3[0].delete_object(Bucket=b, Key=v["Key"], VersionId=v["VersionId"])
        s3[0].delete_bucket(Bucket=b)

    def test_a_multipart_uploads_default_retention_counts_from_its_completion(self):
        """A bucket's default retention is counted from when the object version is created,
        which for a multipart upload is its completion (as S3 counts it), not its start."""
        s3 = client(ENDPOINTS[0])
        b = name("lockmpu")
        s3.create_bucket(Bucket=b, ObjectLockEnabledForBucket=True)
        s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
        upload = s3.create_multipart_upload(Bucket=b, Key="k")["UploadId"]
        # Long enough apart that a retention counted from the start falls visibly short.
        time.sleep(3)
        etag = s3.upload_part(Bucket=b, Key="k", UploadId=upload, PartNumber=1, Body=b"part")["ETag"]
        completing = datetime.datetime.now(datetime.timezone.utc)
        vid = s3.complete_multipart_upload(Bucket=b, Key="k", UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": etag}]})["VersionId"]
        head = s3.head_object(Bucket=b, Key="k", VersionId=vid)
        self.assertEqual(head["ObjectLockMode"], "GOVERNANCE")
        # One second of slack for the date's whole seconds.
        self.assertGreaterEqual(head["ObjectLockRetainUntilDate"],
                                completing + datetime.timedelta(days=1, seconds=-1))
        s3.delete_object(Bucket=b, Key="k", VersionId=vid, BypassGovernanceRetention=True)
        s3.delete_bucket(Bucket=b)

    # ----- what the gateway does not honour, it refuses ------------------------------------

    def test_unhonoured_requests_are_refused_and_change_nothing(self):
        """Every header, parameter and sub-resource the gateway does not implement answers
        an error (501 NotImplemented, or what AWS answers), never 200, and changes nothing."""
        s3 = client(ENDPOINTS[0])
        b = name("ni")
        s3.create_bucket(Bucket=b)
        original = b"original bytes"
        etag = s3.put_object(Bucket=b, Key="k", Body=original)["ETag"]
        future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
        new = {"Bucket": b, "Key": "k", "Body": b"changed"}
        not_implemented = [
            ("PUT storage class", lambda: s3.put_object(StorageClass="GLACIER", **new)),
            ("PUT website redirect", lambda: s3.put_object(WebsiteRedirectLocation="/x", **new)),
            ("PutBucketWebsite", lambda: s3.put_bucket_website(Bucket=b, WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}})),
        ]
        for label, call in not_implemented:
            with self.subTest(label):
                with self.assertRaises(ClientError) as e:
                    call()
                self.assertEqual(code_of(e.exception), ("NotImplemented", 501), label)
        # What is built but asked wrongly is refused as AWS refuses it: SSE-KMS without a
        # key id names the implicit default key, which is not built, so it is unknown; a
        # grantee must be a tenant id or a group; a policy needs a statement.
        refused_like_aws = [
            ("PUT SSE-KMS", lambda: s3.put_object(ServerSideEncryption="aws:kms", **new), ("KMS.NotFoundException", 400)),
            ("PutBucketEncryption aws:kms", lambda: s3.put_bucket_encryption(Bucket=b, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]}), ("KMS.NotFoundException", 400)),
            ("PUT grant to no one", lambda: s3.put_object(GrantRead='id="someone"', **new), ("InvalidArgument", 400)),
            ("PutBucketPolicy without statements", lambda: s3.put_bucket_policy(Bucket=b, Policy='{"Version":"2012-10-17","Statement":[]}'), ("MalformedPolicy", 400)),
            # Object lock is built; asked of a bucket without it, it is refused as AWS does.
            ("PUT object lock", lambda: s3.put_object(ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=future, **new), ("InvalidRequest", 400)),
            ("PUT legal hold", lambda: s3.put_object(ObjectLockLegalHoldStatus="ON", **new), ("InvalidRequest", 400)),
            ("PutObjectRetention", lambda: s3.put_object_retention(Bucket=b, Key="k", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": future}), ("InvalidRequest", 400)),
            ("PutObjectLockConfiguration", lambda: s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}), ("InvalidBucketState", 409)),
        ]
        for label, call, expected in refused_like_aws:
            with self.subTest(label):
                with self.assertRaises(ClientError) as e:
                    call()
                self.assertEqual(code_of(e.exception), expected, label)
        # Version ids are honoured (bucket versioning): one that names no version of an
        # unversioned bucket's object is refused, never served or used as the current one.
        for label, call in [
            ("GET versionId", lambda: s3.get_object(Bucket=b, Key="k", VersionId="v1")),
            ("DELETE versionId", lambda: s3.delete_object(Bucket=b, Key="k", VersionId="v1")),
            ("COPY source versionId", lambda: s3.copy_object(Bucket=b, Key="k", CopySource={"Bucket": b, "Key": "k", "VersionId": "v1"}, MetadataDirective="REPLACE")),
        ]:
            with self.subTest(label):
                try:
                    call()
                    refused = False
                except ClientError as e:
                    refused = 400 <= code_of(e)[1] < 500
                # AWS answers a DELETE of a version that does not exist with success and
                # deletes nothing; reads and copies of it fail. Either way, nothing changes.
                self.assertTrue(refused or label.startswith("DELETE"), label)
        # Conditional writes are honoured: conditions that do not hold refuse the write
        # (412) and change nothing, on PUT, DELETE and Complete alike.
        stale = '"' + "0" * 32 + '"'
        precondition_failed = [
            ("PUT If-None-Match", lambda: s3.put_object(IfNoneMatch="*", **new)),
            ("PUT If-Match", lambda: s3.put_object(IfMatch=stale, **new)),
            ("DELETE If-Match", lambda: s3.delete_object(Bucket=b, Key="k", IfMatch=stale)),
        ]
        for label, call in precondition_failed:
            with self.subTest(label):
                with self.assertRaises(ClientError) as e:
                    call()
                self.assertEqual(code_of(e.exception), ("PreconditionFailed", 412), label)
        uid = s3.create_multipart_upload(Bucket=b, Key="k")["UploadId"]
        part = s3.upload_part(Bucket=b, Key="k", UploadId=uid, PartNumber=1, Body=b"p")["ETag"]
        with self.assertRaises(ClientError) as e:
            s3.complete_multipart_upload(Bucket=b, Key="k", UploadId=uid, IfNoneMatch="*",
                                         MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part}]})
        self.assertEqual(code_of(e.exception), ("PreconditionFailed", 412))
        s3.abort_multipart_upload(Bucket=b, Key="k", UploadId=uid)
        # Integrity headers are checked, not ignored.
        for label, kwargs in [
            ("Content-MD5", {"ContentMD5": base64.b64encode(hashlib.md5(b"other").digest()).decode()}),
            ("CRC32", {"ChecksumCRC32": "AAAAAA=="}),
            ("SHA256", {"ChecksumSHA256": base64.b64encode(hashlib.sha256(b"other").digest()).decode()}),
        ]:
            with self.subTest(label):
                with self.assertRaises(ClientError) as e:
                    s3.put_object(**new, **kwargs)
                self.assertEqual(code_of(e.exception), ("BadDigest", 400), label)
        # Another account named as the expected bucket owner.
        with self.assertRaises(ClientError) as e:
            s3.put_object(ExpectedBucketOwner="0" * 64, **new)
        self.assertEqual(code_of(e.exception), ("AccessDenied", 403))
        # Nothing changed.
        got = s3.get_object(Bucket=b, Key="k")
        self.assertEqual(got["Body"].read(), original)
        self.assertEqual(got["ETag"], etag)
        self.assertEqual([o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]], ["k"])
        self.assertEqual(s3.list_multipart_uploads(Bucket=b).get("Uploads", []), [])
        # What the gateway does honour still works: a correct checksum, private ACL, SSE-S3.
        ok = s3.put_object(ChecksumSHA256=base64.b64encode(hashlib.sha256(b"changed").digest()).decode(),
                           ACL="private", ServerSideEncryption="AES256", **new)
        self.assertEqual(ok["ETag"], '"' + hashlib.md5(b"changed").hexdigest() + '"')
        s3.delete_object(Bucket=b, Key="k")
        s3.delete_bucket(Bucket=b)

    # ----- tenant isolation --------------------------------------------------------------

    def test_sse_c_objects_read_back_only_with_their_key_through_every_node(self):
        """SSE-C: the object is readable through every node with the customer's key, and
        refused without it or with another key; the tenant's own data key is not enough."""
        s3 = client(ENDPOINTS[0])
        b = name("ssec")
        s3.create_bucket(Bucket=b)
        key = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32}
        other = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "o" * 32}
        body = os.urandom(100_000)
        s3.put_object(Bucket=b, Key="secret", Body=body, **key)
        for endpoint in ENDPOINTS:
            c = client(endpoint)
            with self.subTest(endpoint):
                got = c.get_object(Bucket=b, Key="secret", **key)
                self.assertEqual(got["Body"].read(), body)
                self.assertEqual(got["SSECustomerAlgorithm"], "AES256")
                for label, kwargs in [("no key", {}), ("another key", other)]:
                    with self.assertRaises(ClientError, msg=label) as e:
                        c.get_object(Bucket=b, Key="secret", **kwargs)
                    self.assertTrue(400 <= code_of(e.exception)[1] < 500, (label, code_of(e.exception)))

    def test_sse_kms_objects_read_back_under_the_tenants_own_enabled_keys(self):
        """SSE-KMS: an object written under a KMS key the tenant made reads back through
        every node with aws:kms and the key id in the answers, copies and multipart uploads
        keep it; another tenant's key id, an unknown one and a disabled key are refused."""
        second_tenant()
        own = kms_key(os.path.join(DEVNET, "tenant.key"), "create-key")["id"]
        foreign = kms_key(os.path.join(WORK, "tenant-b.key"), "create-key")["id"]
        s3 = client(ENDPOINTS[0])
        b = name("kms")
        s3.create_bucket(Bucket=b)
        body = os.urandom(100_000)
        kms = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": own}
        put = s3.put_object(Bucket=b, Key="k", Body=body, **kms)
        self.assertEqual((put["ServerSideEncryption"], put["SSEKMSKeyId"]), ("aws:kms", own))
        for endpoint in ENDPOINTS:
            c = client(endpoint)
            with self.subTest(endpoint):
                # The key's entry reaches the other nodes by gossip: allow it a while.
                deadline = time.time() + 30
                while True:
                    try:
                        got = c.get_object(Bucket=b, Key="k")
                        break
                    except ClientError as e:
                        if code_of(e)[0] != "KMS.NotFoundException" or time.time() > deadline:
                            raise
                        time.sleep(0.5)
                self.assertEqual(got["Body"].read(), body)
                self.assertEqual((got["ServerSideEncryption"], got["SSEKMSKeyId"]), ("aws:kms", own))
                head = c.head_object(Bucket=b, Key="k")
                self.assertEqual((head["ServerSideEncryption"], head["SSEKMSKeyId"]), ("aws:kms", own))
        copied = s3.copy_object(Bucket=b, Key="c", CopySource=f"{b}/k", **kms)
        self.assertEqual(copied["SSEKMSKeyId"], own)
        self.assertEqual(s3.get_object(Bucket=b, Key="c")["Body"].read(), body)
        # A plain copy of it is a plain object.
        s3.copy_object(Bucket=b, Key="p", CopySource=f"{b}/k")
        plain = s3.get_object(Bucket=b, Key="p")
        self.assertEqual((plain["ServerSideEncryption"], plain.get("SSEKMSKeyId")), ("AES256", None))
        up = s3.create_multipart_upload(Bucket=b, Key="m", **kms)["UploadId"]
        part = s3.upload_part(Bucket=b, Key="m", UploadId=up, PartNumber=1, Body=body)
        done = s3.complete_multipart_upload(
            Bucket=b, Key="m", UploadId=up,
            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
        self.assertEqual(done["SSEKMSKeyId"], own)
        self.assertEqual(s3.get_object(Bucket=b, Key="m")["SSEKMSKeyId"], own)
        # Another tenant's key id and an unknown one are unknown keys: nothing is written.
        for label, other in [("another tenant's key", foreign), ("unknown key", "testkey-1")]:
            with self.subTest(label):
                with self.assertRaises(ClientError) as e:
                    s3.put_object(Bucket=b, Key="x", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=other)
                self.assertEqual(code_of(e.exception), ("KMS.NotFoundException", 400))
        # A disabled key refuses writes and reads of its objects until enabled again.
        self.assertEqual(kms_key(os.path.join(DEVNET, "tenant.key"), "disable", own)["state"], "disabled")
        for label, call in [
            ("read", lambda: s3.get_object(Bucket=b, Key="k")),
            ("write", lambda: s3.put_object(Bucket=b, Key="y", Body=b"y", **kms)),
        ]:
            with self.subTest(label):
                with self.assertRaises(ClientError) as e:
                    call()
                self.assertEqual(code_of(e.exception), ("KMS.DisabledException", 400))
        kms_key(os.path.join(DEVNET, "tenant.key"), "enable", own)
        self.assertEqual(s3.get_object(Bucket=b, Key="k")["Body"].read(), body)
        for k in ["k", "c", "p", "m"]:
            s3.delete_object(Bucket=b, Key=k)
        s3.delete_bucket(Bucket=b)

    def test_tenant_isolation(self):
        key_b = second_tenant()
        for i, s3, _ in self.each_node():
            with self.subTest(node=i + 1):
                b = name("iso")
                s3.create_bucket(Bucket=b)
                s3.put_object(Bucket=b, Key="secret", Body=b"tenant A only")
                up = s3.create_multipart_upload(Bucket=b, Key="m")["UploadId"]
                for ep in ENDPOINTS:
                    tb = client(ep, key=key_b)
                    self.assertNotIn(b, [x["Name"] for x in tb.list_buckets()["Buckets"]])
                    calls = [
                        lambda: tb.list_objects_v2(Bucket=b),
                        lambda: tb.list_objects(Bucket=b),
                        lambda: tb.get_object(Bucket=b, Key="secret"),
                        lambda: tb.put_object(Bucket=b, Key="x", Body=b"x"),
                        lambda: tb.delete_object(Bucket=b, Key="secret"),
                        lambda: tb.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "secret"}]}),
                        lambda: tb.copy_object(Bucket=b, Key="x", CopySource=f"{b}/secret"),
                        lambda: tb.delete_bucket(Bucket=b),
                        lambda: tb.create_multipart_upload(Bucket=b, Key="x"),
                        lambda: tb.list_multipart_uploads(Bucket=b),
                        lambda: tb.list_parts(Bucket=b, Key="m", UploadId=up),
                        lambda: tb.abort_multipart_upload(Bucket=b, Key="m", UploadId=up),
                        lambda: tb.get_bucket_location(Bucket=b),
                    ]
                    for call in calls:
                        with self.assertRaises(ClientError) as e:
                            call()
                        self.assertEqual(code_of(e.exception), ("AccessDenied", 403))
                    for call in [lambda: tb.head_object(Bucket=b, Key="secret"), lambda: tb.head_bucket(Bucket=b)]:
                        with self.assertRaises(ClientError) as e:
                            call()
                        self.assertEqual(code_of(e.exception)[1], 403)
                    with self.assertRaises(ClientError) as e:
                        tb.create_bucket(Bucket=b)
                    self.assertEqual(code_of(e.exception), ("BucketAlreadyExists", 409))
                # Tenant B's own bucket is equally closed to A.
                own = name("isob")
                client(ENDPOINTS[i], key=key_b).create_bucket(Bucket=own)
                with self.assertRaises(ClientError) as e:
                    s3.list_objects_v2(Bucket=own)
                self.assertEqual(code_of(e.exception), ("AccessDenied", 403))
                client(ENDPOINTS[i], key=key_b).delete_bucket(Bucket=own)
                self.assertEqual(s3.get_object(Bucket=b, Key="secret")["Body"].read(), b"tenant A only")
                s3.abort_multipart_upload(Bucket=b, Key="m", UploadId=up)
                s3.delete_object(Bucket=b, Key="secret")
                s3.delete_bucket(Bucket=b)

    def test_rewrites_keep_last_modified_and_versions_name_their_owners(self):
        """An ACL or tags put on an object (a new metadata entry) keep its Last-Modified in
        HEAD, listings and ListObjectVersions, and for If-Modified-Since; the tags belong
        to the version; and ListObjectVersions names the tenant that wrote each version."""
        key_b = second_tenant()
        s3 = [client(e) for e in ENDPOINTS]
        b = name("mtime")
        s3[0].create_bucket(Bucket=b)
        s3[0].put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{b}/b/*"}],
        }
        s3[0].put_bucket_policy(Bucket=b, Policy=json.dumps(policy))
        tb = client(ENDPOINTS[1 % len(ENDPOINTS)], key=key_b)
        tb.put_object(Bucket=b, Key="b/obj", Body=b"by b")
        vid = s3[0].put_object(Bucket=b, Key="k", Body=b"by a")["VersionId"]
        written = s3[0].head_object(Bucket=b, Key="k")["LastModified"]
        # Last-Modified counts whole seconds: the rewrites must fall in a later one to show.
        time.sleep(1.2)
        s3[1 % len(s3)].put_object_acl(Bucket=b, Key="k", ACL="private")
        tags = {"TagSet": [{"Key": "t", "Value": "1"}]}
        s3[2 % len(s3)].put_object_tagging(Bucket=b, Key="k", Tagging=tags)
        last = s3[len(s3) - 1]
        self.assertEqual(last.head_object(Bucket=b, Key="k")["LastModified"], written)
        self.assertEqual(last.head_object(Bucket=b, Key="k", VersionId=vid)["LastModified"], written)
        self.assertEqual(last.get_object_attributes(Bucket=b, Key="k", ObjectAttributes=["ETag"])["LastModified"], written)
        # Listings show milliseconds, headers whole seconds.
        listed = {o["Key"]: o["LastModified"].replace(microsecond=0) for o in last.list_objects_v2(Bucket=b)["Contents"]}
        self.assertEqual(listed["k"], written)
        versions = last.list_object_versions(Bucket=b)["Versions"]
        self.assertEqual([v["LastModified"].replace(microsecond=0) for v in versions if v["Key"] == "k"], [written])
        with self.assertRaises(ClientError) as e:
            last.get_object(Bucket=b, Key="k", IfModifiedSince=written)
        self.assertEqual(code_of(e.exception)[1], 304)
        self.assertEqual(last.get_object_tagging(Bucket=b, Key="k", VersionId=vid)["TagSet"], tags["TagSet"])
        # The version B wrote is B's (ObjectWriter, the default), as ListObjects says too.
        owner_a = s3[0].list_buckets()["Owner"]["ID"]
        owner_b = tb.list_buckets()["Owner"]["ID"]
        self.assertNotEqual(owner_a, owner_b)
        owners = {v["Key"]: v["Owner"]["ID"] for v in versions}
        self.assertEqual(owners, {"b/obj": owner_b, "k": owner_a})
        listed = {o["Key"]: o["Owner"]["ID"] for o in last.list_objects(Bucket=b)["Contents"]}
        self.assertEqual(listed, owners)
        for v in versions:
            s3[0].delete_object(Bucket=b, Key=v["Key"], VersionId=v["VersionId"])
        s3[0].delete_bucket_policy(Bucket=b)
        s3[0].delete_bucket(Bucket=b)

    def test_a_tenant_copies_another_tenants_granted_objects_into_its_own_bucket(self):
        """CopyObject and UploadPartCopy from another tenant's bucket into one's own, as S3
        allows across accounts: only what the source's policy lets the copier read, never
        a named version; the copy is the copier's, the source stays as it was."""
        key_b = second_tenant()
        a = client(ENDPOINTS[0])
        src, dst = name("xsrc"), name("xdst")
        a.create_bucket(Bucket=src)
        a.put_object(Bucket=src, Key="public/foo", Body=b"granted")
        a.put_object(Bucket=src, Key="private/foo", Body=b"not granted")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{src}/public/*"}],
        }
        a.put_bucket_policy(Bucket=src, Policy=json.dumps(policy))
        b = client(ENDPOINTS[1 % len(ENDPOINTS)], key=key_b)
        b.create_bucket(Bucket=dst)
        owner_a = a.list_buckets()["Owner"]["ID"]
        owner_b = b.list_buckets()["Owner"]["ID"]
        # The source's expected owner is the source bucket's, the destination's its own.
        b.copy_object(Bucket=dst, Key="copy", CopySource={"Bucket": src, "Key": "public/foo"},
                      ExpectedSourceBucketOwner=owner_a, ExpectedBucketOwner=owner_b)
        up = b.create_multipart_upload(Bucket=dst, Key="parts")["UploadId"]
        etag = b.upload_part_copy(Bucket=dst, Key="parts", PartNumber=1, UploadId=up,
                                  CopySource={"Bucket": src, "Key": "public/foo"})["CopyPartResult"]["ETag"]
        for call in [
            lambda: b.copy_object(Bucket=dst, Key="x", CopySource={"Bucket": src, "Key": "private/foo"}),
            lambda: b.upload_part_copy(Bucket=dst, Key="parts", PartNumber=2, UploadId=up,
                                       CopySource={"Bucket": src, "Key": "private/foo"}),
            lambda: b.copy_object(Bucket=dst, Key="x", CopySource={"Bucket": src, "Key": "public/foo", "VersionId": "null"}),
            lambda: b.copy_object(Bucket=dst, Key="x", CopySource={"Bucket": src, "Key": "public/foo"},
                                  ExpectedSourceBucketOwner=owner_b),
        ]:
            with self.assertRaises(ClientError) as e:
                call()
            self.assertEqual(code_of(e.exception), ("AccessDenied", 403))
        b.complete_multipart_upload(Bucket=dst, Key="parts", UploadId=up,
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        reader = client(ENDPOINTS[2 % len(ENDPOINTS)], key=key_b)
        for k in ["copy", "parts"]:
            self.assertEqual(reader.get_object(Bucket=dst, Key=k)["Body"].read(), b"granted")
        self.assertEqual({o["Owner"]["ID"] for o in b.list_objects(Bucket=dst)["Contents"]}, {owner_b})
        self.assertEqual(sorted(o["Key"] for o in a.list_objects_v2(Bucket=src)["Contents"]), ["private/foo", "public/foo"])
        for k in ["copy", "parts"]:
            b.delete_object(Bucket=dst, Key=k)
        b.delete_bucket(Bucket=dst)
        for k in ["public/foo", "private/foo"]:
            a.delete_object(Bucket=src, Key=k)
        a.delete_bucket_policy(Bucket=src)
        a.delete_bucket(Bucket=src)

    # ----- the aws CLI -------------------------------------------------------------------

    def test_aws_cli_big_multipart_and_sync(self):
        e1, e2, e3 = ENDPOINTS[0], ENDPOINTS[1 % len(ENDPOINTS)], ENDPOINTS[2 % len(ENDPOINTS)]
        b = name("cli")
        aws(e1, "s3", "mb", f"s3://{b}")
        self.assertIn(b, aws(e2, "s3", "ls").stdout)
        # A big file: the CLI splits it into 8 MiB parts (multipart upload) and reads it back
        # with ranged GETs, each through another node.
        big = os.path.join(WORK, "big.bin")
        with open(big, "wb") as f:
            for _ in range(BIG_MIB):
                f.write(os.urandom(MIB))
        started = time.time()
        aws(e1, "s3", "cp", "--no-progress", big, f"s3://{b}/big.bin", attempts=5)
        up_s = time.time() - started
        head = json.loads(aws(e3, "s3api", "head-object", "--bucket", b, "--key", "big.bin").stdout)
        self.assertEqual(head["ContentLength"], BIG_MIB * MIB)
        self.assertRegex(head["ETag"], r'^"[0-9a-f]{32}-\d+"$')
        back = os.path.join(WORK, "big-back.bin")
        started = time.time()
        aws(e2, "s3", "cp", "--no-progress", f"s3://{b}/big.bin", back, attempts=5)
        down_s = time.time() - started
        self.assertEqual(sha256_file(big), sha256_file(back))
        print(f"\n  aws s3 cp {BIG_MIB} MiB: up {up_s:.1f} s, down {down_s:.1f} s", flush=True)
        os.remove(back)
        aws(e1, "s3", "rm", f"s3://{b}/big.bin")
        # A server-side copy: above its multipart threshold (8 MiB) the CLI copies with
        # UploadPartCopy, 8 MiB ranges at a time. 20 MiB keeps it quick in a debug build.
        mid = os.urandom(20 * MIB)
        client(e1).put_object(Bucket=b, Key="mid.bin", Body=mid)
        aws(e3, "s3", "cp", "--no-progress", f"s3://{b}/mid.bin", f"s3://{b}/mid-copy.bin", attempts=5)
        copied = client(e2).get_object(Bucket=b, Key="mid-copy.bin")
        self.assertRegex(copied["ETag"], r'^"[0-9a-f]{32}-3"$')
        self.assertEqual(copied["Body"].read(), mid)
        aws(e1, "s3", "rm", f"s3://{b}/mid.bin")
        aws(e1, "s3", "rm", f"s3://{b}/mid-copy.bin")

        # sync of a directory tree, up through one node and down through another.
        tree = os.path.join(WORK, "tree")
        for d in ["", "docs", "docs/deep/er", "img", "with space"]:
            os.makedirs(os.path.join(tree, d), exist_ok=True)
        for j, d in enumerate(["", "docs", "docs/deep/er", "img", "with space"]):
            for k in range(4):
                with open(os.path.join(tree, d, f"file {k}+{j}.txt"), "wb") as f:
                    f.write(os.urandom(1000 * (k + 1) + j))
        with open(os.path.join(tree, "img", "photo.bin"), "wb") as f:
            f.write(os.urandom(3 * MIB))
        aws(e1, "s3", "sync", "--no-progress", tree, f"s3://{b}/tree", attempts=5)
        again = aws(e2, "s3", "sync", "--no-progress", tree, f"s3://{b}/tree", attempts=5)
        self.assertEqual(again.stdout.strip(), "", "a second sync has nothing to upload")
        listed = aws(e3, "s3", "ls", "--recursive", f"s3://{b}/tree/").stdout
        self.assertEqual(len(listed.strip().splitlines()), 21)
        down = os.path.join(WORK, "tree-down")
        aws(e3, "s3", "sync", "--no-progress", f"s3://{b}/tree", down, attempts=5)
        cmp = filecmp.dircmp(tree, down)
        self.assert_same_tree(cmp)
        # Deletions propagate with --delete.
        os.remove(os.path.join(tree, "docs", "file 0+1.txt"))
        aws(e2, "s3", "sync", "--no-progress", "--delete", tree, f"s3://{b}/tree")
        listed = aws(e1, "s3", "ls", "--recursive", f"s3://{b}/tree/").stdout
        self.assertEqual(len(listed.strip().splitlines()), 20)
        # Presign through the CLI.
        url = aws(e1, "s3", "presign", f"s3://{b}/tree/img/photo.bin", "--expires-in", "120").stdout.strip()
        with urllib.request.urlopen(url) as resp:
            self.assertEqual(len(resp.read()), 3 * MIB)
        aws(e3, "s3", "rm", "--recursive", "--only-show-errors", f"s3://{b}/tree")
        aws(e2, "s3", "rb", f"s3://{b}")
        failed = aws(e2, "s3", "ls", f"s3://{b}", check=False)
        self.assertNotEqual(failed.returncode, 0)
        self.assertIn("NoSuchBucket", failed.stderr)

    def test_upload_part_copy(self):
        for i, s3, other in self.each_node():
            with self.subTest(node=i + 1):
                src_b, dst_b = name("pcs"), name("pcd")
                s3.create_bucket(Bucket=src_b)
                s3.create_bucket(Bucket=dst_b)
                source = os.urandom(5 * MIB + 300_000)
                s3.put_object(Bucket=src_b, Key="src", Body=source)
                uid = other.create_multipart_upload(Bucket=dst_b, Key="joined")["UploadId"]
                copy = {"Bucket": src_b, "Key": "src"}
                p1 = other.upload_part_copy(Bucket=dst_b, Key="joined", UploadId=uid, PartNumber=1,
                                            CopySource=copy, CopySourceRange=f"bytes=0-{5 * MIB - 1}")
                middle = os.urandom(5 * MIB)
                p2 = other.upload_part(Bucket=dst_b, Key="joined", UploadId=uid, PartNumber=2, Body=middle)
                p3 = s3.upload_part_copy(Bucket=dst_b, Key="joined", UploadId=uid, PartNumber=3,
                                         CopySource=copy, CopySourceRange=f"bytes={5 * MIB}-{len(source) - 1}")
                self.assertEqual(p1["CopyPartResult"]["ETag"], '"' + hashlib.md5(source[: 5 * MIB]).hexdigest() + '"')
                # A range past the end of the source, and a source that does not exist.
                with self.assertRaises(ClientError) as e:
                    s3.upload_part_copy(Bucket=dst_b, Key="joined", UploadId=uid, PartNumber=4,
                                        CopySource=copy, CopySourceRange=f"bytes={len(source)}-{len(source) + 10}")
                self.assertEqual(code_of(e.exception)[0], "InvalidRange")
                with self.assertRaises(ClientError) as e:
                    s3.upload_part_copy(Bucket=dst_b, Key="joined", UploadId=uid, PartNumber=4,
                                        CopySource={"Bucket": src_b, "Key": "missing"})
                self.assertEqual(code_of(e.exception), ("NoSuchKey", 404))
                parts = [{"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
                         {"PartNumber": 2, "ETag": p2["ETag"]},
                         {"PartNumber": 3, "ETag": p3["CopyPartResult"]["ETag"]}]
                s3.complete_multipart_upload(Bucket=dst_b, Key="joined", UploadId=uid, MultipartUpload={"Parts": parts})
                expected = source[: 5 * MIB] + middle + source[5 * MIB :]
                self.assertEqual(other.get_object(Bucket=dst_b, Key="joined")["Body"].read(), expected)
                for b, keys in ((src_b, ["src"]), (dst_b, ["joined"])):
                    for k in keys:
                        s3.delete_object(Bucket=b, Key=k)
                    s3.delete_bucket(Bucket=b)

    def assert_same_tree(self, cmp):
        self.assertEqual(cmp.left_only, [])
        self.assertEqual(cmp.right_only, [])
        _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
        self.assertEqual((mismatch, errors), ([], []))
        for sub in cmp.subdirs.values():
            self.assert_same_tree(sub)

    # ----- rclone (when Debian's package is installed) -----------------------------------

    @unittest.skipUnless(shutil.which("rclone"), "rclone is not installed")
    def test_rclone(self):
        b = name("rcl")
        client(ENDPOINTS[0]).create_bucket(Bucket=b)
        src = os.path.join(WORK, "rclone-src")
        os.makedirs(os.path.join(src, "sub"), exist_ok=True)
        for k in range(5):
            with open(os.path.join(src, "sub" if k % 2 else "", f"r{k}.dat"), "wb") as f:
                f.write(os.urandom(20_000 * (k + 1)))
        for i, ep in enumerate(ENDPOINTS):
            env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
            env.update(
                RCLONE_CONFIG_XN_TYPE="s3",
                RCLONE_CONFIG_XN_PROVIDER="Other",
                RCLONE_CONFIG_XN_ACCESS_KEY_ID=KEY_A["access_key_id"],
                RCLONE_CONFIG_XN_SECRET_ACCESS_KEY=KEY_A["secret_access_key"],
                RCLONE_CONFIG_XN_ENDPOINT=ep,
                RCLONE_CONFIG_XN_REGION="us-east-1",
                RCLONE_CONFIG_XN_FORCE_PATH_STYLE="true",
                RCLONE_CONFIG=os.path.join(WORK, "rclone.conf"),
            )
            def rc(*args):
                r = subprocess.run(["rclone", *args], env=env, capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, f"rclone {args}: {r.stderr}")
                return r.stdout
            with self.subTest(node=i + 1):
                rc("copy", src, f"xn:{b}/n{i}")
                rc("check", src, f"xn:{b}/n{i}")
                listed = rc("lsf", "-R", f"xn:{b}/n{i}")
                self.assertIn("sub/r1.dat", listed)
                dst = os.path.join(WORK, f"rclone-dst-{i}")
                rc("copy", f"xn:{b}/n{i}", dst)
                self.assert_same_tree(filecmp.dircmp(src, dst))
                rc("purge", f"xn:{b}/n{i}")
        client(ENDPOINTS[0]).delete_bucket(Bucket=b)

    # ----- a node dies during a multipart upload (runs last: it kills a node) ------------

    def test_zz_node_killed_during_multipart_upload(self):
        if len(NODES) < 3:
            self.skipTest("needs 3 nodes")
        victim = NODES[2]
        s_victim = client(victim["s3_url"])
        s1, s2 = client(ENDPOINTS[0]), client(ENDPOINTS[1])
        b = name("kill")
        s1.create_bucket(Bucket=b)
        part1, part2 = os.urandom(5 * MIB), os.urandom(2 * MIB)
        uid = s_victim.create_multipart_upload(Bucket=b, Key="survivor")["UploadId"]
        e1 = s_victim.upload_part(Bucket=b, Key="survivor", UploadId=uid, PartNumber=1, Body=part1)["ETag"]
        os.kill(victim["pid"], signal.SIGKILL)
        # The upload carries on through the other nodes.
        e2 = s1.upload_part(Bucket=b, Key="survivor", UploadId=uid, PartNumber=2, Body=part2)["ETag"]
        parts = s2.list_parts(Bucket=b, Key="survivor", UploadId=uid)["Parts"]
        self.assertEqual([p["PartNumber"] for p in parts], [1, 2])
        self.assertEqual(s2.list_objects_v2(Bucket=b)["KeyCount"], 0, "nothing visible before Complete")
        s2.complete_multipart_upload(Bucket=b, Key="survivor", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
        self.assertEqual(s1.get_object(Bucket=b, Key="survivor")["Body"].read(), part1 + part2)
        # An upload whose only copy of a part was never acknowledged cannot half-complete:
        # completing with a part that was never stored fails cleanly and leaves nothing.
        uid2 = s1.create_multipart_upload(Bucket=b, Key="half")["UploadId"]
        e = s1.upload_part(Bucket=b, Key="half", UploadId=uid2, PartNumber=1, Body=part1)["ETag"]
        with self.assertRaises(ClientError) as err:
            s2.complete_multipart_upload(Bucket=b, Key="half", UploadId=uid2, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}, {"PartNumber": 2, "ETag": e2}]})
        self.assertEqual(code_of(err.exception), ("InvalidPart", 400))
        with self.assertRaises(ClientError) as err:
            s1.head_object(Bucket=b, Key="half")
        self.assertEqual(code_of(err.exception)[1], 404)
        s2.abort_multipart_upload(Bucket=b, Key="half", UploadId=uid2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
