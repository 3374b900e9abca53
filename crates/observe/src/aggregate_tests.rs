//! Tests of the observability tree: its shape, exact totals at every node under loss and
//! deaths, bounded fan-in, and the checks against hostile children and parents.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::*;
use crate::{PeerCounts, SystemStats};

fn node(n: u32) -> NodeId {
    let mut seed = [7u8; 32];
    seed[..4].copy_from_slice(&n.to_le_bytes());
    xnode_types::SecretKey::from_seed(&seed).unwrap().node_id()
}

/// A start time in the middle of an epoch, at a slot boundary.
const T0: u64 = 1_800_000_000_000 - 1_800_000_000_000 % EPOCH_MS + EPOCH_MS / 2;
const ROUND_MS: u64 = 2_000;

fn stats(requests: u64) -> ScopeStats {
    ScopeStats {
        requests,
        bytes_in: requests * 100,
        ..ScopeStats::default()
    }
}

/// One simulated node: its aggregator and the cumulative counters it gossips.
struct Sim {
    id: NodeId,
    aggregator: Aggregator,
    cumulative: BTreeMap<String, ScopeStats>,
    seq: u64,
}

impl Sim {
    fn new(id: NodeId) -> Self {
        Self {
            id,
            aggregator: Aggregator::new(id),
            cumulative: BTreeMap::new(),
            seq: 0,
        }
    }

    /// Serves `requests` in `scope` and folds the resulting summary in at `now`.
    fn serve(&mut self, scope: &str, requests: u64, now: u64) {
        self.cumulative
            .entry(scope.to_owned())
            .or_default()
            .merge(&stats(requests));
        self.seq += 1;
        let summary = NodeSummary {
            node: self.id,
            started_ms: T0 - 1,
            seq: self.seq,
            at_ms: now,
            system: SystemStats::default(),
            peers: PeerCounts::default(),
            active_tenants: 0,
            scopes: self.cumulative.clone(),
            peer_rtts: Vec::new(),
        };
        self.aggregator.record_own(&summary);
    }
}

struct Network {
    nodes: Vec<Sim>,
    rng: StdRng,
    /// Reports received per node in the last round.
    received: HashMap<NodeId, usize>,
    /// Drop every report with this probability.
    loss: f64,
    /// Drop every report of this node.
    silent: Option<NodeId>,
}

impl Network {
    fn new(n: u32, seed: u64) -> Self {
        Self {
            nodes: (0..n).map(|i| Sim::new(node(i))).collect(),
            rng: StdRng::seed_from_u64(seed),
            received: HashMap::new(),
            loss: 0.0,
            silent: None,
        }
    }

    fn trees(&self, now: u64) -> Vec<Tree> {
        epochs_at(now)
            .into_iter()
            .map(|epoch| Tree::new(epoch, self.nodes.iter().map(|s| s.id)))
            .collect()
    }

    /// Every node, in random order, sends its reports and takes the answers.
    fn round(&mut self, now: u64) {
        let trees = self.trees(now);
        self.received.clear();
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        order.shuffle(&mut self.rng);
        for i in order {
            let me = self.nodes[i].id;
            for out in self.nodes[i].aggregator.round(now, &trees) {
                if self.rng.gen_bool(self.loss) || self.silent == Some(me) {
                    continue;
                }
                let Some(p) = self.nodes.iter().position(|s| s.id == out.parent) else {
                    continue;
                };
                *self.received.entry(out.parent).or_default() += 1;
                let (_, answer) = self.nodes[p]
                    .aggregator
                    .accept_report(me, out.report, now, &trees);
                self.nodes[i]
                    .aggregator
                    .accept_answer(out.parent, answer, now);
            }
        }
    }
}

#[test]
fn every_member_but_the_root_has_one_parent_that_lists_it_among_its_children() {
    let tree = Tree::new(5, (0..10_000).map(node));
    assert_eq!(tree.len(), 10_000);
    assert_eq!(tree.depth(), 4);
    let root = tree.root().unwrap();
    assert_eq!(tree.parent(&root), None);
    assert_eq!(tree.subtree_size(&root), 10_000);
    let mut children_total = 0;
    for i in 0..10_000 {
        let id = node(i);
        let children = tree.children(&id);
        assert!(children.len() <= FANOUT);
        children_total += children.len();
        assert_eq!(
            tree.subtree_size(&id),
            1 + children.iter().map(|c| tree.subtree_size(c)).sum::<usize>()
        );
        if id != root {
            let parent = tree.parent(&id).unwrap();
            assert!(tree.children(&parent).contains(&id));
        }
    }
    assert_eq!(children_total, 9_999);
    assert_eq!(tree.parent(&node(20_000)), None);
    assert!(tree.children(&node(20_000)).is_empty());
    assert_eq!(tree.subtree_size(&node(20_000)), 0);
}

