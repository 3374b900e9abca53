//! Exit clearances on the node: a member's answer to a clearance request (signed only if
//! its own records clear the exit, see [`crate::exit`]), and the collection of the
//! committee's signatures for an operator (`POST /v1/ledger/exit-clearance`).

use std::collections::{BTreeMap, BTreeSet};

use alloy::primitives::{Address, Bytes};
use serde::{Deserialize, Serialize};
use xnode_ledger::{Epoch, ExitCheck, NodeDeparture};
use xnode_types::{NodeId, lock, unix_ms};

use super::{PEER_TIMEOUT, Settlement, error_chain};

/// Clearance collections a node carries out at once (each asks every committee member).
const MAX_EXIT_COLLECTIONS: usize = 2;

/// The exit side of [`Settlement`]: the permits of clearance collections in flight.
#[derive(Debug)]
pub(super) struct ExitCollections {
    in_flight: tokio::sync::Semaphore,
}

impl Default for ExitCollections {
    fn default() -> Self {
        Self {
            in_flight: tokio::sync::Semaphore::new(MAX_EXIT_COLLECTIONS),
        }
    }
}
use crate::close::EpochStatus;
use crate::error::CloseError;
use crate::exit::{ExitClearanceTerms, ExitClearanceVote, sign_exit_clearance};
use crate::proto::{SettleRequest, SettleResponse};
use crate::slash::SlashStatus;

/// The committee's signatures over one exit clearance, as collected by one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitClearance {
    /// What they sign.
    pub terms: ExitClearanceTerms,
    /// The members that signed, ascending (the order `Committee.checkQuorum` requires).
    pub signers: Vec<Address>,
    /// Their signatures, in the same order.
    pub signatures: Vec<Bytes>,
    /// How many signatures the contract needs.
    pub threshold: usize,
    /// Why this node refused, if it is a member and did.
    pub own_refusal: Option<String>,
}

impl ExitClearance {
    /// Whether enough members signed for `Staking.withdrawCleared`.
    pub fn is_complete(&self) -> bool {
        self.signatures.len() >= self.threshold
    }
}

impl Settlement {
    /// A member's answer to an exit clearance request; the refusal is logged.
    pub(super) fn answer_exit_clearance(
        &self,
        terms: &ExitClearanceTerms,
    ) -> Option<ExitClearanceVote> {
        match self.sign_asked_exit(terms) {
            Ok(vote) => Some(vote),
            Err(e) => {
                tracing::info!(operator = %terms.operator, quiet_epoch = terms.quiet_epoch.0, error = %error_chain(&e), "refused to clear an exit");
                None
            }
        }
    }

    /// Signs `terms` if this member's own records clear the exit.
    fn sign_asked_exit(&self, terms: &ExitClearanceTerms) -> Result<ExitClearanceVote, CloseError> {
        if !self.is_member() {
            return Err(CloseError::NotMember);
        }
        let quiet = terms.quiet_epoch.0;
        let record = self.epoch_record(quiet)?;
        let posted = record
            .as_ref()
            .is_some_and(|r| r.status == EpochStatus::Posted);
        let (activity, penalties) = record
            .map(|r| {
                (
                    r.activity.into_iter().collect::<BTreeMap<_, _>>(),
                    r.penalties,
                )
            })
            .unwrap_or_default();
        // The bindings as they stand now: an exit is about the operator's nodes today.
        let departures: Vec<NodeDeparture> = self
            .operators(u64::MAX)
            .iter()
            .filter(|o| o.payout == terms.operator)
            .map(|o| NodeDeparture {
                node: o.node,
                gone_since: self
                    .source
                    .departed_at_ms(&o.node)
                    .map(|ms| Epoch(ms / self.epoch_ms)),
            })
            .collect();
        let nodes: BTreeSet<NodeId> = departures.iter().map(|d| d.node).collect();
        let unpaid_slashes = self.unpaid_slashes(&nodes, quiet)?;
        let own = ExitCheck {
            quiet_epoch: terms.quiet_epoch,
            quiet_epoch_posted: posted,
            departures: &departures,
            activity: &activity,
            penalties: &penalties,
            unpaid_slashes,
        };
        // The chain id is known once this node computed a root, which a posted record
        // implies.
        let chain_id = lock(&self.state)
            .chain_id
            .ok_or(CloseError::ChainValue("chain id not read yet"))?;
        let staking_domain = self.staking_domain(chain_id)?;
        Ok(sign_exit_clearance(
            &own,
            terms,
            unix_ms() / 1000,
            &staking_domain,
            &self.signer,
        )?)
    }

