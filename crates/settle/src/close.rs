//! One epoch's close as a state machine without I/O: the evidence set a node holds, the
//! root it computed from it, the votes it collected, and the record it keeps.
//!
//! The worker feeds it bundles and votes from the network and asks it what to do; the
//! rules live here so they can be tested without a network:
//!
//! - a new bundle that changes the set drops the computed root (the root follows the set);
//! - a vote for another digest is a dissent and never posted with ours;
//! - nothing is posted below the threshold;
//! - the outcome is an [`EpochRecord`] the node stores, so a restart resumes from it
//!   (a posted epoch is never closed again).

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};
use xnode_chain::SettlementPlan;
use xnode_ledger::{
    Epoch, EpochInput, EpochOutput, Hash, NodeActivity, Penalty, compute_epoch, node_activity,
};
use xnode_types::{NodeId, PublicKeyBytes};
use xnode_wire::Versioned;

use crate::carry::{CarriedReputation, EpochContext};
use crate::error::CloseError;
use crate::{CommitteeConfig, EvidenceSet, QuorumCollector, RootVote, VerifiedBundle, VoteOutcome};

/// The error a superseded epoch's record shows (its status stays what it was).
pub const SUPERSEDED: &str =
    "superseded: a later epoch's root was posted first, and the contract takes epochs in order";

/// Where an epoch's close stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochStatus {
    /// Bundles are being gathered; no root yet.
    Gathering,
    /// A root is computed and this node voted (members) or published (others).
    Voted,
    /// The threshold agreed on this node's root; posting is due.
    Quorum,
    /// The root is on chain.
    Posted,
    /// A later epoch's root reached the chain first, so this one never can (the contract
    /// takes epochs in order); its table pays nothing and its reputation is not carried.
    Superseded,
}

/// One committee vote as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedVote {
    /// The member's committee address.
    pub signer: Address,
    /// The digest it signed.
    pub digest: B256,
    /// The digest of its epoch context.
    pub context: B256,
    /// Whether both are the ones this node computed.
    pub agrees: bool,
}

/// One payout row of the epoch's table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedPayout {
    /// The claiming address.
    pub address: Address,
    /// The claimable amount (base units).
    pub amount: u128,
}

/// One tenant's charge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedCharge {
    /// The tenant.
    pub tenant: PublicKeyBytes,
    /// Taken from its escrow.
    pub charged: u128,
}

/// What a node keeps of an epoch's close, across restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The epoch.
    pub epoch: u64,
    /// Where it stands.
    pub status: EpochStatus,
    /// Bundles in this node's set.
    pub bundles: u64,
    /// The set's digest ([`EvidenceSet::digest`]).
    pub set_digest: Option<Hash>,
    /// The Merkle root of the payout table.
    pub root: Option<B256>,
    /// The EIP-712 digest this node signed (binds the root, total, charges, deadline and
    /// the contract).
    pub digest: Option<B256>,
    /// The deadline of the signatures (Unix seconds).
    pub deadline: u64,
    /// Claimable in total.
    pub total: u128,
    /// The payout table.
    pub payouts: Vec<RecordedPayout>,
    /// The tenants' charges.
    pub charges: Vec<RecordedCharge>,
    /// The valid committee votes seen.
    pub votes: Vec<RecordedVote>,
    /// The member designated to post.
    pub poster: Option<Address>,
    /// The transaction that posted the root, if this node sent it.
    pub tx_hash: Option<B256>,
    /// The last error of the close, if the last round failed.
    pub error: Option<String>,
    /// What the root depends on besides the evidence: the parameters' digest, the
    /// reputation it started from, the reputation it outputs.
    pub context: Option<EpochContext>,
    /// Nodes with a warning, reduced reward, slash or ejection this epoch, by node id.
    pub penalties: Vec<Penalty>,
    /// What each configured operator's node did this epoch (storage byte-hours
    /// countersigned, audits that challenged it), by node id: what an exit clearance
    /// checks (`crate::exit`).
    pub activity: Vec<(NodeId, NodeActivity)>,
}

