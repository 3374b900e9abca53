//! Multi-node behaviour of object storage, on the in-process harness.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use xnode_storage::StorageError;
use xnode_store::{ChunkId, Manifest};
use xnode_test_cluster::rogue::tamper_range;
use xnode_test_cluster::{Cluster, Tenant};

const CHUNK: u32 = 64 * 1024;

/// Small chunks keep tests fast; a short grace makes repair observable.
fn storage_config(c: &mut xnode_node::Config) {
    c.storage.chunk_size = CHUNK;
    c.storage.repair_grace = Duration::from_secs(2);
    c.storage.repair_interval = Duration::from_millis(500);
    c.storage.scrub_bytes_per_sec = 64 * 1024 * 1024;
    // Passes back to back, at the throttle: tests wait for the scrubber to find rot.
    c.storage.scrub_period = Duration::from_secs(1);
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// Where node `node` keeps chunk `id` on disk.
fn chunk_path(c: &Cluster, node: usize, id: &ChunkId) -> std::path::PathBuf {
    c.data_dir(node)
        .join("chunks")
        .join(&id.to_hex()[..2])
        .join(id.to_hex())
}

/// Rots a chunk file in place, as a failing disk would.
fn flip_byte(path: &std::path::Path, offset: usize, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= mask;
    std::fs::write(path, &bytes).unwrap();
}

/// Nodes (by index) that hold chunk `id` on disk.
fn holders(c: &Cluster, id: &ChunkId) -> Vec<usize> {
    c.running()
        .into_iter()
        .filter(|&i| chunk_path(c, i, id).exists())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_survive_two_crashes_and_repair_restores_three_copies() {
    let mut c = Cluster::start_with(5, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "photos").await;
    let body = data(1_000_000, 7); // 16 chunks of 64 KiB
    let meta = c.put(0, &tenant, "photos", "big.bin", &body).await.unwrap();
    let info = meta.info.unwrap();
    assert_eq!(info.size, body.len() as u64);

    // Readable through every node.
    for i in 0..5 {
        assert_eq!(
            c.get(i, &tenant, "photos", "big.bin", None).await.unwrap(),
            body,
            "via node {i}"
        );
    }
    let manifest = c.node(0).storage().manifest(&info).await.unwrap();
    let mut all_chunks: Vec<ChunkId> = manifest.chunks.iter().map(|r| r.id).collect();
    all_chunks.push(info.manifest);
    // Wait for the background third copies: every chunk on 3 nodes.
    c.wait_until("every chunk on 3 nodes", Duration::from_secs(10), |c| {
        all_chunks.iter().all(|id| holders(c, id).len() == 3)
    })
    .await;

    // Crash a node that holds data, then another 1 s later: reads still work at once.
    let victim = holders(&c, &all_chunks[0])[0];
    c.crash(victim).await;
    for i in c.running() {
        assert_eq!(
            c.get(i, &tenant, "photos", "big.bin", None).await.unwrap(),
            body,
            "via node {i} after one crash"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = c.running().into_iter().find(|&i| i != 0).unwrap();
    c.crash(second).await;

    // After the grace period, repair restores 3 live copies of every chunk and metadata
    // entry, and every survivor reads the object back intact.
    c.wait_until(
        "repair to restore 3 copies of every chunk",
        Duration::from_secs(30),
        |c| all_chunks.iter().all(|id| holders(c, id).len() == 3),
    )
    .await;
    c.wait_until(
        "every survivor to report full health",
        Duration::from_secs(20),
        |c| {
            c.running().iter().all(|&i| {
                let h = c.node(i).storage().health();
                h.under_replicated_chunks == 0
                    && h.under_replicated_objects == 0
                    && h.last_repair_scan_ms.is_some()
            })
        },
    )
    .await;
    for i in c.running() {
        assert_eq!(
            c.get(i, &tenant, "photos", "big.bin", None).await.unwrap(),
            body,
            "via node {i} after repair"
        );
    }
    let repairs: u64 = c
        .running()
        .iter()
        .map(|&i| c.node(i).storage().metrics().repairs.get())
        .sum();
    assert!(repairs > 0, "repair made copies");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_reads_return_exactly_the_requested_bytes() {
    let c = Cluster::start_with(3, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(1, &tenant, "rng").await;
    let body = data(300_000, 3);
    c.put(1, &tenant, "rng", "k", &body).await.unwrap();
    for (start, end) in [
        (0u64, Some(0u64)),
        (0, Some(65_535)),
        (65_535, Some(65_537)),
        (100_000, None),
        (299_999, Some(400_000)),
    ] {
        let got = c
            .get(2, &tenant, "rng", "k", Some((start, end)))
            .await
            .unwrap();
        let stop = end.map(|e| (e + 1).min(300_000)).unwrap_or(300_000) as usize;
        assert_eq!(got, &body[start as usize..stop], "range {start}-{end:?}");
    }
    let err = c
        .get(0, &tenant, "rng", "k", Some((300_000, None)))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::InvalidRange(_)), "{err}");
    // An empty object reads back empty.
    c.put(0, &tenant, "rng", "empty", b"").await.unwrap();
    assert!(
        c.get(1, &tenant, "rng", "empty", None)
            .await
            .unwrap()
            .is_empty()
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotted_chunk_is_never_served_and_scrub_repairs_it() {
    let c = Cluster::start_with(3, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "bkt").await;
    let body = data(200_000, 9);
    let meta = c.put(0, &tenant, "bkt", "k", &body).await.unwrap();
    let manifest: Manifest = c
        .node(0)
        .storage()
        .manifest(meta.info.as_ref().unwrap())
        .await
        .unwrap();
    let id = manifest.chunks[1].id;
    c.wait_until("3 copies", Duration::from_secs(10), |c| {
        holders(c, &id).len() == 3
    })
    .await;

    // Flip a byte in node 0's copy on disk.
    let path = chunk_path(&c, 0, &id);
    flip_byte(&path, 100, 0x01);

    // Reads through node 0 still return the right data...
    assert_eq!(c.get(0, &tenant, "bkt", "k", None).await.unwrap(), body);
    // ...and the rotted copy is replaced (by the read path's quarantine plus scrub or repair).
    c.wait_until(
        "the rotted chunk to be replaced",
        Duration::from_secs(20),
        |_| std::fs::read(&path).is_ok_and(|b| ChunkId::of(&b) == id),
    )
    .await;
    assert!(c.node(0).storage().metrics().corrupt_chunks.get() >= 1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scrub_finds_rot_nobody_read() {
    let c = Cluster::start_with(3, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "bkt").await;
    let meta = c
        .put(0, &tenant, "bkt", "k", &data(150_000, 1))
        .await
        .unwrap();
    let manifest: Manifest = c
        .node(0)
        .storage()
        .manifest(meta.info.as_ref().unwrap())
        .await
        .unwrap();
    let id = manifest.chunks[0].id;
    c.wait_until("3 copies", Duration::from_secs(10), |c| {
        holders(c, &id).len() == 3
    })
    .await;
    let path = chunk_path(&c, 1, &id);
    flip_byte(&path, 5, 0x80);
    c.wait_until(
        "scrub to find and replace the rotted chunk",
        Duration::from_secs(20),
        |c| {
            c.node(1).storage().metrics().corrupt_chunks.get() >= 1
                && std::fs::read(&path).is_ok_and(|b| ChunkId::of(&b) == id)
        },
    )
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_sending_wrong_bytes_is_detected_and_another_replica_used() {
    // No repair pushes during the test: only reads (and the scrubber, which cannot find an
    // honest copy while both peers lie) may touch node 2's missing chunk.
    let c = Cluster::start_with(3, |cfg| {
        storage_config(cfg);
        cfg.storage.repair_interval = Duration::from_secs(3600);
    })
    .await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "bkt").await;
    let body = data(400_000, 5);
    let meta = c.put(0, &tenant, "bkt", "k", &body).await.unwrap();
    let manifest = c
        .node(2)
        .storage()
        .manifest(meta.info.as_ref().unwrap())
        .await
        .unwrap();
    let ids: Vec<ChunkId> = manifest.chunks.iter().map(|r| r.id).collect();
    c.wait_until("3 copies", Duration::from_secs(10), |c| {
        ids.iter().all(|id| holders(c, id).len() == 3)
    })
    .await;
    // Node 2 loses its own copy of the first chunk, so it must ask its peers.
    let first = ids[0];
    let _ = std::fs::remove_file(chunk_path(&c, 2, &first));

    // Both peers lie: the wrong bytes are detected, never served, and counted.
    c.node(0).set_corrupt_served_chunks(true).unwrap();
    c.node(1).set_corrupt_served_chunks(true).unwrap();
    let err = c.get(2, &tenant, "bkt", "k", None).await.unwrap_err();
    assert!(matches!(err, StorageError::Quorum(_)), "{err}");
    assert!(
        c.node(2).storage().metrics().bad_replica_reads.get() >= 2,
        "both lies were detected and counted"
    );

    // One peer tells the truth again: the read skips the liar and returns the right data.
    c.node(1).set_corrupt_served_chunks(false).unwrap();
    assert_eq!(c.get(2, &tenant, "bkt", "k", None).await.unwrap(), body);
    c.node(0).set_corrupt_served_chunks(false).unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_quorum_reads_and_writes_fail_with_a_clear_reason() {
    let mut c = Cluster::start_with(3, |cfg| {
        storage_config(cfg);
        cfg.storage.repair_grace = Duration::from_secs(600);
    })
    .await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "quo").await;
    c.put(0, &tenant, "quo", "k", &data(10_000, 2))
        .await
        .unwrap();
    c.crash(1).await;
    c.crash(2).await;
    c.wait_until("both crashes detected", Duration::from_secs(5), |c| {
        c.node(0)
            .mesh()
            .members()
            .iter()
            .all(|m| m.state == xnode_mesh::MemberState::Dead)
    })
    .await;
    let err = c
        .put(0, &tenant, "quo", "k2", &data(10_000, 3))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Quorum(_)), "{err}");
    let err = c.get(0, &tenant, "quo", "k", None).await.unwrap_err();
    assert!(matches!(err, StorageError::Quorum(_)), "{err}");
    assert!(err.to_string().contains("quorum"), "{err}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_upload_leaves_no_object() {
    let c = Cluster::start_with(3, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "int").await;
    let err = c
        .put_interrupted(0, &tenant, "int", "k", &data(200_000, 1))
        .await;
    assert!(matches!(err, StorageError::Interrupted(_)), "{err}");
    // A body shorter than its declared length is refused too.
    let short = futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(data(
        1000, 1,
    )))]);
    let err = c
        .node(0)
        .storage()
        .put_object(
            &tenant.id(),
            "int",
            "k2",
            &tenant.data_key(),
            "x/y".into(),
            Default::default(),
            Some(5000),
            short,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Interrupted(_)), "{err}");
    for key in ["k", "k2"] {
        assert!(matches!(
            c.get(1, &tenant, "int", key, None).await,
            Err(StorageError::NoSuchKey(_))
        ));
    }
    assert!(
        c.node(2)
            .storage()
            .list_objects(&tenant.id(), "int", "", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_are_isolated() {
    let c = Cluster::start_with(3, storage_config).await;
    let (alice, bob) = (Tenant::new(), Tenant::new());
    c.create_bucket(0, &alice, "alice-bucket").await;
    c.put(0, &alice, "alice-bucket", "secret", b"alice's data")
        .await
        .unwrap();
    let s = c.node(1).storage();
    // Bob can neither take the name nor touch what is in it.
    assert!(matches!(
        s.create_bucket(&bob.id(), "alice-bucket", bob.bucket_claim("alice-bucket")),
        Err(StorageError::BucketTaken(_))
    ));
    assert!(matches!(
        c.get(1, &bob, "alice-bucket", "secret", None).await,
        Err(StorageError::AccessDenied(_))
    ));
    assert!(matches!(
        c.put(1, &bob, "alice-bucket", "x", b"bob").await,
        Err(StorageError::AccessDenied(_))
    ));
    assert!(matches!(
        s.list_objects(&bob.id(), "alice-bucket", "", None, 10)
            .await,
        Err(StorageError::AccessDenied(_))
    ));
    assert!(matches!(
        s.delete_object(&bob.id(), "alice-bucket", "secret").await,
        Err(StorageError::AccessDenied(_))
    ));
    // A claim signed by Bob for Alice's namespace is refused.
    let mut forged = bob.bucket_claim("other");
    forged.key = xnode_storage::buckets::bucket_key(&alice.id(), "other");
    assert!(s.create_bucket(&alice.id(), "other", forged).is_err());
    // Alice's data key does not decrypt with Bob's: even a provider holding the chunks
    // cannot read them without it (they are ciphertext).
    assert!(s.list_buckets(&bob.id()).is_empty());
    assert_eq!(s.list_buckets(&alice.id()).len(), 1);
    // Delete: only empty buckets.
    let tomb = xnode_registry::Entry::sign(
        &alice.key,
        xnode_storage::buckets::bucket_key(&alice.id(), "alice-bucket"),
        None,
        xnode_types::Hlc::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
                + 1,
            0,
        ),
    )
    .unwrap();
    assert!(matches!(
        s.delete_bucket(&alice.id(), "alice-bucket", tomb.clone())
            .await,
        Err(StorageError::BucketNotEmpty(_))
    ));
    s.delete_object(&alice.id(), "alice-bucket", "secret")
        .await
        .unwrap();
    s.delete_bucket(&alice.id(), "alice-bucket", tomb)
        .await
        .unwrap();
    assert!(matches!(
        c.get(1, &alice, "alice-bucket", "secret", None).await,
        Err(StorageError::NoSuchBucket(_))
    ));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn providers_hold_only_ciphertext() {
    let c = Cluster::start_with(3, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "plain").await;
    let marker = b"THIS-IS-A-PLAINTEXT-MARKER-".repeat(3000);
    c.put(0, &tenant, "plain", "m", &marker).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        for entry in walk(&c.data_dir(i).join("chunks")) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !bytes
                    .windows(27)
                    .any(|w| w == b"THIS-IS-A-PLAINTEXT-MARKER-"),
                "plaintext found in {entry:?}"
            );
        }
    }
    c.shutdown().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_collection_removes_only_unreferenced_chunks() {
    let mut c = Cluster::start_with(3, |cfg| {
        storage_config(cfg);
        cfg.storage.gc_grace = Duration::from_millis(500);
        cfg.storage.gc_interval = Duration::from_secs(3600);
        cfg.storage.repair_grace = Duration::from_secs(600);
    })
    .await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "gcb").await;
    let keep = data(300_000, 1);
    c.put(0, &tenant, "gcb", "keep", &keep).await.unwrap();
    c.put(0, &tenant, "gcb", "drop", &data(300_000, 2))
        .await
        .unwrap();
    c.node(0)
        .storage()
        .delete_object(&tenant.id(), "gcb", "drop")
        .await
        .unwrap();
    // An interrupted upload: its chunks are stored, but no object points at them. The
    // client goes away once node 0 holds some (cut off at once, it may have stored none).
    let node0 = c.node(0).storage().clone();
    let held_before = node0.health().chunks_stored;
    let some_stored = async move {
        for _ in 0..500 {
            if node0.health().chunks_stored > held_before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    c.put_cut_off_when(0, &tenant, "gcb", "broken", &data(700_000, 3), some_stored)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // With a node down the set of references could be incomplete: GC refuses to run.
    c.crash(2).await;
    c.wait_until("the crash to be seen", Duration::from_secs(5), |c| {
        c.node(0)
            .mesh()
            .members()
            .iter()
            .any(|m| m.state == xnode_mesh::MemberState::Dead)
    })
    .await;
    assert!(c.node(0).storage().collect_garbage().await.is_err());
    c.restart(2).await;
    c.wait_converged(Duration::from_secs(10)).await;
    // Count what is stored once writes have settled (a quorum write's last replica and
    // the broken upload's in-flight chunks may land after the client got its answer).
    let stored = |c: &Cluster| -> u64 {
        (0..3)
            .map(|i| c.node(i).storage().health().chunks_stored)
            .sum()
    };
    let mut before = stored(&c);
    let settle_deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let now = stored(&c);
        if now == before || std::time::Instant::now() > settle_deadline {
            before = now;
            break;
        }
        before = now;
    }

    // The deletion reached two replicas before it was acknowledged; the third gets it in
    // the background or from repair. Until it has, that replica still references the
    // deleted object's chunks, so GC (correctly) keeps them: run rounds until it settles.
    let mut removed = 0;
    let started = std::time::Instant::now();
    let after = loop {
        for i in 0..3 {
            removed += c.node(i).storage().collect_garbage().await.unwrap();
        }
        let after: u64 = (0..3)
            .map(|i| c.node(i).storage().health().chunks_stored)
            .sum();
        if after <= 18 || started.elapsed() > Duration::from_secs(30) {
            break after;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // Only "keep" remains: 5 data chunks and its manifest, 3 copies each. "drop" and
    // whatever the broken upload stored are gone.
    assert_eq!(after, 18, "removed {removed} of {before}");
    assert!(
        removed > 18,
        "the deleted object's 18 chunks and the broken upload's went: {removed}"
    );
    // No exact `before - after == removed`: repair may still add a missing copy of the
    // live object while garbage collection runs, and a read may restore a chunk from the
    // trash, so the totals move for reasons of their own. The end state is what matters.
    // The live object is intact everywhere.
    for i in 0..3 {
        assert_eq!(c.get(i, &tenant, "gcb", "keep", None).await.unwrap(), keep);
    }
    // A second round finds nothing more.
    let again: u64 = {
        let mut n = 0;
        for i in 0..3 {
            n += c.node(i).storage().collect_garbage().await.unwrap();
        }
        n
    };
    assert_eq!(again, 0);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_can_choose_its_replication_factor_and_regions() {
    let mut c = Cluster::start_with(5, storage_config).await;
    let tenant = Tenant::new();
    // Before any node is crashed: a bucket pinned to regions (node zones) keeps its data
    // there, and pins nobody can satisfy are refused.
    pinned_buckets_stay_in_their_regions(&c, &tenant).await;
    let claim = tenant.bucket_claim_with_rf("two-copies", Some(2));
    let entry = c
        .node(0)
        .storage()
        .create_bucket(&tenant.id(), "two-copies", claim)
        .unwrap();
    c.node(0).gossip_entry(&entry).await;
    c.wait_until("the bucket to spread", Duration::from_secs(5), |c| {
        (0..5).all(|i| c.node(i).storage().bucket_rf(&tenant.id(), "two-copies") == 2)
    })
    .await;
    let body = data(300_000, 4);
    let meta = c.put(0, &tenant, "two-copies", "k", &body).await.unwrap();
    let manifest = c
        .node(0)
        .storage()
        .manifest(meta.info.as_ref().unwrap())
        .await
        .unwrap();
    let ids: Vec<ChunkId> = manifest
        .chunks
        .iter()
        .map(|r| r.id)
        .chain([meta.info.unwrap().manifest])
        .collect();
    c.wait_until("2 copies of every chunk", Duration::from_secs(10), |c| {
        ids.iter().all(|id| holders(c, id).len() == 2)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        ids.iter().all(|id| holders(&c, id).len() == 2),
        "repair keeps 2 copies, not 3"
    );

    // Crash a holder: repair restores 2 copies on live nodes.
    let victim = holders(&c, &ids[0])[0];
    c.crash(victim).await;
    // Reads below go to the metadata replicas each node's own view places: wait until
    // every node has seen the crash (on a loaded machine the chunks' repair, by the nodes
    // that saw it first, can finish before the last node does).
    c.wait_until(
        "every node to see the crash",
        Duration::from_secs(30),
        |c| {
            c.running()
                .into_iter()
                .all(|o| c.state(o, victim) == Some(xnode_mesh::MemberState::Dead))
        },
    )
    .await;
    c.wait_until("repair to restore 2 copies", Duration::from_secs(30), |c| {
        ids.iter().all(|id| holders(c, id).len() == 2)
    })
    .await;
    for i in c.running() {
        assert_eq!(
            c.get(i, &tenant, "two-copies", "k", None).await.unwrap(),
            body
        );
    }
    // Invalid factors are refused.
    let bad = tenant.bucket_claim_with_rf("zero-copies", Some(0));
    // Any node still running (the victim above may have been node 1).
    let alive = c.running()[0];
    assert!(matches!(
        c.node(alive)
            .storage()
            .create_bucket(&tenant.id(), "zero-copies", bad),
        Err(StorageError::BadRequest(_))
    ));
    c.shutdown().await;
}

/// The harness puts node `i` in zone `zone-{i % 3}`: of 5 nodes, zone-0 has nodes 0 and 3,
/// zone-1 nodes 1 and 4, zone-2 node 2 alone.
async fn pinned_buckets_stay_in_their_regions(c: &Cluster, tenant: &Tenant) {
    let allowed = [0usize, 1, 3, 4];
    let claim = tenant.bucket_claim_pinned("resident", None, &["zone-0", "zone-1"]);
    let entry = c
        .node(2)
        .storage()
        .create_bucket(&tenant.id(), "resident", claim)
        .unwrap();
    c.node(2).gossip_entry(&entry).await;
    c.wait_until("the pinned bucket to spread", Duration::from_secs(5), |c| {
        (0..5).all(|i| {
            c.node(i)
                .storage()
                .bucket_regions(&tenant.id(), "resident")
                .len()
                == 2
        })
    })
    .await;
    // Written through node 2, which is outside the regions: it may not keep a byte.
    let body = data(300_000, 9);
    let mut ids = Vec::new();
    for key in ["a", "b", "c"] {
        let meta = c.put(2, tenant, "resident", key, &body).await.unwrap();
        let info = meta.info.clone().unwrap();
        let manifest = c.node(2).storage().manifest(&info).await.unwrap();
        ids.extend(manifest.chunks.iter().map(|r| r.id).chain([info.manifest]));
    }
    c.wait_until(
        "3 copies of every pinned chunk",
        Duration::from_secs(10),
        |c| ids.iter().all(|id| holders(c, id).len() == 3),
    )
    .await;
    for id in &ids {
        let held = holders(c, id);
        assert!(
            held.iter().all(|i| allowed.contains(i)),
            "chunk {id} of a bucket pinned to zone-0 and zone-1 is on nodes {held:?}"
        );
    }
    for key in ["a", "b", "c"] {
        let path = xnode_store::ObjectPath::new(tenant.id(), "resident", key).unwrap();
        let mut with_meta = Vec::new();
        for i in 0..5 {
            if c.node(i)
                .storage()
                .local_meta(&path)
                .await
                .unwrap()
                .is_some()
            {
                with_meta.push(i);
            }
        }
        assert_eq!(with_meta.len(), 3, "metadata of {key} on {with_meta:?}");
        assert!(
            with_meta.iter().all(|i| allowed.contains(i)),
            "metadata of {key} on nodes {with_meta:?}"
        );
        // Readable through every node, in the regions or not.
        for i in 0..5 {
            assert_eq!(c.get(i, tenant, "resident", key, None).await.unwrap(), body);
        }
    }
    // Pins nobody can satisfy: a region no node declares, and one whose single node
    // cannot hold the default three copies. Both are refused when the bucket is created,
    // with the reason.
    for (name, regions) in [("on-mars", vec!["mars"]), ("too-small", vec!["zone-2"])] {
        let claim = tenant.bucket_claim_pinned(name, None, &regions);
        match c.node(0).storage().create_bucket(&tenant.id(), name, claim) {
            Err(StorageError::BadRequest(m)) => assert!(
                m.contains("pinned to regions") && m.contains("admitted storage nodes"),
                "{m}"
            ),
            other => panic!("a pin to {regions:?} was not refused: {other:?}"),
        }
    }
    // The same through S3: CreateBucket's LocationConstraint names the region.
    use s3s::S3;
    // A key that may create buckets: it holds the tenant's signing key.
    let keys = xnode_s3::S3Keys::new(c.node(0).db().clone());
    keys.create(
        tenant.id(),
        tenant.data_key(),
        Some(tenant.key.seed()),
        Some(("XNODECONDITIONAL1".into(), "s".repeat(40))),
    )
    .unwrap();
    let gateway = xnode_s3::Gateway::new(c.node(0).storage().clone(), keys);
    let input = s3s::dto::CreateBucketInput::builder()
        .bucket("s3-on-mars".into())
        .create_bucket_configuration(Some(s3s::dto::CreateBucketConfiguration {
            location_constraint: Some("mars".to_owned().into()),
            ..Default::default()
        }))
        .build()
        .unwrap();
    match gateway.create_bucket(s3_request(input)).await {
        Err(e) => assert_eq!(e.code().as_str(), "InvalidLocationConstraint", "{e:?}"),
        Ok(_) => panic!("S3 created a bucket pinned to a region no node is in"),
    }
    let input = s3s::dto::GetBucketLocationInput::builder()
        .bucket("resident".into())
        .build()
        .unwrap();
    let location = gateway
        .get_bucket_location(s3_request(input))
        .await
        .unwrap();
    assert_eq!(
        location
            .output
            .location_constraint
            .map(|l| l.as_str().to_owned()),
        Some("zone-0".to_owned())
    );
}

/// Store RPCs served to peers by every running node so far.
fn store_rpcs_served(c: &Cluster) -> u64 {
    c.running()
        .into_iter()
        .flat_map(|i| c.node(i).workers())
        .filter(|w| w.name == "rpc:store")
        .map(|w| w.progress.items_done)
        .sum()
}

/// What an acknowledged metadata write leaves behind, without the object's chunks (a
/// listing reads none): `entries` merged on the replicas `to`, each sent by the next node
/// (a node does not dial itself).
async fn put_entries(c: &Cluster, to: &[usize], entries: &[xnode_store::ObjectMeta]) {
    use xnode_storage::proto::{StoreRequest, StoreResponse};
    let calls = to.iter().flat_map(|&replica| {
        let sender = c.node((replica + 1) % c.len()).mesh();
        let endpoint = xnode_mesh::Endpoint::<xnode_storage::StoreService>::new(sender);
        entries.chunks(256).map(move |batch| {
            let endpoint = endpoint.clone();
            let request = StoreRequest::PutMetaMany {
                metas: batch.to_vec(),
            };
            async move {
                let answer = endpoint
                    .call(c.id(replica), request, Duration::from_secs(30))
                    .await
                    .unwrap();
                match answer {
                    StoreResponse::MetaMergedMany(outcomes) => {
                        assert!(outcomes.iter().all(|o| o.is_some_and(|o| o.is_held())));
                    }
                    other => panic!("{other:?}"),
                }
            }
        })
    });
    futures::future::join_all(calls).await;
}

/// Entries of `keys` in bucket `many`, live or tombstones, all at version `ms`.
fn entries_of(
    c: &Cluster,
    tenant: &Tenant,
    keys: impl Iterator<Item = String>,
    ms: u64,
    live: bool,
) -> Vec<xnode_store::ObjectMeta> {
    // Sealed by node 0 under a request the tenant signed for it, as its writes are.
    let authority = xnode_store::WriteAuthority::Request(tenant.request_proof(
        &c.id(0),
        "PUT",
        "/v1/buckets/many/objects",
    ));
    keys.map(|key| {
        xnode_store::ObjectMeta {
            path: xnode_store::ObjectPath::new(tenant.id(), "many", key.clone()).unwrap(),
            version: xnode_types::Hlc::new(ms, 0),
            writer: c.id(0),
            info: live.then(|| xnode_store::ObjectInfo {
                manifest: ChunkId::of(format!("{key}@{ms}").as_bytes()),
                size: 1,
                etag: "e".into(),
                content_type: "text/plain".into(),
                user_meta: Default::default(),
                created_ms: ms,
            }),
            seal: None,
        }
        .sealed(c.node(0).key(), authority.clone())
    })
    .collect()
}

/// Lists a whole bucket through node `via` in pages of `page` keys; returns the keys and
/// how many pages it took.
async fn list_all(
    c: &Cluster,
    via: usize,
    tenant: &Tenant,
    bucket: &str,
    page: usize,
) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut pages = 0;
    let mut after: Option<String> = None;
    loop {
        let listed = c
            .node(via)
            .storage()
            .list_objects(&tenant.id(), bucket, "", after.as_deref(), page)
            .await
            .unwrap();
        pages += 1;
        keys.extend(listed.iter().map(|m| m.path.key.clone()));
        if listed.len() < page {
            return (keys, pages);
        }
        after = keys.last().cloned();
    }
}

/// A listing merges ranges of a read quorum of replicas. One replica misses the writes,
/// overwrites and deletes made while it was away (they reached the other two, the write
/// quorum) and stays stale (anti-entropy is held off); listed through it, and then with it
/// down, a bucket of 1,200 keys shows every acknowledged key exactly once, in order, across
/// pages, and a page costs a few store calls, not a quorum read per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_merge_replicas_and_see_every_acknowledged_key_with_one_stale_or_down() {
    let mut c = Cluster::start_with(3, |cfg| {
        storage_config(cfg);
        // The stale replica must stay stale until the listing: no anti-entropy rounds, and
        // a grace long enough that the crashed node stays a metadata replica.
        cfg.storage.repair_interval = Duration::from_secs(3600);
        cfg.storage.anti_entropy_full_interval = Duration::from_secs(3600);
        cfg.storage.repair_grace = Duration::from_secs(600);
    })
    .await;
    c.wait_converged(Duration::from_secs(20)).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "many").await;
    let key = |i: usize| format!("k{i:05}");
    let now = xnode_types::unix_ms();
    // Before node 2 went away: on all three replicas.
    put_entries(
        &c,
        &[0, 1, 2],
        &entries_of(&c, &tenant, (0..200).map(key), now - 3000, true),
    )
    .await;
    // While it was away: most keys, deletes and overwrites of earlier ones, on two.
    let deleted: Vec<usize> = (0..200).step_by(5).collect();
    let mut away = entries_of(&c, &tenant, (200..1200).map(key), now - 2000, true);
    away.extend(entries_of(
        &c,
        &tenant,
        deleted.iter().map(|&i| key(i)),
        now - 2000,
        false,
    ));
    away.extend(entries_of(
        &c,
        &tenant,
        (1..200).step_by(7).filter(|i| i % 5 != 0).map(key),
        now - 1000,
        true,
    ));
    put_entries(&c, &[0, 1], &away).await;
    let expected: Vec<String> = (0..1200)
        .filter(|i| !deleted.contains(i))
        .map(key)
        .collect();

    // Through the stale replica: its own answer is always in the quorum.
    let before = store_rpcs_served(&c);
    let (listed, pages) = list_all(&c, 2, &tenant, "many", 300).await;
    let served = store_rpcs_served(&c) - before;
    assert_eq!(listed.len(), expected.len(), "every acknowledged key once");
    assert!(listed == expected, "in order, none deleted, none missing");
    assert_eq!(pages, 4);
    // A range call to a peer per page (and read repair of the stale replica, a few
    // batches per page), against about 1,200 quorum reads for listings by key reads.
    assert!(served < 60, "{served} store calls served for {pages} pages");

    // With the (now partly repaired) replica down, through another node.
    c.crash(2).await;
    let (listed, _) = list_all(&c, 1, &tenant, "many", 700).await;
    assert!(listed == expected, "with a replica down");
    c.shutdown().await;
}

/// Counts the range requests (entries, digests) node `i` serves its peers from now on,
/// answering them honestly.
fn count_ranges_served(
    c: &Cluster,
    i: usize,
) -> std::sync::Arc<[std::sync::atomic::AtomicUsize; 2]> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use xnode_storage::proto::StoreRequest;
    let counts = std::sync::Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let seen = counts.clone();
    c.node(i)
        .storage()
        .set_serve_tamper(Some(std::sync::Arc::new(move |request, honest| {
            match request {
                StoreRequest::MetaRange { .. } | StoreRequest::MetaRangeEncoded { .. } => {
                    seen[0].fetch_add(1, Ordering::Relaxed)
                }
                StoreRequest::MetaRangeDigest { .. } => seen[1].fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
            xnode_storage::ServeFault::Answer(honest)
        })));
    counts
}

/// A listing through a metadata replica reads each page from the edge's own table and
/// asks the other replicas only for a digest of the same range: while they agree, no peer
/// sends an entry. A replica that missed writes and a delete lists them all the same: the
/// others' digests differ from its own, so its rounds merge the replicas' entries (and
/// read repair brings it level, after which its rounds agree again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listing_through_a_replica_asks_only_digests_while_the_replicas_agree() {
    use std::sync::atomic::Ordering;
    let c = Cluster::start_with(3, |cfg| {
        storage_config(cfg);
        // Node 2 must stay behind until it lists: no anti-entropy rounds.
        cfg.storage.repair_interval = Duration::from_secs(3600);
        cfg.storage.anti_entropy_full_interval = Duration::from_secs(3600);
    })
    .await;
    c.wait_converged(Duration::from_secs(20)).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "many").await;
    let key = |i: usize| format!("k{i:04}");
    let now = xnode_types::unix_ms();
    put_entries(
        &c,
        &[0, 1, 2],
        &entries_of(&c, &tenant, (0..500).map(key), now - 3000, true),
    )
    .await;
    let all: Vec<String> = (0..500).map(key).collect();
    let served: Vec<_> = (0..3).map(|i| count_ranges_served(&c, i)).collect();
    let rounds = |i: usize| {
        let m = c.node(i).storage().metrics();
        (m.listing_rounds_agreed.get(), m.listing_rounds_merged.get())
    };
    let ranges_served =
        |kind: usize| -> usize { served.iter().map(|s| s[kind].load(Ordering::Relaxed)).sum() };

    // Every replica holds the same: three pages of 200 keys, each a round agreed by
    // digests alone.
    let (listed, pages) = list_all(&c, 0, &tenant, "many", 200).await;
    assert!(listed == all, "every key, in order");
    assert_eq!(pages, 3);
    let (agreed, merged) = rounds(0);
    assert!(
        agreed >= 3 && merged == 0,
        "agreed {agreed}, merged {merged}"
    );
    assert_eq!(ranges_served(0), 0, "no peer sent an entry");
    assert!(ranges_served(1) >= 6, "each page asked both other replicas");

    // Node 2 misses new keys, an overwrite and a delete.
    let mut missed = entries_of(&c, &tenant, (500..520).map(key), now - 2000, true);
    missed.extend(entries_of(
        &c,
        &tenant,
        [key(7)].into_iter(),
        now - 2000,
        false,
    ));
    missed.extend(entries_of(
        &c,
        &tenant,
        [key(9)].into_iter(),
        now - 1000,
        true,
    ));
    put_entries(&c, &[0, 1], &missed).await;
    let expected: Vec<String> = (0..520).filter(|&i| i != 7).map(key).collect();

    // Through node 2: the others' digests differ from its own, so it merges their entries.
    let before = (rounds(2), ranges_served(0));
    let (listed, _) = list_all(&c, 2, &tenant, "many", 1000).await;
    assert!(
        listed == expected,
        "the keys node 2 missed are listed, the deleted one is not"
    );
    assert!(
        rounds(2).1 > before.0.1,
        "node 2's rounds merged the replicas' entries"
    );
    assert!(
        ranges_served(0) > before.1,
        "node 2 read its peers' entries"
    );

    // Read repair brings node 2 level; then its rounds agree again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let agreed_before = rounds(2).0;
        let (listed, _) = list_all(&c, 2, &tenant, "many", 1000).await;
        assert!(listed == expected, "through node 2 while it is repaired");
        if rounds(2).0 > agreed_before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 2's rounds never agreed again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Through node 0: the same keys.
    let (listed, _) = list_all(&c, 0, &tenant, "many", 1000).await;
    assert!(listed == expected, "through node 0");
    c.shutdown().await;
}

/// A listing through an edge that holds no replica of the bucket reads each page's
/// entries from one replica and asks the others only for the digest of the same range:
/// while they agree, one replica sends entries and the page needs no merge. A reader that
/// hides an entry (as a hostile or lagging one would) differs from the others' digests,
/// so those rounds merge every replica's entries and the key is listed all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listing_through_an_edge_without_a_replica_reads_one_and_asks_the_others_for_digests() {
    use std::sync::atomic::Ordering;
    use xnode_storage::proto::StoreRequest;
    let c = Cluster::start_with(4, |cfg| {
        storage_config(cfg);
        // A reader slower than the others and the linger sends its round to the full
        // merge; on a loaded machine that must not happen by chance here. A linger costs
        // nothing while every replica answers.
        cfg.storage.read_linger = Duration::from_secs(2);
    })
    .await;
    c.wait_converged(Duration::from_secs(20)).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "many").await;
    let replicas: Vec<usize> = c
        .node(0)
        .storage()
        .metadata_replicas(&tenant.id(), "many")
        .iter()
        .map(|id| (0..c.len()).find(|&i| c.id(i) == *id).unwrap())
        .collect();
    assert_eq!(replicas.len(), 3, "rf 3 of 4 nodes");
    let edge = (0..c.len()).find(|i| !replicas.contains(i)).unwrap();
    let key = |i: usize| format!("k{i:04}");
    let now = xnode_types::unix_ms();
    put_entries(
        &c,
        &replicas,
        &entries_of(&c, &tenant, (0..500).map(key), now - 3000, true),
    )
    .await;
    let all: Vec<String> = (0..500).map(key).collect();
    let served: Vec<_> = replicas
        .iter()
        .map(|&i| count_ranges_served(&c, i))
        .collect();
    let rounds = || {
        let m = c.node(edge).storage().metrics();
        (m.listing_rounds_agreed.get(), m.listing_rounds_merged.get())
    };

    let (listed, pages) = list_all(&c, edge, &tenant, "many", 200).await;
    assert!(listed == all, "every key, in order");
    assert_eq!(pages, 3);
    let (agreed, merged) = rounds();
    assert!(
        agreed >= 3 && merged == 0,
        "agreed {agreed}, merged {merged}"
    );
    let entries_sent: Vec<usize> = served
        .iter()
        .map(|s| s[0].load(Ordering::Relaxed))
        .collect();
    let digests_sent: Vec<usize> = served
        .iter()
        .map(|s| s[1].load(Ordering::Relaxed))
        .collect();
    assert_eq!(
        entries_sent.iter().filter(|&&n| n > 0).count(),
        1,
        "one replica sent entries: {entries_sent:?}"
    );
    assert_eq!(
        digests_sent.iter().filter(|&&n| n >= 3).count(),
        2,
        "the two others sent a digest for each page: {digests_sent:?}"
    );

    // The reader now hides a key of the last page from its answers (an answer that ends
    // the range may hold any number of entries, so nothing but the others' digests can
    // tell).
    let reader = replicas[entries_sent.iter().position(|&n| n > 0).unwrap()];
    c.node(reader)
        .storage()
        .set_serve_tamper(Some(std::sync::Arc::new(|request, honest| {
            match (request, honest) {
                (StoreRequest::MetaRangeEncoded { .. }, honest) => {
                    xnode_storage::ServeFault::Answer(tamper_range(honest, |entries| {
                        entries
                            .into_iter()
                            .filter(|m| m.path.key != "k0450")
                            .collect()
                    }))
                }
                (_, honest) => xnode_storage::ServeFault::Answer(honest),
            }
        })));
    let before = rounds();
    let (listed, _) = list_all(&c, edge, &tenant, "many", 200).await;
    assert!(listed == all, "the hidden key is listed");
    let after = rounds();
    assert!(
        after.1 > before.1,
        "the page with the hidden key was merged"
    );
    c.shutdown().await;
}

/// One node's S3 gateway, called in-process (no HTTP: the signature check is s3s's own),
/// with the tenant's access key registered on it.
fn s3_gateway(c: &Cluster, i: usize, tenant: &Tenant) -> xnode_s3::Gateway {
    let keys = xnode_s3::S3Keys::new(c.node(i).db().clone());
    keys.create(
        tenant.id(),
        tenant.data_key(),
        None,
        Some(("XNODECONDITIONAL1".into(), "s".repeat(40))),
    )
    .unwrap();
    xnode_s3::Gateway::new(c.node(i).storage().clone(), keys)
}

fn s3_request<T>(input: T) -> s3s::S3Request<T> {
    s3s::S3Request {
        input,
        method: hyper::Method::PUT,
        uri: hyper::Uri::from_static("/"),
        headers: hyper::HeaderMap::new(),
        extensions: Default::default(),
        credentials: Some(s3s::auth::Credentials {
            access_key: "XNODECONDITIONAL1".into(),
            secret_key: "s".repeat(40).into(),
        }),
        region: None,
        service: None,
        trailing_headers: None,
    }
}

/// A conditional PUT of `body` through `gateway`: its ETag, or the S3 error code and status.
async fn conditional_put(
    gateway: &xnode_s3::Gateway,
    body: Vec<u8>,
    if_match: Option<s3s::dto::ETagCondition>,
    if_none_match: Option<s3s::dto::ETagCondition>,
) -> Result<String, (String, Option<hyper::StatusCode>)> {
    use s3s::S3;
    let input = s3s::dto::PutObjectInput::builder()
        .bucket("locks".into())
        .key("terraform.tfstate".into())
        .content_length(Some(body.len() as i64))
        .body(Some(s3s::dto::StreamingBlob::from(s3s::Body::from(body))))
        .if_match(if_match)
        .if_none_match(if_none_match)
        .build()
        .unwrap();
    match gateway.put_object(s3_request(input)).await {
        Ok(r) => Ok(r.output.e_tag.unwrap().value().to_owned()),
        Err(e) => Err((e.code().as_str().to_owned(), e.status_code())),
    }
}

/// Terraform state locks and Delta Lake or Iceberg commits: many clients create the same
/// key with `If-None-Match: *` through different nodes at once, and exactly one wins; then
/// many replace it with `If-Match` on the winner's ETag, and again exactly one wins. The
/// condition is decided by the key's coordinator, not by each edge, so this holds however
/// the writes interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conditional_writes_through_every_node_have_exactly_one_winner() {
    let c = Cluster::start_with(3, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "locks").await;
    let gateways: Vec<_> = (0..3).map(|i| s3_gateway(&c, i, &tenant)).collect();
    const WRITERS: usize = 9;

    // Round 1: create only if absent.
    let attempts = (0..WRITERS).map(|w| {
        let gateway = &gateways[w % 3];
        conditional_put(
            gateway,
            data(10_000, w as u8),
            None,
            Some(s3s::dto::ETagCondition::Any),
        )
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<usize> = (0..WRITERS).filter(|&w| results[w].is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one create wins: {results:?}");
    for (w, r) in results.iter().enumerate() {
        if let Err(e) = r {
            assert_eq!(
                e,
                &(
                    "PreconditionFailed".to_owned(),
                    Some(hyper::StatusCode::PRECONDITION_FAILED)
                ),
                "writer {w}"
            );
        }
    }
    let first = winners[0];
    let first_etag = results[first].clone().unwrap();
    for i in 0..3 {
        assert_eq!(
            c.get(i, &tenant, "locks", "terraform.tfstate", None)
                .await
                .unwrap(),
            data(10_000, first as u8),
            "the winner's body through node {i}"
        );
    }

    // Round 2: replace only the version seen.
    let seen = s3s::dto::ETagCondition::ETag(s3s::dto::ETag::Strong(first_etag));
    let attempts = (0..WRITERS).map(|w| {
        let gateway = &gateways[(w + 1) % 3];
        conditional_put(
            gateway,
            data(10_000, 100 + w as u8),
            Some(seen.clone()),
            None,
        )
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<usize> = (0..WRITERS).filter(|&w| results[w].is_ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one replacement wins: {results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.0 == "PreconditionFailed"),
        "{results:?}"
    );
    let second = winners[0];
    for i in 0..3 {
        assert_eq!(
            c.get(i, &tenant, "locks", "terraform.tfstate", None)
                .await
                .unwrap(),
            data(10_000, 100 + second as u8),
            "the second winner's body through node {i}"
        );
    }
    c.shutdown().await;
}

/// S3 versioning across nodes: versions written through one node, with a delete marker on
/// top, are all still there through another node after the first is lost; reads and
/// deletes by version id work, and deleting the newest versions brings older ones back.
/// Every version is an object of its own (sealed and replicated like any other), so this
/// is a check that the gateway's bookkeeping survives a node's loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn object_versions_and_delete_markers_survive_a_nodes_loss() {
    use futures::StreamExt;
    use s3s::S3;
    use s3s::dto::*;

    let mut c = Cluster::start_with(3, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "history").await;
    // Gateways whose key may change bucket settings (it holds the tenant's key).
    let gateway = |i: usize| {
        let keys = xnode_s3::S3Keys::new(c.node(i).db().clone());
        keys.create(
            tenant.id(),
            tenant.data_key(),
            Some(tenant.key.seed()),
            Some(("XNODECONDITIONAL1".into(), "s".repeat(40))),
        )
        .unwrap();
        xnode_s3::Gateway::new(c.node(i).storage().clone(), keys)
    };
    let (first, second) = (gateway(0), gateway(1));

    let enable = PutBucketVersioningInput::builder()
        .bucket("history".into())
        .versioning_configuration(VersioningConfiguration {
            status: Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::ENABLED,
            )),
            mfa_delete: None,
        })
        .build()
        .unwrap();
    first
        .put_bucket_versioning(s3_request(enable))
        .await
        .unwrap();
    c.wait_until(
        "the versioning setting to reach every node",
        Duration::from_secs(10),
        |c| {
            (0..3).all(|i| {
                xnode_storage::buckets::versioning_of(c.node(i).registry(), "history")
                    == xnode_storage::buckets::Versioning::Enabled
            })
        },
    )
    .await;

    let put = |body: Vec<u8>| {
        PutObjectInput::builder()
            .bucket("history".into())
            .key("doc".into())
            .content_length(Some(body.len() as i64))
            .body(Some(StreamingBlob::from(s3s::Body::from(body))))
            .build()
            .unwrap()
    };
    let v1 = first
        .put_object(s3_request(put(data(70_000, 1))))
        .await
        .unwrap();
    let v2 = first
        .put_object(s3_request(put(data(50_000, 2))))
        .await
        .unwrap();
    let (v1, v2) = (v1.output.version_id.unwrap(), v2.output.version_id.unwrap());
    assert_ne!(v1, v2);
    let delete = |version: Option<&str>| {
        DeleteObjectInput::builder()
            .bucket("history".into())
            .key("doc".into())
            .version_id(version.map(str::to_owned))
            .build()
            .unwrap()
    };
    let marker = first.delete_object(s3_request(delete(None))).await.unwrap();
    assert_eq!(marker.output.delete_marker, Some(true));
    let marker = marker.output.version_id.unwrap();

    // The first node is lost; everything is read through the second.
    c.crash(0).await;
    let get = |version: Option<&str>| {
        GetObjectInput::builder()
            .bucket("history".into())
            .key("doc".into())
            .version_id(version.map(str::to_owned))
            .build()
            .unwrap()
    };
    let read = |version: Option<String>| {
        let second = &second;
        async move {
            match second.get_object(s3_request(get(version.as_deref()))).await {
                Ok(r) => {
                    let mut body = r.output.body.unwrap();
                    let mut out = Vec::new();
                    while let Some(b) = body.next().await {
                        out.extend_from_slice(&b.unwrap());
                    }
                    Ok((out, r.output.version_id))
                }
                Err(e) => Err(e.code().as_str().to_owned()),
            }
        }
    };
    assert_eq!(
        read(None).await,
        Err("NoSuchKey".into()),
        "a delete marker is on top"
    );
    assert_eq!(
        read(Some(v1.clone())).await,
        Ok((data(70_000, 1), Some(v1.clone())))
    );
    assert_eq!(
        read(Some(v2.clone())).await,
        Ok((data(50_000, 2), Some(v2.clone())))
    );
    assert_eq!(
        read(Some(marker.clone())).await,
        Err("MethodNotAllowed".into())
    );

    let listing = second
        .list_object_versions(s3_request(
            ListObjectVersionsInput::builder()
                .bucket("history".into())
                .build()
                .unwrap(),
        ))
        .await
        .unwrap()
        .output;
    let markers = listing.delete_markers.unwrap();
    let versions = listing.versions.unwrap();
    assert_eq!(markers.len(), 1);
    assert_eq!(markers[0].version_id.as_deref(), Some(marker.as_str()));
    assert_eq!(markers[0].is_latest, Some(true));
    let ids: Vec<_> = versions
        .iter()
        .map(|v| v.version_id.clone().unwrap())
        .collect();
    assert_eq!(ids, [v2.clone(), v1.clone()], "newest first");
    assert!(versions.iter().all(|v| v.is_latest == Some(false)));
    assert_eq!(versions[1].size, Some(70_000));

    // Removing the marker brings the newest version back; removing that, the older one.
    second
        .delete_object(s3_request(delete(Some(&marker))))
        .await
        .unwrap();
    assert_eq!(read(None).await, Ok((data(50_000, 2), Some(v2.clone()))));
    second
        .delete_object(s3_request(delete(Some(&v2))))
        .await
        .unwrap();
    assert_eq!(read(None).await, Ok((data(70_000, 1), Some(v1.clone()))));
    assert_eq!(read(Some(v2.clone())).await, Err("NoSuchVersion".into()));
    c.shutdown().await;
}

/// Serves node `i`'s S3 gateway over HTTP on a loopback port until the test ends: the
/// access check (ACLs, policies) runs in s3s's access hook, which only the full service
/// goes through.
async fn serve_s3(c: &Cluster, i: usize) -> String {
    let node = c.node(i);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = node.with_metrics_registry(|metrics| {
        xnode_s3::S3Gateway::new(
            node.storage().clone(),
            node.db().clone(),
            node.tenant_rate_limit().clone(),
            metrics,
        )
    });
    tokio::spawn(xnode_s3::serve(
        listener,
        gateway,
        xnode_serve::HttpLimits::default(),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

/// ACLs are enforced on every node against anonymous requests: a public-read object is
/// served through a node that holds one of the owner's S3 keys, refused (with the reason)
/// through a node that holds none, and a private object, the listing of a private bucket
/// and any write are refused everywhere. A public bucket ACL opens the listing; a public
/// access block with IgnorePublicAcls closes everything again. The settings are signed by
/// the owner and reach the other nodes through the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anonymous_requests_get_only_what_the_acls_grant_on_every_node() {
    use s3s::S3;
    use s3s::dto::*;

    let c = Cluster::start_with(3, storage_config).await;
    let owner = Tenant::new();
    c.create_bucket(0, &owner, "site").await;
    // The owner's key is registered on nodes 0 and 1, not on node 2.
    let gateway = |i: usize| {
        let keys = xnode_s3::S3Keys::new(c.node(i).db().clone());
        keys.create(
            owner.id(),
            owner.data_key(),
            Some(owner.key.seed()),
            Some(("XNODECONDITIONAL1".into(), "s".repeat(40))),
        )
        .unwrap();
        xnode_s3::Gateway::new(c.node(i).storage().clone(), keys)
    };
    let edge = gateway(0);
    let _second = gateway(1);
    let put = |key: &str, acl: Option<&'static str>| {
        let mut req = s3_request(
            PutObjectInput::builder()
                .bucket("site".into())
                .key(key.into())
                .body(Some(StreamingBlob::from(s3s::Body::from(format!(
                    "body of {key}"
                )))))
                .build()
                .unwrap(),
        );
        if let Some(acl) = acl {
            req.headers
                .insert("x-amz-acl", hyper::header::HeaderValue::from_static(acl));
        }
        req
    };
    edge.put_object(put("index.html", Some("public-read")))
        .await
        .unwrap();
    edge.put_object(put("secret", None)).await.unwrap();

    let holder = serve_s3(&c, 1).await;
    let stranger = serve_s3(&c, 2).await;
    let http = reqwest::Client::new();
    let status = |method: reqwest::Method, url: String| {
        let http = http.clone();
        async move {
            let r = http.request(method, url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let get = reqwest::Method::GET;
    let (code, body) = status(get.clone(), format!("{holder}/site/index.html")).await;
    assert_eq!((code, body.as_str()), (200, "body of index.html"));
    let (code, body) = status(get.clone(), format!("{stranger}/site/index.html")).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("holds none of the owner"), "{body}");
    for node in [&holder, &stranger] {
        assert_eq!(
            status(get.clone(), format!("{node}/site/secret")).await.0,
            403
        );
        assert_eq!(status(get.clone(), format!("{node}/site")).await.0, 403);
        assert_eq!(
            status(reqwest::Method::PUT, format!("{node}/site/new"))
                .await
                .0,
            403
        );
        assert_eq!(
            status(reqwest::Method::DELETE, format!("{node}/site/index.html"))
                .await
                .0,
            403
        );
    }

    // A public-read bucket ACL opens the listing once it reached node 1.
    let mut req = s3_request(
        PutBucketAclInput::builder()
            .bucket("site".into())
            .build()
            .unwrap(),
    );
    req.headers.insert(
        "x-amz-acl",
        hyper::header::HeaderValue::from_static("public-read"),
    );
    edge.put_bucket_acl(req).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = status(get.clone(), format!("{holder}/site")).await;
        if code == 200 {
            assert!(
                body.contains("index.html") && body.contains("secret"),
                "{body}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the listing stayed closed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        status(get.clone(), format!("{holder}/site/secret")).await.0,
        403
    );

    // IgnorePublicAcls turns every public grant off.
    let block = PutPublicAccessBlockInput::builder()
        .bucket("site".into())
        .public_access_block_configuration(PublicAccessBlockConfiguration {
            ignore_public_acls: Some(true),
            ..Default::default()
        })
        .build()
        .unwrap();
    edge.put_public_access_block(s3_request(block))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while status(get.clone(), format!("{holder}/site/index.html"))
        .await
        .0
        != 403
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the public access block did not apply"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status(get, format!("{holder}/site")).await.0, 403);
}
