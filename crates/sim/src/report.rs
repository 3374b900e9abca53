//! What a simulation run found: convergence times, traffic per node, how exact and how
//! fast the aggregated network totals were, key movement, and what the run cost the
//! machine.

use std::fmt;

use crate::net::{CLASSES, Class};
use crate::placement::PlacementReport;

/// Percentiles of a set of samples; missing samples (never converged) count as infinite.
#[derive(Clone, Debug, Default)]
pub struct Spread {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if values.is_empty() {
                return f64::NAN;
            }
            let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            values.get(rank - 1).copied().unwrap_or(f64::NAN)
        };
        Self {
            samples: values.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: values.last().copied().unwrap_or(f64::NAN),
        }
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.3}  p99 {:.3}  max {:.3}  (n={})",
            self.p50, self.p99, self.max, self.samples
        )
    }
}

/// How long the other nodes took to learn of one kind of change, in seconds from the
/// change, over every observer of every such change.
#[derive(Clone, Debug, Default)]
pub struct Convergence {
    pub events: usize,
    /// For a death: the first suspicion; for a join: the node is known.
    pub first: Spread,
    /// For a death: declared dead; for a join: the same as `first`.
    pub settled: Spread,
    /// Observers that had not settled when the observation window closed.
    pub unconverged: usize,
}

/// Bytes per node per second in the steady-state window.
#[derive(Clone, Debug, Default)]
pub struct TrafficReport {
    pub seconds: f64,
    /// Sent, kbit/s per node, over nodes.
    pub sent_kbit: Spread,
    /// Received, kbit/s per node, over nodes.
    pub received_kbit: Spread,
    /// The same, membership's classes only (probes, push-pull, gossip): what the
    /// membership's bound of 50 kbit/s per node is about.
    pub membership_sent_kbit: Spread,
    pub membership_received_kbit: Spread,
    /// Mean kbit/s sent per node, by class (probe, push-pull, gossip, aggregation).
    pub mean_sent_kbit_by_class: [f64; CLASSES],
    /// Updates published to gossip in the window, network-wide: suspicions, deaths,
    /// signed records (refutations, joins, departures).
    pub published: Published,
}

/// Updates published to gossip, by kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct Published {
    pub suspicions: u64,
    pub deaths: u64,
    pub records: u64,
}

/// Everything one run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub nodes: usize,
    pub virtual_seconds: f64,
    pub wall_seconds: f64,
    pub bootstrap_wall_seconds: f64,
    /// Peak resident memory of the process, MiB (from /proc; 0 where unavailable).
    pub peak_rss_mib: f64,
    pub steady: TrafficReport,
    pub deaths: Convergence,
    /// Gossip sent per node for one death (suspicions, confirmations, deaths), KiB.
    pub death_gossip_kib_per_node: f64,
    pub joins: Convergence,
    /// Live nodes some live node held as dead at the end.
    pub false_deaths: usize,
    /// Members per node at the end, over live nodes (MAX_MEMBERS caps it).
    pub members_per_node: Spread,
    pub placement: Option<PlacementReport>,
    /// Summary aggregation, when simulated.
    pub aggregation: Option<AggregationReport>,
}

/// Summary aggregation: its traffic in the steady window, the size of its messages, and
/// how exact and how soon the network totals were.
#[derive(Clone, Debug, Default)]
pub struct AggregationReport {
    pub round_seconds: f64,
    /// Aggregation bytes per node in the steady window, kbit/s, framing included.
    pub sent_kbit: Spread,
    pub received_kbit: Spread,
    pub mean_sent_kbit: f64,
    pub mean_received_kbit: f64,
    /// Reports a node received per round in the steady window: the mean over nodes, and
    /// the busiest node's (a parent has at most `FANOUT` children).
    pub reports_received_per_round_mean: f64,
    pub reports_received_per_round_max: f64,
    /// Reports sent over the run, and those of which the parent refused a slot (it did
    /// not hold the sender as its child: views differ for a while after a change).
    pub reports: u64,
    pub refused_reports: u64,
    /// Audits over the run (every fifth round a node asks a random member for the final
    /// totals it holds otherwise): requests, bytes (requests and answers, framing
    /// included), slots found to differ, and totals corrected because a second member
    /// agreed.
    pub audit_requests: u64,
    pub audit_bytes: u64,
    pub audit_disagreements: u64,
    pub audit_corrections: u64,
    /// Bytes per message over the run, framing included.
    pub largest_report_bytes: usize,
    pub largest_answer_bytes: usize,
    pub mean_report_bytes: f64,
    pub mean_answer_bytes: f64,
    /// Final slots during whose open minute no node died or joined.
    pub quiet: SlotsOutcome,
    /// Final slots open while a node died or joined: the dead node's own figures are lost
    /// by design, and a joining node counts in `nodes` of every slot still open.
    pub disturbed: SlotsOutcome,
    /// Seconds after a quiet slot ended at which each node first held its exact total,
    /// over nodes and quiet slots (never: infinite).
    pub exact_after: Spread,
    /// Every final slot, oldest first.
    pub slots: Vec<SlotOutcome>,
    /// Distinct views (member sets) whose trees were built, and the most held at once.
    pub views_built: u64,
    pub views_peak: usize,
    /// Rebuilds whose members differed from what the state changes said (should be 0).
    pub tracking_misses: u64,
    /// Live nodes whose trees did not match their view at the end (should be 0).
    pub stale_views: usize,
}

