"""Runs the ceph/s3-tests conformance suite against a fresh 3-node Xnode devnet.

Called by scripts/s3-conformance.sh (which prepares the virtualenv and the binary) and by
the `s3_conformance` test of crates/xnode. Steps:

1. `xnode devnet --nodes 3 --zones xnode-devnet` (one region of three nodes, the suite's
   `api_name`) on free ports, with relaxed failure-detector timings (the
   suite is about S3, not about a busy debug build's probes);
2. three tenants, as the suite wants: main (the devnet's own tenant and S3 key), alt and
   tenant (new tenant keys, each with an S3 key registered on every node);
3. an s3tests.conf pointing at one node's S3 port (--node);
4. pytest on s3tests/functional/test_s3.py, unmodified, with our plugin
   (xnode_s3tests_plugin.py: records results, cleanup without ListObjectVersions);
5. a table of passes per feature (the feature of each test comes from the results TSV of
   the 78bc5cc run, shown beside), written to --out, and with --gate, a failure unless
   every test of the gate list passed.
"""

import argparse
import collections
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE_FILE = "s3tests/functional/test_s3.py"
TOTAL_ITEMS = 835
# Every devnet node runs in this one zone, so the region holds all three nodes and a
# bucket pinned to it (`LocationConstraint`, the suite's `api_name`) keeps its three
# copies there. The default devnet puts each node in a zone of its own, where no pin of
# three copies can be met.
REGION = "xnode-devnet"

# A lifecycle "day" of 10 s, the suite's default `lc_debug_interval` (the suite waits a
# few such days for rules to act), as RGW's `rgw_lc_debug_interval` does. Server access
# logs roll after 3 s: the suite waits 5.5 s (`expected_object_roll_time` * 1.1) for a
# log object, then lists the target bucket at once, so the records it made must be
# delivered by then and the one it makes next must not.
RELAXED_SWIM = (
    's3_lifecycle_day = "10s"\n'
    's3_access_log_roll = "3s"\n'
    "[swim]\nprobe_interval = 500\nprobe_timeout = 1500\nindirect_probes = 3\n"
    "indirect_timeout = 2500\nsuspicion_max = 15000\nsuspicion_min = 5000\n"
    "dead_probe_interval = 2000\n"
)


def log(msg):
    print(f"==> {msg}", flush=True)


class Devnet:
    """`xnode devnet` as a child process, stopped with `quit` on its prompt."""

    def __init__(self, xnode, workdir, nodes):
        self.xnode = xnode
        self.dir = os.path.join(workdir, "devnet")
        config = os.path.join(workdir, "relaxed-failure-detector.toml")
        with open(config, "w") as f:
            f.write(RELAXED_SWIM)
        env = dict(os.environ, XNODE_CONFIG=config)
        self.proc = subprocess.Popen(
            [xnode, "devnet", "--nodes", str(nodes), "--api-port", "0", "--p2p-port", "0",
             "--zones", REGION, "--dir", self.dir],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, text=True,
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        output = []
        deadline = time.time() + 90
        while not any("S3, with an access key" in l for l in output):
            try:
                output.append(self.lines.get(timeout=max(0.1, deadline - time.time())))
            except queue.Empty:
                self.stop()
                raise RuntimeError("the devnet never printed its S3 key:\n" + "".join(output))
        with open(os.path.join(self.dir, "devnet.json")) as f:
            self.nodes = json.load(f)["nodes"]
        with open(os.path.join(self.dir, "s3-key.json")) as f:
            self.main_key = json.load(f)

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def xn(self, *args):
        out = subprocess.run([self.xnode, *args], check=True, capture_output=True, text=True)
        return out.stdout

    def tenant(self, key_file):
        """A tenant: its id, and an S3 key registered on every node."""
        if not os.path.exists(key_file):
            self.xn("key", "new", "--file", key_file)
        tenant_id = json.loads(self.xn("key", "tenant", "--file", key_file, "--json"))
        apis = [a for n in self.nodes for a in ("--api", n["api_url"])]
        key = json.loads(self.xn("key", "s3", "create", "--tenant-key", key_file, "--json", *apis))
        return tenant_id, key

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=20)
            except Exception:
                self.proc.kill()
                self.proc.wait()


def tenant_id_of(value):
    """`xnode key tenant --json` prints the id; accept a bare string or an object."""
    if isinstance(value, str):
        return value
    for k in ("tenant", "tenant_id", "id", "public_key"):
        if k in value:
            return value[k]
    raise RuntimeError(f"cannot read a tenant id from {value!r}")


def display_name(tenant_hex):
    # As the gateway returns Owner (gateway::tenant_owner).
    return f"xnode-tenant-{tenant_hex[:16]}"


