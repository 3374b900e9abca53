//! The SWIM protocol's decisions around the membership state machine, without I/O: when
//! to probe and whom, when a direct probe goes indirect, when a probe has failed, how to
//! relay another node's indirect probe, how to merge a push-pull view and when to start
//! one, and which updates to spread.
//!
//! [`Membership`] decides what state each member is in; the [`Engine`] decides what to
//! send. It owns the membership table, the rounds of probes in flight and the requests
//! waiting for an answer, reads time only through `now` arguments, and returns its work
//! as [`Action`]s. The mesh driver carries them out over libp2p (and turns them into
//! metrics, logs and events); the simulator (`crates/sim`) carries them out over a
//! simulated network. Both therefore run this one copy of the protocol.
//!
//! `R` is how the caller answers an inbound request later (a libp2p response channel in
//! the driver, a request number in the simulator): the engine keeps it while it relays an
//! indirect probe, and hands it back in [`Action::Respond`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use rand::Rng;
use rand::seq::IteratorRandom;
use tokio::time::Instant;
use xnode_types::NodeId;

use super::digest::{ViewDigest, bucket_count};
use super::{Applied, MemberState, Membership, MembershipUpdate, Refusal};
use crate::liveness::{LivenessRecord, SelfStatus};
use crate::proto::{MAX_SWIM_BYTES, MAX_SYNC_UPDATES, SwimRequest, SwimResponse};
use crate::vivaldi::Coordinate;

/// Room left in a push-pull view for the message framing around it.
pub const SNAPSHOT_BUDGET: usize = MAX_SWIM_BYTES - 64 * 1024;
/// How long a request may wait for its answer before the engine forgets it. The transport
/// gives up sooner (libp2p's request timeout is 5 s); this only bounds the table when an
/// answer never comes back at all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Entries an answer to a push-pull digest may carry when the same peer already had a
/// larger answer within the push-pull interval. A digest that differs everywhere (a new
/// node's, or a liar's) gets the whole view once per interval; more often, only this
/// much, so a hostile peer cannot make this node send its whole table over and over.
pub const REPEATED_DIFF_ENTRIES: usize = 64;