/// How exact a class of slots was, over the nodes that should hold them (live at the end
/// and present when the slot started).
#[derive(Clone, Copy, Debug, Default)]
pub struct SlotsOutcome {
    pub slots: usize,
    /// Slots that some node held with a total other than the truth, or not at all.
    pub inexact_slots: usize,
    /// Slots that some node held with a total that is neither the truth nor what deaths
    /// and joins make of it by design, or not at all: a subtree missed or counted twice
    /// because views differed when the slot closed, or a death's or a join's effect that
    /// reached the root only after the slot closed.
    pub unexplained_slots: usize,
    /// Node-slot pairs judged, those exact, and those off by exactly what deaths and
    /// joins change by design.
    pub holders: usize,
    pub exact: usize,
    pub as_designed: usize,
}

impl SlotsOutcome {
    pub fn exact_fraction(&self) -> f64 {
        if self.holders == 0 {
            return f64::NAN;
        }
        self.exact as f64 / self.holders as f64
    }
}

/// One final slot: the truth and what the nodes held.
#[derive(Clone, Copy, Debug, Default)]
pub struct SlotOutcome {
    /// Start of the slot, virtual seconds.
    pub start_s: u64,
    pub disturbed: bool,
    pub truth_requests: u64,
    pub truth_nodes: u32,
    /// What deaths and joins may change by design: the own figures (requests, nodes) of
    /// the nodes that died while the slot was open, and the nodes that took their place
    /// while it was open without having served in it (each counts in `nodes` if it
    /// reported before the root closed the slot).
    pub design_lost_requests: u64,
    pub design_lost_nodes: u32,
    pub design_added_nodes: u32,
    pub holders: usize,
    pub exact: usize,
    /// Nodes whose total is not the truth but is explained by some of those deaths and
    /// joins.
    pub as_designed: usize,
    /// Nodes that held no total of the slot.
    pub missing: usize,
    /// The least and the most any node held.
    pub held_requests: (u64, u64),
    pub held_nodes: (u32, u32),
}

