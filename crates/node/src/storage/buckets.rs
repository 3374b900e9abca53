//! Buckets: owner-signed registry records under the owning tenant's namespace.
//!
//! A bucket named `N` created by tenant `T` is the registry entry
//! `tenant/<T>/bucket/<N>`, signed by `T`, whose value is a [`BucketRecord`] (JSON with a
//! format version, so any client can build it). Bucket names are global: when two tenants
//! claim the same name, the claim with the smallest `(hlc, owner)` wins. That rule depends
//! only on the set of claims, never on the order they arrived in, so every node agrees.

use serde::{Deserialize, Serialize};
use xnode_registry::{Entry, Registry};
use xnode_types::PublicKeyBytes;

/// The value of a bucket claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    /// Format version of this record.
    pub v: u32,
    pub name: String,
    /// The owning tenant's public key, hex.
    pub owner: String,
    pub created_ms: u64,
    /// Copies of every chunk and metadata entry of this bucket; the node default if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u8>,
}

pub const BUCKET_RECORD_VERSION: u32 = 1;

/// The registry key of tenant `owner`'s claim on bucket `name`.
pub fn bucket_key(owner: &PublicKeyBytes, name: &str) -> String {
    format!("tenant/{}/bucket/{name}", owner.to_hex())
}

/// Decodes and checks a bucket claim: the record must name the bucket and owner its key
/// says, and the entry must be signed by that owner.
pub fn decode_claim(entry: &Entry) -> Option<BucketRecord> {
    let value = entry.value.as_deref()?;
    let record: BucketRecord = serde_json::from_slice(value).ok()?;
    (record.v == BUCKET_RECORD_VERSION
        && record.owner == entry.owner.to_hex()
        && entry.key == bucket_key(&entry.owner, &record.name))
    .then_some(record)
}

/// The bucket named `name` and its owner, if any tenant holds a live claim on it.
pub fn owner_of(registry: &Registry, name: &str) -> Option<(PublicKeyBytes, BucketRecord)> {
    let suffix = format!("/bucket/{name}");
    registry
        .list("tenant/")
        .into_iter()
        .filter(|e| e.key.ends_with(&suffix))
        .filter_map(|e| decode_claim(&e).map(|r| (e.hlc, e.owner, r)))
        .min_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
        .map(|(_, owner, record)| (owner, record))
}

/// The buckets `tenant` owns (claims it won).
pub fn owned_by(registry: &Registry, tenant: &PublicKeyBytes) -> Vec<BucketRecord> {
    let prefix = format!("tenant/{}/bucket/", tenant.to_hex());
    registry
        .list(&prefix)
        .into_iter()
        .filter_map(|e| decode_claim(&e))
        .filter(|r| owner_of(registry, &r.name).is_some_and(|(o, _)| o == *tenant))
        .collect()
}
