//! The bundles a node holds for one epoch, their digest, the exchange that makes the
//! committee's sets equal, and the canonical ledger input built from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xnode_ledger::{
    Epoch, EpochInput, Hash, LedgerParams, ReceiptBook, ReputationState, Stake, TenantEscrow,
    VerifiedAudit, keccak256,
};
use xnode_types::NodeId;

use crate::bundle::VerifiedBundle;

/// One audit verdict: auditor, audited node, chunk, time and outcome (the other signed
/// fields are fixed by verification).
type AuditKey = (NodeId, NodeId, [u8; 32], u64, bool);

/// Domain separator of an evidence set's digest.
pub const SET_DOMAIN: &[u8] = b"xnode evidence set v1\n";

/// What a node tells the committee about the bundles it holds: one digest per publisher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSummary {
    /// The epoch.
    pub epoch: Epoch,
    /// `(publisher, bundle digest)`, ascending by publisher.
    pub bundles: Vec<(NodeId, Hash)>,
}

/// The verified bundles held for one epoch, at most one per publisher.
///
/// A publisher that signs two different bundles for the same epoch gains nothing by it:
/// its bundle carries only its own receipts and its own audits, and every node keeps the
/// one with the lowest digest, so once the sets are exchanged everyone keeps the same one.
#[derive(Clone, Debug)]
pub struct EvidenceSet {
    epoch: Epoch,
    bundles: BTreeMap<NodeId, VerifiedBundle>,
}

impl EvidenceSet {
    /// An empty set for `epoch`.
    pub fn new(epoch: Epoch) -> Self {
        Self {
            epoch,
            bundles: BTreeMap::new(),
        }
    }

    /// The epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// How many bundles are held.
    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    /// Whether no bundle is held.
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }

    /// Adds a verified bundle of this epoch. Returns whether the set changed: it does
    /// unless the publisher's held bundle has a lower or equal digest. A bundle of another
    /// epoch is ignored (verification already refuses those).
    pub fn insert(&mut self, bundle: VerifiedBundle) -> bool {
        if bundle.bundle().body.epoch != self.epoch {
            return false;
        }
        match self.bundles.get(bundle.publisher()) {
            Some(held) if held.digest() <= bundle.digest() => false,
            _ => {
                self.bundles.insert(*bundle.publisher(), bundle);
                true
            }
        }
    }

    /// The held bundle of a publisher.
    pub fn get(&self, publisher: &NodeId) -> Option<&VerifiedBundle> {
        self.bundles.get(publisher)
    }

    /// The summary to send to the other committee members.
    pub fn summary(&self) -> SetSummary {
        SetSummary {
            epoch: self.epoch,
            bundles: self
                .bundles
                .iter()
                .map(|(publisher, bundle)| (*publisher, bundle.digest()))
                .collect(),
        }
    }

    /// The digest of the set: keccak-256 over the domain, the epoch and every
    /// `(publisher, digest)` pair in publisher order. Equal digests mean equal inputs.
    pub fn digest(&self) -> Hash {
        let mut bytes = SET_DOMAIN.to_vec();
        bytes.extend_from_slice(&self.epoch.0.to_be_bytes());
        for (publisher, bundle) in &self.bundles {
            let id = publisher.to_bytes();
            bytes.extend_from_slice(&u64::try_from(id.len()).unwrap_or(u64::MAX).to_be_bytes());
            bytes.extend_from_slice(&id);
            bytes.extend_from_slice(&bundle.digest());
        }
        keccak256(&bytes)
    }

    /// The bundles of a peer's summary that would change this set (a publisher missing
    /// here, or a lower digest for one held): fetch these from the peer by digest and
    /// [`insert`](EvidenceSet::insert) them. Once every member has fetched from every
    /// other, all hold the union and their set digests agree.
    pub fn wanted_from(&self, summary: &SetSummary) -> Vec<(NodeId, Hash)> {
        if summary.epoch != self.epoch {
            return Vec::new();
        }
        summary
            .bundles
            .iter()
            .filter(|(publisher, digest)| {
                self.bundles
                    .get(publisher)
                    .is_none_or(|held| *digest < held.digest())
            })
            .copied()
            .collect()
    }

    /// The ledger input of this set: the latest receipt of every counter (a superseded
    /// receipt counts once, whichever bundle carried it) and each distinct audit once,
    /// both in a fixed order, so the same set gives the same input and root everywhere.
    /// Stakes, escrows and the previous reputation come from the chain and the previous
    /// epoch, which every node reads alike.
    pub fn epoch_input(
        &self,
        params: LedgerParams,
        stakes: Vec<Stake>,
        escrows: Vec<TenantEscrow>,
        reputation: ReputationState,
    ) -> EpochInput {
        let mut book = ReceiptBook::new();
        let mut audits: BTreeMap<AuditKey, VerifiedAudit> = BTreeMap::new();
        for bundle in self.bundles.values() {
            for receipt in bundle.receipts() {
                book.insert(receipt.clone());
            }
            for audit in bundle.audits() {
                // An auditor can sign the same verdict twice with different nonces; it is
                // still one audit. Of equal verdicts the lowest signature is kept, so the
                // choice does not depend on arrival order.
                let body = audit.body();
                let key = (
                    body.auditor,
                    body.audited,
                    body.chunk,
                    body.at_ms,
                    body.passed,
                );
                match audits.get(&key) {
                    Some(held) if held.result().auditor_sig.0 <= audit.result().auditor_sig.0 => {}
                    _ => {
                        audits.insert(key, audit.clone());
                    }
                }
            }
        }
        EpochInput {
            epoch: self.epoch,
            params,
            receipts: book.into_receipts(),
            audits: audits.into_values().collect(),
            stakes,
            escrows,
            reputation,
        }
    }
}
