//! Unit tests of the SWIM state machine, including the rules that hold against lying peers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::time::Instant;
use xnode_types::{NodeId, SecretKey};

use super::admission::{
    ADMISSION_WINDOW, MAX_ADMISSIONS_PER_WINDOW, MAX_UNVERIFIED_MEMBERS, UNVERIFIED_RETENTION,
};
use super::*;

const NET: &str = "unit-net";

fn key() -> SecretKey {
    SecretKey::generate()
}

fn addrs(port: u16) -> Vec<String> {
    vec![format!("/ip4/127.0.0.1/tcp/{port}")]
}

fn record(key: &SecretKey, incarnation: u64, status: SelfStatus) -> LivenessRecord {
    LivenessRecord::sign(key, NET, incarnation, status, &addrs(1))
}

fn alive(key: &SecretKey, incarnation: u64) -> MembershipUpdate {
    MembershipUpdate::Signed(record(key, incarnation, SelfStatus::Alive))
}

fn left(key: &SecretKey, incarnation: u64) -> MembershipUpdate {
    MembershipUpdate::Signed(record(key, incarnation, SelfStatus::Left))
}

fn suspect(node: NodeId, incarnation: u64, from: NodeId) -> MembershipUpdate {
    MembershipUpdate::Suspect {
        node,
        incarnation,
        from,
    }
}

fn dead(node: NodeId, incarnation: u64, from: NodeId) -> MembershipUpdate {
    MembershipUpdate::Dead {
        node,
        incarnation,
        from,
    }
}

/// A view with `n` members, each of which introduced itself directly (so each is a
/// trusted witness), all at incarnation 1.
fn setup(n: usize) -> (Membership, Vec<SecretKey>, Instant) {
    let now = Instant::now();
    let mut m = Membership::new(key(), NET, 1, SwimConfig::default());
    let others: Vec<SecretKey> = (0..n).map(|_| key()).collect();
    for o in &others {
        assert!(matches!(
            m.introduce(&record(o, 1, SelfStatus::Alive), now),
            Applied::Changed { .. }
        ));
    }
    (m, others, now)
}

fn state(m: &Membership, node: &NodeId) -> MemberState {
    m.member(node).unwrap().state
}

#[test]
fn precedence_rules() {
    let (mut m, others, now) = setup(3);
    let (x, w) = (&others[0], others[1].node_id());
    let xid = x.node_id();
    // Alive at the same incarnation is old news.
    assert_eq!(m.apply(&alive(x, 1), w, now), Applied::Ignored);
    // Suspect at the same incarnation overrides alive.
    assert!(matches!(
        m.apply(&suspect(xid, 1, w), w, now),
        Applied::Changed {
            state: MemberState::Suspect,
            ..
        }
    ));
    // A repeated suspicion is not news.
    assert_eq!(m.apply(&suspect(xid, 1, w), w, now), Applied::Ignored);
    // Only a higher incarnation, signed by x, refutes.
    assert_eq!(m.apply(&alive(x, 1), w, now), Applied::Ignored);
    assert!(matches!(
        m.apply(&alive(x, 2), w, now),
        Applied::Changed {
            state: MemberState::Alive,
            ..
        }
    ));
    // This node's own finding of death overrides alive at the same incarnation and is
    // final for it.
    let me = m.local();
    assert!(matches!(
        m.apply(&dead(xid, 2, me), me, now),
        Applied::Changed {
            state: MemberState::Dead,
            ..
        }
    ));
    assert_eq!(m.apply(&alive(x, 2), w, now), Applied::Ignored);
    assert_eq!(m.apply(&suspect(xid, 2, w), w, now), Applied::Ignored);
    // A restart (higher incarnation) brings it back.
    assert!(matches!(
        m.apply(&alive(x, 3), w, now),
        Applied::Changed {
            state: MemberState::Alive,
            ..
        }
    ));
    // Left, signed by x, is final for its incarnation.
    assert!(matches!(
        m.apply(&left(x, 3), w, now),
        Applied::Changed {
            state: MemberState::Left,
            ..
        }
    ));
    assert_eq!(m.apply(&alive(x, 3), w, now), Applied::Ignored);
    assert_eq!(m.apply(&dead(xid, 3, me), me, now), Applied::Ignored);
    assert!(matches!(
        m.apply(&alive(x, 4), w, now),
        Applied::Changed {
            state: MemberState::Alive,
            ..
        }
    ));
}

