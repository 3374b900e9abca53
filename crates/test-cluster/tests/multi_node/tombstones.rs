//! Tombstone collection across real nodes: deletes' tombstones go once every metadata
//! holder confirmed them, never before, and a peer cannot make a node drop one early.

use std::sync::Arc;
use std::time::Duration;

use xnode_storage::proto::{BucketRef, StoreRequest, StoreResponse};
use xnode_storage::{ServeFault, StorageError};
use xnode_store::entropy::SetDigest;
use xnode_store::{ObjectMeta, ObjectPath};
use xnode_test_cluster::rogue::tamper_range;
use xnode_test_cluster::{Cluster, Tenant};
use xnode_types::Hlc;

const BUCKET: &str = "tombs";

/// Three nodes that collect tombstones with the grace given. Repair and garbage
/// collection run only when a test asks, so no background round moves entries between
/// the replicas while a test compares them.
async fn cluster(grace: Duration) -> Cluster {
    cluster_collecting(grace, true).await
}

/// Three nodes that collect tombstones (or not) with the grace given.
async fn cluster_collecting(grace: Duration, collect: bool) -> Cluster {
    Cluster::start_with(3, move |cfg| {
        cfg.storage.chunk_size = 64 * 1024;
        cfg.storage.tombstone_grace = grace;
        cfg.storage.collect_tombstones = collect;
        cfg.storage.repair_interval = Duration::from_secs(3600);
        cfg.storage.gc_interval = Duration::from_secs(3600);
    })
    .await
}

fn path(tenant: &Tenant, key: &str) -> ObjectPath {
    ObjectPath::new(tenant.id(), BUCKET, key).unwrap()
}

/// Writes `live` and `deleted` keys through node 0, deletes the `deleted` ones, and waits
/// until every node holds every entry (a write or delete is acknowledged by a quorum; the
/// last replica gets it just after). Returns the tombstones.
async fn write_and_delete(
    c: &Cluster,
    tenant: &Tenant,
    live: &[&str],
    deleted: &[&str],
) -> Vec<ObjectMeta> {
    c.create_bucket(0, tenant, BUCKET).await;
    for key in live.iter().chain(deleted) {
        c.put(0, tenant, BUCKET, key, key.as_bytes()).await.unwrap();
    }
    for key in deleted {
        c.node(0)
            .storage()
            .delete_object(&tenant.id(), BUCKET, key)
            .await
            .unwrap();
    }
    let mut tombstones = Vec::new();
    for key in live.iter().chain(deleted) {
        let tombstone = deleted.contains(key);
        let held = held_everywhere(c, tenant, key, tombstone).await;
        if tombstone {
            tombstones.push(held);
        }
    }
    tombstones
}

