//! Cumulative, dual-signed usage receipts: the only evidence of usage the ledger pays for.
//!
//! A provider and a tenant keep one monotonic counter per (tenant, provider, resource,
//! epoch). As usage grows the provider signs the new cumulative total and the tenant's
//! edge countersigns it; each receipt supersedes the previous one, so settlement keeps one
//! receipt per key (the highest `cumulative`) whatever the number of exchanges, and a lost
//! receipt loses nothing that the next one does not carry. A provider that serves without
//! a countersignature is simply not paid for it.
//!
//! Signature checks are kept out of [`compute_epoch`](crate::compute_epoch): checking a
//! million receipts does not fit an epoch's one-second budget, so receipts are checked as
//! they arrive ([`Receipt::verify`], or [`SignatureVerifier::receipts`] for batches) and
//! the epoch takes [`VerifiedReceipt`]s, which only verification can construct.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use serde::{Deserialize, Serialize};
use xnode_types::{NodeId, PublicKeyBytes, SecretKey, SignatureBytes};

use crate::error::ReceiptError;
use crate::grant::{CountersignGrant, GRANT_VERSION, MAX_GRANT_EPOCHS};
use crate::params::{Epoch, Resource};
use crate::signing::{KeyCache, NodeKeyProblem, SigningText};

/// The receipt format version this code signs and verifies.
pub const RECEIPT_VERSION: u8 = 1;

/// Domain separator that starts every receipt signing text.
pub const RECEIPT_DOMAIN: &[u8] = b"xnode receipt v1\n";

/// The signed content of a receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    /// Format version ([`RECEIPT_VERSION`]).
    pub v: u8,
    /// The network the receipt is valid on; binds it so it cannot be replayed elsewhere.
    pub network: String,
    /// The paying tenant, by its ed25519 public key.
    pub tenant: PublicKeyBytes,
    /// The node that served.
    pub provider: NodeId,
    /// The provider's ed25519 public key; it must derive `provider`.
    pub provider_key: PublicKeyBytes,
    /// What was metered.
    pub resource: Resource,
    /// The epoch the usage belongs to.
    pub epoch: Epoch,
    /// Units of `resource` used in `epoch` so far (cumulative, never a delta).
    pub cumulative: u64,
    /// Exchange sequence number; breaks ties between receipts with equal `cumulative`.
    pub seq: u64,
}

impl ReceiptBody {
    /// The exact bytes both parties sign.
    ///
    /// `b"xnode receipt v1\n"`, then `v` (1 byte), `network` (u64 big-endian length, then
    /// UTF-8 bytes), `tenant` (32 bytes), `provider` (u64 length, then the node id's
    /// multihash bytes), `provider_key` (32 bytes), `resource` ([`Resource::code`], 1 byte),
    /// `epoch`, `cumulative`, `seq` (8 bytes big-endian each). Both signatures bind every
    /// field of the body, so no field can be changed without both parties signing again.
    pub fn signing_text(&self) -> Vec<u8> {
        SigningText::new(RECEIPT_DOMAIN)
            .byte(self.v)
            .variable(self.network.as_bytes())
            .fixed(&self.tenant.0)
            .variable(&self.provider.to_bytes())
            .fixed(&self.provider_key.0)
            .byte(self.resource.code())
            .u64(self.epoch.0)
            .u64(self.cumulative)
            .u64(self.seq)
            .finish()
    }

    /// The counter this receipt belongs to.
    pub fn key(&self) -> ReceiptKey {
        ReceiptKey {
            tenant: self.tenant,
            provider: self.provider,
            resource: self.resource,
            epoch: self.epoch,
        }
    }

    /// The provider's half: a receipt signed by `provider`, not yet countersigned.
    pub fn sign_as_provider(self, provider: &SecretKey) -> Receipt {
        let provider_sig = provider.sign(&self.signing_text());
        Receipt {
            body: self,
            provider_sig,
            tenant_sig: None,
            grant: None,
        }
    }
}