#[test]
fn a_node_refutes_rumours_about_itself() {
    let (mut m, others, now) = setup(2);
    let me = m.local();
    let w = others[0].node_id();
    assert_eq!(
        m.apply(&suspect(me, 1, w), w, now),
        Applied::Refuted { incarnation: 2 }
    );
    assert_eq!(m.local_incarnation(), 2);
    // Its new record is signed at the new incarnation.
    assert_eq!(m.local_record().incarnation, 2);
    m.local_record().verify(NET).unwrap();
    // An old rumour does not bump again.
    assert_eq!(m.apply(&suspect(me, 1, w), w, now), Applied::Ignored);
    // A death rumour a second later is refuted too.
    let later = now + REFUTATION_INTERVAL;
    assert_eq!(
        m.apply(&dead(me, 2, w), w, later),
        Applied::Refuted { incarnation: 3 }
    );
    assert_eq!(m.local_announcement().incarnation(), 3);
}

#[test]
fn refutations_are_rate_limited_but_never_dropped() {
    let (mut m, others, now) = setup(2);
    let me = m.local();
    let w = others[0].node_id();
    let mut bumps = 0;
    // A flood of current suspicions within one second: one bump, the rest deferred.
    for i in 0..1000u64 {
        let at = now + Duration::from_micros(i * 900);
        let rumour = suspect(me, m.local_incarnation(), w);
        if let Applied::Refuted { .. } = m.apply(&rumour, w, at) {
            bumps += 1;
        }
        assert!(m.poll_refutation(at).is_none());
    }
    assert_eq!(bumps, 1);
    assert_eq!(m.local_incarnation(), 2);
    // The deferred refutation happens once the interval is over, exactly once.
    let due = now + REFUTATION_INTERVAL;
    assert_eq!(m.poll_refutation(due), Some(3));
    assert_eq!(m.poll_refutation(due + Duration::from_secs(5)), None);
    assert_eq!(m.local_incarnation(), 3);
}

#[test]
fn suspicion_expires_into_death_faster_with_confirmations() {
    let (mut m, others, now) = setup(5);
    let x = others[0].node_id();
    let update = m.probe_failed(&x, now).expect("suspects an alive member");
    assert!(matches!(update, MembershipUpdate::Suspect { .. }));
    // Probing it again while suspect produces no new news: we already count as a witness.
    assert!(m.probe_failed(&x, now).is_none());
    let single = m.suspicion_timeout(1);
    assert_eq!(single, SwimConfig::default().suspicion_max);
    assert!(
        m.expire_suspicions(now + single - Duration::from_millis(1))
            .is_empty()
    );

    // Three more witnesses (the expected number, indirect_probes = 3): the timeout drops
    // to the minimum.
    for w in &others[1..4] {
        let w = w.node_id();
        m.apply(&suspect(x, 1, w), w, now);
    }
    let min = SwimConfig::default().suspicion_min;
    assert!(m.suspicion_timeout(2) > min);
    assert_eq!(m.suspicion_timeout(4), min);
    let dead = m.expire_suspicions(now + min);
    assert_eq!(dead.len(), 1);
    assert_eq!(state(&m, &x), MemberState::Dead);
}

