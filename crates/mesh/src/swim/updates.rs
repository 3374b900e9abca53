//! How updates are applied: SWIM's precedence rules, and the trust rules that keep a
//! peer from speaking for another (signed records, witnesses, vouched incarnations,
//! admission limits, rate-limited refutation). See the parent module's documentation.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::time::Instant;
use xnode_types::NodeId;

use super::admission::{MAX_MEMBERS, MAX_UNVERIFIED_MEMBERS};
use super::{
    Applied, Member, MemberState, Membership, MembershipUpdate, REFUTATION_INTERVAL, Refusal,
    Suspicion,
};
use crate::liveness::{LivenessRecord, MAX_ADDRESS_LEN, MAX_ADDRESSES, SelfStatus};

impl Membership {
    /// Applies news about a member, delivered by `sender` (the authenticated peer or gossip
    /// author it came from; this node itself for its own findings), and says what changed.
    pub fn apply(&mut self, update: &MembershipUpdate, sender: NodeId, now: Instant) -> Applied {
        match update {
            MembershipUpdate::Signed(record) => self.apply_record(record, sender, now),
            MembershipUpdate::Suspect {
                node,
                incarnation,
                from,
            } => self.apply_rumour(*node, *incarnation, *from, sender, false, now),
            MembershipUpdate::Dead {
                node,
                incarnation,
                from,
            } => self.apply_rumour(*node, *incarnation, *from, sender, true, now),
        }
    }

    fn apply_record(&mut self, record: &LivenessRecord, sender: NodeId, now: Instant) -> Applied {
        if record.check_bounds().is_err() {
            return Applied::Refused(Refusal::BadRecord);
        }
        if record.node == self.local {
            return self.record_about_self(record, now);
        }
        let incarnation = record.incarnation;
        let Some(member) = self.members.get(&record.node) else {
            return self.admit(record, sender, now);
        };
        let wins = match record.status {
            SelfStatus::Alive => incarnation > member.incarnation,
            SelfStatus::Left if member.state == MemberState::Left => {
                incarnation > member.incarnation
            }
            SelfStatus::Left => incarnation >= member.incarnation,
        };
        let newer_record = member
            .record
            .as_ref()
            .is_none_or(|old| supersedes(record, old));
        let new_addresses = record.status == SelfStatus::Alive
            && incarnation >= member.incarnation
            && !record.addresses.is_empty()
            && record.addresses != member.addresses();
        if !wins && !newer_record && !new_addresses {
            // Old news: no signature work.
            return Applied::Ignored;
        }
        if record.verify(&self.network).is_err() {
            return Applied::Refused(Refusal::BadRecord);
        }
        let Some(member) = self.members.get_mut(&record.node) else {
            return Applied::Ignored;
        };
        member.vouched_incarnation = member.vouched_incarnation.max(incarnation);
        if newer_record {
            member.set_record(Arc::new(record.clone()));
        }
        if new_addresses {
            member.set_addresses(record.addresses.clone());
        }
        if !wins {
            return Applied::Ignored;
        }
        let state = match record.status {
            SelfStatus::Alive => MemberState::Alive,
            SelfStatus::Left => MemberState::Left,
        };
        Self::set_state(member, state, incarnation, now);
        Applied::Changed {
            node: record.node,
            state,
            incarnation,
        }
    }

    /// A signed record of a node this node does not know yet.
    fn admit(&mut self, record: &LivenessRecord, sender: NodeId, now: Instant) -> Applied {
        if record.status == SelfStatus::Left {
            // Nothing to learn from a stranger that is gone.
            return Applied::Ignored;
        }
        let introduces_itself = sender == record.node;
        if !introduces_itself && sender != self.local && !self.is_trusted(&sender) {
            return Applied::Refused(Refusal::UntrustedWitness);
        }
        let unverified = self.members.values().filter(|m| m.is_unverified()).count();
        if self.members.len() >= MAX_MEMBERS
            || unverified >= MAX_UNVERIFIED_MEMBERS
            || !self.admissions.allows(&sender, now)
        {
            return Applied::Refused(Refusal::AdmissionLimit);
        }
        if record.verify(&self.network).is_err() {
            return Applied::Refused(Refusal::BadRecord);
        }
        self.admissions.record(sender, now);
        let mut member = Member::new(record.node, record.incarnation, now);
        member.record = Some(Arc::new(record.clone()));
        self.members.insert(member);
        Applied::Changed {
            node: record.node,
            state: MemberState::Alive,
            incarnation: record.incarnation,
        }
    }

    /// A peer that contacted this node directly (so the transport authenticated it) and
    /// presented its own signed record: admitted within the table's hard cap only, since
    /// it is not hearsay.
    pub fn introduce(&mut self, record: &LivenessRecord, now: Instant) -> Applied {
        self.introduce_record(record, None, now)
    }

