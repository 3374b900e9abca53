//! SWIM membership: the pure state machine behind failure detection.
//!
//! This module decides, from probe outcomes and membership updates, what state each member
//! is in. It does no I/O and reads time only through the `now` arguments, so every rule can
//! be unit-tested deterministically; the driver feeds it events and carries out what it
//! returns.
//!
//! The rules follow SWIM with the Lifeguard refinements:
//! - a member that fails a direct probe *and* all indirect probes becomes `suspect`;
//! - a suspect becomes `dead` when its suspicion timeout expires; the timeout starts long
//!   and shrinks as other members independently confirm the suspicion;
//! - a member refutes suspicion (or a false death) by announcing a higher incarnation;
//! - a member that stops gracefully announces `left`, which is final for that incarnation.
//!
//! Precedence between updates about one member follows the paper: `alive` needs a strictly
//! higher incarnation to override anything; `suspect` overrides `alive` at the same
//! incarnation; `dead` and `left` override `alive` and `suspect` at the same incarnation.
//!
//! On top of SWIM, every peer is treated as a possible liar (see
//! `docs/decisions/2026-11-26-signed-membership.md`):
//! - `alive` and `left` exist only as [`LivenessRecord`]s signed by their subject;
//! - third parties may report `suspect` and `dead`, but only in their own name (the
//!   witness is the authenticated sender), only about members, and never above the highest
//!   incarnation the subject itself vouched for; a third party's `dead` is taken as a
//!   suspicion, so only this node's own suspicion timeout ever declares a member dead;
//! - a direct answer from a suspect clears the suspicion here (the answer is
//!   authenticated by the transport), so a rumour cannot kill a reachable node;
//! - this node refutes rumours about itself at most once per [`REFUTATION_INTERVAL`],
//!   and a due refutation is never dropped, only deferred ([`Membership::poll_refutation`]);
//! - hearsay grows the table only within the bounds of [`admission`];
//! - no arithmetic on incarnations can overflow.

pub mod admission;
pub mod digest;
pub mod engine;
mod table;
mod updates;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use xnode_types::{NodeId, SecretKey};
use xnode_wire::{Versioned, WireError, kinds};

use crate::liveness::{LivenessRecord, SelfStatus};
use admission::{Admissions, UNVERIFIED_RETENTION};
use table::MemberTable;

/// The shortest time between two refutations (incarnation bumps) of this node. Each bump
/// is persisted and republished by the node, so a flood of rumours must not turn into a
/// flood of bumps.
pub const REFUTATION_INTERVAL: Duration = Duration::from_secs(1);

/// How many random members an indirect probe picks its near helpers from.
pub const NEAR_HELPER_SAMPLE: usize = 16;

/// Up to this many members, push-pull runs at the configured interval.
pub const PUSH_PULL_SCALE_THRESHOLD: usize = 32;

/// The push-pull interval for a table of `members`: the configured `base` up to
/// [`PUSH_PULL_SCALE_THRESHOLD`] members, then one more `base` each time the table doubles
/// (memberlist's `pushPullScale`). A push-pull sends the whole view, so at a fixed interval
/// its cost per node grows with the network; scaled, it grows with the logarithm of the
/// network instead, while gossip still carries every change at once and push-pull only
/// repairs what gossip missed.
pub fn scaled_push_pull_interval(base: Duration, members: usize) -> Duration {
    if members <= PUSH_PULL_SCALE_THRESHOLD {
        return base;
    }
    // ceil(log2(members)) - log2(32) + 1, in integers: `members` is above 32, so the
    // subtraction cannot underflow.
    let ceil_log2 = usize::BITS - (members - 1).leading_zeros();
    let multiplier = ceil_log2.saturating_sub(PUSH_PULL_SCALE_THRESHOLD.ilog2()) + 1;
    base.saturating_mul(multiplier)
}

/// The liveness state of a member, as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    Alive,
    Suspect,
    Dead,
    Left,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead => "dead",
            MemberState::Left => "left",
        }
    }

    pub const ALL: [MemberState; 4] = [
        MemberState::Alive,
        MemberState::Suspect,
        MemberState::Dead,
        MemberState::Left,
    ];
}

