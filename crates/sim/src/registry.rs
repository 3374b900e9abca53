//! Registry anti-entropy at network scale.
//!
//! Every simulated node holds a real [`Registry`] (over an in-memory database, with the
//! policy every node enforces) and runs the real digest exchange with a random live peer
//! every interval, as the node's `registry-anti-entropy` worker does: the initiator is
//! [`Registry::sync_with`] itself, the responder [`Registry::handle_sync`]. Only the I/O
//! is modelled: each request and answer crosses a simulated link (the 5-region latency
//! matrix and loss of [`Links`]), its bytes are those of `xnode_wire::encode` plus the
//! framing estimates the membership simulation uses, and a lost message fails the round
//! after the node's sync timeout, as a call that never returns does.
//!
//! The simulation measures three things, in virtual time:
//!
//! - **steady state**: every registry holds the same entries; what a node sends and
//!   receives per second while nothing changes (a 16-byte root and a one-byte answer per
//!   round, whatever the registry holds);
//! - **spread by anti-entropy alone**: one node updates its record, and every other node
//!   is timed until it holds the new version. In the product, gossip and a direct push
//!   carry a write first; anti-entropy is what repairs a node that missed them, and this
//!   is how long that repair takes at worst, with no gossip at all;
//! - **catch-up**: a node with an empty registry joins and is timed until it holds every
//!   entry.
//!
//! Each registry holds every entry (as in the product), so memory grows with nodes times
//! entries: 1,000 nodes with 1,000 records each take about 2 GB. The steady-state cost per
//! node does not depend on either (the root is one hash); the spread takes a number of
//! rounds that grows with the logarithm of the number of nodes.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xnode_db::Db;
use xnode_registry::sync::{SyncError, SyncRequest, SyncResponse, SyncStats};
use xnode_registry::{DefaultPolicy, Entry, Registry, RegistryMetrics, Version};
use xnode_types::{HlcClock, NodeRecord, SecretKey};

use crate::net::{Links, REGIONS, REQUEST_FRAMING_BYTES, RESPONSE_FRAMING_BYTES};

/// How long a node waits for a sync answer (the node's `SYNC_TIMEOUT`).
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// What to simulate.
#[derive(Clone, Debug)]
pub struct RegistrySimConfig {
    /// Simulated nodes, each with its own registry.
    pub nodes: usize,
    /// Entries every registry holds at the start: one record per node (`node/<id>`, by
    /// that node) and, beyond the number of nodes, tenants' entries.
    pub entries: usize,
    /// Size of each entry's value (an encoded node record with an operator certificate is
    /// about 300 bytes).
    pub value_bytes: usize,
    /// How often each node starts a round (the node's `anti_entropy_interval`).
    pub interval: Duration,
    /// How long the unchanged network is measured.
    pub steady: Duration,
    /// How long the spread and the catch-up may take before the run gives up on them.
    pub limit: Duration,
    pub links: Links,
    pub seed: u64,
}

impl Default for RegistrySimConfig {
    fn default() -> Self {
        Self {
            nodes: 1_000,
            entries: 1_000,
            value_bytes: 300,
            interval: Duration::from_secs(2),
            steady: Duration::from_secs(60),
            limit: Duration::from_secs(300),
            links: Links {
                loss: 0.005,
                jitter: 0.2,
            },
            seed: 1,
        }
    }
}

/// Traffic of one phase: what each node sent and received per second.
#[derive(Clone, Debug, Default)]
pub struct PhaseTraffic {
    pub seconds: f64,
    pub rounds: u64,
    pub failed_rounds: u64,
    /// Per node, kbit/s: mean, p99 and max of sent, then the same of received.
    pub sent_kbit: [f64; 3],
    pub received_kbit: [f64; 3],
}

/// What the simulation found.
#[derive(Clone, Debug, Default)]
pub struct RegistryReport {
    pub config_nodes: usize,
    pub config_entries: usize,
    pub steady: PhaseTraffic,
    /// Seconds after the write until each node held the new version: p50, p99, max;
    /// `None` if some node did not within the limit.
    pub spread_seconds: Option<[f64; 3]>,
    pub spread_nodes_reached: usize,
    pub spread: PhaseTraffic,
    /// Seconds until a node that joined with an empty registry held every entry.
    pub catch_up_seconds: Option<f64>,
    /// Bytes that node received while catching up.
    pub catch_up_received_bytes: u64,
    /// Entries the newcomer held at the end of the run.
    pub catch_up_entries: usize,
}

