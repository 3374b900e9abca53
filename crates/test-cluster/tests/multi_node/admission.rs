//! Admission and placement by operator, on real nodes (review finding 5: Sybil capture of
//! replicas with invented zones).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use xnode_registry::admission::{AdmissionList, SignedAdmissionList};
use xnode_storage::proto::{StoreRequest, StoreResponse};
use xnode_store::{ChunkId, ObjectMeta, ObjectPath};
use xnode_test_cluster::{Cluster, Tenant};
use xnode_types::{NodeId, SecretKey};

const CHUNK: u32 = 64 * 1024;

/// The index of the node a configuration is for (the harness names data dirs `node-<i>`).
pub(crate) fn node_index(config: &xnode_node::Config) -> usize {
    config
        .data_dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("node-"))
        .and_then(|n| n.parse().ok())
        .expect("data dir named node-<i>")
}

pub(crate) fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn chunk_path(c: &Cluster, node: usize, id: &ChunkId) -> PathBuf {
    c.data_dir(node)
        .join("chunks")
        .join(&id.to_hex()[..2])
        .join(id.to_hex())
}

/// Nodes (by index) that hold chunk `id` on disk.
pub(crate) fn chunk_holders(c: &Cluster, id: &ChunkId) -> Vec<usize> {
    c.running()
        .into_iter()
        .filter(|&i| chunk_path(c, i, id).exists())
        .collect()
}

