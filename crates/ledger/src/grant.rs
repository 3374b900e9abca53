//! Countersigning grants: a tenant lets its edge node countersign receipts in its name.
//!
//! A tenant's signing key stays in its client; the edge node it talks to holds only the
//! derived data key. So that the edge can countersign receipts without the tenant's key,
//! the tenant signs one [`CountersignGrant`] naming the edge's node key and a range of
//! epochs. A receipt countersigned by the edge carries the grant, and the verifier checks
//! both: the tenant's signature over the grant and the edge's signature over the receipt.
//! The edge is already trusted with the tenant's data, so this adds no trust the threat
//! model does not give it; the epoch range bounds how long a grant to a former edge counts.

use serde::{Deserialize, Serialize};
use xnode_types::{NodeId, PublicKeyBytes, SecretKey, SignatureBytes};

use crate::params::Epoch;
use crate::signing::SigningText;

/// The grant format version this code signs and verifies.
pub const GRANT_VERSION: u8 = 1;

/// Domain separator that starts every grant signing text.
pub const GRANT_DOMAIN: &[u8] = b"xnode countersign grant v1\n";

/// The longest epoch range one grant may cover; a longer grant is refused, so a grant
/// given to an edge the tenant later leaves expires on its own.
pub const MAX_GRANT_EPOCHS: u64 = 24 * 366;

/// The signed content of a grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantBody {
    /// Format version ([`GRANT_VERSION`]).
    pub v: u8,
    /// The network the grant is valid on.
    pub network: String,
    /// The granting tenant.
    pub tenant: PublicKeyBytes,
    /// The edge node that may countersign.
    pub delegate: NodeId,
    /// The edge's ed25519 public key; it must derive `delegate`.
    pub delegate_key: PublicKeyBytes,
    /// The first epoch the grant covers.
    pub from_epoch: Epoch,
    /// The last epoch the grant covers (inclusive).
    pub until_epoch: Epoch,
}

impl GrantBody {
    /// The exact bytes the tenant signs: [`GRANT_DOMAIN`], then `v` (1 byte), `network`
    /// (u64 big-endian length, then UTF-8), `tenant` (32 bytes), `delegate` (u64 length,
    /// then the node id's multihash bytes), `delegate_key` (32 bytes), `from_epoch` and
    /// `until_epoch` (8 bytes big-endian each).
    pub fn signing_text(&self) -> Vec<u8> {
        SigningText::new(GRANT_DOMAIN)
            .byte(self.v)
            .variable(self.network.as_bytes())
            .fixed(&self.tenant.0)
            .variable(&self.delegate.to_bytes())
            .fixed(&self.delegate_key.0)
            .u64(self.from_epoch.0)
            .u64(self.until_epoch.0)
            .finish()
    }

    /// Signs the grant with the tenant's key.
    pub fn sign(self, tenant: &SecretKey) -> CountersignGrant {
        let tenant_sig = tenant.sign(&self.signing_text());
        CountersignGrant {
            body: self,
            tenant_sig,
        }
    }

    /// Whether the grant covers `epoch`.
    pub fn covers(&self, epoch: Epoch) -> bool {
        self.from_epoch <= epoch && epoch <= self.until_epoch
    }
}

/// A grant with the tenant's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersignGrant {
    /// The signed content.
    pub body: GrantBody,
    /// The tenant's signature over [`GrantBody::signing_text`].
    pub tenant_sig: SignatureBytes,
}
