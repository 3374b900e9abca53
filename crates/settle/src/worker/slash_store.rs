//! Taking each posted epoch's slashes on chain (see [`crate::slash`] for the rules), and
//! the record of each slash's outcome in the database.
//!
//! Every member follows the posted epochs in its lookback. For each slash its own table
//! asks for, it first looks on chain (`Staking.slashedIn`): a slash already taken is
//! recorded and left alone, so a restart or a second member never submits it again. The
//! member that posted the root (the same rotation) submits; the others wait
//! `backup_post_after` from when they first saw the epoch posted, then submit too. Before
//! submitting, the submitter skips an operator with nothing bonded or unbonding (nothing to
//! take) and a slash past its deadline, then collects the threshold's signatures: its own
//! and the other members', each of which signs only if its own table agrees. A transaction
//! that fails is tried again in later rounds, at most [`MAX_SLASH_ATTEMPTS`] times.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use alloy::primitives::{Address, Bytes};
use alloy::sol_types::{Eip712Domain, SolEvent};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry as MetricsRegistry;
use xnode_chain::{DomainName, Staking, domain};
use xnode_db::Table;
use xnode_ledger::Epoch;
use xnode_types::{NodeId, lock};

use super::{MAX_RECORD_BYTES, MINE_TIMEOUT, PEER_TIMEOUT, Settlement, epoch_key, error_chain};
use crate::ChainClient;
use crate::close::EpochStatus;
use crate::error::{CloseError, SlashError};
use crate::proto::{SettleRequest, SettleResponse};
use crate::slash::{
    EpochSlashes, MAX_SLASH_ATTEMPTS, SlashOutcome, SlashStatus, SlashTerms, SlashVote, sign_slash,
    slashes_of,
};

/// Each posted epoch's slashes ([`EpochSlashes`]), by big-endian epoch.
pub const SETTLE_SLASHES: Table = Table("settle_slashes");

/// Counters of the slashes this node submitted, under the `settle_` prefix.
#[derive(Clone, Debug, Default)]
pub struct SlashMetrics {
    /// `Staking.slash` transactions this node got mined.
    pub submitted: Counter,
    /// `Staking.slash` transactions this node sent that failed.
    pub failed: Counter,
    /// Slashes skipped because the operator had nothing left to take.
    pub skipped_no_bond: Counter,
}

impl SlashMetrics {
    /// Registers these counters (clones share the values) in `registry`.
    pub fn register(&self, registry: &mut MetricsRegistry) {
        let r = registry.sub_registry_with_prefix("settle");
        r.register(
            "slashes_submitted",
            "Staking.slash transactions this node got mined",
            self.submitted.clone(),
        );
        r.register(
            "slashes_failed",
            "Staking.slash transactions this node sent that failed or reverted",
            self.failed.clone(),
        );
        r.register(
            "slashes_skipped_no_bond",
            "Slashes not submitted because the operator had nothing bonded or unbonding",
            self.skipped_no_bond.clone(),
        );
    }
}

/// The slashing side of [`Settlement`]: its metrics and when each epoch was first seen
/// posted (the backup submitters' wait starts there).
#[derive(Debug, Default)]
pub(super) struct Slashing {
    pub(super) metrics: SlashMetrics,
    posted_seen_ms: Mutex<BTreeMap<u64, u64>>,
}

impl Settlement {
    /// The counters of slashes this node submitted, for the node's metrics registry.
    pub fn slash_metrics(&self) -> &SlashMetrics {
        &self.slashing.metrics
    }

    /// The recorded slashes of a posted epoch on this node, if it has any.
    pub fn slashes(&self, epoch: u64) -> Result<Option<EpochSlashes>, CloseError> {
        match self.db.get(SETTLE_SLASHES, &epoch_key(epoch))? {
            Some(bytes) => Ok(Some(xnode_wire::decode(&bytes, MAX_RECORD_BYTES)?)),
            None => Ok(None),
        }
    }

    pub(super) fn staking_domain(&self, chain_id: u64) -> Result<Eip712Domain, CloseError> {
        let staking = self
            .chain
            .staking_contract
            .ok_or(CloseError::ChainValue("no staking contract"))?;
        Ok(domain(DomainName::Staking, chain_id, staking))
    }

    fn slash_extra_seconds(&self) -> u64 {
        self.config.post_deadline.as_secs()
    }

    /// The slashes this node's own posted record of `epoch` asks for.
    pub(super) fn own_slashes(&self, epoch: u64) -> Result<Vec<(NodeId, SlashTerms)>, CloseError> {
        let Some(record) = self.epoch_record(epoch)? else {
            return Ok(Vec::new());
        };
        let operators = self.operators(self.binding_cut_ms(Epoch(epoch)));
        Ok(slashes_of(&record, &operators, self.slash_extra_seconds()))
    }

