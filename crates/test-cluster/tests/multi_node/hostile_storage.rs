//! Storage against malicious peers: one node of the cluster plays a modified binary and
//! sends the raw `store` messages such a node could send (the findings of the security
//! review's storage part, as tests).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use xnode_storage::StorageError;
use xnode_storage::proto::{StoreRequest, StoreResponse};
use xnode_store::{ObjectMeta, ObjectPath};
use xnode_test_cluster::rogue::tamper_range;
use xnode_test_cluster::{Cluster, Tenant};
use xnode_types::{Hlc, NodeId};

const CHUNK: u32 = 64 * 1024;

fn storage_config(c: &mut xnode_node::Config) {
    c.storage.chunk_size = CHUNK;
    c.storage.repair_grace = Duration::from_secs(2);
    c.storage.repair_interval = Duration::from_millis(500);
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// Sends `meta` from node `from` to every other node (the metadata replicas among them).
async fn rogue_put_meta(c: &Cluster, from: usize, meta: &ObjectMeta) -> Vec<StoreResponse> {
    let mut answers = Vec::new();
    for i in c.running() {
        if i == from {
            continue;
        }
        let request = StoreRequest::PutMeta { meta: meta.clone() };
        if let Ok(answer) = c.raw_store_request(from, c.id(i), &request).await {
            answers.push(answer);
        }
    }
    answers
}

/// `meta` sealed again by node `i` under the authority it carries (as node `i` would
/// seal it had its clock given that version).
fn reseal(c: &Cluster, i: usize, mut meta: ObjectMeta) -> ObjectMeta {
    let authority = meta
        .seal
        .take()
        .expect("a written entry is sealed")
        .authority;
    meta.sealed(c.node(i).key(), authority)
}

async fn delete(
    c: &Cluster,
    via: usize,
    tenant: &Tenant,
    bucket: &str,
    key: &str,
) -> Result<(), StorageError> {
    c.node(via)
        .storage()
        .delete_object(&tenant.id(), bucket, key)
        .await
}

// ----- versions ---------------------------------------------------------------------------

/// Finding 8a: a tombstone dated `u64::MAX` used to pin a key forever, every later PUT
/// answered 200 and invisible.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_dated_into_the_future_is_refused_and_cannot_pin_a_key() {
    let c = Cluster::start_with(4, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(1, &tenant, "pinned").await;
    c.put(1, &tenant, "pinned", "a", b"first").await.unwrap();

    let path = ObjectPath::new(tenant.id(), "pinned", "a").unwrap();
    let pin = ObjectMeta {
        path,
        version: Hlc::new(u64::MAX, u32::MAX),
        writer: c.id(0),
        info: None,
        seal: None,
    };
    let answers = rogue_put_meta(&c, 0, &pin).await;
    assert!(!answers.is_empty());
    for answer in &answers {
        assert!(
            matches!(answer, StoreResponse::Error(m) if m.contains("ahead")),
            "a replica took a version dated into the future: {answer:?}"
        );
    }

    // Also one just past the bound: an hour ahead.
    let mut soon = pin.clone();
    soon.version = Hlc::new(now_ms() + 3_600_000, 0);
    for answer in rogue_put_meta(&c, 0, &soon).await {
        assert!(matches!(answer, StoreResponse::Error(_)), "{answer:?}");
    }

    c.put(1, &tenant, "pinned", "a", b"second").await.unwrap();
    for via in 1..4 {
        assert_eq!(
            c.get(via, &tenant, "pinned", "a", None).await.unwrap(),
            b"second"
        );
    }
    c.shutdown().await;
}

/// Object Lock: a node holding the tenant's write authority (an edge the tenant used), if
/// modified, seals a tombstone or a replacement over a version under COMPLIANCE retention.
/// Every replica refuses it, the ordinary delete is not acknowledged, and the version
/// reads back through every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sealed_delete_of_a_compliance_locked_version_is_refused_by_every_replica() {
    let c = Cluster::start_with(4, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(1, &tenant, "vault").await;
    let version = xnode_store::internal_key("ver/ledger.csv/00000000000000000000000000000001");
    let until = now_ms() + 3_600_000;
    let lock = [
        (
            xnode_store::LOCK_MODE_ENTRY.to_owned(),
            xnode_store::COMPLIANCE_MODE.to_owned(),
        ),
        (xnode_store::LOCK_UNTIL_ENTRY.to_owned(), until.to_string()),
    ];
    c.authorise(1, &tenant);
    let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"kept"))]);
    let written = c
        .node(1)
        .storage()
        .put_object(
            &tenant.id(),
            "vault",
            &version,
            &tenant.data_key(),
            "text/csv".into(),
            lock.into_iter().collect(),
            Some(4),
            body,
        )
        .await
        .unwrap();

    // Node 2 holds the tenant's authority too (the tenant sent it a signed request).
    c.authorise(2, &tenant);
    let mut tombstone = written.clone();
    tombstone.info = None;
    tombstone.version = Hlc::new(now_ms(), 0);
    tombstone.writer = c.id(2);
    let mut replacement = written.clone();
    replacement.version = Hlc::new(now_ms(), 1);
    replacement.writer = c.id(2);
    if let Some(info) = replacement.info.as_mut() {
        info.user_meta.remove(xnode_store::LOCK_MODE_ENTRY);
    }
    for breaking in [tombstone, replacement] {
        let breaking = reseal(&c, 2, breaking);
        let answers = rogue_put_meta(&c, 2, &breaking).await;
        assert!(!answers.is_empty());
        for answer in answers {
            assert!(
                !matches!(
                    answer,
                    StoreResponse::MetaMerged {
                        outcome: xnode_store::MergeOutcome::Stored
                    }
                ),
                "a replica took an entry that breaks a COMPLIANCE retention"
            );
        }
    }
    assert!(delete(&c, 2, &tenant, "vault", &version).await.is_err());
    for via in 0..4 {
        assert_eq!(
            c.get(via, &tenant, "vault", &version, None).await.unwrap(),
            b"kept"
        );
    }
    c.shutdown().await;
}

/// Finding 14: a write through an edge whose clock runs ahead, then a write through
/// another edge: the second must win (or fail loudly), never be acknowledged and invisible;
/// and a delete through the slower edge is never "204 and still there".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sequential_writes_through_edges_with_skewed_clocks_keep_their_order() {
    let c = Cluster::start_with(4, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "skew").await;
    let v1 = data(100_000, 1);
    let mut fast = c.put(0, &tenant, "skew", "k", &v1).await.unwrap();
    // Node 0 is a fast edge: its write carries a version 10 s ahead of everyone's clock
    // (sealed by node 0 under the tenant's authority, as its own write would be).
    fast.version = Hlc::new(now_ms() + 10_000, 0);
    let fast = reseal(&c, 0, fast);
    rogue_put_meta(&c, 0, &fast).await;
    assert_eq!(c.get(2, &tenant, "skew", "k", None).await.unwrap(), v1);

    let v2 = data(100_000, 2);
    match c.put(1, &tenant, "skew", "k", &v2).await {
        Ok(meta) => {
            assert!(meta.version > fast.version, "{meta:?}");
            for via in 0..4 {
                assert_eq!(
                    c.get(via, &tenant, "skew", "k", None).await.unwrap(),
                    v2,
                    "an acknowledged PUT through node 1 is not visible through node {via}"
                );
            }
        }
        Err(e) => assert!(
            matches!(e, StorageError::Conflict(_) | StorageError::Quorum(_)),
            "{e}"
        ),
    }

    // The fast edge writes again, 20 s ahead; a delete through a slower edge follows.
    let mut fast = c.put(0, &tenant, "skew", "k", &v1).await.unwrap();
    fast.version = Hlc::new(now_ms() + 20_000, 0);
    let fast = reseal(&c, 0, fast);
    rogue_put_meta(&c, 0, &fast).await;
    match delete(&c, 3, &tenant, "skew", "k").await {
        Ok(()) => {
            for via in 0..4 {
                let read = c.get(via, &tenant, "skew", "k", None).await;
                assert!(
                    matches!(read, Err(StorageError::NoSuchKey(_))),
                    "an acknowledged DELETE through node 3 left the object readable through node {via}: {:?}",
                    read.map(|b| b.len())
                );
            }
        }
        Err(e) => assert!(
            matches!(e, StorageError::Conflict(_) | StorageError::Quorum(_)),
            "{e}"
        ),
    }
    c.shutdown().await;
}

