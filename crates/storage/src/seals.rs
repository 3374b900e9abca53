//! Sealing the object metadata this node writes, and checking the seals of entries peers
//! send or answer with (see [`xnode_store::seal`] for what a seal proves).
//!
//! A node writes for a tenant only with an authority the tenant gave it: the latest
//! signed API request the tenant sent it, an S3 key the tenant registered on it, or a
//! deployment or job it runs whose signed scope holds the bucket. The API, the S3 gateway
//! and compute hand those to [`Storage`] as they see them ([`Storage::authorise_request`],
//! [`Storage::authorise_s3_key`], [`Storage::set_compute_authority`]).
//!
//! Replicas refuse every entry from a peer whose seal does not verify (unsealed entries
//! included). Readers drop answers that carry an entry with a seal that fails, and trust an
//! entry they cannot verify on their own (written before metadata was signed, or by a
//! compute node whose deployment is gone) only when every answer of the read quorum holds
//! it identically, and never over a verified one ([`Trust`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use xnode_registry::Registry;
use xnode_registry::revocation::RevokedScope;
use xnode_store::seal::REQUEST_AUTHORITY_MS;
use xnode_store::{
    ComputeCheck, NoCompute, ObjectMeta, RevocationCheck, RevocationStatus, SealError,
    TenantRequestProof, WriteAuthority,
};
use xnode_types::request_auth::MAX_CLOCK_SKEW_MS;
use xnode_types::{NodeId, PublicKeyBytes, lock, unix_ms};

use crate::{Storage, StorageError};

/// How much of a request's authority window a writer leaves unused, so an entry it dates
/// now is still inside the window on a replica whose clock differs a little.
const REQUEST_WINDOW_MARGIN_MS: u64 = 10 * 60 * 1000;
/// Most tenants whose authorities one node keeps; past it, expired request authorities
/// are forgotten first, then all request authorities (the next request restores its own).
const MAX_TENANTS: usize = 65_536;

/// What a node (through its compute layer) knows about the deployments and jobs it runs:
/// confirming a peer's compute authority, and finding this node's own.
pub trait ComputeAuthority: ComputeCheck {
    /// A deployment or job of `tenant` that `node` runs and whose signed storage scope
    /// holds `bucket`, if any.
    fn purpose_for(&self, tenant: &PublicKeyBytes, bucket: &str, node: &NodeId) -> Option<String>;
}

impl ComputeAuthority for NoCompute {
    fn purpose_for(&self, _: &PublicKeyBytes, _: &str, _: &NodeId) -> Option<String> {
        None
    }
}

/// How far a reader may trust an entry a replica answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trust {
    /// The seal verifies: one replica's word is enough.
    Verified,
    /// Written before metadata was signed, or by compute the registry no longer confirms:
    /// trusted only when every answer of the read quorum holds it.
    Unverifiable,
    /// The seal fails: the replica that sent it is lying.
    Forged,
    /// The tenant revoked the writer's authority for entries dated after some moment, and
    /// this one is dated after it. The entry does not count (as if the replica held
    /// nothing for its key), but the replica is not lying: it may have taken the entry
    /// before it learnt of the revocation, and a revocation may name a moment in the past.
    Revoked,
}

/// The authorities tenants gave this node, by tenant.
#[derive(Default)]
pub(crate) struct Authorities {
    by_tenant: Mutex<HashMap<PublicKeyBytes, TenantAuthorities>>,
    compute: Mutex<Option<Arc<dyn ComputeAuthority>>>,
}

#[derive(Default)]
struct TenantAuthorities {
    /// The newest signed request the tenant sent this node.
    request: Option<TenantRequestProof>,
    /// The signed registration of an S3 key on this node.
    s3_key: Option<TenantRequestProof>,
}

impl Authorities {
    fn compute(&self) -> Arc<dyn ComputeAuthority> {
        lock(&self.compute)
            .clone()
            .unwrap_or_else(|| Arc::new(NoCompute))
    }
}

