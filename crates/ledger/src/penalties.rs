//! Stepped penalties, proportional to harm (the steps are listed in the crate docs).
//!
//! A node's level is read from its score *after* this epoch's audits, so a node is
//! penalised in the epoch its failures were observed. Slashing is sized by the harm the
//! network can measure, the repair of chunks that corroborated audits found missing,
//! rather than by a fixed fine: a node that lost one chunk pays for one chunk's repair,
//! which is negligible for an honest node hit by bit rot and ruinous only for a node that
//! lost much. Only counted audits (after the auditor quorum and trimming) size a slash,
//! so a lone hostile auditor cannot trigger one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xnode_types::NodeId;

use crate::accounts::Stake;
use crate::fixed::PPM;
use crate::params::LedgerParams;
use crate::reputation::{AuditTally, ReputationState};

/// The step a node is on this epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PenaltyLevel {
    /// Score at or above threshold 1.
    None,
    /// Score below threshold 1: reported to the operator, no loss.
    Warning,
    /// Score below threshold 2: rewards from payments scaled by the score.
    Reduced,
    /// Score below threshold 3, or bond exhausted: no reward, to be removed from placement.
    Ejected,
}

/// Why a node was ejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EjectionReason {
    /// The score fell below threshold 3.
    LowScore,
    /// Slashing left less than the minimum bond.
    BondExhausted,
}

/// What one node suffers this epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Penalty {
    /// The penalised node.
    pub node: NodeId,
    /// The node's score after this epoch's audits (ppm).
    pub score_ppm: u64,
    /// The step the node is on.
    pub level: PenaltyLevel,
    /// Set when `level` is [`PenaltyLevel::Ejected`].
    pub ejection: Option<EjectionReason>,
    /// Failed audits that counted this epoch.
    pub counted_failures: u64,
    /// Taken from the bond: `min(bond, failures × repair_price.cost(chunk_size_bytes))`.
    pub slashed: u128,
    /// The bond left after the slash (0 for a node without a stake record).
    pub bond_after: u128,
    /// Tenant payments not passed on to the operator because of its level.
    pub reward_withheld: u128,
}

impl Penalty {
    /// Whether the node suffers anything (only such penalties are listed in the output).
    pub fn is_material(&self) -> bool {
        self.level != PenaltyLevel::None || self.slashed > 0 || self.reward_withheld > 0
    }

    /// The fraction (ppm) of its tenant payments the operator keeps at its level.
    pub fn payment_share_ppm(&self) -> u64 {
        match self.level {
            PenaltyLevel::None | PenaltyLevel::Warning => PPM,
            PenaltyLevel::Reduced => self.score_ppm,
            PenaltyLevel::Ejected => 0,
        }
    }
}

/// Assesses every staked or audited node.
pub(crate) fn assess(
    stakes: &BTreeMap<NodeId, &Stake>,
    tallies: &BTreeMap<NodeId, AuditTally>,
    reputation: &ReputationState,
    params: &LedgerParams,
) -> BTreeMap<NodeId, Penalty> {
    let mut nodes: Vec<&NodeId> = stakes.keys().chain(tallies.keys()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
        .into_iter()
        .map(|node| {
            let score = reputation.get(node, &params.reputation).score_ppm();
            let failures = tallies.get(node).map_or(0, |tally| tally.counted_failures);
            let penalty = assess_node(*node, score, failures, stakes.get(node).copied(), params);
            (*node, penalty)
        })
        .collect()
}

fn assess_node(
    node: NodeId,
    score_ppm: u64,
    counted_failures: u64,
    stake: Option<&Stake>,
    params: &LedgerParams,
) -> Penalty {
    let thresholds = &params.penalties;
    let bond = stake.map_or(0, |stake| stake.bonded);
    let repair_per_failure = thresholds
        .repair_price
        .cost(u128::from(thresholds.chunk_size_bytes));
    let slashed = repair_per_failure
        .saturating_mul(u128::from(counted_failures))
        .min(bond);
    let bond_after = bond - slashed;
    let bond_exhausted = stake.is_some() && bond_after < thresholds.min_bond;
    let (level, ejection) = if score_ppm < thresholds.eject_below_ppm {
        (PenaltyLevel::Ejected, Some(EjectionReason::LowScore))
    } else if bond_exhausted {
        (PenaltyLevel::Ejected, Some(EjectionReason::BondExhausted))
    } else if score_ppm < thresholds.reduce_below_ppm {
        (PenaltyLevel::Reduced, None)
    } else if score_ppm < thresholds.warn_below_ppm {
        (PenaltyLevel::Warning, None)
    } else {
        (PenaltyLevel::None, None)
    };
    Penalty {
        node,
        score_ppm,
        level,
        ejection,
        counted_failures,
        slashed,
        bond_after,
        reward_withheld: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xnode_types::SecretKey;

    fn stake(bonded: u128) -> Stake {
        Stake {
            operator: SecretKey::from_seed(&[1; 32]).unwrap().node_id(),
            payout_address: [1; 20],
            bonded,
            unbonding_at: None,
        }
    }

    #[test]
    fn steps_follow_the_thresholds() {
        let params = LedgerParams::with_defaults("t");
        let node = stake(0).operator;
        let bonded = stake(u128::MAX);
        let level = |score| assess_node(node, score, 0, Some(&bonded), &params).level;
        assert_eq!(level(1_000_000), PenaltyLevel::None);
        assert_eq!(level(989_999), PenaltyLevel::Warning);
        assert_eq!(level(974_999), PenaltyLevel::Reduced);
        assert_eq!(level(959_999), PenaltyLevel::Ejected);
    }

    #[test]
    fn slash_is_the_repair_cost_capped_at_the_bond() {
        let params = LedgerParams::with_defaults("t");
        let per_chunk = params.penalties.repair_price.cost(1024 * 1024);
        assert_eq!(per_chunk, 3_145_728_000_000);
        let node = stake(0).operator;
        let rich = stake(per_chunk * 100);
        let penalty = assess_node(node, PPM, 3, Some(&rich), &params);
        assert_eq!(penalty.slashed, per_chunk * 3);
        assert_eq!(penalty.level, PenaltyLevel::None);

        let poor = stake(per_chunk * 2);
        let penalty = assess_node(node, PPM, 3, Some(&poor), &params);
        assert_eq!(penalty.slashed, per_chunk * 2);
        assert_eq!(penalty.bond_after, 0);
        assert_eq!(penalty.ejection, Some(EjectionReason::BondExhausted));

        let unstaked = assess_node(node, PPM, 3, None, &params);
        assert_eq!((unstaked.slashed, unstaked.level), (0, PenaltyLevel::None));
    }
}