// ----- answers are checked against the question -------------------------------------------

/// Makes every node but `edge` answer through `tamper`.
fn tamper_all_but(c: &Cluster, edge: usize, tamper: xnode_storage::ServeTamper) {
    for i in c.running() {
        if i != edge {
            c.node(i).storage().set_serve_tamper(Some(tamper.clone()));
        }
    }
}

/// Finding 8b: a metadata replica answered `GetMeta(P)` with another object Q of the same
/// tenant, and the edge used the returned path to unwrap the key: Q's bytes came back as P.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_cannot_substitute_another_object_of_the_same_tenant() {
    let c = Cluster::start_with(4, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "subst").await;
    let p_bytes = data(50_000, 1);
    let q_bytes = data(70_000, 2);
    c.put(0, &tenant, "subst", "p", &p_bytes).await.unwrap();
    let mut q = c.put(0, &tenant, "subst", "q", &q_bytes).await.unwrap();
    q.version = Hlc::new(now_ms() + 5_000, 0);
    let bad_before = c.node(0).storage().metrics().bad_replica_reads.get();

    tamper_all_but(
        &c,
        0,
        std::sync::Arc::new(move |request, honest| match request {
            StoreRequest::GetMeta { path } if path.key == "p" => {
                xnode_storage::ServeFault::Answer(StoreResponse::Meta(Some(q.clone())))
            }
            _ => xnode_storage::ServeFault::Answer(honest),
        }),
    );
    let read = c.get(0, &tenant, "subst", "p", None).await;
    assert!(
        read.as_ref().map_or(true, |bytes| *bytes == p_bytes),
        "GET p returned {} bytes that are not p's (q has {})",
        read.as_ref().map(|b| b.len()).unwrap_or(0),
        q_bytes.len()
    );
    assert!(c.node(0).storage().metrics().bad_replica_reads.get() > bad_before);
    c.shutdown().await;
}

/// Findings 8d and 8e: `ListMeta` answers were merged without checking tenant, bucket or
/// prefix, so a replica could show one tenant another tenant's keys (and their metadata),
/// or stuff a listing with junk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_hold_only_the_requested_tenants_bucket_and_prefix() {
    let c = Cluster::start_with(4, storage_config).await;
    let alice = Tenant::new();
    let bob = Tenant::new();
    c.create_bucket(0, &alice, "alice-files").await;
    c.create_bucket(0, &bob, "bob-files").await;
    c.put(0, &alice, "alice-files", "docs/mine", b"a")
        .await
        .unwrap();
    c.put(0, &alice, "alice-files", "other/also-mine", b"a")
        .await
        .unwrap();
    let secret = c
        .put(0, &bob, "bob-files", "docs/secret", b"b")
        .await
        .unwrap();
    let elsewhere = c
        .put(0, &alice, "alice-files", "other/also-mine", b"a2")
        .await
        .unwrap();

    tamper_all_but(
        &c,
        0,
        std::sync::Arc::new(move |request, honest| match (request, honest) {
            (StoreRequest::ListMeta { .. }, StoreResponse::MetaPage { mut entries, .. }) => {
                entries.push(secret.clone());
                entries.push(elsewhere.clone());
                xnode_storage::ServeFault::Answer(StoreResponse::MetaPage {
                    entries,
                    truncated: false,
                })
            }
            // A liar's range digest differs from the edge's, or its entries would never
            // be read.
            (StoreRequest::MetaRangeDigest { .. }, _) => {
                xnode_storage::ServeFault::Answer(StoreResponse::RangeDigest(Default::default()))
            }
            // Range answers that break the question are refused whole (and the edge
            // falls back to listing by key reads, whose answers are filtered).
            (StoreRequest::MetaRange { .. } | StoreRequest::MetaRangeEncoded { .. }, honest) => {
                xnode_storage::ServeFault::Answer(tamper_range(honest, |mut entries| {
                    entries.push(secret.clone());
                    entries.push(elsewhere.clone());
                    entries
                }))
            }
            (_, honest) => xnode_storage::ServeFault::Answer(honest),
        }),
    );
    let listed = c
        .node(0)
        .storage()
        .list_objects(&alice.id(), "alice-files", "docs/", None, 100)
        .await
        .unwrap();
    let keys: Vec<String> = listed.iter().map(|m| m.path.key.clone()).collect();
    assert_eq!(keys, ["docs/mine"]);
    assert!(listed.iter().all(|m| m.path.tenant == alice.id()));
    c.shutdown().await;
}