    /// [`Membership::introduce`] with a record other tables may hold too: a new member
    /// shares it instead of copying it (a simulation of many nodes in one process holds
    /// each record once, not once per node).
    pub fn introduce_shared(&mut self, record: &Arc<LivenessRecord>, now: Instant) -> Applied {
        self.introduce_record(record, Some(record), now)
    }

    fn introduce_record(
        &mut self,
        record: &LivenessRecord,
        shared: Option<&Arc<LivenessRecord>>,
        now: Instant,
    ) -> Applied {
        if self.members.contains_key(&record.node) || record.node == self.local {
            let applied = self.apply_record(record, record.node, now);
            self.heard_from(&record.node, now);
            return applied;
        }
        if record.status == SelfStatus::Left {
            return Applied::Ignored;
        }
        if record.check_bounds().is_err() || record.verify(&self.network).is_err() {
            return Applied::Refused(Refusal::BadRecord);
        }
        if self.members.len() >= MAX_MEMBERS {
            return Applied::Refused(Refusal::AdmissionLimit);
        }
        let mut member = Member::new(record.node, record.incarnation, now);
        member.record = Some(shared.map_or_else(|| Arc::new(record.clone()), Arc::clone));
        member.last_seen = Some(now);
        self.members.insert(member);
        Applied::Changed {
            node: record.node,
            state: MemberState::Alive,
            incarnation: record.incarnation,
        }
    }

    /// What the registry says about a node, from the node's own signed record there: as
    /// good as a record the node signed for the mesh (the registry checked the signature).
    pub fn observe_vouched(
        &mut self,
        node: NodeId,
        addresses: &[String],
        incarnation: u64,
        left: bool,
        now: Instant,
    ) -> Applied {
        if node == self.local {
            return Applied::Ignored;
        }
        let addresses: Vec<String> = addresses
            .iter()
            .filter(|a| a.len() <= MAX_ADDRESS_LEN)
            .take(MAX_ADDRESSES)
            .cloned()
            .collect();
        let state = if left {
            MemberState::Left
        } else {
            MemberState::Alive
        };
        let Some(member) = self.members.get_mut(&node) else {
            if self.members.len() >= MAX_MEMBERS {
                return Applied::Refused(Refusal::AdmissionLimit);
            }
            let mut member = Member::new(node, incarnation, now);
            member.addresses = super::Addresses::Own(Box::new(addresses));
            member.in_registry = true;
            member.state = state;
            self.members.insert(member);
            return Applied::Changed {
                node,
                state,
                incarnation,
            };
        };
        member.in_registry = true;
        member.vouched_incarnation = member.vouched_incarnation.max(incarnation);
        if !left && incarnation >= member.incarnation && !addresses.is_empty() {
            member.set_addresses(addresses);
        }
        let wins = if left && member.state != MemberState::Left {
            incarnation >= member.incarnation
        } else {
            incarnation > member.incarnation
        };
        if !wins {
            return Applied::Ignored;
        }
        Self::set_state(member, state, incarnation, now);
        Applied::Changed {
            node,
            state,
            incarnation,
        }
    }

    fn apply_rumour(
        &mut self,
        node: NodeId,
        incarnation: u64,
        witness: NodeId,
        sender: NodeId,
        dead: bool,
        now: Instant,
    ) -> Applied {
        if witness != sender {
            return Applied::Refused(Refusal::ForgedWitness);
        }
        if node == self.local {
            return self.rumour_about_self(incarnation, now);
        }
        let own = sender == self.local;
        if !own && !self.is_trusted(&sender) {
            return Applied::Refused(Refusal::UntrustedWitness);
        }
        let Some(member) = self.members.get_mut(&node) else {
            return Applied::Refused(Refusal::UnknownMember);
        };
        if incarnation > member.vouched_incarnation {
            return Applied::Refused(Refusal::AboveVouchedIncarnation);
        }
        if dead && own {
            // Only this node's own suspicion timeout declares a member dead.
            let wins = match member.state {
                MemberState::Alive | MemberState::Suspect => incarnation >= member.incarnation,
                MemberState::Dead | MemberState::Left => incarnation > member.incarnation,
            };
            if !wins {
                return Applied::Ignored;
            }
            Self::set_state(member, MemberState::Dead, incarnation, now);
            return Applied::Changed {
                node,
                state: MemberState::Dead,
                incarnation,
            };
        }
        // A suspicion, or someone else's death notice, which counts as one: the member
        // gets the chance to refute (or answer us) before this node declares anything.
        let wins = match member.state {
            MemberState::Alive => incarnation >= member.incarnation,
            MemberState::Suspect => {
                if incarnation == member.incarnation {
                    // Same suspicion, another witness: count the confirmation.
                    if let Some(s) = member.suspicion.as_mut() {
                        s.confirmations.insert(witness);
                    }
                    return Applied::Ignored;
                }
                incarnation > member.incarnation
            }
            MemberState::Dead | MemberState::Left => incarnation > member.incarnation,
        };
        if !wins {
            return Applied::Ignored;
        }
        Self::set_state(member, MemberState::Suspect, incarnation, now);
        member.suspicion = Some(Box::new(Suspicion {
            since: now,
            confirmations: BTreeSet::from([witness]),
        }));
        Applied::Changed {
            node,
            state: MemberState::Suspect,
            incarnation,
        }
    }

