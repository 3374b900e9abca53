//! A discrete-event simulation of the membership layer and summary aggregation at network
//! scale.
//!
//! Every simulated node runs the product's own SWIM state machine
//! ([`xnode_mesh::swim::Membership`], with signed liveness records verified as in
//! production), driven as the mesh driver drives it ([`node`]), and, unless turned off,
//! the product's summary aggregator ([`xnode_observe::aggregate::Aggregator`]) over trees
//! built from its own SWIM view, fed by a synthetic workload whose ground truth the
//! simulator keeps ([`observe`]). The transport is replaced by a simulated network
//! ([`net`]): per-message latency from a region matrix with jitter, random loss, and
//! gossip over a random gossipsub-like mesh. Time is virtual (the state machines take
//! `now` as an argument), so a run's results do not depend on how busy the machine is.
//! Bytes are counted from the real encoded messages plus an estimate of the transport's
//! framing. The real placement function is measured alongside ([`placement`]), and the
//! registry's anti-entropy runs in a simulation of its own over the same links
//! ([`registry`]: a real registry per node). See `docs/design/membership.md`,
//! "Simulation at scale".

pub mod net;
pub mod node;
pub mod observe;
pub mod placement;
pub mod registry;
pub mod report;

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use xnode_mesh::SwimConfig;
use xnode_mesh::swim::{Applied, MemberState, Membership, MembershipUpdate};
use xnode_types::{NodeId, SecretKey};

use net::{CLASSES, Class, Links, REGIONS, Traffic};
use node::{GossipMessage, Outgoing, Payload, SimNode};
use observe::Observer;
use report::{Convergence, Published, Report, Spread, TrafficReport};

/// The driver's tick (`crates/mesh/src/driver.rs`).
const TICK: Duration = Duration::from_millis(50);
const NETWORK: &str = "sim";

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: usize,
    pub links: Links,
    pub swim: SwimConfig,
    /// The product's default is 10 s (`MeshConfig::push_pull_interval`).
    pub push_pull_interval: Duration,
    /// Periodic push-pulls send the whole view, as before protocol 1.3 (and as with an
    /// older peer), instead of a digest first.
    pub full_push_pull: bool,
    /// Each node links to this many random others in the gossip mesh (so the mean degree
    /// is twice this; gossipsub aims at 6 to 12).
    pub gossip_links: usize,
    /// Time before traffic is counted.
    pub warmup: Duration,
    /// Length of the steady-state traffic window (no deaths or joins in it).
    pub steady: Duration,
    /// Deaths and joins, alternating, each observed for `settle`.
    pub deaths: usize,
    pub joins: usize,
    pub settle: Duration,
    /// Quiet time after the deaths and joins, so that the aggregation's slots that were
    /// open during them become final (a slot is open for a minute after it starts).
    pub tail: Duration,
    /// Every node runs summary aggregation (a round every 2 s) over its own view.
    pub observe: bool,
    /// Keys for the placement measurement (0 skips it).
    pub placement_keys: usize,
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 200,
            links: Links {
                loss: 0.005,
                jitter: 0.2,
            },
            swim: SwimConfig::default(),
            push_pull_interval: Duration::from_secs(10),
            full_push_pull: false,
            gossip_links: 3,
            warmup: Duration::from_secs(2),
            steady: Duration::from_secs(10),
            deaths: 2,
            joins: 2,
            settle: Duration::from_secs(6),
            tail: Duration::ZERO,
            observe: true,
            placement_keys: 2000,
            seed: 1,
        }
    }
}