/// Finding 9d: a peer that answers the garbage collector's `ScanMeta` with endless full
/// pages kept the round going, and its memory growing, for ever. The same holds for the
/// survey rounds make now (endless bucket digest listings, endless pages of one bucket),
/// and for the whole-table scan a round falls back to with a holder that cannot list its
/// buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endless_scan_pages_cannot_keep_garbage_collection_going() {
    endless_pages_stop_the_round(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endless_scan_pages_cannot_keep_a_whole_table_scan_going() {
    endless_pages_stop_the_round(true).await;
}

async fn endless_pages_stop_the_round(refuse_bucket_listing: bool) {
    let c = Cluster::start_with(3, |cfg| {
        storage_config(cfg);
        cfg.storage.gc_max_scan_entries = 20_000;
    })
    .await;
    c.wait_converged(Duration::from_secs(20)).await;
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let junk_tenant = Tenant::new().id();
    let writer = c.id(2);
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<&'static str>::new()));
    let seen = asked.clone();
    let junk_page = move |bucket: &str, limit: u32| -> Vec<ObjectMeta> {
        (0..limit)
            .map(|_| {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let key = format!("k{n:016}");
                ObjectMeta {
                    path: ObjectPath::new(junk_tenant, bucket, key.clone()).unwrap(),
                    version: Hlc::new(1, 0),
                    writer,
                    info: Some(xnode_store::ObjectInfo {
                        manifest: xnode_store::ChunkId::of(key.as_bytes()),
                        size: 1,
                        etag: String::new(),
                        content_type: String::new(),
                        user_meta: Default::default(),
                        created_ms: 1,
                    }),
                    seal: None,
                }
            })
            .collect()
    };
    let buckets = std::sync::atomic::AtomicU64::new(0);
    c.node(2)
        .storage()
        .set_serve_tamper(Some(std::sync::Arc::new(move |request, honest| {
            let answer = match request {
                StoreRequest::MetaBucketDigests { .. } if refuse_bucket_listing => {
                    seen.lock().unwrap().push("bucket digests");
                    StoreResponse::Error("unknown request".into())
                }
                StoreRequest::MetaBucketDigests { limit, .. } => {
                    seen.lock().unwrap().push("bucket digests");
                    StoreResponse::BucketDigests(
                        (0..*limit)
                            .map(|_| {
                                let n = buckets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let bucket = xnode_storage::proto::BucketRef {
                                    tenant: junk_tenant,
                                    name: format!("b{n:016}"),
                                };
                                (bucket, xnode_store::entropy::SetDigest([1; 32]))
                            })
                            .collect(),
                    )
                }
                StoreRequest::ScanBucketMeta { bucket, limit, .. } => {
                    seen.lock().unwrap().push("bucket scan");
                    StoreResponse::MetaList(junk_page(&bucket.name, *limit))
                }
                StoreRequest::ScanMeta { limit, .. } => {
                    seen.lock().unwrap().push("whole scan");
                    StoreResponse::MetaList(junk_page("junk", *limit))
                }
                _ => honest,
            };
            xnode_storage::ServeFault::Answer(answer)
        })));
    let round = tokio::time::timeout(
        Duration::from_secs(120),
        c.node(0).storage().collect_garbage(),
    )
    .await
    .expect("a garbage-collection round against endless pages must end");
    assert!(
        round.is_err(),
        "the round must stop and remove nothing: {round:?}"
    );
    let asked = asked.lock().unwrap().clone();
    let expected: &[&str] = if refuse_bucket_listing {
        &["bucket digests", "whole scan"]
    } else {
        &["bucket digests", "bucket scan"]
    };
    for what in expected {
        assert!(
            asked.contains(what),
            "the round never made a {what}: {asked:?}"
        );
    }
    c.shutdown().await;
}

// ----- manifests are authenticated --------------------------------------------------------

/// Fetches a chunk's bytes from any node, as a peer can.
async fn rogue_get_chunk(c: &Cluster, from: usize, id: xnode_store::ChunkId) -> Vec<u8> {
    for i in c.running() {
        if let Ok(StoreResponse::Chunk(Some(bytes))) = c
            .raw_store_request(from, c.id(i), &StoreRequest::GetChunk { id })
            .await
        {
            return bytes;
        }
    }
    panic!("no node serves chunk {id}");
}

/// Stores `bytes` as a chunk on every node that takes it, as a peer can.
async fn rogue_put_chunk(
    c: &Cluster,
    from: usize,
    bucket: Option<(&Tenant, &str)>,
    bytes: &[u8],
) -> xnode_store::ChunkId {
    let id = xnode_store::ChunkId::of(bytes);
    let mut stored = 0;
    for i in c.running() {
        if i == from {
            continue;
        }
        let request = put_chunk_request(id, bytes, bucket);
        if let Ok(StoreResponse::Stored) = c.raw_store_request(from, c.id(i), &request).await {
            stored += 1;
        }
    }
    assert!(stored > 0, "no node took the chunk");
    id
}

fn put_chunk_request(
    id: xnode_store::ChunkId,
    bytes: &[u8],
    bucket: Option<(&Tenant, &str)>,
) -> StoreRequest {
    StoreRequest::PutChunk {
        id,
        data: bytes.to_vec().into(),
        bucket: bucket.map(|(tenant, name)| xnode_storage::proto::BucketRef {
            tenant: tenant.id(),
            name: name.to_owned(),
        }),
    }
}

/// Finding 8c: a peer re-published an object's manifest with its chunk list truncated (or
/// its segments reordered), pointed the object's metadata at it, and GET returned 200 with
/// the shortened content.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manifest_altered_by_a_peer_is_never_served() {
    let c = Cluster::start_with(4, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "macs").await;
    let body = data(5 * CHUNK as usize, 9);
    let meta = c.put(0, &tenant, "macs", "k", &body).await.unwrap();
    let info = meta.info.clone().unwrap();
    let original =
        xnode_store::Manifest::decode(&rogue_get_chunk(&c, 3, info.manifest).await).unwrap();
    assert!(original.is_authenticated());

    // Node 3 truncates the chunk list (sizes kept consistent), then strips the MAC.
    let mut truncated = original.clone();
    let last = truncated.chunks.pop().unwrap();
    truncated.object_size -= u64::from(last.plain_len);
    let mut stripped = truncated.clone();
    stripped.mac = None;
    for (n, forged) in [truncated, stripped].into_iter().enumerate() {
        let id = rogue_put_chunk(&c, 3, Some((&tenant, "macs")), &forged.encode().unwrap()).await;
        let mut forged_meta = meta.clone();
        forged_meta.version = Hlc::new(now_ms() + 1_000 + n as u64, 0);
        forged_meta.writer = c.id(3);
        let mut forged_info = info.clone();
        forged_info.manifest = id;
        forged_info.size = forged.object_size;
        forged_meta.info = Some(forged_info);
        // Sealed by node 3 under a request the tenant sent it: the tenant used node 3 as
        // an edge, so its metadata is accepted, and the manifest's MAC is what stops it.
        forged_meta.seal = None;
        let forged_meta = forged_meta.sealed(
            c.node(3).key(),
            xnode_store::WriteAuthority::Request(tenant.request_proof(
                &c.id(3),
                "GET",
                "/v1/buckets",
            )),
        );
        rogue_put_meta(&c, 3, &forged_meta).await;
        for via in 0..3 {
            let read = c.get(via, &tenant, "macs", "k", None).await;
            assert!(
                matches!(
                    read,
                    Err(StorageError::Integrity(_) | StorageError::AccessDenied(_))
                ),
                "forgery {n}: GET through node {via} gave {:?}",
                read.map(|b| b.len())
            );
        }
    }
    c.shutdown().await;
}

// ----- a chunk's replication factor never comes from the sender ---------------------------

/// Where node `node` keeps chunk `id` on disk.
fn chunk_path(c: &Cluster, node: usize, id: &xnode_store::ChunkId) -> std::path::PathBuf {
    c.data_dir(node)
        .join("chunks")
        .join(&id.to_hex()[..2])
        .join(id.to_hex())
}

/// Running nodes (by index) that hold chunk `id` on disk.
fn holders(c: &Cluster, id: &xnode_store::ChunkId) -> Vec<usize> {
    c.running()
        .into_iter()
        .filter(|&i| chunk_path(c, i, id).exists())
        .collect()
}

/// Finding 9a: a peer stored junk on every node with `rf = 255`, and every node's repair
/// then kept copying it everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_cannot_spray_a_chunk_to_every_node() {
    let c = Cluster::start_with(6, storage_config).await;
    c.wait_converged(Duration::from_secs(30)).await;
    let set = c.node(1).storage().storage_set();
    // Junk that placement ranks node 0 (the sender) among its first rf + slack nodes, so
    // at least one of the others is outside them.
    let ranks = 3 + xnode_storage::PLACEMENT_SLACK;
    let junk = (0u64..)
        .map(|seed| {
            let mut junk = data(64 * 1024, 3);
            junk[..8].copy_from_slice(&seed.to_le_bytes());
            junk
        })
        .find(|junk| {
            xnode_store::place(&xnode_store::ChunkId::of(junk).0, &set, ranks).contains(&c.id(0))
        })
        .unwrap();
    let id = xnode_store::ChunkId::of(&junk);
    let mut accepted = 0;
    let mut refused = 0;
    for i in 1..6 {
        match c
            .raw_store_request(0, c.id(i), &put_chunk_request(id, &junk, None))
            .await
        {
            Ok(StoreResponse::Stored) => accepted += 1,
            other => {
                assert!(
                    matches!(&other, Ok(StoreResponse::Error(m)) if m.contains("not placed")),
                    "{other:?}"
                );
                refused += 1;
            }
        }
    }
    assert!(
        accepted < ranks,
        "{accepted} nodes took junk placed on {ranks}"
    );
    assert!(refused >= 1);
    // Repair copies it to placement nodes only.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(holders(&c, &id).len() <= ranks, "{:?}", holders(&c, &id));
    c.shutdown().await;
}