impl Versioned for EpochRecord {
    const KIND_TAG: u8 = xnode_wire::kinds::SETTLE_EPOCH_RECORD;
    const KIND_NAME: &'static str = "settlement epoch record";
    /// Version 2 added `context`, `penalties`, each vote's context and the `superseded`
    /// status (a new last variant). Version 3 added `activity`.
    const VERSION: u8 = 3;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, xnode_wire::WireError> {
        match version {
            1 => {
                let old: EpochRecordV1 = xnode_wire::decode_body::<Self, _>(body)?;
                Ok(EpochRecordV2::from(old).into())
            }
            2 => {
                let old: EpochRecordV2 = xnode_wire::decode_body::<Self, _>(body)?;
                Ok(old.into())
            }
            _ => Err(xnode_wire::unsupported::<Self>(version)),
        }
    }
}

/// Version 2 of [`EpochRecord`], read back after an upgrade: without `activity`, so an
/// exit cannot be cleared on an epoch closed before it (the activity is unknown).
#[derive(Deserialize)]
struct EpochRecordV2 {
    epoch: u64,
    status: EpochStatus,
    bundles: u64,
    set_digest: Option<Hash>,
    root: Option<B256>,
    digest: Option<B256>,
    deadline: u64,
    total: u128,
    payouts: Vec<RecordedPayout>,
    charges: Vec<RecordedCharge>,
    votes: Vec<RecordedVote>,
    poster: Option<Address>,
    tx_hash: Option<B256>,
    error: Option<String>,
    context: Option<EpochContext>,
    penalties: Vec<Penalty>,
}

impl From<EpochRecordV2> for EpochRecord {
    fn from(old: EpochRecordV2) -> Self {
        Self {
            epoch: old.epoch,
            status: old.status,
            bundles: old.bundles,
            set_digest: old.set_digest,
            root: old.root,
            digest: old.digest,
            deadline: old.deadline,
            total: old.total,
            payouts: old.payouts,
            charges: old.charges,
            votes: old.votes,
            poster: old.poster,
            tx_hash: old.tx_hash,
            error: old.error,
            context: old.context,
            penalties: old.penalties,
            activity: Vec::new(),
        }
    }
}

/// A vote as version 1 of the record kept it.
#[derive(Deserialize)]
struct RecordedVoteV1 {
    signer: Address,
    digest: B256,
    agrees: bool,
}

/// Version 1 of [`EpochRecord`], read back after an upgrade.
#[derive(Deserialize)]
struct EpochRecordV1 {
    epoch: u64,
    status: EpochStatus,
    bundles: u64,
    set_digest: Option<Hash>,
    root: Option<B256>,
    digest: Option<B256>,
    deadline: u64,
    total: u128,
    payouts: Vec<RecordedPayout>,
    charges: Vec<RecordedCharge>,
    votes: Vec<RecordedVoteV1>,
    poster: Option<Address>,
    tx_hash: Option<B256>,
    error: Option<String>,
}

/// Version 1 migrates through version 2, so each version's change is written once.
impl From<EpochRecordV1> for EpochRecordV2 {
    fn from(old: EpochRecordV1) -> Self {
        Self {
            epoch: old.epoch,
            status: old.status,
            bundles: old.bundles,
            set_digest: old.set_digest,
            root: old.root,
            digest: old.digest,
            deadline: old.deadline,
            total: old.total,
            payouts: old.payouts,
            charges: old.charges,
            votes: old
                .votes
                .into_iter()
                .map(|v| RecordedVote {
                    signer: v.signer,
                    digest: v.digest,
                    context: B256::ZERO,
                    agrees: v.agrees,
                })
                .collect(),
            poster: old.poster,
            tx_hash: old.tx_hash,
            error: old.error,
            context: None,
            penalties: Vec::new(),
        }
    }
}