#[test]
fn each_epoch_ranks_the_members_anew() {
    let members: Vec<NodeId> = (0..1_000).map(node).collect();
    let roots: std::collections::HashSet<NodeId> = (0..20)
        .map(|epoch| Tree::new(epoch, members.iter().copied()).root().unwrap())
        .collect();
    assert!(
        roots.len() >= 15,
        "the root moves with the epoch: {} roots",
        roots.len()
    );
    // The ranking is a function of the epoch and the members alone.
    let a = Tree::new(3, members.iter().copied());
    let b = Tree::new(3, members.iter().rev().copied());
    assert_eq!(a.ranked, b.ranked);
}

/// Every node serves requests in the current slot for a minute, with rounds every two
/// seconds; `check` then compares every node's totals with the truth.
fn run_network(n: u32, seed: u64, loss: f64) -> (Network, BTreeMap<u64, u64>) {
    let mut net = Network::new(n, seed);
    net.loss = loss;
    let mut truth: BTreeMap<u64, u64> = BTreeMap::new();
    let mut now = T0;
    // Serve for 60 s, then keep rounding until the last busy slot is final everywhere.
    while now < T0 + 60_000 + FRESH_MS {
        if now < T0 + 60_000 {
            for i in 0..net.nodes.len() {
                let requests = net.rng.gen_range(0..5u64);
                let scope = format!("bucket:b{}", net.rng.gen_range(0..4u32));
                net.nodes[i].serve(&scope, requests, now);
                *truth.entry(slot_of(now)).or_default() += requests;
            }
        }
        net.round(now);
        now += ROUND_MS;
    }
    (net, truth)
}

fn requests(figures: &SlotFigures) -> u64 {
    figures.scopes.values().map(|s| s.requests).sum()
}

#[test]
fn every_node_learns_the_exact_network_total_of_every_slot() {
    let (net, truth) = run_network(300, 1, 0.0);
    for sim in &net.nodes {
        for (slot, expected) in &truth {
            let total = sim.aggregator.total(*slot).expect("every slot comes down");
            assert_eq!(total.nodes, 300, "slot {slot}");
            assert_eq!(requests(total), *expected, "slot {slot}");
        }
    }
    // Windows and series read the same totals.
    let now = T0 + 60_000 + FRESH_MS;
    let window = net.nodes[7].aggregator.window(3_600_000, now);
    let all: u64 = window.scopes.values().map(|s| s.requests).sum();
    assert_eq!(all, truth.values().sum::<u64>());
    let series = net.nodes[9].aggregator.series("bucket:b1", 3_600_000, now);
    assert_eq!(series.len(), truth.len());
}

#[test]
fn lost_reports_and_answers_are_made_up_by_later_rounds() {
    let (net, truth) = run_network(300, 2, 0.2);
    for sim in &net.nodes {
        for (slot, expected) in &truth {
            let total = sim.aggregator.total(*slot).expect("every slot comes down");
            assert_eq!(
                (total.nodes, requests(total)),
                (300, *expected),
                "slot {slot}"
            );
        }
    }
}

#[test]
fn a_node_receives_at_most_fanout_reports_a_round_whatever_the_network_size() {
    let mut net = Network::new(2_000, 3);
    let mut now = T0;
    for _ in 0..5 {
        for i in 0..net.nodes.len() {
            net.nodes[i].serve("api", 1, now);
        }
        net.round(now);
        now += ROUND_MS;
        let busiest = net.received.values().copied().max().unwrap_or(0);
        assert!(busiest <= FANOUT, "{busiest} reports");
    }
}