/// Finding 9b: a peer re-sent real chunks with `rf = 1` to their holders, and from then
/// on repair kept a single copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_cannot_lower_a_chunks_replication_factor() {
    let mut c = Cluster::start_with(5, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "keep").await;
    let body = data(4 * CHUNK as usize, 5);
    let meta = c.put(0, &tenant, "keep", "k", &body).await.unwrap();
    let manifest_id = meta.info.unwrap().manifest;
    let manifest =
        xnode_store::Manifest::decode(&rogue_get_chunk(&c, 4, manifest_id).await).unwrap();
    let ids: Vec<xnode_store::ChunkId> = std::iter::once(manifest_id)
        .chain(manifest.all_chunk_ids())
        .collect();
    c.wait_until(
        "three copies of every chunk",
        Duration::from_secs(30),
        |c| ids.iter().all(|id| holders(c, id).len() >= 3),
    )
    .await;

    // The rogue tenant (node 4) makes a bucket with one copy and relabels every chunk.
    let rogue = Tenant::new();
    let claim = c
        .node(4)
        .storage()
        .create_bucket(
            &rogue.id(),
            "one-copy",
            rogue.bucket_claim_with_rf("one-copy", Some(1)),
        )
        .unwrap();
    c.node(4).gossip_entry(&claim).await;
    for id in &ids {
        let bytes = rogue_get_chunk(&c, 4, *id).await;
        for i in 0..4 {
            let request = put_chunk_request(*id, &bytes, Some((&rogue, "one-copy")));
            let _ = c.raw_store_request(4, c.id(i), &request).await;
        }
    }

    // A holder of the first chunk dies; repair must still restore three copies.
    let victim = holders(&c, &ids[1]).into_iter().find(|&i| i != 4).unwrap();
    c.crash(victim).await;
    c.wait_until(
        "repair to restore three copies of every chunk",
        Duration::from_secs(60),
        |c| ids.iter().all(|id| holders(c, id).len() >= 3),
    )
    .await;
    c.shutdown().await;
}

// ----- hedged chunk reads ----------------------------------------------------------------

/// Finding 19: a replica that accepts `GetChunk` and never answers stalled each chunk read
/// for 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalling_replica_does_not_stall_reads() {
    let c = Cluster::start_with(4, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "hedge").await;
    let body = data(4 * 1024 * 1024, 4); // 64 chunks
    c.put(0, &tenant, "hedge", "big", &body).await.unwrap();

    c.node(1)
        .storage()
        .set_serve_tamper(Some(std::sync::Arc::new(|request, honest| match request {
            StoreRequest::GetChunk { .. } | StoreRequest::GetTenantChunk { .. } => {
                xnode_storage::ServeFault::Delay(Duration::from_secs(120), honest)
            }
            _ => xnode_storage::ServeFault::Answer(honest),
        })));
    let started = std::time::Instant::now();
    let read = c.get(2, &tenant, "hedge", "big", None).await.unwrap();
    let took = started.elapsed();
    assert!(read == body, "the object read back differs");
    eprintln!("read 4 MiB past a stalling replica in {took:?}");
    // Without hedging, every chunk the stalling replica is asked first for costs a whole
    // attempt timeout (30 s before, 10 s now); a few of the 64 always are. With it, each
    // costs at most one hedge delay (2 s at most): the bound leaves room for a loaded
    // machine and still fails on the unhedged read.
    assert!(
        took < Duration::from_secs(60),
        "a stalling replica held the read for {took:?}"
    );
    // Reads ask the nearest replica first (network coordinates), so whether node 1 was
    // asked first for any chunk, and a hedge needed, depends on the coordinates of the
    // moment; the hedging itself is unit-tested in `crates/storage/src/hedge.rs`.
    eprintln!(
        "hedged chunk reads: {}",
        c.node(2).storage().metrics().hedged_reads.get()
    );
    c.shutdown().await;
}

// ----- bounded background copies -----------------------------------------------------------

/// Finding 10 (storage part): a replica that takes `PutChunk` but answers late made the
/// edge keep every copy beyond the write quorum in memory, without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_to_a_slow_replica_beyond_the_quorum_are_bounded() {
    const BUDGET: u64 = 512 * 1024;
    let c = Cluster::start_with(4, |cfg| {
        storage_config(cfg);
        cfg.storage.background_copy_bytes = BUDGET;
    })
    .await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "slow").await;
    c.node(3)
        .storage()
        .set_serve_tamper(Some(std::sync::Arc::new(|request, honest| match request {
            StoreRequest::PutChunk { .. } => {
                xnode_storage::ServeFault::Delay(Duration::from_secs(60), honest)
            }
            _ => xnode_storage::ServeFault::Answer(honest),
        })));
    let body = data(3 * 1024 * 1024, 6); // 48 chunks
    let storage = c.node(0).storage().clone();
    let watch = tokio::spawn(async move {
        let mut most = 0;
        for _ in 0..400 {
            most = most.max(storage.background_copy_bytes());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        most
    });
    c.put(0, &tenant, "slow", "k", &body).await.unwrap();
    assert!(c.node(0).storage().background_copy_bytes() <= BUDGET);
    assert!(
        c.node(0)
            .storage()
            .metrics()
            .background_copies_skipped
            .get()
            > 0,
        "copies beyond the budget must be left to repair"
    );
    let most = watch.await.unwrap();
    assert!(most <= BUDGET, "background copies held {most} bytes");
    assert_eq!(c.get(1, &tenant, "slow", "k", None).await.unwrap(), body);
    c.shutdown().await;
}

// ----- garbage collection needs positive proof ---------------------------------------------

