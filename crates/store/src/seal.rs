//! Seals on object metadata entries: who wrote an entry, and why the tenant lets them.
//!
//! Object metadata entries replicate through nodes nobody trusts: any node placement puts
//! in a bucket's metadata set could otherwise forge a newer version or a tombstone of any
//! object. Every entry written now carries a [`MetaSeal`]: the writer node's signature
//! over a domain-separated text that binds the entry's path, version, writer, contents
//! and authority, plus an [`WriteAuthority`] that proves, offline, that the tenant
//! authorised that node to write for it:
//!
//! - [`WriteAuthority::Request`]: the tenant's own signed API request (`XNODE-REQUEST-V2`)
//!   to the writer, valid for entries dated from [`MAX_CLOCK_SKEW_MS`] before the request
//!   to [`REQUEST_AUTHORITY_MS`] after it (an upload may stream for that long);
//! - [`WriteAuthority::S3Key`]: the tenant's signed `POST /v1/s3/keys` to the writer,
//!   which made it hold one of the tenant's S3 keys (and so act as its edge), without
//!   expiry;
//! - [`WriteAuthority::Compute`]: a deployment or job of the tenant that the writer runs,
//!   which only the registry can confirm; the caller checks it ([`ComputeCheck`]).
//!
//! A rogue replica holds no tenant signature naming it, and cannot sign as another node,
//! so it cannot make an entry that verifies. This module is sans-I/O: checking is a pure
//! function of the entry and, for compute, the caller's view of the registry.

use serde::{Deserialize, Serialize};
use xnode_types::request_auth::{CanonicalRequest, MAX_CLOCK_SKEW_MS, canonical_request};
use xnode_types::{NodeId, PublicKeyBytes, SecretKey, SignatureBytes};

use crate::meta::ObjectMeta;

mod verified;
pub use verified::{DEFAULT_VERIFIED_SEALS_PER_GENERATION, SealDigest, VerifiedSeals};

/// The first line of the text a writer signs for an entry; it names the format, so a
/// signature over an entry can never be taken for one over anything else.
pub const META_SIGNING_DOMAIN: &str = "XNODE-OBJECT-META-V1";

/// How long after the tenant signed a request its writer may still date entries with it:
/// long enough for a large upload to stream, short enough that a captured request does
/// not authorise a node forever.
pub const REQUEST_AUTHORITY_MS: u64 = 24 * 3600 * 1000;

/// The path a tenant's S3 key registration has; a request proof serves as an S3 key
/// authority only for it.
pub const S3_KEY_REGISTRATION_PATH: &str = "/v1/s3/keys";

/// A tenant's signature over an API request it sent to one node, with every field the
/// signature binds except the tenant and the node (the entry's path and writer supply
/// them). Only hashes of the body and the data key are kept, never either.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TenantRequestProof {
    pub method: String,
    pub path: String,
    pub query: String,
    pub timestamp_ms: u64,
    pub nonce: String,
    pub content_blake3: String,
    pub data_key_blake3: String,
    pub signature: SignatureBytes,
}

/// The longest text field of a request proof accepted: bounds what a peer can make us
/// hash and store.
const MAX_PROOF_FIELD: usize = 2048;

impl TenantRequestProof {
    /// A short id of this signed request, which revocations use to name one S3 key
    /// registration: 32 hex digits of BLAKE3 over a domain line and the tenant's
    /// signature (unique per signed request, and public: it reveals nothing secret).
    pub fn registration_id(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        hasher.update(REGISTRATION_ID_DOMAIN.as_bytes());
        hasher.update(b"\n");
        hasher.update(&self.signature.0);
        hex::encode(&hasher.finalize().as_bytes()[..16])
    }

    /// Whether `tenant` signed this request for node `node`.
    pub fn verifies(&self, tenant: &PublicKeyBytes, node: &NodeId) -> bool {
        let fields = [
            &self.method,
            &self.path,
            &self.query,
            &self.nonce,
            &self.content_blake3,
            &self.data_key_blake3,
        ];
        if fields.iter().any(|f| f.len() > MAX_PROOF_FIELD) {
            return false;
        }
        let node = node.to_string();
        let text = canonical_request(&CanonicalRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            timestamp_ms: self.timestamp_ms,
            nonce: &self.nonce,
            tenant,
            node: &node,
            content_blake3: &self.content_blake3,
            data_key_blake3: &self.data_key_blake3,
        });
        tenant.verify(&text, &self.signature)
    }
}