#[test]
fn when_an_inner_node_dies_its_subtree_reports_to_new_parents_and_is_counted_once() {
    let mut net = Network::new(300, 4);
    let mut now = T0;
    let serve_all = |net: &mut Network, now: u64| {
        for i in 0..net.nodes.len() {
            net.nodes[i].serve("api", 2, now);
        }
    };
    for _ in 0..10 {
        serve_all(&mut net, now);
        net.round(now);
        now += ROUND_MS;
    }
    // Remove a node with children (the root's first child).
    let tree = Tree::new(epoch_of(now), net.nodes.iter().map(|s| s.id));
    let victim = tree.children(&tree.root().unwrap())[0];
    assert!(!tree.children(&victim).is_empty());
    net.nodes.retain(|s| s.id != victim);
    // Slots that start after the death must count every survivor exactly once.
    let first_after = slot_of(now) + SLOT_MS;
    let end = first_after + 3 * SLOT_MS;
    while now < end + FRESH_MS {
        if now < end {
            serve_all(&mut net, now);
        }
        net.round(now);
        now += ROUND_MS;
    }
    // Slots that were still open at the death (`T0` and the next) lose the dead node's own
    // figures, which nobody else has, and count every survivor once: those that moved
    // report again to their new parents.
    let open_at_death = [T0, T0 + SLOT_MS];
    for slot in (first_after..end)
        .step_by(SLOT_MS as usize)
        .chain(open_at_death)
    {
        for sim in &net.nodes {
            let total = sim.aggregator.total(slot).unwrap();
            assert_eq!(total.nodes, 299, "slot {slot}");
            assert_eq!(
                requests(total),
                299 * 2 * (SLOT_MS / ROUND_MS),
                "slot {slot}"
            );
        }
    }
}

#[test]
fn a_report_is_taken_only_from_a_child_for_open_slots_and_within_its_subtree() {
    let members: Vec<NodeId> = (0..50).map(node).collect();
    let now = T0 + 5_000;
    let trees = vec![Tree::new(epoch_of(now), members.iter().copied())];
    let tree = &trees[0];
    let root = tree.root().unwrap();
    let child = tree.children(&root)[0];
    let stranger = node(999);
    let mut aggregator = Aggregator::new(root);
    let figures = |slot_ms: u64, nodes: u32| SlotFigures {
        slot_ms,
        nodes,
        scopes: BTreeMap::from([("api".to_owned(), stats(3))]),
    };
    let report = |slots: Vec<SlotFigures>| SubtreeReport {
        slots,
        holds: Vec::new(),
        only_held: false,
    };
    let slot = slot_of(now);
    let size = u32::try_from(tree.subtree_size(&child)).unwrap();
    let cases = [
        (stranger, figures(slot, 1), Refused::NotAChild),
        (child, figures(slot + SLOT_MS, 1), Refused::NotOpen),
        (child, figures(slot - OPEN_MS, 1), Refused::NotOpen),
        (child, figures(slot, size + 1), Refused::TooManyNodes),
    ];
    for (from, figures, why) in cases {
        let (accepted, _) = aggregator.accept_report(from, report(vec![figures]), now, &trees);
        assert_eq!(
            accepted,
            Accepted {
                slots: 0,
                refused: Some(why)
            }
        );
    }
    let mut crowded = figures(slot, 1);
    for i in 0..=MAX_SCOPES {
        crowded.scopes.insert(format!("s{i}"), stats(1));
    }
    let (accepted, _) = aggregator.accept_report(child, report(vec![crowded]), now, &trees);
    assert_eq!(accepted.refused, Some(Refused::TooManyScopes));
    let (accepted, answer) = aggregator.accept_report(
        child,
        report(vec![figures(slot, size), figures(slot, size)]),
        now,
        &trees,
    );
    assert_eq!(
        accepted,
        Accepted {
            slots: 1,
            refused: Some(Refused::Repeated)
        }
    );
    assert_eq!(answer.have.len(), 1);
    // The root's total counts the child's subtree once, and itself.
    aggregator.round(now, &trees);
    let total = aggregator.total(slot).unwrap();
    assert_eq!((total.nodes, requests(total)), (size + 1, 3));
}

#[test]
fn totals_from_a_parent_outside_the_kept_range_or_crowded_are_skipped() {
    let now = T0 + 5_000;
    let mut aggregator = Aggregator::new(node(1));
    let figures = |slot_ms: u64| SlotFigures {
        slot_ms,
        nodes: 3,
        scopes: BTreeMap::new(),
    };
    let mut crowded = figures(slot_of(now));
    for i in 0..=MAX_SCOPES {
        crowded.scopes.insert(format!("s{i}"), stats(1));
    }
    let answer = NetworkTotals {
        slots: vec![
            figures(slot_of(now)),
            figures(slot_of(now) + SLOT_MS),
            figures(slot_of(now) - RETAIN_MS - SLOT_MS),
            figures(slot_of(now) + 1),
            crowded,
        ],
        have: Vec::new(),
    };
    assert_eq!(aggregator.accept_answer(node(2), answer, now), 1);
}