/// Findings 12c and 2: metadata holders that are down (or that a peer made others believe
/// dead or gone) used to drop out of the garbage collector's view; the survivors then
/// deleted every chunk only that metadata referenced, for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_silent_past_the_limit_no_longer_stops_garbage_collection() {
    let mut c = Cluster::start_with(4, |cfg| {
        storage_config(cfg);
        cfg.record_refresh_interval = Duration::from_millis(250);
        cfg.storage.repair_grace = Duration::from_secs(1);
        cfg.storage.gc_grace = Duration::from_millis(200);
        cfg.storage.gc_interval = Duration::from_secs(3600);
        cfg.storage.gc_silent_holder_after = Duration::from_secs(3);
    })
    .await;
    c.wait_converged(Duration::from_secs(30)).await;
    assert!(c.node(0).storage().collect_garbage().await.is_ok());
    // A node crashes without leaving: its own record still says it is active.
    c.crash(3).await;
    let round = c.node(0).storage().collect_garbage().await;
    assert!(
        round.is_err(),
        "a round ran without the answer of a holder silent for less than the limit: {round:?}"
    );
    // Silent past the limit, it no longer holds rounds up (what they remove meanwhile stays
    // in the trash, and a read restores it, should the node come back).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match c.node(0).storage().collect_garbage().await {
            Ok(_) => break,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "rounds still stop 30 s after the holder fell silent: {e}"
            ),
        }
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_collection_never_removes_chunks_whose_metadata_is_out_of_sight() {
    let c = Cluster::start_with(6, |cfg| {
        storage_config(cfg);
        cfg.storage.repair_grace = Duration::from_secs(1);
        cfg.storage.gc_grace = Duration::from_millis(200);
        cfg.storage.gc_interval = Duration::from_secs(3600);
    })
    .await;
    c.wait_converged(Duration::from_secs(30)).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "outofsight").await;
    let set = c.node(0).storage().storage_set();
    let key = format!("meta/{}/outofsight", tenant.id().to_hex());
    let meta_nodes = xnode_store::place(key.as_bytes(), &set, 3);
    let index = |id: NodeId| (0..6).find(|&i| c.id(i) == id).unwrap();
    let (a, b, third) = (
        index(meta_nodes[0]),
        index(meta_nodes[1]),
        index(meta_nodes[2]),
    );
    let edge = (0..6).find(|i| ![a, b, third].contains(i)).unwrap();
    let others: Vec<usize> = (0..6).filter(|&i| i != third).collect();
    let rest: Vec<usize> = (0..6).filter(|&i| i != a && i != b).collect();

    // The third metadata holder is cut off while objects are written: A and B take them.
    c.partition(&[third], &others).await;
    let mut bodies = Vec::new();
    for n in 0..6u8 {
        let body = data(150_000, n);
        c.put(edge, &tenant, "outofsight", &format!("o{n}"), &body)
            .await
            .unwrap();
        bodies.push(body);
    }
    // A and B drop out of everyone's sight with their disks (as a crash, or forged
    // rumours, would make it look); only then does the third come back, so it never gets
    // the metadata from them.
    c.partition(&[a, b], &rest).await;
    for i in 0..6 {
        let rules = xnode_mesh::FaultRules {
            blocked: if i == a || i == b {
                rest.iter().map(|&j| c.id(j)).collect()
            } else {
                [c.id(a), c.id(b)].into_iter().collect()
            },
            ..Default::default()
        };
        c.node(i).set_faults(rules).await.unwrap();
    }
    c.wait_until("A and B dead to the others", Duration::from_secs(30), |c| {
        rest.iter().all(|&o| {
            c.state(o, a) == Some(xnode_mesh::MemberState::Dead)
                && c.state(o, b) == Some(xnode_mesh::MemberState::Dead)
        })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // past repair_grace and gc_grace

    for &i in &rest {
        let round = c.node(i).storage().collect_garbage().await;
        assert!(
            round.is_err(),
            "node {i} collected garbage while metadata holders were out of sight: {round:?}"
        );
    }
    c.heal().await;
    c.wait_converged(Duration::from_secs(30)).await;
    for (n, body) in bodies.iter().enumerate() {
        assert_eq!(
            &c.get(edge, &tenant, "outofsight", &format!("o{n}"), None)
                .await
                .unwrap(),
            body
        );
    }
    c.shutdown().await;
}

/// What garbage collection removes goes to the trash first; a read that needs it after all
/// (a mistaken round) restores it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_removed_by_mistake_is_restored_from_the_trash() {
    let c = Cluster::start_with(4, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "trash").await;
    let body = data(3 * CHUNK as usize, 8);
    let meta = c.put(0, &tenant, "trash", "k", &body).await.unwrap();
    let manifest_id = meta.info.unwrap().manifest;
    let manifest =
        xnode_store::Manifest::decode(&rogue_get_chunk(&c, 0, manifest_id).await).unwrap();
    let victim = manifest.all_chunk_ids().next().unwrap();
    c.wait_until("three copies", Duration::from_secs(30), |c| {
        holders(c, &victim).len() >= 3
    })
    .await;
    // Every copy goes to the trash, as a mistaken round would do.
    for i in holders(&c, &victim) {
        let trash = c
            .data_dir(i)
            .join("chunks")
            .join(xnode_store::trash::TRASH_DIR);
        std::fs::create_dir_all(&trash).unwrap();
        std::fs::rename(chunk_path(&c, i, &victim), trash.join(victim.to_hex())).unwrap();
    }
    assert!(holders(&c, &victim).is_empty());
    assert_eq!(c.get(1, &tenant, "trash", "k", None).await.unwrap(), body);
    assert!(!holders(&c, &victim).is_empty());
    c.shutdown().await;
}

// ----- quorums follow the bucket's replication factor ---------------------------------------

/// Finding 12b: a bucket with `rf = 5` kept `W = R = 2`, so a read quorum could miss an
/// acknowledged write: 200 through one edge, then 404 through another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_with_more_copies_keeps_read_and_write_quorums_intersecting() {
    let c = Cluster::start_with(7, |cfg| {
        storage_config(cfg);
        cfg.storage.repair_grace = Duration::from_secs(600);
    })
    .await;
    c.wait_converged(Duration::from_secs(60)).await;
    let tenant = Tenant::new();
    let claim = tenant.bucket_claim_with_rf("five", Some(5));
    let entry = c
        .node(0)
        .storage()
        .create_bucket(&tenant.id(), "five", claim)
        .unwrap();
    c.node(0).gossip_entry(&entry).await;
    c.wait_until("the bucket everywhere", Duration::from_secs(10), |c| {
        c.running()
            .iter()
            .all(|&i| xnode_storage::buckets::owner_of(c.node(i).registry(), "five").is_some())
    })
    .await;
    let set = c.node(0).storage().storage_set();
    let key = format!("meta/{}/five", tenant.id().to_hex());
    let placed = xnode_store::place(key.as_bytes(), &set, 5);
    let index = |id: NodeId| (0..7).find(|&i| c.id(i) == id).unwrap();
    let p: Vec<usize> = placed.iter().map(|&id| index(id)).collect();
    let outside: Vec<usize> = (0..7).filter(|i| !p.contains(i)).collect();
    let (edge, reader) = (outside[0], outside[1]);
    c.partition(&[edge, p[0], p[1]], &[p[2], p[3], p[4], reader])
        .await;
    let put = c.put(edge, &tenant, "five", "k", b"acknowledged?").await;
    if put.is_ok() {
        let read = c.get(reader, &tenant, "five", "k", None).await;
        assert!(
            !matches!(read, Err(StorageError::NoSuchKey(_))),
            "an acknowledged PUT was not found by a read quorum"
        );
    }
    c.heal().await;
    c.shutdown().await;
}

// ----- storage audits -----------------------------------------------------------------------

/// Audits on a shortened clock: a window of 2 s sized to catch 10 % loss at 99.9 % (66
/// challenges per node per window), 1 s epochs, and a placement threshold of 0.99 so a
/// few epochs of failures suffice. The statistics are the production ones; only the
/// clock and the loss target are scaled (see the rate formula's unit tests).
fn audit_config(c: &mut xnode_node::Config) {
    storage_config(c);
    c.storage.audit_window = Duration::from_secs(2);
    c.storage.audit_detect_loss_ppm = 100_000;
    c.storage.audit_epoch = Duration::from_secs(1);
    c.storage.audit_reputation_epochs = 60;
    c.storage.audit_min_score_ppm = 990_000;
    c.storage.audit_timeout = Duration::from_secs(5);
    // Long enough for the third copy of a fresh write (beyond its quorum) to land.
    c.storage.audit_settle = Duration::from_secs(1);
    c.storage.audit_collect_interval = Duration::from_millis(300);
}