/// Work the engine hands to its caller, in the order it decided it.
#[derive(Debug)]
pub enum Action<R> {
    /// Send `request` to `to`; its answer (or failure) goes back through
    /// [`Engine::on_response`] with the same `token`.
    Send {
        token: u64,
        to: NodeId,
        request: SwimRequest,
    },
    /// Answer an inbound request of `to` through `reply`.
    Respond {
        to: NodeId,
        reply: R,
        response: SwimResponse,
    },
    /// Publish a membership update to gossip.
    Broadcast(MembershipUpdate),
    /// A member changed state in this node's view.
    Changed {
        node: NodeId,
        state: MemberState,
        incarnation: u64,
    },
    /// This node raised its incarnation to refute a rumour about itself; the caller
    /// persists it. The new signed record is already broadcast unless the node is leaving.
    Refuted { incarnation: u64 },
    /// An update was refused by the membership rules.
    Refused(Refusal),
    /// An inbound push-pull view was dropped, for the reason given.
    Dropped(&'static str),
    /// A probe round ended: `ack`, `indirect_ack` or `failed`.
    Probed {
        target: NodeId,
        result: &'static str,
    },
    /// A direct probe was acked after `rtt`, with the target's coordinate if it sent one.
    RoundTrip {
        target: NodeId,
        rtt: Duration,
        coordinate: Option<Coordinate>,
    },
    /// A push-pull view was merged: the table may have changed in many places at once.
    Merged,
}

/// An ongoing probe of one member.
#[derive(Debug)]
struct Round {
    started: Instant,
    phase: Phase,
    /// Started because another member reported the target suspect (not this node's own
    /// turn or observation): a failure is counted here but not spread (see
    /// [`Engine::probe_failed`]).
    hearsay: bool,
}

#[derive(Debug)]
enum Phase {
    Direct {
        deadline: Instant,
    },
    Indirect {
        deadline: Instant,
        outstanding: usize,
    },
}

/// Why a request was sent, so its answer can be routed.
#[derive(Debug)]
enum Purpose<R> {
    Probe {
        target: NodeId,
    },
    Indirect {
        target: NodeId,
    },
    Relay {
        /// The node that asked for the indirect probe, to which the answer goes.
        requester: NodeId,
        reply: R,
        deadline: Instant,
    },
    DeadProbe {
        target: NodeId,
    },
    Sync,
    /// A push-pull by digest, in `buckets` buckets.
    SyncDigest {
        buckets: usize,
    },
    SyncEntries,
}

#[derive(Debug)]
struct Pending<R> {
    purpose: Purpose<R>,
    sent: Instant,
}

/// The protocol engine of one node; see the module documentation.
#[derive(Debug)]
pub struct Engine<R> {
    membership: Membership,
    push_pull_base: Duration,
    rounds: BTreeMap<NodeId, Round>,
    pending: BTreeMap<u64, Pending<R>>,
    next_token: u64,
    last_probe: Instant,
    last_dead_probe: Instant,
    last_push_pull: Instant,
    /// Members this engine saw become suspect. `expire_suspicions` scans the whole table,
    /// so the tick calls it only while one of these may be due, which keeps a simulation
    /// of many large tables fast; a stale entry costs one scan, never a missed expiry.
    suspects: BTreeSet<NodeId>,
    /// Suspects whose suspicion this node spread in its own name. Only these get this
    /// node's `dead` spread too: a member that only heard the suspicion declares the death
    /// on its own timer and keeps it to itself, so a death costs gossip from a few
    /// witnesses, not from every member (which made it O(N^2) messages network-wide).
    announced: BTreeSet<NodeId>,
    /// When each peer last had an answer to its digest larger than
    /// [`REPEATED_DIFF_ENTRIES`]; pruned after a push-pull interval.
    large_diffs: BTreeMap<NodeId, Instant>,
    /// Set once the node announced its departure: it refutes nothing any more.
    leaving: bool,
    actions: VecDeque<Action<R>>,
}

impl<R> Engine<R> {
    /// An engine around `membership` whose timers start at `now`; push-pull runs every
    /// `push_pull_base`, scaled with the table ([`super::scaled_push_pull_interval`]).
    pub fn new(membership: Membership, push_pull_base: Duration, now: Instant) -> Self {
        Self {
            membership,
            push_pull_base,
            rounds: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_token: 0,
            last_probe: now,
            last_dead_probe: now,
            last_push_pull: now,
            suspects: BTreeSet::new(),
            announced: BTreeSet::new(),
            large_diffs: BTreeMap::new(),
            leaving: false,
            actions: VecDeque::new(),
        }
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The membership table, for changes that do not go through the protocol (local
    /// addresses, the departure record). Report what such a change returns with
    /// [`Engine::note_applied`].
    pub fn membership_mut(&mut self) -> &mut Membership {
        &mut self.membership
    }

    /// Moves the next periodic push-pull to `at` (a simulation staggers them).
    pub fn set_last_push_pull(&mut self, at: Instant) {
        self.last_push_pull = at;
    }

    /// The node announced its departure: no more refutations.
    pub fn set_leaving(&mut self) {
        self.leaving = true;
    }

    /// The next action to carry out, if any.
    pub fn next_action(&mut self) -> Option<Action<R>> {
        self.actions.pop_front()
    }

    /// Applies an update delivered by `sender` (this node for its own findings); when it
    /// leaves a member suspected by someone else, probes that member at once, so this node
    /// either confirms the suspicion (speeding up detection) or hears from it and clears it.
    pub fn apply(&mut self, update: &MembershipUpdate, sender: NodeId, now: Instant) -> Applied {
        let applied = self.membership.apply(update, sender, now);
        self.note_applied(&applied);
        let hearsay_suspicion = matches!(
            update,
            MembershipUpdate::Suspect { .. } | MembershipUpdate::Dead { .. }
        ) && sender != self.membership.local();
        if hearsay_suspicion
            && !matches!(applied, Applied::Refused(_))
            && self
                .membership
                .member(&update.node())
                .is_some_and(|m| m.state == MemberState::Suspect)
        {
            self.start_round(update.node(), now, true);
        }
        applied
    }

    /// Reports a change the membership made, however it was made.
    pub fn note_applied(&mut self, applied: &Applied) {
        match *applied {
            Applied::Changed {
                node,
                state,
                incarnation,
            } => self.changed(node, state, incarnation),
            Applied::Refuted { incarnation } => self.refuted(incarnation),
            Applied::Refused(refusal) => self.actions.push_back(Action::Refused(refusal)),
            Applied::Ignored => {}
        }
    }

    fn changed(&mut self, node: NodeId, state: MemberState, incarnation: u64) {
        if state == MemberState::Suspect {
            self.suspects.insert(node);
        } else {
            self.suspects.remove(&node);
            self.announced.remove(&node);
        }
        if state != MemberState::Suspect && state != MemberState::Alive {
            self.rounds.remove(&node);
        }
        self.actions.push_back(Action::Changed {
            node,
            state,
            incarnation,
        });
    }

    fn refuted(&mut self, incarnation: u64) {
        self.actions.push_back(Action::Refuted { incarnation });
        if !self.leaving {
            let announcement = self.membership.local_announcement();
            self.actions.push_back(Action::Broadcast(announcement));
        }
    }

    fn about(&self, node: &NodeId) -> Option<(MemberState, u64)> {
        self.membership
            .member(node)
            .map(|m| (m.state, m.incarnation))
    }

    fn send(&mut self, to: NodeId, request: SwimRequest, purpose: Purpose<R>, now: Instant) {
        self.next_token = self.next_token.wrapping_add(1);
        let token = self.next_token;
        self.pending.insert(token, Pending { purpose, sent: now });
        self.actions.push_back(Action::Send { token, to, request });
    }

    /// Probes `target` now, on this node's own account (its turn, or a broken
    /// connection), unless a round for it is already under way or it is not live.
    pub fn start_probe(&mut self, target: NodeId, now: Instant) {
        self.start_round(target, now, false);
    }

    fn start_round(&mut self, target: NodeId, now: Instant, hearsay: bool) {
        if self.rounds.contains_key(&target) {
            return;
        }
        if !self
            .membership
            .member(&target)
            .is_some_and(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
        {
            return;
        }
        let deadline = now + self.membership.config().probe_timeout;
        self.rounds.insert(
            target,
            Round {
                started: now,
                phase: Phase::Direct { deadline },
                hearsay,
            },
        );
        let request = SwimRequest::Ping {
            about_you: self.about(&target),
        };
        self.send(target, request, Purpose::Probe { target }, now);
    }

    fn go_indirect(&mut self, target: NodeId, now: Instant) {
        let config = self.membership.config();
        let (count, timeout) = (config.indirect_probes, config.indirect_timeout);
        let helpers = self.membership.indirect_helpers(&target, count);
        if helpers.is_empty() {
            self.probe_failed(target, now);
            return;
        }
        if let Some(round) = self.rounds.get_mut(&target) {
            round.phase = Phase::Indirect {
                deadline: now + timeout,
                outstanding: helpers.len(),
            };
        }
        let record = self
            .membership
            .member(&target)
            .and_then(|m| m.record().cloned())
            .map(Box::new);
        for helper in helpers {
            let request = SwimRequest::PingReq {
                target,
                record: record.clone(),
            };
            self.send(helper, request, Purpose::Indirect { target }, now);
        }
        // And once more directly, as memberlist's fallback probe does: a direct probe
        // fails mostly because one of its two messages was lost, and a second try within
        // the indirect window rarely is. Indirect paths run through far helpers and can
        // miss the window on latency alone, so without it a lost ping and slow helpers
        // were most false suspicions (1,000 simulated nodes, 0.5 % loss: 4 in 10 s, each
        // flooded to every member with its refutation).
        let ping = SwimRequest::Ping {
            about_you: self.about(&target),
        };
        self.send(target, ping, Purpose::Probe { target }, now);
    }

    fn probe_succeeded(&mut self, target: NodeId, result: &'static str, now: Instant) {
        if self.rounds.remove(&target).is_some() {
            self.actions.push_back(Action::Probed { target, result });
        }
        self.membership.heard_from(&target, now);
    }

    /// A probe round found `target` unreachable. A new suspicion is always spread. A
    /// confirmation of a suspicion already held is spread only if this node probed on its
    /// own account and the suspicion has fewer confirmations than shorten its timeout
    /// (Lifeguard's expected number): a confirmation from every member that heard the
    /// rumour and checked (each flooded to every member) made a death cost O(N^2)
    /// messages, and beyond that number confirmations change nobody's timer.
    fn probe_failed(&mut self, target: NodeId, now: Instant) {
        let Some(round) = self.rounds.remove(&target) else {
            return;
        };
        self.actions.push_back(Action::Probed {
            target,
            result: "failed",
        });
        let (was_alive, confirmations) = self.membership.member(&target).map_or((false, 0), |m| {
            (m.state == MemberState::Alive, m.confirmations())
        });
        let useful = !round.hearsay && confirmations < self.membership.confirmations_that_count();
        if let Some(update) = self.membership.probe_failed(&target, now) {
            if was_alive {
                self.changed(target, MemberState::Suspect, update.incarnation());
            }
            if was_alive || useful {
                self.announced.insert(target);
                self.actions.push_back(Action::Broadcast(update));
            }
        }
    }

    fn indirect_answer(&mut self, target: NodeId, acked: bool, now: Instant) {
        if acked {
            self.probe_succeeded(target, "indirect_ack", now);
            return;
        }
        let exhausted = match self.rounds.get_mut(&target) {
            Some(Round {
                phase: Phase::Indirect { outstanding, .. },
                ..
            }) => {
                *outstanding = outstanding.saturating_sub(1);
                *outstanding == 0
            }
            _ => false,
        };
        if exhausted {
            self.probe_failed(target, now);
        }
    }

    /// A decoded SWIM request from `from`, to be answered through `reply`. `own_ack`
    /// builds this node's ack for `from` (the caller knows its coordinate and what the
    /// peer can decode).
    pub fn on_request(
        &mut self,
        from: NodeId,
        reply: R,
        request: SwimRequest,
        now: Instant,
        own_ack: impl FnOnce(&Membership) -> SwimResponse,
    ) {
        self.membership.heard_from(&from, now);
        match request {
            SwimRequest::Ping { about_you } => {
                if let Some((state, incarnation)) = about_you
                    && matches!(state, MemberState::Suspect | MemberState::Dead)
                {
                    // The prober thinks we are failing: refute (if its news is current;
                    // at most once per refutation interval).
                    let rumour = MembershipUpdate::Suspect {
                        node: self.membership.local(),
                        incarnation,
                        from,
                    };
                    self.apply(&rumour, from, now);
                }
                let response = own_ack(&self.membership);
                self.actions.push_back(Action::Respond {
                    to: from,
                    reply,
                    response,
                });
            }
            SwimRequest::PingReq { target, record } => {
                if target == self.membership.local() {
                    let response = own_ack(&self.membership);
                    self.actions.push_back(Action::Respond {
                        to: from,
                        reply,
                        response,
                    });
                    return;
                }
                // The target's own record is how a helper may learn its addresses; hearsay
                // addresses are never taken.
                if let Some(record) = record.filter(|r| r.node == target) {
                    self.apply(&MembershipUpdate::Signed(*record), from, now);
                }
                let deadline = now + self.membership.config().probe_timeout;
                let ping = SwimRequest::Ping {
                    about_you: self.about(&target),
                };
                let purpose = Purpose::Relay {
                    requester: from,
                    reply,
                    deadline,
                };
                self.send(target, ping, purpose, now);
            }
            SwimRequest::Sync { updates } => {
                if !self.merge_sync(from, &updates, now) {
                    return;
                }
                let response = SwimResponse::Sync {
                    updates: self.membership.snapshot(SNAPSHOT_BUDGET),
                };
                self.actions.push_back(Action::Respond {
                    to: from,
                    reply,
                    response,
                });
            }
            SwimRequest::SyncDigest { record, digest } => {
                if let Some(response) = self.answer_digest(from, *record, &digest, now) {
                    self.actions.push_back(Action::Respond {
                        to: from,
                        reply,
                        response,
                    });
                }
            }
            SwimRequest::SyncEntries { updates } => {
                if self.merge_sync(from, &updates, now) {
                    self.actions.push_back(Action::Respond {
                        to: from,
                        reply,
                        response: SwimResponse::Merged,
                    });
                }
            }
        }
    }

    /// The answer to a peer's push-pull digest: this node's entries in the buckets that
    /// differ, or nothing (the request is dropped) if the digest is malformed or the peer
    /// is neither a member nor introducing itself.
    fn answer_digest(
        &mut self,
        from: NodeId,
        record: LivenessRecord,
        digest: &ViewDigest,
        now: Instant,
    ) -> Option<SwimResponse> {
        if !digest.is_valid() {
            self.actions.push_back(Action::Dropped("bad_digest"));
            return None;
        }
        if !self.merge_sync(from, &[MembershipUpdate::Signed(record)], now) {
            return None;
        }
        let buckets = digest.buckets.len();
        let differing = self.membership.digest(buckets).differing(digest);
        let recently_large = self
            .large_diffs
            .get(&from)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.push_pull_interval());
        let max_entries = if recently_large {
            REPEATED_DIFF_ENTRIES
        } else {
            usize::MAX
        };
        let updates = self
            .membership
            .entries_in(buckets, &differing, SNAPSHOT_BUDGET, max_entries);
        if updates.len() > REPEATED_DIFF_ENTRIES {
            self.large_diffs.insert(from, now);
        }
        Some(SwimResponse::SyncDiff {
            record: Box::new(self.membership.local_record().clone()),
            differing,
            updates,
        })
    }

    /// The push-pull interval for the table as it is now.
    fn push_pull_interval(&self) -> Duration {
        super::scaled_push_pull_interval(self.push_pull_base, self.membership.member_count())
    }

    /// Merges a peer's push-pull view. Returns false (and merges nothing) if the view is
    /// too long or the peer is neither a member nor introducing itself with its own record.
    fn merge_sync(&mut self, peer: NodeId, updates: &[MembershipUpdate], now: Instant) -> bool {
        if updates.len() > MAX_SYNC_UPDATES {
            self.actions.push_back(Action::Dropped("oversized"));
            return false;
        }
        let own_record: Option<&LivenessRecord> = updates.iter().find_map(|u| match u {
            MembershipUpdate::Signed(r) if r.node == peer => Some(r),
            _ => None,
        });
        match own_record {
            Some(record) => {
                let applied = self.membership.introduce(record, now);
                self.note_applied(&applied);
                if matches!(applied, Applied::Refused(_)) {
                    self.actions.push_back(Action::Dropped("bad_introduction"));
                    return false;
                }
            }
            None if self.membership.member(&peer).is_none() => {
                self.actions.push_back(Action::Dropped("not_a_member"));
                return false;
            }
            None => {}
        }
        self.membership.heard_from(&peer, now);
        for update in updates {
            if matches!(update, MembershipUpdate::Signed(r) if r.node == peer) {
                continue;
            }
            if let Applied::Refused(refusal) = self.apply(update, peer, now)
                && refusal.is_misbehaviour()
            {
                // A view with a forgery in it is a liar's view: take nothing more from it.
                tracing::warn!(%peer, reason = refusal.as_str(), "dropping the rest of a forged push-pull view");
                self.actions.push_back(Action::Dropped("forged"));
                break;
            }
        }
        self.actions.push_back(Action::Merged);
        true
    }

    /// The answer from `peer` to the request sent with `token`; `None` if the request
    /// failed or the answer could not be decoded.
    pub fn on_response(
        &mut self,
        token: u64,
        peer: NodeId,
        response: Option<SwimResponse>,
        now: Instant,
    ) {
        let Some(Pending { purpose, sent }) = self.pending.remove(&token) else {
            return;
        };
        match purpose {
            Purpose::Probe { target } => match response {
                Some(ack @ (SwimResponse::Ack { .. } | SwimResponse::CoordinatedAck { .. })) => {
                    let (record, coordinate) = match ack {
                        SwimResponse::CoordinatedAck { record, coordinate } => {
                            (record, Some(coordinate))
                        }
                        SwimResponse::Ack { record } => (record, None),
                        _ => (None, None),
                    };
                    let rtt = now.saturating_duration_since(sent);
                    self.membership.observe_rtt(&target, rtt);
                    self.actions.push_back(Action::RoundTrip {
                        target,
                        rtt,
                        coordinate,
                    });
                    let applied = self.membership.acked_by(target, record.as_deref(), now);
                    self.note_applied(&applied);
                    self.probe_succeeded(target, "ack", now);
                }
                _ => {
                    if let Some(Round {
                        phase: Phase::Direct { .. },
                        ..
                    }) = self.rounds.get(&target)
                    {
                        self.go_indirect(target, now);
                    }
                }
            },
            Purpose::Indirect { target } => {
                let acked = response.as_ref().is_some_and(|d| d.ack_record().is_some());
                if let Some(record) = response.as_ref().and_then(|d| d.ack_record().flatten())
                    && record.node == target
                    && record.status == SelfStatus::Alive
                {
                    // Relayed, so only the target's signature can make it news.
                    self.apply(&MembershipUpdate::Signed(record.clone()), peer, now);
                }
                self.indirect_answer(target, acked, now);
            }
            Purpose::Relay {
                requester, reply, ..
            } => {
                // Relayed as a plain ack: the target's coordinate says nothing of the
                // requester's round trip, and the requester may be an older node.
                let response = match response {
                    Some(
                        SwimResponse::Ack { record } | SwimResponse::CoordinatedAck { record, .. },
                    ) => SwimResponse::Ack { record },
                    _ => SwimResponse::Nack,
                };
                self.actions.push_back(Action::Respond {
                    to: requester,
                    reply,
                    response,
                });
            }
            Purpose::DeadProbe { target } => {
                if let Some(record) = response.as_ref().and_then(SwimResponse::ack_record) {
                    tracing::info!(node = %target, "a member thought dead answered");
                    let applied = self.membership.acked_by(target, record, now);
                    self.note_applied(&applied);
                }
            }
            Purpose::Sync => {
                if let Some(SwimResponse::Sync { updates }) = response {
                    self.merge_sync(peer, &updates, now);
                }
            }
            Purpose::SyncDigest { buckets } => {
                if let Some(SwimResponse::SyncDiff {
                    record,
                    differing,
                    updates,
                }) = response
                {
                    self.merge_diff(peer, buckets, *record, &differing, updates, now);
                }
            }
            Purpose::SyncEntries => {}
        }
    }

    /// Merges the answer to this node's digest, and sends back this node's own entries in
    /// the buckets that differ, so both sides end with the newer of each.
    fn merge_diff(
        &mut self,
        peer: NodeId,
        buckets: usize,
        record: LivenessRecord,
        differing: &[u16],
        updates: Vec<MembershipUpdate>,
        now: Instant,
    ) {
        if differing.len() > buckets || differing.iter().any(|b| usize::from(*b) >= buckets) {
            self.actions.push_back(Action::Dropped("bad_digest"));
            return;
        }
        let mut view = Vec::with_capacity(updates.len().saturating_add(1));
        view.push(MembershipUpdate::Signed(record));
        view.extend(updates);
        if !self.merge_sync(peer, &view, now) || differing.is_empty() {
            return;
        }
        let updates = self
            .membership
            .entries_in(buckets, differing, SNAPSHOT_BUDGET, usize::MAX);
        if !updates.is_empty() {
            self.send(
                peer,
                SwimRequest::SyncEntries { updates },
                Purpose::SyncEntries,
                now,
            );
        }
    }

    /// The request sent with `token` was lost on the way: its round's deadline takes it
    /// from here, but a relay is answered at once with a failure.
    pub fn lost(&mut self, token: u64) {
        if let Some(Pending {
            purpose: Purpose::Relay {
                requester, reply, ..
            },
            ..
        }) = self.pending.remove(&token)
        {
            self.actions.push_back(Action::Respond {
                to: requester,
                reply,
                response: SwimResponse::Nack,
            });
        }
    }

    /// Forgets the request sent with `token` without acting on it (its answer was lost on
    /// the way back): deadlines take it from here.
    pub fn forget(&mut self, token: u64) {
        self.pending.remove(&token);
    }

    /// Starts a push-pull with `peer`, as on a new connection or the periodic exchange:
    /// by digest if the peer speaks it (`by_digest`), else by sending the whole view.
    pub fn push_pull(&mut self, peer: NodeId, now: Instant, by_digest: bool) {
        if by_digest {
            let buckets = bucket_count(self.membership.member_count());
            let request = SwimRequest::SyncDigest {
                record: Box::new(self.membership.local_record().clone()),
                digest: self.membership.digest(buckets),
            };
            self.send(peer, request, Purpose::SyncDigest { buckets }, now);
        } else {
            let request = SwimRequest::Sync {
                updates: self.membership.snapshot(SNAPSHOT_BUDGET),
            };
            self.send(peer, request, Purpose::Sync, now);
        }
    }

    /// The periodic work, called on a short tick: probe deadlines, relays that ran out,
    /// due refutations, suspicions that expired, the next probe, the next probe of a dead
    /// member, and the periodic push-pull with a random alive member (by digest if
    /// `by_digest` says the member speaks it).
    pub fn tick(&mut self, now: Instant, rng: &mut impl Rng, by_digest: impl Fn(&NodeId) -> bool) {
        let mut to_indirect = Vec::new();
        let mut to_fail = Vec::new();
        for (target, round) in &self.rounds {
            match round.phase {
                Phase::Direct { deadline } if now >= deadline => to_indirect.push(*target),
                Phase::Indirect { deadline, .. } if now >= deadline => to_fail.push(*target),
                _ => {}
            }
            // Rounds cannot outlive both phases by much; this is a safety net.
            if now.saturating_duration_since(round.started) > REQUEST_TIMEOUT {
                to_fail.push(*target);
            }
        }
        for target in to_indirect {
            self.go_indirect(target, now);
        }
        for target in to_fail {
            self.probe_failed(target, now);
        }
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| match p.purpose {
                Purpose::Relay { deadline, .. } => now >= deadline,
                _ => now.saturating_duration_since(p.sent) > REQUEST_TIMEOUT,
            })
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            self.lost(token);
        }
        if let Some(incarnation) = self.membership.poll_refutation(now) {
            self.refuted(incarnation);
        }
        if !self.suspects.is_empty() {
            for update in self.membership.expire_suspicions(now) {
                let node = update.node();
                let spread = self.announced.contains(&node);
                self.changed(node, MemberState::Dead, update.incarnation());
                if spread {
                    self.actions.push_back(Action::Broadcast(update));
                }
            }
        }
        let config = self.membership.config();
        let (probe_interval, dead_probe_interval) =
            (config.probe_interval, config.dead_probe_interval);
        if now.saturating_duration_since(self.last_probe) >= probe_interval {
            self.last_probe = now;
            if let Some(target) = self.membership.next_probe_target() {
                self.start_probe(target, now);
            }
        }
        if now.saturating_duration_since(self.last_dead_probe) >= dead_probe_interval {
            self.last_dead_probe = now;
            if let Some(target) = self.membership.next_dead_target() {
                let ping = SwimRequest::Ping {
                    about_you: self.about(&target),
                };
                self.send(target, ping, Purpose::DeadProbe { target }, now);
            }
        }
        let push_pull_interval = self.push_pull_interval();
        if now.saturating_duration_since(self.last_push_pull) >= push_pull_interval {
            self.last_push_pull = now;
            self.large_diffs
                .retain(|_, at| now.saturating_duration_since(*at) < push_pull_interval);
            let peer = self
                .membership
                .members()
                .filter(|m| m.state == MemberState::Alive)
                .map(|m| m.id)
                .choose(rng);
            if let Some(peer) = peer {
                self.push_pull(peer, now, by_digest(&peer));
            }
        }
    }
}