impl EpochRecord {
    /// A fresh record of an epoch being gathered.
    pub fn new(epoch: Epoch) -> Self {
        Self {
            epoch: epoch.0,
            status: EpochStatus::Gathering,
            bundles: 0,
            set_digest: None,
            root: None,
            digest: None,
            deadline: 0,
            total: 0,
            payouts: Vec::new(),
            charges: Vec::new(),
            votes: Vec::new(),
            poster: None,
            tx_hash: None,
            error: None,
            context: None,
            penalties: Vec::new(),
            activity: Vec::new(),
        }
    }
}

/// The root a node computed from its set, with what posting it needs.
#[derive(Clone, Debug)]
struct Computed {
    set_digest: Hash,
    /// The payout address of each operator's node the root was computed with, by node.
    payouts: Vec<(NodeId, [u8; 20])>,
    context: EpochContext,
    output: EpochOutput,
    /// The operators' nodes' activity, for exit clearances.
    activity: Vec<(NodeId, NodeActivity)>,
    plan: SettlementPlan,
    deadline: U256,
    own_vote: Option<RootVote>,
    quorum: QuorumCollector,
}

/// The payout table an epoch's input carries in its stakes, by node.
pub fn payouts_of(input: &EpochInput) -> Vec<(NodeId, [u8; 20])> {
    let mut table: Vec<(NodeId, [u8; 20])> = input
        .stakes
        .iter()
        .map(|s| (s.operator, s.payout_address))
        .collect();
    table.sort();
    table
}

/// One epoch's close on one node.
#[derive(Clone, Debug)]
pub struct EpochClose {
    set: EvidenceSet,
    committee: CommitteeConfig,
    computed: Option<Computed>,
    /// Every member's latest valid vote, kept across recomputations so a vote that
    /// arrived before our root counts once our root matches it.
    votes: BTreeMap<Address, RootVote>,
    posted: Option<Option<B256>>,
    /// A later epoch's root reached the chain first: the contract takes epochs in order
    /// only, so this one can no longer be posted.
    superseded: bool,
    error: Option<String>,
}

impl EpochClose {
    /// A close of `epoch` for `committee`, with no evidence yet.
    pub fn new(epoch: Epoch, committee: CommitteeConfig) -> Self {
        Self {
            set: EvidenceSet::new(epoch),
            committee,
            computed: None,
            votes: BTreeMap::new(),
            posted: None,
            superseded: false,
            error: None,
        }
    }

    /// The epoch.
    pub fn epoch(&self) -> Epoch {
        self.set.epoch()
    }

    /// The evidence held.
    pub fn set(&self) -> &EvidenceSet {
        &self.set
    }

    /// Adds a verified bundle. When it changes the set, the computed root is dropped: the
    /// next round computes and votes again over the larger set.
    pub fn add_bundle(&mut self, bundle: VerifiedBundle) -> bool {
        let changed = self.set.insert(bundle);
        if changed && !self.is_final() {
            self.computed = None;
        }
        changed
    }

    /// Whether a root must be (re)computed: none yet, or the set changed since.
    pub fn needs_root(&self) -> bool {
        !self.is_final()
            && self
                .computed
                .as_ref()
                .is_none_or(|c| c.set_digest != self.set.digest())
    }

    /// Whether the payout table a root was computed with differs from `table` (each
    /// operator's node and its address, by node). Payout bindings are registry entries an
    /// operator may date in the past and publish late, so members that computed before one
    /// reached them hold another table than those after; each recomputes when its table
    /// moves, so all converge on the table every member has once the binding has spread,
    /// instead of splitting their votes for good.
    pub fn payouts_moved(&self, table: &[(NodeId, [u8; 20])]) -> bool {
        !self.is_final()
            && self
                .computed
                .as_ref()
                .is_some_and(|c| c.payouts.as_slice() != table)
    }