/// A receipt with the provider's signature and, once countersigned, the tenant's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The signed content.
    pub body: ReceiptBody,
    /// The provider's signature over [`ReceiptBody::signing_text`].
    pub provider_sig: SignatureBytes,
    /// The tenant's countersignature over the same text; `None` until the tenant signs.
    /// With a `grant`, it is the signature of the grant's delegate (the tenant's edge).
    pub tenant_sig: Option<SignatureBytes>,
    /// The tenant's grant to the edge node that countersigned, when the tenant did not
    /// sign itself (see [`CountersignGrant`]).
    #[serde(default)]
    pub grant: Option<CountersignGrant>,
}

impl Receipt {
    /// The tenant's half: adds its countersignature over the same signing text.
    pub fn countersign(mut self, tenant: &SecretKey) -> Receipt {
        self.tenant_sig = Some(tenant.sign(&self.body.signing_text()));
        self
    }

    /// The tenant's edge's half: its countersignature under the tenant's `grant`.
    pub fn countersign_as_delegate(
        mut self,
        delegate: &SecretKey,
        grant: CountersignGrant,
    ) -> Receipt {
        self.tenant_sig = Some(delegate.sign(&self.body.signing_text()));
        self.grant = Some(grant);
        self
    }

    /// Checks the receipt belongs to `network`, that its provider key derives its provider
    /// node id, and that both the provider's and the tenant's signatures verify.
    pub fn verify(&self, network: &str) -> Result<VerifiedReceipt, ReceiptError> {
        SignatureVerifier::new(network).receipt(self)
    }

    /// Whether `self` supersedes `other` for the same key: higher `cumulative`, then
    /// higher `seq`, then (only if a party signed two conflicting receipts) the greater
    /// signature bytes, so the winner never depends on arrival order.
    fn supersedes(&self, other: &Receipt) -> bool {
        let rank = |receipt: &Receipt| {
            (
                receipt.body.cumulative,
                receipt.body.seq,
                receipt.provider_sig.0,
                receipt.tenant_sig.map(|sig| sig.0),
            )
        };
        rank(self).cmp(&rank(other)) == Ordering::Greater
    }
}

/// A receipt whose version, network, provider key and both signatures were checked.
///
/// Only [`Receipt::verify`] and [`SignatureVerifier`] construct one, so holding one is
/// proof of the check. It serializes as the receipt it wraps but deliberately cannot be
/// deserialized: a receipt read back from storage or the wire is verified again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct VerifiedReceipt(Receipt);

impl VerifiedReceipt {
    /// The verified receipt.
    pub fn receipt(&self) -> &Receipt {
        &self.0
    }

    /// The verified receipt's signed content.
    pub fn body(&self) -> &ReceiptBody {
        &self.0.body
    }

    /// Unwraps the receipt (dropping the proof of verification).
    pub fn into_receipt(self) -> Receipt {
        self.0
    }

    /// Wraps a receipt **without checking it**. Only for benchmarks, which need a million
    /// receipts faster than they can be signed; never enable the `bench` feature in a node.
    #[cfg(any(test, feature = "bench"))]
    pub fn assume_verified(receipt: Receipt) -> Self {
        Self(receipt)
    }
}

/// The counter a receipt advances: one per (tenant, provider, resource, epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReceiptKey {
    /// The paying tenant.
    pub tenant: PublicKeyBytes,
    /// The serving node.
    pub provider: NodeId,
    /// The metered resource.
    pub resource: Resource,
    /// The epoch of the usage.
    pub epoch: Epoch,
}

/// The latest receipt of every counter: O(1) state per key, whatever the receipt count.
///
/// A node collects receipts here during an epoch and hands
/// [`ReceiptBook::into_receipts`] to the epoch computation (which also tolerates
/// superseded receipts in its input and keeps the highest itself).
#[derive(Clone, Debug, Default)]
pub struct ReceiptBook {
    latest: BTreeMap<ReceiptKey, VerifiedReceipt>,
}