    /// A member's answer to a slash signature request: a signature only if its own posted
    /// table takes exactly these terms (see [`sign_slash`]); the refusal is logged.
    pub(super) fn answer_slash(&self, terms: &SlashTerms) -> Option<SlashVote> {
        match self.sign_asked_slash(terms) {
            Ok(vote) => Some(vote),
            Err(e) => {
                tracing::info!(epoch = terms.epoch.0, operator = %terms.operator, error = %error_chain(&e), "refused to sign a slash");
                None
            }
        }
    }

    fn sign_asked_slash(&self, terms: &SlashTerms) -> Result<SlashVote, CloseError> {
        if !self.is_member() {
            return Err(SlashError::NotPosted(terms.epoch.0).into());
        }
        let own: Vec<SlashTerms> = self
            .own_slashes(terms.epoch.0)?
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        if own.is_empty()
            && !self
                .epoch_record(terms.epoch.0)?
                .is_some_and(|r| r.status == EpochStatus::Posted)
        {
            return Err(SlashError::NotPosted(terms.epoch.0).into());
        }
        // The chain id is known once this node computed a root, which a posted record
        // implies.
        let chain_id = lock(&self.state)
            .chain_id
            .ok_or(CloseError::ChainValue("chain id not read yet"))?;
        let staking_domain = self.staking_domain(chain_id)?;
        Ok(sign_slash(&own, terms, &staking_domain, &self.signer)?)
    }

    /// One pass over the due epochs' slashes. Failures are recorded per slash and logged;
    /// they never hold back closing epochs.
    pub(super) async fn slash_round(&self, due: &[Epoch], now_ms: u64) {
        let (Some(client), Some(staking)) = (&self.client, self.chain.staking_contract) else {
            return;
        };
        if !self.is_member() {
            return;
        }
        if let Some(oldest) = due.first() {
            lock(&self.slashing.posted_seen_ms).retain(|epoch, _| *epoch >= oldest.0);
        }
        for epoch in due {
            if let Err(e) = self.slash_epoch(client, staking, *epoch, now_ms).await {
                tracing::warn!(epoch = epoch.0, error = %error_chain(&e), "taking the epoch's slashes failed this round");
            }
        }
    }

    async fn slash_epoch(
        &self,
        client: &ChainClient,
        staking: Address,
        epoch: Epoch,
        now_ms: u64,
    ) -> Result<(), CloseError> {
        let Some(record) = self
            .epoch_record(epoch.0)?
            .filter(|r| r.status == EpochStatus::Posted)
        else {
            return Ok(());
        };
        let operators = self.operators(self.binding_cut_ms(epoch));
        let wanted = slashes_of(&record, &operators, self.slash_extra_seconds());
        if wanted.is_empty() {
            return Ok(());
        }
        let stored = self.slashes(epoch.0)?;
        let mut slashes = stored.clone().unwrap_or(EpochSlashes {
            epoch: epoch.0,
            slashes: Vec::new(),
        });
        for (node, terms) in &wanted {
            if !slashes
                .slashes
                .iter()
                .any(|s| s.terms.operator == terms.operator)
            {
                slashes.slashes.push(SlashOutcome::pending(*node, *terms));
            }
        }
        if slashes.slashes.iter().all(SlashOutcome::is_final) {
            return self.store_slashes(stored.as_ref(), &slashes);
        }
        let seen = *lock(&self.slashing.posted_seen_ms)
            .entry(epoch.0)
            .or_insert(now_ms);
        let backup_ms =
            u64::try_from(self.config.backup_post_after.as_millis()).unwrap_or(u64::MAX);
        let my_turn = record.poster == Some(self.signer.address())
            || now_ms.saturating_sub(seen) >= backup_ms;
        let mut result = Ok(());
        for outcome in slashes.slashes.iter_mut().filter(|s| !s.is_final()) {
            if let Err(e) = self
                .advance_slash(client, staking, outcome, my_turn, now_ms)
                .await
            {
                outcome.error = Some(error_chain(&e));
                result = Err(e);
            }
        }
        self.store_slashes(stored.as_ref(), &slashes)?;
        result
    }

    fn store_slashes(
        &self,
        stored: Option<&EpochSlashes>,
        slashes: &EpochSlashes,
    ) -> Result<(), CloseError> {
        if stored == Some(slashes) {
            return Ok(());
        }
        self.db.put(
            SETTLE_SLASHES,
            &epoch_key(slashes.epoch),
            &xnode_wire::encode(slashes)?,
        )?;
        Ok(())
    }