/// Why the tenant lets the writer write this entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WriteAuthority {
    /// The tenant's signed API request to the writer (the HTTP API path).
    Request(TenantRequestProof),
    /// The tenant's signed registration of an S3 key on the writer (the S3 path).
    S3Key(TenantRequestProof),
    /// A deployment (its name) or job (`job:<id>`) of the tenant that the writer runs,
    /// whose signed storage scope holds the bucket (the compute path).
    Compute { purpose: String },
}

/// The writer's seal on an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaSeal {
    /// Why the tenant lets the writer write.
    pub authority: WriteAuthority,
    /// The writer's public key; its node id must be the entry's `writer`.
    pub writer_key: PublicKeyBytes,
    /// The writer's signature over [`signing_text`].
    pub signature: SignatureBytes,
}

/// Why an entry's seal does not verify. Every variant means the entry is refused (or, for
/// [`SealError::Unsigned`] and [`SealError::ComputeNotConfirmed`], trusted only as far as
/// the caller's rule for entries it cannot verify allows).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the entry carries no seal (written before metadata was signed)")]
    Unsigned,
    #[error("the seal's writer key is not the key of the entry's writer")]
    WrongWriterKey,
    #[error("the writer's signature over the entry does not verify")]
    BadSignature,
    #[error("the tenant's request signature does not verify for this writer")]
    BadTenantSignature,
    #[error(
        "the entry is dated {version_ms} ms, outside its request's window ({from_ms}..={until_ms})"
    )]
    OutsideRequestWindow {
        version_ms: u64,
        from_ms: u64,
        until_ms: u64,
    },
    #[error("an S3 key authority must be a POST to {S3_KEY_REGISTRATION_PATH}")]
    NotAnS3KeyRegistration,
    #[error(
        "no deployment or job {purpose:?} of the tenant that this writer runs names the bucket"
    )]
    ComputeNotConfirmed { purpose: String },
    #[error(
        "the tenant revoked this writer's authority for entries dated after {revoked_after_ms} ms; this one is dated {version_ms} ms"
    )]
    Revoked {
        version_ms: u64,
        revoked_after_ms: u64,
    },
}

/// Tells whether a tenant revoked a writer's authority: the registry's tenant-signed
/// revocations, which storage reads for this sans-I/O module.
pub trait RevocationCheck: Send + Sync {
    /// The earliest time after which `tenant` revoked `writer`'s `authority` (every
    /// authority of the writer, or this one S3 registration), if it did.
    fn revoked_after(
        &self,
        tenant: &PublicKeyBytes,
        writer: &NodeId,
        authority: &WriteAuthority,
    ) -> Option<u64>;
}

/// A [`RevocationCheck`] that knows no revocations.
pub struct NoRevocations;

impl RevocationCheck for NoRevocations {
    fn revoked_after(&self, _: &PublicKeyBytes, _: &NodeId, _: &WriteAuthority) -> Option<u64> {
        None
    }
}

/// Where an entry stands against its tenant's revocations of its writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevocationStatus {
    /// The writer's authority is not revoked (or the entry carries no seal).
    NotRevoked,
    /// Revoked after `revoked_after_ms`, and the entry is dated at or before it: written
    /// before the revocation, or back-dated by the revoked writer (the caller decides).
    DatedBefore { revoked_after_ms: u64 },
    /// Revoked, and the entry is dated after the revocation: refused.
    DatedAfter { revoked_after_ms: u64 },
}

/// The domain of an S3 registration id, so it can never collide with another digest.
const REGISTRATION_ID_DOMAIN: &str = "XNODE-S3-REGISTRATION-ID-V1";

/// Confirms a compute authority against the registry: whether `tenant`'s deployment or job
/// `purpose` has a signed storage scope holding `bucket`, and `writer` may run it. Storage
/// implements it with the deploy layer's help.
pub trait ComputeCheck: Send + Sync {
    fn confirms(
        &self,
        tenant: &PublicKeyBytes,
        bucket: &str,
        purpose: &str,
        writer: &NodeId,
    ) -> bool;
}

/// A [`ComputeCheck`] that confirms nothing: for callers that know no deployments.
pub struct NoCompute;

impl ComputeCheck for NoCompute {
    fn confirms(&self, _: &PublicKeyBytes, _: &str, _: &str, _: &NodeId) -> bool {
        false
    }
}

/// The text a writer signs for `meta` with `authority`: the domain line, then the BLAKE3
/// hash of the postcard encoding of everything the entry says (path, version, writer,
/// contents) and the authority. Postcard's encoding is unambiguous, so two different
/// entries never share a text.
pub fn signing_text(meta: &ObjectMeta, authority: &WriteAuthority) -> Vec<u8> {
    let bound = (
        &meta.path,
        meta.version,
        &meta.writer,
        &meta.info,
        authority,
    );
    // Encoding plain data into a Vec cannot fail; should it, the empty body still gives a
    // text no honest signature covers.
    let body = postcard::to_stdvec(&bound).unwrap_or_default();
    let mut text = format!("{META_SIGNING_DOMAIN}\n").into_bytes();
    text.extend_from_slice(blake3::hash(&body).as_bytes());
    text
}