    /// Computes the ledger's output over the set and `input` (built by the caller from
    /// [`EvidenceSet::epoch_input`] with the chain's stakes and escrows, the configured
    /// parameters and the reputation carried from `previous_epoch`), the digest to sign
    /// for the settlement contract and the epoch's context. A member signs both with
    /// `signer`; a node that is not a member passes `None` and only follows.
    pub fn compute_root(
        &mut self,
        input: &EpochInput,
        previous_epoch: Option<u64>,
        settlement_domain: &alloy::sol_types::Eip712Domain,
        deadline: U256,
        signer: Option<&PrivateKeySigner>,
    ) -> Result<B256, CloseError> {
        let output = compute_epoch(input)?;
        let operators: Vec<NodeId> = input.stakes.iter().map(|s| s.operator).collect();
        let activity = node_activity(input.epoch, &operators, &input.receipts, &input.audits)
            .into_iter()
            .collect();
        let plan = SettlementPlan::from_epoch(&output)?;
        let digest = plan.digest(settlement_domain, deadline);
        let epoch = self.epoch();
        let context = EpochContext {
            epoch,
            params_digest: input.params.digest(),
            previous_epoch,
            previous_reputation: input.reputation.digest(),
            reputation: output.reputation.digest(),
        };
        let mut quorum =
            QuorumCollector::new(self.committee.clone(), epoch, digest, context.digest());
        let own_vote = match signer {
            Some(signer) if self.committee.is_member(&signer.address()) => {
                let vote = RootVote::sign(signer, epoch, digest, context.digest())?;
                self.votes.insert(vote.signer, vote.clone());
                Some(vote)
            }
            _ => None,
        };
        for vote in self.votes.values() {
            // Votes were checked when they arrived; one that no longer fits is skipped.
            let _ = quorum.add(vote);
        }
        self.computed = Some(Computed {
            set_digest: self.set.digest(),
            payouts: payouts_of(input),
            context,
            output,
            activity,
            plan,
            deadline,
            own_vote,
            quorum,
        });
        Ok(digest)
    }

    /// This node's current vote, to serve to the other members.
    pub fn own_vote(&self) -> Option<&RootVote> {
        self.computed.as_ref().and_then(|c| c.own_vote.as_ref())
    }

    /// Checks and keeps a member's vote (see [`QuorumCollector::add`]). Before this node
    /// computed a root, the vote is checked against the committee alone and kept.
    pub fn add_vote(&mut self, vote: RootVote) -> Result<VoteOutcome, CloseError> {
        let outcome = match &mut self.computed {
            Some(computed) => computed.quorum.add(&vote)?,
            None => {
                // Check the vote as a collector for a digest nobody signs would: every
                // check but agreement.
                let mut probe = QuorumCollector::new(
                    self.committee.clone(),
                    self.epoch(),
                    B256::ZERO,
                    B256::ZERO,
                );
                probe.add(&vote)?;
                VoteOutcome::Dissent
            }
        };
        self.votes.insert(vote.signer, vote);
        Ok(outcome)
    }

    /// Whether the threshold agrees on this node's root.
    pub fn has_quorum(&self) -> bool {
        self.computed
            .as_ref()
            .is_some_and(|c| c.quorum.has_quorum())
    }

    /// The member designated to post, once the threshold agrees.
    pub fn poster(&self) -> Option<Address> {
        self.computed.as_ref().and_then(|c| c.quorum.poster())
    }

    /// The `postRoot` call with the agreeing signatures, ascending by signer; refused
    /// below the threshold.
    pub fn post_calldata(&self) -> Result<Bytes, CloseError> {
        let Some(computed) = &self.computed else {
            return Err(CloseError::Committee(
                crate::CommitteeError::BelowThreshold {
                    have: 0,
                    need: self.committee.threshold(),
                },
            ));
        };
        let signatures = computed.quorum.signatures()?;
        Ok(computed
            .plan
            .post_root_calldata(computed.deadline, signatures))
    }

    /// The ledger's output over the current set, once computed.
    pub fn output(&self) -> Option<&EpochOutput> {
        self.computed.as_ref().map(|c| &c.output)
    }