#[test]
fn probe_rotation_covers_every_live_member_and_skips_dead_ones() {
    let (mut m, others, now) = setup(4);
    let me = m.local();
    m.apply(&dead(others[3].node_id(), 1, me), me, now);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        seen.insert(m.next_probe_target().unwrap());
    }
    assert_eq!(seen.len(), 3);
    assert!(!seen.contains(&others[3].node_id()));
    assert_eq!(m.next_dead_target(), Some(others[3].node_id()));
}

/// Nodes that agree on the membership walk the same ring from their own places, so in
/// every round each member is probed by exactly one node, and a crashed member within one
/// interval (a private shuffled order leaves that to chance).
#[test]
fn nodes_with_one_view_probe_each_member_once_per_round() {
    let now = Instant::now();
    let keys: Vec<SecretKey> = (0..7).map(|_| key()).collect();
    let mut tables: Vec<Membership> = keys
        .iter()
        .map(|k| {
            let mut m = Membership::new(k.clone(), NET, 1, SwimConfig::default());
            for o in keys.iter().filter(|o| o.node_id() != k.node_id()) {
                m.introduce(&record(o, 1, SelfStatus::Alive), now);
            }
            m
        })
        .collect();
    for round in 0..2 * keys.len() {
        let mut probed: Vec<NodeId> = tables
            .iter_mut()
            .map(|m| m.next_probe_target().unwrap())
            .collect();
        probed.sort();
        probed.dedup();
        assert_eq!(
            probed.len(),
            keys.len(),
            "round {round}: a member probed twice"
        );
    }
}

#[test]
fn indirect_helpers_exclude_target_and_non_alive() {
    let (mut m, others, now) = setup(5);
    let me = m.local();
    m.apply(&dead(others[4].node_id(), 1, me), me, now);
    let helpers = m.indirect_helpers(&others[0].node_id(), 3);
    assert_eq!(helpers.len(), 3);
    assert!(!helpers.contains(&others[0].node_id()));
    assert!(!helpers.contains(&others[4].node_id()));
}

#[test]
fn snapshot_round_trips_into_another_view() {
    let (mut a, others, now) = setup(3);
    let w = others[0].node_id();
    a.apply(&left(&others[2], 1), w, now);
    let mut b = Membership::new(others[0].clone(), NET, 1, SwimConfig::default());
    let snapshot = a.snapshot(usize::MAX);
    // The sender introduces itself with its own record, then its view follows.
    let MembershipUpdate::Signed(own) = &snapshot[0] else {
        panic!("the snapshot starts with the sender's own record");
    };
    b.introduce(own, now);
    for u in &snapshot[1..] {
        b.apply(u, a.local(), now);
    }
    assert_eq!(state(&b, &a.local()), MemberState::Alive);
    // A left member is not admitted from hearsay: there is nothing to learn from it.
    assert!(b.member(&others[2].node_id()).is_none());
    assert_eq!(state(&b, &others[1].node_id()), MemberState::Alive);
    // b ignores news about itself that is not newer.
    assert!(b.member(&others[0].node_id()).is_none());
    assert_eq!(b.local_incarnation(), 1);
}

#[test]
fn own_failed_probe_of_a_suspect_is_a_confirmation() {
    let (mut m, others, now) = setup(5);
    let x = others[0].node_id();
    let w = others[1].node_id();
    // Someone else suspected x first.
    m.apply(&suspect(x, 1, w), w, now);
    assert_eq!(state(&m, &x), MemberState::Suspect);
    // Our own probe fails too: we confirm, once.
    let confirmation = m.probe_failed(&x, now).expect("a confirmation");
    assert_eq!(confirmation, suspect(x, 1, m.local()));
    assert!(m.probe_failed(&x, now).is_none());
}

// ----- rules against lying peers ------------------------------------------------------