    fn set_state(member: &mut Member, state: MemberState, incarnation: u64, now: Instant) {
        member.incarnation = incarnation;
        if member.state != state {
            member.state = state;
            member.state_since = now;
        }
        member.suspicion = None;
    }

    /// Someone says this node is suspect or dead at `incarnation`.
    fn rumour_about_self(&mut self, incarnation: u64, now: Instant) -> Applied {
        if self.leaving || incarnation < self.local_incarnation {
            return Applied::Ignored;
        }
        if incarnation > self.local_incarnation {
            // This node never signed that incarnation: nobody can honestly hold it.
            return Applied::Refused(Refusal::AboveVouchedIncarnation);
        }
        self.refute(now)
    }

    /// A record signed with this node's key that is newer than this run: an earlier run got
    /// further than this one started from (its incarnation file was lost, say). Continue
    /// above it, at once: only this node's key can make such a record.
    fn record_about_self(&mut self, record: &LivenessRecord, now: Instant) -> Applied {
        if self.leaving
            || record.incarnation < self.local_incarnation
            || (record.incarnation == self.local_incarnation && record.status == SelfStatus::Alive)
        {
            return Applied::Ignored;
        }
        if record.verify(&self.network).is_err() {
            return Applied::Refused(Refusal::BadRecord);
        }
        if *record == self.local_record {
            return Applied::Ignored;
        }
        self.local_incarnation = record.incarnation;
        self.bump(now)
    }

    /// Refutes now, or, within [`REFUTATION_INTERVAL`] of the last bump, schedules the
    /// refutation for when the interval ends.
    fn refute(&mut self, now: Instant) -> Applied {
        if let Some(last) = self.last_refutation
            && now.duration_since(last) < REFUTATION_INTERVAL
        {
            self.refutation_due = true;
            return Applied::Ignored;
        }
        self.bump(now)
    }

    fn bump(&mut self, now: Instant) -> Applied {
        let Some(next) = self.local_incarnation.checked_add(1) else {
            // Unreachable in practice (one bump per second), and never a panic.
            return Applied::Ignored;
        };
        self.local_incarnation = next;
        self.last_refutation = Some(now);
        self.refutation_due = false;
        self.resign();
        Applied::Refuted { incarnation: next }
    }

    /// A refutation deferred by the rate limit that is now due: bumps and returns the new
    /// incarnation, which the caller must announce.
    pub fn poll_refutation(&mut self, now: Instant) -> Option<u64> {
        if !self.refutation_due || self.leaving {
            return None;
        }
        match self.refute(now) {
            Applied::Refuted { incarnation } => Some(incarnation),
            _ => None,
        }
    }

    /// A direct answer from `node` (authenticated by the transport), with the record it
    /// sent. A newer signed record is applied; otherwise a suspicion of `node` held here is
    /// cleared, since the member just proved it is up.
    pub fn acked_by(
        &mut self,
        node: NodeId,
        record: Option<&LivenessRecord>,
        now: Instant,
    ) -> Applied {
        self.heard_from(&node, now);
        if let Some(record) = record.filter(|r| r.node == node) {
            let applied = self.apply_record(record, node, now);
            if applied != Applied::Ignored {
                return applied;
            }
        }
        let Some(member) = self.members.get_mut(&node) else {
            return Applied::Ignored;
        };
        if member.state != MemberState::Suspect {
            return Applied::Ignored;
        }
        let incarnation = member.incarnation;
        Self::set_state(member, MemberState::Alive, incarnation, now);
        Applied::Changed {
            node,
            state: MemberState::Alive,
            incarnation,
        }
    }
}

/// Whether `record` replaces `old` as the member's record to pass on: a higher
/// incarnation, or at the same one a departure, or new addresses.
fn supersedes(record: &LivenessRecord, old: &LivenessRecord) -> bool {
    if record.incarnation != old.incarnation {
        return record.incarnation > old.incarnation;
    }
    match (old.status, record.status) {
        (SelfStatus::Alive, SelfStatus::Left) => true,
        (SelfStatus::Left, SelfStatus::Alive) => false,
        _ => record.addresses != old.addresses,
    }
}
