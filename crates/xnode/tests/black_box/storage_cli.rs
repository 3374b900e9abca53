//! Black-box test of the storage commands against real node processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn run(args: &[&str], key: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(xnode())
        .args(args)
        .env("XNODE_TENANT_KEY", key)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn put_get_ls_rm_through_different_nodes() {
    let root = tempfile::tempdir().unwrap();
    let procs = start_cluster(root.path(), 3);
    wait_converged(&procs, 3);
    let key = root.path().join("tenant.key");
    let (ok, out, err) = run(&["key", "new", "--json"], &key);
    assert!(ok, "{err}");
    let tenant: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(tenant["tenant"].as_str().unwrap().len(), 64);
    let (ok, _, err) = run(&["key", "new"], &key);
    assert!(!ok && err.contains("already exists"), "{err}");

    let (a, b, c) = (&procs[0].api_url, &procs[1].api_url, &procs[2].api_url);
    let (ok, out, err) = run(&["bucket", "create", "backups", "--api", a], &key);
    assert!(ok && out.contains("created bucket backups"), "{out}{err}");
    // The bucket reaches the other nodes by gossip.
    wait_until("the bucket to spread", Duration::from_secs(5), || {
        run(&["bucket", "ls", "--api", c], &key)
            .1
            .contains("backups")
    });

    let file = root.path().join("payload.bin");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let (ok, out, err) = run(
        &[
            "put",
            file.to_str().unwrap(),
            "backups/2026/payload.bin",
            "--api",
            a,
        ],
        &key,
    );
    assert!(
        ok && out.contains("stored backups/2026/payload.bin: 3000000 bytes"),
        "{out}{err}"
    );
    let copy = root.path().join("copy.bin");
    let (ok, out, err) = run(
        &[
            "get",
            "backups/2026/payload.bin",
            copy.to_str().unwrap(),
            "--api",
            b,
        ],
        &key,
    );
    assert!(ok, "{out}{err}");
    assert_eq!(std::fs::read(&copy).unwrap(), data);
    // `-` as the file is standard output, not a file named `-`.
    let out = Command::new(xnode())
        .args(["get", "backups/2026/payload.bin", "-", "--api", b])
        .env("XNODE_TENANT_KEY", &key)
        .current_dir(root.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, data);
    assert!(!root.path().join("-").exists());
    let (ok, out, _) = run(&["ls", "backups/2026/", "--api", c], &key);
    assert!(
        ok && out.contains("2026/payload.bin") && out.contains("3000000"),
        "{out}"
    );
    let (ok, out, _) = run(&["ls", "backups", "--json", "--api", c], &key);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Errors are one clear line with a non-zero exit.
    let (ok, _, err) = run(&["get", "backups/nope", "--api", b], &key);
    assert!(
        !ok && err.starts_with("error: ") && err.contains("no_such_key"),
        "{err}"
    );
    let (ok, _, err) = run(&["bucket", "rm", "backups", "--api", b], &key);
    assert!(!ok && err.contains("bucket_not_empty"), "{err}");
    let stranger = root.path().join("stranger.key");
    run(&["key", "new"], &stranger);
    let (ok, _, err) = run(&["get", "backups/2026/payload.bin", "--api", b], &stranger);
    assert!(!ok && err.contains("access_denied"), "{err}");
    let (ok, _, err) = run(
        &["get", "backups/x", "--api", b],
        &root.path().join("missing.key"),
    );
    assert!(!ok && err.contains("xnode key new"), "{err}");

    let (ok, out, _) = run(&["rm", "backups/2026/payload.bin", "--api", c], &key);
    assert!(ok && out.contains("deleted"), "{out}");
    let (ok, out, err) = run(&["bucket", "rm", "backups", "--api", a], &key);
    assert!(ok, "{out}{err}");
    let (ok, out, _) = run(&["storage", "health", "--api", a], &key);
    assert!(ok && out.contains("under_replicated_chunks"), "{out}");
}

/// A command whose reader has gone (`xnode nodes | head`) ends quietly with the status a
/// shell gives a command killed by SIGPIPE, not with a panic and its backtrace.
#[test]
fn a_command_printing_into_a_closed_pipe_ends_quietly() {
    let root = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    // No one will ever read: every write to the pipe fails with EPIPE.
    drop(reader);
    let out = Command::new(xnode())
        .args(["key", "new"])
        .env("XNODE_TENANT_KEY", root.path().join("tenant.key"))
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}
