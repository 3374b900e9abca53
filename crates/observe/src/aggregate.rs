//! Network totals summed along a tree, so that what a node receives stays bounded however
//! large the network grows.
//!
//! For each hour-long *epoch* the live members are ranked by BLAKE3 of the epoch and their
//! id, and laid out as a [`FANOUT`]-ary tree over that ranking ([`Tree`]): the first is
//! the root and member `i`'s parent is member `(i - 1) / FANOUT`. Every round (the node's
//! `observe_interval`) a node sends its parent a [`SubtreeReport`]: for every *open* slot
//! (the last [`OPEN_MS`]), its own figures plus the latest figures each of its children
//! reported, with the number of nodes they cover. The parent answers with the
//! settled [`NetworkTotals`] it holds that differ from what the child holds: the root's
//! sums, one level further down per round ([`SETTLE_MS`]). The root closes a slot
//! [`COMPLETE_AFTER_MS`] after it starts if its total covers every member once, and at
//! [`OPEN_MS`] otherwise; a closed slot's total is final, and it reaches every node within
//! a round per level. Each node sends one report and receives at most [`FANOUT`] reports
//! and one answer per round, whatever the size of the network.
//!
//! Reports *replace* what the same child said earlier of the same slot, so a lost, late
//! or repeated report is harmless. A node that changes parent (a death, a join, a new
//! epoch) re-reports every open slot to its new parent, and a parent forgets a child it no
//! longer has: both decide from their own view of the membership, so while those views
//! differ (about two seconds after a change) a subtree can be missing from, or counted
//! twice in, an open slot. Each total carries the number of nodes it covers, so a reader
//! can tell. Ranking by epoch moves every position each hour: no node id can be ground to
//! hold the root, or any place, for long. An aggregator can still misstate its subtree's
//! figures (within the number of nodes below it); see `docs/design/observability.md`.
//!
//! This module does no I/O: the node carries the messages and builds the trees from its
//! membership.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use xnode_types::NodeId;
use xnode_wire::{Versioned, kinds};

use crate::recorder::OTHER;
use crate::{MAX_SCOPES, NodeSummary, SLOT_MS, ScopeStats, WindowTotals};

/// Children per node in the tree: a 10,000-node network is four levels deep.
pub const FANOUT: usize = 16;
/// How long a slot stays open after it starts, at the longest: reports still carry it, and
/// the root's total of it may still change.
pub const OPEN_MS: u64 = 9 * SLOT_MS;
/// The root closes a slot this long after it starts if its total covers every member of
/// the root's tree by then; otherwise it keeps the slot open until [`OPEN_MS`]. A death or
/// join moves subtrees to new parents, and they report again within a few rounds: a slot
/// that would close in the middle of that waits for them. Long enough for a report to
/// climb a tree of five levels at one level per round of a few seconds.
pub const COMPLETE_AFTER_MS: u64 = 6 * SLOT_MS;
/// How long a node keeps asking its parent for totals it may have missed: an open slot,
/// then as long again for the final total to come down.
pub const FRESH_MS: u64 = 2 * OPEN_MS;
/// A slot's total goes down the tree once the slot has been closed this long: reports
/// climb a level a round, so by then every level of a deep tree has reported. Sending a
/// slot down while it fills would send it again at every round: an inner node would send
/// its sixteen children a slot's figures five times a slot instead of about once.
pub const SETTLE_MS: u64 = SLOT_MS;
/// A member takes a place in the tree once it has run this long (by its signed record's
/// start time, which every node reads alike). A node that just started has yet to learn
/// the members and their records; placed at once, it would refuse the reports of the
/// children the others give it, and their subtrees would miss the oldest open slots. Its
/// own figures of that time are not lost: they are still open when it takes its place.
pub const JOIN_SETTLE_MS: u64 = 30_000;
/// How far back a node that holds no totals yet is sent them.
pub const NEWCOMER_MS: u64 = 5 * 60_000;
/// Totals are kept this long, the longest window the API reports.
pub const RETAIN_MS: u64 = 3_600_000 + SLOT_MS;
/// The tree is re-ranked every epoch.
pub const EPOCH_MS: u64 = 3_600_000;
/// Most slot digests an answer's `have` may list that are read (the open slots fit).
const MAX_HAVE: usize = 64;
/// Largest report or answer accepted from a peer.
pub const MAX_AGGREGATE_BYTES: usize = 1024 * 1024;