/// Where a round's request or answer waits for the simulated link.
#[derive(Default)]
struct Mailbox {
    outgoing: Option<SyncRequest>,
    reply: Option<Result<SyncResponse, String>>,
}

type RoundFuture = Pin<Box<dyn Future<Output = Result<SyncStats, SyncError>>>>;

/// One anti-entropy round in flight: the initiator's real `sync_with`, suspended while
/// its request crosses the simulated network.
struct Round {
    initiator: usize,
    peer: usize,
    started_us: u64,
    mailbox: Rc<RefCell<Mailbox>>,
    future: RoundFuture,
    /// The request on its way, once taken from the mailbox.
    request: Option<SyncRequest>,
}

#[derive(Debug)]
enum Event {
    /// A node's interval fired: it starts a round if none is in flight.
    Tick { node: usize },
    /// A round's request reaches its peer.
    RequestArrives { round: usize },
    /// A round's answer (or its failure) reaches the initiator.
    ReplyArrives { round: usize, lost: bool },
}

struct Sim {
    config: RegistrySimConfig,
    rng: StdRng,
    registries: Vec<Arc<Registry>>,
    live: Vec<bool>,
    now_us: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<Option<Event>>,
    rounds: Vec<Option<Round>>,
    busy: Vec<bool>,
    sent: Vec<u64>,
    received: Vec<u64>,
    rounds_done: u64,
    rounds_failed: u64,
    /// The nodes whose registries the last event may have changed.
    touched: [usize; 2],
}

/// The nearest-rank percentile `p` (0 to 1) of sorted `values`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn region(node: usize) -> usize {
    node % REGIONS.len()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn encoded_len<T: xnode_wire::Versioned + serde::Serialize>(value: &T) -> u64 {
    xnode_wire::encode(value).map_or(0, |b| b.len() as u64)
}

fn open_registry() -> Arc<Registry> {
    let db = Db::in_memory().unwrap_or_else(|e| panic!("an in-memory database: {e}"));
    let registry = Registry::open(
        db,
        Arc::new(HlcClock::new()),
        Box::new(DefaultPolicy),
        RegistryMetrics::default(),
    )
    .unwrap_or_else(|e| panic!("a registry over an in-memory database: {e}"));
    Arc::new(registry)
}

impl Sim {
    fn schedule(&mut self, at_us: u64, event: Event) {
        self.seq += 1;
        let index = self.events.len();
        self.events.push(Some(event));
        self.queue.push(Reverse((at_us, self.seq, index)));
    }

    fn random_live_peer(&mut self, node: usize) -> Option<usize> {
        let live = self.live.iter().filter(|&&l| l).count();
        if live < 2 {
            return None;
        }
        loop {
            let peer = self.rng.gen_range(0..self.registries.len());
            if peer != node && self.live[peer] {
                return Some(peer);
            }
        }
    }

    fn start_round(&mut self, node: usize, peer: usize) {
        self.busy[node] = true;
        let mailbox = Rc::new(RefCell::new(Mailbox::default()));
        let registry = Arc::clone(&self.registries[node]);
        let outbox = Rc::clone(&mailbox);
        let future: RoundFuture = Box::pin(async move {
            registry
                .sync_with(true, move |request| {
                    outbox.borrow_mut().outgoing = Some(request);
                    Reply(Rc::clone(&outbox))
                })
                .await
        });
        let index = self.rounds.len();
        self.rounds.push(Some(Round {
            initiator: node,
            peer,
            started_us: self.now_us,
            mailbox,
            future,
            request: None,
        }));
        self.advance(index);
    }