impl fmt::Display for AggregationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "summary aggregation (a round every {:.0} s), steady window, kbit/s per node, framing included:",
            self.round_seconds
        )?;
        writeln!(
            f,
            "  sent                     {}; mean {:.2}",
            self.sent_kbit, self.mean_sent_kbit
        )?;
        writeln!(
            f,
            "  received                 {}; mean {:.2}",
            self.received_kbit, self.mean_received_kbit
        )?;
        writeln!(
            f,
            "  reports received/round   mean {:.2}, busiest node {:.2}",
            self.reports_received_per_round_mean, self.reports_received_per_round_max
        )?;
        writeln!(
            f,
            "  message bytes            report mean {:.0}, largest {}; answer mean {:.0}, largest {}",
            self.mean_report_bytes,
            self.largest_report_bytes,
            self.mean_answer_bytes,
            self.largest_answer_bytes
        )?;
        writeln!(
            f,
            "  reports refused in part  {} of {}",
            self.refused_reports, self.reports
        )?;
        writeln!(
            f,
            "  audits                   {} requests, {:.0} bytes each with the answer; {} slots disagreed, {} corrected",
            self.audit_requests,
            self.audit_bytes as f64 / self.audit_requests.max(1) as f64,
            self.audit_disagreements,
            self.audit_corrections
        )?;
        writeln!(
            f,
            "  trees                    {} views built, at most {} held at once; stale {}, tracking misses {}",
            self.views_built, self.views_peak, self.stale_views, self.tracking_misses
        )?;
        for (name, class) in [
            ("quiet slots", &self.quiet),
            ("slots open at a death/join", &self.disturbed),
        ] {
            writeln!(
                f,
                "  {name:<26} {} final, {} inexact ({} otherwise than by design); exact at {} of {} node-slots ({:.4}), as designed at {}",
                class.slots,
                class.inexact_slots,
                class.unexplained_slots,
                class.exact,
                class.holders,
                class.exact_fraction(),
                class.as_designed
            )?;
        }
        writeln!(
            f,
            "  exact total held, s after a quiet slot's end: {}",
            self.exact_after
        )?;
        for slot in &self.slots {
            // What the nodes held, as the least and the most off the truth.
            let off = |held: u64, truth: u64| held as i128 - truth as i128;
            let nodes = |n: u32| u64::from(n);
            writeln!(
                f,
                "    slot at {:>5} s {:<11} truth {} requests, {} nodes; by design -{} requests, -{}/+{} nodes; held {:+}..{:+} requests, {:+}..{:+} nodes; exact at {} of {}, as designed at {}, none at {}",
                slot.start_s,
                if slot.disturbed {
                    "(disturbed)"
                } else {
                    "(quiet)"
                },
                slot.truth_requests,
                slot.truth_nodes,
                slot.design_lost_requests,
                slot.design_lost_nodes,
                slot.design_added_nodes,
                off(
                    slot.held_requests.0.min(slot.held_requests.1),
                    slot.truth_requests
                ),
                off(slot.held_requests.1, slot.truth_requests),
                off(
                    nodes(slot.held_nodes.0.min(slot.held_nodes.1)),
                    nodes(slot.truth_nodes)
                ),
                off(nodes(slot.held_nodes.1), nodes(slot.truth_nodes)),
                slot.exact,
                slot.holders,
                slot.as_designed,
                slot.missing
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "nodes                      {}", self.nodes)?;
        writeln!(
            f,
            "virtual time               {:.1} s (wall {:.1} s, of which bootstrap {:.1} s; peak RSS {:.0} MiB)",
            self.virtual_seconds, self.wall_seconds, self.bootstrap_wall_seconds, self.peak_rss_mib
        )?;
        writeln!(f, "members per node           {}", self.members_per_node)?;
        writeln!(
            f,
            "steady state ({:.0} s), kbit/s per node, framing included:",
            self.steady.seconds
        )?;
        writeln!(f, "  sent                     {}", self.steady.sent_kbit)?;
        writeln!(
            f,
            "  received                 {}",
            self.steady.received_kbit
        )?;
        writeln!(
            f,
            "  sent, membership only    {}",
            self.steady.membership_sent_kbit
        )?;
        writeln!(
            f,
            "  received, membership     {}",
            self.steady.membership_received_kbit
        )?;
        for class in Class::ALL {
            writeln!(
                f,
                "  mean sent, {:<14} {:.1}",
                class.as_str(),
                self.steady.mean_sent_kbit_by_class[class.index()]
            )?;
        }
        let published = self.steady.published;
        writeln!(
            f,
            "  gossip published         {} suspicions, {} deaths, {} records (all nodes)",
            published.suspicions, published.deaths, published.records
        )?;
        writeln!(
            f,
            "death of a node ({} events), seconds:",
            self.deaths.events
        )?;
        writeln!(f, "  first suspicion known    {}", self.deaths.first)?;
        writeln!(f, "  death known              {}", self.deaths.settled)?;
        writeln!(f, "  not converged            {}", self.deaths.unconverged)?;
        writeln!(
            f,
            "  gossip sent per node     {:.1} KiB per death",
            self.death_gossip_kib_per_node
        )?;
        writeln!(f, "join of a node ({} events), seconds:", self.joins.events)?;
        writeln!(f, "  join known               {}", self.joins.settled)?;
        writeln!(f, "  not converged            {}", self.joins.unconverged)?;
        writeln!(f, "live nodes held dead       {}", self.false_deaths)?;
        if let Some(p) = &self.placement {
            writeln!(
                f,
                "placement ({} nodes, {} keys x {}): one leave moves {:.5} of replicas, one join {:.5} (1/N = {:.5}); keys touched by a leave {:.5}",
                p.nodes,
                p.keys,
                p.replicas,
                p.leave_moved,
                p.join_moved,
                1.0 / p.nodes.max(1) as f64,
                p.leave_keys_touched
            )?;
        }
        if let Some(aggregation) = &self.aggregation {
            write!(f, "{aggregation}")?;
        }
        Ok(())
    }
}

/// Peak resident memory of this process, MiB, from `/proc/self/status` (Linux).
pub fn peak_rss_mib() -> f64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0.0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}