/// News about one member, spread by gossip and exchanged on join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipUpdate {
    /// What the member signed about itself: alive (with its addresses) or left.
    Signed(LivenessRecord),
    /// `from` suspects the member at this incarnation.
    Suspect {
        node: NodeId,
        incarnation: u64,
        from: NodeId,
    },
    /// `from` found the member dead at this incarnation.
    Dead {
        node: NodeId,
        incarnation: u64,
        from: NodeId,
    },
}

impl Versioned for MembershipUpdate {
    const KIND_TAG: u8 = kinds::MEMBERSHIP_UPDATE;
    const KIND_NAME: &'static str = "membership update";
    // Version 2: `alive` and `left` are signed records of their subject.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, WireError> {
        crate::legacy::membership_update(version, body)
    }
}

impl MembershipUpdate {
    pub fn node(&self) -> NodeId {
        match self {
            MembershipUpdate::Signed(record) => record.node,
            MembershipUpdate::Suspect { node, .. } | MembershipUpdate::Dead { node, .. } => *node,
        }
    }

    pub fn incarnation(&self) -> u64 {
        match self {
            MembershipUpdate::Signed(record) => record.incarnation,
            MembershipUpdate::Suspect { incarnation, .. }
            | MembershipUpdate::Dead { incarnation, .. } => *incarnation,
        }
    }

    /// A rough upper bound of the encoded size, used to keep snapshots within the SWIM
    /// message limit without encoding them twice.
    pub(crate) fn encoded_size_bound(&self) -> usize {
        match self {
            MembershipUpdate::Signed(record) => {
                160 + record.addresses.iter().map(|a| a.len() + 4).sum::<usize>()
            }
            _ => 140,
        }
    }
}

/// Timing of the failure detector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwimConfig {
    /// How often this node probes one member.
    #[serde(with = "millis")]
    pub probe_interval: Duration,
    /// How long a direct probe may take before indirect probes start.
    #[serde(with = "millis")]
    pub probe_timeout: Duration,
    /// How many other members are asked to probe a member that missed a direct probe.
    pub indirect_probes: usize,
    /// How long indirect probes may take before the member is suspected.
    #[serde(with = "millis")]
    pub indirect_timeout: Duration,
    /// Suspicion timeout with no independent confirmation.
    #[serde(with = "millis")]
    pub suspicion_max: Duration,
    /// Suspicion timeout once enough members have confirmed the suspicion.
    #[serde(with = "millis")]
    pub suspicion_min: Duration,
    /// How often a dead member is probed, so a healed partition merges again.
    #[serde(with = "millis")]
    pub dead_probe_interval: Duration,
}

impl Default for SwimConfig {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_millis(400),
            indirect_probes: 3,
            indirect_timeout: Duration::from_millis(500),
            suspicion_max: Duration::from_millis(1500),
            suspicion_min: Duration::from_millis(400),
            dead_probe_interval: Duration::from_secs(2),
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// What this node knows about one member. Every node holds one per member of the
/// network, so it is kept small: the signed record is shared, and the rarely present parts
/// (a suspicion, addresses the record does not carry) are boxed.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: NodeId,
    pub state: MemberState,
    pub incarnation: u64,
    /// When we last heard from the member directly (ack, ping, or gossip it published).
    pub last_seen: Option<Instant>,
    pub state_since: Instant,
    suspicion: Option<Box<Suspicion>>,
    /// The highest incarnation the member itself vouched for: in a record it signed, or in
    /// its registry record. Nobody else may push it further.
    vouched_incarnation: u64,
    /// The newest record the member signed, passed on in push-pull.
    record: Option<Arc<LivenessRecord>>,
    /// Where the member can be reached.
    addresses: Addresses,
    /// Whether the registry (signed by the member) told us of it.
    in_registry: bool,
    /// The smoothed round trip of this node's direct probes of the member, in
    /// microseconds; 0 before the first.
    rtt_micros: u32,
}

/// Where a member can be reached: usually what its record says, held once.
#[derive(Clone, Debug)]
enum Addresses {
    /// The addresses of the member's record (none without a record).
    OfRecord,
    /// Addresses the record does not carry (from the registry, or kept from an older
    /// record that a newer one without addresses replaced). Boxed so the common case
    /// costs one word per member (a `Vec` inline would cost three).
    #[allow(clippy::box_collection)]
    Own(Box<Vec<String>>),
}

