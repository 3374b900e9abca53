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

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use xnode_types::NodeId;
use xnode_wire::{Versioned, kinds};

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
    Alive {
        node: NodeId,
        incarnation: u64,
        addresses: Vec<String>,
    },
    Suspect {
        node: NodeId,
        incarnation: u64,
        from: NodeId,
    },
    Dead {
        node: NodeId,
        incarnation: u64,
        from: NodeId,
    },
    Left {
        node: NodeId,
        incarnation: u64,
    },
}

impl Versioned for MembershipUpdate {
    const KIND_TAG: u8 = kinds::MEMBERSHIP_UPDATE;
    const KIND_NAME: &'static str = "membership update";
    const VERSION: u8 = 1;
}

impl MembershipUpdate {
    pub fn node(&self) -> NodeId {
        match self {
            MembershipUpdate::Alive { node, .. }
            | MembershipUpdate::Suspect { node, .. }
            | MembershipUpdate::Dead { node, .. }
            | MembershipUpdate::Left { node, .. } => *node,
        }
    }

    pub fn incarnation(&self) -> u64 {
        match self {
            MembershipUpdate::Alive { incarnation, .. }
            | MembershipUpdate::Suspect { incarnation, .. }
            | MembershipUpdate::Dead { incarnation, .. }
            | MembershipUpdate::Left { incarnation, .. } => *incarnation,
        }
    }

    /// Updates a node may only make about itself: `alive` and `left`. Anyone may report
    /// `suspect` and `dead`, because that is what failure detection is.
    pub fn must_come_from_subject(&self) -> bool {
        matches!(
            self,
            MembershipUpdate::Alive { .. } | MembershipUpdate::Left { .. }
        )
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

/// What this node knows about one member.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: NodeId,
    pub state: MemberState,
    pub incarnation: u64,
    pub addresses: Vec<String>,
    /// When we last heard from the member directly (ack, ping, or gossip it published).
    pub last_seen: Option<Instant>,
    pub state_since: Instant,
    suspicion: Option<Suspicion>,
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
    /// The update was old news.
    Ignored,
    /// The update was about this node and wrong: it has refuted it with a new incarnation,
    /// which the caller must announce.
    Refuted { incarnation: u64 },
}

/// The membership view of one node.
#[derive(Debug)]
pub struct Membership {
    local: NodeId,
    local_incarnation: u64,
    local_addresses: Vec<String>,
    members: HashMap<NodeId, Member>,
    config: SwimConfig,
    probe_order: Vec<NodeId>,
    probe_cursor: usize,
    dead_cursor: usize,
}

impl Membership {
    pub fn new(local: NodeId, incarnation: u64, config: SwimConfig) -> Self {
        Self {
            local,
            local_incarnation: incarnation,
            local_addresses: Vec::new(),
            members: HashMap::new(),
            config,
            probe_order: Vec::new(),
            probe_cursor: 0,
            dead_cursor: 0,
        }
    }

    pub fn local(&self) -> NodeId {
        self.local
    }

    pub fn local_incarnation(&self) -> u64 {
        self.local_incarnation
    }

    pub fn set_local_addresses(&mut self, addresses: Vec<String>) {
        self.local_addresses = addresses;
    }

    /// The `alive` announcement for this node.
    pub fn local_alive(&self) -> MembershipUpdate {
        MembershipUpdate::Alive {
            node: self.local,
            incarnation: self.local_incarnation,
            addresses: self.local_addresses.clone(),
        }
    }

    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn config(&self) -> &SwimConfig {
        &self.config
    }

    /// Members that count towards the live set (alive or suspect).
    pub fn live_count(&self) -> usize {
        self.members
            .values()
            .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .count()
    }

    /// Records that we heard from `node` directly.
    pub fn heard_from(&mut self, node: &NodeId, now: Instant) {
        if let Some(m) = self.members.get_mut(node) {
            m.last_seen = Some(now);
        }
    }

