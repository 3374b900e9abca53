"""A pytest plugin loaded beside the unmodified ceph/s3-tests suite (`-p xnode_s3tests_plugin`).

It does two things and changes no test:

1. Records how every test ended (passed, failed or skipped, with the first line of the
   reason) into the JSON-lines file named by XNODE_S3TESTS_RESULTS, as each test ends,
   so that run.py can count passes per feature and check the gate list.
2. Keeps the suite's own cleanup working while the gateway has no versioning: the
   suite's `nuke_bucket` lists every bucket with ListObjectVersions, which answers
   501 NotImplemented until versioning is built. Only for that answer, the listing falls
   back to ListObjectsV2 (every object as its only, "null", version). Once
   ListObjectVersions works the fallback is never taken.
"""

import json
import os

import pytest

_results = {}


def _fallback_list_versions(original):
    from botocore.exceptions import ClientError

    def list_versions(client, bucket, batch_size):
        try:
            # The first page decides: a gateway with versioning answers it.
            for batch in original(client, bucket, batch_size):
                yield batch
            return
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "NotImplemented":
                raise
        token = None
        while True:
            kwargs = {"Bucket": bucket, "MaxKeys": batch_size}
            if token:
                kwargs["ContinuationToken"] = token
            listing = client.list_objects_v2(**kwargs)
            objs = [{"Key": o["Key"]} for o in listing.get("Contents", [])]
            if objs:
                yield objs
            if not listing.get("IsTruncated"):
                break
            token = listing.get("NextContinuationToken")

    return list_versions


def pytest_configure(config):
    try:
        import s3tests.functional as functional
    except ImportError:
        return
    if not getattr(functional.list_versions, "_xnode_fallback", False):
        patched = _fallback_list_versions(functional.list_versions)
        patched._xnode_fallback = True
        functional.list_versions = patched


def _first_line(report):
    text = getattr(report, "longreprtext", "") or ""
    if report.skipped and isinstance(report.longrepr, tuple):
        text = str(report.longrepr[2])
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    # The most telling line of a failure is the last "E   ..." line (the exception).
    errors = [l[1:].strip() for l in lines if l.startswith("E ")]
    line = errors[-1] if errors else (lines[-1] if lines else "")
    return line[:300]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report):
    name = report.nodeid.split("::", 1)[-1]
    entry = _results.setdefault(name, {"test": name, "status": None, "message": "", "seconds": 0.0})
    entry["seconds"] = round(entry["seconds"] + report.duration, 2)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.passed:
            entry["status"] = "passed"
        elif report.skipped:
            entry["status"] = "skipped"
            entry["message"] = _first_line(report)
        else:
            entry["status"] = "failed"
            entry["message"] = _first_line(report)
    elif report.when == "teardown" and report.failed and entry["status"] != "failed":
        # The suite's cleanup failing means the gateway left state it should not have.
        entry["status"] = "failed"
        entry["message"] = "teardown: " + _first_line(report)
    if report.when == "teardown":
        # Written as each test ends, so that an interrupted run keeps what it learned
        # (a later line for the same test replaces an earlier one).
        _append(entry)


def _append(entry):
    path = os.environ.get("XNODE_S3TESTS_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("XNODE_S3TESTS_RESULTS")
    if not path:
        return
    with open(path, "w") as f:
        for entry in _results.values():
            f.write(json.dumps(entry) + "\n")
