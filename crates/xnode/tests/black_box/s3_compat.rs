//! S3 compatibility with real clients: starts a 3-node devnet (real `xnode` processes, each
//! with an S3 port and the devnet's S3 key) and runs the boto3, aws CLI and rclone suite
//! `crates/s3/tests/compat/test_s3.py` against it, through every node.
//!
//! The Python side needs boto3 and the aws CLI. `scripts/test.sh` installs them into a
//! virtualenv and points `XNODE_S3_PYTHON` at it; without that variable the test uses
//! `python3` from `PATH` if it has them, and is skipped (with a message) otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;

/// The Python interpreter to run the suite with, or `None` to skip.
fn python() -> Option<String> {
    let has_clients = |python: &str| {
        Command::new(python)
            .args(["-c", "import boto3, awscli"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Ok(python) = std::env::var("XNODE_S3_PYTHON") {
        assert!(
            has_clients(&python),
            "XNODE_S3_PYTHON={python} cannot import boto3 and awscli"
        );
        return Some(python);
    }
    has_clients("python3").then(|| "python3".to_string())
}

#[test]
fn s3_clients_work_through_every_node() {
    let Some(python) = python() else {
        eprintln!(
            "SKIPPED: boto3 and the aws CLI are not installed (scripts/test.sh installs them)"
        );
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("devnet");
    // This suite checks S3 compatibility, not failure detection. Three debug-built nodes
    // moving tens of MiB through each other on 2 cores starve the failure detector's 200 ms
    // probes: with production timings nodes get declared dead for a moment, the devnet's
    // 10 s repair grace expires, and repair traffic slows every request for minutes.
    // Relaxed timings (as `xnode start --config` allows) keep the suite about S3.
    let config = root.path().join("relaxed-failure-detector.toml");
    std::fs::write(
        &config,
        "[swim]\nprobe_interval = 500\nprobe_timeout = 1500\nindirect_probes = 3\n\
         indirect_timeout = 2500\nsuspicion_max = 15000\nsuspicion_min = 5000\n\
         dead_probe_interval = 2000\n",
    )
    .unwrap();
    let mut child = Command::new(xnode())
        .env("XNODE_CONFIG", &config)
        .args([
            "devnet",
            "--nodes",
            "3",
            "--api-port",
            "0",
            "--p2p-port",
            "0",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut output = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !output.contains("S3, with an access key") {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                output.push_str(&line);
                output.push('\n');
            }
            Err(_) => panic!("the devnet never printed its S3 key; output so far:\n{output}"),
        }
    }

    let suite = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../s3/tests/compat");
    let big_mib = std::env::var("XNODE_S3_BIG_MIB").unwrap_or_else(|_| "40".into());
    // The aws CLI sits beside the interpreter in a virtualenv.
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(bin) = std::path::Path::new(&python)
        .parent()
        .filter(|p| p.is_absolute())
    {
        let mut dirs = vec![bin.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        path = std::env::join_paths(dirs).unwrap();
    }
    let started = Instant::now();
    let run = Command::new(&python)
        .args(["-m", "unittest", "-v", "test_s3"])
        .current_dir(&suite)
        .env("XNODE_BIN", xnode())
        .env("XNODE_DEVNET_DIR", &dir)
        .env("XNODE_BIG_MIB", &big_mib)
        .env("PYTHONUNBUFFERED", "1")
        .env("PATH", path)
        .output()
        .unwrap();
    let suite_output = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let status = run.status;
    eprintln!(
        "S3 compatibility suite ran in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    if status.success() {
        eprintln!("{suite_output}");
    } else {
        // The most telling lines first (a CI log may show only the start of the output):
        // which checks failed and why, what the devnet said after start-up (node exits,
        // say) and what each node logged; then the suite's whole output.
        let headlines: Vec<&str> = suite_output
            .lines()
            .filter(|l| {
                l.starts_with("FAIL:")
                    || l.starts_with("ERROR:")
                    || l.contains("Error:")
                    || l.contains("failed:")
            })
            .collect();
        eprintln!("--- failed checks ---\n{}", headlines.join("\n"));
        while let Ok(line) = rx.try_recv() {
            output.push_str(&line);
            output.push('\n');
        }
        let after_start = output
            .split_once("S3, with an access key")
            .map_or("", |(_, rest)| rest);
        eprintln!("--- devnet output after start-up ---\n{after_start}");
        for index in 1..=3 {
            let log_path = dir.join(format!("node-{index}")).join("node.log");
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let notable: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.contains("panicked") || l.contains("ERROR") || l.contains("WARN"))
                .collect();
            eprintln!(
                "--- node {index}: {} warnings/errors (last 40) ---\n{}",
                notable.len(),
                notable[notable.len().saturating_sub(40)..].join("\n")
            );
            eprintln!(
                "--- node {index}: last 20 log lines ---\n{}",
                lines[lines.len().saturating_sub(20)..].join("\n")
            );
        }
        eprintln!("--- the suite's output ---\n{suite_output}");
    }
    let _ = writeln!(stdin, "quit");
    let stop = Instant::now() + Duration::from_secs(15);
    while Instant::now() < stop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        status.success(),
        "the S3 compatibility suite failed (see above)"
    );
}
