//! Fuzz targets: every decoder of bytes that come from a peer or from the disk, each as a
//! named function that feeds arbitrary bytes to the real decoder and then to the checks the
//! node runs right after decoding.
//!
//! The targets are shared by two runners. The CI test (`tests/decoders.rs`) runs every
//! committed corpus file and a fixed set of deterministic mutations of each, so it is quick
//! and repeatable. The libFuzzer project in `fuzz/` at the repository root runs the same
//! functions coverage-guided for as long as one wants (`scripts/fuzz.sh`). A target returns
//! nothing: decoding errors are the expected outcome for garbage, and the only failure is a
//! panic (or an abort, such as an allocation the size of a forged length field).
//!
//! Adding a target is one line in [`TARGETS`]; its seeds come from `write_seeds` in the CI
//! test (an ignored test that encodes real values).

pub mod harness;

use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use xnode_deploy::spec::{DeploymentSpec, JobSpec, ReplicaSet};
use xnode_registry::Entry;
use xnode_types::{Hlc, PublicKeyBytes, SecretKey, SignatureBytes};
use xnode_wire::Versioned;

/// A named decoder under test.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The target's name: its corpus folder (`crates/fuzz/corpus/<name>/`) and the name
    /// `scripts/fuzz.sh` takes.
    pub name: &'static str,
    /// Feeds one input to the decoder. Must not panic, whatever the input.
    pub run: fn(&[u8]),
}

/// The network these targets check signed records against.
pub const NETWORK: &str = "xnode-fuzz";

/// Every target, in a stable order. Add a decoder here, in one line.
pub const TARGETS: &[Target] = &[
    // Storage RPC (`store` service) and its answers.
    wire::<xnode_storage::proto::StoreRequest, { MAX_STORE }>("store_request"),
    wire::<xnode_storage::proto::StoreResponse, { MAX_STORE }>("store_response"),
    // The storage bulk link's chunk header, as a peer holding a link's key may seal any.
    Target {
        name: "bulk_header",
        run: bulk_header,
    },
    // Compute RPC (`compute` service).
    wire::<xnode_deploy::proto::ComputeRequest, { MAX_COMPUTE }>("compute_request"),
    wire::<xnode_deploy::proto::ComputeResponse, { MAX_COMPUTE }>("compute_response"),
    // The mesh's generic RPC frames, SWIM and membership gossip.
    wire::<xnode_mesh::proto::RpcRequest, { xnode_mesh::proto::MAX_RPC_BYTES }>("rpc_request"),
    wire::<xnode_mesh::proto::RpcResponse, { xnode_mesh::proto::MAX_RPC_BYTES }>("rpc_response"),
    wire::<xnode_mesh::proto::SwimRequest, { MAX_SWIM }>("swim_request"),
    wire::<xnode_mesh::proto::SwimResponse, { MAX_SWIM }>("swim_response"),
    Target {
        name: "membership_update",
        run: membership_update,
    },
    // The registry: entries (gossip, anti-entropy, disk), sync messages, admission lists.
    Target {
        name: "registry_entry",
        run: registry_entry,
    },
    wire::<xnode_registry::sync::SyncRequest, { MAX_SYNC }>("sync_request"),
    wire::<xnode_registry::sync::SyncResponse, { MAX_SYNC }>("sync_response"),
    Target {
        name: "admission_list",
        run: admission_list,
    },
    Target {
        name: "payout_binding",
        run: payout_binding,
    },
    wire::<xnode_types::NodeRecord, { 64 * 1024 }>("node_record"),
    // Observability summaries gossiped by every node.
    wire::<xnode_observe::NodeSummary, { xnode_observe::MAX_SUMMARY_BYTES }>("node_summary"),
    // The observability tree (`observe-tree` service) and figures asked of a node
    // (`observe-figures`).
    wire::<xnode_observe::aggregate::SubtreeReport, { MAX_AGGREGATE }>("subtree_report"),
    wire::<xnode_observe::aggregate::NetworkTotals, { MAX_AGGREGATE }>("network_totals"),
    wire::<xnode_observe::FiguresRequest, { xnode_observe::MAX_SUMMARY_BYTES }>("figures_request"),
    wire::<xnode_observe::NodeFigures, { 4 * xnode_observe::MAX_SUMMARY_BYTES }>("node_figures"),
    // Object metadata and manifests, from peers and from the disk.
    wire::<xnode_store::ObjectMeta, { xnode_store::meta::MAX_META_BYTES }>("object_meta"),
    Target {
        name: "manifest",
        run: manifest,
    },
    // Registry values written by tenants (JSON), read through the node's checks.
    Target {
        name: "deployment_spec",
        run: deployment_spec,
    },
    Target {
        name: "job_spec",
        run: job_spec,
    },
    Target {
        name: "job_run",
        run: job_run,
    },
    Target {
        name: "replica_set",
        run: replica_set,
    },
    Target {
        name: "bucket_claim",
        run: bucket_claim,
    },
    Target {
        name: "grant_keys",
        run: grant_keys,
    },
    // S3 access key records on the disk.
    wire::<xnode_s3::AccessKey, { xnode_s3::keys::MAX_RECORD_BYTES }>("s3_access_key"),
    // Usage receipts between providers and edges (the `receipts` RPC service).
    wire::<xnode_metering::ReceiptRequest, { xnode_metering::MAX_RECEIPT_MESSAGE }>(
        "receipt_request",
    ),
    wire::<xnode_metering::ReceiptResponse, { xnode_metering::MAX_RECEIPT_MESSAGE }>(
        "receipt_response",
    ),
    // Settlement (`settle` service): requests, answers, the evidence bundles and carried
    // reputation inside answers.
    wire::<xnode_settle::proto::SettleRequest, { MAX_SETTLE }>("settle_request"),
    wire::<xnode_settle::proto::SettleResponse, { MAX_SETTLE }>("settle_response"),
    Target {
        name: "evidence_bundle",
        run: evidence_bundle,
    },
    wire::<xnode_settle::CarriedReputation, { MAX_SETTLE }>("carried_reputation"),
];