    /// Polls a round's initiator until it sends its next request or ends.
    fn advance(&mut self, index: usize) {
        let Some(round) = self.rounds[index].as_mut() else {
            return;
        };
        let mut context = Context::from_waker(Waker::noop());
        match round.future.as_mut().poll(&mut context) {
            Poll::Ready(result) => {
                let (node, started) = (round.initiator, round.started_us);
                self.rounds[index] = None;
                self.busy[node] = false;
                self.rounds_done += 1;
                if result.is_err() {
                    self.rounds_failed += 1;
                }
                // The worker's interval ticker: the next round at the next tick, or at
                // once if this round overran it.
                let next = started
                    .saturating_add(micros(self.config.interval))
                    .max(self.now_us);
                self.schedule(next, Event::Tick { node });
            }
            Poll::Pending => {
                let Some(request) = round.mailbox.borrow_mut().outgoing.take() else {
                    return;
                };
                let (from, to) = (round.initiator, round.peer);
                let bytes = encoded_len(&request) + REQUEST_FRAMING_BYTES as u64;
                round.request = Some(request);
                match self.transmit(from, to, bytes) {
                    Some(at) => self.schedule(at, Event::RequestArrives { round: index }),
                    None => self.time_out(index),
                }
            }
        }
    }

    /// Counts a message of `bytes` from `from` to `to`; when it arrives, or `None` if the
    /// link lost it.
    fn transmit(&mut self, from: usize, to: usize, bytes: u64) -> Option<u64> {
        self.sent[from] += bytes;
        let delay = self
            .config
            .links
            .delay(region(from), region(to), &mut self.rng)?;
        self.received[to] += bytes;
        Some(self.now_us + micros(delay))
    }

    /// The round's initiator gives up on its call, as the node does after its timeout.
    fn time_out(&mut self, index: usize) {
        self.schedule(
            self.now_us + micros(SYNC_TIMEOUT),
            Event::ReplyArrives {
                round: index,
                lost: true,
            },
        );
    }

    fn on_request(&mut self, index: usize) {
        let Some(round) = self.rounds[index].as_mut() else {
            return;
        };
        let (from, to) = (round.initiator, round.peer);
        let Some(request) = round.request.take() else {
            return;
        };
        if !self.live[to] {
            self.time_out(index);
            return;
        }
        let response = self.registries[to].handle_sync(request);
        let bytes = encoded_len(&response) + RESPONSE_FRAMING_BYTES as u64;
        round.mailbox.borrow_mut().reply = Some(Ok(response));
        match self.transmit(to, from, bytes) {
            Some(at) => self.schedule(
                at,
                Event::ReplyArrives {
                    round: index,
                    lost: false,
                },
            ),
            None => self.time_out(index),
        }
    }

    fn on_reply(&mut self, index: usize, lost: bool) {
        if let Some(round) = self.rounds[index].as_mut()
            && lost
        {
            round.mailbox.borrow_mut().reply = Some(Err("the message was lost".into()));
        }
        self.advance(index);
    }

    /// Runs events until virtual time `until_us`, or until `done` says so after an event.
    fn run_until(&mut self, until_us: u64, mut done: impl FnMut(&Sim) -> bool) {
        while let Some(Reverse((at, _, index))) = self.queue.peek().copied() {
            if at > until_us {
                break;
            }
            self.queue.pop();
            self.now_us = at;
            let Some(event) = self.events[index].take() else {
                continue;
            };
            self.touched = match &event {
                Event::Tick { node } => [*node, *node],
                Event::RequestArrives { round } | Event::ReplyArrives { round, .. } => self
                    .rounds
                    .get(*round)
                    .and_then(Option::as_ref)
                    .map_or([0, 0], |r| [r.initiator, r.peer]),
            };
            match event {
                Event::Tick { node } => {
                    if self.live[node] && !self.busy[node] {
                        match self.random_live_peer(node) {
                            Some(peer) => self.start_round(node, peer),
                            None => self
                                .schedule(at + micros(self.config.interval), Event::Tick { node }),
                        }
                    }
                }
                Event::RequestArrives { round } => self.on_request(round),
                Event::ReplyArrives { round, lost } => self.on_reply(round, lost),
            }
            if done(self) {
                return;
            }
        }
        self.now_us = self.now_us.max(until_us);
    }

