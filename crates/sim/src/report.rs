//! What a simulation run found: convergence times, traffic per node, key movement, and
//! what the run cost the machine.

use std::fmt;

use crate::net::Class;
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
    /// Mean kbit/s sent per node, by class (probe, push-pull, gossip).
    pub mean_sent_kbit_by_class: [f64; 3],
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