    /// Slashes of `nodes`, in this node's posted tables of the lookback up to `quiet`,
    /// that are not taken yet: pending or failed (an expired one can no longer be taken,
    /// and one with no bond left took nothing because there was nothing).
    fn unpaid_slashes(&self, nodes: &BTreeSet<NodeId>, quiet: u64) -> Result<u128, CloseError> {
        let mut unpaid: u128 = 0;
        for epoch in quiet.saturating_sub(self.config.lookback_epochs)..=quiet {
            let owed = self.own_slashes(epoch)?;
            let outcomes = self.slashes(epoch)?;
            for (node, terms) in owed.iter().filter(|(node, _)| nodes.contains(node)) {
                let status = outcomes
                    .as_ref()
                    .and_then(|o| o.slashes.iter().find(|s| s.node == *node))
                    .map(|s| s.status);
                if matches!(
                    status,
                    None | Some(SlashStatus::Pending) | Some(SlashStatus::Failed)
                ) {
                    unpaid = unpaid.saturating_add(terms.amount);
                }
            }
        }
        Ok(unpaid)
    }

    /// Collects the committee's signatures over `terms`: this node's (if it is a member
    /// and its records clear the exit) and every other member's, each checked and signed
    /// by the address configured for that member, ascending by signer.
    pub async fn collect_exit_clearance(
        &self,
        terms: ExitClearanceTerms,
    ) -> Result<ExitClearance, CloseError> {
        // Anyone may ask (the route is unsigned), and each collection asks every member:
        // a few at a time, so a flood of asks cannot turn this node into an amplifier.
        let Ok(_permit) = self.exits.in_flight.try_acquire() else {
            return Err(CloseError::Busy("exit clearance collections"));
        };
        let chain_id = match self.client.as_ref() {
            Some(client) => self.chain_id(client).await?,
            None => return Err(CloseError::ChainValue("no chain client")),
        };
        let staking_domain = self.staking_domain(chain_id)?;
        let mut signatures = BTreeMap::new();
        let mut own_refusal = None;
        if self.is_member() {
            match self.sign_asked_exit(&terms) {
                Ok(vote) => {
                    signatures.insert(vote.signer, vote.signature);
                }
                Err(e) => own_refusal = Some(error_chain(&e)),
            }
        }
        let members = self.other_members();
        let answers = self
            .endpoint
            .call_many(
                &members,
                SettleRequest::ExitClearance { terms },
                PEER_TIMEOUT,
            )
            .await;
        let mut answered = BTreeSet::new();
        for (peer, answer) in answers {
            let Ok(SettleResponse::ExitClearance(Some(vote))) = answer else {
                continue;
            };
            // Signed by the committee address configured for this peer, so one member
            // cannot relay another's signature as its own.
            let expected = self.config.committee.iter().find(|m| m.node == peer);
            if expected.is_none_or(|m| m.address != vote.signer) || !answered.insert(peer) {
                tracing::warn!(%peer, "a member answered an exit clearance signed by another address");
                continue;
            }
            match vote.check(&terms, &staking_domain, &self.committee) {
                Ok(()) => {
                    signatures.insert(vote.signer, vote.signature);
                }
                Err(e) => tracing::warn!(%peer, error = %e, "refused an exit clearance signature"),
            }
        }
        Ok(ExitClearance {
            terms,
            signers: signatures.keys().copied().collect(),
            signatures: signatures.into_values().collect(),
            threshold: self.committee.threshold(),
            own_refusal,
        })
    }
}
