//! Summary aggregation on the simulated nodes. Each node runs the product's sans-I/O
//! aggregator ([`Aggregator`]) every [`ROUND`] of virtual time, driven as the node's
//! `observe-tree` worker drives it (`crates/node/src/observe_tree.rs`): at each round it
//! lays its trees over its own SWIM view (the members it holds alive or suspect, and
//! itself) and sends its subtree report to its parent as a simulated message; the parent
//! takes the report when it arrives, with the trees of its own last round, and its answer
//! (the network totals the child lacks) comes back the same way. Every fifth round a node
//! audits its final totals against a random member, and a second one where the first
//! disagrees. A synthetic workload feeds every node's own figures ([`workload`]), and the
//! simulator keeps the ground truth to judge how exact the totals are and how soon each
//! node holds them ([`judge`]).
//!
//! Views are large (a member list per node) and change rarely, so a node's trees are
//! rebuilt only when its view's live set changes, and nodes whose views are the same share
//! one copy of the trees. As in the product, a member takes its place in the trees once it
//! has run for `JOIN_SETTLE_MS` (by its start time, which every node reads alike): the
//! nodes present at the start have run for an hour, a joining node from when it joins.
//! The product lays the trees over members with a signed record in the registry; the
//! simulator has no registry, and every member has one.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xnode_mesh::swim::{MemberState, Membership};
use xnode_observe::aggregate::{
    self, Aggregator, EPOCH_MS, FRESH_MS, JOIN_SETTLE_MS, NetworkTotals, OPEN_MS, SlotFigures,
    SubtreeReport, Tree,
};
use xnode_observe::{NodeSummary, PeerCounts, SLOT_MS, SystemStats};
use xnode_types::NodeId;

use crate::net::{Class, REQUEST_FRAMING_BYTES, RESPONSE_FRAMING_BYTES};
use crate::node::{Outgoing, Payload};

pub mod judge;
pub mod workload;

use workload::{ByDesign, Truth, is_open};
pub use workload::{LATENCY_SPREAD_LOG2, MAX_REQUESTS_PER_ROUND, SCOPES};

/// The product's `observe_interval`: every node runs a round this often.
pub const ROUND: Duration = Duration::from_secs(2);

/// Unix time, in milliseconds, at virtual time zero: the middle of an epoch, so that a run
/// shorter than half an hour ranks its trees one way throughout, and a slot boundary, so
/// that slots start at multiples of 10 s of virtual time. Fixed, so a run replays exactly.
pub const BASE_UNIX_MS: u64 = 1_800_000_000_000 - 1_800_000_000_000 % EPOCH_MS + EPOCH_MS / 2;

/// How long the nodes present at the start have run: long enough to have their place in
/// the trees (`JOIN_SETTLE_MS`), as in a network that has been up for a while.
const STARTED_BEFORE_MS: u64 = 3_600_000;

/// How long after a slot stops being open its final total is given to reach every node: a
/// round per level of the tree (four levels at 10,000 nodes) and the links' latency, with a
/// wide margin. Only slots that old by the end of the run are judged.
const FINAL_MARGIN_MS: u64 = 20_000;

/// Unix milliseconds of a virtual time.
pub fn unix_ms(now_us: u64) -> u64 {
    BASE_UNIX_MS.saturating_add(now_us / 1_000)
}

fn slot_of(ms: u64) -> u64 {
    ms - ms % SLOT_MS
}

/// A member's share of a view's fingerprint.
fn member_hash(id: &NodeId) -> u64 {
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

/// What identifies a view's trees: the epochs they cover and the set of live members (by
/// a sum of the members' hashes, which a change of one member updates in one step). Two
/// sets with the same sum and size would share trees wrongly; the check at the end of a
/// run (`stale_views`) would show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ViewKey {
    first_epoch: u64,
    last_epoch: u64,
    fingerprint: u64,
    members: usize,
}

/// The trees of one view, shared by every node that holds that view.
#[derive(Debug)]
struct View {
    key: ViewKey,
    /// Sorted, this node included.
    members: Vec<NodeId>,
    /// One tree per epoch of `aggregate::epochs_at`, over the members.
    trees: Vec<Tree>,
}

/// The product's `AUDIT_EVERY`: every this many rounds a node checks its final totals
/// against a random member.
const AUDIT_EVERY: u64 = 5;