impl Storage {
    /// Records a signed request `tenant` sent this node (verified by the caller): it lets
    /// this node write the tenant's metadata for [`REQUEST_AUTHORITY_MS`] after it was
    /// signed.
    pub fn authorise_request(&self, tenant: PublicKeyBytes, proof: TenantRequestProof) {
        let mut book = lock(&self.authorities.by_tenant);
        if book.len() >= MAX_TENANTS && !book.contains_key(&tenant) {
            let now = unix_ms();
            book.retain(|_, a| {
                a.request = a
                    .request
                    .take()
                    .filter(|r| r.timestamp_ms.saturating_add(REQUEST_AUTHORITY_MS) > now);
                a.request.is_some() || a.s3_key.is_some()
            });
        }
        if book.len() >= MAX_TENANTS && !book.contains_key(&tenant) {
            book.retain(|_, a| {
                a.request = None;
                a.s3_key.is_some()
            });
        }
        let entry = book.entry(tenant).or_default();
        if entry
            .request
            .as_ref()
            .is_none_or(|held| held.timestamp_ms <= proof.timestamp_ms)
        {
            entry.request = Some(proof);
        }
    }

    /// Records the signed registration of one of `tenant`'s S3 keys on this node (verified
    /// when the key was registered): S3 requests with that tenant's keys write under it.
    pub fn authorise_s3_key(&self, tenant: PublicKeyBytes, proof: TenantRequestProof) {
        lock(&self.authorities.by_tenant)
            .entry(tenant)
            .or_default()
            .s3_key = Some(proof);
    }

    /// Forgets the S3 key registration `registration_id` of `tenant` (its key was deleted
    /// here): this node no longer seals with it, and takes the next key of the tenant it
    /// serves, or a signed request, instead.
    pub fn forget_s3_key(&self, tenant: &PublicKeyBytes, registration_id: &str) {
        if let Some(held) = lock(&self.authorities.by_tenant).get_mut(tenant)
            && held
                .s3_key
                .as_ref()
                .is_some_and(|r| r.registration_id() == registration_id)
        {
            held.s3_key = None;
        }
    }

    /// Installs what the compute layer knows of the deployments and jobs this node runs.
    pub fn set_compute_authority(&self, compute: Arc<dyn ComputeAuthority>) {
        *lock(&self.authorities.compute) = Some(compute);
    }

    /// The authority this node writes `tenant`'s entries of `bucket` under now: a recent
    /// signed request, else an S3 key registration, else a deployment or job it runs.
    pub(crate) fn write_authority(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
    ) -> Result<WriteAuthority, StorageError> {
        let now = unix_ms();
        {
            let book = lock(&self.authorities.by_tenant);
            if let Some(held) = book.get(tenant) {
                if let Some(request) = &held.request
                    && now.saturating_add(MAX_CLOCK_SKEW_MS) >= request.timestamp_ms
                    && now.saturating_add(REQUEST_WINDOW_MARGIN_MS)
                        <= request.timestamp_ms.saturating_add(REQUEST_AUTHORITY_MS)
                {
                    return Ok(WriteAuthority::Request(request.clone()));
                }
                if let Some(s3_key) = &held.s3_key {
                    return Ok(WriteAuthority::S3Key(s3_key.clone()));
                }
            }
        }
        if let Some(purpose) = self
            .authorities
            .compute()
            .purpose_for(tenant, bucket, &self.node_id)
        {
            return Ok(WriteAuthority::Compute { purpose });
        }
        Err(StorageError::AccessDenied(
            "this node holds no authority from the tenant to write its objects: send it a signed request, register an S3 key on it, or run a deployment whose storage scope holds the bucket"
                .into(),
        ))
    }

    /// Refuses, before any chunk is stored, a write the tenant revoked this node's
    /// authority for: the entry [`Self::seal`] would make at the end would be refused.
    pub(crate) fn refuse_if_revoked(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
    ) -> Result<(), StorageError> {
        let authority = self.write_authority(tenant, bucket)?;
        let revoked =
            RegistryRevocations(&self.registry).revoked_after(tenant, &self.node_id, &authority);
        match revoked {
            Some(revoked_after_ms) if unix_ms() > revoked_after_ms => {
                Err(edge_revoked(revoked_after_ms))
            }
            _ => Ok(()),
        }
    }