#[test]
fn alive_and_left_forged_by_a_third_party_are_refused() {
    let (mut m, others, now) = setup(3);
    let (victim, rogue) = (&others[0], &others[1]);
    let rid = rogue.node_id();
    for status in [SelfStatus::Left, SelfStatus::Alive] {
        // Signed by the rogue in the victim's name.
        let mut forged = LivenessRecord::sign(rogue, NET, u64::MAX, status, &addrs(9));
        forged.node = victim.node_id();
        assert_eq!(
            m.apply(&MembershipUpdate::Signed(forged), rid, now),
            Applied::Refused(Refusal::BadRecord)
        );
        // A genuine record with its incarnation raised after signing.
        let mut raised = record(victim, 1, status);
        raised.incarnation = 1_000;
        assert_eq!(
            m.apply(&MembershipUpdate::Signed(raised), rid, now),
            Applied::Refused(Refusal::BadRecord)
        );
        // A record of another network.
        let foreign = LivenessRecord::sign(victim, "other-net", 5, status, &addrs(9));
        assert_eq!(
            m.apply(&MembershipUpdate::Signed(foreign), rid, now),
            Applied::Refused(Refusal::BadRecord)
        );
    }
    let member = m.member(&victim.node_id()).unwrap();
    assert_eq!(member.state, MemberState::Alive);
    assert_eq!(member.incarnation, 1);
    assert_eq!(member.addresses(), addrs(1));
    // The victim's own left is believed, whoever relays it.
    assert!(matches!(
        m.apply(&left(victim, 1), rid, now),
        Applied::Changed {
            state: MemberState::Left,
            ..
        }
    ));
}

#[test]
fn dead_at_u64_max_from_a_third_party_is_ignored() {
    let (mut m, others, now) = setup(3);
    let (b, w) = (others[0].node_id(), others[1].node_id());
    assert_eq!(
        m.apply(&dead(b, u64::MAX, w), w, now),
        Applied::Refused(Refusal::AboveVouchedIncarnation)
    );
    assert_eq!(
        m.apply(&suspect(b, u64::MAX, w), w, now),
        Applied::Refused(Refusal::AboveVouchedIncarnation)
    );
    let member = m.member(&b).unwrap();
    assert_eq!((member.state, member.incarnation), (MemberState::Alive, 1));
    // b's next record is still believed.
    assert!(matches!(
        m.apply(&alive(&others[0], 10), w, now),
        Applied::Changed { .. }
    ));
}

#[test]
fn third_parties_cannot_raise_an_incarnation_beyond_what_the_subject_signed() {
    let (mut m, others, now) = setup(3);
    let (b, w) = (&others[0], others[1].node_id());
    let bid = b.node_id();
    assert_eq!(
        m.apply(&suspect(bid, 2, w), w, now),
        Applied::Refused(Refusal::AboveVouchedIncarnation)
    );
    assert_eq!(m.member(&bid).unwrap().vouched_incarnation(), 1);
    // b signs incarnation 5: suspicions up to 5 are fine, 6 is not.
    m.apply(&alive(b, 5), w, now);
    assert_eq!(m.member(&bid).unwrap().vouched_incarnation(), 5);
    assert!(matches!(
        m.apply(&suspect(bid, 5, w), w, now),
        Applied::Changed { .. }
    ));
    assert_eq!(
        m.apply(&dead(bid, 6, w), w, now),
        Applied::Refused(Refusal::AboveVouchedIncarnation)
    );
    // The registry (b's own signed node record) vouches too.
    m.observe_vouched(bid, &addrs(1), 7, false, now);
    assert_eq!(m.member(&bid).unwrap().vouched_incarnation(), 7);
}

