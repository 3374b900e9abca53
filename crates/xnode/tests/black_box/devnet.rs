//! Black-box test of `xnode devnet`: it starts real node processes, obeys its prompt, and
//! stops everything cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::*;

#[test]
fn devnet_starts_obeys_fault_drills_and_stops_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("devnet");
    let mut child = Command::new(xnode())
        .args([
            "devnet",
            "--nodes",
            "3",
            "--api-port",
            "0",
            "--p2p-port",
            "0",
            "--dir",
            dir.to_str().unwrap(),
        ])
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
    let mut expect = |needle: &str, timeout: Duration| {
        let deadline = std::time::Instant::now() + timeout;
        while !output.contains(needle) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    output.push_str(&line);
                    output.push('\n');
                }
                Err(_) => panic!("devnet never printed {needle:?}; output so far:\n{output}"),
            }
        }
    };
    expect("All 3 nodes are up", Duration::from_secs(30));
    // The tenant's grants reached every node, so the devnet's usage is countersigned.
    expect(
        "lets every node countersign its receipts",
        Duration::from_secs(10),
    );
    expect("Fault drills", Duration::from_secs(5));

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("devnet.json")).unwrap()).unwrap();
    let apis: Vec<String> = manifest["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["api_url"].as_str().unwrap().to_string())
        .collect();
    let ids: Vec<String> = apis.iter().map(|a| node_id(a)).collect();

    writeln!(stdin, "kill 2").unwrap();
    wait_until("node 2 to be reported dead", Duration::from_secs(5), || {
        [0, 2]
            .iter()
            .all(|&o| state_of(&apis[o], &ids[1]).as_deref() == Some("dead"))
    });
    writeln!(stdin, "start 2").unwrap();
    wait_until("node 2 to be alive again", Duration::from_secs(10), || {
        [0, 2]
            .iter()
            .all(|&o| state_of(&apis[o], &ids[1]).as_deref() == Some("alive"))
    });
    assert_eq!(node_id(&apis[1]), ids[1]);
    writeln!(stdin, "stop 3").unwrap();
    wait_until("node 3 to be reported left", Duration::from_secs(5), || {
        state_of(&apis[0], &ids[2]).as_deref() == Some("left")
    });
    writeln!(stdin, "bogus").unwrap();
    writeln!(stdin, "quit").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "devnet did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "devnet exit status {status}");
    // Every node is gone.
    for api in &apis {
        assert!(
            get(api, "/healthz").is_none(),
            "{api} still answers after the devnet stopped"
        );
    }
}

/// A zone name no node would take is refused before any node starts, saying which flag.
#[test]
fn devnet_refuses_a_zone_name_nodes_cannot_take() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("devnet");
    let output = Command::new(xnode())
        .args([
            "devnet",
            "--nodes",
            "1",
            "--api-port",
            "0",
            "--p2p-port",
            "0",
        ])
        .args([
            "--zones",
            "zone-a,two words",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--zones") && stderr.contains("two words"),
        "{stderr}"
    );
    assert!(!dir.join("node-1").exists(), "a node was set up anyway");
}