    /// Seals an entry this node writes. If the tenant revoked the authority it would seal
    /// under before the entry's date, every replica would refuse the entry: the writer
    /// says so itself, as [`StorageError::EdgeRevoked`], instead of a failed quorum.
    pub(crate) fn seal(&self, meta: ObjectMeta) -> Result<ObjectMeta, StorageError> {
        let authority = self.write_authority(&meta.path.tenant, &meta.path.bucket)?;
        let sealed = meta.sealed(&self.signer, authority);
        if let RevocationStatus::DatedAfter { revoked_after_ms } =
            sealed.revocation_status(&RegistryRevocations(&self.registry))
        {
            return Err(edge_revoked(revoked_after_ms));
        }
        Ok(sealed)
    }

    /// Checks the seal of an entry (from a peer, or read from the local table). The
    /// signatures of a seal whose exact bytes verified here before are not checked again;
    /// everything else is.
    ///
    /// An entry dated after the tenant revoked its writer's authority fails with
    /// [`SealError::Revoked`], as a forged one does.
    pub(crate) fn verify_seal(&self, meta: &ObjectMeta) -> Result<(), SealError> {
        let compute = self.authorities.compute();
        meta.verify_seal_remembering(compute.as_ref(), Some(&self.verified_seals))?;
        match meta.revocation_status(&RegistryRevocations(&self.registry)) {
            RevocationStatus::DatedAfter { revoked_after_ms } => Err(SealError::Revoked {
                version_ms: meta.version.wall_ms,
                revoked_after_ms,
            }),
            RevocationStatus::NotRevoked | RevocationStatus::DatedBefore { .. } => Ok(()),
        }
    }

    /// A replica's check of an entry a peer asks it to merge: anything that does not
    /// verify, unsealed entries included, is refused and counted.
    ///
    /// An entry of a revoked authority dated *before* the revocation is taken only while
    /// it could be a write in flight when the tenant revoked: dated no more than
    /// [`MAX_CLOCK_SKEW_MS`] before this node's clock. Older ones are refused, because the
    /// revoked writer can date an entry anywhere inside its authority's window (an S3
    /// registration's has no end), so once a replica knows the revocation it cannot tell
    /// a genuine old entry from one back-dated after the fact. That bounds what a revoked
    /// node can still write to entries dated within the skew before the revocation, made
    /// within the skew after it.
    pub(crate) fn check_peer_entry(&self, meta: &ObjectMeta) -> Result<(), StorageError> {
        let refused = |e: String| {
            self.metrics.meta_seals_refused.inc();
            StorageError::Integrity(format!(
                "object metadata for {:?} refused: {e}",
                crate::range::clip(&meta.path.key)
            ))
        };
        if let Err(e) = self.verify_seal(meta) {
            if matches!(e, SealError::Revoked { .. }) {
                self.metrics.meta_revoked_refused.inc();
            }
            return Err(refused(e.to_string()));
        }
        if let RevocationStatus::DatedBefore { revoked_after_ms } =
            meta.revocation_status(&RegistryRevocations(&self.registry))
            && meta.version.wall_ms.saturating_add(MAX_CLOCK_SKEW_MS) < unix_ms()
        {
            self.metrics.meta_revoked_refused.inc();
            return Err(refused(format!(
                "the tenant revoked this writer's authority after {revoked_after_ms} ms, and the entry (dated {} ms) is too old to be a write in flight",
                meta.version.wall_ms
            )));
        }
        Ok(())
    }

    /// Whether the tenant revoked the authority of `meta`'s writer before the entry's date:
    /// such an entry fails its seal check however it was stored (see
    /// [`Self::verify_seal`]). A listing that reads entries from this node's own table,
    /// whose seals were checked when they were stored, asks only this (and only when the
    /// tenant revoked anything at all, [`Self::tenant_revoked_anything`]).
    pub(crate) fn dated_after_revocation(&self, meta: &ObjectMeta) -> bool {
        matches!(
            meta.revocation_status(&RegistryRevocations(&self.registry)),
            RevocationStatus::DatedAfter { .. }
        )
    }

    /// Whether the tenant holds any revocation in the registry.
    pub(crate) fn tenant_revoked_anything(&self, tenant: &PublicKeyBytes) -> bool {
        self.registry.has_revocations(tenant)
    }

    /// How far a reader trusts an entry a replica answered with; forged entries are
    /// counted.
    pub(crate) fn trust(&self, meta: &ObjectMeta) -> Trust {
        self.trust_checking(meta, true)
    }