    /// Applies news about a member and says what changed.
    pub fn apply(&mut self, update: &MembershipUpdate, now: Instant) -> Applied {
        let node = update.node();
        let incarnation = update.incarnation();
        if node == self.local {
            return self.apply_about_self(update);
        }
        let Some(member) = self.members.get_mut(&node) else {
            // A member we have never heard of: take the news as it is. Join via `alive`
            // brings its addresses; a death notice about a stranger is remembered so a
            // stale `alive` cannot resurrect it.
            let (state, addresses) = match update {
                MembershipUpdate::Alive { addresses, .. } => {
                    (MemberState::Alive, addresses.clone())
                }
                MembershipUpdate::Suspect { .. } => (MemberState::Suspect, Vec::new()),
                MembershipUpdate::Dead { .. } => (MemberState::Dead, Vec::new()),
                MembershipUpdate::Left { .. } => (MemberState::Left, Vec::new()),
            };
            let mut member = Member {
                id: node,
                state,
                incarnation,
                addresses,
                last_seen: None,
                state_since: now,
                suspicion: None,
            };
            if let MembershipUpdate::Suspect { from, .. } = update {
                member.suspicion = Some(Suspicion {
                    since: now,
                    confirmations: BTreeSet::from([*from]),
                });
            }
            self.members.insert(node, member);
            self.probe_order.push(node);
            return Applied::Changed {
                node,
                state,
                incarnation,
            };
        };

        let (new_state, wins) = match update {
            MembershipUpdate::Alive { addresses, .. } => {
                let wins = incarnation > member.incarnation;
                if !addresses.is_empty() && incarnation >= member.incarnation {
                    member.addresses = addresses.clone();
                }
                (MemberState::Alive, wins)
            }
            MembershipUpdate::Suspect { from, .. } => {
                let wins = match member.state {
                    MemberState::Alive => incarnation >= member.incarnation,
                    MemberState::Suspect => {
                        if incarnation == member.incarnation {
                            // Same suspicion, another witness: count the confirmation.
                            if let Some(s) = member.suspicion.as_mut()
                                && s.confirmations.insert(*from)
                            {
                                return Applied::Ignored;
                            }
                        }
                        incarnation > member.incarnation
                    }
                    MemberState::Dead | MemberState::Left => incarnation > member.incarnation,
                };
                (MemberState::Suspect, wins)
            }
            MembershipUpdate::Dead { .. } => {
                let wins = match member.state {
                    MemberState::Alive | MemberState::Suspect => incarnation >= member.incarnation,
                    MemberState::Dead | MemberState::Left => incarnation > member.incarnation,
                };
                (MemberState::Dead, wins)
            }
            MembershipUpdate::Left { .. } => {
                let wins = match member.state {
                    MemberState::Left => incarnation > member.incarnation,
                    _ => incarnation >= member.incarnation,
                };
                (MemberState::Left, wins)
            }
        };
        if !wins {
            return Applied::Ignored;
        }
        member.incarnation = incarnation;
        if member.state != new_state {
            member.state = new_state;
            member.state_since = now;
        }
        member.suspicion = match update {
            MembershipUpdate::Suspect { from, .. } => Some(Suspicion {
                since: now,
                confirmations: BTreeSet::from([*from]),
            }),
            _ => None,
        };
        Applied::Changed {
            node,
            state: new_state,
            incarnation,
        }
    }

    fn apply_about_self(&mut self, update: &MembershipUpdate) -> Applied {
        match update {
            MembershipUpdate::Suspect { incarnation, .. }
            | MembershipUpdate::Dead { incarnation, .. }
                if *incarnation >= self.local_incarnation =>
            {
                // We are alive: outbid the rumour.
                self.local_incarnation = incarnation + 1;
                Applied::Refuted {
                    incarnation: self.local_incarnation,
                }
            }
            MembershipUpdate::Alive { incarnation, .. }
            | MembershipUpdate::Left { incarnation, .. }
                if *incarnation > self.local_incarnation =>
            {
                // An older run of this node got further than we started from (say, its
                // incarnation file was lost). Continue above it.
                self.local_incarnation = incarnation + 1;
                Applied::Refuted {
                    incarnation: self.local_incarnation,
                }
            }
            _ => Applied::Ignored,
        }
    }

