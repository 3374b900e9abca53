//! Every fuzz target, on every committed corpus file and a fixed number of deterministic
//! mutations of them (see `xnode_fuzz::harness`). Also the seed generator, an ignored test:
//! `cargo test -p xnode-fuzz --test decoders -- --ignored write_seeds` rewrites the
//! `seed-*` files of `crates/fuzz/corpus/` from real, valid values (`XNODE_SEED_TARGETS=a,b`
//! only those targets').

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use xnode_fuzz::{NETWORK, TARGETS, fixed_key, harness};
use xnode_wire::Versioned;

/// Mutations per target: the 24 targets at this count take about 4 s in a debug build
/// (most of it ed25519 checks of the entry and membership targets).
const MUTATIONS_PER_TARGET: usize = 6_000;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn read_corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = corpus_root().join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("no corpus for target {name} at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn no_decoder_panics_on_its_corpus_or_mutations_of_it() {
    let started = Instant::now();
    let mut failures = Vec::new();
    for target in TARGETS {
        let seeds = read_corpus(target.name);
        assert!(
            !seeds.is_empty(),
            "target {} has an empty corpus",
            target.name
        );
        let t = Instant::now();
        match harness::check(target, &seeds, MUTATIONS_PER_TARGET) {
            Ok(coverage) => eprintln!(
                "{:<20} {:>4} seeds {:>6} mutations {:>6} ms",
                target.name,
                coverage.seeds,
                coverage.mutations,
                t.elapsed().as_millis()
            ),
            Err(failure) => failures.push(failure.to_string()),
        }
    }
    eprintln!("all targets in {} ms", started.elapsed().as_millis());
    assert!(
        failures.is_empty(),
        "decoders panicked:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_corpus_folder_belongs_to_a_target_and_names_are_unique() {
    let names: BTreeSet<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(names.len(), TARGETS.len(), "two targets share a name");
    for entry in std::fs::read_dir(corpus_root()).unwrap() {
        let entry = entry.unwrap();
        let folder = entry.file_name().to_string_lossy().into_owned();
        assert!(
            names.contains(folder.as_str()),
            "corpus/{folder} matches no target in xnode_fuzz::TARGETS"
        );
    }
}

/// Kinds no peer sends: records a node writes to its own database or key files and reads
/// back. A hostile peer cannot reach their decoders.
const LOCAL_ONLY_KINDS: &[&str] = &[
    "KEY_FILE",
    "TENANT_KEY_FILE",
    "NODE_STATE",
    "NODE_RETIREMENT",
    "SCRUB_STATE",
    "GC_VIEW",
    "METER_COUNTER",
    "STORED_RECEIPT",
    "STORED_GRANT",
    "CHUNK_USAGE",
    "RUN_USAGE_SEEN",
    "SETTLE_EPOCH_RECORD",
    "SETTLE_SLASHES",
];

/// Kinds decoded by a target of its own (with the checks after decoding) rather than a
/// plain wire target.
const KINDS_OF_OTHER_TARGETS: &[(&str, &str)] = &[
    ("ADMISSION_LIST", "admission_list"),
    ("SIGNED_ADMISSION_LIST", "admission_list"),
    ("PAYOUT_BINDING", "payout_binding"),
];

/// Every kind tag in `xnode_wire::kinds` (read from its source: constants cannot be
/// listed otherwise) is a fuzz target or named above as local only: a new message type
/// cannot reach the network without one.
#[test]
fn every_wire_kind_a_peer_can_send_is_a_target() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wire/src/lib.rs");
    let source = std::fs::read_to_string(source).unwrap();
    let kinds = &source[source.find("pub mod kinds {").unwrap()..];
    let kinds = &kinds[..kinds.find("\n}").unwrap()];
    let mut missing = Vec::new();
    let mut seen = 0;
    for line in kinds.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("pub const ") else {
            continue;
        };
        let (name, value) = rest.split_once(": u8 = ").unwrap();
        let tag: u8 = value.trim_end_matches(';').parse().unwrap();
        seen += 1;
        let covered = LOCAL_ONLY_KINDS.contains(&name)
            || WIRE_KINDS.iter().any(|(_, t)| *t == tag)
            || KINDS_OF_OTHER_TARGETS
                .iter()
                .any(|(k, target)| *k == name && TARGETS.iter().any(|t| t.name == *target));
        if !covered {
            missing.push(format!("{name} ({tag})"));
        }
    }
    assert!(
        seen >= 40,
        "read only {seen} kinds from crates/wire/src/lib.rs"
    );
    assert!(
        missing.is_empty(),
        "kinds without a fuzz target (add one to xnode_fuzz::TARGETS and WIRE_KINDS, or to LOCAL_ONLY_KINDS if no peer sends it): {}",
        missing.join(", ")
    );
}

