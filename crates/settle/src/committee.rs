//! The settlement committee inside the network: derived signer keys, signed root votes and
//! the quorum that releases signatures for posting.
//!
//! Each member signs the EIP-712 digest (from `xnode_chain::SettlementPlan::digest`) of the
//! root it computed itself. The digest binds the epoch, root, total, charges, deadline, and
//! the settlement contract's chain and address, so a vote cannot be replayed on another
//! contract or for another root. Members exchange [`RootVote`]s; a [`QuorumCollector`]
//! counts only votes for its own digest, by distinct committee members, and hands out
//! signatures (ascending by signer, as the contract requires) only from the threshold up,
//! so fewer than f+1 honest-looking votes never reach the chain from our side either.
//!
//! A vote also carries the member's epoch context (`crate::EpochContext`: the parameters'
//! digest, the reputation the epoch started from and the one it ends with), signed with
//! the same key over [`context_signing_hash`]. The contract never sees it; members count a
//! vote as agreeing only if both the EIP-712 digest and the context are theirs, so a root
//! computed with other prices or from another previous reputation is never posted with
//! ours, even when its payout table happens to be the same.

use std::collections::{BTreeMap, BTreeSet};

use alloy::primitives::{Address, B256, Bytes, Signature};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};
use xnode_chain::CommitteeSigners;
use xnode_ledger::{Epoch, keccak256};
use xnode_types::SecretKey;

use crate::error::CommitteeError;

/// The vote format version this code signs and accepts.
pub const ROOT_VOTE_VERSION: u8 = 2;

/// Domain of the context signature (see [`context_signing_hash`]).
pub const VOTE_CONTEXT_DOMAIN: &[u8] = b"xnode root vote context v1\n";

/// Domain separator of the committee key derivation.
const COMMITTEE_KEY_DOMAIN: &[u8] = b"xnode committee key v1\n";

/// What a member signs to bind its context to its vote: keccak-256 of
/// [`VOTE_CONTEXT_DOMAIN`], the epoch (8 bytes, big-endian), the EIP-712 digest and the
/// context digest. Distinct from any EIP-712 digest (those start with `0x1901`), so the
/// signature can never be posted as a root signature.
pub fn context_signing_hash(epoch: Epoch, digest: &B256, context: &B256) -> B256 {
    let mut material = VOTE_CONTEXT_DOMAIN.to_vec();
    material.extend_from_slice(&epoch.0.to_be_bytes());
    material.extend_from_slice(digest.as_slice());
    material.extend_from_slice(context.as_slice());
    B256::from(keccak256(&material))
}

/// The node's committee key: a secp256k1 key derived from its ed25519 node key, so the
/// devnet can list committee addresses from node keys and an operator has one secret to
/// keep. The domain separator keeps the derived key from ever equalling a key derived for
/// another purpose; a counter skips the (astronomically rare) hashes that are not valid
/// scalars.
pub fn committee_signer(node_key: &SecretKey) -> PrivateKeySigner {
    let seed = node_key.seed();
    let mut counter: u32 = 0;
    loop {
        let mut material = COMMITTEE_KEY_DOMAIN.to_vec();
        material.extend_from_slice(&seed);
        material.extend_from_slice(&counter.to_be_bytes());
        if let Ok(signer) = PrivateKeySigner::from_bytes(&B256::from(keccak256(&material))) {
            return signer;
        }
        counter = counter.wrapping_add(1);
    }
}

/// The committee as the settlement contract holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitteeConfig {
    members: BTreeSet<Address>,
    threshold: usize,
}

impl CommitteeConfig {
    /// A committee of distinct members and a threshold between f+1 (for n = 3f+1) and n,
    /// the range the `Committee` contract accepts.
    pub fn new(members: &[Address], threshold: usize) -> Result<Self, CommitteeError> {
        let distinct: BTreeSet<Address> = members.iter().copied().collect();
        let bad = |reason| CommitteeError::BadConfig {
            members: distinct.len(),
            threshold,
            reason,
        };
        if distinct.len() != members.len() {
            return Err(bad("a member is listed twice"));
        }
        if distinct.is_empty() {
            return Err(bad("no members"));
        }
        if threshold < CommitteeSigners::min_threshold(distinct.len()) {
            return Err(bad("threshold below f+1"));
        }
        if threshold > distinct.len() {
            return Err(bad("threshold above the member count"));
        }
        Ok(Self {
            members: distinct,
            threshold,
        })
    }

    /// Whether `address` is a member.
    pub fn is_member(&self, address: &Address) -> bool {
        self.members.contains(address)
    }

    /// The threshold.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The members, ascending.
    pub fn members(&self) -> impl Iterator<Item = &Address> {
        self.members.iter()
    }
}

/// One member's signature over the digest of the root it computed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootVote {
    /// Format version ([`ROOT_VOTE_VERSION`]).
    pub v: u8,
    /// The epoch.
    pub epoch: Epoch,
    /// The EIP-712 digest signed.
    pub digest: B256,
    /// The digest of the member's epoch context (`crate::EpochContext::digest`).
    pub context: B256,
    /// The member's address.
    pub signer: Address,
    /// 65 bytes `r ‖ s ‖ v` over `digest`, as the contract recovers them.
    pub signature: Bytes,
    /// 65 bytes `r ‖ s ‖ v` over [`context_signing_hash`] of the epoch, digest and context.
    pub context_signature: Bytes,
}