/// An audit under way: the time of the round that started it, the two members asked, its
/// request, and, once the first answered, the slots on which the first disagreed with
/// this node (then asked of the second).
#[derive(Debug)]
struct Audit {
    now_ms: u64,
    first: NodeId,
    second: NodeId,
    request: SubtreeReport,
    found: Option<Vec<SlotFigures>>,
}

/// One node's part in the aggregation.
#[derive(Debug)]
struct Participant {
    id: NodeId,
    aggregator: Aggregator,
    /// The trees of this node's view as of its last refresh.
    view: Option<Arc<View>>,
    /// Members whose place in the trees (live in this node's view, and run long enough)
    /// differs from `view`'s (true: has a place now, missing from the trees). The trees
    /// are rebuilt, or found shared, at the next round when it is not empty.
    pending: BTreeMap<NodeId, bool>,
    /// Cumulative counters since the node started, as it would gossip them.
    summary: NodeSummary,
    last_served_slot: Option<u64>,
    /// Requests this node served in each slot that may still be open.
    served: BTreeMap<u64, u64>,
    joined_us: u64,
    first_round_us: u64,
    /// When the trees were last laid over this node's view.
    refreshed_ms: u64,
    rounds: u64,
    audit: Option<Audit>,
}

/// Reports and answers, counted over the run.
#[derive(Clone, Copy, Debug, Default)]
struct Messages {
    reports: u64,
    report_bytes: u64,
    largest_report: usize,
    answers: u64,
    answer_bytes: u64,
    largest_answer: usize,
    /// Reports of which the parent refused some slot.
    refused: u64,
    /// Audit requests and their answers.
    audit_requests: u64,
    audit_bytes: u64,
    /// Audits answered, the slots found to differ, and those corrected.
    audits: u64,
    disagreements: u64,
    corrections: u64,
}

/// Every node's aggregation, the shared trees and the ground truth.
#[derive(Debug)]
pub struct Observer {
    participants: Vec<Option<Participant>>,
    views: HashMap<ViewKey, Arc<View>>,
    views_built: u64,
    views_peak: usize,
    /// Refreshes that found the view's members differ from what the changes seen said.
    tracking_misses: u64,
    truth: BTreeMap<u64, Truth>,
    /// Per slot, per node: virtual µs at which the node first held the slot's exact total
    /// (`u64::MAX`: not yet).
    first_exact: BTreeMap<u64, Vec<u64>>,
    /// Virtual µs of every death and join.
    disruptions: Vec<u64>,
    /// Per slot, what deaths and joins take from or add to its total by design.
    by_design: BTreeMap<u64, ByDesign>,
    /// Nodes that joined during the run, with the unix ms from which they take their
    /// place in the trees (every other node has run long enough).
    settles_at: Vec<(NodeId, u64)>,
    messages: Messages,
    /// Whether the steady window is being counted.
    counting: bool,
    /// When the steady window started (virtual µs).
    counting_since_us: u64,
    /// Reports each node received while counting.
    reports_received: Vec<u64>,
    rng: StdRng,
}

impl Observer {
    /// The workload draws from its own generator, so the run's other random choices do
    /// not depend on it.
    pub fn new(seed: u64) -> Self {
        Self {
            participants: Vec::new(),
            views: HashMap::new(),
            views_built: 0,
            views_peak: 0,
            tracking_misses: 0,
            truth: BTreeMap::new(),
            first_exact: BTreeMap::new(),
            disruptions: Vec::new(),
            by_design: BTreeMap::new(),
            settles_at: Vec::new(),
            messages: Messages::default(),
            counting: false,
            counting_since_us: 0,
            reports_received: Vec::new(),
            rng: StdRng::seed_from_u64(seed ^ 0x0b5e_47e5_a66e_4a7e),
        }
    }

    /// Starts or stops counting the reports each node receives (the steady window).
    pub fn set_counting(&mut self, counting: bool, now_us: u64) {
        if counting {
            self.counting_since_us = now_us;
        }
        self.counting = counting;
    }

