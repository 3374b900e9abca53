//! Key grants: the bucket keys a tenant's deployment or job may use, kept by the nodes the
//! work is placed on so that they can read and write those buckets.
//!
//! A compute node never holds a tenant's data key. The tenant's edge (which the tenant
//! trusts with its keys) derives the key of each bucket in the work's signed storage scope
//! and pushes them to the placed nodes. Every node, before it keeps or uses a grant,
//! checks each key against the key check the tenant signed into the deployment or job
//! record, so a peer can neither substitute a key of its own nor widen the scope. Grants
//! are kept per (owner, purpose), handed only to nodes the purpose is placed on, and
//! dropped when a job has finished or a deployment is deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use xnode_db::Table;
use xnode_store::{BucketKey, DataKey, KeyCheck, ScopedKeys};
use xnode_types::{NodeId, PublicKeyBytes};

use crate::proto::{ComputeRequest, ComputeResponse};
use crate::spec::{self, JobSpec, MAX_LIST_ITEMS, RunState, decode_job};
use crate::{Compute, ComputeOpError, runner};

/// Bucket keys granted to this node, keyed by `<owner hex>/<purpose>`; values are
/// [`GrantKeys`] in JSON.
const GRANTS: Table = Table("compute_grants_v2");
/// Where nodes before scoped keys kept tenants' data keys, per owner. Emptied at start.
const LEGACY_GRANTS: Table = Table("compute_grants");
/// Format version of [`GrantKeys`], on disk and on the wire.
pub const GRANT_KEYS_VERSION: u32 = 1;
/// The nodes that may hold a pending job's keys: its runner and the next node of its
/// placement ranking, which takes over if the runner dies. Without that standby, a job
/// whose runner was also its edge (the only other holder) could not be rerun.
pub(crate) const JOB_KEY_HOLDERS: usize = 2;
/// How many grants one sweep looks at; the rest wait for the next reconcile.
const SWEEP_BATCH: usize = 10_000;

/// The bucket keys of one grant, as stored and as sent in `PushGrant` and `Grant`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GrantKeys {
    pub v: u32,
    /// Bucket name to the bucket key, hex.
    pub keys: BTreeMap<String, String>,
}

impl GrantKeys {
    pub fn of(keys: &ScopedKeys) -> Self {
        Self {
            v: GRANT_KEYS_VERSION,
            keys: keys
                .iter()
                .map(|(bucket, key)| (bucket.to_owned(), key.to_hex()))
                .collect(),
        }
    }

    pub fn encode(keys: &ScopedKeys) -> Vec<u8> {
        // Serialising a map of strings cannot fail; an empty grant is refused by readers.
        serde_json::to_vec(&Self::of(keys)).unwrap_or_default()
    }

    /// Parses a grant from a peer or the disk, bounded like a record's scope.
    pub fn decode(bytes: &[u8]) -> Option<ScopedKeys> {
        let grant: GrantKeys = serde_json::from_slice(bytes).ok()?;
        if grant.v != GRANT_KEYS_VERSION || grant.keys.len() > MAX_LIST_ITEMS {
            return None;
        }
        let keys = grant
            .keys
            .iter()
            .map(|(bucket, key)| Some((bucket.clone(), BucketKey::from_hex(key).ok()?)))
            .collect::<Option<BTreeMap<_, _>>>()?;
        Some(ScopedKeys::from_keys(keys))
    }
}

/// Why a grant was not kept.
#[derive(Debug, thiserror::Error)]
pub enum GrantRefused {
    #[error(
        "no signed storage scope for this purpose (unknown, deleted, finished, or signed without key checks)"
    )]
    NoSignedScope,
    #[error("the keys do not match the tenant's signed scope: {0}")]
    Mismatch(String),
    #[error("a different key is already kept for bucket {0:?}")]
    Conflicts(String),
    #[error("cannot keep the grant: {0}")]
    Store(String),
}

fn grant_id(owner: &PublicKeyBytes, purpose: &str) -> Vec<u8> {
    format!("{}/{purpose}", owner.to_hex()).into_bytes()
}