/// Asks node `to` (from node `from`) for its own copy of `path`'s metadata.
async fn local_meta(c: &Cluster, from: usize, to: usize, path: &ObjectPath) -> Option<ObjectMeta> {
    let request = StoreRequest::GetMeta { path: path.clone() };
    let body = xnode_wire::encode(&request).unwrap();
    let bytes = c
        .node(from)
        .mesh()
        .request(c.id(to), "store", body, Duration::from_secs(10))
        .await
        .expect("GetMeta answered");
    match xnode_wire::decode::<StoreResponse>(&bytes, xnode_storage::proto::MAX_STORE_MESSAGE)
        .unwrap()
    {
        StoreResponse::Meta(meta) => meta,
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Nodes (by index) whose own metadata table holds `path`.
pub(crate) async fn meta_holders(c: &Cluster, path: &ObjectPath) -> Vec<usize> {
    let mut out = Vec::new();
    for i in c.running() {
        let asker = if i == 0 { 1 } else { 0 };
        if local_meta(c, asker, i, path).await.is_some() {
            out.push(i);
        }
    }
    out
}

/// Every chunk of an object (its data chunks and its manifest).
pub(crate) async fn object_chunks(c: &Cluster, via: usize, meta: &ObjectMeta) -> Vec<ChunkId> {
    let info = meta.info.clone().expect("a live object");
    let manifest = c.node(via).storage().manifest(&info).await.unwrap();
    let mut ids: Vec<ChunkId> = manifest.chunks.iter().map(|r| r.id).collect();
    ids.push(info.manifest);
    ids
}

fn write_key(path: &Path) -> SecretKey {
    let key = SecretKey::generate();
    xnode_node::identity::write_key_file(path, &key).unwrap();
    key
}

/// Three nodes share one operator key (and, as the harness gives them, three different
/// zones: to zone spreading they were three failure domains). Three other nodes have an
/// operator each. Every object's chunks and metadata are on at most one of the three.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_of_one_operator_hold_at_most_one_replica() {
    let keys = tempfile::tempdir().unwrap();
    let shared = keys.path().join("shared-operator.key");
    write_key(&shared);
    let shared_for_config = shared.clone();
    let c = Cluster::start_with(6, move |config| {
        config.storage.chunk_size = CHUNK;
        if node_index(config) < 3 {
            config.operator_key_file = Some(shared_for_config.clone());
        }
    })
    .await;
    let one_operator = [0usize, 1, 2];
    // Every node sees four operators, so every placement spreads over three of them.
    c.wait_until(
        "every node sees all six nodes as candidates",
        Duration::from_secs(20),
        |c| {
            c.running()
                .iter()
                .all(|&i| c.node(i).storage().storage_set().len() == 6)
        },
    )
    .await;

    let tenant = Tenant::new();
    c.create_bucket(3, &tenant, "photos").await;
    let mut objects = Vec::new();
    for (n, via) in [3usize, 0, 4, 1, 5, 2].into_iter().enumerate() {
        let key = format!("object-{n}");
        let body = data(200_000 + n * 1000, n as u8);
        let meta = c.put(via, &tenant, "photos", &key, &body).await.unwrap();
        objects.push((key, body, meta));
    }

    let mut chunks = Vec::new();
    for (_, _, meta) in &objects {
        chunks.extend(object_chunks(&c, 3, meta).await);
    }
    // The background copies finish: every chunk on three nodes.
    c.wait_until("every chunk on 3 nodes", Duration::from_secs(30), |c| {
        chunks.iter().all(|id| chunk_holders(c, id).len() == 3)
    })
    .await;
    for id in &chunks {
        let holders = chunk_holders(&c, id);
        let shared_holders = holders.iter().filter(|i| one_operator.contains(i)).count();
        assert!(
            shared_holders <= 1,
            "chunk {id} is on {holders:?}: {shared_holders} nodes of one operator"
        );
    }
    for (key, body, _) in &objects {
        let path = ObjectPath::new(tenant.id(), "photos", key.clone()).unwrap();
        let holders = meta_holders(&c, &path).await;
        assert!(holders.len() >= 2, "{key}: metadata on {holders:?}");
        let shared_holders = holders.iter().filter(|i| one_operator.contains(i)).count();
        assert!(shared_holders <= 1, "{key}: metadata on {holders:?}");
        for i in c.running() {
            assert_eq!(
                &c.get(i, &tenant, "photos", key, None).await.unwrap(),
                body,
                "{key} via node {i}"
            );
        }
    }
    c.shutdown().await;
}

/// Under an allowlist that admits four operators, a fifth node (a member of the mesh, with
/// its own operator key) holds no chunk and no metadata after writes through every node,
/// refuses metadata a peer sends it, and reads and writes through every node still work.
/// Only node 0 is given the list file: the others learn it through the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_allowlist_keeps_data_off_nodes_it_does_not_admit() {
    let dir = tempfile::tempdir().unwrap();
    let authority = SecretKey::generate();
    let operator_files: Vec<PathBuf> = (0..4)
        .map(|i| dir.path().join(format!("operator-{i}.key")))
        .collect();
    let admitted: BTreeSet<_> = operator_files
        .iter()
        .map(|p| write_key(p).public())
        .collect();
    let list_file = dir.path().join("admission.list");
    let authority_hex = authority.public().to_hex();
    let c = Cluster::start_with(5, move |config| {
        config.storage.chunk_size = CHUNK;
        config.admission.policy = xnode_node::config::AdmissionPolicyName::Allowlist;
        config.admission.authority = Some(authority_hex.clone());
        let i = node_index(config);
        if i < 4 {
            config.operator_key_file = Some(operator_files[i].clone());
        }
        if i == 0 {
            // The network name is chosen by the harness; the list is signed for it.
            let list = AdmissionList {
                network: config.network.clone(),
                serial: 1,
                operators: admitted.clone(),
                nodes: BTreeSet::new(),
            };
            let signed = SignedAdmissionList::sign(&list, &authority).unwrap();
            std::fs::write(&list_file, xnode_wire::encode(&signed).unwrap()).unwrap();
            config.admission.list_file = Some(list_file.clone());
        }
    })
    .await;
    let outsider = 4;
    let outsider_id: NodeId = c.id(outsider);
    c.wait_until(
        "every node admits the four listed operators' nodes",
        Duration::from_secs(30),
        |c| {
            c.running().iter().all(|&i| {
                let set = c.node(i).storage().storage_set();
                set.len() == 4 && set.iter().all(|n| n.id != outsider_id)
            })
        },
    )
    .await;
    assert!(!c.node(outsider).storage().admitted_here());

    let tenant = Tenant::new();
    c.create_bucket(outsider, &tenant, "docs").await;
    let mut objects = Vec::new();
    for via in c.running() {
        let key = format!("via-{via}");
        let body = data(150_000, via as u8);
        let meta = c.put(via, &tenant, "docs", &key, &body).await.unwrap();
        objects.push((key, body, meta));
    }
    let mut chunks = Vec::new();
    for (_, _, meta) in &objects {
        chunks.extend(object_chunks(&c, 0, meta).await);
    }
    c.wait_until("every chunk on 3 nodes", Duration::from_secs(30), |c| {
        chunks.iter().all(|id| chunk_holders(c, id).len() == 3)
    })
    .await;
    for id in &chunks {
        assert!(
            !chunk_holders(&c, id).contains(&outsider),
            "chunk {id} on the node the allowlist does not admit"
        );
    }
    assert_eq!(c.node(outsider).storage().health().chunks_stored, 0);
    for (key, body, _) in &objects {
        let path = ObjectPath::new(tenant.id(), "docs", key.clone()).unwrap();
        let holders = meta_holders(&c, &path).await;
        assert!(!holders.is_empty(), "{key}: no metadata anywhere");
        assert!(
            !holders.contains(&outsider),
            "{key}: metadata on {holders:?}"
        );
        for i in c.running() {
            assert_eq!(
                &c.get(i, &tenant, "docs", key, None).await.unwrap(),
                body,
                "{key} via node {i}"
            );
        }
    }

    // Metadata a peer pushes to the outsider directly is refused.
    let path = ObjectPath::new(tenant.id(), "docs", "via-0".to_owned()).unwrap();
    let holder = meta_holders(&c, &path).await[0];
    let meta = local_meta(&c, outsider, holder, &path).await.unwrap();
    let body = xnode_wire::encode(&StoreRequest::PutMeta { meta }).unwrap();
    let answer = c
        .node(0)
        .mesh()
        .request(outsider_id, "store", body, Duration::from_secs(10))
        .await;
    let refused = match answer {
        Err(_) => true,
        Ok(bytes) => !matches!(
            xnode_wire::decode::<StoreResponse>(&bytes, xnode_storage::proto::MAX_STORE_MESSAGE),
            Ok(StoreResponse::MetaMerged { .. })
        ),
    };
    assert!(refused, "the outsider took metadata from a peer");
    assert!(local_meta(&c, 0, outsider, &path).await.is_none());
    c.shutdown().await;
}