/// Waits until every node holds the same entry of `key`, a tombstone or a live version
/// as asked (a write or delete is acknowledged by a quorum; the last replica gets it
/// just after), and returns it.
async fn held_everywhere(c: &Cluster, tenant: &Tenant, key: &str, tombstone: bool) -> ObjectMeta {
    let started = std::time::Instant::now();
    loop {
        let mut held = Vec::new();
        for i in 0..3 {
            held.push(
                c.node(i)
                    .storage()
                    .local_meta(&path(tenant, key))
                    .await
                    .unwrap(),
            );
        }
        if held
            .iter()
            .all(|m| m.as_ref().is_some_and(|m| m.is_tombstone() == tombstone))
            && held.windows(2).all(|w| w[0] == w[1])
        {
            return held.remove(0).unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the last write of {key} did not reach every replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The bucket digest each node holds, asked of it over the mesh.
async fn digests(c: &Cluster, tenant: &Tenant) -> Vec<SetDigest> {
    let mut out = Vec::new();
    for i in 0..3 {
        let request = StoreRequest::MetaDigests {
            buckets: vec![(
                BucketRef {
                    tenant: tenant.id(),
                    name: BUCKET.into(),
                },
                SetDigest::default(),
            )],
        };
        match c.raw_store_request((i + 1) % 3, c.id(i), &request).await {
            Ok(StoreResponse::Digests(d)) => out.push(d[0]),
            other => panic!("node {i} answered {other:?}"),
        }
    }
    out
}

async fn holders_of(c: &Cluster, tenant: &Tenant, key: &str) -> usize {
    let mut n = 0;
    for i in 0..3 {
        if c.node(i)
            .storage()
            .local_meta(&path(tenant, key))
            .await
            .unwrap()
            .is_some()
        {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tombstones_every_holder_confirmed_are_collected_and_the_keys_stay_deleted() {
    let c = cluster(Duration::ZERO).await;
    let tenant = Tenant::new();
    let live = ["live-a", "live-b", "live-c"];
    let deleted = ["gone-a", "gone-b", "gone-c", "gone-d"];
    let tombstones = write_and_delete(&c, &tenant, &live, &deleted).await;

    // A holder that fails to confirm (an error, or refusing the tombstones) stops the
    // round for them: nothing is dropped anywhere.
    for refusal in [
        StoreResponse::Error("busy".into()),
        StoreResponse::MetaMergedMany(vec![None; deleted.len()]),
    ] {
        c.node(2).storage().set_serve_tamper(Some(Arc::new(
            move |request, honest| match request {
                StoreRequest::PutMetaMany { .. } => ServeFault::Answer(refusal.clone()),
                _ => ServeFault::Answer(honest),
            },
        )));
        let round = c.node(0).storage().collect_tombstones().await.unwrap();
        assert_eq!(round.candidates, deleted.len() as u64);
        assert_eq!((round.confirmed, round.collected), (0, 0));
        for key in deleted {
            assert_eq!(holders_of(&c, &tenant, key).await, 3, "{key} was dropped");
        }
    }
    c.node(2).storage().set_serve_tamper(None);

    // Every holder answers: the tombstones go from every replica, the live keys stay.
    let before = digests(&c, &tenant).await;
    let round = c.node(0).storage().collect_tombstones().await.unwrap();
    assert_eq!(round.collected, deleted.len() as u64, "{round:?}");
    for key in deleted {
        assert_eq!(holders_of(&c, &tenant, key).await, 0, "{key} is still held");
    }
    for key in live {
        assert_eq!(holders_of(&c, &tenant, key).await, 3, "{key} went");
    }
    for i in 0..3 {
        let health = c.node(i).storage().health();
        assert_eq!(health.gc_removed_tombstones, deleted.len() as u64);
    }
    let shown: serde_json::Value = reqwest::get(format!("{}/v1/storage/health", c.api_url(2)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["gc_removed_tombstones"], deleted.len() as u64);
    // The digests moved by the same removals on every replica and agree.
    let after = digests(&c, &tenant).await;
    assert!(after.windows(2).all(|w| w[0] == w[1]), "{after:?}");
    assert_ne!(after, before);
    // Nothing comes back: reads find no object, listings show only the live keys.
    for key in deleted {
        assert!(matches!(
            c.get(1, &tenant, BUCKET, key, None).await,
            Err(StorageError::NoSuchKey(_))
        ));
    }
    let listed: Vec<String> = c
        .node(2)
        .storage()
        .list_objects(&tenant.id(), BUCKET, "", None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path.key)
        .collect();
    assert_eq!(listed, live);
    // A drop of what is gone changes nothing, and a second round has nothing to do.
    let request = StoreRequest::DropTombstones { tombstones };
    assert!(matches!(
        c.raw_store_request(1, c.id(0), &request).await,
        Ok(StoreResponse::TombstonesDropped(d)) if d.iter().all(|d| !d)
    ));
    let again = c.node(1).storage().collect_tombstones().await.unwrap();
    assert_eq!(again.candidates, 0);
    c.shutdown().await;
}

/// A replica that missed the delete still holds the old version. Dropping the tombstone
/// from the others alone would let that version come back; the collection first gives
/// it the tombstone, so the key stays deleted everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_that_missed_the_delete_gets_the_tombstone_before_anything_is_dropped() {
    let mut c = cluster(Duration::ZERO).await;
    let tenant = Tenant::new();
    write_and_delete(&c, &tenant, &["missed"], &[]).await;
    let old = c
        .node(2)
        .storage()
        .local_meta(&path(&tenant, "missed"))
        .await
        .unwrap()
        .unwrap();
    c.crash(2).await;
    c.node(0)
        .storage()
        .delete_object(&tenant.id(), BUCKET, "missed")
        .await
        .unwrap();
    c.restart(2).await;
    c.wait_converged(Duration::from_secs(10)).await;
    // Repair runs hourly here, so node 2 still holds the version the delete replaced.
    assert_eq!(
        c.node(2)
            .storage()
            .local_meta(&path(&tenant, "missed"))
            .await
            .unwrap(),
        Some(old)
    );

    let round = c.node(0).storage().collect_tombstones().await.unwrap();
    assert_eq!((round.candidates, round.collected), (1, 1), "{round:?}");
    assert_eq!(holders_of(&c, &tenant, "missed").await, 0);
    for i in 0..3 {
        assert!(matches!(
            c.get(i, &tenant, BUCKET, "missed", None).await,
            Err(StorageError::NoSuchKey(_))
        ));
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_cannot_make_a_node_drop_a_young_or_different_tombstone() {
    // A grace no tombstone of this test reaches.
    let c = cluster(Duration::from_secs(3600)).await;
    let tenant = Tenant::new();
    let tombstones = write_and_delete(&c, &tenant, &["live"], &["young"]).await;
    let young = tombstones[0].clone();

    // The exact tombstone held, but younger than the grace by the receiver's clock: kept.
    let drop = |t: ObjectMeta| StoreRequest::DropTombstones {
        tombstones: vec![t],
    };
    match c.raw_store_request(1, c.id(0), &drop(young.clone())).await {
        Ok(StoreResponse::TombstonesDropped(d)) => assert_eq!(d, [false]),
        other => panic!("{other:?}"),
    }
    // The collector itself finds nothing old enough.
    let round = c.node(0).storage().collect_tombstones().await.unwrap();
    assert_eq!(round.candidates, 0);

    // Tombstones old enough by their clock but not the entry held: the live key, and
    // the deleted key at another version. Both kept.
    let old = Hlc::new(1, 0);
    let live_meta = c
        .node(0)
        .storage()
        .local_meta(&path(&tenant, "live"))
        .await
        .unwrap()
        .unwrap();
    for forged in [
        ObjectMeta {
            version: old,
            info: None,
            ..live_meta
        },
        ObjectMeta {
            version: old,
            ..young.clone()
        },
    ] {
        match c.raw_store_request(1, c.id(0), &drop(forged)).await {
            Ok(StoreResponse::TombstonesDropped(d)) => assert_eq!(d, [false]),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(holders_of(&c, &tenant, "young").await, 3);
    assert_eq!(holders_of(&c, &tenant, "live").await, 3);
    assert_eq!(
        c.node(0).storage().local_meta(&young.path).await.unwrap(),
        Some(young)
    );
    assert_eq!(c.node(0).storage().health().gc_removed_tombstones, 0);
    // More than a request may carry is refused outright.
    let many = StoreRequest::DropTombstones {
        tombstones: vec![tombstones[0].clone(); xnode_storage::proto::MAX_DROP_TOMBSTONES + 1],
    };
    assert!(matches!(
        c.raw_store_request(1, c.id(0), &many).await,
        Ok(StoreResponse::Error(_))
    ));
    c.shutdown().await;
}

/// Collection is on by default (retired tombstones follow a bucket's placement, see
/// `a_collected_delete_survives_a_full_turnover_of_the_buckets_replicas`), and a node
/// with it turned off removes nothing, even the exact, old tombstone it holds when a
/// peer asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_does_not_collect_tombstones_keeps_them_whoever_asks() {
    assert!(xnode_storage::StorageConfig::default().collect_tombstones);
    let c = cluster_collecting(Duration::ZERO, false).await;
    let tenant = Tenant::new();
    let tombstones = write_and_delete(&c, &tenant, &[], &["gone"]).await;
    let request = StoreRequest::DropTombstones {
        tombstones: tombstones.clone(),
    };
    match c.raw_store_request(1, c.id(0), &request).await {
        Ok(StoreResponse::TombstonesDropped(d)) => assert_eq!(d, [false]),
        other => panic!("{other:?}"),
    }
    let round = c.node(0).storage().collect_tombstones().await.unwrap();
    assert_eq!(round, xnode_storage::tombstones::TombstoneRound::default());
    assert_eq!(holders_of(&c, &tenant, "gone").await, 3);
    assert_eq!(c.node(0).storage().local_retired_count().await.unwrap(), 0);
}

/// The attack that kept collection off by default before the cold table: a metadata
/// holder confirms a tombstone while keeping the version it deleted, and offers that
/// version again once every honest holder collected the tombstone: pushed to the others
/// (`PutMeta`, and `PutMetaMany` as anti-entropy pushes), as its answer to quorum reads
/// (`GetMeta`) and in its listing ranges (`MetaRange`). The honest holders retired the
/// tombstone to their cold table, which still outranks that version, so the key stays
/// deleted through every node and their hot tables do not take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_that_kept_a_collected_keys_old_version_cannot_bring_it_back() {
    let c = Cluster::start_with(3, |cfg| {
        cfg.storage.chunk_size = 64 * 1024;
        cfg.storage.tombstone_grace = Duration::ZERO;
        cfg.storage.collect_tombstones = true;
        cfg.storage.repair_interval = Duration::from_secs(3600);
        cfg.storage.gc_interval = Duration::from_secs(3600);
        // Reads and listings wait for the slowest replica as long as they may, so the
        // liar's answer is among those merged whenever it can be.
        cfg.storage.read_linger = Duration::from_secs(2);
    })
    .await;
    let tenant = Tenant::new();
    write_and_delete(&c, &tenant, &["kept", "gone"], &[]).await;
    let old = held_everywhere(&c, &tenant, "gone", false).await;
    c.node(0)
        .storage()
        .delete_object(&tenant.id(), BUCKET, "gone")
        .await
        .unwrap();
    let tombstone = held_everywhere(&c, &tenant, "gone", true).await;
    let round = c.node(0).storage().collect_tombstones().await.unwrap();
    assert_eq!((round.candidates, round.collected), (1, 1), "{round:?}");

    // Node 2 lies from now on: it answers reads and ranges with the old version.
    let offered = old.clone();
    c.node(2)
        .storage()
        .set_serve_tamper(Some(Arc::new(move |request, honest| {
            match (request, honest) {
                (StoreRequest::GetMeta { path }, _) if *path == offered.path => {
                    ServeFault::Answer(StoreResponse::Meta(Some(offered.clone())))
                }
                // Its range differs from the edge's, so the edge reads its entries.
                (StoreRequest::MetaRangeDigest { after: None, .. }, _) => {
                    ServeFault::Answer(StoreResponse::RangeDigest(Default::default()))
                }
                (
                    StoreRequest::MetaRange { after: None, .. }
                    | StoreRequest::MetaRangeEncoded { after: None, .. },
                    honest,
                ) => ServeFault::Answer(tamper_range(honest, |mut entries| {
                    let at = entries.partition_point(|m| m.path.key < offered.path.key);
                    if entries.get(at).is_none_or(|m| m.path != offered.path) {
                        entries.insert(at, offered.clone());
                    }
                    entries
                })),
                (_, honest) => ServeFault::Answer(honest),
            }
        })));
    // Node 1 does not answer peers' reads (down, for them), so a read or listing through
    // node 0 must merge the liar's answer with node 0's own, whatever the timing.
    c.node(1)
        .storage()
        .set_serve_tamper(Some(Arc::new(|request, honest| match request {
            StoreRequest::GetMeta { .. }
            | StoreRequest::MetaRange { .. }
            | StoreRequest::MetaRangeEncoded { .. }
            | StoreRequest::MetaRangeDigest { .. }
            | StoreRequest::ListMeta { .. } => {
                ServeFault::Answer(StoreResponse::Error("down".into()))
            }
            _ => ServeFault::Answer(honest),
        })));
    // ...and pushes it to the honest holders, which refuse it.
    let lost = |outcome: &Option<xnode_store::MergeOutcome>| matches!(outcome, Some(xnode_store::MergeOutcome::Superseded { version, .. }) if *version == tombstone.version);
    match c
        .raw_store_request(2, c.id(0), &StoreRequest::PutMeta { meta: old.clone() })
        .await
    {
        Ok(StoreResponse::MetaMerged { outcome }) => assert!(lost(&Some(outcome)), "{outcome:?}"),
        other => panic!("{other:?}"),
    }
    let many = StoreRequest::PutMetaMany {
        metas: vec![old.clone()],
    };
    match c.raw_store_request(2, c.id(1), &many).await {
        Ok(StoreResponse::MetaMergedMany(outcomes)) => {
            assert!(outcomes.len() == 1 && lost(&outcomes[0]), "{outcomes:?}")
        }
        other => panic!("{other:?}"),
    }

    // Through every node: no object, and the listing holds only the live key.
    for i in 0..3 {
        assert!(
            matches!(
                c.get(i, &tenant, BUCKET, "gone", None).await,
                Err(StorageError::NoSuchKey(_))
            ),
            "GET through node {i} found the deleted object"
        );
        assert!(
            matches!(
                c.node(i)
                    .storage()
                    .head_object(&tenant.id(), BUCKET, "gone")
                    .await,
                Err(StorageError::NoSuchKey(_))
            ),
            "HEAD through node {i} found the deleted object"
        );
        let listed: Vec<String> = c
            .node(i)
            .storage()
            .list_objects(&tenant.id(), BUCKET, "", None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.path.key)
            .collect();
        assert_eq!(listed, ["kept"], "listing through node {i}");
    }
    // The hot tables stay without the key (the reads' repairs of the tombstone found it
    // held already); the cold tables hold its one retired tombstone.
    for i in 0..3 {
        let storage = c.node(i).storage();
        assert_eq!(
            storage.local_meta(&old.path).await.unwrap(),
            None,
            "node {i}"
        );
        assert_eq!(
            storage.local_retired_meta(&old.path).await.unwrap(),
            Some(tombstone.clone()),
            "node {i}"
        );
        assert_eq!(storage.local_retired_count().await.unwrap(), 1, "node {i}");
        let range = storage
            .local_range(&tenant.id(), BUCKET, "", None, 100, false)
            .await
            .unwrap();
        assert_eq!(range.entries.len(), 1, "node {i}: {:?}", range.entries);
    }
    c.shutdown().await;
}

/// Waits until every node placement puts `tenant`'s bucket on (by node `view`'s storage
/// set) is running and holds `retired` retired tombstones. Returns those nodes' indices.
async fn placed_replicas_hold_retired(
    c: &Cluster,
    tenant: &Tenant,
    view: usize,
    retired: u64,
) -> Vec<usize> {
    let started = std::time::Instant::now();
    loop {
        let replicas = c
            .node(view)
            .storage()
            .metadata_replicas(&tenant.id(), BUCKET);
        let running: Vec<usize> = c
            .running()
            .into_iter()
            .filter(|&i| replicas.contains(&c.id(i)))
            .collect();
        let mut all_hold = running.len() == replicas.len();
        for &i in &running {
            all_hold &= c.node(i).storage().local_retired_count().await.unwrap() == retired;
        }
        if all_hold {
            return running;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the bucket's replicas {running:?} (of {} placed) did not all get the retired tombstone",
            replicas.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The attack that kept collection off by default while retired tombstones did not
/// travel: a bucket's metadata replicas change completely after a collection (three new
/// nodes join, the three that held the bucket stop one by one), and one of the new
/// replicas offers the version the collected delete replaced, which it got from someone
/// who kept it: pushed to the other replicas (`PutMeta`), as its answer to quorum reads
/// (`GetMeta`) and in its listing ranges (`MetaRange`). The retired tombstone followed
/// the bucket's placement by anti-entropy, so the key stays deleted through every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_collected_delete_survives_a_full_turnover_of_the_buckets_replicas() {
    let mut c = Cluster::start_partly(6, 3, Duration::from_secs(10), |cfg| {
        cfg.storage.chunk_size = 64 * 1024;
        cfg.storage.tombstone_grace = Duration::ZERO;
        cfg.storage.collect_tombstones = true;
        // A stopped node gives its place up at once, so placement moves with each stop.
        cfg.storage.repair_grace = Duration::ZERO;
        cfg.storage.repair_interval = Duration::from_millis(100);
        cfg.storage.gc_interval = Duration::from_secs(3600);
        cfg.storage.read_linger = Duration::from_secs(2);
    })
    .await;
    let tenant = Tenant::new();
    // Nodes 0 to 2 hold the bucket (rf 3 of 3) when the delete is collected; nodes 3 to 5
    // do not exist yet.
    c.create_bucket(0, &tenant, BUCKET).await;
    for key in ["kept", "gone"] {
        c.put(0, &tenant, BUCKET, key, key.as_bytes())
            .await
            .unwrap();
    }
    let old = held_everywhere(&c, &tenant, "gone", false).await;
    c.node(0)
        .storage()
        .delete_object(&tenant.id(), BUCKET, "gone")
        .await
        .unwrap();
    held_everywhere(&c, &tenant, "gone", true).await;
    let round = c.node(0).storage().collect_tombstones().await.unwrap();
    assert_eq!((round.candidates, round.collected), (1, 1), "{round:?}");
    assert_eq!(holders_of(&c, &tenant, "gone").await, 0);

    // New nodes join; placement takes some of them in, and the replicas placed hand the
    // retired tombstone on.
    for new in 3..6 {
        c.join(new).await;
        c.authorise(new, &tenant);
    }
    c.wait_converged(Duration::from_secs(20)).await;
    placed_replicas_hold_retired(&c, &tenant, 3, 1).await;
    // The old replicas stop one by one; each time placement moves, the replicas left
    // pass the record on before the next one goes.
    for old_replica in 0..3 {
        c.stop(old_replica).await;
        c.wait_until(
            "the storage sets to drop the stopped node",
            Duration::from_secs(20),
            |c| {
                (3..6).all(|i| {
                    c.node(i)
                        .storage()
                        .storage_set()
                        .iter()
                        .all(|m| m.id != c.id(old_replica))
                })
            },
        )
        .await;
        placed_replicas_hold_retired(&c, &tenant, 3, 1).await;
    }
    let replicas = placed_replicas_hold_retired(&c, &tenant, 3, 1).await;
    assert_eq!(
        replicas,
        [3, 4, 5],
        "placement moved wholly to the new nodes"
    );
    // The hot half of anti-entropy brought the live key to the new replicas too.
    held_by(&c, &tenant, "kept", &replicas).await;

    // Node 5 lies: it offers the old version to reads, ranges and the other replicas.
    let offered = old.clone();
    c.node(5)
        .storage()
        .set_serve_tamper(Some(Arc::new(move |request, honest| {
            match (request, honest) {
                (StoreRequest::GetMeta { path }, _) if *path == offered.path => {
                    ServeFault::Answer(StoreResponse::Meta(Some(offered.clone())))
                }
                // Its range differs from the edge's, so the edge reads its entries.
                (StoreRequest::MetaRangeDigest { after: None, .. }, _) => {
                    ServeFault::Answer(StoreResponse::RangeDigest(Default::default()))
                }
                (
                    StoreRequest::MetaRange { after: None, .. }
                    | StoreRequest::MetaRangeEncoded { after: None, .. },
                    honest,
                ) => ServeFault::Answer(tamper_range(honest, |mut entries| {
                    let at = entries.partition_point(|m| m.path.key < offered.path.key);
                    if entries.get(at).is_none_or(|m| m.path != offered.path) {
                        entries.insert(at, offered.clone());
                    }
                    entries
                })),
                (_, honest) => ServeFault::Answer(honest),
            }
        })));
    // Node 4 does not answer peers' reads, so reads and listings through node 3 merge
    // the liar's answer with node 3's own, whatever the timing.
    c.node(4)
        .storage()
        .set_serve_tamper(Some(Arc::new(|request, honest| match request {
            StoreRequest::GetMeta { .. }
            | StoreRequest::MetaRange { .. }
            | StoreRequest::MetaRangeEncoded { .. }
            | StoreRequest::MetaRangeDigest { .. }
            | StoreRequest::ListMeta { .. } => {
                ServeFault::Answer(StoreResponse::Error("down".into()))
            }
            _ => ServeFault::Answer(honest),
        })));
    for honest in [3, 4] {
        match c
            .raw_store_request(
                5,
                c.id(honest),
                &StoreRequest::PutMeta { meta: old.clone() },
            )
            .await
        {
            Ok(StoreResponse::MetaMerged { outcome }) => assert!(
                matches!(outcome, xnode_store::MergeOutcome::Superseded { .. }),
                "node {honest} took the old version: {outcome:?}"
            ),
            other => panic!("{other:?}"),
        }
    }
    // Nor can it plant cold records that delete live data: a live entry, an unsealed
    // tombstone and one under another entry's seal are all refused, and the live key
    // stays.
    let kept = c
        .node(3)
        .storage()
        .local_meta(&path(&tenant, "kept"))
        .await
        .unwrap()
        .unwrap();
    let later = Hlc::new(kept.version.wall_ms + 1, 0);
    let planted = vec![
        kept.clone(),
        ObjectMeta {
            version: later,
            info: None,
            seal: None,
            ..kept.clone()
        },
        ObjectMeta {
            version: later,
            info: None,
            ..kept.clone()
        },
    ];
    let request = StoreRequest::PutRetiredMany {
        tombstones: planted,
    };
    match c.raw_store_request(5, c.id(3), &request).await {
        Ok(StoreResponse::RetiredMerged(merged)) => assert_eq!(merged, [false; 3]),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.node(3).storage().local_retired_count().await.unwrap(), 1);
    assert!(c.get(3, &tenant, BUCKET, "kept", None).await.is_ok());
    for i in 3..6 {
        assert!(
            matches!(
                c.get(i, &tenant, BUCKET, "gone", None).await,
                Err(StorageError::NoSuchKey(_))
            ),
            "GET through node {i} found the deleted object"
        );
        assert!(
            matches!(
                c.node(i)
                    .storage()
                    .head_object(&tenant.id(), BUCKET, "gone")
                    .await,
                Err(StorageError::NoSuchKey(_))
            ),
            "HEAD through node {i} found the deleted object"
        );
        let listed: Vec<String> = c
            .node(i)
            .storage()
            .list_objects(&tenant.id(), BUCKET, "", None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.path.key)
            .collect();
        assert_eq!(listed, ["kept"], "listing through node {i}");
    }
    c.shutdown().await;
}

/// Waits until each of `nodes` holds a live entry of `key` in its hot table.
async fn held_by(c: &Cluster, tenant: &Tenant, key: &str, nodes: &[usize]) {
    let started = std::time::Instant::now();
    loop {
        let mut all = true;
        for &i in nodes {
            all &= c
                .node(i)
                .storage()
                .local_meta(&path(tenant, key))
                .await
                .unwrap()
                .is_some_and(|m| !m.is_tombstone());
        }
        if all {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{key} did not reach the replicas {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
