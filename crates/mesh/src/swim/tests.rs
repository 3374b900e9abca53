//! Unit tests of the SWIM state machine.

use std::time::Duration;

use tokio::time::Instant;
use xnode_types::{NodeId, SecretKey};

use super::*;

fn id() -> NodeId {
    SecretKey::generate().node_id()
}

fn alive(node: NodeId, incarnation: u64) -> MembershipUpdate {
    MembershipUpdate::Alive {
        node,
        incarnation,
        addresses: vec!["/ip4/127.0.0.1/tcp/1".into()],
    }
}

fn setup(n: usize) -> (Membership, Vec<NodeId>, Instant) {
    let now = Instant::now();
    let mut m = Membership::new(id(), 1, SwimConfig::default());
    let others: Vec<NodeId> = (0..n).map(|_| id()).collect();
    for o in &others {
        assert!(matches!(
            m.apply(&alive(*o, 1), now),
            Applied::Changed { .. }
        ));
    }
    (m, others, now)
}

#[test]
fn precedence_rules() {
    let (mut m, others, now) = setup(3);
    let x = others[0];
    let w = others[1];
    // Alive at the same incarnation is old news.
    assert_eq!(m.apply(&alive(x, 1), now), Applied::Ignored);
    // Suspect at the same incarnation overrides alive.
    let s = MembershipUpdate::Suspect {
        node: x,
        incarnation: 1,
        from: w,
    };
    assert!(matches!(
        m.apply(&s, now),
        Applied::Changed {
            state: MemberState::Suspect,
            ..
        }
    ));
    // A repeated suspicion is not news.
    assert_eq!(m.apply(&s, now), Applied::Ignored);
    // Only a higher incarnation refutes.
    assert_eq!(m.apply(&alive(x, 1), now), Applied::Ignored);
    assert!(matches!(
        m.apply(&alive(x, 2), now),
        Applied::Changed {
            state: MemberState::Alive,
            ..
        }
    ));
    // Dead overrides alive at the same incarnation and is final for it.
    let d = MembershipUpdate::Dead {
        node: x,
        incarnation: 2,
        from: w,
    };
    assert!(matches!(
        m.apply(&d, now),
        Applied::Changed {
            state: MemberState::Dead,
            ..
        }
    ));
    assert_eq!(m.apply(&alive(x, 2), now), Applied::Ignored);
    assert_eq!(
        m.apply(
            &MembershipUpdate::Suspect {
                node: x,
                incarnation: 2,
                from: w
            },
            now
        ),
        Applied::Ignored
    );
    // A restart (higher incarnation) brings it back.
    assert!(matches!(
        m.apply(&alive(x, 3), now),
        Applied::Changed {
            state: MemberState::Alive,
            ..
        }
    ));
    // Left is final for its incarnation.
    let l = MembershipUpdate::Left {
        node: x,
        incarnation: 3,
    };
    assert!(matches!(
        m.apply(&l, now),
        Applied::Changed {
            state: MemberState::Left,
            ..
        }
    ));
    assert_eq!(m.apply(&alive(x, 3), now), Applied::Ignored);
    assert_eq!(
        m.apply(
            &MembershipUpdate::Dead {
                node: x,
                incarnation: 3,
                from: w
            },
            now
        ),
        Applied::Ignored
    );
    assert!(matches!(
        m.apply(&alive(x, 4), now),
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
    let s = MembershipUpdate::Suspect {
        node: me,
        incarnation: 1,
        from: others[0],
    };
    assert_eq!(m.apply(&s, now), Applied::Refuted { incarnation: 2 });
    assert_eq!(m.local_incarnation(), 2);
    // An old rumour does not bump again.
    assert_eq!(m.apply(&s, now), Applied::Ignored);
    let d = MembershipUpdate::Dead {
        node: me,
        incarnation: 2,
        from: others[0],
    };
    assert_eq!(m.apply(&d, now), Applied::Refuted { incarnation: 3 });
    assert_eq!(m.local_alive().incarnation(), 3);
}

#[test]
fn suspicion_expires_into_death_faster_with_confirmations() {
    let (mut m, others, now) = setup(5);
    let x = others[0];
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
        m.apply(
            &MembershipUpdate::Suspect {
                node: x,
                incarnation: 1,
                from: *w,
            },
            now,
        );
    }
    let min = SwimConfig::default().suspicion_min;
    assert!(m.suspicion_timeout(2) > min);
    assert_eq!(m.suspicion_timeout(4), min);
    let dead = m.expire_suspicions(now + min);
    assert_eq!(dead.len(), 1);
    assert_eq!(m.member(&x).unwrap().state, MemberState::Dead);
}

#[test]
fn probe_rotation_covers_every_live_member_and_skips_dead_ones() {
    let (mut m, others, now) = setup(4);
    m.apply(
        &MembershipUpdate::Dead {
            node: others[3],
            incarnation: 1,
            from: others[0],
        },
        now,
    );
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        seen.insert(m.next_probe_target().unwrap());
    }
    assert_eq!(seen.len(), 3);
    assert!(!seen.contains(&others[3]));
    assert_eq!(m.next_dead_target(), Some(others[3]));
}

#[test]
fn indirect_helpers_exclude_target_and_non_alive() {
    let (mut m, others, now) = setup(5);
    m.apply(
        &MembershipUpdate::Dead {
            node: others[4],
            incarnation: 1,
            from: others[0],
        },
        now,
    );
    let helpers = m.indirect_helpers(&others[0], 3);
    assert_eq!(helpers.len(), 3);
    assert!(!helpers.contains(&others[0]));
    assert!(!helpers.contains(&others[4]));
}

#[test]
fn snapshot_round_trips_into_another_view() {
    let (mut a, others, now) = setup(3);
    a.apply(
        &MembershipUpdate::Left {
            node: others[2],
            incarnation: 1,
        },
        now,
    );
    let mut b = Membership::new(others[0], 1, SwimConfig::default());
    for u in a.snapshot() {
        b.apply(&u, now);
    }
    assert_eq!(b.member(&a.local()).unwrap().state, MemberState::Alive);
    assert_eq!(b.member(&others[2]).unwrap().state, MemberState::Left);
    assert_eq!(b.member(&others[1]).unwrap().state, MemberState::Alive);
    // b ignores news about itself that is not newer.
    assert!(b.member(&others[0]).is_none());
}

#[test]
fn own_failed_probe_of_a_suspect_is_a_confirmation() {
    let (mut m, others, now) = setup(5);
    let x = others[0];
    // Someone else suspected x first.
    m.apply(
        &MembershipUpdate::Suspect {
            node: x,
            incarnation: 1,
            from: others[1],
        },
        now,
    );
    assert_eq!(m.member(&x).unwrap().state, MemberState::Suspect);
    // Our own probe fails too: we confirm, once.
    let confirmation = m.probe_failed(&x, now).expect("a confirmation");
    assert_eq!(
        confirmation,
        MembershipUpdate::Suspect {
            node: x,
            incarnation: 1,
            from: m.local()
        }
    );
    assert!(m.probe_failed(&x, now).is_none());
}