#[test]
fn a_third_partys_death_notice_is_only_a_suspicion_until_our_own_timeout() {
    let (mut m, others, now) = setup(5);
    let (x, w) = (others[0].node_id(), others[1].node_id());
    assert!(matches!(
        m.apply(&dead(x, 1, w), w, now),
        Applied::Changed {
            state: MemberState::Suspect,
            ..
        }
    ));
    let timeout = m.suspicion_timeout(1);
    assert!(m.expire_suspicions(now + timeout / 2).is_empty());
    assert_eq!(state(&m, &x), MemberState::Suspect);
    // A direct answer from x clears it here.
    let answered = m.acked_by(x, None, now + timeout / 2);
    assert!(matches!(
        answered,
        Applied::Changed {
            state: MemberState::Alive,
            incarnation: 1,
            ..
        }
    ));
    assert!(m.expire_suspicions(now + timeout * 2).is_empty());
    // Without an answer, our own timeout decides.
    m.apply(&dead(x, 1, w), w, now + timeout * 2);
    assert_eq!(m.expire_suspicions(now + timeout * 4).len(), 1);
    assert_eq!(state(&m, &x), MemberState::Dead);
}

#[test]
fn witnesses_must_be_their_own_senders_and_trusted_members() {
    let (mut m, others, now) = setup(3);
    let (x, w, y) = (
        others[0].node_id(),
        others[1].node_id(),
        others[2].node_id(),
    );
    assert_eq!(
        m.apply(&suspect(x, 1, y), w, now),
        Applied::Refused(Refusal::ForgedWitness)
    );
    let stranger = key().node_id();
    assert_eq!(
        m.apply(&suspect(x, 1, stranger), stranger, now),
        Applied::Refused(Refusal::UntrustedWitness)
    );
    assert_eq!(
        m.apply(&dead(stranger, 1, w), w, now),
        Applied::Refused(Refusal::UnknownMember)
    );
    assert!(m.member(&stranger).is_none(), "no tombstones from hearsay");
    // Forged and untrusted witnesses do not shorten a suspicion either.
    m.apply(&suspect(x, 1, w), w, now);
    for _ in 0..10 {
        let fake = key().node_id();
        m.apply(&suspect(x, 1, fake), fake, now);
    }
    assert_eq!(m.suspicion_timeout(1), SwimConfig::default().suspicion_max);
    assert!(
        m.expire_suspicions(now + SwimConfig::default().suspicion_min)
            .is_empty()
    );
    assert_eq!(state(&m, &x), MemberState::Suspect);
}

#[test]
fn addresses_change_only_through_a_signed_record_of_the_subject() {
    let (mut m, others, now) = setup(2);
    let (b, w) = (&others[0], others[1].node_id());
    let bid = b.node_id();
    // A record signed by b at a newer incarnation replaces them.
    let moved = LivenessRecord::sign(b, NET, 2, SelfStatus::Alive, &addrs(7));
    m.apply(&MembershipUpdate::Signed(moved), w, now);
    assert_eq!(m.member(&bid).unwrap().addresses(), addrs(7));
    // Anyone else's version is refused.
    let mut poisoned = LivenessRecord::sign(b, NET, 3, SelfStatus::Alive, &addrs(7));
    poisoned.addresses = vec!["/ip4/198.51.100.1/tcp/1".into()];
    assert_eq!(
        m.apply(&MembershipUpdate::Signed(poisoned), w, now),
        Applied::Refused(Refusal::BadRecord)
    );
    assert_eq!(m.member(&bid).unwrap().addresses(), addrs(7));
    // Even b cannot make others dial more than MAX_ADDRESSES addresses.
    let mut bloated = LivenessRecord::sign(b, NET, 4, SelfStatus::Alive, &addrs(7));
    bloated.addresses = (0..100).map(|i| format!("/ip4/10.0.0.1/tcp/{i}")).collect();
    assert_eq!(
        m.apply(&MembershipUpdate::Signed(bloated), w, now),
        Applied::Refused(Refusal::BadRecord)
    );
    assert!(m.member(&bid).unwrap().addresses().len() <= crate::liveness::MAX_ADDRESSES);
}

