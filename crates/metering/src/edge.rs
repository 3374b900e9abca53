//! The tenant's edge's check of a provider's receipt proposal.
//!
//! The edge countersigns a proposal only if it is this network's, really signed by the
//! provider that sent it, for a tenant that granted this edge the right to countersign
//! for the proposal's epoch, and claims no more than the edge itself observed of that
//! provider's service, plus a [`Tolerance`]. An over-claim is refused with the largest
//! total the edge would accept, so an honest provider whose count ran slightly ahead
//! (a request the edge gave up on, clocks a little apart) signs that total and is paid
//! for it, and an inflating provider is paid for what the edge saw, never the inflation.

use serde::{Deserialize, Serialize};
use xnode_ledger::{CountersignGrant, RECEIPT_VERSION, Receipt};
use xnode_types::{NodeId, SecretKey};

/// How far a provider's claim may exceed what the edge observed: `observed × (1 + ppm /
/// 10^6) + slack` units, rounded down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tolerance {
    /// Relative allowance in parts per million of the observed total.
    pub ppm: u64,
    /// Absolute allowance in units, for counts too small for a relative one.
    pub slack: u64,
}

impl Default for Tolerance {
    /// 2 % plus 16 units: requests the edge timed out on but the provider served, and
    /// storage byte-hours sampled at slightly different instants, stay inside it.
    fn default() -> Self {
        Self {
            ppm: 20_000,
            slack: 16,
        }
    }
}

impl Tolerance {
    /// The largest total the edge accepts having observed `observed`.
    pub fn allowed(&self, observed: u64) -> u64 {
        let extra = u128::from(observed) * u128::from(self.ppm) / 1_000_000;
        let extra = u64::try_from(extra).unwrap_or(u64::MAX);
        observed.saturating_add(extra).saturating_add(self.slack)
    }
}

/// Why the edge refused to countersign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The proposal names another network or an unknown receipt version.
    Foreign,
    /// The proposal does not name the node that sent it, or its signature fails.
    BadProviderSignature,
    /// This node holds no grant of the tenant covering the proposal's epoch.
    NoGrant,
    /// The proposal claims more than the edge observed plus the tolerance.
    OverClaim,
    /// The edge already countersigned a higher total for this counter.
    Stale,
    /// The edge could not read its own records; try again later.
    Unavailable,
}

/// The edge's answer to one proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The receipt, countersigned under the tenant's grant.
    Countersign(Box<Receipt>),
    /// No countersignature; `acceptable` is the largest total the edge would sign now.
    Refuse {
        /// Why.
        refusal: Refusal,
        /// The largest total acceptable, when the refusal is about the amount.
        acceptable: Option<u64>,
    },
}

/// The edge's side of the exchange for one network.
#[derive(Debug)]
pub struct EdgeCheck {
    network: String,
    tolerance: Tolerance,
}

impl EdgeCheck {
    /// A check for `network` with `tolerance`.
    pub fn new(network: &str, tolerance: Tolerance) -> Self {
        Self {
            network: network.to_owned(),
            tolerance,
        }
    }

