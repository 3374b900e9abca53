//! Black-box tests: the real `xnode` binary, started as processes, killed with signals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use nix::sys::signal::Signal;

#[test]
fn five_processes_converge_detect_a_kill_and_a_graceful_stop_and_rejoin() {
    let root = tempfile::tempdir().unwrap();
    let mut procs = start_cluster(root.path(), 5);
    let last_start = Instant::now();
    let ids: Vec<String> = procs.iter().map(|p| node_id(&p.api_url)).collect();
    let converged = wait_until("5 nodes to converge", Duration::from_secs(10), || {
        all_alive(&procs, 5)
    });
    let since_last_start = last_start.elapsed();
    eprintln!(
        "converged {since_last_start:?} after the last process started ({converged:?} after all APIs answered)"
    );
    assert!(
        since_last_start < Duration::from_secs(3),
        "convergence took {since_last_start:?}"
    );

    // kill -9 node 4: every survivor reports it dead within 2 s.
    procs[4].stop_with(Signal::SIGKILL);
    let killed_at = Instant::now();
    wait_until(
        "every survivor to report the killed node dead",
        Duration::from_secs(5),
        || {
            procs[..4]
                .iter()
                .all(|p| state_of(&p.api_url, &ids[4]).as_deref() == Some("dead"))
        },
    );
    let detection = killed_at.elapsed();
    eprintln!("kill -9 detected by every survivor in {detection:?}");
    assert!(
        detection < Duration::from_secs(2),
        "detection took {detection:?}"
    );

    // SIGTERM node 3: survivors report it left within 1 s.
    let status = procs[3].stop_with(Signal::SIGTERM);
    assert!(status.success(), "graceful stop exits 0, got {status}");
    let stopped_at = Instant::now();
    wait_until(
        "every survivor to report the stopped node left",
        Duration::from_secs(3),
        || {
            procs[..3]
                .iter()
                .all(|p| state_of(&p.api_url, &ids[3]).as_deref() == Some("left"))
        },
    );
    let left = stopped_at.elapsed();
    eprintln!("graceful stop seen as left in {left:?}");
    assert!(left < Duration::from_secs(1), "left took {left:?}");
    assert!(
        procs[3].log().contains("stopped"),
        "log:\n{}",
        procs[3].log()
    );

    // Restart both: same ids, higher incarnations, alive everywhere.
    for i in [3, 4] {
        procs[i].start();
        std::thread::sleep(Duration::from_millis(500));
        if get(&procs[i].api_url, "/healthz").is_none() {
            std::thread::sleep(Duration::from_secs(3));
            eprintln!("restart log of node {i}:\n{}", procs[i].log());
        }
        assert_eq!(
            node_id(&procs[i].api_url),
            ids[i],
            "a restarted node keeps its id"
        );
        let me = get(&procs[i].api_url, "/v1/node").unwrap();
        assert_eq!(me["incarnation"], 2);
    }
    wait_until(
        "the restarted nodes to be alive everywhere",
        Duration::from_secs(5),
        || all_alive(&procs, 5),
    );
}