impl Member {
    fn new(id: NodeId, incarnation: u64, now: Instant) -> Self {
        Self {
            id,
            state: MemberState::Alive,
            incarnation,
            last_seen: None,
            state_since: now,
            suspicion: None,
            vouched_incarnation: incarnation,
            record: None,
            addresses: Addresses::OfRecord,
            in_registry: false,
            rtt_micros: 0,
        }
    }

    /// The highest incarnation the member itself vouched for.
    pub fn vouched_incarnation(&self) -> u64 {
        self.vouched_incarnation
    }

    /// The newest liveness record the member signed that this node holds.
    pub fn record(&self) -> Option<&LivenessRecord> {
        self.record.as_deref()
    }

    /// The smoothed round trip of this node's direct probes of the member, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        (self.rtt_micros > 0).then(|| Duration::from_micros(u64::from(self.rtt_micros)))
    }

    /// Where the member can be reached.
    pub fn addresses(&self) -> &[String] {
        match &self.addresses {
            Addresses::Own(addresses) => addresses,
            Addresses::OfRecord => self.record.as_deref().map_or(&[], |r| &r.addresses),
        }
    }

    /// Replaces the member's record, keeping its addresses as they were.
    fn set_record(&mut self, record: Arc<LivenessRecord>) {
        if matches!(self.addresses, Addresses::OfRecord)
            && let Some(old) = self.record.as_deref()
            && old.addresses != record.addresses
        {
            self.addresses = Addresses::Own(Box::new(old.addresses.clone()));
        }
        self.record = Some(record);
    }

    fn set_addresses(&mut self, addresses: Vec<String>) {
        let of_record = self
            .record
            .as_deref()
            .is_some_and(|r| r.addresses == addresses);
        self.addresses = if of_record {
            Addresses::OfRecord
        } else {
            Addresses::Own(Box::new(addresses))
        };
    }

    /// Known only from hearsay: never heard from directly and not in the registry.
    pub fn is_unverified(&self) -> bool {
        self.last_seen.is_none() && !self.in_registry
    }

    fn is_live(&self) -> bool {
        matches!(self.state, MemberState::Alive | MemberState::Suspect)
    }

    /// How many members (this node included) independently confirmed the suspicion of
    /// this member; 0 if it is not suspected.
    pub fn confirmations(&self) -> usize {
        self.suspicion.as_ref().map_or(0, |s| s.confirmations.len())
    }
}

#[derive(Clone, Debug)]
struct Suspicion {
    since: Instant,
    confirmations: BTreeSet<NodeId>,
}

/// What applying an update did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The member's state or incarnation changed; the update should be spread further.
    Changed {
        node: NodeId,
        state: MemberState,
        incarnation: u64,
    },
    /// The update was old news (or a refutation that is already scheduled).
    Ignored,
    /// The update was about this node and wrong: it has refuted it with a new incarnation,
    /// which the caller must announce.
    Refuted { incarnation: u64 },
    /// The update broke a rule and was dropped.
    Refused(Refusal),
}

/// Why an update was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A record whose signature does not verify, or that is larger than allowed.
    BadRecord,
    /// A suspicion or death reported in the name of someone other than its sender.
    ForgedWitness,
    /// A suspicion or death (or a new member) reported by a sender that is not a live
    /// member this node has heard from or that the registry vouches for.
    UntrustedWitness,
    /// A suspicion or death about a node that is not a member.
    UnknownMember,
    /// A suspicion or death above the highest incarnation the subject vouched for.
    AboveVouchedIncarnation,
    /// A new member beyond the admission limits.
    AdmissionLimit,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::BadRecord => "bad_record",
            Refusal::ForgedWitness => "forged_witness",
            Refusal::UntrustedWitness => "untrusted_witness",
            Refusal::UnknownMember => "unknown_member",
            Refusal::AboveVouchedIncarnation => "above_vouched_incarnation",
            Refusal::AdmissionLimit => "admission_limit",
        }
    }

    pub const ALL: [Refusal; 6] = [
        Refusal::BadRecord,
        Refusal::ForgedWitness,
        Refusal::UntrustedWitness,
        Refusal::UnknownMember,
        Refusal::AboveVouchedIncarnation,
        Refusal::AdmissionLimit,
    ];

    /// Whether only a dishonest sender sends this (as opposed to news that crossed another
    /// update on the way, which honest nodes send too).
    pub fn is_misbehaviour(self) -> bool {
        matches!(self, Refusal::BadRecord | Refusal::ForgedWitness)
    }
}

