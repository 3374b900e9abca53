//! Anti-entropy by difference: an idle network does no repair work, and a replica that
//! missed writes is brought up to date by comparing digests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use xnode_store::{ChunkId, ObjectPath};
use xnode_test_cluster::{Cluster, Tenant};

fn config(c: &mut xnode_node::Config) {
    c.storage.chunk_size = 64 * 1024;
    // Long enough that a node restarted within the test keeps its place in the storage
    // set (placement does not move), short checks so rounds are observable.
    c.storage.repair_grace = Duration::from_secs(120);
    c.storage.repair_interval = Duration::from_millis(300);
}

fn chunk_path(c: &Cluster, node: usize, id: &ChunkId) -> std::path::PathBuf {
    c.data_dir(node)
        .join("chunks")
        .join(&id.to_hex()[..2])
        .join(id.to_hex())
}

fn rounds(c: &Cluster, i: usize) -> (u64, u64) {
    let h = c.node(i).storage().health();
    (h.anti_entropy_rounds, h.anti_entropy_skipped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_network_skips_rounds_and_a_returning_replica_is_caught_up() {
    let mut c = Cluster::start_with(3, config).await;
    let tenant = Tenant::new();
    for bucket in ["alpha", "beta"] {
        c.create_bucket(0, &tenant, bucket).await;
        for i in 0..10 {
            c.put(
                i % 3,
                &tenant,
                bucket,
                &format!("k{i}"),
                format!("v{i}").as_bytes(),
            )
            .await
            .unwrap();
        }
    }

    // Once every replica is in sync, rounds stop: the checks find nothing changed.
    c.wait_until("anti-entropy to settle", Duration::from_secs(60), |c| {
        (0..3).all(|i| {
            let h = c.node(i).storage().health();
            h.under_replicated_chunks == 0
                && h.under_replicated_objects == 0
                && h.anti_entropy_skipped >= 3
        })
    })
    .await;
    let before: Vec<(u64, u64)> = (0..3).map(|i| rounds(&c, i)).collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (i, (rounds_before, skipped_before)) in before.into_iter().enumerate() {
        let (rounds_after, skipped_after) = rounds(&c, i);
        // About 13 checks in 4 s. A membership flap under load may start a round or two;
        // the old repair scan ran on every one of them.
        assert!(
            rounds_after - rounds_before <= 3,
            "node {i} ran {} rounds while idle",
            rounds_after - rounds_before
        );
        assert!(
            skipped_after - skipped_before >= 5,
            "node {i} skipped only {} checks while idle",
            skipped_after - skipped_before
        );
    }

    // Node 2 misses writes and a delete while it is down (each acknowledged by the other
    // two), then comes back: comparing digests brings it every entry and chunk.
    c.crash(2).await;
    let mut written = Vec::new();
    for i in 0..8 {
        let key = format!("late{i}");
        let body = vec![i as u8; 100_000]; // two chunks and a manifest
        let meta = c.put(0, &tenant, "alpha", &key, &body).await.unwrap();
        written.push(meta);
    }
    c.node(0)
        .storage()
        .delete_object(&tenant.id(), "beta", "k1")
        .await
        .unwrap();
    c.restart(2).await;

    let mut chunks: Vec<ChunkId> = Vec::new();
    for meta in &written {
        let info = meta.info.clone().unwrap();
        let manifest = c.node(0).storage().manifest(&info).await.unwrap();
        chunks.extend(manifest.chunks.iter().map(|r| r.id));
        chunks.push(info.manifest);
    }
    c.wait_until(
        "the returning replica to hold every chunk written while it was down",
        Duration::from_secs(90),
        |c| chunks.iter().all(|id| chunk_path(c, 2, id).exists()),
    )
    .await;
    let deleted = ObjectPath::new(tenant.id(), "beta", "k1").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let mut missing = 0;
        for meta in &written {
            let held = c.node(2).storage().local_meta(&meta.path).await.unwrap();
            if held.as_ref() != Some(meta) {
                missing += 1;
            }
        }
        let tombstone = c.node(2).storage().local_meta(&deleted).await.unwrap();
        if missing == 0 && tombstone.is_some_and(|m| m.is_tombstone()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 2 still lacks {missing} entries (or the tombstone) after 90 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.shutdown().await;
}

fn scrub_detail(c: &Cluster, i: usize) -> String {
    c.node(i)
        .workers()
        .into_iter()
        .find(|w| w.name == "storage-scrub")
        .and_then(|w| w.progress.detail)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scrubber_resumes_its_pass_after_a_restart() {
    let mut c = Cluster::start_with(3, |cfg| {
        cfg.storage.chunk_size = 64 * 1024;
        cfg.storage.repair_grace = Duration::from_secs(120);
        // A pass over the 4 MiB below takes about a minute at this throttle, so it is
        // still running when the node restarts. (The first pass, over an empty store,
        // ends at once; the next starts one period later.)
        cfg.storage.scrub_period = Duration::from_secs(10);
        cfg.storage.scrub_bytes_per_sec = 64 * 1024;
    })
    .await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "scrubbed").await;
    let body: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    c.put(0, &tenant, "scrubbed", "big", &body).await.unwrap();

    c.wait_until(
        "the scrubber to be in a pass",
        Duration::from_secs(60),
        |c| scrub_detail(c, 0).contains(" at chunk"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = scrub_detail(&c, 0);
    let pass = before
        .split(" at chunk")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(pass.starts_with("pass "), "{before}");

    c.crash(0).await;
    c.restart(0).await;
    // The restarted scrubber continues the same pass; one that started over would be at
    // pass 1 (its count of passes lost) or waiting for the next period.
    c.wait_until(
        "the restarted scrubber to report",
        Duration::from_secs(20),
        |c| !scrub_detail(c, 0).is_empty(),
    )
    .await;
    let after = scrub_detail(&c, 0);
    assert!(
        after.starts_with(&format!("{pass} at chunk")),
        "before the restart: {before}; after: {after}"
    );
    c.shutdown().await;
}