#[test]
fn wire_corpora_hold_encodings_of_their_own_kind() {
    // A corpus of garbage would still "pass"; the committed seeds must include inputs the
    // decoders accept, so mutations start from deep inside the formats.
    for target in TARGETS
        .iter()
        .filter(|t| WIRE_KINDS.iter().any(|(n, _)| *n == t.name))
    {
        let tag = WIRE_KINDS
            .iter()
            .find(|(n, _)| *n == target.name)
            .unwrap()
            .1;
        let seeds = read_corpus(target.name);
        assert!(
            seeds.iter().any(|s| s.first() == Some(&tag)),
            "no seed of {} starts with its kind tag {tag}",
            target.name
        );
    }
}

/// The wire targets and their kind tags, to sort the rogue node's samples by kind.
const WIRE_KINDS: &[(&str, u8)] = &[
    ("receipt_request", xnode_wire::kinds::RECEIPT_REQUEST),
    ("receipt_response", xnode_wire::kinds::RECEIPT_RESPONSE),
    (
        "store_request",
        xnode_storage::proto::StoreRequest::KIND_TAG,
    ),
    (
        "store_response",
        xnode_storage::proto::StoreResponse::KIND_TAG,
    ),
    (
        "compute_request",
        xnode_deploy::proto::ComputeRequest::KIND_TAG,
    ),
    (
        "compute_response",
        xnode_deploy::proto::ComputeResponse::KIND_TAG,
    ),
    ("rpc_request", xnode_mesh::proto::RpcRequest::KIND_TAG),
    ("rpc_response", xnode_mesh::proto::RpcResponse::KIND_TAG),
    ("swim_request", xnode_mesh::proto::SwimRequest::KIND_TAG),
    ("swim_response", xnode_mesh::proto::SwimResponse::KIND_TAG),
    ("membership_update", xnode_mesh::MembershipUpdate::KIND_TAG),
    ("registry_entry", xnode_registry::Entry::KIND_TAG),
    ("sync_request", xnode_registry::sync::SyncRequest::KIND_TAG),
    (
        "sync_response",
        xnode_registry::sync::SyncResponse::KIND_TAG,
    ),
    ("node_record", xnode_types::NodeRecord::KIND_TAG),
    ("node_summary", xnode_observe::NodeSummary::KIND_TAG),
    (
        "subtree_report",
        xnode_observe::aggregate::SubtreeReport::KIND_TAG,
    ),
    (
        "network_totals",
        xnode_observe::aggregate::NetworkTotals::KIND_TAG,
    ),
    ("figures_request", xnode_observe::FiguresRequest::KIND_TAG),
    ("node_figures", xnode_observe::NodeFigures::KIND_TAG),
    (
        "settle_request",
        xnode_settle::proto::SettleRequest::KIND_TAG,
    ),
    (
        "settle_response",
        xnode_settle::proto::SettleResponse::KIND_TAG,
    ),
    (
        "carried_reputation",
        xnode_settle::CarriedReputation::KIND_TAG,
    ),
    ("object_meta", xnode_store::ObjectMeta::KIND_TAG),
    ("manifest", xnode_store::Manifest::KIND_TAG),
    ("s3_access_key", xnode_s3::AccessKey::KIND_TAG),
];

/// Seeds larger than this are left out, to keep the committed corpus small.
const MAX_SEED_BYTES: usize = 2048;
/// At most this many seeds per target.
const MAX_SEEDS: usize = 12;