/// One slot's figures summed over a number of nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotFigures {
    /// Start of the slot, in milliseconds since the Unix epoch (a multiple of [`SLOT_MS`]).
    pub slot_ms: u64,
    /// How many nodes' figures are in the sums.
    pub nodes: u32,
    /// At most [`MAX_SCOPES`] scopes; the smallest are folded into `other` beyond that.
    pub scopes: BTreeMap<String, ScopeStats>,
}

impl SlotFigures {
    fn empty(slot_ms: u64) -> Self {
        Self {
            slot_ms,
            ..Self::default()
        }
    }

    fn add(&mut self, other: &SlotFigures) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        for (scope, stats) in &other.scopes {
            self.scopes.entry(scope.clone()).or_default().merge(stats);
        }
    }

    /// Folds the scopes with the fewest requests into `other` until at most
    /// [`MAX_SCOPES`] are left. Totals over all scopes do not change.
    fn cap_scopes(&mut self) {
        if self.scopes.len() <= MAX_SCOPES {
            return;
        }
        let mut by_size: Vec<(u64, String)> = self
            .scopes
            .iter()
            .filter(|(name, _)| name.as_str() != OTHER)
            .map(|(name, stats)| (stats.requests, name.clone()))
            .collect();
        // Largest first; names break ties so every node folds the same scopes.
        by_size.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut other = self.scopes.remove(OTHER).unwrap_or_default();
        for (_, name) in by_size.into_iter().skip(MAX_SCOPES - 1) {
            if let Some(stats) = self.scopes.remove(&name) {
                other.merge(&stats);
            }
        }
        self.scopes.insert(OTHER.to_owned(), other);
    }

    /// A short fingerprint of the figures, so a parent sends a child only what it lacks.
    fn digest(&self) -> u64 {
        let bytes = postcard::to_stdvec(self).unwrap_or_default();
        let hash = blake3::hash(&bytes);
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }
}

/// What a child holds of one slot's network total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotDigest {
    pub slot_ms: u64,
    pub digest: u64,
}

/// A node's figures and its subtree's, for every open slot, sent to its parent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtreeReport {
    pub slots: Vec<SlotFigures>,
    /// The network totals the reporter already holds (recent slots only).
    pub holds: Vec<SlotDigest>,
    /// An audit: answer only about the slots in `holds`.
    pub only_held: bool,
}

/// A parent's answer to a report: the network totals it holds that its child does not,
/// and what it now holds of the child's open slots (so the child resends only what the
/// parent lacks: after a lost report or a parent's restart, that is everything).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkTotals {
    pub slots: Vec<SlotFigures>,
    pub have: Vec<SlotDigest>,
}

impl Versioned for SubtreeReport {
    const KIND_TAG: u8 = kinds::SUBTREE_REPORT;
    const KIND_NAME: &'static str = "subtree report";
    const VERSION: u8 = 1;
}

impl Versioned for NetworkTotals {
    const KIND_TAG: u8 = kinds::NETWORK_TOTALS;
    const KIND_NAME: &'static str = "network totals";
    const VERSION: u8 = 1;
}

/// The epoch a slot belongs to: its report climbs that epoch's tree.
pub fn epoch_of(slot_ms: u64) -> u64 {
    slot_ms / EPOCH_MS
}