    /// One step of one pending slash: notes it if already on chain; on this node's turn,
    /// skips it if there is nothing to take or its deadline passed, else collects the
    /// signatures and submits it.
    async fn advance_slash(
        &self,
        client: &ChainClient,
        staking: Address,
        outcome: &mut SlashOutcome,
        my_turn: bool,
        now_ms: u64,
    ) -> Result<(), CloseError> {
        let terms = outcome.terms;
        let done = self
            .view(
                client,
                staking,
                Staking::slashedInCall {
                    _0: terms.operator,
                    _1: terms.epoch.0,
                },
                "slashedIn",
            )
            .await?;
        if done {
            outcome.status = SlashStatus::TakenByAnother;
            outcome.error = None;
            return Ok(());
        }
        if !my_turn {
            return Ok(());
        }
        if now_ms / 1000 > terms.deadline {
            outcome.status = SlashStatus::Expired;
            return Ok(());
        }
        let bonded = self
            .view(
                client,
                staking,
                Staking::bondedCall(terms.operator),
                "bonded",
            )
            .await?;
        let unbonding = self
            .view(
                client,
                staking,
                Staking::unbondingCall(terms.operator),
                "unbonding",
            )
            .await?;
        if bonded.is_zero() && unbonding.amount.is_zero() {
            outcome.status = SlashStatus::NoBond;
            self.slashing.metrics.skipped_no_bond.inc();
            tracing::info!(epoch = terms.epoch.0, operator = %terms.operator, "skipped a slash: nothing bonded or unbonding left");
            return Ok(());
        }
        let chain_id = self.chain_id(client).await?;
        let staking_domain = self.staking_domain(chain_id)?;
        let signatures = self.slash_signatures(&terms, &staking_domain).await?;
        if signatures.len() < self.committee.threshold() {
            // Members that have not posted the epoch yet refuse; the next round asks again
            // (bounded by the deadline and the lookback).
            outcome.error = Some(format!(
                "{} of {} signatures",
                signatures.len(),
                self.committee.threshold()
            ));
            return Ok(());
        }
        let calldata = terms.calldata(signatures);
        match client.send(Some(staking), calldata, MINE_TIMEOUT).await {
            Ok(mined) => {
                let taken = mined
                    .logs
                    .iter()
                    .filter(|log| log.address == staking)
                    .filter_map(|log| {
                        Staking::Slashed::decode_raw_log(log.topics.iter().copied(), &log.data).ok()
                    })
                    .find(|event| event.operator == terms.operator && event.epoch == terms.epoch.0)
                    .and_then(|event| u128::try_from(event.taken).ok());
                outcome.status = SlashStatus::Taken;
                outcome.tx_hash = Some(mined.hash);
                outcome.gas_used = Some(mined.gas_used);
                outcome.taken = taken;
                outcome.error = None;
                self.slashing.metrics.submitted.inc();
                tracing::info!(epoch = terms.epoch.0, operator = %terms.operator, amount = terms.amount, ?taken, tx = %mined.hash, gas = mined.gas_used, "took a slash on chain");
                Ok(())
            }
            Err(e) => {
                outcome.attempts = outcome.attempts.saturating_add(1);
                self.slashing.metrics.failed.inc();
                if outcome.attempts >= MAX_SLASH_ATTEMPTS {
                    outcome.status = SlashStatus::Failed;
                }
                Err(e.into())
            }
        }
    }

    /// This node's signature and the other members' on `terms`, each checked, ascending by
    /// signer (the order the contract checks).
    async fn slash_signatures(
        &self,
        terms: &SlashTerms,
        staking_domain: &Eip712Domain,
    ) -> Result<Vec<Bytes>, CloseError> {
        let own: Vec<SlashTerms> = self
            .own_slashes(terms.epoch.0)?
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let mine = sign_slash(&own, terms, staking_domain, &self.signer)?;
        let mut signatures = BTreeMap::new();
        signatures.insert(mine.signer, mine.signature);
        let members = self.other_members();
        let answers = self
            .endpoint
            .call_many(
                &members,
                SettleRequest::SlashSignature { terms: *terms },
                PEER_TIMEOUT,
            )
            .await;
        let mut answered = BTreeSet::new();
        for (peer, answer) in answers {
            let Ok(SettleResponse::SlashSignature(Some(vote))) = answer else {
                continue;
            };
            // Signed by the committee address configured for this peer, so one member
            // cannot relay another's signature as its own.
            let expected = self.config.committee.iter().find(|m| m.node == peer);
            if expected.is_none_or(|m| m.address != vote.signer) || !answered.insert(peer) {
                tracing::warn!(%peer, "a member answered a slash signed by another address");
                continue;
            }
            match vote.check(terms, staking_domain, &self.committee) {
                Ok(()) => {
                    signatures.insert(vote.signer, vote.signature);
                }
                Err(e) => tracing::warn!(%peer, error = %e, "refused a slash signature"),
            }
        }
        Ok(signatures.into_values().collect())
    }
}