#[test]
fn a_member_keeps_its_addresses_until_something_it_signed_moves_them() {
    let (mut m, others, now) = setup(2);
    let (b, c) = (&others[0], &others[1]);
    let (bid, cid) = (b.node_id(), c.node_id());
    let introduced = m.member(&bid).unwrap().addresses().to_vec();
    assert!(!introduced.is_empty());
    // A departure carries no addresses; the member keeps the ones it had.
    let left = LivenessRecord::sign(b, NET, 2, SelfStatus::Left, &[]);
    m.apply(&MembershipUpdate::Signed(left), cid, now);
    assert_eq!(state(&m, &bid), MemberState::Left);
    assert_eq!(m.member(&bid).unwrap().addresses(), introduced);
    assert!(
        m.member(&bid)
            .unwrap()
            .record()
            .unwrap()
            .addresses
            .is_empty()
    );
    // The registry (b's own registry record) moves them, and a record of b's that says
    // the same holds them once.
    m.observe_vouched(bid, &addrs(9), 3, false, now);
    assert_eq!(m.member(&bid).unwrap().addresses(), addrs(9));
    let back = LivenessRecord::sign(b, NET, 3, SelfStatus::Alive, &addrs(9));
    m.apply(&MembershipUpdate::Signed(back), cid, now);
    assert_eq!(m.member(&bid).unwrap().addresses(), addrs(9));
    // A newer record with other addresses moves them again.
    let moved = LivenessRecord::sign(b, NET, 4, SelfStatus::Alive, &addrs(5));
    m.apply(&MembershipUpdate::Signed(moved), cid, now);
    assert_eq!(m.member(&bid).unwrap().addresses(), addrs(5));
    // A member known only from the registry has the registry's addresses.
    let d = key();
    m.observe_vouched(d.node_id(), &addrs(11), 1, false, now);
    assert_eq!(m.member(&d.node_id()).unwrap().addresses(), addrs(11));
    assert!(m.member(&d.node_id()).unwrap().record().is_none());
}

#[test]
fn indirect_probes_go_mostly_through_near_helpers_and_one_random_one() {
    let (mut m, others, _) = setup(40);
    m.seed_rng(5);
    let ids: Vec<NodeId> = others.iter().map(SecretKey::node_id).collect();
    let target = ids[0];
    let near: Vec<NodeId> = ids[1..9].to_vec();
    // Far members at 300 ms and more, each a little farther than the one before.
    for (i, id) in ids.iter().enumerate().skip(1) {
        let rtt = if near.contains(id) { 2 } else { 300 + i as u64 };
        m.observe_rtt(id, Duration::from_millis(rtt));
    }
    let farthest: Vec<NodeId> = ids[ids.len() - 10..].to_vec();
    let (mut near_first, mut last_farthest) = (0, 0);
    for _ in 0..200 {
        let helpers = m.indirect_helpers(&target, 3);
        assert_eq!(helpers.len(), 3);
        assert!(!helpers.contains(&target));
        near_first += usize::from(near.contains(&helpers[0]) && near.contains(&helpers[1]));
        last_farthest += usize::from(farthest.contains(&helpers[2]));
    }
    // A sample of 16 of the 39 holds two of the 8 near members 95 % of the time.
    assert!(
        near_first >= 170,
        "both near places near in {near_first} of 200"
    );
    // The last place is anyone's: one of the 10 farthest of the 37 left about a quarter
    // of the time (the nearest of a sample would almost never be).
    assert!(last_farthest >= 25, "{last_farthest} of 200");
}

/// In a large network a node has measured few of its members (it probes one in each
/// interval): the near helpers come from those it measured, not from a sample of everyone,
/// which would hardly ever hold one of them.
#[test]
fn near_helpers_come_from_the_members_measured_in_a_large_table() {
    let (mut m, others, _) = setup(600);
    m.seed_rng(9);
    let ids: Vec<NodeId> = others.iter().map(SecretKey::node_id).collect();
    let target = ids[0];
    let measured: Vec<NodeId> = ids[1..7].to_vec();
    for (i, id) in measured.iter().enumerate() {
        m.observe_rtt(id, Duration::from_millis(2 + i as u64));
    }
    let mut near_first = 0;
    for _ in 0..200 {
        let helpers = m.indirect_helpers(&target, 3);
        assert_eq!(helpers.len(), 3);
        near_first += usize::from(measured.contains(&helpers[0]) && measured.contains(&helpers[1]));
    }
    // A sample of 16 of all 599 would hold two of the six measured members about 1 % of
    // the time.
    assert_eq!(near_first, 200);
}