/// Issue 14, item 3: a modified node that silently dropped half of its chunks, and keeps
/// claiming them (its index and digests unchanged, so repair never restores them), fails
/// the slice-proof challenges of its peers. At least three of them sign failures, every
/// honest node computes its reputation below the threshold with the ledger's rules, and
/// new data is placed elsewhere. Honest nodes keep their scores.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_silently_lost_chunks_is_caught_by_audits_and_gets_no_new_data() {
    let c = Cluster::start_with(5, audit_config).await;
    let hostile = 4;
    let hostile_id = c.id(hostile);
    let tenant = Tenant::new();
    c.create_bucket(0, &tenant, "audited").await;
    let puts = (0..8u8).map(|k| {
        let (c, tenant) = (&c, &tenant);
        async move {
            let body = data(8 * CHUNK as usize, k);
            c.put(
                usize::from(k % 4),
                tenant,
                "audited",
                &format!("k{k}"),
                &body,
            )
            .await
            .unwrap();
        }
    });
    futures::future::join_all(puts).await;
    // The lost half: chunks whose id starts below 0x80 are answered as not held, to audits
    // and reads alike.
    let lost = |id: &xnode_store::ChunkId| id.0[0] < 0x80;
    c.node(hostile)
        .storage()
        .set_serve_tamper(Some(std::sync::Arc::new(move |request, answer| {
            use xnode_storage::ServeFault;
            match request {
                StoreRequest::AuditChunk { id, nonce, .. } if lost(id) => {
                    ServeFault::Answer(StoreResponse::AuditNotHeld { nonce: *nonce })
                }
                StoreRequest::GetChunk { id } | StoreRequest::GetTenantChunk { id, .. }
                    if lost(id) =>
                {
                    ServeFault::Answer(StoreResponse::Chunk(None))
                }
                _ => ServeFault::Answer(answer),
            }
        })));
    let honest: Vec<usize> = (0..5).filter(|&i| i != hostile).collect();
    let took = c
        .wait_until(
            "every honest node to leave the hostile node out of placement",
            Duration::from_secs(60),
            |c| {
                honest.iter().all(|&i| {
                    c.node(i)
                        .storage()
                        .health()
                        .low_reputation_nodes
                        .contains(&hostile_id)
                })
            },
        )
        .await;
    eprintln!("detected and excluded after {took:?}");
    for &i in &honest {
        let reputation = c.node(i).storage().reputation();
        let bad = reputation.iter().find(|r| r.node == hostile_id).unwrap();
        assert!(bad.excluded && bad.score_ppm < 990_000, "{bad:?}");
        assert!(bad.counted_failures > 0, "{bad:?}");
        assert!(bad.max_auditors >= 3, "audited by too few peers: {bad:?}");
        for good in reputation.iter().filter(|r| r.node != hostile_id) {
            assert!(!good.excluded && good.score_ppm >= 990_000, "{good:?}");
        }
        assert!(c.node(i).storage().health().audits.passed > 0);
    }
    // New data goes to the four honest nodes only.
    let before = c.node(hostile).storage().health().chunks_stored;
    let fresh = data(6 * CHUNK as usize, 99);
    c.put(1, &tenant, "audited", "fresh", &fresh).await.unwrap();
    assert_eq!(
        c.get(2, &tenant, "audited", "fresh", None).await.unwrap(),
        fresh
    );
    assert!(c.node(hostile).storage().health().chunks_stored <= before);
    c.shutdown().await;
}

// ----- object metadata is sealed -------------------------------------------------------------

/// A bucket name whose metadata placement (on node `via`'s view) includes node `rogue`, so
/// the rogue is one of the bucket's metadata replicas.
fn bucket_held_by(c: &Cluster, via: usize, rogue: usize, tenant: &Tenant, stem: &str) -> String {
    let set = c.node(via).storage().storage_set();
    (0..1000)
        .map(|n| format!("{stem}-{n}"))
        .find(|name| {
            let item = format!("meta/{}/{name}", tenant.id().to_hex());
            xnode_store::place(item.as_bytes(), &set, 3).contains(&c.id(rogue))
        })
        .expect("some bucket name places its metadata on the rogue")
}

/// The forgeries a rogue metadata replica (node 0, which the tenant never used) can make of
/// `honest`, an entry the tenant's edge wrote: a newer version with other contents and a
/// newer tombstone, each unsigned, sealed by the rogue with the edge's authority copied,
/// and sealed by the rogue while claiming to be the edge.
fn forgeries(c: &Cluster, honest: &ObjectMeta) -> Vec<ObjectMeta> {
    let authority = honest.seal.clone().expect("sealed").authority;
    let rogue_key = c.node(0).key();
    let mut newer = honest.clone();
    newer.version = Hlc::new(now_ms() + 1_000, 0);
    newer.seal = None;
    if let Some(info) = newer.info.as_mut() {
        info.size = 1;
        info.etag = "forged".into();
    }
    let mut tombstone = newer.clone();
    tombstone.info = None;
    let mut out = Vec::new();
    for forged in [newer, tombstone] {
        out.push(forged.clone());
        let mut as_rogue = forged.clone();
        as_rogue.writer = c.id(0);
        out.push(as_rogue.sealed(rogue_key, authority.clone()));
        out.push(forged.sealed(rogue_key, authority.clone()));
    }
    out
}

/// Findings 8 and 14: a metadata replica could `PutMeta` a newer version or a tombstone of
/// any object to the other replicas, and answer reads with them, and so replace or delete
/// any tenant's object. Entries are now sealed by their writer under the tenant's
/// authority: the forgeries are refused by every honest replica (and counted), ignored in
/// the rogue's own answers, and the object reads back intact through every honest node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rogue_metadata_replica_cannot_forge_a_newer_version_or_tombstone() {
    let c = Cluster::start_with(4, storage_config).await;
    c.wait_converged(Duration::from_secs(20)).await;
    let tenant = Tenant::new();
    let bucket = bucket_held_by(&c, 1, 0, &tenant, "sealed");
    // The tenant talks to nodes 1 to 3 only: node 0 holds no authority from it.
    c.create_bucket_with_edges(1, &tenant, &bucket, &[1, 2, 3])
        .await;
    let body = data(150_000, 7);
    let honest = c.put(1, &tenant, &bucket, "doc", &body).await.unwrap();
    let refused_before: u64 = (1..4)
        .map(|i| c.node(i).storage().metrics().meta_seals_refused.get())
        .sum();

    let forged = forgeries(&c, &honest);
    for meta in &forged {
        for answer in rogue_put_meta(&c, 0, meta).await {
            assert!(
                matches!(&answer, StoreResponse::Error(m) if m.contains("refused")),
                "an honest replica took a forged entry ({:?}, sealed: {}): {answer:?}",
                meta.version,
                meta.is_sealed()
            );
        }
    }
    let refused_after: u64 = (1..4)
        .map(|i| c.node(i).storage().metrics().meta_seals_refused.get())
        .sum();
    assert!(
        refused_after >= refused_before + forged.len() as u64,
        "refusals are counted: {refused_before} -> {refused_after}"
    );

    // The rogue also answers reads with the forged tombstone (it holds the bucket's
    // metadata, so readers ask it).
    let tombstone = forged.iter().rfind(|m| m.info.is_none()).cloned().unwrap();
    c.node(0)
        .storage()
        .set_serve_tamper(Some(std::sync::Arc::new(
            move |request, honest| match request {
                StoreRequest::GetMeta { .. } => {
                    xnode_storage::ServeFault::Answer(StoreResponse::Meta(Some(tombstone.clone())))
                }
                _ => xnode_storage::ServeFault::Answer(honest),
            },
        )));
    for via in 1..4 {
        assert_eq!(
            c.get(via, &tenant, &bucket, "doc", None).await.unwrap(),
            body,
            "the object through node {via}"
        );
        let held = c
            .node(via)
            .storage()
            .local_meta(&honest.path)
            .await
            .unwrap();
        assert!(
            held.is_none_or(|held| held == honest),
            "node {via} holds something other than the honest entry"
        );
    }
    c.shutdown().await;
}