    /// Adds node `index` (the simulator's numbering, in order) and returns when its first
    /// round is due, a random phase into the first [`ROUND`].
    pub fn add_node(&mut self, index: usize, id: NodeId, now_us: u64) -> u64 {
        let mut participant = Participant {
            id,
            aggregator: Aggregator::new(id),
            view: None,
            pending: BTreeMap::new(),
            summary: NodeSummary {
                node: id,
                started_ms: unix_ms(now_us).saturating_sub(STARTED_BEFORE_MS),
                seq: 0,
                at_ms: unix_ms(now_us),
                system: SystemStats::default(),
                peers: PeerCounts::default(),
                active_tenants: 0,
                scopes: BTreeMap::new(),
                peer_rtts: Vec::new(),
            },
            last_served_slot: None,
            served: BTreeMap::new(),
            joined_us: now_us,
            first_round_us: now_us,
            refreshed_ms: 0,
            rounds: 0,
            audit: None,
        };
        if self.participants.len() <= index {
            self.participants
                .resize_with(index.saturating_add(1), || None);
            self.reports_received.resize(index.saturating_add(1), 0);
        }
        let round = u64::try_from(ROUND.as_micros()).unwrap_or(u64::MAX);
        participant.first_round_us = now_us.saturating_add(self.rng.gen_range(0..round.max(1)));
        let first_round_us = participant.first_round_us;
        if let Some(slot) = self.participants.get_mut(index) {
            *slot = Some(participant);
        }
        first_round_us
    }

    /// Gives every node the same view of `members` (each has heard from every other at
    /// the start), so the first rounds need not read 10,000 tables.
    pub fn start_with(&mut self, members: &[NodeId], now_us: u64) {
        let view = self.view_of(members.to_vec(), unix_ms(now_us));
        for participant in self.participants.iter_mut().flatten() {
            participant.view = Some(Arc::clone(&view));
        }
    }

    /// A node died: it neither sends nor answers from now on, and what it held is gone,
    /// its own figures of the slots still open included.
    pub fn kill(&mut self, index: usize, now_us: u64) {
        let now_ms = unix_ms(now_us);
        if let Some(dead) = self.participants.get_mut(index).and_then(Option::take) {
            for (slot, requests) in &dead.served {
                if is_open(*slot, now_ms) {
                    self.by_design
                        .entry(*slot)
                        .or_default()
                        .deaths
                        .push(*requests);
                }
            }
        }
        self.disruptions.push(now_us);
        self.forget_unused_views();
    }

    /// Node `index` joined (after [`Observer::add_node`]): it takes its place in the trees
    /// `JOIN_SETTLE_MS` later, and from then reports every open slot, those before it
    /// served included.
    pub fn joined(&mut self, index: usize, now_us: u64) {
        self.disruptions.push(now_us);
        let Some(participant) = self.participants.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        // Started now, not an hour ago: its summaries say so.
        participant.summary.started_ms = unix_ms(now_us);
        let settles_ms = unix_ms(now_us).saturating_add(JOIN_SETTLE_MS);
        self.settles_at.push((participant.id, settles_ms));
        let first_served = slot_of(unix_ms(participant.first_round_us));
        let oldest = slot_of(settles_ms.saturating_sub(OPEN_MS.saturating_sub(SLOT_MS)));
        for slot in (oldest..first_served).step_by(SLOT_MS as usize) {
            let design = self.by_design.entry(slot).or_default();
            design.joins = design.joins.saturating_add(1);
        }
    }

    /// Notes the state changes node `index`'s view made, so its trees are rebuilt (or
    /// found shared) before they are next used if its live set changed.
    pub fn note_changes(&mut self, index: usize, changes: &[(NodeId, MemberState)], now_us: u64) {
        let Some(participant) = self.participants.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let Some(tree) = participant.view.as_ref().and_then(|v| v.trees.first()) else {
            return;
        };
        let now_ms = unix_ms(now_us);
        for (id, state) in changes {
            if *id == participant.id {
                continue;
            }
            let eligible = is_live(*state) && settled(&self.settles_at, id, now_ms);
            if eligible == tree.contains(id) {
                participant.pending.remove(id);
            } else {
                participant.pending.insert(*id, eligible);
            }
        }
    }