const MAX_STORE: usize = xnode_storage::proto::MAX_STORE_MESSAGE;
const MAX_COMPUTE: usize = xnode_deploy::proto::MAX_COMPUTE_MESSAGE;
const MAX_SWIM: usize = xnode_mesh::proto::MAX_SWIM_BYTES;
const MAX_SYNC: usize = xnode_registry::sync::MAX_SYNC_MESSAGE_BYTES;
const MAX_SETTLE: usize = xnode_settle::proto::MAX_SETTLE_MESSAGE;
const MAX_AGGREGATE: usize = xnode_observe::aggregate::MAX_AGGREGATE_BYTES;

/// The target of one [`Versioned`] type decoded with `xnode_wire::decode` under `LIMIT`,
/// the limit the node applies on that path.
const fn wire<T: Versioned + DeserializeOwned, const LIMIT: usize>(name: &'static str) -> Target {
    Target {
        name,
        run: decode_versioned::<T, LIMIT>,
    }
}

/// Looks up a target by name.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Runs `data` through the target called `name`; false when there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match target(name) {
        Some(t) => {
            (t.run)(data);
            true
        }
        None => false,
    }
}

fn decode_versioned<T: Versioned + DeserializeOwned, const LIMIT: usize>(data: &[u8]) {
    let _ = xnode_wire::decode::<T>(data, LIMIT);
}

/// A gossiped or SWIM-carried membership update, then the checks the mesh runs on a
/// signed liveness record before it believes it.
fn membership_update(data: &[u8]) {
    if let Ok(xnode_mesh::MembershipUpdate::Signed(record)) =
        xnode_wire::decode::<xnode_mesh::MembershipUpdate>(data, MAX_SWIM)
    {
        let _ = record.check_bounds();
        let _ = record.verify(NETWORK);
    }
}

/// A bulk link chunk header (opened already), and its encoding back.
fn bulk_header(data: &[u8]) {
    use xnode_storage::bulk::frame::ChunkHeader;
    if let Ok(header) = ChunkHeader::decode(data)
        && let Ok(encoded) = header.encode()
    {
        assert_eq!(
            encoded, data,
            "a decoded bulk header encodes back to its bytes"
        );
    }
}

/// A registry entry as gossip, anti-entropy or the disk hand it over, then its signature
/// and every decoder of a value the node reads from entries.
fn registry_entry(data: &[u8]) {
    let Ok(entry) = xnode_wire::decode::<Entry>(data, xnode_registry::MAX_ENTRY_BYTES) else {
        return;
    };
    let _ = entry.verify();
    let _ = entry.version();
    let _ = xnode_registry::node_record(&entry);
    read_entry_values(&entry);
}

/// An evidence bundle as a committee member fetches it: decoded under the default limits,
/// then verified for the epoch it names.
fn evidence_bundle(data: &[u8]) {
    let limits = xnode_settle::BundleLimits::default();
    let Ok(bundle) = xnode_settle::EvidenceBundle::decode(data, &limits) else {
        return;
    };
    let epoch = bundle.body.epoch;
    let _ = bundle.verify(NETWORK, epoch, &limits);
}

