//! Scenario and property tests of the whole epoch computation, with shared builders.
//!
//! Unit tests of each rule live beside the rule; these drive [`compute_epoch`] end to end
//! the way a node would: sign, verify, collect, settle, prove.

mod properties;
mod scenarios;

use std::sync::OnceLock;

use xnode_types::{NodeId, SecretKey, SignatureBytes};

use crate::{
    AUDIT_VERSION, AuditBody, AuditResult, Epoch, EpochInput, LedgerParams, RECEIPT_VERSION,
    Receipt, ReceiptBody, ReputationState, Resource, Stake, TenantEscrow, VerifiedAudit,
    VerifiedReceipt,
};

pub(crate) const NETWORK: &str = "testnet";

/// A fixed pool of keys (deriving keys is slow enough to matter in property tests).
pub(crate) fn key(index: usize) -> &'static SecretKey {
    static KEYS: OnceLock<Vec<SecretKey>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        (0..24u8)
            .map(|i| SecretKey::from_seed(&[i + 1; 32]).unwrap())
            .collect()
    });
    &keys[index % keys.len()]
}

pub(crate) fn node(index: usize) -> NodeId {
    key(index).node_id()
}

pub(crate) fn receipt_body(
    provider: &SecretKey,
    tenant: &SecretKey,
    resource: Resource,
    epoch: u64,
    cumulative: u64,
) -> ReceiptBody {
    ReceiptBody {
        v: RECEIPT_VERSION,
        network: NETWORK.into(),
        tenant: tenant.public(),
        provider: provider.node_id(),
        provider_key: provider.public(),
        resource,
        epoch: Epoch(epoch),
        cumulative,
        seq: cumulative,
    }
}

/// A properly countersigned receipt.
pub(crate) fn signed_receipt(
    provider: &SecretKey,
    tenant: &SecretKey,
    resource: Resource,
    epoch: u64,
    cumulative: u64,
) -> Receipt {
    receipt_body(provider, tenant, resource, epoch, cumulative)
        .sign_as_provider(provider)
        .countersign(tenant)
}

/// An unsigned receipt wrapped as verified (property tests and large scenarios only).
pub(crate) fn unchecked_receipt(body: ReceiptBody) -> VerifiedReceipt {
    VerifiedReceipt::assume_verified(Receipt {
        body,
        provider_sig: SignatureBytes([0; 64]),
        tenant_sig: Some(SignatureBytes([0; 64])),
        grant: None,
    })
}

pub(crate) fn unchecked_audit(
    auditor: usize,
    audited: usize,
    epoch: u64,
    chunk: u8,
    passed: bool,
) -> VerifiedAudit {
    VerifiedAudit::assume_verified(AuditResult {
        body: audit_body(auditor, audited, epoch, chunk, passed),
        auditor_sig: SignatureBytes([0; 64]),
    })
}

pub(crate) fn audit_body(
    auditor: usize,
    audited: usize,
    epoch: u64,
    chunk: u8,
    passed: bool,
) -> AuditBody {
    AuditBody {
        v: AUDIT_VERSION,
        network: NETWORK.into(),
        epoch: Epoch(epoch),
        auditor: node(auditor),
        auditor_key: key(auditor).public(),
        audited: node(audited),
        chunk: [chunk; 32],
        passed,
        at_ms: u64::from(chunk),
    }
}

pub(crate) fn stake(operator: usize, payout: u8, bonded: u128) -> Stake {
    Stake {
        operator: node(operator),
        payout_address: [payout; 20],
        bonded,
        unbonding_at: None,
    }
}

pub(crate) fn escrow(tenant: usize, balance: u128) -> TenantEscrow {
    TenantEscrow {
        tenant: key(tenant).public(),
        balance,
    }
}

/// Parameters with simple prices (1 base unit per unit of every resource).
pub(crate) fn simple_params() -> LedgerParams {
    let mut params = LedgerParams::with_defaults(NETWORK);
    let unit = crate::Price::new(1, 0);
    params.prices = crate::PriceTable {
        storage_byte_hours: unit,
        egress_bytes: unit,
        function_fuel: unit,
        function_requests: unit,
        job_fuel: unit,
        worker_fuel: unit,
    };
    params.penalties.repair_price = crate::Price::new(1, 0);
    params.penalties.chunk_size_bytes = 10;
    params
}

pub(crate) fn input(epoch: u64, params: LedgerParams) -> EpochInput {
    EpochInput {
        epoch: Epoch(epoch),
        params,
        receipts: Vec::new(),
        audits: Vec::new(),
        stakes: Vec::new(),
        escrows: Vec::new(),
        reputation: ReputationState::default(),
    }
}

/// A deterministic Fisher–Yates shuffle driven by splitmix64 (no randomness source).
pub(crate) fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for upper in (1..items.len()).rev() {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let pick = usize::try_from(z % (upper as u64 + 1)).unwrap();
        items.swap(upper, pick);
    }
}