enum Event {
    Tick(usize),
    /// A node's aggregation round.
    Observe(usize),
    Deliver {
        to: usize,
        from: NodeId,
        payload: Payload,
        bytes: usize,
        class: Class,
    },
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed, so the binary heap pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WatchKind {
    Death,
    Join,
}

/// First times (virtual µs) at which each observer saw the watched change.
struct Watch {
    kind: WatchKind,
    subject: NodeId,
    start: u64,
    first: HashMap<usize, u64>,
    settled: HashMap<usize, u64>,
}

/// The simulated world: nodes, the event queue, virtual time and the counters.
struct World {
    nodes: Vec<SimNode>,
    alive: Vec<bool>,
    index_of: HashMap<NodeId, usize>,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    now_us: u64,
    base: Instant,
    rng: StdRng,
    links: Links,
    traffic: Vec<Traffic>,
    counting: bool,
    /// Updates published to gossip while traffic is counted.
    published: Published,
    /// Gossip bytes sent by all nodes while a death is observed.
    death_gossip_bytes: u64,
    next_gossip: u64,
    watch: Option<Watch>,
    /// Summary aggregation, when simulated.
    observer: Option<Observer>,
    config: SimConfig,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn address(index: usize) -> String {
    format!(
        "/ip4/10.{}.{}.{}/udp/4001/quic-v1",
        (index >> 16) & 0xff,
        (index >> 8) & 0xff,
        index & 0xff
    )
}

impl World {
    fn now(&self) -> Instant {
        self.base + Duration::from_micros(self.now_us)
    }