fn read_entry_values(entry: &Entry) {
    let _ = xnode_deploy::spec::decode_deployment(entry);
    let _ = xnode_deploy::spec::decode_job(entry);
    let _ = xnode_deploy::spec::decode_run(entry);
    let _ = xnode_storage::buckets::decode_claim(entry);
}

/// A signed admission list (a file or a registry value), decoded and verified against a
/// fixed authority, and the list body alone, which is decoded only after the signature
/// checks and so is out of reach of the first half for arbitrary bytes.
fn admission_list(data: &[u8]) {
    use xnode_registry::admission::{AdmissionList, MAX_ADMISSION_LIST_BYTES, SignedAdmissionList};
    let authority = fixed_key().public();
    let _ = SignedAdmissionList::decode_verified(data, &authority, NETWORK);
    let _ = xnode_wire::decode::<AdmissionList>(data, MAX_ADMISSION_LIST_BYTES);
}

/// An operator's payout binding, decoded and its address's consent checked (a secp256k1
/// recovery from bytes a peer chose).
fn payout_binding(data: &[u8]) {
    use xnode_registry::payout::{MAX_PAYOUT_BINDING_BYTES, PayoutBinding};
    if let Ok(binding) = xnode_wire::decode::<PayoutBinding>(data, MAX_PAYOUT_BINDING_BYTES) {
        let _ = binding.verify(NETWORK);
    }
}

fn manifest(data: &[u8]) {
    let _ = xnode_store::Manifest::decode(data);
}

/// The key used to sign and own the entries the value targets build.
pub fn fixed_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| {
        // A 32-byte seed is always a valid ed25519 seed; the fallback only satisfies the
        // type and is never taken.
        SecretKey::from_seed(&[7u8; 32]).unwrap_or_else(|_| SecretKey::generate())
    })
}

/// An entry carrying `value` under `key`, owned by the fixed key. The signature is not
/// made (the readers below check ownership through the key and owner, and the registry
/// checks signatures before values are ever read).
fn entry_with(key: String, value: &[u8]) -> Entry {
    Entry {
        key,
        value: Some(value.to_vec()),
        hlc: Hlc::new(1, 0),
        owner: fixed_key().public(),
        signature: SignatureBytes([0; 64]),
    }
}

fn owner() -> PublicKeyBytes {
    fixed_key().public()
}

/// A deployment record, under the key its name implies so that every check of
/// `decode_deployment` runs, and its validation on its own.
fn deployment_spec(data: &[u8]) {
    let name = serde_json::from_slice::<DeploymentSpec>(data).map(|spec| {
        let _ = spec.validate();
        spec.name
    });
    let key = xnode_deploy::spec::deployment_key(&owner(), name.as_deref().unwrap_or("x"));
    let _ = xnode_deploy::spec::decode_deployment(&entry_with(key, data));
}

/// A job record, as [`deployment_spec`] does for deployments.
fn job_spec(data: &[u8]) {
    let id = serde_json::from_slice::<JobSpec>(data).map(|spec| {
        let _ = spec.validate();
        spec.id
    });
    let key = xnode_deploy::spec::job_key(&owner(), id.as_deref().unwrap_or("x"));
    let _ = xnode_deploy::spec::decode_job(&entry_with(key, data));
}

/// A job run record, under a run key naming the fixed node and the record's own job.
fn job_run(data: &[u8]) {
    let node = fixed_key().node_id();
    let (owner_hex, job) = serde_json::from_slice::<xnode_deploy::spec::JobRun>(data)
        .map(|run| (run.owner, run.job))
        .unwrap_or_else(|_| (owner().to_hex(), "x".into()));
    let key = format!("run/{node}/job/{owner_hex}/{job}");
    let _ = xnode_deploy::spec::decode_run(&entry_with(key, data));
}

/// The replica report a node publishes under `run/<node>/replicas`.
fn replica_set(data: &[u8]) {
    let _ = serde_json::from_slice::<ReplicaSet>(data);
}

/// A bucket claim, under the key its name implies.
fn bucket_claim(data: &[u8]) {
    let name = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "x".into());
    let key = xnode_storage::buckets::bucket_key(&owner(), &name);
    let _ = xnode_storage::buckets::decode_claim(&entry_with(key, data));
}

/// The bucket keys of a grant, as sent in `PushGrant` and `Grant` and kept on disk.
fn grant_keys(data: &[u8]) {
    let _ = xnode_deploy::grants::GrantKeys::decode(data);
}