#[derive(Default)]
struct Seeds(BTreeMap<&'static str, Vec<Vec<u8>>>);

impl Seeds {
    fn add(&mut self, target: &'static str, bytes: Vec<u8>) {
        let list = self.0.entry(target).or_default();
        if bytes.len() <= MAX_SEED_BYTES && list.len() < MAX_SEEDS && !list.contains(&bytes) {
            list.push(bytes);
        }
    }

    fn wire<T: Versioned + Serialize>(&mut self, target: &'static str, value: &T) {
        self.add(target, xnode_wire::encode(value).unwrap());
    }

    fn json<T: serde::de::DeserializeOwned>(
        &mut self,
        target: &'static str,
        value: serde_json::Value,
    ) {
        let bytes = serde_json::to_vec(&value).unwrap();
        // A seed that no longer parses is stale: fail here rather than commit it.
        serde_json::from_slice::<T>(&bytes)
            .unwrap_or_else(|e| panic!("seed of {target} does not parse: {e}"));
        self.add(target, bytes);
    }
}

#[test]
#[ignore = "writes the corpus seeds; run by hand when a format changes"]
fn write_seeds() {
    use xnode_mesh::proto::{RpcErrorCode, RpcRequest, RpcResponse, SwimResponse};
    use xnode_registry::sync::SyncResponse;
    use xnode_storage::proto::{StoreRequest, StoreResponse};
    use xnode_test_cluster::rogue::Corpus;
    use xnode_types::SecretKey;

    let key = SecretKey::from_seed(&[1u8; 32]).unwrap();
    let victims: Vec<_> = (2u8..5)
        .map(|i| SecretKey::from_seed(&[i; 32]).unwrap().node_id())
        .collect();
    let corpus = Corpus::build(NETWORK, &key, &victims);
    let mut seeds = Seeds::default();
    let mut entries = Vec::new();
    let mut updates = Vec::new();
    let mut metas = Vec::new();
    let mut store_requests = Vec::new();
    for (_, bytes) in &corpus.samples {
        let Some(&(name, _)) = WIRE_KINDS
            .iter()
            .find(|(_, tag)| bytes.first() == Some(tag))
        else {
            continue;
        };
        seeds.add(name, bytes.clone());
        if let Ok(entry) = xnode_wire::decode::<xnode_registry::Entry>(bytes, usize::MAX) {
            entries.push(entry);
        }
        if let Ok(update) = xnode_wire::decode::<xnode_mesh::MembershipUpdate>(bytes, usize::MAX) {
            updates.push(update);
        }
        if let Ok(request) = xnode_wire::decode::<StoreRequest>(bytes, usize::MAX) {
            if let StoreRequest::PutMeta { meta } = &request {
                metas.push(meta.clone());
            }
            store_requests.push(bytes.clone());
        }
    }
    for update in &updates {
        seeds.wire("membership_update", update);
    }
    for entry in &entries {
        seeds.wire("registry_entry", entry);
    }
    for meta in &metas {
        seeds.wire("object_meta", meta);
    }

    observe_seeds(&mut seeds);
    settle_seeds(&mut seeds);
    for bucket in [
        None,
        Some(xnode_storage::proto::BucketRef {
            tenant: xnode_types::PublicKeyBytes([3; 32]),
            name: "photos".into(),
        }),
    ] {
        let header = xnode_storage::bulk::frame::ChunkHeader {
            request: 9,
            id: xnode_store::ChunkId([5; 32]),
            len: 1 << 20,
            bucket,
        };
        seeds.add("bulk_header", header.encode().unwrap());
    }

    // Answers no rogue request carries: every SWIM, sync, store and compute answer.
    if let Some(xnode_mesh::MembershipUpdate::Signed(record)) = updates
        .iter()
        .find(|u| matches!(u, xnode_mesh::MembershipUpdate::Signed(_)))
    {
        seeds.wire(
            "swim_response",
            &SwimResponse::Ack {
                record: Some(Box::new(record.clone())),
            },
        );
    }
    seeds.wire("swim_response", &SwimResponse::Nack);
    seeds.wire("swim_response", &SwimResponse::Merged);
    if let Some(xnode_mesh::MembershipUpdate::Signed(record)) = updates.first() {
        seeds.wire(
            "swim_response",
            &SwimResponse::SyncDiff {
                record: Box::new(record.clone()),
                differing: vec![0, 3, 15],
                updates: updates.iter().take(4).cloned().collect(),
            },
        );
    }
    seeds.wire(
        "swim_response",
        &SwimResponse::Sync {
            updates: updates.iter().take(4).cloned().collect(),
        },
    );
    seeds.wire(
        "sync_response",
        &SyncResponse::Entries {
            entries: entries.iter().take(2).cloned().collect(),
        },
    );
    seeds.wire(
        "sync_response",
        &SyncResponse::Summaries {
            differing: vec![0, 3, 15],
            items: entries
                .iter()
                .take(3)
                .map(|e| (e.key.clone(), e.version()))
                .collect(),
        },
    );
    seeds.wire(
        "sync_response",
        &SyncResponse::Pushed {
            updated: 2,
            rejected: 1,
        },
    );
    seeds.wire("sync_response", &SyncResponse::InSync);
    seeds.wire("sync_response", &SyncResponse::Differs);
    seeds.wire("store_response", &StoreResponse::Stored);
    seeds.wire(
        "store_response",
        &StoreResponse::Chunk(Some(b"chunk bytes".to_vec())),
    );
    seeds.wire(
        "store_response",
        &StoreResponse::Has(vec![true, false, true]),
    );
    seeds.wire(
        "store_response",
        &StoreResponse::Meta(metas.first().cloned()),
    );
    seeds.wire("store_response", &StoreResponse::MetaList(metas.clone()));
    seeds.wire(
        "store_response",
        &StoreResponse::Error("no such chunk".into()),
    );
    seeds.wire(
        "compute_response",
        &xnode_deploy::proto::ComputeResponse::Invoked {
            status: 200,
            headers: vec![("content-type".into(), b"text/plain".to_vec())],
            body: b"hello".to_vec(),
            fuel: 12_345,
        },
    );
    seeds.wire(
        "compute_response",
        &xnode_deploy::proto::ComputeResponse::Failed {
            status: 502,
            code: "trap".into(),
            message: "guest trapped".into(),
            reached_guest: true,
        },
    );
    seeds.wire(
        "compute_response",
        &xnode_deploy::proto::ComputeResponse::Grant(Some(vec![1, 2, 3])),
    );
    seeds.wire(
        "compute_response",
        &xnode_deploy::proto::ComputeResponse::Ok,
    );
    for body in store_requests.iter().take(4) {
        seeds.wire(
            "rpc_request",
            &RpcRequest {
                service: "store".into(),
                body: body.clone(),
            },
        );
    }
    let answer = xnode_wire::encode(&StoreResponse::Stored).unwrap();
    seeds.wire("rpc_response", &RpcResponse::Ok(answer));
    seeds.wire(
        "rpc_response",
        &RpcResponse::Err {
            code: RpcErrorCode::Overloaded,
            message: "busy".into(),
        },
    );

    // Records kept in the registry or on disk.
    let node = key.node_id();
    let record = xnode_types::NodeRecord {
        node_id: node,
        addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        api_url: Some("http://127.0.0.1:8080".into()),
        zone: "eu-1".into(),
        capacity: xnode_types::Capacity::default(),
        version: "0.1.0".into(),
        incarnation: 3,
        status: xnode_types::NodeStatus::Active,
        started_at_ms: 1_700_000_000_000,
        labels: [("region".to_string(), "eu".to_string())].into(),
        operator: None,
    };
    seeds.wire("node_record", &record);
    let authority = fixed_key();
    let list = xnode_registry::admission::AdmissionList {
        network: NETWORK.into(),
        serial: 7,
        operators: [key.public()].into(),
        nodes: victims.iter().copied().collect(),
    };
    let signed = xnode_registry::admission::SignedAdmissionList::sign(&list, authority).unwrap();
    seeds.wire("admission_list", &signed);
    seeds.wire("admission_list", &list);
    let manifest = xnode_store::Manifest {
        object_size: 150,
        chunk_size: 100,
        chunks: (0u32..2)
            .map(|n| xnode_store::ChunkRef {
                id: xnode_store::ChunkId::of(&n.to_le_bytes()),
                plain_len: if n == 0 { 100 } else { 50 },
            })
            .collect(),
        nonce_prefix: [7u8; 16],
        wrapped_key: xnode_store::wrap_key(
            &xnode_store::DataKey::derive(&[1u8; 32]),
            &xnode_store::ObjectKey::generate(),
            b"x",
        )
        .unwrap(),
        plaintext_blake3: [3u8; 32],
        segments: Vec::new(),
        mac: None,
    };
    seeds.add("manifest", manifest.encode().unwrap());
    seeds.wire(
        "s3_access_key",
        &xnode_s3::AccessKey {
            id: "XNABCDEFGHIJKLMNOPQR".into(),
            secret: "s".repeat(40),
            tenant: authority.public(),
            data_key: [9u8; 32],
            tenant_seed: Some([5u8; 32]),
            created_ms: 1_700_000_000_000,
            registration: None,
        },
    );

    // Tenant records (JSON), owned by the key the targets put in the entry's owner.
    let owner = authority.public().to_hex();
    let now = 1_700_000_000_000u64;
    seeds.json::<xnode_deploy::spec::DeploymentSpec>(
        "deployment_spec",
        serde_json::json!({
            "v": xnode_deploy::spec::DEPLOYMENT_RECORD_VERSION, "name": "hello", "kind": "http",
            "module": "0".repeat(64), "replicas": 2, "limits": {}, "env": {"A": "1"}, "args": ["--x"],
            "allowed_hosts": ["example.com"], "placement": {}, "storage": null,
            "memory_reserve_mb": null, "owner": owner, "created_ms": now,
        }),
    );
    seeds.json::<xnode_deploy::spec::JobSpec>(
        "job_spec",
        serde_json::json!({
            "v": 1, "id": "job-1", "deployment": "batch", "args": ["a"], "stdin_b64": "aGk=",
            "inputs": [], "output_bucket": "out", "key_checks": {}, "owner": owner, "created_ms": now,
        }),
    );
    seeds.json::<xnode_deploy::spec::JobRun>(
        "job_run",
        serde_json::json!({
            "v": 1, "job": "job-1", "owner": owner, "node": fixed_key().node_id().to_string(),
            "state": "running", "exit_code": null, "reason": null, "outputs": [], "started_ms": now,
        }),
    );
    seeds.json::<xnode_deploy::spec::ReplicaSet>(
        "replica_set",
        serde_json::json!({"v": 1, "replicas": [
            {"deployment": "hello", "owner": owner, "state": "running", "since_ms": now, "restarts": 1}
        ]}),
    );
    seeds.json::<xnode_storage::buckets::BucketRecord>(
        "bucket_claim",
        serde_json::json!({"v": 1, "name": "photos", "owner": owner, "created_ms": now}),
    );
    seeds.json::<xnode_deploy::grants::GrantKeys>(
        "grant_keys",
        serde_json::json!({"v": 1, "keys": {"photos": "ab".repeat(32)}}),
    );

    // The receipt targets' seeds are written by the metering crate's own exchange test
    // (`XNODE_WRITE_FUZZ_SEEDS=crates/fuzz/corpus cargo test -p xnode-metering an_exchange`);
    // the payout binding's were committed with the registry change that added them.
    const SEEDED_ELSEWHERE: &[&str] = &["receipt_request", "receipt_response", "payout_binding"];
    // `XNODE_SEED_TARGETS=a,b` writes only those targets' seeds (a new target's, without
    // rewriting every other's).
    let only = std::env::var("XNODE_SEED_TARGETS").ok();
    let chosen = |name: &str| {
        only.as_ref()
            .is_none_or(|o| o.split(',').any(|t| t == name))
    };
    for target in TARGETS
        .iter()
        .filter(|t| !SEEDED_ELSEWHERE.contains(&t.name) && chosen(t.name))
    {
        let list = seeds.0.get(target.name).cloned().unwrap_or_default();
        assert!(!list.is_empty(), "no seed made for target {}", target.name);
        let dir = corpus_root().join(target.name);
        std::fs::create_dir_all(&dir).unwrap();
        for old in std::fs::read_dir(&dir).unwrap() {
            let path = old.unwrap().path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            {
                std::fs::remove_file(path).unwrap();
            }
        }
        for (i, bytes) in list.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), bytes).unwrap();
        }
        eprintln!("{:<20} {} seeds", target.name, list.len());
    }
}