impl ReceiptBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `receipt` if it supersedes the one held for its key (or is the first).
    /// Returns whether it was kept.
    pub fn insert(&mut self, receipt: VerifiedReceipt) -> bool {
        match self.latest.entry(receipt.body().key()) {
            Entry::Vacant(slot) => {
                slot.insert(receipt);
                true
            }
            Entry::Occupied(mut slot) => {
                if receipt.receipt().supersedes(slot.get().receipt()) {
                    slot.insert(receipt);
                    true
                } else {
                    false
                }
            }
        }
    }

    /// The receipt held for `key`.
    pub fn get(&self, key: &ReceiptKey) -> Option<&VerifiedReceipt> {
        self.latest.get(key)
    }

    /// How many counters are held.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether no receipt is held.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// The latest receipt of every counter, in key order.
    pub fn into_receipts(self) -> Vec<VerifiedReceipt> {
        self.latest.into_values().collect()
    }
}

/// Checks receipts and audits for one network, decoding each distinct key only once.
///
/// Use one verifier per batch: the ed25519 equation is still checked once per signature
/// (see the module docs of `signing` for why not a randomised batch equation), but key
/// decompression and node-id derivation are amortised over every item signed by the same
/// parties. Results are exactly those of [`Receipt::verify`] and
/// [`AuditResult::verify`](crate::AuditResult::verify), item by item.
pub struct SignatureVerifier {
    pub(crate) network: String,
    pub(crate) keys: KeyCache,
}

impl SignatureVerifier {
    /// A verifier accepting items signed for `network`.
    pub fn new(network: &str) -> Self {
        Self {
            network: network.to_owned(),
            keys: KeyCache::default(),
        }
    }

    /// Verifies one receipt (see [`Receipt::verify`]).
    pub fn receipt(&mut self, receipt: &Receipt) -> Result<VerifiedReceipt, ReceiptError> {
        let body = &receipt.body;
        if body.v != RECEIPT_VERSION {
            return Err(ReceiptError::UnsupportedVersion(body.v));
        }
        if body.network != self.network {
            return Err(ReceiptError::WrongNetwork {
                expected: self.network.clone(),
                found: body.network.clone(),
            });
        }
        self.keys
            .check_node_key(&body.provider_key, &body.provider)
            .map_err(|problem| match problem {
                NodeKeyProblem::Malformed => ReceiptError::MalformedProviderKey,
                NodeKeyProblem::Mismatch => ReceiptError::ProviderKeyMismatch,
            })?;
        let text = body.signing_text();
        if !self
            .keys
            .verify(&body.provider_key, &text, &receipt.provider_sig)
        {
            return Err(ReceiptError::BadProviderSignature);
        }
        let tenant_sig = receipt
            .tenant_sig
            .as_ref()
            .ok_or(ReceiptError::MissingTenantSignature)?;
        let countersigner = match &receipt.grant {
            None => body.tenant,
            Some(grant) => {
                self.check_grant(grant, body)?;
                grant.body.delegate_key
            }
        };
        if !self.keys.verify(&countersigner, &text, tenant_sig) {
            return Err(ReceiptError::BadTenantSignature);
        }
        Ok(VerifiedReceipt(receipt.clone()))
    }

    /// Checks that `grant` is the receipt's tenant's valid grant for the receipt's epoch.
    fn check_grant(
        &mut self,
        grant: &CountersignGrant,
        receipt: &ReceiptBody,
    ) -> Result<(), ReceiptError> {
        let body = &grant.body;
        if body.v != GRANT_VERSION {
            return Err(ReceiptError::BadGrant("unsupported grant version"));
        }
        if body.network != self.network {
            return Err(ReceiptError::BadGrant("grant is for another network"));
        }
        if body.tenant != receipt.tenant {
            return Err(ReceiptError::BadGrant("grant is from another tenant"));
        }
        if !body.covers(receipt.epoch) {
            return Err(ReceiptError::BadGrant(
                "grant does not cover the receipt's epoch",
            ));
        }
        if body.until_epoch.0.saturating_sub(body.from_epoch.0) >= MAX_GRANT_EPOCHS {
            return Err(ReceiptError::BadGrant("grant covers too many epochs"));
        }
        if self
            .keys
            .check_node_key(&body.delegate_key, &body.delegate)
            .is_err()
        {
            return Err(ReceiptError::BadGrant(
                "delegate key does not match the delegate node",
            ));
        }
        if !self
            .keys
            .verify(&body.tenant, &body.signing_text(), &grant.tenant_sig)
        {
            return Err(ReceiptError::BadGrant(
                "tenant signature on the grant does not verify",
            ));
        }
        Ok(())
    }