/// Withholding: a metadata replica that cannot forge an entry can still answer with an
/// older genuine one (or none). With a replica that missed the latest write, the two make
/// a read quorum of their own, and the reader rolled the object back (or a listing left a
/// key out). Reads and listings now keep listening to the remaining replica for
/// `storage.read_linger`, so the latest write wins as long as one replica that holds it
/// answers in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_withholding_the_latest_entry_cannot_roll_an_object_back() {
    // Anti-entropy must not repair the replica that misses a write before the read.
    let c = Cluster::start_with(4, |config| {
        config.storage.chunk_size = CHUNK;
        config.storage.repair_interval = Duration::from_secs(120);
        // Longer than the default, so that a loaded machine cannot make the replica that
        // holds the latest write miss it.
        config.storage.read_linger = Duration::from_secs(1);
    })
    .await;
    c.wait_converged(Duration::from_secs(20)).await;
    let tenant = Tenant::new();
    let set = c.node(1).storage().storage_set();
    let bucket = bucket_held_by(&c, 1, 0, &tenant, "withheld");
    let item = format!("meta/{}/{bucket}", tenant.id().to_hex());
    let holders = xnode_store::place(item.as_bytes(), &set, 3);
    let index = |id: &NodeId| (0..4).find(|&i| c.id(i) == *id).unwrap();
    let edge = (1..4).find(|&i| !holders.contains(&c.id(i))).unwrap();
    let mut honest: Vec<usize> = holders.iter().map(index).filter(|&i| i != 0).collect();
    honest.sort_unstable();
    let (missed, holds) = (honest[0], honest[1]);
    c.create_bucket(edge, &tenant, &bucket).await;
    let old_body = data(70_000, 1);
    let old = c
        .put(edge, &tenant, &bucket, "doc", &old_body)
        .await
        .unwrap();
    // The write was acknowledged by two replicas; the third copy may still be on its way
    // (it finishes in the background), and the cut below must not be what stops it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .node(missed)
        .storage()
        .local_meta(&old.path)
        .await
        .unwrap()
        .is_none_or(|held| held.version != old.version)
    {
        assert!(
            Instant::now() < deadline,
            "the third replica never got the first version"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // One honest replica misses the next write (it is cut off for a moment), so the write
    // is held by the rogue, which acknowledges it, and by the other honest replica.
    let others: Vec<usize> = (0..4).filter(|&i| i != missed).collect();
    c.partition(&[missed], &others).await;
    let new_body = data(90_000, 2);
    let new = c
        .put(edge, &tenant, &bucket, "doc", &new_body)
        .await
        .unwrap();
    assert!(new.supersedes(&old));
    c.put(edge, &tenant, &bucket, "fresh", b"new key")
        .await
        .unwrap();
    c.heal().await;
    let held = c
        .node(missed)
        .storage()
        .local_meta(&new.path)
        .await
        .unwrap();
    assert!(
        held.as_ref()
            .is_some_and(|held| held.version == old.version),
        "the cut-off replica should hold only the older version, not {held:?}"
    );

    // Now the rogue answers reads with the older genuine entry, at once, and the replica
    // that holds the latest write answers a little later than the other two (it is
    // farther away).
    c.node(0)
        .storage()
        .set_serve_tamper(Some(std::sync::Arc::new(
            move |request, honest| match request {
                StoreRequest::GetMeta { .. } => {
                    xnode_storage::ServeFault::Answer(StoreResponse::Meta(Some(old.clone())))
                }
                // ... and hides the new key from its range answers (saying its range
                // differs, so the edge reads them).
                StoreRequest::MetaRangeDigest { .. } => xnode_storage::ServeFault::Answer(
                    StoreResponse::RangeDigest(Default::default()),
                ),
                StoreRequest::MetaRange { .. } | StoreRequest::MetaRangeEncoded { .. } => {
                    xnode_storage::ServeFault::Answer(tamper_range(honest, |entries| {
                        entries
                            .into_iter()
                            .filter(|m| m.path.key != "fresh")
                            .collect()
                    }))
                }
                _ => xnode_storage::ServeFault::Answer(honest),
            },
        )));
    c.node(holds)
        .storage()
        .set_serve_tamper(Some(std::sync::Arc::new(|request, honest| match request {
            StoreRequest::GetMeta { .. }
            | StoreRequest::MetaRange { .. }
            | StoreRequest::MetaRangeEncoded { .. }
            | StoreRequest::MetaRangeDigest { .. } => {
                xnode_storage::ServeFault::Delay(Duration::from_millis(20), honest)
            }
            _ => xnode_storage::ServeFault::Answer(honest),
        })));
    for attempt in 0..3 {
        assert!(
            c.get(edge, &tenant, &bucket, "doc", None).await.unwrap() == new_body,
            "read {attempt} through node {edge} was rolled back to the older version"
        );
        let listed = c
            .node(edge)
            .storage()
            .list_objects(&tenant.id(), &bucket, "", None, 100)
            .await
            .unwrap();
        let keys: Vec<&str> = listed.iter().map(|m| m.path.key.as_str()).collect();
        assert_eq!(
            keys,
            ["doc", "fresh"],
            "listing {attempt} through node {edge}"
        );
    }
    c.shutdown().await;
}

/// Finding 8d: a metadata replica could inject junk keys into any bucket's listing, by
/// pushing entries to the other replicas and by adding them to its own range answers.
/// Unsigned and forged entries are refused by replicas, and an answer holding one is
/// refused whole by the reader: the listing shows only the tenant's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rogue_metadata_replica_cannot_inject_keys_into_a_listing() {
    let c = Cluster::start_with(4, storage_config).await;
    c.wait_converged(Duration::from_secs(20)).await;
    let tenant = Tenant::new();
    let bucket = bucket_held_by(&c, 1, 0, &tenant, "listed");
    c.create_bucket_with_edges(1, &tenant, &bucket, &[1, 2, 3])
        .await;
    let honest = c.put(1, &tenant, &bucket, "real", b"real").await.unwrap();

    let mut junk = Vec::new();
    for (n, forged) in forgeries(&c, &honest).into_iter().enumerate() {
        let mut forged = forged;
        forged.path.key = format!("junk-{n}");
        if let Some(seal) = forged.seal.take() {
            forged = forged.sealed(c.node(0).key(), seal.authority);
        }
        junk.push(forged);
    }
    for meta in &junk {
        for answer in rogue_put_meta(&c, 0, meta).await {
            assert!(
                matches!(&answer, StoreResponse::Error(_)),
                "an honest replica took a junk key: {answer:?}"
            );
        }
    }
    let injected = junk.clone();
    c.node(0)
        .storage()
        .set_serve_tamper(Some(std::sync::Arc::new(move |request, honest| {
            match (request, honest) {
                (StoreRequest::MetaRangeDigest { .. }, _) => xnode_storage::ServeFault::Answer(
                    StoreResponse::RangeDigest(Default::default()),
                ),
                (
                    StoreRequest::MetaRange { .. } | StoreRequest::MetaRangeEncoded { .. },
                    honest,
                ) => xnode_storage::ServeFault::Answer(tamper_range(honest, |mut entries| {
                    entries.extend(injected.iter().cloned());
                    entries.sort_by(|a, b| a.path.key.cmp(&b.path.key));
                    entries
                })),
                (_, honest) => xnode_storage::ServeFault::Answer(honest),
            }
        })));
    for via in 1..4 {
        let listed = c
            .node(via)
            .storage()
            .list_objects(&tenant.id(), &bucket, "", None, 100)
            .await
            .unwrap();
        let keys: Vec<String> = listed.iter().map(|m| m.path.key.clone()).collect();
        assert_eq!(keys, ["real"], "the listing through node {via}");
    }
    c.shutdown().await;
}