#[test]
fn crowded_figures_fold_their_smallest_scopes_into_other_and_keep_the_sum() {
    let mut figures = SlotFigures::empty(0);
    for i in 0..100u64 {
        figures
            .scopes
            .insert(format!("bucket:{i:03}"), stats(i + 1));
    }
    let before: u64 = requests(&figures);
    figures.cap_scopes();
    assert_eq!(figures.scopes.len(), MAX_SCOPES);
    assert_eq!(requests(&figures), before);
    assert!(figures.scopes.contains_key("bucket:099"));
    assert!(!figures.scopes.contains_key("bucket:000"));
    assert_eq!(figures.scopes[OTHER].requests, (1..=37).sum::<u64>());
}

#[test]
fn reports_and_answers_round_trip_on_the_wire() {
    let report = SubtreeReport {
        slots: vec![SlotFigures {
            slot_ms: T0,
            nodes: 4,
            scopes: BTreeMap::from([("api".to_owned(), stats(9))]),
        }],
        holds: vec![SlotDigest {
            slot_ms: T0,
            digest: 42,
        }],
        only_held: false,
    };
    let bytes = xnode_wire::encode(&report).unwrap();
    let back: SubtreeReport = xnode_wire::decode(&bytes, MAX_AGGREGATE_BYTES).unwrap();
    assert_eq!(back, report);
    assert!(xnode_wire::decode::<NetworkTotals>(&bytes, MAX_AGGREGATE_BYTES).is_err());
}

#[test]
fn an_audit_finds_a_final_total_the_parent_misstated_and_another_peer_corrects_it() {
    let (mut net, truth) = run_network(300, 5, 0.0);
    // Audit while the served slots are final and still fresh.
    let now = T0 + 60_000 + OPEN_MS + 5_000;
    let trees = net.trees(now);
    let slot = T0 + SLOT_MS;
    // A lying parent tells node 0 the slot served ten times what it did.
    let mut lie = net.nodes[0].aggregator.total(slot).unwrap().clone();
    for stats in lie.scopes.values_mut() {
        stats.requests *= 10;
    }
    let liar = net.nodes[1].id;
    let lie_answer = NetworkTotals {
        slots: vec![lie],
        have: Vec::new(),
    };
    assert_eq!(
        net.nodes[0].aggregator.accept_answer(liar, lie_answer, now),
        1
    );
    assert_ne!(
        requests(net.nodes[0].aggregator.total(slot).unwrap()),
        truth[&slot]
    );

    // An honest peer agrees on every other audited slot and names this one only.
    let audit = net.nodes[0].aggregator.audit_request(now);
    assert!(audit.only_held && audit.slots.is_empty());
    assert!(
        truth
            .keys()
            .all(|slot| audit.holds.iter().any(|h| h.slot_ms == *slot)),
        "every served slot is audited"
    );
    let me = net.nodes[0].id;
    let (_, answer) = net.nodes[2]
        .aggregator
        .accept_report(me, audit, now, &trees);
    assert_eq!(answer.slots.len(), 1, "only the misstated slot comes back");
    let found = net.nodes[0].aggregator.disagreements(&answer, now);
    assert_eq!(found.len(), 1);
    assert!(net.nodes[0].aggregator.correct(found[0].clone(), now));
    assert_eq!(
        requests(net.nodes[0].aggregator.total(slot).unwrap()),
        truth[&slot]
    );

    // The parent cannot undo the correction by sending its figures again.
    let mut again = found[0].clone();
    for stats in again.scopes.values_mut() {
        stats.requests *= 10;
    }
    let again = NetworkTotals {
        slots: vec![again],
        have: Vec::new(),
    };
    assert_eq!(net.nodes[0].aggregator.accept_answer(liar, again, now), 0);
    assert_eq!(
        requests(net.nodes[0].aggregator.total(slot).unwrap()),
        truth[&slot]
    );

    // Once it agrees, an audit comes back empty; open slots are never audited.
    let audit = net.nodes[0].aggregator.audit_request(now);
    let (_, answer) = net.nodes[3]
        .aggregator
        .accept_report(me, audit, now, &trees);
    assert!(answer.slots.is_empty());
    let open = SlotFigures::empty(slot_of(now));
    assert!(!net.nodes[0].aggregator.correct(open, now));
}