    /// Verifies a batch of receipts; one result per receipt, in input order.
    pub fn receipts(&mut self, receipts: &[Receipt]) -> Vec<Result<VerifiedReceipt, ReceiptError>> {
        receipts
            .iter()
            .map(|receipt| self.receipt(receipt))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::GrantBody;

    fn keys() -> (SecretKey, SecretKey) {
        (
            SecretKey::from_seed(&[1; 32]).unwrap(),
            SecretKey::from_seed(&[2; 32]).unwrap(),
        )
    }

    fn body(provider: &SecretKey, tenant: &SecretKey, cumulative: u64) -> ReceiptBody {
        ReceiptBody {
            v: RECEIPT_VERSION,
            network: "testnet".into(),
            tenant: tenant.public(),
            provider: provider.node_id(),
            provider_key: provider.public(),
            resource: Resource::EgressBytes,
            epoch: Epoch(7),
            cumulative,
            seq: cumulative,
        }
    }

    #[test]
    fn countersigned_receipt_verifies() {
        let (provider, tenant) = keys();
        let receipt = body(&provider, &tenant, 10)
            .sign_as_provider(&provider)
            .countersign(&tenant);
        let verified = receipt.verify("testnet").unwrap();
        assert_eq!(verified.receipt(), &receipt);
    }

    #[test]
    fn provider_only_forged_and_foreign_receipts_are_rejected() {
        let (provider, tenant) = keys();
        let provider_only = body(&provider, &tenant, 10).sign_as_provider(&provider);
        assert_eq!(
            provider_only.verify("testnet"),
            Err(ReceiptError::MissingTenantSignature)
        );

        // The provider signs the tenant's half itself.
        let mut forged = provider_only.clone();
        forged.tenant_sig = Some(provider.sign(&forged.body.signing_text()));
        assert_eq!(
            forged.verify("testnet"),
            Err(ReceiptError::BadTenantSignature)
        );

        // A countersigned receipt whose amount was raised afterwards.
        let mut inflated = provider_only.countersign(&tenant);
        inflated.body.cumulative = 1_000;
        assert_eq!(
            inflated.verify("testnet"),
            Err(ReceiptError::BadProviderSignature)
        );

        let foreign = body(&provider, &tenant, 10)
            .sign_as_provider(&provider)
            .countersign(&tenant);
        assert!(matches!(
            foreign.verify("mainnet"),
            Err(ReceiptError::WrongNetwork { .. })
        ));

        // Claiming to be another node with one's own key.
        let mut impostor = body(&provider, &tenant, 10);
        impostor.provider = tenant.node_id();
        let impostor = impostor.sign_as_provider(&provider).countersign(&tenant);
        assert_eq!(
            impostor.verify("testnet"),
            Err(ReceiptError::ProviderKeyMismatch)
        );

        let mut future = body(&provider, &tenant, 10);
        future.v = 2;
        let future = future.sign_as_provider(&provider).countersign(&tenant);
        assert_eq!(
            future.verify("testnet"),
            Err(ReceiptError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn batch_verification_matches_single_verification() {
        let (provider, tenant) = keys();
        let mut receipts: Vec<Receipt> = (0..20)
            .map(|n| {
                body(&provider, &tenant, n)
                    .sign_as_provider(&provider)
                    .countersign(&tenant)
            })
            .collect();
        receipts[3].tenant_sig = None;
        receipts[7].body.seq += 1;
        let mut verifier = SignatureVerifier::new("testnet");
        let batch = verifier.receipts(&receipts);
        let single: Vec<_> = receipts.iter().map(|r| r.verify("testnet")).collect();
        assert_eq!(batch, single);
        assert_eq!(batch.iter().filter(|r| r.is_err()).count(), 2);
    }

    #[test]
    fn book_keeps_the_highest_cumulative() {
        let (provider, tenant) = keys();
        let mut book = ReceiptBook::new();
        for cumulative in [5, 9, 2] {
            let receipt = body(&provider, &tenant, cumulative)
                .sign_as_provider(&provider)
                .countersign(&tenant);
            book.insert(receipt.verify("testnet").unwrap());
        }
        assert_eq!(book.len(), 1);
        let key = body(&provider, &tenant, 0).key();
        assert_eq!(book.get(&key).map(|r| r.body().cumulative), Some(9));
    }

    fn grant(tenant: &SecretKey, edge: &SecretKey, from: u64, until: u64) -> CountersignGrant {
        GrantBody {
            v: GRANT_VERSION,
            network: "testnet".into(),
            tenant: tenant.public(),
            delegate: edge.node_id(),
            delegate_key: edge.public(),
            from_epoch: Epoch(from),
            until_epoch: Epoch(until),
        }
        .sign(tenant)
    }

    #[test]
    fn countersignature_under_a_grant_verifies_and_bad_grants_are_refused() {
        let (provider, tenant) = keys();
        let edge = SecretKey::from_seed(&[3; 32]).unwrap();
        let stranger = SecretKey::from_seed(&[4; 32]).unwrap();
        let proposal = body(&provider, &tenant, 10).sign_as_provider(&provider);

        let good = proposal
            .clone()
            .countersign_as_delegate(&edge, grant(&tenant, &edge, 0, 10));
        assert!(good.verify("testnet").is_ok());

        // A stranger cannot countersign under a grant to the edge.
        let impostor = proposal
            .clone()
            .countersign_as_delegate(&stranger, grant(&tenant, &edge, 0, 10));
        assert_eq!(
            impostor.verify("testnet"),
            Err(ReceiptError::BadTenantSignature)
        );

        // A grant the stranger signed for itself in the tenant's name.
        let mut self_granted = grant(&tenant, &stranger, 0, 10);
        self_granted.tenant_sig = stranger.sign(&self_granted.body.signing_text());
        let forged = proposal
            .clone()
            .countersign_as_delegate(&stranger, self_granted);
        assert!(matches!(
            forged.verify("testnet"),
            Err(ReceiptError::BadGrant(_))
        ));

        // A grant that ended before the receipt's epoch (7).
        let expired = proposal
            .clone()
            .countersign_as_delegate(&edge, grant(&tenant, &edge, 0, 6));
        assert!(matches!(
            expired.verify("testnet"),
            Err(ReceiptError::BadGrant(_))
        ));

        // A grant by another tenant.
        let other_tenant = proposal
            .clone()
            .countersign_as_delegate(&edge, grant(&stranger, &edge, 0, 10));
        assert!(matches!(
            other_tenant.verify("testnet"),
            Err(ReceiptError::BadGrant(_))
        ));

        // A grant without bound.
        let unbounded = proposal.countersign_as_delegate(&edge, grant(&tenant, &edge, 0, u64::MAX));
        assert!(matches!(
            unbounded.verify("testnet"),
            Err(ReceiptError::BadGrant(_))
        ));
    }

    #[test]
    fn receipt_json_round_trips() {
        let (provider, tenant) = keys();
        let receipt = body(&provider, &tenant, 3)
            .sign_as_provider(&provider)
            .countersign(&tenant);
        let json = serde_json::to_string(&receipt).unwrap();
        let back: Receipt = serde_json::from_str(&json).unwrap();
        assert_eq!(back, receipt);
        assert!(back.verify("testnet").is_ok());
    }
}