impl Compute {
    /// Erases data keys kept by nodes before scoped keys: they open every object of their
    /// tenant, and nothing reads them any more.
    pub(crate) fn forget_legacy_grants(&self) {
        loop {
            let batch = match self.db.scan_prefix(LEGACY_GRANTS, b"", 1000) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list legacy data-key grants");
                    return;
                }
            };
            if batch.is_empty() {
                return;
            }
            for (key, _) in batch {
                if let Err(e) = self.db.delete(LEGACY_GRANTS, &key) {
                    tracing::warn!(error = %e, "cannot erase a legacy data-key grant");
                    return;
                }
            }
        }
    }

    /// The storage scope `owner` signed for `purpose` (a deployment name or `job:<id>`):
    /// bucket to key check. `None` when the work is unknown here, is not `owner`'s, is a
    /// job that has finished, or was signed without key checks.
    pub(crate) fn signed_scope(
        &self,
        owner: &PublicKeyBytes,
        purpose: &str,
    ) -> Option<BTreeMap<String, KeyCheck>> {
        if let Some(job_id) = purpose.strip_prefix("job:") {
            if self.job_finished(owner, job_id) {
                return None;
            }
            return self.job(owner, job_id)?.signed_scope();
        }
        let deployment = self.deployment(purpose)?;
        if deployment.owner != *owner {
            return None;
        }
        deployment.spec.signed_scope()
    }

    /// At the tenant's edge, which holds its data key: the keys of `scope`'s buckets,
    /// checked against the signed checks (a client that signed checks of another key is
    /// told so now rather than failing on a remote node later).
    pub(crate) fn derive_grant(
        data_key: &DataKey,
        scope: &BTreeMap<String, KeyCheck>,
    ) -> Result<ScopedKeys, ComputeOpError> {
        let keys = ScopedKeys::derive(data_key, scope.keys().map(String::as_str));
        keys.verify(scope).map_err(|e| {
            ComputeOpError::BadRequest(format!(
                "the signed key checks do not match the data key sent with the request: {e}"
            ))
        })?;
        Ok(keys)
    }

    /// Keeps `keys` for `(owner, purpose)` if they are exactly the tenant's signed scope.
    /// A kept key is never replaced by a different one for the same bucket (a matching
    /// one is idempotent); a scope the tenant re-signed with other buckets replaces the
    /// set.
    pub(crate) fn accept_grant(
        &self,
        owner: &PublicKeyBytes,
        purpose: &str,
        keys: &ScopedKeys,
    ) -> Result<(), GrantRefused> {
        let scope = self
            .signed_scope(owner, purpose)
            .ok_or(GrantRefused::NoSignedScope)?;
        keys.verify(&scope).map_err(GrantRefused::Mismatch)?;
        if let Some(kept) = self.stored_grant(owner, purpose) {
            for (bucket, key) in kept.iter() {
                if keys.get(bucket).is_some_and(|new| new != key) {
                    return Err(GrantRefused::Conflicts(bucket.to_owned()));
                }
            }
        }
        self.db
            .put(GRANTS, &grant_id(owner, purpose), &GrantKeys::encode(keys))
            .map_err(|e| GrantRefused::Store(e.to_string()))
    }

    fn stored_grant(&self, owner: &PublicKeyBytes, purpose: &str) -> Option<ScopedKeys> {
        let bytes = self.db.get(GRANTS, &grant_id(owner, purpose)).ok()??;
        GrantKeys::decode(&bytes)
    }

    /// The keys kept here for `(owner, purpose)`, if they still match the tenant's signed
    /// scope (a deployment re-signed with other buckets, deleted, or a finished job has
    /// none).
    pub(crate) fn local_grant(&self, owner: &PublicKeyBytes, purpose: &str) -> Option<ScopedKeys> {
        let keys = self.stored_grant(owner, purpose)?;
        let scope = self.signed_scope(owner, purpose)?;
        keys.verify(&scope).ok()?;
        Some(keys)
    }

    pub(crate) fn drop_grant(&self, owner: &PublicKeyBytes, purpose: &str) {
        if let Err(e) = self.db.delete(GRANTS, &grant_id(owner, purpose)) {
            tracing::warn!(%purpose, error = %e, "cannot drop a key grant");
        }
    }

    /// Drops the grants of finished jobs, of deleted deployments and of work whose signed
    /// scope is gone (called on every reconcile).
    pub(crate) fn sweep_grants(&self) {
        let Ok(kept) = self.db.scan_prefix(GRANTS, b"", SWEEP_BATCH) else {
            return;
        };
        for (id, _) in kept {
            let Some((owner, purpose)) = std::str::from_utf8(&id)
                .ok()
                .and_then(|id| id.split_once('/'))
                .and_then(|(owner, purpose)| {
                    Some((PublicKeyBytes::from_hex(owner).ok()?, purpose.to_owned()))
                })
            else {
                let _ = self.db.delete(GRANTS, &id);
                continue;
            };
            // A job that finished or is unknown, a deployment deleted, handed to another
            // owner or re-signed without storage: nothing may use these keys any more.
            let gone = self.signed_scope(&owner, &purpose).is_none();
            if gone {
                tracing::debug!(%purpose, "dropped the key grant of finished or deleted work");
                self.drop_grant(&owner, &purpose);
            }
        }
    }

    pub(crate) async fn push_grant(
        &self,
        owner: &PublicKeyBytes,
        purpose: &str,
        keys: &ScopedKeys,
        targets: &[NodeId],
    ) {
        for node in targets {
            if *node == self.node_id {
                continue;
            }
            let request = ComputeRequest::PushGrant {
                owner: owner.to_hex(),
                purpose: purpose.to_owned(),
                keys: GrantKeys::encode(keys),
            };
            if let Err(e) = self.call(*node, request, Duration::from_secs(3)).await {
                tracing::debug!(%node, error = %e, "could not push a key grant; the node will ask for it");
            }
        }
    }

    /// The bucket keys `owner` granted for `purpose`, from this node or from a peer that
    /// holds them (peers answer only nodes the purpose is placed on). A peer's answer is
    /// used only if it matches the tenant's signed scope.
    pub(crate) async fn grant(&self, owner: &PublicKeyBytes, purpose: &str) -> Option<ScopedKeys> {
        if let Some(keys) = self.local_grant(owner, purpose) {
            return Some(keys);
        }
        // Nothing a peer says can be used without a signed scope to check it against.
        self.signed_scope(owner, purpose)?;
        // Nodes the work is not placed on first: the one among them that holds the keys
        // is the edge that accepted the work, which its metered fuel is proposed to.
        let mut candidates = self.candidates();
        candidates.sort_by_cached_key(|c| self.holds_the_work(c.id, owner, purpose));
        for candidate in candidates {
            if candidate.id == self.node_id {
                continue;
            }
            let request = ComputeRequest::Grant {
                owner: owner.to_hex(),
                purpose: purpose.to_owned(),
            };
            if let Ok(ComputeResponse::Grant(Some(bytes))) = self
                .call(candidate.id, request, Duration::from_secs(3))
                .await
                && let Some(keys) = GrantKeys::decode(&bytes)
            {
                match self.accept_grant(owner, purpose, &keys) {
                    Ok(()) => {
                        self.note_key_source(candidate.id, owner, purpose);
                        return Some(keys);
                    }
                    Err(e) => {
                        tracing::info!(node = %candidate.id, %purpose, error = %e, "refused the keys a peer answered");
                    }
                }
            }
        }
        None
    }

    /// Whether `node` may receive `owner`'s keys for `purpose`: it must be a node the
    /// deployment is placed on, or the runner or standby of the job ([`JOB_KEY_HOLDERS`]),
    /// as this node sees placement, and a job must not have finished.
    pub(crate) fn may_receive_grant(
        &self,
        node: NodeId,
        owner: &PublicKeyBytes,
        purpose: &str,
    ) -> bool {
        if let Some(job_id) = purpose.strip_prefix("job:") {
            return !self.job_finished(owner, job_id)
                && self.job(owner, job_id).is_some_and(|job| {
                    runner::job_ranking(&job, &self.candidates(), JOB_KEY_HOLDERS).contains(&node)
                });
        }
        self.deployment(purpose)
            .is_some_and(|d| d.owner == *owner && self.place(&d.spec).contains(&node))
    }

    /// Whether a run of the job has been recorded as finished (succeeded or failed).
    pub(crate) fn job_finished(&self, owner: &PublicKeyBytes, id: &str) -> bool {
        self.job_runs(owner, id)
            .iter()
            .any(|run| run.state != RunState::Running)
    }

    pub fn job(&self, owner: &PublicKeyBytes, id: &str) -> Option<JobSpec> {
        let entry = self.registry.get(&spec::job_key(owner, id))?;
        decode_job(&entry)
    }

    /// Whether this node keeps a grant for `(owner, purpose)`, whatever its state (for
    /// tests that check grants are dropped).
    pub fn holds_grant(&self, owner: &PublicKeyBytes, purpose: &str) -> bool {
        self.stored_grant(owner, purpose).is_some()
    }
}

