//! A compact digest of a membership view, so that push-pull sends only what differs.
//!
//! A view's push-pull entries (this node's own record, and for every verified member its
//! signed record and this node's finding, as in [`Membership::snapshot`]) are grouped by
//! member into buckets: a member's bucket comes from a hash of its id alone, so two nodes
//! put it in the same bucket. A bucket's digest is the XOR of a 64-bit hash of each of
//! its members' (id, state, incarnation, record signature). Two nodes compare digests
//! bucket by bucket and exchange the entries of the buckets that differ, which in a
//! steady network are none: the cost of a push-pull is then the digest, about 8 bytes
//! per eight members, instead of about 150 bytes per member.
//!
//! Anti-entropy still holds: two views whose entries differ differ in some bucket (but
//! for a 64-bit hash collision), and both sides send every entry of that bucket, which
//! the other merges under the usual precedence rules.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use xnode_types::NodeId;

use super::{Member, MemberState, Membership, MembershipUpdate};
use crate::liveness::{LivenessRecord, SelfStatus};

/// The most buckets a digest may have. A digest from a peer with more is refused whole,
/// so one costs at most 8 KiB to hold and compare.
pub const MAX_DIGEST_BUCKETS: usize = 1024;
/// The fewest buckets a digest is made with.
const MIN_DIGEST_BUCKETS: usize = 16;
/// Members per bucket a digest aims for: a bucket that differs costs its members'
/// entries, so smaller buckets send less after a change, at 8 bytes of digest each.
const MEMBERS_PER_BUCKET: usize = 4;

/// The digest of a view: one 64-bit hash per bucket, little-endian. The number of buckets
/// is a power of two, at most [`MAX_DIGEST_BUCKETS`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDigest {
    pub buckets: Vec<[u8; 8]>,
}

impl ViewDigest {
    /// Whether a digest received from a peer has a number of buckets this node can use.
    pub fn is_valid(&self) -> bool {
        let n = self.buckets.len();
        n.is_power_of_two() && n <= MAX_DIGEST_BUCKETS
    }

    /// The buckets in which `self` and `other` differ (both of the same size).
    pub fn differing(&self, other: &ViewDigest) -> Vec<u16> {
        self.buckets
            .iter()
            .zip(&other.buckets)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .filter_map(|(i, _)| u16::try_from(i).ok())
            .collect()
    }
}

/// How many buckets a digest of a table of `members` uses.
pub fn bucket_count(members: usize) -> usize {
    (members / MEMBERS_PER_BUCKET)
        .next_power_of_two()
        .clamp(MIN_DIGEST_BUCKETS, MAX_DIGEST_BUCKETS)
}

/// The bucket of `node` among `buckets` (a power of two).
fn bucket_of(node: &NodeId, buckets: usize) -> usize {
    let hash = blake3::hash(&node.to_bytes());
    let mut first = [0u8; 4];
    first.copy_from_slice(&hash.as_bytes()[..4]);
    (u32::from_le_bytes(first) as usize) & (buckets.saturating_sub(1))
}

/// The hash of one member's entries as a view passes them on.
fn entry_hash(
    node: &NodeId,
    state: MemberState,
    incarnation: u64,
    record: Option<&LivenessRecord>,
) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"xnode membership digest v1");
    hasher.update(&node.to_bytes());
    hasher.update(&[state as u8]);
    hasher.update(&incarnation.to_le_bytes());
    if let Some(record) = record {
        hasher.update(&record.signature.0);
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    u64::from_le_bytes(first)
}

impl Membership {
    /// The members whose entries a push-pull passes on: verified ones only, as
    /// [`Membership::snapshot`].
    fn shared_members(&self) -> impl Iterator<Item = &Member> {
        self.members.values().filter(|m| !m.is_unverified())
    }

    /// The state this node claims for itself.
    fn own_state(&self) -> MemberState {
        match self.local_record.status {
            SelfStatus::Left => MemberState::Left,
            _ => MemberState::Alive,
        }
    }

    /// This view's digest in `buckets` buckets (a power of two, at most
    /// [`MAX_DIGEST_BUCKETS`]; anything else is clamped to one).
    pub fn digest(&self, buckets: usize) -> ViewDigest {
        let n = if buckets.is_power_of_two() {
            buckets.min(MAX_DIGEST_BUCKETS)
        } else {
            1
        };
        let mut hashes = vec![0u64; n];
        let own = entry_hash(
            &self.local,
            self.own_state(),
            self.local_incarnation,
            Some(&self.local_record),
        );
        if let Some(h) = hashes.get_mut(bucket_of(&self.local, n)) {
            *h ^= own;
        }
        for m in self.shared_members() {
            if let Some(h) = hashes.get_mut(bucket_of(&m.id, n)) {
                *h ^= entry_hash(&m.id, m.state, m.incarnation, m.record());
            }
        }
        ViewDigest {
            buckets: hashes.into_iter().map(u64::to_le_bytes).collect(),
        }
    }

    /// The push-pull entries of the members in `wanted` of `buckets` buckets, live
    /// members first, within `byte_budget` (roughly) and at most `max_entries`.
    pub fn entries_in(
        &self,
        buckets: usize,
        wanted: &[u16],
        byte_budget: usize,
        max_entries: usize,
    ) -> Vec<MembershipUpdate> {
        let n = buckets.clamp(1, MAX_DIGEST_BUCKETS);
        let wanted: HashSet<usize> = wanted.iter().map(|b| usize::from(*b)).collect();
        self.entries_matching(
            |node| wanted.contains(&bucket_of(node, n)),
            byte_budget,
            max_entries,
        )
    }

    /// The push-pull entries of this node (first) and of the verified members for which
    /// `include` holds, live members first (if the budget runs out, the dead are the ones
    /// left out), within `byte_budget` (roughly) and at most `max_entries`.
    pub(super) fn entries_matching(
        &self,
        include: impl Fn(&NodeId) -> bool,
        byte_budget: usize,
        max_entries: usize,
    ) -> Vec<MembershipUpdate> {
        let mut out = Vec::new();
        let mut used = 0usize;
        if include(&self.local) {
            let own = self.local_announcement();
            used = own.encoded_size_bound();
            out.push(own);
        }
        let mut members: Vec<&Member> = self.shared_members().filter(|m| include(&m.id)).collect();
        members.sort_by_key(|m| (!m.is_live(), m.id));
        for m in members {
            for entry in self.entries_of(m) {
                used = used.saturating_add(entry.encoded_size_bound());
                if used > byte_budget || out.len() >= max_entries {
                    return out;
                }
                out.push(entry);
            }
        }
        out
    }

    /// What a push-pull passes on about one member: its own signed record and, if this
    /// node holds it suspect or dead, that finding.
    fn entries_of(&self, m: &Member) -> impl Iterator<Item = MembershipUpdate> {
        let finding = match m.state {
            MemberState::Suspect => Some(MembershipUpdate::Suspect {
                node: m.id,
                incarnation: m.incarnation,
                from: self.local,
            }),
            MemberState::Dead => Some(MembershipUpdate::Dead {
                node: m.id,
                incarnation: m.incarnation,
                from: self.local,
            }),
            MemberState::Alive | MemberState::Left => None,
        };
        m.record()
            .cloned()
            .map(MembershipUpdate::Signed)
            .into_iter()
            .chain(finding)
    }
}
