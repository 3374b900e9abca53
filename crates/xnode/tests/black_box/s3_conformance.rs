//! The S3 conformance gate: the tests of the ceph/s3-tests suite listed in
//! `crates/s3/tests/conformance/gate.txt` must all pass against a fresh 3-node devnet of
//! this binary (`crates/s3/tests/conformance/run.py --gate`; `scripts/s3-conformance.sh`
//! runs the whole suite by hand).
//!
//! The suite is not part of the repository: it is read from `../shared/conformance` beside
//! the repository (or `XNODE_CONFORMANCE_DIR`), and its Python requirements from the
//! virtualenv `scripts/test.sh` prepares (`XNODE_S3TESTS_PYTHON`). Without either, the
//! test is skipped with a message, except under `CI`, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

fn conformance_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("XNODE_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    };
    dir.join("s3-tests").is_dir().then_some(dir)
}

/// The interpreter with the suite's requirements, or `None` to skip.
fn python() -> Option<String> {
    let python = std::env::var("XNODE_S3TESTS_PYTHON").ok()?;
    let ok = Command::new(&python)
        .args(["-c", "import pytest, boto3, munch, isodate"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "XNODE_S3TESTS_PYTHON={python} cannot import the suite's requirements"
    );
    Some(python)
}

/// Skips the test with `message`, or fails it under CI (where the suite must run).
fn skip(message: &str) {
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
        panic!("the S3 conformance gate cannot run: {message}");
    }
    eprintln!("SKIPPED: {message}");
}

#[test]
fn s3_conformance_gate() {
    let Some(dir) = conformance_dir() else {
        skip(
            "no conformance suite at ../shared/conformance beside the repository (set XNODE_CONFORMANCE_DIR)",
        );
        return;
    };
    let Some(python) = python() else {
        skip(
            "XNODE_S3TESTS_PYTHON is not set (scripts/test.sh installs the suite's requirements and sets it)",
        );
        return;
    };
    let conformance = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../s3/tests/conformance");
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut command = Command::new(&python);
    command
        .arg(conformance.join("run.py"))
        .arg("--xnode")
        .arg(env!("CARGO_BIN_EXE_xnode"))
        .arg("--suite")
        .arg(dir.join("s3-tests"))
        .arg("--gate")
        .arg(conformance.join("gate.txt"))
        .arg("--out")
        .arg(out.path());
    let tsv = dir.join("s3-tests-results-78bc5cc.tsv");
    if tsv.exists() {
        command.arg("--tsv").arg(tsv);
    }
    let run = command.output().unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    eprintln!(
        "{output}\nthe conformance gate ran in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if !run.status.success() {
        let log = std::fs::read_to_string(out.path().join("pytest.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().collect();
        eprintln!(
            "--- pytest output (last 200 lines) ---\n{}",
            tail[tail.len().saturating_sub(200)..].join("\n")
        );
    }
    assert!(
        run.status.success(),
        "the S3 conformance gate failed (see above)"
    );
}
