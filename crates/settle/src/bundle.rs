//! One node's signed evidence for one epoch, and its validation as hostile input.

use serde::{Deserialize, Serialize};
use xnode_ledger::{
    AuditResult, Epoch, Hash, Receipt, SignatureVerifier, VerifiedAudit, VerifiedReceipt, keccak256,
};
use xnode_types::{NodeId, PublicKeyBytes, SecretKey, SignatureBytes};

use crate::error::BundleError;

/// The bundle format version this code signs and verifies.
pub const BUNDLE_VERSION: u8 = 1;

/// Domain separator of a bundle's digest and signing text.
pub const BUNDLE_DOMAIN: &[u8] = b"xnode evidence bundle v1\n";

/// Bounds checked before any signature work, so a hostile bundle costs little.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleLimits {
    /// Largest encoded bundle accepted.
    pub max_bytes: usize,
    /// Most receipts in one bundle.
    pub max_receipts: usize,
    /// Most audits in one bundle.
    pub max_audits: usize,
}

impl Default for BundleLimits {
    /// 8 MiB, 16,384 receipts and 16,384 audits: a receipt encodes in about 300 bytes
    /// and an audit in about 250, and a node's counters per epoch are one per (tenant,
    /// resource) it served, so honest bundles stay far below.
    fn default() -> Self {
        Self {
            max_bytes: 8 << 20,
            max_receipts: 16_384,
            max_audits: 16_384,
        }
    }
}

/// The signed content of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleBody {
    /// Format version ([`BUNDLE_VERSION`]).
    pub v: u8,
    /// The network the bundle is for.
    pub network: String,
    /// The epoch whose evidence this is.
    pub epoch: Epoch,
    /// The publishing node.
    pub publisher: NodeId,
    /// The publisher's ed25519 key; it must derive `publisher`.
    pub publisher_key: PublicKeyBytes,
    /// Countersigned receipts the publisher holds as provider.
    pub receipts: Vec<Receipt>,
    /// Audit verdicts the publisher issued as auditor.
    pub audits: Vec<AuditResult>,
}

/// A bundle with its publisher's signature over [`EvidenceBundle::signing_text`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceBundle {
    /// What is signed.
    pub body: BundleBody,
    /// The publisher's ed25519 signature.
    pub signature: SignatureBytes,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, BundleError> {
    postcard::to_allocvec(value).map_err(BundleError::Encode)
}

impl EvidenceBundle {
    /// Signs a node's evidence. Items are put in the order of their encoding, so the same
    /// evidence always gives the same bundle and digest.
    pub fn sign(
        node_key: &SecretKey,
        network: &str,
        epoch: Epoch,
        receipts: Vec<Receipt>,
        audits: Vec<AuditResult>,
    ) -> Result<Self, BundleError> {
        let body = BundleBody {
            v: BUNDLE_VERSION,
            network: network.to_owned(),
            epoch,
            publisher: node_key.node_id(),
            publisher_key: node_key.public(),
            receipts: sorted_by_encoding(receipts)?,
            audits: sorted_by_encoding(audits)?,
        };
        let text = Self::signing_text(&Self::body_digest(&body)?);
        Ok(Self {
            signature: node_key.sign(&text),
            body,
        })
    }

    /// The digest of a body: keccak-256 of the domain and the body's postcard encoding.
    /// It names the bundle in set summaries and fetches.
    pub fn body_digest(body: &BundleBody) -> Result<Hash, BundleError> {
        let mut bytes = BUNDLE_DOMAIN.to_vec();
        bytes.extend_from_slice(&encode(body)?);
        Ok(keccak256(&bytes))
    }

    /// The exact bytes the publisher signs: the domain, then the body's digest.
    pub fn signing_text(digest: &Hash) -> Vec<u8> {
        let mut text = BUNDLE_DOMAIN.to_vec();
        text.extend_from_slice(digest);
        text
    }

    /// The wire form (postcard; the body's first field is its version).
    pub fn encode(&self) -> Result<Vec<u8>, BundleError> {
        encode(self)
    }

    /// Decodes a bundle after checking its size. It still has to be [`verify`]d.
    ///
    /// [`verify`]: EvidenceBundle::verify
    pub fn decode(bytes: &[u8], limits: &BundleLimits) -> Result<Self, BundleError> {
        if bytes.len() > limits.max_bytes {
            return Err(BundleError::TooLarge {
                size: bytes.len(),
                limit: limits.max_bytes,
            });
        }
        postcard::from_bytes(bytes).map_err(BundleError::Malformed)
    }