    /// [`Self::trust`] for the entries of one tenant's range (a listing round): whether the
    /// tenant revoked anything is looked up once, not twice per entry.
    pub(crate) fn tenant_trust(&self, tenant: &PublicKeyBytes) -> impl Fn(&ObjectMeta) -> Trust {
        let revocations = self.tenant_revoked_anything(tenant);
        let tenant = *tenant;
        move |meta| self.trust_checking(meta, revocations || meta.path.tenant != tenant)
    }

    fn trust_checking(&self, meta: &ObjectMeta, revocations: bool) -> Trust {
        let checked = if revocations {
            self.verify_seal(meta)
        } else {
            let compute = self.authorities.compute();
            meta.verify_seal_remembering(compute.as_ref(), Some(&self.verified_seals))
        };
        match checked {
            // An entry of a revoked writer dated before the revocation may be genuine or
            // back-dated (see `check_peer_entry`): it counts only when every answer of the
            // read quorum holds it, so one replica colluding with the writer cannot use it.
            Ok(()) if !revocations => Trust::Verified,
            Ok(()) => match meta.revocation_status(&RegistryRevocations(&self.registry)) {
                RevocationStatus::DatedBefore { .. } => Trust::Unverifiable,
                _ => Trust::Verified,
            },
            Err(SealError::Unsigned | SealError::ComputeNotConfirmed { .. }) => Trust::Unverifiable,
            Err(e @ SealError::Revoked { .. }) => {
                self.metrics.meta_revoked_refused.inc();
                self.metrics.meta_seals_refused.inc();
                tracing::debug!(key = %crate::range::clip(&meta.path.key), error = %e, "a metadata replica holds an entry of a revoked writer; left out");
                Trust::Revoked
            }
            Err(e) => {
                self.metrics.meta_seals_refused.inc();
                tracing::warn!(key = %crate::range::clip(&meta.path.key), error = %e, "a metadata replica answered with an entry whose seal fails; ignored");
                Trust::Forged
            }
        }
    }
}

fn edge_revoked(revoked_after_ms: u64) -> StorageError {
    StorageError::EdgeRevoked(format!(
        "the tenant revoked this node's authority to write its objects (from {revoked_after_ms} ms, unix time); send the request to another node"
    ))
}

/// The tenant-signed revocations in the registry, as the seal check asks for them: the
/// revocation of every authority of the writer, and for an S3 key authority also the one
/// of that registration; the earliest applies.
struct RegistryRevocations<'a>(&'a Registry);