    /// The next member to probe, round-robin over alive and suspect members so every member
    /// is probed within one pass.
    pub fn next_probe_target(&mut self) -> Option<NodeId> {
        self.probe_order
            .retain(|id| self_members_contains(&self.members, id));
        let n = self.probe_order.len();
        for _ in 0..n {
            if self.probe_cursor >= n {
                self.probe_cursor = 0;
                shuffle(&mut self.probe_order);
            }
            let id = self.probe_order[self.probe_cursor];
            self.probe_cursor += 1;
            if let Some(m) = self.members.get(&id)
                && matches!(m.state, MemberState::Alive | MemberState::Suspect)
            {
                return Some(id);
            }
        }
        None
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
        Some(dead[self.dead_cursor])
    }

    /// Up to `k` live members other than `target` to ask for indirect probes.
    pub fn indirect_helpers(&self, target: &NodeId, k: usize) -> Vec<NodeId> {
        let mut candidates: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| m.id != *target && m.state == MemberState::Alive)
            .map(|m| m.id)
            .collect();
        shuffle(&mut candidates);
        candidates.truncate(k);
        candidates
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
            MemberState::Alive => match self.apply(&update, now) {
                Applied::Changed { .. } => Some(update),
                _ => None,
            },
            MemberState::Suspect => {
                let suspicion = member.suspicion.get_or_insert_with(|| Suspicion {
                    since: now,
                    confirmations: BTreeSet::new(),
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
        let expected = self
            .config
            .indirect_probes
            .min(self.live_count().saturating_sub(1))
            .max(1);
        let extra = confirmations.saturating_sub(1).min(expected);
        let frac = ((extra + 1) as f64).ln() / ((expected + 1) as f64).ln();
        let max = self.config.suspicion_max.as_secs_f64();
        let min = self.config.suspicion_min.as_secs_f64();
        Duration::from_secs_f64((max - (max - min) * frac).max(min))
    }

    /// Declares dead every suspect whose suspicion timed out; returns the updates to spread.
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
            if let Applied::Changed { .. } = self.apply(&update, now) {
                out.push(update);
            }
        }
        out
    }

    /// This node's whole view, for the push-pull exchange when two nodes connect.
    pub fn snapshot(&self) -> Vec<MembershipUpdate> {
        let mut out = vec![self.local_alive()];
        for m in self.members.values() {
            out.push(match m.state {
                MemberState::Alive => MembershipUpdate::Alive {
                    node: m.id,
                    incarnation: m.incarnation,
                    addresses: m.addresses.clone(),
                },
                MemberState::Suspect => MembershipUpdate::Suspect {
                    node: m.id,
                    incarnation: m.incarnation,
                    from: self.local,
                },
                MemberState::Dead => MembershipUpdate::Dead {
                    node: m.id,
                    incarnation: m.incarnation,
                    from: self.local,
                },
                MemberState::Left => MembershipUpdate::Left {
                    node: m.id,
                    incarnation: m.incarnation,
                },
            });
        }
        out
    }

    /// Learns addresses for a member without touching its state.
    pub fn add_addresses(&mut self, node: &NodeId, addresses: &[String]) {
        if let Some(m) = self.members.get_mut(node) {
            for a in addresses {
                if !m.addresses.contains(a) {
                    m.addresses.push(a.clone());
                }
            }
        }
    }
}

fn self_members_contains(members: &HashMap<NodeId, Member>, id: &NodeId) -> bool {
    members.contains_key(id)
}

fn shuffle<T>(items: &mut [T]) {
    use rand::seq::SliceRandom;
    items.shuffle(&mut rand::thread_rng());
}

#[cfg(test)]
mod tests;