    /// Node `index`'s round: it serves this round's requests, folds them into its own
    /// figures, sends its reports and, every [`AUDIT_EVERY`] rounds, starts an audit.
    pub fn round(&mut self, index: usize, membership: &Membership, now_us: u64) -> Vec<Outgoing> {
        let now_ms = unix_ms(now_us);
        self.serve(index, now_ms);
        let Some(view) = self.refresh(index, membership, now_ms) else {
            return Vec::new();
        };
        let Some(participant) = self.participants.get_mut(index).and_then(Option::as_mut) else {
            return Vec::new();
        };
        let reports = participant.aggregator.round(now_ms, &view.trees);
        participant.rounds = participant.rounds.saturating_add(1);
        let parents: Vec<NodeId> = reports.iter().map(|r| r.parent).collect();
        let mut outgoing = Vec::with_capacity(reports.len().saturating_add(1));
        for report in reports {
            let Ok(encoded) = xnode_wire::encode(&report.report) else {
                continue;
            };
            let bytes = encoded.len().saturating_add(REQUEST_FRAMING_BYTES);
            let m = &mut self.messages;
            m.reports = m.reports.saturating_add(1);
            m.report_bytes = m.report_bytes.saturating_add(bytes as u64);
            m.largest_report = m.largest_report.max(bytes);
            outgoing.push(Outgoing {
                to: report.parent,
                payload: Payload::Report(report.report),
                bytes,
                class: Class::Observe,
            });
        }
        if participant.rounds.is_multiple_of(AUDIT_EVERY)
            && let Some((first, second)) =
                pick_two(&view.members, participant.id, &parents, &mut self.rng)
        {
            let request = participant.aggregator.audit_request(now_ms);
            if !request.holds.is_empty()
                && let Some(message) = audit_message(first, request.clone(), &mut self.messages)
            {
                outgoing.push(message);
                participant.audit = Some(Audit {
                    now_ms,
                    first,
                    second,
                    request,
                    found: None,
                });
            }
        }
        self.sample(index, now_us);
        outgoing
    }

    /// A report (or an audit request) from `from` reached node `index`: as the product's
    /// handler, it takes it with the trees of its own last round, and answers.
    pub fn on_report(
        &mut self,
        index: usize,
        from: NodeId,
        report: SubtreeReport,
        now_us: u64,
    ) -> Option<Outgoing> {
        let now_ms = unix_ms(now_us);
        let view = self.held_view(index, now_ms);
        let participant = self.participants.get_mut(index).and_then(Option::as_mut)?;
        // Before its first round a node has no trees and refuses every slot, as the
        // product's node, whose trees start over itself alone, does.
        let trees = view.as_ref().map_or(&[][..], |v| &v.trees[..]);
        let audit = report.only_held;
        let (accepted, answer) = participant
            .aggregator
            .accept_report(from, report, now_ms, trees);
        let bytes = xnode_wire::encode(&answer)
            .ok()?
            .len()
            .saturating_add(RESPONSE_FRAMING_BYTES);
        let m = &mut self.messages;
        if audit {
            m.audit_bytes = m.audit_bytes.saturating_add(bytes as u64);
        } else {
            if self.counting
                && let Some(count) = self.reports_received.get_mut(index)
            {
                *count = count.saturating_add(1);
            }
            if accepted.refused.is_some() {
                m.refused = m.refused.saturating_add(1);
            }
            m.answers = m.answers.saturating_add(1);
            m.answer_bytes = m.answer_bytes.saturating_add(bytes as u64);
            m.largest_answer = m.largest_answer.max(bytes);
        }
        Some(Outgoing {
            to: from,
            payload: Payload::Totals { answer, audit },
            bytes,
            class: Class::Observe,
        })
    }

    /// The answer of `from` to node `index`'s report, or to its audit request; an audit
    /// that found a disagreement asks its second member next.
    pub fn on_answer(
        &mut self,
        index: usize,
        from: NodeId,
        answer: NetworkTotals,
        audit: bool,
        now_us: u64,
    ) -> Option<Outgoing> {
        let participant = self.participants.get_mut(index).and_then(Option::as_mut)?;
        if !audit {
            participant
                .aggregator
                .accept_answer(from, answer, unix_ms(now_us));
            self.sample(index, now_us);
            return None;
        }
        let pending = participant.audit.take()?;
        let m = &mut self.messages;
        match pending.found {
            None if from == pending.first => {
                m.audits = m.audits.saturating_add(1);
                let found = participant
                    .aggregator
                    .disagreements(&answer, pending.now_ms);
                m.disagreements = m.disagreements.saturating_add(found.len() as u64);
                if found.is_empty() {
                    return None;
                }
                let message = audit_message(pending.second, pending.request.clone(), m);
                participant.audit = Some(Audit {
                    found: Some(found),
                    ..pending
                });
                message
            }
            Some(found) if from == pending.second => {
                for figures in found {
                    if answer.slots.contains(&figures)
                        && participant.aggregator.correct(figures, pending.now_ms)
                    {
                        m.corrections = m.corrections.saturating_add(1);
                    }
                }
                self.sample(index, now_us);
                None
            }
            _ => {
                // Not the answer the audit waits for.
                participant.audit = Some(pending);
                None
            }
        }
    }

