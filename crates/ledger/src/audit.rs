//! Signed storage-audit results: one auditor's verdict on one chunk held by another node.
//!
//! Peers challenge each other over random slices of chunks they hold. Each result is
//! signed by the auditor that issued the challenge and is the only input to reputation and
//! slashing. As with receipts, signatures are checked before the epoch
//! ([`AuditResult::verify`]) and the epoch takes [`VerifiedAudit`]s. How results from many
//! auditors are combined so that one hostile auditor can neither ruin nor pad a score is
//! the reputation module's business.

use serde::{Deserialize, Serialize};
use xnode_types::{NodeId, PublicKeyBytes, SecretKey, SignatureBytes};

use crate::error::AuditError;
use crate::params::Epoch;
use crate::receipt::SignatureVerifier;
use crate::signing::{NodeKeyProblem, SigningText};

/// The audit format version this code signs and verifies.
pub const AUDIT_VERSION: u8 = 1;

/// Domain separator that starts every audit signing text.
pub const AUDIT_DOMAIN: &[u8] = b"xnode audit v1\n";

/// The signed content of an audit result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditBody {
    /// Format version ([`AUDIT_VERSION`]).
    pub v: u8,
    /// The network the result is valid on.
    pub network: String,
    /// The epoch the audit belongs to.
    pub epoch: Epoch,
    /// The node that issued the challenge and signs the result.
    pub auditor: NodeId,
    /// The auditor's ed25519 public key; it must derive `auditor`.
    pub auditor_key: PublicKeyBytes,
    /// The node that was challenged.
    pub audited: NodeId,
    /// The BLAKE3 hash of the challenged chunk.
    pub chunk: [u8; 32],
    /// Whether the audited node answered with a valid proof in time.
    pub passed: bool,
    /// When the verdict was reached (ms since the Unix epoch, the auditor's clock); the
    /// latest verdict of an auditor on a chunk wins.
    pub at_ms: u64,
}

impl AuditBody {
    /// The exact bytes the auditor signs.
    ///
    /// `b"xnode audit v1\n"`, then `v` (1 byte), `network` (u64 big-endian length, then
    /// UTF-8 bytes), `epoch` (u64 big-endian), `auditor` (u64 length, then multihash bytes),
    /// `auditor_key` (32 bytes), `audited` (u64 length, then multihash bytes), `chunk`
    /// (32 bytes), `passed` (1 byte, 0 or 1), `at_ms` (u64 big-endian): every field.
    pub fn signing_text(&self) -> Vec<u8> {
        SigningText::new(AUDIT_DOMAIN)
            .byte(self.v)
            .variable(self.network.as_bytes())
            .u64(self.epoch.0)
            .variable(&self.auditor.to_bytes())
            .fixed(&self.auditor_key.0)
            .variable(&self.audited.to_bytes())
            .fixed(&self.chunk)
            .byte(u8::from(self.passed))
            .u64(self.at_ms)
            .finish()
    }

    /// Signs the result as `auditor`.
    pub fn sign(self, auditor: &SecretKey) -> AuditResult {
        let auditor_sig = auditor.sign(&self.signing_text());
        AuditResult {
            body: self,
            auditor_sig,
        }
    }
}

/// An audit result signed by its auditor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditResult {
    /// The signed content.
    pub body: AuditBody,
    /// The auditor's signature over [`AuditBody::signing_text`].
    pub auditor_sig: SignatureBytes,
}

impl AuditResult {
    /// Checks the result belongs to `network`, that the auditor key derives the auditor
    /// node id and that the auditor's signature verifies.
    pub fn verify(&self, network: &str) -> Result<VerifiedAudit, AuditError> {
        SignatureVerifier::new(network).audit(self)
    }
}

/// An audit result whose version, network, auditor key and signature were checked.
///
/// Constructed only by verification; serializes as the result it wraps and cannot be
/// deserialized (re-verify what is read back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct VerifiedAudit(AuditResult);

impl VerifiedAudit {
    /// The verified result.
    pub fn result(&self) -> &AuditResult {
        &self.0
    }

    /// The verified result's signed content.
    pub fn body(&self) -> &AuditBody {
        &self.0.body
    }

    /// Wraps a result **without checking it**; benchmarks only (see
    /// [`VerifiedReceipt::assume_verified`](crate::VerifiedReceipt::assume_verified)).
    #[cfg(any(test, feature = "bench"))]
    pub fn assume_verified(result: AuditResult) -> Self {
        Self(result)
    }
}

impl SignatureVerifier {
    /// Verifies one audit result (see [`AuditResult::verify`]).
    pub fn audit(&mut self, result: &AuditResult) -> Result<VerifiedAudit, AuditError> {
        let body = &result.body;
        if body.v != AUDIT_VERSION {
            return Err(AuditError::UnsupportedVersion(body.v));
        }
        if body.network != self.network {
            return Err(AuditError::WrongNetwork {
                expected: self.network.clone(),
                found: body.network.clone(),
            });
        }
        self.keys
            .check_node_key(&body.auditor_key, &body.auditor)
            .map_err(|problem| match problem {
                NodeKeyProblem::Malformed => AuditError::MalformedAuditorKey,
                NodeKeyProblem::Mismatch => AuditError::AuditorKeyMismatch,
            })?;
        if !self
            .keys
            .verify(&body.auditor_key, &body.signing_text(), &result.auditor_sig)
        {
            return Err(AuditError::BadSignature);
        }
        Ok(VerifiedAudit(result.clone()))
    }

    /// Verifies a batch of audit results; one result per input, in input order.
    pub fn audits(&mut self, results: &[AuditResult]) -> Vec<Result<VerifiedAudit, AuditError>> {
        results.iter().map(|result| self.audit(result)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(auditor: &SecretKey, audited: &SecretKey, passed: bool) -> AuditBody {
        AuditBody {
            v: AUDIT_VERSION,
            network: "testnet".into(),
            epoch: Epoch(3),
            auditor: auditor.node_id(),
            auditor_key: auditor.public(),
            audited: audited.node_id(),
            chunk: [9; 32],
            passed,
            at_ms: 1_000,
        }
    }

    #[test]
    fn signed_audit_verifies_and_tampering_is_caught() {
        let auditor = SecretKey::from_seed(&[3; 32]).unwrap();
        let audited = SecretKey::from_seed(&[4; 32]).unwrap();
        let result = body(&auditor, &audited, false).sign(&auditor);
        assert!(result.verify("testnet").is_ok());

        let mut flipped = result.clone();
        flipped.body.passed = true;
        assert_eq!(flipped.verify("testnet"), Err(AuditError::BadSignature));

        assert!(matches!(
            result.verify("othernet"),
            Err(AuditError::WrongNetwork { .. })
        ));

        // The audited node signs a "pass" about itself in the auditor's name.
        let forged = body(&auditor, &audited, true).sign(&audited);
        assert_eq!(forged.verify("testnet"), Err(AuditError::BadSignature));

        let mut impostor = body(&auditor, &audited, true);
        impostor.auditor_key = audited.public();
        let impostor = impostor.sign(&audited);
        assert_eq!(
            impostor.verify("testnet"),
            Err(AuditError::AuditorKeyMismatch)
        );
    }
}