/// Seeds of the observability tree's messages and of a node's figures, from a real
/// recorder's figures.
fn observe_seeds(seeds: &mut Seeds) {
    use xnode_observe::aggregate::{NetworkTotals, SlotDigest, SlotFigures, SubtreeReport};
    use xnode_observe::{FiguresRequest, NodeFigures, NodeSummary, Outcome, Recorder};

    let at_ms = 1_800_000_000_000;
    let recorder = Recorder::new();
    let outcome = Outcome {
        status: 200,
        latency_us: 1_500,
        bytes_in: 100,
        bytes_out: 2_000,
        fuel: 0,
    };
    recorder.record(&["api", "storage", "bucket:photos"], outcome, None, at_ms);
    let (scopes, active_tenants) = recorder.snapshot(at_ms);
    let node = xnode_types::SecretKey::from_seed(&[7u8; 32])
        .unwrap()
        .node_id();
    let slot = SlotFigures {
        slot_ms: at_ms - at_ms % xnode_observe::SLOT_MS,
        nodes: 3,
        scopes: scopes.clone(),
    };
    let digest = SlotDigest {
        slot_ms: slot.slot_ms,
        digest: 0x0123_4567_89ab_cdef,
    };
    seeds.wire(
        "subtree_report",
        &SubtreeReport {
            slots: vec![slot.clone()],
            holds: vec![digest],
            only_held: false,
        },
    );
    seeds.wire(
        "subtree_report",
        &SubtreeReport {
            slots: Vec::new(),
            holds: vec![digest],
            only_held: true,
        },
    );
    seeds.wire(
        "network_totals",
        &NetworkTotals {
            slots: vec![slot],
            have: vec![digest],
        },
    );
    seeds.wire("network_totals", &NetworkTotals::default());
    seeds.wire("figures_request", &FiguresRequest {});
    let summary = NodeSummary {
        node,
        started_ms: at_ms - 60_000,
        seq: 12,
        at_ms,
        system: Default::default(),
        peers: Default::default(),
        active_tenants,
        scopes: scopes.clone(),
        peer_rtts: vec![xnode_observe::PeerRtt { node, rtt_us: 900 }],
    };
    seeds.wire(
        "node_figures",
        &NodeFigures {
            summary,
            windows: xnode_observe::WINDOWS
                .iter()
                .map(|(_, ms)| (*ms, scopes.clone()))
                .collect(),
        },
    );
}

