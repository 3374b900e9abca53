//! Garbage collection costs what changed: a round rereads only the buckets whose digest
//! moved since the last one, reads each manifest once, and still removes exactly what
//! nothing references, once: anti-entropy does not copy back what one replica collected
//! while another has not yet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use xnode_storage::gc::GcRound;
use xnode_test_cluster::{Cluster, Tenant};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn chunks_stored(c: &Cluster) -> u64 {
    (0..3)
        .map(|i| c.node(i).storage().health().chunks_stored)
        .sum()
}

/// Rounds on node 0 until one rereads nothing (the writes' last replicas and anti-entropy
/// have settled), returning that round.
async fn quiet_round(c: &Cluster, what: &str) -> GcRound {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let round = c.node(0).storage().collect_garbage_round().await.unwrap();
        if round.buckets_rescanned == 0 {
            return round;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: rounds still reread buckets after 60 s: {round:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_collection_rereads_only_what_changed_since_its_last_round() {
    let mut c = Cluster::start_with(3, |cfg| {
        cfg.storage.chunk_size = 64 * 1024;
        cfg.storage.gc_grace = Duration::from_millis(300);
        cfg.storage.gc_interval = Duration::from_secs(3600);
        cfg.storage.repair_interval = Duration::from_millis(500);
        cfg.storage.repair_grace = Duration::from_secs(1);
    })
    .await;
    c.wait_converged(Duration::from_secs(30)).await;
    let tenant = Tenant::new();
    let buckets = ["gc-one", "gc-two", "gc-three"];
    let mut bodies = Vec::new();
    for (b, bucket) in buckets.iter().enumerate() {
        c.create_bucket(0, &tenant, bucket).await;
        for k in 0..4u8 {
            let body = data(100_000, k + 10 * b as u8);
            c.put(0, &tenant, bucket, &format!("k{k}"), &body)
                .await
                .unwrap();
            bodies.push((*bucket, format!("k{k}"), body));
        }
    }

    // The first round reads everything: every holder's buckets and every manifest.
    let first = c.node(0).storage().collect_garbage_round().await.unwrap();
    assert_eq!(first.holders, 3, "{first:?}");
    assert!(
        first.buckets >= 9,
        "three buckets on each of three holders: {first:?}"
    );
    assert!(first.buckets_rescanned >= 9, "{first:?}");
    assert!(first.entries_read >= 36, "{first:?}");
    assert!(first.manifests_read >= 12, "{first:?}");

    // With nothing written since, a round rereads no bucket and no manifest.
    let idle = quiet_round(&c, "nothing written").await;
    assert_eq!(idle.buckets, first.buckets, "{idle:?}");
    assert_eq!(
        (idle.entries_read, idle.manifests_read, idle.removed),
        (0, 0, 0),
        "{idle:?}"
    );

    // Overwrite one object and delete another, in two of the three buckets: rounds reread
    // those buckets only (on each holder), read only the new manifest, and the old
    // versions' chunks go.
    let before = chunks_stored(&c);
    let new_body = data(100_000, 200);
    c.put(1, &tenant, "gc-one", "k0", &new_body).await.unwrap();
    c.node(2)
        .storage()
        .delete_object(&tenant.id(), "gc-two", "k1")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await; // past gc_grace
    let changed = c.node(0).storage().collect_garbage_round().await.unwrap();
    assert!(
        (1..=6).contains(&changed.buckets_rescanned),
        "only the two changed buckets are reread, on up to three holders: {changed:?}"
    );
    assert!(changed.manifests_read <= 1, "{changed:?}");
    // Node 0 alone collects its copies of the two old versions (two data chunks and a
    // manifest each); the last replica of the writes may lag, so it runs rounds until it
    // has.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut removed = changed.removed;
    while removed < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 0 removed {removed} of its 6 garbage chunks in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        removed += c.node(0).storage().collect_garbage().await.unwrap();
    }
    assert_eq!(removed, 6);
    // Nodes 1 and 2 still hold their copies. Anti-entropy (every 500 ms here) must not copy
    // them back to node 0: garbage would bounce between replicas whose rounds do not fall
    // in the same moment.
    // Nor do the replicas wake each other for a round at every check over that difference
    // (it is the others' to collect, not anyone's to repair): each skips checks.
    let held = c.node(0).storage().health().chunks_stored;
    let skipped = |c: &Cluster| -> Vec<u64> {
        (0..3)
            .map(|i| c.node(i).storage().health().anti_entropy_skipped)
            .collect()
    };
    let skipped_before = skipped(&c);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        c.node(0).storage().health().chunks_stored,
        held,
        "garbage node 0 collected came back"
    );
    let skipped_after = skipped(&c);
    assert!(
        (0..3).all(|i| skipped_after[i] > skipped_before[i]),
        "anti-entropy ran a round at every check for 4 s: checks skipped {skipped_before:?} -> {skipped_after:?}"
    );
    // Then the others collect theirs.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        for i in 0..3 {
            removed += c.node(i).storage().collect_garbage().await.unwrap();
        }
        // Two old versions of two chunks and a manifest each, three copies, went; the new
        // version added two chunks and a manifest, three copies.
        if removed >= 18 && chunks_stored(&c) == before - 18 + 9 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after 60 s: removed {removed}, {} chunks stored (from {before})",
            chunks_stored(&c)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(removed, 18, "each garbage copy was collected once");

    // Everything still referenced is intact, through every node.
    for (bucket, key, body) in &bodies {
        let expected = match (*bucket, key.as_str()) {
            ("gc-one", "k0") => &new_body,
            ("gc-two", "k1") => continue,
            _ => body,
        };
        for i in 0..3 {
            assert_eq!(
                &c.get(i, &tenant, bucket, key, None).await.unwrap(),
                expected
            );
        }
    }
    let settled = quiet_round(&c, "after the overwrite").await;
    assert_eq!(
        (settled.manifests_read, settled.removed),
        (0, 0),
        "{settled:?}"
    );
    // What was collected stays collected: anti-entropy (every 500 ms here) does not copy
    // the garbage back from a replica that collected later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stored = chunks_stored(&c);
    for i in 0..3 {
        let round = c.node(i).storage().collect_garbage_round().await.unwrap();
        assert_eq!(
            (round.removed, round.restored),
            (0, 0),
            "node {i}: {round:?}"
        );
    }
    assert_eq!(chunks_stored(&c), stored);

    // The view outlives a restart: node 0's first round after it rereads nothing (it read
    // every bucket and manifest again before the view was kept in its database).
    c.stop(0).await;
    c.restart(0).await;
    c.wait_converged(Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let restarted = loop {
        // Until every holder answers again (a round stops at the first that does not).
        match c.node(0).storage().collect_garbage_round().await {
            Ok(round) => break round,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "no complete round 60 s after the restart: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(restarted.holders, 3, "{restarted:?}");
    assert_eq!(
        (
            restarted.buckets_rescanned,
            restarted.entries_read,
            restarted.manifests_read,
            restarted.removed
        ),
        (0, 0, 0, 0),
        "{restarted:?}"
    );
    c.shutdown().await;
}

/// A round judges a chunk's age at the start of its survey: a chunk written while a slow
/// survey was under way may belong to an object whose entry the survey read before it
/// existed, so it is kept, however old it is when the sweep reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_written_during_a_rounds_survey_is_kept_by_that_round() {
    let c = Cluster::start_with(3, |cfg| {
        cfg.storage.chunk_size = 64 * 1024;
        cfg.storage.gc_grace = Duration::from_millis(500);
        cfg.storage.gc_interval = Duration::from_secs(3600);
    })
    .await;
    c.wait_converged(Duration::from_secs(30)).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "slow-survey").await;
    // Nodes 1 and 2 answer the survey 1.5 s late each: the round's survey takes 3 s.
    let surveying = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for i in 1..3 {
        let surveying = surveying.clone();
        c.node(i)
            .storage()
            .set_serve_tamper(Some(std::sync::Arc::new(
                move |request, honest| match request {
                    xnode_storage::proto::StoreRequest::MetaBucketDigests { .. } => {
                        surveying.store(true, std::sync::atomic::Ordering::SeqCst);
                        xnode_storage::ServeFault::Delay(Duration::from_millis(1500), honest)
                    }
                    _ => xnode_storage::ServeFault::Answer(honest),
                },
            )));
    }
    let stored_before = c.node(0).storage().health().chunks_stored;
    let storage = c.node(0).storage().clone();
    let round = tokio::spawn(async move { storage.collect_garbage_round().await });
    while !surveying.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Meanwhile an upload stores its chunks; its entry is not written (here: never). The
    // client goes away once node 0 holds some of them.
    let node0 = c.node(0).storage().clone();
    let some_stored = async move {
        for _ in 0..500 {
            if node0.health().chunks_stored > stored_before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    c.put_cut_off_when(
        0,
        &tenant,
        "slow-survey",
        "in-flight",
        &data(300_000, 7),
        some_stored,
    )
    .await;
    let written = c.node(0).storage().health().chunks_stored - stored_before;
    assert!(written > 0, "the upload stored no chunk on node 0");
    let round = round.await.unwrap().unwrap();
    assert_eq!(
        round.removed, 0,
        "chunks written during the survey were removed, though older than gc_grace by the sweep"
    );
    // The next round, begun more than `gc_grace` after they were written, removes them.
    for i in 1..3 {
        c.node(i).storage().set_serve_tamper(None);
    }
    // (Rounds until all are gone: the upload's last copies may land after it failed.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut removed = 0;
    while c.node(0).storage().health().chunks_stored > stored_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the in-flight upload's chunks were not collected within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        removed += c.node(0).storage().collect_garbage().await.unwrap();
    }
    assert!(removed >= written, "removed {removed}, written {written}");
    c.shutdown().await;
}