/// What this node's compute tells storage about the deployments and jobs it runs, so the
/// object metadata their functions write is sealed under a compute authority and peers'
/// such seals are confirmed (see `xnode_store::seal`). Holds the compute weakly: storage
/// outlives nothing it is given.
pub(crate) struct ComputeWriters(pub(crate) std::sync::Weak<Compute>);

impl xnode_store::ComputeCheck for ComputeWriters {
    fn confirms(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        purpose: &str,
        writer: &NodeId,
    ) -> bool {
        let Some(compute) = self.0.upgrade() else {
            return false;
        };
        compute
            .signed_scope(tenant, purpose)
            .is_some_and(|scope| scope.contains_key(bucket))
            && compute.may_receive_grant(*writer, tenant, purpose)
    }
}

impl xnode_storage::ComputeAuthority for ComputeWriters {
    fn purpose_for(&self, tenant: &PublicKeyBytes, bucket: &str, node: &NodeId) -> Option<String> {
        let compute = self.0.upgrade()?;
        let prefix = format!("{}/", tenant.to_hex());
        let held = compute
            .db
            .scan_prefix(GRANTS, prefix.as_bytes(), SWEEP_BATCH)
            .ok()?;
        held.into_iter()
            .filter_map(|(id, _)| {
                let id = std::str::from_utf8(&id).ok()?;
                id.strip_prefix(&prefix).map(str::to_owned)
            })
            .find(|purpose| {
                compute
                    .local_grant(tenant, purpose)
                    .is_some_and(|keys| keys.buckets().any(|b| b == bucket))
                    && compute.may_receive_grant(*node, tenant, purpose)
            })
    }
}

impl Compute {
    /// Lets storage seal the metadata this node's deployments and jobs write, and confirm
    /// compute authorities in peers' entries.
    pub fn install_write_authority(self: &std::sync::Arc<Self>) {
        self.storage
            .set_compute_authority(std::sync::Arc::new(ComputeWriters(
                std::sync::Arc::downgrade(self),
            )));
    }
}
