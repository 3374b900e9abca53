//! A rolling upgrade of five real node processes under a client that keeps writing and
//! reading: each node in turn is stopped with SIGTERM and started again as "the next
//! release", and no acknowledged write is lost.
//!
//! The "next release" is this same binary started with `--advertised-protocol 1.5`, a
//! higher protocol minor than this release's 1.4: the test exercises what changes between
//! neighbouring releases on the wire (the advertised range, the negotiated version, a
//! mixed network) and the restart itself, not a second code base.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::*;

const NODES: usize = 5;
/// No node is being replaced.
const NONE: usize = usize::MAX;

/// Objects written and acknowledged: name and content.
type Written = Vec<(String, Vec<u8>)>;

fn xnode_cmd(args: &[&str], key: &std::path::Path) -> (bool, String) {
    let out = Command::new(xnode())
        .args(args)
        .env("XNODE_TENANT_KEY", key)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// What `observer` says of node `id`: (protocol advertised, negotiated).
fn protocol_seen(observer: &str, id: &str) -> Option<(String, Option<String>)> {
    let nodes = get(observer, "/v1/nodes")?;
    let node = nodes.as_array()?.iter().find(|n| n["id"] == id)?;
    Some((
        node["protocol"].as_str()?.to_owned(),
        node["negotiated_protocol"].as_str().map(str::to_owned),
    ))
}

#[test]
fn five_nodes_replaced_one_at_a_time_under_load_lose_no_acknowledged_write() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let mut procs = start_cluster(root.path(), NODES);
    let ids: Vec<String> = procs.iter().map(|p| node_id(&p.api_url)).collect();
    wait_until("5 nodes to converge", Duration::from_secs(15), || {
        all_alive(&procs, NODES)
    });
    let apis: Vec<String> = procs.iter().map(|p| p.api_url.clone()).collect();
    let key = root.path().join("tenant.key");
    let (ok, out) = xnode_cmd(&["key", "new"], &key);
    assert!(ok, "{out}");
    let (ok, out) = xnode_cmd(&["bucket", "create", "rolling", "--api", &apis[0]], &key);
    assert!(ok, "{out}");
    wait_until(
        "the bucket to reach every node",
        Duration::from_secs(10),
        || {
            apis.iter().all(|a| {
                xnode_cmd(&["bucket", "ls", "--api", a], &key)
                    .1
                    .contains("rolling")
            })
        },
    );

    // The client: writes a new object through a node that is up, then reads a random
    // earlier one through another. Every acknowledged write is remembered.
    let replacing = Arc::new(AtomicUsize::new(NONE));
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<Written>> = Arc::default();
    let failed_reads: Arc<Mutex<Vec<String>>> = Arc::default();
    let failed_writes = Arc::new(AtomicUsize::new(0));
    let client = {
        let (replacing, stop, acknowledged, failed_reads, failed_writes) = (
            replacing.clone(),
            stop.clone(),
            acknowledged.clone(),
            failed_reads.clone(),
            failed_writes.clone(),
        );
        let (apis, key, dir) = (apis.clone(), key.clone(), root.path().to_owned());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                // Skip the node being replaced (and the one after it, which may be the
                // next to go while this call runs).
                let down = replacing.load(Ordering::SeqCst);
                let up: Vec<&String> = apis
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != down && (down == NONE || *i != (down + 1) % NODES))
                    .map(|(_, a)| a)
                    .collect();
                let via = up[n % up.len()];
                let name = format!("obj-{n:05}");
                let body: Vec<u8> = format!("object {n} written through {via}\n")
                    .repeat(50)
                    .into_bytes();
                let file = dir.join("upload.bin");
                std::fs::write(&file, &body).unwrap();
                let target = format!("rolling/{name}");
                let (ok, _) = xnode_cmd(
                    &["put", file.to_str().unwrap(), &target, "--api", via],
                    &key,
                );
                if ok {
                    acknowledged.lock().unwrap().push((name, body));
                } else {
                    // Refused writes are allowed (the edge saw no quorum); they are simply
                    // not acknowledged.
                    failed_writes.fetch_add(1, Ordering::SeqCst);
                }
                let earlier = {
                    let acked = acknowledged.lock().unwrap();
                    acked
                        .get(n.wrapping_mul(7919) % acked.len().max(1))
                        .cloned()
                };
                if let Some((name, body)) = earlier {
                    let via = up[(n + 1) % up.len()];
                    let copy = dir.join("download.bin");
                    let (ok, out) = xnode_cmd(
                        &[
                            "get",
                            &format!("rolling/{name}"),
                            copy.to_str().unwrap(),
                            "--api",
                            via,
                        ],
                        &key,
                    );
                    if !ok || std::fs::read(&copy).ok().as_ref() != Some(&body) {
                        failed_reads
                            .lock()
                            .unwrap()
                            .push(format!("{name} via {via}: {out}"));
                    }
                }
            }
        })
    };

    for i in 0..NODES {
        replacing.store(i, Ordering::SeqCst);
        let status = procs[i].stop_with(Signal::SIGTERM);
        assert!(status.success(), "node {i} stops cleanly: {status}");
        procs[i].extra_args = vec!["--advertised-protocol".into(), "1.5".into()];
        procs[i].start();
        assert_eq!(
            node_id(&procs[i].api_url),
            ids[i],
            "node {i} keeps its identity"
        );
        wait_until(
            "every node to see the replaced node alive again",
            Duration::from_secs(15),
            || all_alive(&procs, NODES),
        );
        // The replaced node advertises the new version, and a neighbour that is still
        // on the old one talks to it at the old one (or at the new one, once both are new).
        let observer = &apis[(i + 1) % NODES];
        let expected_negotiated = if i + 1 < NODES { "1.4" } else { "1.5" };
        wait_until(
            "a neighbour to identify the replaced node",
            Duration::from_secs(10),
            || {
                protocol_seen(observer, &ids[i]).is_some_and(|(advertised, negotiated)| {
                    advertised == "1.5 (oldest 1.0)"
                        && negotiated.as_deref() == Some(expected_negotiated)
                })
            },
        );
        replacing.store(NONE, Ordering::SeqCst);
    }
    // Let the client run on the fully upgraded network until it has made enough writes to
    // mean something (on a loaded machine the upgrade itself may pass between few), then
    // stop it.
    std::thread::sleep(Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();

    let acked = acknowledged.lock().unwrap().clone();
    eprintln!(
        "rolling upgrade: {} writes acknowledged, {} refused, {:?} in all",
        acked.len(),
        failed_writes.load(Ordering::SeqCst),
        started.elapsed()
    );
    assert!(
        acked.len() >= 10,
        "the client kept writing: {}",
        acked.len()
    );
    let failed = failed_reads.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "reads failed during the upgrade: {failed:#?}"
    );
    // Every acknowledged write is listed by every node of the new network, and reads back
    // intact through one of them (the nodes share the reads, in parallel).
    for api in &apis {
        let (ok, listing) = xnode_cmd(&["ls", "rolling", "--api", api], &key);
        assert!(ok, "{listing}");
        for (name, _) in &acked {
            assert!(
                listing.contains(name.as_str()),
                "{name} missing from the listing of {api}"
            );
        }
    }
    std::thread::scope(|scope| {
        for (k, api) in apis.iter().enumerate() {
            let (acked, key, dir) = (&acked, &key, root.path());
            scope.spawn(move || {
                let copy = dir.join(format!("final-{k}.bin"));
                for (name, body) in acked.iter().skip(k).step_by(NODES) {
                    let (ok, out) = xnode_cmd(
                        &[
                            "get",
                            &format!("rolling/{name}"),
                            copy.to_str().unwrap(),
                            "--api",
                            api,
                        ],
                        key,
                    );
                    assert!(ok, "{name} via {api}: {out}");
                    assert_eq!(&std::fs::read(&copy).unwrap(), body, "{name} via {api}");
                }
            });
        }
    });
    eprintln!("rolling upgrade test done in {:?}", started.elapsed());
}