/// The membership view of one node.
#[derive(Debug)]
pub struct Membership {
    local: NodeId,
    key: SecretKey,
    network: String,
    local_incarnation: u64,
    local_addresses: Vec<String>,
    local_record: LivenessRecord,
    leaving: bool,
    last_refutation: Option<Instant>,
    refutation_due: bool,
    // Ordered, so that with a seeded `rng` the simulation replays exactly (a hash map's
    // order changes from run to run), and so no chosen node ids can degrade lookups.
    members: MemberTable,
    admissions: Admissions,
    config: SwimConfig,
    /// The member probed last; the next probe goes to the next live member after it.
    probe_cursor: Option<NodeId>,
    dead_cursor: usize,
    /// Shuffles the probe order and the indirect helpers. Seeded from the system's
    /// entropy; a simulation seeds it ([`Membership::seed_rng`]) to replay a run exactly.
    rng: StdRng,
}

impl Membership {
    /// A view for the node of `key` on `network`, starting at `incarnation`.
    pub fn new(key: SecretKey, network: &str, incarnation: u64, config: SwimConfig) -> Self {
        let local_record = LivenessRecord::sign(&key, network, incarnation, SelfStatus::Alive, &[]);
        Self {
            local: key.node_id(),
            key,
            network: network.to_owned(),
            local_incarnation: incarnation,
            local_addresses: Vec::new(),
            local_record,
            leaving: false,
            last_refutation: None,
            refutation_due: false,
            members: MemberTable::default(),
            admissions: Admissions::default(),
            config,
            probe_cursor: None,
            dead_cursor: 0,
            rng: StdRng::from_entropy(),
        }
    }

    pub fn local(&self) -> NodeId {
        self.local
    }

    /// Replaces the random choices' source with one seeded by `seed`, so that a
    /// simulation run with the same seed makes the same choices.
    pub fn seed_rng(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    pub fn local_incarnation(&self) -> u64 {
        self.local_incarnation
    }

    pub fn set_local_addresses(&mut self, addresses: Vec<String>) {
        self.local_addresses = addresses;
        self.resign();
    }

    fn resign(&mut self) {
        let status = if self.leaving {
            SelfStatus::Left
        } else {
            SelfStatus::Alive
        };
        self.local_record = LivenessRecord::sign(
            &self.key,
            &self.network,
            self.local_incarnation,
            status,
            &self.local_addresses,
        );
    }

    /// This node's signed record: `alive` at its incarnation, or `left` once it leaves.
    pub fn local_record(&self) -> &LivenessRecord {
        &self.local_record
    }

    /// The announcement of this node's current record.
    pub fn local_announcement(&self) -> MembershipUpdate {
        MembershipUpdate::Signed(self.local_record.clone())
    }

    /// Marks this node as leaving and returns its signed `left` record. From now on it
    /// refutes nothing.
    pub fn leave(&mut self) -> LivenessRecord {
        self.leaving = true;
        self.refutation_due = false;
        self.resign();
        self.local_record.clone()
    }

    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Makes room for `additional` more members at once, so a table filled in one go
    /// (from the registry, or in a simulation) is not regrown along the way.
    pub fn reserve_members(&mut self, additional: usize) {
        self.members.reserve(additional.min(admission::MAX_MEMBERS));
    }

    /// How many members the table holds, in any state.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn config(&self) -> &SwimConfig {
        &self.config
    }

    /// Members that count towards the live set (alive or suspect).
    pub fn live_count(&self) -> usize {
        self.members.values().filter(|m| m.is_live()).count()
    }

    /// Whether `node` may vouch for others: a live member this node has heard from
    /// directly or that the registry knows.
    pub fn is_trusted(&self, node: &NodeId) -> bool {
        self.members
            .get(node)
            .is_some_and(|m| m.is_live() && !m.is_unverified())
    }

    /// Records that we heard from `node` directly.
    pub fn heard_from(&mut self, node: &NodeId, now: Instant) {
        if let Some(m) = self.members.get_mut(node) {
            m.last_seen = Some(now);
        }
    }