def write_conf(path, endpoint, main, alt, tenant, kms_keys):
    host, port = endpoint.rsplit("//", 1)[1].rsplit(":", 1)

    def section(name, who, email, extra=""):
        tid, key = who
        return (
            f"[{name}]\ndisplay_name = {display_name(tid)}\nuser_id = {tid}\nemail = {email}\n"
            f"access_key = {key['access_key_id']}\nsecret_key = {key['secret_access_key']}\n{extra}\n"
        )

    text = (
        f"[DEFAULT]\nhost = {host}\nport = {port}\nis_secure = False\nssl_verify = False\n\n"
        "[fixtures]\nbucket prefix = xnt-{random}-\niam name prefix = s3-tests-\n"
        "iam path prefix = /s3-tests/\n\n"
        + section("s3 main", main, "tenant-a@example.com",
                  f"api_name = {REGION}\nkms_keyid = {kms_keys[0]}\nkms_keyid2 = {kms_keys[1]}\n")
        + section("s3 alt", alt, "tenant-b@example.com")
        + section("s3 tenant", tenant, "tenant-c@example.com", "tenant = testx\n")
        # Xnode has no IAM: these point at the main tenant's key so the file parses.
        + section("iam", main, "tenant-a@example.com")
        + section("iam root", main, "tenant-a@example.com")
        + section("iam alt root", alt, "tenant-b@example.com")
    )
    with open(path, "w") as f:
        f.write(text)


def read_tsv(path):
    """test name -> row of the 78bc5cc results (status, kind, feature, ...)."""
    rows = {}
    if not path or not os.path.exists(path):
        return rows
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            rows[row["test"]] = row
    return rows


def read_gate(path):
    names = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                names.append(line)
    return names