impl RootVote {
    /// Signs `digest` and `context` for `epoch` with a member's key.
    pub fn sign(
        signer: &PrivateKeySigner,
        epoch: Epoch,
        digest: B256,
        context: B256,
    ) -> Result<Self, CommitteeError> {
        let signature = signer
            .sign_hash_sync(&digest)
            .map_err(CommitteeError::Signing)?;
        let context_signature = signer
            .sign_hash_sync(&context_signing_hash(epoch, &digest, &context))
            .map_err(CommitteeError::Signing)?;
        Ok(Self {
            v: ROOT_VOTE_VERSION,
            epoch,
            digest,
            context,
            signer: signer.address(),
            signature: Bytes::from(signature.as_bytes().to_vec()),
            context_signature: Bytes::from(context_signature.as_bytes().to_vec()),
        })
    }

    /// Whether both signatures recover to the named signer.
    fn signatures_recover(&self) -> Result<bool, CommitteeError> {
        let recover = |signature: &Bytes, hash: &B256| {
            Signature::try_from(signature.as_ref())
                .and_then(|s| s.recover_address_from_prehash(hash))
                .map_err(CommitteeError::MalformedSignature)
        };
        let context_hash = context_signing_hash(self.epoch, &self.digest, &self.context);
        Ok(recover(&self.signature, &self.digest)? == self.signer
            && recover(&self.context_signature, &context_hash)? == self.signer)
    }
}

/// What a checked vote did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteOutcome {
    /// A new agreeing signature.
    Counted,
    /// This member's agreeing signature was already held.
    Duplicate,
    /// A valid vote for another digest or context: the member computed another root, or
    /// the same root from other prices or another previous reputation (different evidence
    /// set, configuration, history or a fault); it is kept apart and never posted with
    /// ours.
    Dissent,
}

/// Collects votes for one epoch and one digest (this node's own).
#[derive(Clone, Debug)]
pub struct QuorumCollector {
    config: CommitteeConfig,
    epoch: Epoch,
    digest: B256,
    context: B256,
    agreeing: BTreeMap<Address, Bytes>,
    dissenting: BTreeMap<Address, B256>,
}

impl QuorumCollector {
    /// A collector for the root whose digest and context this node computed.
    pub fn new(config: CommitteeConfig, epoch: Epoch, digest: B256, context: B256) -> Self {
        Self {
            config,
            epoch,
            digest,
            context,
            agreeing: BTreeMap::new(),
            dissenting: BTreeMap::new(),
        }
    }

    /// Checks a vote from the network: version, epoch, the signature recovers to the
    /// named signer, the signer is a member. Then counts it if it is for our digest.
    pub fn add(&mut self, vote: &RootVote) -> Result<VoteOutcome, CommitteeError> {
        if vote.v != ROOT_VOTE_VERSION {
            return Err(CommitteeError::UnsupportedVersion(vote.v));
        }
        if vote.epoch != self.epoch {
            return Err(CommitteeError::WrongEpoch {
                expected: self.epoch.0,
                found: vote.epoch.0,
            });
        }
        if !vote.signatures_recover()? {
            return Err(CommitteeError::SignerMismatch);
        }
        if !self.config.is_member(&vote.signer) {
            return Err(CommitteeError::NotAMember);
        }
        if vote.digest != self.digest || vote.context != self.context {
            self.dissenting.insert(vote.signer, vote.digest);
            return Ok(VoteOutcome::Dissent);
        }
        if self.agreeing.contains_key(&vote.signer) {
            return Ok(VoteOutcome::Duplicate);
        }
        self.agreeing.insert(vote.signer, vote.signature.clone());
        Ok(VoteOutcome::Counted)
    }

    /// The digest this collector counts votes for.
    pub fn digest(&self) -> B256 {
        self.digest
    }

    /// The context digest this collector counts votes for.
    pub fn context(&self) -> B256 {
        self.context
    }

    /// Agreeing signatures held.
    pub fn agreeing(&self) -> usize {
        self.agreeing.len()
    }

    /// Members that signed another digest, with that digest.
    pub fn dissenting(&self) -> &BTreeMap<Address, B256> {
        &self.dissenting
    }

    /// Whether the threshold is reached.
    pub fn has_quorum(&self) -> bool {
        self.agreeing.len() >= self.config.threshold
    }

    /// The agreeing signatures, ascending by signer (the order `Committee` checks), or
    /// [`CommitteeError::BelowThreshold`] before the threshold is reached.
    pub fn signatures(&self) -> Result<Vec<Bytes>, CommitteeError> {
        if !self.has_quorum() {
            return Err(CommitteeError::BelowThreshold {
                have: self.agreeing.len(),
                need: self.config.threshold,
            });
        }
        Ok(self.agreeing.values().cloned().collect())
    }

    /// The member that posts the root: the agreeing signer at position `epoch mod count`,
    /// so posting rotates and every member with the same votes names the same poster
    /// (`None` before the threshold). Others post too if the root is not on chain after a
    /// wait; the contract accepts one root per epoch, so a second post only costs gas.
    pub fn poster(&self) -> Option<Address> {
        if !self.has_quorum() {
            return None;
        }
        let count = u64::try_from(self.agreeing.len()).ok()?;
        let index = usize::try_from(self.epoch.0.checked_rem(count)?).ok()?;
        self.agreeing.keys().nth(index).copied()
    }
}