/// The epochs whose trees a round at `now_ms` needs (the open slots span one or two).
pub fn epochs_at(now_ms: u64) -> Vec<u64> {
    let first = epoch_of(oldest_open_slot(now_ms));
    let last = epoch_of(now_ms);
    (first..=last).collect()
}

fn slot_of(ms: u64) -> u64 {
    ms - ms % SLOT_MS
}

fn oldest_open_slot(now_ms: u64) -> u64 {
    slot_of(now_ms.saturating_sub(OPEN_MS - SLOT_MS))
}

/// The slots an audit compares: final at the root for at least one slot's length, and
/// still within [`FRESH_MS`].
fn audited_range(now_ms: u64) -> (u64, u64) {
    let from = slot_of(now_ms.saturating_sub(FRESH_MS));
    let to = oldest_open_slot(now_ms).saturating_sub(SLOT_MS);
    (from, to.max(from))
}

/// The newest slot whose total is settled at `now_ms` (see [`SETTLE_MS`]).
pub fn newest_settled_slot(now_ms: u64) -> u64 {
    slot_of(now_ms.saturating_sub(SLOT_MS + SETTLE_MS))
}

fn open_slots(now_ms: u64) -> impl Iterator<Item = u64> {
    (oldest_open_slot(now_ms)..=slot_of(now_ms)).step_by(SLOT_MS as usize)
}

/// One epoch's tree over the live members.
#[derive(Clone, Debug)]
pub struct Tree {
    epoch: u64,
    /// Members in rank order: the root first, then level by level.
    ranked: Vec<NodeId>,
    position: HashMap<NodeId, usize>,
}

impl Tree {
    /// The tree of `epoch` over `members` (duplicates are ignored).
    pub fn new(epoch: u64, members: impl IntoIterator<Item = NodeId>) -> Self {
        let mut keyed: Vec<([u8; 32], NodeId)> = members
            .into_iter()
            .map(|id| (rank_key(epoch, &id), id))
            .collect();
        keyed.sort();
        keyed.dedup_by(|a, b| a.1 == b.1);
        let ranked: Vec<NodeId> = keyed.into_iter().map(|(_, id)| id).collect();
        let position = ranked.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        Self {
            epoch,
            ranked,
            position,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn len(&self) -> usize {
        self.ranked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranked.is_empty()
    }

    pub fn contains(&self, node: &NodeId) -> bool {
        self.position.contains_key(node)
    }

    pub fn root(&self) -> Option<NodeId> {
        self.ranked.first().copied()
    }

    /// `node`'s parent, or `None` for the root and for a node not in the tree.
    pub fn parent(&self, node: &NodeId) -> Option<NodeId> {
        let at = *self.position.get(node)?;
        if at == 0 {
            return None;
        }
        self.ranked.get((at - 1) / FANOUT).copied()
    }

    /// `node`'s children (none for a node not in the tree).
    pub fn children(&self, node: &NodeId) -> &[NodeId] {
        let Some(&at) = self.position.get(node) else {
            return &[];
        };
        let first = at.saturating_mul(FANOUT).saturating_add(1);
        let end = first.saturating_add(FANOUT).min(self.ranked.len());
        self.ranked.get(first..end).unwrap_or(&[])
    }

    /// How many nodes the subtree under `node` holds, `node` included (0 if absent).
    pub fn subtree_size(&self, node: &NodeId) -> usize {
        let Some(&at) = self.position.get(node) else {
            return 0;
        };
        // The subtree's members at each level are one contiguous run of positions.
        let (mut first, mut last, mut size) = (at, at, 0usize);
        while first < self.ranked.len() {
            size += last.min(self.ranked.len() - 1) - first + 1;
            first = first.saturating_mul(FANOUT).saturating_add(1);
            last = last.saturating_mul(FANOUT).saturating_add(FANOUT);
        }
        size
    }

    /// Levels below the root (0 for a tree of one).
    pub fn depth(&self) -> usize {
        let (mut depth, mut last) = (0, 0usize);
        while last + 1 < self.ranked.len() {
            last = last.saturating_mul(FANOUT).saturating_add(FANOUT);
            depth += 1;
        }
        depth
    }
}

fn rank_key(epoch: u64, id: &NodeId) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("xnode observe tree rank v1");
    hasher.update(&epoch.to_le_bytes());
    hasher.update(&id.peer_id().to_bytes());
    *hasher.finalize().as_bytes()
}

/// Why a report, or part of one, was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the reporter is not this node's child in the slot's tree")]
    NotAChild,
    #[error("the slot is not open")]
    NotOpen,
    #[error("the report claims more nodes than the reporter's subtree holds")]
    TooManyNodes,
    #[error("the figures have more scopes than a summary may")]
    TooManyScopes,
    #[error("the slot is reported twice")]
    Repeated,
}