    fn traffic(&mut self, seconds: f64, nodes: usize) -> PhaseTraffic {
        let kbit = |bytes: &u64| *bytes as f64 * 8.0 / 1000.0 / seconds.max(1e-9);
        let summary = |values: &[u64]| {
            let mut rates: Vec<f64> = values.iter().take(nodes).map(kbit).collect();
            rates.sort_by(f64::total_cmp);
            let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
            [
                mean,
                percentile(&rates, 0.99),
                rates.last().copied().unwrap_or(0.0),
            ]
        };
        let out = PhaseTraffic {
            seconds,
            rounds: self.rounds_done,
            failed_rounds: self.rounds_failed,
            sent_kbit: summary(&self.sent),
            received_kbit: summary(&self.received),
        };
        self.sent.iter_mut().for_each(|b| *b = 0);
        self.received.iter_mut().for_each(|b| *b = 0);
        self.rounds_done = 0;
        self.rounds_failed = 0;
        out
    }
}

/// The future a round's `send` returns: ready once the simulated link brings the answer.
struct Reply(Rc<RefCell<Mailbox>>);

impl Future for Reply {
    type Output = Result<SyncResponse, String>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        match self.0.borrow_mut().reply.take() {
            Some(reply) => Poll::Ready(reply),
            None => Poll::Pending,
        }
    }
}

fn value(rng: &mut StdRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.r#gen()).collect()
}

