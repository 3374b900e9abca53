//! Countersigned receipts and countersigning grants in the node's database.
//!
//! The provider keeps the latest countersigned receipt of each of its counters (what it
//! will claim payment with); the edge keeps the latest it countersigned (what its tenant
//! will be charged, and the floor below which it refuses stale proposals). Every receipt
//! is verified before it is stored and again when read back for the ledger, so a
//! tampered file earns nothing. One receipt per counter: cumulative receipts supersede.

use serde::{Deserialize, Serialize};
use xnode_db::{Db, Table};
use xnode_ledger::{CountersignGrant, Epoch, Receipt, ReceiptError, SignatureVerifier};
use xnode_types::PublicKeyBytes;
use xnode_wire::Versioned;

use crate::MeteringError;
use crate::meter::counter_key_bytes;

const MAX_STORED: usize = 4 * 1024;

#[derive(Serialize, Deserialize)]
struct StoredReceipt {
    receipt: Receipt,
}

impl Versioned for StoredReceipt {
    const KIND_TAG: u8 = xnode_wire::kinds::STORED_RECEIPT;
    const KIND_NAME: &'static str = "stored receipt";
    const VERSION: u8 = 1;
}

#[derive(Serialize, Deserialize)]
struct StoredGrant {
    grant: CountersignGrant,
}

impl Versioned for StoredGrant {
    const KIND_TAG: u8 = xnode_wire::kinds::STORED_GRANT;
    const KIND_NAME: &'static str = "stored grant";
    const VERSION: u8 = 1;
}

/// Why a receipt was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreReceiptError {
    /// It does not verify.
    #[error("receipt does not verify: {0}")]
    Invalid(#[from] ReceiptError),
    /// The database failed.
    #[error(transparent)]
    Metering(#[from] MeteringError),
}

/// The countersigned receipts and grants of one node.
#[derive(Clone, Debug)]
pub struct ReceiptStore {
    db: Db,
    network: String,
    receipts: Table,
    grants: Table,
}

impl ReceiptStore {
    /// A store for `network` over the two tables of `db`.
    pub fn new(db: Db, network: &str, receipts: Table, grants: Table) -> Self {
        Self {
            db,
            network: network.to_owned(),
            receipts,
            grants,
        }
    }

    /// Stores `receipt` if it verifies and supersedes the one held for its counter.
    /// Returns whether it was kept.
    pub fn insert(&self, receipt: &Receipt) -> Result<bool, StoreReceiptError> {
        SignatureVerifier::new(&self.network).receipt(receipt)?;
        let key = counter_key_bytes(&receipt.body.key());
        if let Some(held) = self.get_raw(&key)?
            && (held.body.cumulative, held.body.seq) >= (receipt.body.cumulative, receipt.body.seq)
        {
            return Ok(false);
        }
        let value = xnode_wire::encode(&StoredReceipt {
            receipt: receipt.clone(),
        })
        .map_err(MeteringError::from)?;
        self.db
            .put(self.receipts, &key, &value)
            .map_err(MeteringError::from)?;
        Ok(true)
    }

    fn get_raw(&self, key: &[u8]) -> Result<Option<Receipt>, MeteringError> {
        match self.db.get(self.receipts, key)? {
            Some(bytes) => Ok(Some(
                xnode_wire::decode::<StoredReceipt>(&bytes, MAX_STORED)?.receipt,
            )),
            None => Ok(None),
        }
    }

    /// The countersigned total held for `key`'s counter, if any.
    pub fn countersigned(&self, key: &crate::CounterKey) -> Result<Option<u64>, MeteringError> {
        Ok(self
            .get_raw(&counter_key_bytes(key))?
            .map(|receipt| receipt.body.cumulative))
    }

    /// The held receipt for `key`'s counter, if any.
    pub fn get(&self, key: &crate::CounterKey) -> Result<Option<Receipt>, MeteringError> {
        self.get_raw(&counter_key_bytes(key))
    }

    /// Every receipt held for `epoch`, in counter order, at most `limit`.
    pub fn epoch(&self, epoch: Epoch, limit: usize) -> Result<Vec<Receipt>, MeteringError> {
        self.db
            .scan_prefix(self.receipts, &epoch.0.to_be_bytes(), limit)?
            .into_iter()
            .map(|(_, value)| Ok(xnode_wire::decode::<StoredReceipt>(&value, MAX_STORED)?.receipt))
            .collect()
    }

    /// Keeps `grant` as its tenant's grant to this node (replacing an older one).
    pub fn put_grant(&self, grant: &CountersignGrant) -> Result<(), MeteringError> {
        let value = xnode_wire::encode(&StoredGrant {
            grant: grant.clone(),
        })?;
        self.db.put(self.grants, &grant.body.tenant.0, &value)?;
        Ok(())
    }

    /// The grant `tenant` gave this node, if any.
    pub fn grant(
        &self,
        tenant: &PublicKeyBytes,
    ) -> Result<Option<CountersignGrant>, MeteringError> {
        match self.db.get(self.grants, &tenant.0)? {
            Some(bytes) => Ok(Some(
                xnode_wire::decode::<StoredGrant>(&bytes, MAX_STORED)?.grant,
            )),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CounterKey, propose};
    use xnode_ledger::{GRANT_VERSION, GrantBody, Resource};
    use xnode_types::SecretKey;

    #[test]
    fn receipts_supersede_and_unverified_ones_are_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db.redb")).unwrap();
        let store = ReceiptStore::new(db, "net", Table("r"), Table("g"));
        let provider = SecretKey::from_seed(&[1; 32]).unwrap();
        let tenant = SecretKey::from_seed(&[2; 32]).unwrap();
        let edge = SecretKey::from_seed(&[3; 32]).unwrap();
        let grant = GrantBody {
            v: GRANT_VERSION,
            network: "net".into(),
            tenant: tenant.public(),
            delegate: edge.node_id(),
            delegate_key: edge.public(),
            from_epoch: Epoch(0),
            until_epoch: Epoch(10),
        }
        .sign(&tenant);
        store.put_grant(&grant).unwrap();
        assert_eq!(store.grant(&tenant.public()).unwrap(), Some(grant.clone()));
        let key = CounterKey {
            tenant: tenant.public(),
            provider: provider.node_id(),
            resource: Resource::EgressBytes,
            epoch: Epoch(4),
        };
        let signed =
            |n| propose("net", &provider, key, n, n).countersign_as_delegate(&edge, grant.clone());
        assert!(store.insert(&signed(10)).unwrap());
        assert!(store.insert(&signed(20)).unwrap());
        assert!(!store.insert(&signed(15)).unwrap());
        assert_eq!(store.countersigned(&key).unwrap(), Some(20));

        // Provider-only and tampered receipts are refused.
        let provider_only = propose("net", &provider, key, 99, 99);
        assert!(store.insert(&provider_only).is_err());
        let mut tampered = signed(30);
        tampered.body.cumulative = 300;
        assert!(store.insert(&tampered).is_err());

        let held = store.epoch(Epoch(4), 100).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].body.cumulative, 20);
        assert!(store.epoch(Epoch(5), 100).unwrap().is_empty());
    }
}