impl ObjectMeta {
    /// Seals this entry as written by the node whose key is `key` (its `writer` must be
    /// that node) under `authority`.
    pub fn sealed(mut self, key: &SecretKey, authority: WriteAuthority) -> ObjectMeta {
        let signature = key.sign(&signing_text(&self, &authority));
        self.seal = Some(Box::new(MetaSeal {
            authority,
            writer_key: key.public(),
            signature,
        }));
        self
    }

    /// Checks the entry's seal: the writer's signature, and that the tenant authorised the
    /// writer. `compute` confirms compute authorities.
    pub fn verify_seal(&self, compute: &dyn ComputeCheck) -> Result<(), SealError> {
        self.verify_seal_remembering(compute, None)
    }

    /// [`ObjectMeta::verify_seal`], skipping the signature checks for a seal whose exact
    /// bytes verified before (`verified` remembers them, and learns the seals that verify
    /// now). The checks that depend on the moment or on the registry run every time.
    pub fn verify_seal_remembering(
        &self,
        compute: &dyn ComputeCheck,
        verified: Option<&VerifiedSeals>,
    ) -> Result<(), SealError> {
        let Some(seal) = &self.seal else {
            return Err(SealError::Unsigned);
        };
        if !self.writer.is_id_of_key(&seal.writer_key) {
            return Err(SealError::WrongWriterKey);
        }
        let tenant = &self.path.tenant;
        if let WriteAuthority::S3Key(proof) = &seal.authority
            && (!proof.method.eq_ignore_ascii_case("POST")
                || proof.path != S3_KEY_REGISTRATION_PATH)
        {
            return Err(SealError::NotAnS3KeyRegistration);
        }
        let text = signing_text(self, &seal.authority);
        let digest = verified.map(|_| SealDigest::new(&text, &seal.writer_key, &seal.signature));
        let known = matches!((verified, &digest), (Some(v), Some(d)) if v.contains(d));
        if !known {
            if !seal.writer_key.verify(&text, &seal.signature) {
                return Err(SealError::BadSignature);
            }
            if let WriteAuthority::Request(proof) | WriteAuthority::S3Key(proof) = &seal.authority
                && !proof.verifies(tenant, &self.writer)
            {
                return Err(SealError::BadTenantSignature);
            }
            if let (Some(v), Some(d)) = (verified, digest) {
                v.insert(d);
            }
        }
        match &seal.authority {
            WriteAuthority::Request(proof) => {
                let from_ms = proof.timestamp_ms.saturating_sub(MAX_CLOCK_SKEW_MS);
                let until_ms = proof.timestamp_ms.saturating_add(REQUEST_AUTHORITY_MS);
                let version_ms = self.version.wall_ms;
                if version_ms < from_ms || version_ms > until_ms {
                    return Err(SealError::OutsideRequestWindow {
                        version_ms,
                        from_ms,
                        until_ms,
                    });
                }
                Ok(())
            }
            WriteAuthority::S3Key(_) => Ok(()),
            WriteAuthority::Compute { purpose } => {
                if compute.confirms(tenant, &self.path.bucket, purpose, &self.writer) {
                    Ok(())
                } else {
                    Err(SealError::ComputeNotConfirmed {
                        purpose: crate::clip(purpose),
                    })
                }
            }
        }
    }

    /// Where this entry stands against `revocations` of its writer's authority. Checks
    /// nothing else: callers verify the seal first.
    pub fn revocation_status(&self, revocations: &dyn RevocationCheck) -> RevocationStatus {
        let Some(seal) = &self.seal else {
            return RevocationStatus::NotRevoked;
        };
        match revocations.revoked_after(&self.path.tenant, &self.writer, &seal.authority) {
            None => RevocationStatus::NotRevoked,
            Some(revoked_after_ms) if self.version.wall_ms > revoked_after_ms => {
                RevocationStatus::DatedAfter { revoked_after_ms }
            }
            Some(revoked_after_ms) => RevocationStatus::DatedBefore { revoked_after_ms },
        }
    }

    /// Whether the entry carries a seal (verified or not).
    pub fn is_sealed(&self) -> bool {
        self.seal.is_some()
    }
}

#[cfg(test)]
mod tests;