/// What became of the slots of one report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    pub slots: usize,
    /// The first reason a slot was refused, if one was.
    pub refused: Option<Refused>,
}

/// The figures one report climbs with: its parent and what to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub parent: NodeId,
    pub report: SubtreeReport,
}

/// Figures held with their digest, computed once: answering a report compares digests,
/// and a peer that sends many reports must not make this node hash everything each time.
#[derive(Debug)]
struct Held {
    figures: SlotFigures,
    digest: u64,
}

impl Held {
    fn new(figures: SlotFigures) -> Self {
        let digest = figures.digest();
        Self { figures, digest }
    }
}

/// One node's part in the aggregation: its own figures per slot, its children's latest
/// reports, and the network totals it has computed (as the root) or heard.
#[derive(Debug)]
pub struct Aggregator {
    me: NodeId,
    last_own: Option<NodeSummary>,
    own: BTreeMap<u64, BTreeMap<String, ScopeStats>>,
    children: HashMap<NodeId, BTreeMap<u64, Held>>,
    totals: BTreeMap<u64, Held>,
    /// What this node's parent last said it holds of this node's slots.
    parent_has: Option<(NodeId, HashMap<u64, u64>)>,
    /// Final slots corrected by an audit: a final total never changes, so a parent that
    /// sends it again differently is not listened to.
    corrected: std::collections::BTreeSet<u64>,
    /// As the root: the last total of each open, settled slot that covered every member of
    /// the tree exactly once. A slot that reaches [`OPEN_MS`] short (churn moved subtrees
    /// that have yet to report again) closes with this one instead.
    last_complete: BTreeMap<u64, SlotFigures>,
}