/// Seeds of the `settle` service's messages, of an evidence bundle signed by a real key and
/// of a carried reputation.
fn settle_seeds(seeds: &mut Seeds) {
    use xnode_ledger::Epoch;
    use xnode_settle::proto::{SettleRequest, SettleResponse};

    let key = xnode_types::SecretKey::from_seed(&[9u8; 32]).unwrap();
    let epoch = Epoch(41);
    for request in [
        SettleRequest::Summary { epoch },
        SettleRequest::Bundle {
            epoch,
            publisher: key.node_id(),
        },
        SettleRequest::Vote { epoch },
        SettleRequest::Reputation { epoch },
    ] {
        seeds.wire("settle_request", &request);
    }
    let bundle =
        xnode_settle::EvidenceBundle::sign(&key, NETWORK, epoch, Vec::new(), Vec::new()).unwrap();
    let encoded = bundle.encode().unwrap();
    seeds.add("evidence_bundle", encoded.clone());
    let digest = xnode_settle::EvidenceBundle::body_digest(&bundle.body).unwrap();
    for response in [
        SettleResponse::Summary(xnode_settle::SetSummary {
            epoch,
            bundles: vec![(key.node_id(), digest)],
        }),
        SettleResponse::Bundle(Some(encoded)),
        SettleResponse::Bundle(None),
        SettleResponse::Vote(None),
        SettleResponse::Reputation(None),
        SettleResponse::SlashSignature(None),
        SettleResponse::ExitClearance(None),
    ] {
        seeds.wire("settle_response", &response);
    }
    seeds.wire(
        "carried_reputation",
        &xnode_settle::CarriedReputation {
            context: xnode_settle::EpochContext {
                epoch,
                params_digest: [1u8; 32],
                previous_epoch: Some(40),
                previous_reputation: [2u8; 32],
                reputation: [3u8; 32],
            },
            digest: Default::default(),
            state: Default::default(),
            votes: Vec::new(),
        },
    );
}