def summarize(results, baseline, out_dir, label):
    """Writes results.tsv and summary.md, prints the table, returns the counts."""
    by_feature = collections.OrderedDict()
    for name, row in sorted(baseline.items(), key=lambda r: (r[1]["kind"], r[1]["feature"])):
        by_feature.setdefault(row["feature"], {"kind": row["kind"], "passed": 0, "failed": 0,
                                               "skipped": 0, "before": 0, "ran": 0})
    totals = collections.Counter()
    rows = []
    for name, entry in sorted(results.items()):
        base = baseline.get(name, {"kind": "unmapped", "feature": "unmapped", "status": "", "marks": ""})
        f = by_feature.setdefault(base["feature"], {"kind": base["kind"], "passed": 0, "failed": 0,
                                                    "skipped": 0, "before": 0, "ran": 0})
        status = entry["status"] or "failed"
        f[status] += 1
        f["ran"] += 1
        totals[status] += 1
        rows.append((status, base["kind"], base["feature"], name, base.get("marks", ""),
                     entry.get("message", "").replace("\t", " ").replace("\n", " "),
                     f"{entry.get('seconds', 0):.1f}"))
    for name, row in baseline.items():
        if row["status"] == "passed" and row["feature"] in by_feature:
            by_feature[row["feature"]]["before"] += 1
    with open(os.path.join(out_dir, "results.tsv"), "w") as f:
        f.write("status\tkind\tfeature\ttest\tmarks\tmessage\tseconds\n")
        for r in rows:
            f.write("\t".join(r) + "\n")
    lines = [
        f"| feature | kind | passed | failed | skipped | 78bc5cc passed |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for feature, f in by_feature.items():
        if f["ran"] == 0:
            continue
        lines.append(f"| {feature} | {f['kind']} | {f['passed']} | {f['failed']} | "
                     f"{f['skipped']} | {f['before']} |")
    ran = sum(totals.values())
    lines.append(f"| **total** ({label}) | | **{totals['passed']}** | {totals['failed']} | "
                 f"{totals['skipped']} | {sum(1 for r in baseline.values() if r['status'] == 'passed')} |")
    table = "\n".join(lines)
    claimed = [r for r in rows if r[1] == "supported"]
    claimed_pass = sum(1 for r in claimed if r[0] == "passed")
    text = (
        f"{table}\n\n{totals['passed']} of {ran} run passed"
        + (f" ({100 * totals['passed'] / TOTAL_ITEMS:.1f} % of {TOTAL_ITEMS})" if ran >= TOTAL_ITEMS else "")
        + f"; claimed features (kind supported): {claimed_pass} of {len(claimed)} passed.\n"
    )
    regressions = [r[3] for r in rows if r[0] != "passed" and baseline.get(r[3], {}).get("status") == "passed"]
    if regressions:
        text += "\nPassed at 78bc5cc, not now:\n" + "".join(f"- {n}\n" for n in regressions)
    failing_claimed = [f"- {r[3]}: {r[5][:160]}" for r in claimed if r[0] != "passed"]
    if failing_claimed:
        text += "\nNot passing in claimed features:\n" + "\n".join(failing_claimed) + "\n"
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(text)
    print("\n" + text, flush=True)
    return totals


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--xnode", required=True, help="the xnode binary")
    p.add_argument("--suite", required=True, help="the ceph/s3-tests checkout")
    p.add_argument("--tsv", help="per-test results of an earlier run (feature mapping)")
    p.add_argument("--gate", help="run only the tests of this gate list; fail unless all pass")
    p.add_argument("--node", type=int, default=1, help="the node whose S3 port the suite uses")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--out", default=None, help="where results and logs go")
    p.add_argument("--keep", action="store_true", help="keep the devnet's data and logs")
    p.add_argument("pytest_args", nargs="*", help="more pytest arguments (-k EXPR, test names)")
    args = p.parse_args()

    out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="xnode-s3tests-"))
    args.suite = os.path.abspath(args.suite)
    os.makedirs(out, exist_ok=True)
    if args.gate and not read_gate(args.gate):
        raise SystemExit(f"the gate list {args.gate} names no test")
    work = tempfile.mkdtemp(prefix="xnode-s3tests-work-")
    log(f"starting a {args.nodes}-node devnet (results in {out})")
    started = time.time()
    devnet = Devnet(os.path.abspath(args.xnode), work, args.nodes)
    try:
        main_tenant = (tenant_id_of(json.loads(devnet.xn(
            "key", "tenant", "--file", os.path.join(devnet.dir, "tenant.key"), "--json"))),
            devnet.main_key)
        alt = devnet.tenant(os.path.join(work, "alt.key"))
        alt = (tenant_id_of(alt[0]), alt[1])
        ten = devnet.tenant(os.path.join(work, "tenant.key"))
        ten = (tenant_id_of(ten[0]), ten[1])
        node = devnet.nodes[args.node - 1]
        # The suite's two KMS keys (`kms_keyid`, `kms_keyid2`): real keys of the main
        # tenant, made through the node the suite uses, as a user makes them.
        kms_keys = [json.loads(devnet.xn(
            "kms", "create-key", "--tenant-key", os.path.join(devnet.dir, "tenant.key"),
            "--api", node["api_url"], "--json"))["id"] for _ in range(2)]
        conf = os.path.join(out, "s3tests.conf")
        write_conf(conf, node["s3_url"], main_tenant, alt, ten, kms_keys)
        log(f"devnet up in {time.time() - started:.0f} s; the suite goes through node {args.node} "
            f"({node['s3_url']})")

        selection = [SUITE_FILE]
        gate = None
        if args.gate:
            gate = read_gate(args.gate)
            selection = [f"{SUITE_FILE}::{name}" for name in gate]
        results_path = os.path.join(out, "results.jsonl")
        if os.path.exists(results_path):
            os.remove(results_path)
        env = dict(os.environ, S3TEST_CONF=conf, XNODE_S3TESTS_RESULTS=results_path,
                   PYTHONPATH=os.pathsep.join([HERE, args.suite, os.environ.get("PYTHONPATH", "")]),
                   PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        # Never pick up the caller's AWS settings: the suite's clients take keys from the conf.
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_CONFIG_FILE",
                  "AWS_ENDPOINT_URL"):
            env.pop(k, None)
        env["AWS_CONFIG_FILE"] = os.path.join(work, "no-aws-config")
        env["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(work, "no-aws-credentials")
        cmd = [sys.executable, "-m", "pytest", "-p", "xnode_s3tests_plugin", "-q", "-rN",
               "--tb=short", "-p", "no:cacheprovider", *selection, *args.pytest_args]
        log(f"pytest ({len(selection) if gate else 'all'} selected)")
        t0 = time.time()
        with open(os.path.join(out, "pytest.log"), "w") as logf:
            subprocess.run(cmd, cwd=args.suite, env=env, stdout=logf, stderr=subprocess.STDOUT)
        elapsed = time.time() - t0
        results = {}
        if os.path.exists(results_path):
            with open(results_path) as f:
                for line in f:
                    e = json.loads(line)
                    results[e["test"]] = e
        baseline = read_tsv(args.tsv)
        label = "gate" if gate else ("selection" if args.pytest_args else "full suite")
        summarize(results, baseline, out, label)
        log(f"the suite ran in {elapsed:.0f} s")
        if gate is not None:
            failed = [n for n in gate if results.get(n, {}).get("status") != "passed"]
            if failed:
                print(f"\nGATE FAILED: {len(failed)} of {len(gate)} gate tests did not pass:")
                for n in failed:
                    e = results.get(n, {})
                    print(f"  {n}: {e.get('status') or 'not run'} {e.get('message', '')}")
                print(f"(pytest output and node logs in {out})")
                return 1
            print(f"\ngate passed: all {len(gate)} tests")
        return 0
    finally:
        devnet.stop()
        if args.keep:
            print(f"devnet data and node logs kept in {devnet.dir}")
        else:
            # Node logs go beside the results; the data (chunk files) goes.
            for n in devnet.nodes:
                if os.path.exists(n.get("log", "")):
                    shutil.copy(n["log"], os.path.join(out, f"node-{n['index']}.log"))
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