#[test]
fn a_node_that_holds_nothing_is_sent_five_minutes_of_totals() {
    let mut net = Network::new(20, 6);
    let mut now = T0;
    while now < T0 + 8 * 60_000 {
        for i in 0..net.nodes.len() {
            net.nodes[i].serve("api", 1, now);
        }
        net.round(now);
        now += ROUND_MS;
    }
    let trees = net.trees(now);
    let root = trees[0].root().unwrap();
    let at = net.nodes.iter().position(|s| s.id == root).unwrap();
    // A child of the root that restarted: it holds nothing.
    let newcomer = trees[0].children(&root)[0];
    let stranger = node(1_000);
    let ask = |holds: Vec<SlotDigest>| SubtreeReport {
        slots: Vec::new(),
        holds,
        only_held: false,
    };
    let (_, answer) =
        net.nodes[at]
            .aggregator
            .accept_report(newcomer, ask(Vec::new()), now, &trees);
    let oldest = answer.slots.iter().map(|f| f.slot_ms).min().unwrap();
    // Only settled slots go down: the root holds the filling ones but does not send them.
    let newest = answer.slots.iter().map(|f| f.slot_ms).max().unwrap();
    assert_eq!(newest, newest_settled_slot(now));
    assert!(
        net.nodes[at]
            .aggregator
            .total(slot_of(now - ROUND_MS))
            .is_some()
    );
    assert!(oldest <= now - NEWCOMER_MS + SLOT_MS, "{}", now - oldest);
    // A stranger asking the same is sent nothing: a few bytes must not buy minutes of totals.
    let (_, answer) =
        net.nodes[at]
            .aggregator
            .accept_report(stranger, ask(Vec::new()), now, &trees);
    assert!(answer.slots.is_empty());
    // A node that holds recent totals is sent only what differs among the fresh ones.
    let held = net.nodes[at].aggregator.audit_request(now).holds;
    let (_, answer) = net.nodes[at]
        .aggregator
        .accept_report(newcomer, ask(held), now, &trees);
    assert!(
        answer
            .slots
            .iter()
            .all(|f| f.slot_ms >= now - FRESH_MS - SLOT_MS)
    );
}

#[test]
fn a_slot_missing_a_subtree_stays_open_past_a_minute_for_it() {
    let mut net = Network::new(50, 7);
    let trees = net.trees(T0);
    let late = trees[0].children(&trees[0].root().unwrap())[0];
    let subtree = u32::try_from(trees[0].subtree_size(&late)).unwrap();
    let root = trees[0].root().unwrap();
    let at = net.nodes.iter().position(|s| s.id == root).unwrap();
    net.silent = Some(late);
    let mut now = T0;
    // Every node serves in the first slot; the late subtree reports nothing for 75 s.
    while now < T0 + 75_000 {
        if now < T0 + SLOT_MS {
            for i in 0..net.nodes.len() {
                net.nodes[i].serve("api", 1, now);
            }
        }
        net.round(now);
        now += ROUND_MS;
    }
    let short = net.nodes[at].aggregator.total(T0).unwrap().nodes;
    assert_eq!(short, 50 - subtree);
    net.silent = None;
    while now < T0 + OPEN_MS {
        net.round(now);
        now += ROUND_MS;
    }
    let total = net.nodes[at].aggregator.total(T0).unwrap();
    assert_eq!(total.nodes, 50);
    assert_eq!(requests(total), 50 * (SLOT_MS / ROUND_MS));
    // A complete slot closes at a minute: the next slot (nobody served in it) is closed
    // now and stays so.
    assert!(T0 + SLOT_MS + COMPLETE_AFTER_MS <= now);
}

#[test]
fn a_slot_that_reaches_its_limit_short_closes_with_its_last_complete_total() {
    let mut net = Network::new(50, 9);
    let trees = net.trees(T0);
    let root = trees[0].root().unwrap();
    let late = trees[0].children(&root)[0];
    let at = net.nodes.iter().position(|s| s.id == root).unwrap();
    let mut now = T0;
    while now < T0 + 100_000 {
        if now < T0 + SLOT_MS {
            for i in 0..net.nodes.len() {
                net.nodes[i].serve("api", 1, now);
            }
        }
        // A subtree drops out (say churn moved it and it has yet to report again) after
        // the slot was complete and settled, and stays out until the slot's limit.
        if now == T0 + 40_000 {
            net.silent = Some(late);
            let parent = net.nodes.iter().position(|s| s.id == root).unwrap();
            // Its parent forgets it, as a parent whose tree moved it elsewhere would.
            net.nodes[parent].aggregator.children.remove(&late);
        }
        net.round(now);
        now += ROUND_MS;
    }
    let total = net.nodes[at].aggregator.total(T0).unwrap();
    assert_eq!(total.nodes, 50);
    assert_eq!(requests(total), 50 * (SLOT_MS / ROUND_MS));
}
