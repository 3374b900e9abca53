//! Digests of what members must agree on besides the evidence: the parameters (prices,
//! reputation model, penalty steps, emission) and the reputation state carried from one
//! epoch to the next.
//!
//! Settlement committee members compare these digests before counting each other's votes:
//! two members that priced usage differently, or started the epoch from different
//! reputations, computed different tables even when their payout roots happen to match
//! (a reputation difference may change no payout this epoch, and every later one). Each
//! encoding is explicit (fixed-width big-endian integers, length-prefixed bytes), starts
//! with a versioned domain string, and lists every field, so the digest cannot silently
//! change with a serializer and says what it binds.

use crate::merkle::{Hash, keccak256};
use crate::params::{LedgerParams, Price};
use crate::reputation::ReputationState;

/// Domain of [`LedgerParams::digest`].
pub const PARAMS_DIGEST_DOMAIN: &[u8] = b"xnode ledger params v1\n";
/// Domain of [`ReputationState::digest`].
pub const REPUTATION_DIGEST_DOMAIN: &[u8] = b"xnode reputation state v1\n";

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_price(out: &mut Vec<u8>, price: &Price) {
    out.extend_from_slice(&price.amount.to_be_bytes());
    out.push(price.per_units_log10);
}

impl LedgerParams {
    /// keccak-256 of the domain and every parameter: the network name, the six prices in
    /// resource code order, the reputation model, the penalty steps and the emission.
    pub fn digest(&self) -> Hash {
        let mut out = PARAMS_DIGEST_DOMAIN.to_vec();
        put_bytes(&mut out, self.network.as_bytes());
        for resource in crate::Resource::ALL {
            out.push(resource.code());
            put_price(&mut out, &self.prices.price(resource));
        }
        let reputation = &self.reputation;
        out.extend_from_slice(&reputation.decay_ppm.to_be_bytes());
        out.extend_from_slice(&reputation.weight_micro.to_be_bytes());
        out.extend_from_slice(&reputation.initial_alpha_micro.to_be_bytes());
        out.extend_from_slice(&reputation.initial_beta_micro.to_be_bytes());
        out.extend_from_slice(&reputation.min_distinct_auditors.to_be_bytes());
        out.extend_from_slice(&reputation.trimmed_auditors_per_side.to_be_bytes());
        out.extend_from_slice(&reputation.max_audits_per_auditor.to_be_bytes());
        let penalties = &self.penalties;
        out.extend_from_slice(&penalties.warn_below_ppm.to_be_bytes());
        out.extend_from_slice(&penalties.reduce_below_ppm.to_be_bytes());
        out.extend_from_slice(&penalties.eject_below_ppm.to_be_bytes());
        out.extend_from_slice(&penalties.chunk_size_bytes.to_be_bytes());
        put_price(&mut out, &penalties.repair_price);
        out.extend_from_slice(&penalties.min_bond.to_be_bytes());
        out.extend_from_slice(&self.emission.budget_per_epoch.to_be_bytes());
        out.extend_from_slice(&self.emission.max_per_paid_ppm.to_be_bytes());
        keccak256(&out)
    }
}

impl ReputationState {
    /// keccak-256 of the domain, the node count and every node's `(id, α, β)` in id order
    /// (the map's order, so equal states give equal digests however they were built).
    pub fn digest(&self) -> Hash {
        let mut out = REPUTATION_DIGEST_DOMAIN.to_vec();
        out.extend_from_slice(&(self.nodes.len() as u64).to_be_bytes());
        for (node, reputation) in &self.nodes {
            put_bytes(&mut out, &node.to_bytes());
            out.extend_from_slice(&reputation.alpha_micro.to_be_bytes());
            out.extend_from_slice(&reputation.beta_micro.to_be_bytes());
        }
        keccak256(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reputation;
    use xnode_types::SecretKey;

    #[test]
    fn every_parameter_changes_the_params_digest() {
        let base = LedgerParams::with_defaults("t");
        let digest = base.digest();
        assert_eq!(digest, LedgerParams::with_defaults("t").digest());
        let changes: Vec<fn(&mut LedgerParams)> = vec![
            |p| p.network = "u".into(),
            |p| p.prices.storage_byte_hours.amount += 1,
            |p| p.prices.worker_fuel.per_units_log10 += 1,
            |p| p.reputation.decay_ppm -= 1,
            |p| p.reputation.max_audits_per_auditor += 1,
            |p| p.penalties.warn_below_ppm -= 1,
            |p| p.penalties.repair_price.amount += 1,
            |p| p.penalties.min_bond += 1,
            |p| p.emission.budget_per_epoch += 1,
        ];
        for change in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(changed.digest(), digest, "{changed:?}");
        }
    }

    #[test]
    fn the_reputation_digest_follows_the_state() {
        let node = SecretKey::from_seed(&[3; 32]).unwrap().node_id();
        let empty = ReputationState::default();
        let mut one = ReputationState::default();
        one.nodes.insert(
            node,
            Reputation {
                alpha_micro: 5,
                beta_micro: 1,
            },
        );
        assert_ne!(empty.digest(), one.digest());
        let mut other = one.clone();
        other.nodes.insert(
            node,
            Reputation {
                alpha_micro: 5,
                beta_micro: 2,
            },
        );
        assert_ne!(one.digest(), other.digest());
        assert_eq!(one.digest(), one.clone().digest());
    }
}