/// Runs the simulation. Panics only on a broken set-up (a registry that refuses the
/// entries it was built with), never on what the simulated network does.
pub fn run(config: RegistrySimConfig) -> RegistryReport {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let nodes = config.nodes.max(2);
    let keys: Vec<SecretKey> = (0..nodes + 1)
        .map(|_| {
            SecretKey::from_seed(&rng.r#gen::<[u8; 32]>())
                .unwrap_or_else(|e| panic!("a key from a seed: {e}"))
        })
        .collect();
    let clock = HlcClock::new();
    let mut entries: Vec<Entry> = Vec::with_capacity(config.entries);
    for i in 0..config.entries {
        let (signer, key) = match keys.get(i).filter(|_| i < nodes) {
            Some(k) => (k.clone(), NodeRecord::registry_key(&k.node_id())),
            None => {
                let tenant = &keys[i % nodes];
                (
                    tenant.clone(),
                    format!("tenant/{}/sim/e{i}", tenant.public().to_hex()),
                )
            }
        };
        let entry = Entry::sign(
            &signer,
            key,
            Some(value(&mut rng, config.value_bytes)),
            clock.now(),
        )
        .unwrap_or_else(|e| panic!("signing an entry: {e}"));
        entries.push(entry);
    }
    // Every node holds every entry; the newcomer (the last registry) holds none.
    let mut registries = Vec::with_capacity(nodes + 1);
    for _ in 0..nodes {
        let registry = open_registry();
        for result in registry.apply_remote_many(entries.clone()) {
            if let Err(e) = result {
                panic!("a registry refused an entry it was built with: {e}");
            }
        }
        registries.push(registry);
    }
    registries.push(open_registry());
    let total = nodes + 1;
    let mut sim = Sim {
        rng: StdRng::seed_from_u64(config.seed ^ 0x5eed),
        registries,
        live: (0..total).map(|i| i < nodes).collect(),
        now_us: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        events: Vec::new(),
        rounds: Vec::new(),
        busy: vec![false; total],
        sent: vec![0; total],
        received: vec![0; total],
        rounds_done: 0,
        rounds_failed: 0,
        touched: [0, 0],
        config: config.clone(),
    };
    let interval = micros(config.interval);
    for node in 0..nodes {
        let first = sim.rng.gen_range(0..interval.max(1));
        sim.schedule(first, Event::Tick { node });
    }
    let mut report = RegistryReport {
        config_nodes: nodes,
        config_entries: config.entries,
        ..RegistryReport::default()
    };

    // Steady state: a warm-up of two intervals, then the measured window.
    sim.run_until(2 * interval, |_| false);
    sim.traffic(1.0, total);
    let steady_end = sim.now_us + micros(config.steady);
    sim.run_until(steady_end, |_| false);
    report.steady = sim.traffic(config.steady.as_secs_f64(), nodes);

    // Spread: node 0 updates its record; anti-entropy alone carries it.
    let written_at = sim.now_us;
    let key = NodeRecord::registry_key(&keys[0].node_id());
    let written: Version = sim.registries[0]
        .put(&keys[0], &key, value(&mut sim.rng, config.value_bytes))
        .unwrap_or_else(|e| panic!("node 0 writing its record: {e}"))
        .version();
    let holds = |sim: &Sim, node: usize| {
        sim.registries[node]
            .get_any(&key)
            .is_some_and(|e| e.version() >= written)
    };
    let mut reached: Vec<Option<u64>> = (0..nodes).map(|n| (n == 0).then_some(0)).collect();
    let limit = micros(config.limit);
    let mut unreached = nodes - 1;
    sim.run_until(written_at + limit, |sim| {
        // Only the two ends of the round that just moved can have changed.
        for node in sim.touched {
            if node < nodes && reached[node].is_none() && holds(sim, node) {
                reached[node] = Some(sim.now_us - written_at);
                unreached -= 1;
            }
        }
        unreached == 0
    });
    let spread_seconds = (sim.now_us - written_at) as f64 / 1e6;
    report.spread = sim.traffic(spread_seconds, nodes);
    report.spread_nodes_reached = reached.iter().filter(|r| r.is_some()).count();
    if report.spread_nodes_reached == nodes {
        let mut times: Vec<f64> = reached
            .iter()
            .flatten()
            .map(|&us| us as f64 / 1e6)
            .collect();
        times.sort_by(f64::total_cmp);
        report.spread_seconds = Some([
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.last().copied().unwrap_or(0.0),
        ]);
    }

    // Catch-up: a node with an empty registry joins and starts a round at once (the
    // worker runs one with every peer that connects).
    let newcomer = nodes;
    sim.live[newcomer] = true;
    let joined_at = sim.now_us;
    let held_by_all = config.entries;
    sim.schedule(joined_at, Event::Tick { node: newcomer });
    sim.run_until(joined_at + limit, |sim| {
        sim.registries[newcomer].entry_count() >= held_by_all
    });
    let entries_held = sim.registries[newcomer].entry_count();
    report.catch_up_entries = entries_held;
    report.catch_up_received_bytes = sim.received[newcomer];
    if entries_held >= held_by_all {
        report.catch_up_seconds = Some((sim.now_us - joined_at) as f64 / 1e6);
    }
    report
}

impl fmt::Display for RegistryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let traffic = |f: &mut fmt::Formatter<'_>, name: &str, t: &PhaseTraffic| {
            writeln!(
                f,
                "{name}: {:.1} s, {} rounds ({} failed); per node sent {:.2} / {:.2} / {:.2} kbit/s, received {:.2} / {:.2} / {:.2} (mean / p99 / max)",
                t.seconds,
                t.rounds,
                t.failed_rounds,
                t.sent_kbit[0],
                t.sent_kbit[1],
                t.sent_kbit[2],
                t.received_kbit[0],
                t.received_kbit[1],
                t.received_kbit[2],
            )
        };
        writeln!(
            f,
            "registry anti-entropy: {} nodes, {} entries in every registry",
            self.config_nodes, self.config_entries
        )?;
        traffic(f, "steady state", &self.steady)?;
        match self.spread_seconds {
            Some([p50, p99, max]) => writeln!(
                f,
                "spread of one write by anti-entropy alone: every node in {max:.1} s (p50 {p50:.1} s, p99 {p99:.1} s)"
            )?,
            None => writeln!(
                f,
                "spread of one write by anti-entropy alone: {} of {} nodes within the limit",
                self.spread_nodes_reached, self.config_nodes
            )?,
        }
        traffic(f, "during the spread", &self.spread)?;
        match self.catch_up_seconds {
            Some(s) => writeln!(
                f,
                "a newcomer with an empty registry held all {} entries after {s:.2} s ({} KiB received)",
                self.config_entries,
                self.catch_up_received_bytes / 1024
            ),
            None => writeln!(
                f,
                "a newcomer with an empty registry held {} of {} entries at the limit",
                self.catch_up_entries, self.config_entries
            ),
        }
    }
}