#[test]
fn start_reports_configuration_mistakes_in_one_line() {
    let root = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(xnode())
            .arg("start")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status, String::from_utf8_lossy(&out.stderr).to_string())
    };
    let data = root.path().join("d");
    let data = data.to_str().unwrap();

    // A malformed multiaddr.
    let (status, err) = run(&[
        "--data-dir",
        data,
        "--listen",
        "not-an-address",
        "--no-mdns",
    ]);
    assert!(!status.success());
    assert!(
        err.contains("--listen") && err.contains("not-an-address"),
        "{err}"
    );

    // A well-formed address of the wrong kind.
    let (status, err) = run(&[
        "--data-dir",
        data,
        "--listen",
        "/ip4/127.0.0.1/udp/5000",
        "--no-mdns",
    ]);
    assert!(!status.success());
    assert!(err.starts_with("error: listen address"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // A data dir that is a file.
    let file = root.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let (status, err) = run(&["--data-dir", file.to_str().unwrap(), "--no-mdns"]);
    assert!(!status.success());
    assert!(
        err.starts_with("error: data dir") && err.contains("not a directory"),
        "{err}"
    );

    // An API port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let p2p = free_port(false);
    let (status, err) = run(&[
        "--data-dir",
        data,
        "--no-mdns",
        "--listen",
        &format!("/ip4/127.0.0.1/tcp/{p2p}"),
        "--api",
        &format!("127.0.0.1:{port}"),
    ]);
    assert!(!status.success());
    assert!(err.contains("already in use"), "{err}");

    // A p2p port that is taken.
    let api = free_port(false);
    let (status, err) = run(&[
        "--data-dir",
        data,
        "--no-mdns",
        "--listen",
        &format!("/ip4/127.0.0.1/tcp/{port}"),
        "--api",
        &format!("127.0.0.1:{api}"),
    ]);
    assert!(!status.success());
    assert!(err.contains("already in use"), "{err}");

    // A config file with an unknown key.
    let cfg = root.path().join("bad.toml");
    std::fs::write(&cfg, "zonee = \"x\"\n").unwrap();
    let (status, err) = run(&["--config", cfg.to_str().unwrap()]);
    assert!(!status.success());
    assert!(err.contains("bad.toml") && err.contains("zonee"), "{err}");
}

#[test]
fn config_file_and_environment_are_applied_with_flags_winning() {
    let root = tempfile::tempdir().unwrap();
    let api = free_port(false);
    let p2p = free_port(false);
    let cfg = root.path().join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\nlisten = [\"/ip4/127.0.0.1/tcp/{p2p}\"]\napi = \"127.0.0.1:{api}\"\nzone = \"from-file\"\nmdns = false\nnetwork = \"cfgtest\"\n",
            root.path().join("data")
        ),
    )
    .unwrap();
    let mut child = Command::new(xnode())
        .args([
            "start",
            "--config",
            cfg.to_str().unwrap(),
            "--exit-with-parent",
        ])
        .env("XNODE_ZONE", "from-env")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{api}");
    node_id(&url);
    let me = get(&url, "/v1/node").unwrap();
    assert_eq!(me["zone"], "from-env", "environment wins over the file");
    assert_eq!(me["network"], "cfgtest");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn key_command_creates_once_and_reuses() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("k");
    let run = || {
        let out = Command::new(xnode())
            .args(["key", "--json", "--data-dir", dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = run();
    assert_eq!(first["created"], true);
    let second = run();
    assert_eq!(second["created"], false);
    assert_eq!(first["node_id"], second["node_id"]);
    assert_eq!(first["public_key"].as_str().unwrap().len(), 64);
}

#[test]
fn client_commands_print_tables_json_and_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let procs = start_cluster(root.path(), 2);
    let id = node_id(&procs[0].api_url);
    wait_converged(&procs, 2);
    let run = |args: &[&str]| {
        let out = Command::new(xnode())
            .args(args)
            .args(["--api", &procs[0].api_url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = run(&["nodes"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(&format!("{id} *")), "{table}");
    assert_eq!(table.matches("alive").count(), 2, "{table}");
    let json: serde_json::Value = serde_json::from_str(&run(&["nodes", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    let status = run(&["status"]);
    assert!(
        status.contains(&id) && status.contains("2 nodes: 2 alive"),
        "{status}"
    );
    let status: serde_json::Value = serde_json::from_str(&run(&["status", "--json"])).unwrap();
    assert_eq!(status["network"]["alive"], 2);

    // A node that is not there: a clear one-line error and a non-zero exit.
    let dead = format!("http://127.0.0.1:{}", free_port(false));
    let out = Command::new(xnode())
        .args(["nodes", "--api", &dead])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: cannot reach the node") && err.trim().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn top_prints_nodes_and_scopes() {
    let root = tempfile::tempdir().unwrap();
    let procs = start_cluster(root.path(), 2);
    wait_converged(&procs, 2);
    let out = Command::new(xnode())
        .args(["top", "--once", "--api", &procs[0].api_url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("2 nodes: 2 alive"), "{text}");
    assert!(
        text.contains("NODE") && text.contains("SCOPE") || text.contains("no requests"),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no escape codes when the output is not a terminal"
    );
}