    /// Starts or stops counting traffic (the steady window).
    fn set_counting(&mut self, counting: bool) {
        self.counting = counting;
        if let Some(observer) = self.observer.as_mut() {
            observer.set_counting(counting, self.now_us);
        }
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq = self.seq.wrapping_add(1);
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    /// A new node's table, its key and its random choices drawn from the run's seed, so
    /// that a run replays exactly.
    fn new_membership(&mut self) -> Membership {
        let key = SecretKey::from_seed(&self.rng.r#gen::<[u8; 32]>())
            .unwrap_or_else(|_| SecretKey::generate());
        let mut membership = Membership::new(key, NETWORK, 1, self.config.swim.clone());
        membership.seed_rng(self.rng.r#gen());
        membership.set_local_addresses(vec![address(self.nodes.len())]);
        membership
    }

    fn add_node(&mut self, membership: Membership) -> usize {
        let index = self.nodes.len();
        let interval = self.config.push_pull_interval;
        // Spread the nodes' first push-pulls over the interval they will use, which the
        // product scales with the size of the table.
        let scaled = xnode_mesh::swim::scaled_push_pull_interval(interval, self.config.nodes);
        let phase = Duration::from_secs_f64(self.rng.gen_range(0.0..scaled.as_secs_f64()));
        let node = SimNode::new(membership, index, interval, self.now(), phase);
        self.index_of.insert(node.id(), index);
        self.nodes.push(node);
        self.alive.push(true);
        self.traffic.push(Traffic::default());
        let offset = self.rng.gen_range(0..micros(TICK).max(1));
        self.schedule(self.now_us + offset, Event::Tick(index));
        if let Some(observer) = self.observer.as_mut()
            && let Some(id) = self.nodes.get(index).map(SimNode::id)
        {
            let first_round = observer.add_node(index, id, self.now_us);
            self.schedule(first_round, Event::Observe(index));
        }
        index
    }

    fn link_gossip(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        let (Some(ida), Some(idb)) = (
            self.nodes.get(a).map(SimNode::id),
            self.nodes.get(b).map(SimNode::id),
        ) else {
            return;
        };
        if let Some(node) = self.nodes.get_mut(a)
            && !node.mesh.contains(&idb)
        {
            node.mesh.push(idb);
        }
        if let Some(node) = self.nodes.get_mut(b)
            && !node.mesh.contains(&ida)
        {
            node.mesh.push(ida);
        }
    }

    fn random_live(&mut self, except: usize) -> Option<usize> {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| i != except && self.alive.get(i).copied().unwrap_or(false))
            .collect();
        live.choose(&mut self.rng).copied()
    }

    /// Sends what node `index` queued: its published gossip first, then its messages.
    fn flush(&mut self, index: usize) {
        let now = self.now();
        let Some(node) = self.nodes.get_mut(index) else {
            return;
        };
        for update in node.take_published() {
            if self.counting {
                let count = match update {
                    MembershipUpdate::Suspect { .. } => &mut self.published.suspicions,
                    MembershipUpdate::Dead { .. } => &mut self.published.deaths,
                    MembershipUpdate::Signed(_) => &mut self.published.records,
                };
                *count = count.saturating_add(1);
            }
            let Ok(encoded) = xnode_wire::encode(&update) else {
                continue;
            };
            self.next_gossip = self.next_gossip.wrapping_add(1);
            let message = Arc::new(GossipMessage {
                id: self.next_gossip,
                author: node.id(),
                update,
                bytes: encoded.len(),
            });
            node.first_sight(message.id, now);
            node.forward(&message, None);
        }
        let outgoing: Vec<Outgoing> = std::mem::take(&mut node.outbox);
        let changes = std::mem::take(&mut node.changes);
        if let Some(observer) = self.observer.as_mut() {
            observer.note_changes(index, &changes, self.now_us);
        }
        let from = node.id();
        let watching_death = self
            .watch
            .as_ref()
            .is_some_and(|w| w.kind == WatchKind::Death);
        for message in outgoing {
            if watching_death && message.class == Class::Gossip {
                self.death_gossip_bytes =
                    self.death_gossip_bytes.saturating_add(message.bytes as u64);
            }
            if self.counting
                && let Some(t) = self.traffic.get_mut(index)
            {
                t.add_sent(message.class, message.bytes);
            }
            let Some(&to) = self.index_of.get(&message.to) else {
                continue;
            };
            let Some(delay) =
                self.links
                    .delay(index % REGIONS.len(), to % REGIONS.len(), &mut self.rng)
            else {
                continue;
            };
            let at = self.now_us.saturating_add(micros(delay));
            let event = Event::Deliver {
                to,
                from,
                payload: message.payload,
                bytes: message.bytes,
                class: message.class,
            };
            self.schedule(at, event);
        }
        if let Some(watch) = self.watch.as_mut() {
            for (subject, state) in changes {
                if subject != watch.subject {
                    continue;
                }
                let hit = match (watch.kind, state) {
                    (WatchKind::Death, MemberState::Suspect) => Some(&mut watch.first),
                    (WatchKind::Death, MemberState::Dead) => Some(&mut watch.settled),
                    (WatchKind::Join, MemberState::Alive) => Some(&mut watch.settled),
                    _ => None,
                };
                if let Some(map) = hit {
                    map.entry(index).or_insert(self.now_us);
                }
            }
        }
    }

    fn dispatch(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::Tick(index) => {
                if !self.alive.get(index).copied().unwrap_or(false) {
                    return;
                }
                if let Some(node) = self.nodes.get_mut(index) {
                    node.tick(now, &mut self.rng, !self.config.full_push_pull);
                }
                self.flush(index);
                self.schedule(self.now_us.saturating_add(micros(TICK)), Event::Tick(index));
            }
            Event::Observe(index) => {
                // A dead node neither reports nor answers.
                if !self.alive.get(index).copied().unwrap_or(false) {
                    return;
                }
                if let Some(observer) = self.observer.as_mut()
                    && let Some(node) = self.nodes.get_mut(index)
                {
                    let reports = observer.round(index, node.membership(), self.now_us);
                    node.outbox.extend(reports);
                }
                self.flush(index);
                let next = self.now_us.saturating_add(micros(observe::ROUND));
                self.schedule(next, Event::Observe(index));
            }
            Event::Deliver {
                to,
                from,
                payload,
                bytes,
                class,
            } => {
                if !self.alive.get(to).copied().unwrap_or(false) {
                    return;
                }
                if self.counting
                    && let Some(t) = self.traffic.get_mut(to)
                {
                    t.add_received(class, bytes);
                }
                let Some(node) = self.nodes.get_mut(to) else {
                    return;
                };
                match payload {
                    Payload::Request { id, request } => node.on_request(from, id, request, now),
                    Payload::Response { id, response } => node.on_response(from, id, response, now),
                    Payload::Gossip(message) => {
                        if node.first_sight(message.id, now) {
                            // As the driver's gossip validation: forward news and old
                            // news alike, drop what the membership refused.
                            let applied = node.apply(&message.update, message.author, now);
                            if !matches!(applied, Applied::Refused(_)) {
                                node.forward(&message, Some(from));
                            }
                        }
                    }
                    Payload::Report(report) => {
                        if let Some(observer) = self.observer.as_mut()
                            && let Some(answer) = observer.on_report(to, from, report, self.now_us)
                        {
                            node.outbox.push(answer);
                        }
                    }
                    Payload::Totals { answer, audit } => {
                        if let Some(observer) = self.observer.as_mut()
                            && let Some(next) =
                                observer.on_answer(to, from, answer, audit, self.now_us)
                        {
                            node.outbox.push(next);
                        }
                    }
                }
                self.flush(to);
            }
        }
    }

    fn run_until(&mut self, until: u64) {
        while self.queue.peek().is_some_and(|s| s.at <= until) {
            let Some(next) = self.queue.pop() else {
                break;
            };
            self.now_us = next.at;
            self.dispatch(next.event);
        }
        self.now_us = until;
    }

    fn kill(&mut self, index: usize) {
        let Some(id) = self.nodes.get(index).map(SimNode::id) else {
            return;
        };
        if let Some(alive) = self.alive.get_mut(index) {
            *alive = false;
        }
        if let Some(observer) = self.observer.as_mut() {
            observer.kill(index, self.now_us);
        }
        // Its gossip peers notice the closed connections and leave it out of the mesh.
        for node in &mut self.nodes {
            node.mesh.retain(|peer| *peer != id);
        }
    }

    /// A new node: it learns the members from the registry, connects to a few peers,
    /// exchanges views with one and announces itself, as a starting node does.
    fn join(&mut self) -> usize {
        let mut membership = self.new_membership();
        let now = self.now();
        for (i, node) in self.nodes.iter().enumerate() {
            if self.alive.get(i).copied().unwrap_or(false) {
                let record = node.membership().local_record();
                membership.observe_vouched(
                    record.node,
                    &record.addresses,
                    record.incarnation,
                    false,
                    now,
                );
            }
        }
        let index = self.add_node(membership);
        if let Some(observer) = self.observer.as_mut() {
            observer.joined(index, self.now_us);
        }
        for _ in 0..self.config.gossip_links.max(1) {
            if let Some(peer) = self.random_live(index) {
                self.link_gossip(index, peer);
            }
        }
        if let Some(peer) = self
            .random_live(index)
            .and_then(|p| self.nodes.get(p).map(SimNode::id))
            && let Some(node) = self.nodes.get_mut(index)
        {
            node.push_pull(peer, now);
            let announcement = node.membership().local_announcement();
            node.broadcast(announcement);
        }
        self.flush(index);
        index
    }

    fn observe(
        &mut self,
        kind: WatchKind,
        subject: usize,
        settle: Duration,
        out: &mut Vec<(Option<f64>, Option<f64>)>,
    ) {
        let Some(id) = self.nodes.get(subject).map(SimNode::id) else {
            return;
        };
        let start = self.now_us;
        self.watch = Some(Watch {
            kind,
            subject: id,
            start,
            first: HashMap::new(),
            settled: HashMap::new(),
        });
        let observers: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| i != subject && self.alive.get(i).copied().unwrap_or(false))
            .collect();
        self.run_until(start.saturating_add(micros(settle)));
        let Some(watch) = self.watch.take() else {
            return;
        };
        let seconds = |at: Option<&u64>| at.map(|t| t.saturating_sub(watch.start) as f64 / 1e6);
        for i in observers {
            if self.alive.get(i).copied().unwrap_or(false) {
                out.push((seconds(watch.first.get(&i)), seconds(watch.settled.get(&i))));
            }
        }
    }
}

fn convergence(events: usize, samples: &[(Option<f64>, Option<f64>)]) -> Convergence {
    let first = samples
        .iter()
        .map(|(f, s)| f.or(*s).unwrap_or(f64::INFINITY))
        .collect();
    let settled = samples
        .iter()
        .map(|(_, s)| s.unwrap_or(f64::INFINITY))
        .collect();
    Convergence {
        events,
        first: Spread::of(first),
        settled: Spread::of(settled),
        unconverged: samples.iter().filter(|(_, s)| s.is_none()).count(),
    }
}

/// Runs one simulation and reports what it measured.
pub fn run(config: SimConfig) -> Report {
    let wall = std::time::Instant::now();
    let mut world = World {
        nodes: Vec::with_capacity(config.nodes + config.joins),
        alive: Vec::new(),
        index_of: HashMap::new(),
        queue: BinaryHeap::new(),
        seq: 0,
        now_us: 0,
        base: Instant::now(),
        rng: StdRng::seed_from_u64(config.seed),
        links: config.links.clone(),
        traffic: Vec::new(),
        counting: false,
        published: Published::default(),
        death_gossip_bytes: 0,
        next_gossip: 0,
        watch: None,
        observer: config.observe.then(|| Observer::new(config.seed)),
        config: config.clone(),
    };
    // Bootstrap: every node has heard every other directly (as after a while in a stable
    // network), so each holds and has verified every member's signed record.
    let memberships: Vec<Membership> = (0..config.nodes).map(|_| world.new_membership()).collect();
    // One copy of each record, shared by every table that holds it (as if each had
    // verified and kept the same bytes): at 10,000 nodes, a copy per table would be
    // 10^8 records.
    let mut records: Vec<Arc<_>> = memberships
        .iter()
        .map(|m| Arc::new(m.local_record().clone()))
        .collect();
    // In the table's order, so each new member goes at the end of its sorted vector
    // instead of moving the ones after it (10^8 inserts at 10,000 nodes).
    records.sort_by_key(|r| r.node);
    let now = world.now();
    for mut membership in memberships {
        // Room for the nodes that join later too: a table that outgrows its vector
        // doubles it, and 10,000 tables doing so at once left the old vectors as holes
        // the allocator kept (one run ran out of memory at 24 GiB).
        membership.reserve_members(records.len() + config.joins);
        for record in &records {
            if record.node != membership.local() {
                membership.introduce_shared(record, now);
            }
        }
        world.add_node(membership);
    }
    if let Some(observer) = world.observer.as_mut() {
        let ids: Vec<NodeId> = world.nodes.iter().map(SimNode::id).collect();
        observer.start_with(&ids, world.now_us);
    }
    for a in 0..config.nodes {
        for _ in 0..config.gossip_links {
            let b = world.rng.gen_range(0..config.nodes);
            world.link_gossip(a, b);
        }
    }
    let bootstrap_wall_seconds = wall.elapsed().as_secs_f64();

    world.run_until(micros(config.warmup));
    world.set_counting(true);
    let steady_start = world.now_us;
    world.run_until(steady_start.saturating_add(micros(config.steady)));
    world.set_counting(false);
    let steady_seconds = config.steady.as_secs_f64().max(f64::MIN_POSITIVE);
    let kbit = |bytes: u64| bytes as f64 * 8.0 / 1000.0 / steady_seconds;
    let live: Vec<usize> = (0..world.nodes.len())
        .filter(|&i| world.alive.get(i).copied().unwrap_or(false))
        .collect();
    let mut mean_by_class = [0.0; CLASSES];
    for &i in &live {
        if let Some(t) = world.traffic.get(i) {
            for class in Class::ALL {
                mean_by_class[class.index()] +=
                    kbit(t.sent[class.index()]) / live.len().max(1) as f64;
            }
        }
    }
    // Kbit/s per live node of the bytes `of` picks from each node's traffic.
    let spread = |of: &dyn Fn(&Traffic) -> u64| {
        let per_node: Vec<f64> = live
            .iter()
            .filter_map(|&i| world.traffic.get(i))
            .map(|t| kbit(of(t)))
            .collect();
        let mean = per_node.iter().sum::<f64>() / per_node.len().max(1) as f64;
        (Spread::of(per_node), mean)
    };
    let steady = TrafficReport {
        seconds: steady_seconds,
        sent_kbit: spread(&|t| t.sent_in(&Class::ALL)).0,
        received_kbit: spread(&|t| t.received_in(&Class::ALL)).0,
        membership_sent_kbit: spread(&|t| t.sent_in(&Class::MEMBERSHIP)).0,
        membership_received_kbit: spread(&|t| t.received_in(&Class::MEMBERSHIP)).0,
        mean_sent_kbit_by_class: mean_by_class,
        published: world.published,
    };
    let aggregation_sent = spread(&|t| t.sent_in(&[Class::Observe]));
    let aggregation_received = spread(&|t| t.received_in(&[Class::Observe]));

    let mut death_samples = Vec::new();
    let mut join_samples = Vec::new();
    for round in 0..config.deaths.max(config.joins) {
        if round < config.deaths
            && let Some(victim) = world.random_live(usize::MAX)
        {
            world.kill(victim);
            world.observe(WatchKind::Death, victim, config.settle, &mut death_samples);
        }
        if round < config.joins {
            let joined = world.join();
            world.observe(WatchKind::Join, joined, config.settle, &mut join_samples);
        }
    }

    world.run_until(world.now_us.saturating_add(micros(config.tail)));

    let mut false_deaths = 0;
    let mut members = Vec::new();
    for (i, node) in world.nodes.iter().enumerate() {
        if !world.alive.get(i).copied().unwrap_or(false) {
            continue;
        }
        members.push(node.membership().members().count() as f64);
        false_deaths += node
            .membership()
            .members()
            .filter(|m| m.state == MemberState::Dead)
            .filter(|m| {
                world
                    .index_of
                    .get(&m.id)
                    .is_some_and(|&j| world.alive.get(j).copied().unwrap_or(false))
            })
            .count();
    }
    let placement = (config.placement_keys > 0).then(|| {
        let ids: Vec<NodeId> = world.nodes.iter().map(SimNode::id).collect();
        placement::key_movement(&ids, config.placement_keys, 3, &mut world.rng)
    });
    Report {
        nodes: config.nodes,
        virtual_seconds: world.now_us as f64 / 1e6,
        wall_seconds: wall.elapsed().as_secs_f64(),
        bootstrap_wall_seconds,
        peak_rss_mib: report::peak_rss_mib(),
        steady,
        deaths: convergence(config.deaths, &death_samples),
        death_gossip_kib_per_node: world.death_gossip_bytes as f64
            / 1024.0
            / (config.nodes.max(1) * config.deaths.max(1)) as f64,
        joins: convergence(config.joins, &join_samples),
        false_deaths,
        members_per_node: Spread::of(members),
        placement,
        aggregation: world.observer.as_ref().map(|observer| {
            let mut report = observer.report(
                &world.alive,
                world.nodes.iter().map(SimNode::membership),
                steady_seconds,
                world.now_us,
            );
            (report.sent_kbit, report.mean_sent_kbit) = aggregation_sent;
            (report.received_kbit, report.mean_received_kbit) = aggregation_received;
            report
        }),
    }
}