#[test]
fn a_round_trip_is_smoothed_and_an_unmeasured_member_counts_as_far() {
    let (mut m, others, _) = setup(2);
    let (a, b) = (others[0].node_id(), others[1].node_id());
    m.observe_rtt(&a, Duration::from_millis(100));
    m.observe_rtt(&a, Duration::from_millis(900));
    // 100 + (900 - 100) / 8.
    assert_eq!(
        m.member(&a).unwrap().rtt(),
        Some(Duration::from_millis(200))
    );
    assert_eq!(m.member(&b).unwrap().rtt(), None);
    // Absurd round trips saturate instead of overflowing.
    m.observe_rtt(&b, Duration::from_secs(u64::MAX / 4));
    assert!(m.member(&b).unwrap().rtt().is_some());
}

#[test]
fn hearsay_admissions_are_capped_per_source_and_in_total() {
    let (mut m, others, now) = setup(6);
    // A stranger cannot introduce anyone but itself.
    let stranger = key();
    let third = key();
    assert_eq!(
        m.apply(&alive(&third, 1), stranger.node_id(), now),
        Applied::Refused(Refusal::UntrustedWitness)
    );
    // A member introduces at most MAX_ADMISSIONS_PER_WINDOW per window.
    let source = others[0].node_id();
    let mut admitted = 0;
    for _ in 0..(MAX_ADMISSIONS_PER_WINDOW * 3) {
        if let Applied::Changed { .. } = m.apply(&alive(&key(), 1), source, now) {
            admitted += 1;
        }
    }
    assert_eq!(admitted, MAX_ADMISSIONS_PER_WINDOW);
    // Over many windows and sources, unverified members stay within their cap.
    for round in 0..20u32 {
        let at = now + ADMISSION_WINDOW * (round + 1);
        for s in &others {
            for _ in 0..MAX_ADMISSIONS_PER_WINDOW {
                m.apply(&alive(&key(), 1), s.node_id(), at);
            }
        }
    }
    let unverified = m.members().filter(|m| m.is_unverified()).count();
    assert_eq!(unverified, MAX_UNVERIFIED_MEMBERS);
    assert_eq!(m.members().count(), others.len() + MAX_UNVERIFIED_MEMBERS);
    // Hearsay members are not passed on.
    assert_eq!(m.snapshot(usize::MAX).len(), 1 + others.len());
    // A peer that contacts us directly with its own record is still let in.
    let direct = key();
    assert!(matches!(
        m.introduce(&record(&direct, 1, SelfStatus::Alive), now),
        Applied::Changed { .. }
    ));
}

#[test]
fn hearsay_members_that_die_unverified_are_forgotten() {
    let (mut m, others, now) = setup(2);
    let me = m.local();
    let fake = key();
    let source = others[0].node_id();
    m.apply(&alive(&fake, 1), source, now);
    m.apply(&dead(fake.node_id(), 1, me), me, now);
    // A real member that died is remembered.
    m.apply(&dead(others[1].node_id(), 1, me), me, now);
    assert_eq!(m.reap(now + UNVERIFIED_RETENTION / 2), 0);
    assert_eq!(m.reap(now + UNVERIFIED_RETENTION), 1);
    assert!(m.member(&fake.node_id()).is_none());
    assert_eq!(state(&m, &others[1].node_id()), MemberState::Dead);
}