    /// Decides on `proposal`, sent by `from`, given what this edge (`edge`) observed of the
    /// same counter, the highest total it countersigned for it already, and the tenant's
    /// grant to this edge (if it holds one).
    pub fn decide(
        &self,
        edge: &SecretKey,
        from: &NodeId,
        proposal: Receipt,
        observed: u64,
        countersigned: Option<u64>,
        grant: Option<&CountersignGrant>,
    ) -> Decision {
        let refuse = |refusal, acceptable| Decision::Refuse {
            refusal,
            acceptable,
        };
        let body = &proposal.body;
        if body.v != RECEIPT_VERSION || body.network != self.network {
            return refuse(Refusal::Foreign, None);
        }
        let key_matches = NodeId::from_public_key(&body.provider_key)
            .is_ok_and(|derived| derived == body.provider);
        if body.provider != *from
            || !key_matches
            || !body
                .provider_key
                .verify(&body.signing_text(), &proposal.provider_sig)
        {
            return refuse(Refusal::BadProviderSignature, None);
        }
        let Some(grant) = grant.filter(|grant| {
            grant.body.tenant == body.tenant
                && grant.body.delegate == edge.node_id()
                && grant.body.network == self.network
                && grant.body.covers(body.epoch)
        }) else {
            return refuse(Refusal::NoGrant, None);
        };
        let allowed = self.tolerance.allowed(observed);
        if body.cumulative > allowed {
            return refuse(Refusal::OverClaim, Some(allowed));
        }
        if countersigned.is_some_and(|done| body.cumulative < done) {
            return refuse(Refusal::Stale, countersigned);
        }
        let grant = grant.clone();
        Decision::Countersign(Box::new(proposal.countersign_as_delegate(edge, grant)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CounterKey, propose};
    use xnode_ledger::{Epoch, GRANT_VERSION, GrantBody, Resource};

    struct Parties {
        provider: SecretKey,
        tenant: SecretKey,
        edge: SecretKey,
        grant: CountersignGrant,
    }

    fn parties() -> Parties {
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
            until_epoch: Epoch(100),
        }
        .sign(&tenant);
        Parties {
            provider,
            tenant,
            edge,
            grant,
        }
    }

    fn counter(p: &Parties) -> CounterKey {
        CounterKey {
            tenant: p.tenant.public(),
            provider: p.provider.node_id(),
            resource: Resource::FunctionRequests,
            epoch: Epoch(7),
        }
    }

    #[test]
    fn an_honest_proposal_is_countersigned_and_verifies_for_the_ledger() {
        let p = parties();
        let check = EdgeCheck::new("net", Tolerance::default());
        let proposal = propose("net", &p.provider, counter(&p), 100, 1);
        let decision = check.decide(
            &p.edge,
            &p.provider.node_id(),
            proposal,
            100,
            None,
            Some(&p.grant),
        );
        let Decision::Countersign(receipt) = decision else {
            panic!("refused: {decision:?}");
        };
        let verified = receipt.verify("net").unwrap();
        assert_eq!(verified.body().cumulative, 100);
    }

    #[test]
    fn over_claims_are_refused_with_the_acceptable_total() {
        let p = parties();
        let tolerance = Tolerance {
            ppm: 20_000,
            slack: 1,
        };
        let check = EdgeCheck::new("net", tolerance);
        // Observed 100: 102 + 1 is the most the edge signs.
        let at_limit = propose("net", &p.provider, counter(&p), 103, 1);
        assert!(matches!(
            check.decide(
                &p.edge,
                &p.provider.node_id(),
                at_limit,
                100,
                None,
                Some(&p.grant)
            ),
            Decision::Countersign(_)
        ));
        let inflated = propose("net", &p.provider, counter(&p), 150, 2);
        assert_eq!(
            check.decide(
                &p.edge,
                &p.provider.node_id(),
                inflated,
                100,
                None,
                Some(&p.grant)
            ),
            Decision::Refuse {
                refusal: Refusal::OverClaim,
                acceptable: Some(103)
            }
        );
    }

    #[test]
    fn forged_foreign_ungranted_and_stale_proposals_are_refused() {
        let p = parties();
        let check = EdgeCheck::new("net", Tolerance::default());
        let from = p.provider.node_id();
        let refusal = |decision: Decision| match decision {
            Decision::Refuse { refusal, .. } => refusal,
            Decision::Countersign(_) => panic!("countersigned"),
        };

        // Signed by someone else in the provider's name.
        let mut forged = propose("net", &p.provider, counter(&p), 10, 1);
        forged.provider_sig = p.edge.sign(&forged.body.signing_text());
        assert_eq!(
            refusal(check.decide(&p.edge, &from, forged, 10, None, Some(&p.grant))),
            Refusal::BadProviderSignature
        );

        // A genuine proposal relayed by another node.
        let relayed = propose("net", &p.provider, counter(&p), 10, 1);
        assert_eq!(
            refusal(check.decide(
                &p.edge,
                &p.tenant.node_id(),
                relayed,
                10,
                None,
                Some(&p.grant)
            )),
            Refusal::BadProviderSignature
        );

        let foreign = propose("other", &p.provider, counter(&p), 10, 1);
        assert_eq!(
            refusal(check.decide(&p.edge, &from, foreign, 10, None, Some(&p.grant))),
            Refusal::Foreign
        );

        let ungranted = propose("net", &p.provider, counter(&p), 10, 1);
        assert_eq!(
            refusal(check.decide(&p.edge, &from, ungranted.clone(), 10, None, None)),
            Refusal::NoGrant
        );
        // A grant to another edge does not let this one sign.
        let other_edge = SecretKey::from_seed(&[5; 32]).unwrap();
        assert_eq!(
            refusal(check.decide(&other_edge, &from, ungranted, 10, None, Some(&p.grant))),
            Refusal::NoGrant
        );

        let stale = propose("net", &p.provider, counter(&p), 5, 1);
        assert_eq!(
            refusal(check.decide(&p.edge, &from, stale, 10, Some(8), Some(&p.grant))),
            Refusal::Stale
        );
    }

    #[test]
    fn tolerance_never_overflows() {
        let t = Tolerance {
            ppm: u64::MAX,
            slack: u64::MAX,
        };
        assert_eq!(t.allowed(u64::MAX), u64::MAX);
        assert_eq!(Tolerance { ppm: 0, slack: 0 }.allowed(7), 7);
    }
}