impl Aggregator {
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            last_own: None,
            own: BTreeMap::new(),
            children: HashMap::new(),
            totals: BTreeMap::new(),
            parent_has: None,
            corrected: Default::default(),
            last_complete: BTreeMap::new(),
        }
    }

    /// Folds in this node's own latest summary (cumulative counters, as gossiped).
    pub fn record_own(&mut self, summary: &NodeSummary) {
        if summary.node != self.me {
            return;
        }
        let Some(delta) = summary.scopes_since(self.last_own.as_ref()) else {
            return;
        };
        let slot = self.own.entry(slot_of(summary.at_ms)).or_default();
        for (scope, stats) in delta {
            slot.entry(scope).or_default().merge(&stats);
        }
        self.last_own = Some(summary.clone());
    }

    /// The round at `now_ms`: forgets what has aged out and children this node no longer
    /// has, becomes the source of the totals of the trees it is root of, and returns the
    /// reports to send (one per distinct parent; none for a root). `trees` should hold the
    /// trees of [`epochs_at`]`(now_ms)`; slots of an epoch without a tree are skipped.
    pub fn round(&mut self, now_ms: u64, trees: &[Tree]) -> Vec<Outgoing> {
        self.forget(now_ms, trees);
        let holds: Vec<SlotDigest> = self
            .totals
            .range(slot_of(now_ms.saturating_sub(FRESH_MS))..=newest_settled_slot(now_ms))
            .map(|(slot, held)| SlotDigest {
                slot_ms: *slot,
                digest: held.digest,
            })
            .collect();
        let mut outgoing: Vec<Outgoing> = Vec::new();
        for slot in open_slots(now_ms) {
            let Some(tree) = trees.iter().find(|t| t.epoch == epoch_of(slot)) else {
                continue;
            };
            if !tree.contains(&self.me) {
                continue;
            }
            let figures = self.subtree(slot, tree);
            let Some(parent) = tree.parent(&self.me) else {
                let complete = self.totals.get(&slot).is_some_and(|held| {
                    usize::try_from(held.figures.nodes).is_ok_and(|nodes| nodes == tree.len())
                });
                // Past COMPLETE_AFTER_MS a total that covers every member exactly once is
                // closed: it stays as it is. One short of them, or over (a subtree counted
                // under two parents while views differ), waits for the tree to settle.
                if !(complete && slot.saturating_add(COMPLETE_AFTER_MS) <= now_ms) {
                    let covers_all = usize::try_from(figures.nodes).is_ok_and(|n| n == tree.len());
                    if covers_all && slot <= newest_settled_slot(now_ms) {
                        self.last_complete.insert(slot, figures.clone());
                    }
                    self.totals.insert(slot, Held::new(figures));
                }
                continue;
            };
            let at = match outgoing.iter().position(|o| o.parent == parent) {
                Some(at) => at,
                None => {
                    outgoing.push(Outgoing {
                        parent,
                        report: SubtreeReport {
                            slots: Vec::new(),
                            holds: holds.clone(),
                            only_held: false,
                        },
                    });
                    outgoing.len() - 1
                }
            };
            let parent_has = match &self.parent_has {
                Some((known, has)) if *known == parent => has.get(&slot).copied(),
                _ => None,
            };
            if parent_has != Some(figures.digest())
                && let Some(o) = outgoing.get_mut(at)
            {
                o.report.slots.push(figures);
            }
        }
        outgoing
    }

    /// This node's own figures for `slot` plus its children's in `tree`.
    fn subtree(&self, slot: u64, tree: &Tree) -> SlotFigures {
        let mut figures = SlotFigures::empty(slot);
        figures.nodes = 1;
        if let Some(own) = self.own.get(&slot) {
            figures.scopes = own.clone();
        }
        for child in tree.children(&self.me) {
            if let Some(reported) = self.children.get(child).and_then(|s| s.get(&slot)) {
                figures.add(&reported.figures);
            }
        }
        figures.cap_scopes();
        figures
    }

    fn forget(&mut self, now_ms: u64, trees: &[Tree]) {
        let oldest_open = oldest_open_slot(now_ms);
        // Slots that just closed at the root: one that closed short of its last complete
        // total (a settled slot's figures no longer change, so that one is the better)
        // takes it. Only the root keeps complete totals.
        let closing: Vec<u64> = self
            .last_complete
            .range(..oldest_open)
            .map(|(s, _)| *s)
            .collect();
        for slot in closing {
            if let Some(complete) = self.last_complete.remove(&slot)
                && self
                    .totals
                    .get(&slot)
                    .is_some_and(|held| held.figures.nodes < complete.nodes)
            {
                self.totals.insert(slot, Held::new(complete));
            }
        }
        self.own.retain(|slot, _| *slot >= oldest_open);
        let me = self.me;
        self.children.retain(|child, slots| {
            slots.retain(|slot, _| {
                *slot >= oldest_open
                    && trees
                        .iter()
                        .find(|t| t.epoch == epoch_of(*slot))
                        .is_some_and(|t| t.parent(child) == Some(me))
            });
            !slots.is_empty()
        });
        let oldest_kept = now_ms.saturating_sub(RETAIN_MS);
        self.totals.retain(|slot, _| *slot >= oldest_kept);
        self.corrected.retain(|slot| *slot >= oldest_kept);
    }

    /// Takes a report from `from` (authenticated by the transport) and answers it with the
    /// recent totals the reporter does not hold. Slots that fail a check are skipped.
    pub fn accept_report(
        &mut self,
        from: NodeId,
        report: SubtreeReport,
        now_ms: u64,
        trees: &[Tree],
    ) -> (Accepted, NetworkTotals) {
        let mut accepted = Accepted::default();
        let open: Vec<u64> = open_slots(now_ms).collect();
        let mut seen = Vec::with_capacity(report.slots.len());
        for figures in report.slots {
            let check = if seen.contains(&figures.slot_ms) {
                Err(Refused::Repeated)
            } else if !open.contains(&figures.slot_ms) {
                Err(Refused::NotOpen)
            } else {
                seen.push(figures.slot_ms);
                self.check_child(from, &figures, trees)
            };
            match check {
                Ok(()) => {
                    accepted.slots += 1;
                    self.children
                        .entry(from)
                        .or_default()
                        .insert(figures.slot_ms, Held::new(figures));
                }
                Err(why) => {
                    accepted.refused.get_or_insert(why);
                }
            }
        }
        let holds: HashMap<u64, u64> = report.holds.iter().map(|h| (h.slot_ms, h.digest)).collect();
        let is_child = trees.iter().any(|t| t.parent(&from) == Some(self.me));
        // A reporter that holds nothing has just started: it gets the five minutes the
        // API's middle window needs, not only the fresh slots.
        let since = if report.holds.is_empty() && !report.only_held {
            NEWCOMER_MS
        } else {
            FRESH_MS
        };
        let answer = NetworkTotals {
            slots: self
                .totals
                .range(slot_of(now_ms.saturating_sub(since))..=newest_settled_slot(now_ms))
                .filter(|(slot, held)| match holds.get(slot) {
                    Some(digest) => *digest != held.digest,
                    // Totals a peer lacks go only to this node's children: anyone else
                    // could ask again and again for minutes of totals with a few bytes.
                    None => !report.only_held && is_child,
                })
                .map(|(_, held)| held.figures.clone())
                .collect(),
            have: self
                .children
                .get(&from)
                .map(|slots| {
                    slots
                        .iter()
                        .map(|(slot, held)| SlotDigest {
                            slot_ms: *slot,
                            digest: held.digest,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        (accepted, answer)
    }

    fn check_child(
        &self,
        from: NodeId,
        figures: &SlotFigures,
        trees: &[Tree],
    ) -> Result<(), Refused> {
        let tree = trees
            .iter()
            .find(|t| t.epoch == epoch_of(figures.slot_ms))
            .ok_or(Refused::NotAChild)?;
        if tree.parent(&from) != Some(self.me) {
            return Err(Refused::NotAChild);
        }
        if usize::try_from(figures.nodes).unwrap_or(usize::MAX) > tree.subtree_size(&from) {
            return Err(Refused::TooManyNodes);
        }
        if figures.scopes.len() > MAX_SCOPES {
            return Err(Refused::TooManyScopes);
        }
        Ok(())
    }

    /// Takes the answer of `parent` to this node's report. Totals outside the kept range,
    /// in the future, or with more scopes than allowed are skipped; returns how many were
    /// taken.
    pub fn accept_answer(&mut self, parent: NodeId, answer: NetworkTotals, now_ms: u64) -> usize {
        let has = answer
            .have
            .iter()
            .take(MAX_HAVE)
            .map(|h| (h.slot_ms, h.digest))
            .collect();
        self.parent_has = Some((parent, has));
        let oldest_kept = now_ms.saturating_sub(RETAIN_MS);
        let newest = slot_of(now_ms);
        let mut taken = 0;
        for figures in answer.slots {
            if figures.slot_ms % SLOT_MS != 0
                || figures.slot_ms < oldest_kept
                || figures.slot_ms > newest
                || figures.scopes.len() > MAX_SCOPES
                || self.corrected.contains(&figures.slot_ms)
            {
                continue;
            }
            self.totals.insert(figures.slot_ms, Held::new(figures));
            taken += 1;
        }
        taken
    }

    /// The settled slots of the `window_ms` that ends where settled totals end
    /// ([`Aggregator::settled_until`]), oldest first.
    fn settled_window(&self, window_ms: u64, now_ms: u64) -> impl Iterator<Item = (&u64, &Held)> {
        let end = self.settled_until(now_ms);
        let from = end.saturating_sub(window_ms);
        self.totals.range(from..end)
    }

    /// Where settled totals end at `now_ms` (the end of the newest settled slot): windows
    /// and series of tree totals describe the time up to there, 10 to 20 s before now.
    pub fn settled_until(&self, now_ms: u64) -> u64 {
        newest_settled_slot(now_ms).saturating_add(SLOT_MS)
    }

    /// The network totals of the settled slots within `window_ms` before
    /// [`Aggregator::settled_until`].
    pub fn window(&self, window_ms: u64, now_ms: u64) -> WindowTotals {
        let mut scopes: BTreeMap<String, ScopeStats> = BTreeMap::new();
        for (_, held) in self.settled_window(window_ms, now_ms) {
            for (scope, stats) in &held.figures.scopes {
                scopes.entry(scope.clone()).or_default().merge(stats);
            }
        }
        WindowTotals { window_ms, scopes }
    }

    /// One scope's network totals per settled slot within `window_ms` before
    /// [`Aggregator::settled_until`], oldest first.
    pub fn series(&self, scope: &str, window_ms: u64, now_ms: u64) -> Vec<(u64, ScopeStats)> {
        self.settled_window(window_ms, now_ms)
            .filter_map(|(slot, held)| Some((*slot, held.figures.scopes.get(scope)?.clone())))
            .collect()
    }

    /// A request for a peer other than the parent, to check the final totals this node
    /// holds (slots final for at least a slot's length, so that honest nodes have had
    /// time to receive them): the peer answers with its totals where they differ.
    pub fn audit_request(&self, now_ms: u64) -> SubtreeReport {
        let (from, to) = audited_range(now_ms);
        SubtreeReport {
            slots: Vec::new(),
            holds: self
                .totals
                .range(from..to)
                .map(|(slot, held)| SlotDigest {
                    slot_ms: *slot,
                    digest: held.digest,
                })
                .collect(),
            only_held: true,
        }
    }

    /// The audited slots of which `answer` holds other totals than this node does.
    pub fn disagreements(&self, answer: &NetworkTotals, now_ms: u64) -> Vec<SlotFigures> {
        let (from, to) = audited_range(now_ms);
        answer
            .slots
            .iter()
            .filter(|figures| (from..to).contains(&figures.slot_ms))
            .filter(|figures| {
                self.totals
                    .get(&figures.slot_ms)
                    .is_some_and(|held| held.digest != figures.digest())
            })
            .cloned()
            .collect()
    }

    /// Replaces this node's total of a final slot with `figures`, which two other peers
    /// agreed on against the parent's. Returns false if the slot is not audited now.
    pub fn correct(&mut self, figures: SlotFigures, now_ms: u64) -> bool {
        let (from, to) = audited_range(now_ms);
        if !(from..to).contains(&figures.slot_ms) || figures.scopes.len() > MAX_SCOPES {
            return false;
        }
        self.corrected.insert(figures.slot_ms);
        self.totals.insert(figures.slot_ms, Held::new(figures));
        true
    }

    /// The network total of one slot as this node holds it.
    pub fn total(&self, slot_ms: u64) -> Option<&SlotFigures> {
        self.totals.get(&slot_ms).map(|held| &held.figures)
    }

    /// How many children's reports this node holds (for its status and metrics).
    pub fn reporting_children(&self) -> usize {
        self.children.len()
    }
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