#[test]
fn nothing_overflows_at_the_largest_incarnation() {
    // This node at u64::MAX: a rumour it must refute cannot wrap or panic.
    let mut m = Membership::new(key(), NET, u64::MAX, SwimConfig::default());
    let now = Instant::now();
    let w = key();
    m.introduce(&record(&w, 1, SelfStatus::Alive), now);
    let wid = w.node_id();
    let me = m.local();
    assert_eq!(
        m.apply(&dead(me, u64::MAX, wid), wid, now),
        Applied::Ignored
    );
    assert_eq!(m.local_incarnation(), u64::MAX);
    assert!(m.poll_refutation(now + Duration::from_secs(10)).is_none());

    // A member that really signed u64::MAX, and rumours about it.
    let (mut m, others, now) = setup(2);
    let (b, wid) = (&others[0], others[1].node_id());
    assert!(matches!(
        m.apply(&alive(b, u64::MAX), wid, now),
        Applied::Changed { .. }
    ));
    assert!(matches!(
        m.apply(&dead(b.node_id(), u64::MAX, wid), wid, now),
        Applied::Changed {
            state: MemberState::Suspect,
            ..
        }
    ));
    m.probe_failed(&b.node_id(), now);
    m.expire_suspicions(now + Duration::from_secs(60));
    assert_eq!(state(&m, &b.node_id()), MemberState::Dead);
    assert_eq!(m.apply(&alive(b, u64::MAX), wid, now), Applied::Ignored);

    // Rumours about this node above what it signed are refused, not obeyed.
    let me = m.local();
    assert_eq!(
        m.apply(&suspect(me, u64::MAX, wid), wid, now),
        Applied::Refused(Refusal::AboveVouchedIncarnation)
    );
    assert_eq!(m.local_incarnation(), 1);
}

#[test]
fn a_record_of_an_earlier_run_lifts_this_node_above_it() {
    let me = key();
    let mut m = Membership::new(me.clone(), NET, 3, SwimConfig::default());
    let now = Instant::now();
    let earlier_run = LivenessRecord::sign(&me, NET, 50, SelfStatus::Alive, &addrs(1));
    let w = key();
    m.introduce(&record(&w, 1, SelfStatus::Alive), now);
    assert_eq!(
        m.apply(&MembershipUpdate::Signed(earlier_run), w.node_id(), now),
        Applied::Refuted { incarnation: 51 }
    );
    // A forgery of one does nothing.
    let mut forged = LivenessRecord::sign(&w, NET, 500, SelfStatus::Alive, &[]);
    forged.node = me.node_id();
    assert_eq!(
        m.apply(&MembershipUpdate::Signed(forged), w.node_id(), now),
        Applied::Refused(Refusal::BadRecord)
    );
    assert_eq!(m.local_incarnation(), 51);
}

#[test]
fn a_leaving_node_signs_left_and_refutes_nothing() {
    let (mut m, others, now) = setup(1);
    let record = m.leave();
    assert_eq!(record.status, SelfStatus::Left);
    record.verify(NET).unwrap();
    let w = others[0].node_id();
    let me = m.local();
    assert_eq!(m.apply(&suspect(me, 1, w), w, now), Applied::Ignored);
    assert_eq!(m.local_incarnation(), 1);
}

#[test]
fn push_pull_slows_down_as_the_table_doubles() {
    let base = Duration::from_secs(10);
    assert_eq!(scaled_push_pull_interval(base, 0), base);
    assert_eq!(scaled_push_pull_interval(base, 32), base);
    // memberlist's pushPullScale: ceil(log2(n) - log2(32)) + 1 times the interval.
    assert_eq!(scaled_push_pull_interval(base, 33), base * 2);
    assert_eq!(scaled_push_pull_interval(base, 64), base * 2);
    assert_eq!(scaled_push_pull_interval(base, 65), base * 3);
    assert_eq!(scaled_push_pull_interval(base, 1_000), base * 6);
    assert_eq!(scaled_push_pull_interval(base, 10_000), base * 10);
    assert_eq!(
        scaled_push_pull_interval(Duration::MAX, usize::MAX),
        Duration::MAX
    );
}