    /// The next member to probe: the next live member after the last one probed, in the
    /// order of node ids, starting after this node's own id and wrapping around.
    ///
    /// Every node walks the same ring from its own place, so while the views agree each
    /// member is probed by exactly one node per probe interval (its predecessor at
    /// distance `r` in round `r`), and a crashed member is probed within about one
    /// interval. Walking a private shuffled order instead (SWIM's suggestion) leaves each
    /// member's next probe to chance: with N probers each hitting it with probability 1/N
    /// per interval, the wait is geometric, and its 99th percentile was 4-5 intervals,
    /// which alone put a death past two seconds. Each node still probes every member once
    /// per pass, as SWIM requires for its time bound.
    pub fn next_probe_target(&mut self) -> Option<NodeId> {
        let after = self.probe_cursor.unwrap_or(self.local);
        let next = self
            .members
            .ring_after(&after)
            .find(|m| m.is_live())
            .map(|m| m.id)?;
        self.probe_cursor = Some(next);
        Some(next)
    }

    /// The next dead member to re-probe, for partition healing.
    pub fn next_dead_target(&mut self) -> Option<NodeId> {
        let mut dead: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| m.state == MemberState::Dead)
            .map(|m| m.id)
            .collect();
        if dead.is_empty() {
            return None;
        }
        dead.sort();
        self.dead_cursor = (self.dead_cursor + 1) % dead.len();
        dead.get(self.dead_cursor).copied()
    }

    /// Folds one round trip of a direct probe of `node` into its smoothed round trip
    /// (weight 1/8, as TCP's).
    pub fn observe_rtt(&mut self, node: &NodeId, rtt: Duration) {
        let Some(member) = self.members.get_mut(node) else {
            return;
        };
        let sample = i64::from(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX).max(1));
        let old = i64::from(member.rtt_micros);
        let smoothed = if old == 0 {
            sample
        } else {
            old + (sample - old) / 8
        };
        member.rtt_micros = u32::try_from(smoothed.max(1)).unwrap_or(u32::MAX);
    }

    /// Up to `k` alive members other than `target` to ask for indirect probes, preferring
    /// members this node has heard from directly (hearsay members may not exist at all).
    ///
    /// Of those, all but one are the nearest (by this node's round trips) of a random
    /// sample of [`NEAR_HELPER_SAMPLE`] members it has measured (in a large network a node
    /// has measured few members, and a sample of all would hold almost none of them, so
    /// the choice would be random): an indirect probe goes prober, helper, target,
    /// helper, prober within `indirect_timeout`, which a far helper of a far target misses
    /// on latency alone (four hops of up to 160 ms one way between the simulator's
    /// regions), and such misses were most false suspicions left. The last place is
    /// anyone's, so a near member cannot make itself every probe's only way round.
    pub fn indirect_helpers(&mut self, target: &NodeId, k: usize) -> Vec<NodeId> {
        let eligible = |m: &Member, verified: bool| {
            m.id != *target && m.state == MemberState::Alive && m.last_seen.is_some() == verified
        };
        // A uniform sample of the measured candidates, drawn in one pass over the table
        // (reservoir sampling), so a probe of a large table copies nothing of it.
        let mut sample: Vec<(NodeId, u32)> = Vec::with_capacity(NEAR_HELPER_SAMPLE);
        for (before, m) in self
            .members
            .values()
            .filter(|m| eligible(m, true) && m.rtt_micros > 0)
            .enumerate()
        {
            if sample.len() < NEAR_HELPER_SAMPLE {
                sample.push((m.id, m.rtt_micros));
            } else if let Some(slot) = sample.get_mut(self.rng.gen_range(0..=before)) {
                *slot = (m.id, m.rtt_micros);
            }
        }
        sample.sort_by_key(|&(_, rtt)| rtt);
        let mut helpers: Vec<NodeId> = sample
            .iter()
            .take(k.saturating_sub(1))
            .map(|&(id, _)| id)
            .collect();
        // The last place: any verified candidate not chosen already, then, while places
        // are left, members known only from hearsay.
        for verified in [true, false] {
            let wanted = k.saturating_sub(helpers.len());
            let mut picks: Vec<NodeId> = Vec::with_capacity(wanted.min(NEAR_HELPER_SAMPLE));
            let candidates = self
                .members
                .values()
                .filter(|m| eligible(m, verified) && !helpers.contains(&m.id));
            for (before, m) in candidates.enumerate() {
                if picks.len() < wanted {
                    picks.push(m.id);
                } else if let Some(slot) = picks.get_mut(self.rng.gen_range(0..=before)) {
                    *slot = m.id;
                }
            }
            picks.shuffle(&mut self.rng);
            helpers.extend(picks);
        }
        helpers
    }

    /// A direct and all indirect probes of `node` failed. An alive member becomes suspect;
    /// for a member already suspected by others, this is an independent confirmation that
    /// shortens its suspicion (Lifeguard). Returns the update to spread, if any.
    pub fn probe_failed(&mut self, node: &NodeId, now: Instant) -> Option<MembershipUpdate> {
        let local = self.local;
        let member = self.members.get_mut(node)?;
        let update = MembershipUpdate::Suspect {
            node: *node,
            incarnation: member.incarnation,
            from: local,
        };
        match member.state {
            MemberState::Alive => match self.apply(&update, local, now) {
                Applied::Changed { .. } => Some(update),
                _ => None,
            },
            MemberState::Suspect => {
                let suspicion = member.suspicion.get_or_insert_with(|| {
                    Box::new(Suspicion {
                        since: now,
                        confirmations: BTreeSet::new(),
                    })
                });
                suspicion.confirmations.insert(local).then_some(update)
            }
            MemberState::Dead | MemberState::Left => None,
        }
    }

    /// How long a suspicion lasts given how many members confirmed it (Lifeguard): it
    /// shrinks from `suspicion_max` towards `suspicion_min` logarithmically in the number of
    /// independent confirmations, reaching the minimum at the expected number of witnesses.
    pub fn suspicion_timeout(&self, confirmations: usize) -> Duration {
        let expected = self.expected_confirmations();
        let extra = confirmations.saturating_sub(1).min(expected);
        let frac = ((extra + 1) as f64).ln() / ((expected + 1) as f64).ln();
        let max = self.config.suspicion_max.as_secs_f64();
        let min = self.config.suspicion_min.as_secs_f64();
        Duration::try_from_secs_f64((max - (max - min) * frac).max(min))
            .unwrap_or(self.config.suspicion_max)
    }

    /// Confirmations beyond the first that bring a suspicion's timeout to its minimum.
    fn expected_confirmations(&self) -> usize {
        self.config
            .indirect_probes
            .min(self.live_count().saturating_sub(1))
            .max(1)
    }

    /// How many confirmations of a suspicion shorten its timeout; more change nothing.
    pub fn confirmations_that_count(&self) -> usize {
        self.expected_confirmations() + 1
    }

    /// Declares dead every suspect whose suspicion timed out; returns this node's findings.
    pub fn expire_suspicions(&mut self, now: Instant) -> Vec<MembershipUpdate> {
        let expired: Vec<(NodeId, u64)> = self
            .members
            .values()
            .filter_map(|m| {
                let s = m.suspicion.as_ref()?;
                (m.state == MemberState::Suspect
                    && now.duration_since(s.since) >= self.suspicion_timeout(s.confirmations.len()))
                .then_some((m.id, m.incarnation))
            })
            .collect();
        let mut out = Vec::new();
        for (node, incarnation) in expired {
            let update = MembershipUpdate::Dead {
                node,
                incarnation,
                from: self.local,
            };
            if let Applied::Changed { .. } = self.apply(&update, self.local, now) {
                out.push(update);
            }
        }
        out
    }

    /// This node's view for a push-pull exchange: its own record first, then, for every
    /// member it has verified (heard from directly, or known from the registry), the
    /// member's own signed record and, if suspect or dead, this node's finding. Hearsay
    /// members are not passed on. The whole stays under `byte_budget` (roughly).
    pub fn snapshot(&self, byte_budget: usize) -> Vec<MembershipUpdate> {
        self.entries_matching(|_| true, byte_budget, usize::MAX)
    }

    /// Forgets hearsay members that are dead or gone and were never verified, once they
    /// have been so for [`UNVERIFIED_RETENTION`], and old admission windows.
    pub fn reap(&mut self, now: Instant) -> usize {
        let before = self.members.len();
        self.members.retain(|m| {
            !(m.is_unverified()
                && !m.is_live()
                && now.duration_since(m.state_since) >= UNVERIFIED_RETENTION)
        });
        self.admissions.prune(now);
        before - self.members.len()
    }
}

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod tests;