    /// Node `index`'s trees as its last round laid them, rebuilt over the same members
    /// only if the epochs changed since, as the product's handler does.
    fn held_view(&mut self, index: usize, now_ms: u64) -> Option<Arc<View>> {
        let epochs = aggregate::epochs_at(now_ms);
        let participant = self.participants.get(index).and_then(Option::as_ref)?;
        let view = Arc::clone(participant.view.as_ref()?);
        if epochs.first() == Some(&view.key.first_epoch)
            && epochs.last() == Some(&view.key.last_epoch)
        {
            return Some(view);
        }
        let rebuilt = self.view_of(view.members.clone(), now_ms);
        if let Some(participant) = self.participants.get_mut(index).and_then(Option::as_mut) {
            participant.view = Some(Arc::clone(&rebuilt));
        }
        self.forget_unused_views();
        Some(rebuilt)
    }

    /// Node `index`'s trees as of now: the shared trees of its view, rebuilt from its
    /// membership only when no node holds that view yet.
    fn refresh(&mut self, index: usize, membership: &Membership, now_ms: u64) -> Option<Arc<View>> {
        let epochs = aggregate::epochs_at(now_ms);
        let (first_epoch, last_epoch) = (*epochs.first()?, *epochs.last()?);
        let participant = self.participants.get_mut(index).and_then(Option::as_mut)?;
        // A joining node takes its place when it has run long enough: no state change
        // says so, so the few joiners are looked at every time.
        if let Some(tree) = participant.view.as_ref().and_then(|v| v.trees.first()) {
            for (joiner, settles_ms) in &self.settles_at {
                let live = *joiner == participant.id
                    || membership.member(joiner).is_some_and(|m| is_live(m.state));
                let eligible = live && *settles_ms <= now_ms;
                if eligible == tree.contains(joiner) {
                    participant.pending.remove(joiner);
                } else {
                    participant.pending.insert(*joiner, eligible);
                }
            }
        }
        let expected = participant.view.as_ref().map(|view| {
            let mut key = view.key;
            key.first_epoch = first_epoch;
            key.last_epoch = last_epoch;
            for (id, live) in &participant.pending {
                let hash = member_hash(id);
                if *live {
                    key.fingerprint = key.fingerprint.wrapping_add(hash);
                    key.members = key.members.saturating_add(1);
                } else {
                    key.fingerprint = key.fingerprint.wrapping_sub(hash);
                    key.members = key.members.saturating_sub(1);
                }
            }
            key
        });
        participant.refreshed_ms = now_ms;
        if let (Some(view), Some(key)) = (&participant.view, expected)
            && view.key == key
        {
            participant.pending.clear();
            return Some(Arc::clone(view));
        }
        let shared = expected.and_then(|key| self.views.get(&key).cloned());
        let view = match shared {
            Some(view) => view,
            None => {
                let members = eligible_members(membership, &self.settles_at, now_ms);
                let view = self.view_of(members, now_ms);
                if expected.is_some_and(|key| key != view.key) {
                    self.tracking_misses = self.tracking_misses.saturating_add(1);
                }
                view
            }
        };
        let participant = self.participants.get_mut(index).and_then(Option::as_mut)?;
        participant.view = Some(Arc::clone(&view));
        participant.pending.clear();
        self.forget_unused_views();
        Some(view)
    }