impl RevocationCheck for RegistryRevocations<'_> {
    fn revoked_after(
        &self,
        tenant: &PublicKeyBytes,
        writer: &NodeId,
        authority: &WriteAuthority,
    ) -> Option<u64> {
        // Most tenants revoke nothing: one probe spares the lookups (and the registration
        // id's hash) for them.
        if !self.0.has_revocations(tenant) {
            return None;
        }
        let all = self.0.revoked_after(tenant, writer, &RevokedScope::All);
        let one = match authority {
            WriteAuthority::S3Key(registration) => self.0.revoked_after(
                tenant,
                writer,
                &RevokedScope::S3Registration(registration.registration_id()),
            ),
            WriteAuthority::Request(_) | WriteAuthority::Compute { .. } => None,
        };
        match (all, one) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The newest entry among a read quorum's answers that a reader may use: verified entries
/// on one answer's word, others only if every answer holds them identically; a verified
/// entry always wins over one that is not (see [`ObjectMeta::supersedes`] for the order
/// among the rest), and never one that would break another verified answer's COMPLIANCE
/// retention ([`ObjectMeta::breaks_lock_of`]), which a replica that took it anyway shows.
pub(crate) fn newest_trusted(
    answers: &[Option<ObjectMeta>],
    trust: impl Fn(&ObjectMeta) -> Trust,
) -> Option<ObjectMeta> {
    let judged: Vec<(Trust, &ObjectMeta)> =
        answers.iter().flatten().map(|m| (trust(m), m)).collect();
    let mut best: Option<(bool, &ObjectMeta)> = None;
    for &(trust, meta) in &judged {
        let verified = match trust {
            Trust::Verified => true,
            Trust::Unverifiable => {
                if !answers.iter().all(|a| a.as_ref() == Some(meta)) {
                    continue;
                }
                false
            }
            Trust::Forged | Trust::Revoked => continue,
        };
        let breaks_a_lock = judged
            .iter()
            .any(|&(t, held)| t == Trust::Verified && meta.breaks_lock_of(held));
        if breaks_a_lock {
            continue;
        }
        let better = match best {
            None => true,
            Some((best_verified, held)) => {
                (verified && !best_verified) || (verified == best_verified && meta.supersedes(held))
            }
        };
        if better {
            best = Some((verified, meta));
        }
    }
    best.map(|(_, m)| m.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use xnode_types::{Hlc, SecretKey};

    use super::*;

    fn entry(key: &str, ms: u64, sealed: bool) -> ObjectMeta {
        let writer = SecretKey::generate();
        let meta = ObjectMeta {
            path: xnode_store::ObjectPath::new(PublicKeyBytes([1; 32]), "bucket", key).unwrap(),
            version: Hlc::new(ms, 0),
            writer: writer.node_id(),
            info: None,
            seal: None,
        };
        if sealed {
            meta.sealed(
                &writer,
                WriteAuthority::Compute {
                    purpose: "p".into(),
                },
            )
        } else {
            meta
        }
    }

    /// Trust by the test's own rule: sealed entries verify, unsealed are unverifiable,
    /// entries at 666 ms are forged.
    fn trust(meta: &ObjectMeta) -> Trust {
        match (meta.version.wall_ms, meta.is_sealed()) {
            (666, _) => Trust::Forged,
            (_, true) => Trust::Verified,
            (_, false) => Trust::Unverifiable,
        }
    }

    #[test]
    fn an_unverifiable_entry_needs_every_answer_and_never_beats_a_verified_one() {
        let legacy = entry("a", 50, false);
        // One replica's word is not enough for an unsigned entry ...
        assert_eq!(newest_trusted(&[Some(legacy.clone()), None], trust), None);
        // ... every answer holding it is.
        assert_eq!(
            newest_trusted(&[Some(legacy.clone()), Some(legacy.clone())], trust),
            Some(legacy.clone())
        );
        // A verified entry wins over a newer unverifiable one, from one answer.
        let signed = entry("a", 10, true);
        assert_eq!(
            newest_trusted(&[Some(legacy.clone()), Some(signed.clone())], trust),
            Some(signed.clone())
        );
        // A forged entry never counts, however new.
        let forged = entry("a", 666, true);
        assert_eq!(
            newest_trusted(&[Some(forged), Some(signed.clone())], trust),
            Some(signed)
        );
    }

    /// A replica that took a sealed tombstone over a COMPLIANCE-locked version anyway
    /// (a hostile one) cannot make a reader see the version deleted.
    #[test]
    fn an_answer_that_breaks_a_compliance_lock_is_not_used() {
        let key = xnode_store::internal_key("ver/doc/0123");
        let mut locked = entry(&key, 100, false);
        let mut info = xnode_store::ObjectInfo {
            manifest: xnode_store::ChunkId::of(b"doc"),
            size: 3,
            etag: "\"e\"".into(),
            content_type: "text/plain".into(),
            user_meta: Default::default(),
            created_ms: 100,
        };
        info.user_meta
            .insert(xnode_store::LOCK_MODE_ENTRY.into(), "COMPLIANCE".into());
        info.user_meta
            .insert(xnode_store::LOCK_UNTIL_ENTRY.into(), "10000".into());
        locked.info = Some(info);
        let writer = SecretKey::generate();
        let locked = locked.sealed(
            &writer,
            WriteAuthority::Compute {
                purpose: "p".into(),
            },
        );
        let tombstone = entry(&key, 200, true);
        assert_eq!(
            newest_trusted(&[Some(tombstone.clone()), Some(locked.clone())], trust),
            Some(locked.clone())
        );
        // Once the retention has lapsed, by the tombstone's own clock, it is a delete.
        let late = entry(&key, 10_001, true);
        assert_eq!(
            newest_trusted(&[Some(late.clone()), Some(locked)], trust),
            Some(late)
        );
    }
}