    /// Checks everything a hostile publisher could get wrong; cheap checks first. Any bad
    /// item rejects the whole bundle, so every node reaches the same verdict.
    pub fn verify(
        self,
        network: &str,
        epoch: Epoch,
        limits: &BundleLimits,
    ) -> Result<VerifiedBundle, BundleError> {
        let body = &self.body;
        if body.v != BUNDLE_VERSION {
            return Err(BundleError::UnsupportedVersion(body.v));
        }
        if body.network != network {
            return Err(BundleError::WrongNetwork {
                expected: network.to_owned(),
                found: body.network.clone(),
            });
        }
        if body.epoch != epoch {
            return Err(BundleError::WrongEpoch {
                expected: epoch.0,
                found: body.epoch.0,
            });
        }
        if body.receipts.len() > limits.max_receipts || body.audits.len() > limits.max_audits {
            return Err(BundleError::TooManyItems {
                receipts: body.receipts.len(),
                audits: body.audits.len(),
            });
        }
        if NodeId::from_public_key(&body.publisher_key).ok().as_ref() != Some(&body.publisher) {
            return Err(BundleError::PublisherKeyMismatch);
        }
        let size = encode(&self)?.len();
        if size > limits.max_bytes {
            return Err(BundleError::TooLarge {
                size,
                limit: limits.max_bytes,
            });
        }
        let digest = Self::body_digest(body)?;
        if !body
            .publisher_key
            .verify(&Self::signing_text(&digest), &self.signature)
        {
            return Err(BundleError::BadSignature);
        }
        for (index, receipt) in body.receipts.iter().enumerate() {
            if receipt.body.provider != body.publisher {
                return Err(BundleError::ForeignReceipt { index });
            }
            if receipt.body.epoch != epoch {
                return Err(BundleError::ItemEpoch { index });
            }
        }
        for (index, audit) in body.audits.iter().enumerate() {
            if audit.body.auditor != body.publisher {
                return Err(BundleError::ForeignAudit { index });
            }
            if audit.body.epoch != epoch {
                return Err(BundleError::ItemEpoch {
                    index: body.receipts.len().saturating_add(index),
                });
            }
        }
        let mut verifier = SignatureVerifier::new(network);
        let receipts = body
            .receipts
            .iter()
            .enumerate()
            .map(|(index, receipt)| {
                verifier
                    .receipt(receipt)
                    .map_err(|source| BundleError::Receipt { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let audits = body
            .audits
            .iter()
            .enumerate()
            .map(|(index, audit)| {
                verifier
                    .audit(audit)
                    .map_err(|source| BundleError::Audit { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(VerifiedBundle {
            digest,
            publisher: self.body.publisher,
            receipts,
            audits,
            bundle: self,
        })
    }
}

fn sorted_by_encoding<T: Serialize>(items: Vec<T>) -> Result<Vec<T>, BundleError> {
    let mut keyed = items
        .into_iter()
        .map(|item| Ok((encode(&item)?, item)))
        .collect::<Result<Vec<_>, BundleError>>()?;
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(keyed.into_iter().map(|(_, item)| item).collect())
}

/// A bundle whose every check passed; only [`EvidenceBundle::verify`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedBundle {
    digest: Hash,
    publisher: NodeId,
    receipts: Vec<VerifiedReceipt>,
    audits: Vec<VerifiedAudit>,
    bundle: EvidenceBundle,
}

impl VerifiedBundle {
    /// The bundle's digest ([`EvidenceBundle::body_digest`]).
    pub fn digest(&self) -> Hash {
        self.digest
    }

    /// The publishing node.
    pub fn publisher(&self) -> &NodeId {
        &self.publisher
    }

    /// Its verified receipts.
    pub fn receipts(&self) -> &[VerifiedReceipt] {
        &self.receipts
    }

    /// Its verified audits.
    pub fn audits(&self) -> &[VerifiedAudit] {
        &self.audits
    }

    /// The signed bundle, to serve to other nodes.
    pub fn bundle(&self) -> &EvidenceBundle {
        &self.bundle
    }
}