    /// The shared trees over `members`, built if no node holds them.
    fn view_of(&mut self, mut members: Vec<NodeId>, now_ms: u64) -> Arc<View> {
        members.sort_unstable();
        members.dedup();
        let epochs = aggregate::epochs_at(now_ms);
        let key = ViewKey {
            first_epoch: epochs.first().copied().unwrap_or(0),
            last_epoch: epochs.last().copied().unwrap_or(0),
            fingerprint: members
                .iter()
                .fold(0u64, |sum, id| sum.wrapping_add(member_hash(id))),
            members: members.len(),
        };
        if let Some(view) = self.views.get(&key) {
            return Arc::clone(view);
        }
        let trees = epochs
            .iter()
            .map(|epoch| Tree::new(*epoch, members.iter().copied()))
            .collect();
        let view = Arc::new(View {
            key,
            members,
            trees,
        });
        self.views.insert(key, Arc::clone(&view));
        self.views_built = self.views_built.saturating_add(1);
        self.views_peak = self.views_peak.max(self.views.len());
        view
    }

    /// Drops the trees no node holds any more.
    fn forget_unused_views(&mut self) {
        self.views.retain(|_, view| Arc::strong_count(view) > 1);
    }

    /// Notes, for every slot that has ended and may still change at node `index`, whether
    /// the node now holds its exact total.
    fn sample(&mut self, index: usize, now_us: u64) {
        let Some(participant) = self.participants.get(index).and_then(Option::as_ref) else {
            return;
        };
        let now_ms = unix_ms(now_us);
        let oldest = now_ms.saturating_sub(FRESH_MS.saturating_add(SLOT_MS));
        for (slot, truth) in self.truth.range(oldest..) {
            if slot.saturating_add(SLOT_MS) > now_ms {
                break;
            }
            let firsts = self.first_exact.entry(*slot).or_default();
            if firsts.len() <= index {
                firsts.resize(index.saturating_add(1), u64::MAX);
            }
            let Some(first) = firsts.get_mut(index) else {
                continue;
            };
            if *first == u64::MAX
                && participant
                    .aggregator
                    .total(*slot)
                    .is_some_and(|total| truth.matches(total))
            {
                *first = now_us;
            }
        }
    }
}

/// Two distinct members other than `me` and its parents, at random (the product's
/// auditors), or `None` if there are not two. Drawn by index, so a 10,000-member view is
/// not copied each time.
fn pick_two(
    members: &[NodeId],
    me: NodeId,
    parents: &[NodeId],
    rng: &mut StdRng,
) -> Option<(NodeId, NodeId)> {
    let eligible = |id: &NodeId| *id != me && !parents.contains(id);
    let mut draw = |other: Option<NodeId>| {
        // A few draws suffice: all but one to three members are eligible.
        (0..64).find_map(|_| {
            let id = *members.get(rng.gen_range(0..members.len().max(1)))?;
            (eligible(&id) && Some(id) != other).then_some(id)
        })
    };
    let first = draw(None)?;
    let second = draw(Some(first))?;
    Some((first, second))
}

/// An audit request to `to`, counted.
fn audit_message(to: NodeId, request: SubtreeReport, m: &mut Messages) -> Option<Outgoing> {
    let bytes = xnode_wire::encode(&request)
        .ok()?
        .len()
        .saturating_add(REQUEST_FRAMING_BYTES);
    m.audit_requests = m.audit_requests.saturating_add(1);
    m.audit_bytes = m.audit_bytes.saturating_add(bytes as u64);
    Some(Outgoing {
        to,
        payload: Payload::Report(request),
        bytes,
        class: Class::Observe,
    })
}

/// Whether a member in `state` counts towards the live set (alive or suspect).
fn is_live(state: MemberState) -> bool {
    matches!(state, MemberState::Alive | MemberState::Suspect)
}

/// Whether `id` has run long enough at `now_ms` to take its place in the trees: only the
/// nodes in `settles_at` (those that joined during the run) may not have.
fn settled(settles_at: &[(NodeId, u64)], id: &NodeId, now_ms: u64) -> bool {
    settles_at
        .iter()
        .find(|(joiner, _)| joiner == id)
        .is_none_or(|(_, at)| *at <= now_ms)
}

/// The members a node lays its trees over: those its view holds live that have run long
/// enough, and itself if it has.
fn eligible_members(
    membership: &Membership,
    settles_at: &[(NodeId, u64)],
    now_ms: u64,
) -> Vec<NodeId> {
    let mut members: Vec<NodeId> = membership
        .members()
        .filter(|m| is_live(m.state) && settled(settles_at, &m.id, now_ms))
        .map(|m| m.id)
        .collect();
    if settled(settles_at, &membership.local(), now_ms) {
        members.push(membership.local());
    }
    members
}