// ----- a tenant can revoke an edge -----------------------------------------------------------

/// The tenant revokes, through node `through`, every authority it gave node `revoked`
/// after `after_ms`; returns once every running node holds the revocation.
async fn revoke_edge(c: &Cluster, tenant: &Tenant, revoked: usize, through: usize, after_ms: u64) {
    use xnode_registry::revocation::{RevokedScope, revocation_key, revocation_record};
    let revoked = c.id(revoked);
    let revocation = xnode_registry::Entry::sign(
        &tenant.key,
        revocation_key(&tenant.id(), &revoked, &RevokedScope::All),
        Some(revocation_record(&revoked, &RevokedScope::All, after_ms).into_bytes()),
        Hlc::new(now_ms().max(after_ms), 0),
    )
    .unwrap();
    c.node(through)
        .registry()
        .apply_tenant_entry(revocation.clone())
        .unwrap();
    c.node(through).gossip_entry(&revocation).await;
    c.wait_until("the revocation spread", Duration::from_secs(20), |c| {
        c.running().into_iter().all(|i| {
            c.node(i)
                .registry()
                .revoked_after(&tenant.id(), &revoked, &RevokedScope::All)
                == Some(after_ms)
        })
    })
    .await;
}

/// A revocation covers what the revoked edge wrote after the moment the tenant names, even
/// though every replica took those entries before it learnt of the revocation: listings
/// through every node leave them out (an edge that holds the bucket does not list them
/// from its own table), and keep what the edge wrote before and what others wrote after;
/// reads find no such object. (Before, every replica's answer was refused as a liar's,
/// and the tenant could neither list the bucket nor read the key.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listing_leaves_out_what_a_revoked_edge_wrote_after_the_revocation() {
    let c = Cluster::start_with(3, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(1, &tenant, "lists").await;
    c.put(0, &tenant, "lists", "early", b"e").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after_ms = now_ms();
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.put(0, &tenant, "lists", "late", b"l").await.unwrap();
    c.put(1, &tenant, "lists", "other", b"o").await.unwrap();

    revoke_edge(&c, &tenant, 0, 1, after_ms).await;
    for via in 0..3 {
        let listed = c
            .node(via)
            .storage()
            .list_objects(&tenant.id(), "lists", "", None, 100)
            .await
            .unwrap();
        let keys: Vec<&str> = listed.iter().map(|m| m.path.key.as_str()).collect();
        assert_eq!(keys, ["early", "other"], "the listing through node {via}");
        // A read finds no object there, as if the write never happened (not a failed
        // quorum: the replicas holding it are not lying).
        let late = c.get(via, &tenant, "lists", "late", None).await;
        assert!(
            matches!(late, Err(StorageError::NoSuchKey(_))),
            "node {via}: {late:?}"
        );
        assert_eq!(
            c.get(via, &tenant, "lists", "early", None).await.unwrap(),
            b"e"
        );
    }
    c.shutdown().await;
}

/// Issue 12: an edge the tenant used, and then revoked through another node, keeps writing
/// with the authority it holds. The replicas refuse its new entries, reads through every
/// other node never see them, and what it wrote before the revocation still reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_edge_can_no_longer_write_the_tenants_objects() {
    let c = Cluster::start_with(4, storage_config).await;
    let tenant = Tenant::new();
    c.create_bucket(1, &tenant, "revoked").await;
    let before = c
        .put(0, &tenant, "revoked", "before", b"written before")
        .await
        .unwrap();
    c.put(0, &tenant, "revoked", "kept", b"first")
        .await
        .unwrap();

    // The tenant revokes node 0 through node 1; the registry carries it to every node.
    let after_ms = now_ms();
    let revoked = c.id(0);
    revoke_edge(&c, &tenant, 0, 1, after_ms).await;
    tokio::time::sleep(Duration::from_millis(5)).await;

    // Node 0 still holds the tenant's request and writes with it: a new object, and a new
    // version of one written before. It knows of the revocation itself, so it refuses
    // before sealing, with an error that says why (not a failed quorum).
    for (key, body) in [("after", &b"written after"[..]), ("kept", b"second")] {
        match c.put(0, &tenant, "revoked", key, body).await {
            Err(StorageError::EdgeRevoked(message)) => {
                assert!(message.contains("revoked"), "{message}")
            }
            other => panic!("a write of {key:?} by the revoked edge answered {other:?}"),
        }
    }
    // Over HTTP, with a request the tenant signed for node 0 now (as a client that still
    // has node 0 configured would): 403 with a stable code, not 503.
    let path = "/v1/buckets/revoked/objects/over-http";
    let body = b"written after, over HTTP";
    let mut request = reqwest::Client::new()
        .put(format!("{}{path}", c.api_url(0)))
        .body(body.to_vec());
    for (k, v) in tenant.signed_headers(&revoked, "PUT", path, "", body, true) {
        request = request.header(k, v);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"]["code"], "edge_revoked", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("revoked this node's authority")),
        "{answer}"
    );

    // Raw messages: an entry sealed under an S3 registration (which has no expiry) and
    // back-dated to well before the revocation is refused as too old to be a write in
    // flight; one dated just before it (a write in flight when the tenant revoked) passes.
    let registration = tenant.request_proof(&revoked, "POST", "/v1/s3/keys");
    let back_dated = ObjectMeta {
        path: ObjectPath::new(tenant.id(), "revoked", "back-dated").unwrap(),
        version: Hlc::new(after_ms - 6 * 60 * 1000, 0),
        writer: revoked,
        info: before.info.clone(),
        seal: None,
    }
    .sealed(
        c.node(0).key(),
        xnode_store::WriteAuthority::S3Key(registration.clone()),
    );
    let answers = rogue_put_meta(&c, 0, &back_dated).await;
    assert_eq!(answers.len(), 3);
    for answer in &answers {
        assert!(
            matches!(answer, StoreResponse::Error(m) if m.contains("revoked")),
            "a replica took a back-dated entry of a revoked edge: {answer:?}"
        );
    }
    let in_flight = ObjectMeta {
        path: ObjectPath::new(tenant.id(), "revoked", "in-flight").unwrap(),
        version: Hlc::new(after_ms - 1, 0),
        writer: revoked,
        info: before.info.clone(),
        seal: None,
    }
    .sealed(
        c.node(0).key(),
        xnode_store::WriteAuthority::S3Key(registration),
    );
    for answer in rogue_put_meta(&c, 0, &in_flight).await {
        assert!(
            matches!(answer, StoreResponse::MetaMerged { .. }),
            "a write in flight at the revocation was refused: {answer:?}"
        );
    }

    for via in 1..4 {
        assert!(
            c.get(via, &tenant, "revoked", "after", None).await.is_err(),
            "node {via} reads an object the revoked edge wrote"
        );
        assert_eq!(
            c.get(via, &tenant, "revoked", "kept", None).await.unwrap(),
            b"first",
            "node {via}"
        );
        assert_eq!(
            c.get(via, &tenant, "revoked", "before", None)
                .await
                .unwrap(),
            b"written before",
            "node {via}"
        );
    }
    let refused: u64 = (1..4)
        .map(|i| c.node(i).storage().metrics().meta_revoked_refused.get())
        .sum();
    assert!(refused > 0, "no refusal was counted");

    // An edge the tenant did not revoke still writes.
    c.put(1, &tenant, "revoked", "kept", b"third")
        .await
        .unwrap();
    assert_eq!(
        c.get(2, &tenant, "revoked", "kept", None).await.unwrap(),
        b"third"
    );
    c.shutdown().await;
}