    /// The epoch whose reputation the current root started from (`Some(None)`: the
    /// initial state), once computed.
    pub fn previous_epoch(&self) -> Option<Option<u64>> {
        self.computed.as_ref().map(|c| c.context.previous_epoch)
    }

    /// The output reputation with its context and the agreeing votes, once the root is
    /// posted: what the next epoch starts from, and what this node serves to members
    /// that lack it.
    pub fn carried(&self) -> Option<CarriedReputation> {
        let computed = self.computed.as_ref().filter(|_| self.is_posted())?;
        let context_digest = computed.context.digest();
        let digest = computed.quorum.digest();
        Some(CarriedReputation {
            context: computed.context,
            digest,
            state: computed.output.reputation.clone(),
            votes: self
                .votes
                .values()
                .filter(|v| v.digest == digest && v.context == context_digest)
                .cloned()
                .collect(),
        })
    }

    /// The settlement plan (root, total, charges, claims with proofs), once computed.
    pub fn plan(&self) -> Option<&SettlementPlan> {
        self.computed.as_ref().map(|c| &c.plan)
    }

    /// Marks the root as on chain (`tx` when this node sent it). Nothing changes after.
    pub fn mark_posted(&mut self, tx: Option<B256>) {
        self.posted = Some(tx);
        self.error = None;
    }

    /// Whether the root is on chain.
    pub fn is_posted(&self) -> bool {
        self.posted.is_some()
    }

    /// Notes that a later epoch was posted first, so this one never can be.
    pub fn mark_superseded(&mut self) {
        self.superseded = true;
    }

    /// Whether nothing more can happen to this epoch: posted, or superseded.
    pub fn is_final(&self) -> bool {
        self.posted.is_some() || self.superseded
    }

    /// Notes the last round's failure (shown in the record until a round succeeds).
    pub fn set_error(&mut self, error: Option<String>) {
        self.error = error;
    }

    /// The record to store and show.
    pub fn record(&self) -> EpochRecord {
        let mut record = EpochRecord::new(self.epoch());
        record.bundles = u64::try_from(self.set.len()).unwrap_or(u64::MAX);
        record.error = if self.superseded && self.posted.is_none() {
            Some(SUPERSEDED.to_owned())
        } else {
            self.error.clone()
        };
        let Some(computed) = &self.computed else {
            if self.superseded && self.posted.is_none() {
                record.status = EpochStatus::Superseded;
            }
            return record;
        };
        let digest = computed.quorum.digest();
        let context_digest = computed.quorum.context();
        record.set_digest = Some(computed.set_digest);
        record.context = Some(computed.context);
        record.penalties = computed.output.penalties.clone();
        record.activity = computed.activity.clone();
        record.root = Some(computed.plan.rewards_root);
        record.digest = Some(digest);
        record.deadline = u64::try_from(computed.deadline).unwrap_or(u64::MAX);
        record.total = u128::try_from(computed.plan.total).unwrap_or(u128::MAX);
        record.payouts = computed
            .output
            .payouts
            .iter()
            .map(|p| RecordedPayout {
                address: Address::from(p.address),
                amount: p.amount,
            })
            .collect();
        record.charges = computed
            .output
            .tenants
            .iter()
            .map(|t| RecordedCharge {
                tenant: t.tenant,
                charged: t.charged,
            })
            .collect();
        record.votes = self
            .votes
            .values()
            .map(|v| RecordedVote {
                signer: v.signer,
                digest: v.digest,
                context: v.context,
                agrees: v.digest == digest && v.context == context_digest,
            })
            .collect();
        record.poster = computed.quorum.poster();
        record.status = if let Some(tx) = self.posted {
            record.tx_hash = tx;
            EpochStatus::Posted
        } else if self.superseded {
            EpochStatus::Superseded
        } else if computed.quorum.has_quorum() {
            EpochStatus::Quorum
        } else {
            EpochStatus::Voted
        };
        record
    }
}
