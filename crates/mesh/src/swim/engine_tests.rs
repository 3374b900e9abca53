//! Tests of the protocol engine's push-pull by digest: two engines exchange messages
//! directly (encoded and decoded, as on the wire), with no network in between.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::Instant;
use xnode_types::{NodeId, SecretKey};

use super::digest::{MAX_DIGEST_BUCKETS, ViewDigest};
use super::engine::{Action, Engine, REPEATED_DIFF_ENTRIES};

use super::{MemberState, Membership, MembershipUpdate, SwimConfig};
use crate::liveness::{LivenessRecord, SelfStatus};
use crate::proto::{MAX_SWIM_BYTES, SwimRequest, SwimResponse};

const NET: &str = "engine-net";
const PUSH_PULL: Duration = Duration::from_secs(10);

fn addresses() -> Vec<String> {
    vec!["/ip4/127.0.0.1/tcp/1".to_owned()]
}

fn record(key: &SecretKey, incarnation: u64) -> LivenessRecord {
    LivenessRecord::sign(key, NET, incarnation, SelfStatus::Alive, &addresses())
}

/// An engine for `key` that heard directly from each of `members`, at incarnation 1.
fn engine(key: &SecretKey, members: &[&SecretKey], now: Instant) -> Engine<u64> {
    let mut membership = Membership::new(key.clone(), NET, 1, SwimConfig::default());
    // The same addresses the others' copies of its record carry, so equal views hash alike.
    membership.set_local_addresses(addresses());
    for m in members {
        if m.node_id() != key.node_id() {
            membership.introduce(&record(m, 1), now);
        }
    }
    Engine::new(membership, PUSH_PULL, now)
}

/// Push-pull bytes and entries that went each way during an exchange.
#[derive(Default, Debug)]
struct Exchanged {
    bytes: usize,
    entries: usize,
    messages: usize,
}

fn wire<T: xnode_wire::Versioned + serde::Serialize + serde::de::DeserializeOwned>(
    value: &T,
    exchanged: &mut Exchanged,
) -> T {
    let bytes = xnode_wire::encode(value).unwrap();
    exchanged.bytes += bytes.len();
    exchanged.messages += 1;
    xnode_wire::decode(&bytes, MAX_SWIM_BYTES).unwrap()
}

fn entries_of_request(request: &SwimRequest) -> usize {
    match request {
        SwimRequest::Sync { updates } | SwimRequest::SyncEntries { updates } => updates.len(),
        _ => 0,
    }
}

fn entries_of_response(response: &SwimResponse) -> usize {
    match response {
        SwimResponse::Sync { updates } | SwimResponse::SyncDiff { updates, .. } => updates.len(),
        _ => 0,
    }
}

/// Runs the actions of two engines against each other until both are quiet; gossip is
/// dropped (the exchange alone must converge).
fn settle(a: &mut Engine<u64>, b: &mut Engine<u64>, now: Instant) -> Exchanged {
    let mut exchanged = Exchanged::default();
    loop {
        let mut quiet = true;
        for side in 0..2 {
            let (me, other) = if side == 0 {
                (&mut *a, &mut *b)
            } else {
                (&mut *b, &mut *a)
            };
            let me_id = me.membership().local();
            let other_id = other.membership().local();
            while let Some(action) = me.next_action() {
                quiet = false;
                match action {
                    // Only what goes between the two arrives; probes of others are lost.
                    Action::Send { token, to, request } if to == other_id => {
                        exchanged.entries += entries_of_request(&request);
                        let request = wire(&request, &mut exchanged);
                        other.on_request(me_id, token, request, now, |m| SwimResponse::Ack {
                            record: Some(Box::new(m.local_record().clone())),
                        });
                    }
                    Action::Respond {
                        to,
                        reply,
                        response,
                    } if to == other_id => {
                        exchanged.entries += entries_of_response(&response);
                        let response = wire(&response, &mut exchanged);
                        other.on_response(reply, me_id, Some(response), now);
                    }
                    _ => {}
                }
            }
        }
        if quiet {
            return exchanged;
        }
    }
}

fn state_of(e: &Engine<u64>, node: &NodeId) -> Option<(MemberState, u64)> {
    e.membership()
        .member(node)
        .map(|m| (m.state, m.incarnation))
}

#[test]
fn a_digest_push_pull_sends_only_what_differs_and_the_views_converge() {
    let now = Instant::now();
    let keys: Vec<SecretKey> = (0..202).map(|_| SecretKey::generate()).collect();
    let all: Vec<&SecretKey> = keys.iter().collect();
    let (ka, kb) = (&keys[0], &keys[1]);
    let mut a = engine(ka, &all[..200], now);
    let mut b = engine(kb, &all[..200], now);

    // Equal views: the answer names no bucket, and no entry goes either way.
    a.push_pull(kb.node_id(), now, true);
    let same = settle(&mut a, &mut b, now);
    assert_eq!(same.entries, 0, "{same:?}");
    assert_eq!(same.messages, 2, "a digest and its empty answer: {same:?}");
    // The whole view is about 150 bytes a member.
    a.push_pull(kb.node_id(), now, false);
    let whole = settle(&mut a, &mut b, now);
    assert!(whole.entries >= 400, "{whole:?}");
    assert!(
        same.bytes * 10 < whole.bytes,
        "digest {} bytes against the whole view's {}",
        same.bytes,
        whole.bytes
    );

    // Differences both ways: a newer record of one member on b, a member only a knows,
    // and a member a holds dead while b thinks it alive.
    let (newer, only_a, gone) = (&keys[5], &keys[200], &keys[7]);
    b.membership_mut().introduce(&record(newer, 2), now);
    a.membership_mut().introduce(&record(only_a, 1), now);
    let gone_id = gone.node_id();
    let dead = MembershipUpdate::Dead {
        node: gone_id,
        incarnation: 1,
        from: ka.node_id(),
    };
    a.apply(&dead, ka.node_id(), now);
    assert_eq!(
        state_of(&a, &gone_id),
        Some((MemberState::Dead, 1)),
        "a's own finding of death is final at that incarnation"
    );
    while a.next_action().is_some() {}

    a.push_pull(kb.node_id(), now, true);
    let diff = settle(&mut a, &mut b, now);
    assert_eq!(
        state_of(&a, &newer.node_id()),
        Some((MemberState::Alive, 2))
    );
    assert_eq!(
        state_of(&b, &only_a.node_id()),
        Some((MemberState::Alive, 1))
    );
    // A third party's death notice is a suspicion at b (only b's own timeout kills).
    assert_eq!(state_of(&b, &gone_id), Some((MemberState::Suspect, 1)));
    // Only the differing buckets travelled: a few members' entries, not 200.
    assert!(diff.entries <= 60, "{diff:?}");
    assert!(diff.bytes * 3 < whole.bytes, "{diff:?} against {whole:?}");
}

#[test]
fn a_bad_or_hostile_digest_gets_at_most_one_whole_view_per_interval() {
    let now = Instant::now();
    let keys: Vec<SecretKey> = (0..150).map(|_| SecretKey::generate()).collect();
    let all: Vec<&SecretKey> = keys.iter().collect();
    let (kb, liar) = (&keys[0], &keys[1]);
    let mut b = engine(kb, &all, now);
    let ask = |b: &mut Engine<u64>, buckets: Vec<[u8; 8]>, at: Instant| -> Option<usize> {
        let request = SwimRequest::SyncDigest {
            record: Box::new(record(liar, 1)),
            digest: ViewDigest { buckets },
        };
        b.on_request(liar.node_id(), 7, request, at, |_| SwimResponse::Nack);
        let mut answer = None;
        while let Some(action) = b.next_action() {
            if let Action::Respond {
                response: SwimResponse::SyncDiff { updates, .. },
                ..
            } = action
            {
                answer = Some(updates.len());
            }
        }
        answer
    };
    // Malformed digests are refused whole, without an answer.
    assert_eq!(ask(&mut b, vec![[0; 8]; 3], now), None);
    assert_eq!(ask(&mut b, vec![[0; 8]; MAX_DIGEST_BUCKETS * 2], now), None);
    assert_eq!(ask(&mut b, Vec::new(), now), None);

    // A digest that differs everywhere gets the whole view once...
    let everywhere = vec![[0xff; 8]; MAX_DIGEST_BUCKETS];
    let first = ask(&mut b, everywhere.clone(), now).unwrap();
    assert!(first >= 150, "the whole view: {first} entries");
    // ...then only a little for the rest of the push-pull interval...
    for i in 1..5 {
        let at = now + Duration::from_secs(i);
        let again = ask(&mut b, everywhere.clone(), at).unwrap();
        assert!(again <= REPEATED_DIFF_ENTRIES, "{again} entries");
    }
    // ...and the whole view again once the interval has passed.
    let interval = super::scaled_push_pull_interval(PUSH_PULL, b.membership().member_count());
    let later = now + interval + Duration::from_secs(1);
    b.tick(later, &mut StdRng::seed_from_u64(1), |_| true);
    while b.next_action().is_some() {}
    assert!(ask(&mut b, everywhere, later).unwrap() >= 150);
}

/// What an engine spread about `subject` while its clock ran from `from` to `to` in
/// 50 ms ticks (the driver's), with no answer to anything it sent: the updates it
/// broadcast, and whether it came to hold `subject` dead.
fn run_silent(
    engine: &mut Engine<u64>,
    subject: &NodeId,
    from: Instant,
    to: Instant,
) -> (Vec<MembershipUpdate>, bool) {
    let mut rng = StdRng::seed_from_u64(7);
    let mut spread = Vec::new();
    let mut at = from;
    while at <= to {
        engine.tick(at, &mut rng, |_| true);
        while let Some(action) = engine.next_action() {
            if let Action::Broadcast(update) = action
                && update.node() == *subject
            {
                spread.push(update);
            }
        }
        at += Duration::from_millis(50);
    }
    let dead = state_of(engine, subject).is_some_and(|(s, _)| s == MemberState::Dead);
    (spread, dead)
}

/// An engine whose own probes never come round (its turn is an hour away), so that only
/// a rumour or a broken connection makes it probe.
fn engine_without_turns(key: &SecretKey, members: &[&SecretKey], now: Instant) -> Engine<u64> {
    let config = SwimConfig {
        probe_interval: Duration::from_secs(3600),
        dead_probe_interval: Duration::from_secs(3600),
        ..SwimConfig::default()
    };
    let mut membership = Membership::new(key.clone(), NET, 1, config);
    membership.set_local_addresses(addresses());
    for m in members {
        if m.node_id() != key.node_id() {
            membership.introduce(&record(m, 1), now);
        }
    }
    Engine::new(membership, Duration::from_secs(3600), now)
}

#[test]
fn a_death_is_spread_by_its_witnesses_not_by_every_member_that_heard_of_it() {
    let now = Instant::now();
    let keys: Vec<SecretKey> = (0..6).map(|_| SecretKey::generate()).collect();
    let all: Vec<&SecretKey> = keys.iter().collect();
    let (crashed, first_witness) = (keys[0].node_id(), keys[1].node_id());
    let later = now + Duration::from_secs(4);

    // A member that only heard the suspicion checks it (its own probe of the suspect
    // fails too) and declares the death on its own timer, but spreads neither.
    let mut hearer = engine_without_turns(&keys[2], &all, now);
    let rumour = MembershipUpdate::Suspect {
        node: crashed,
        incarnation: 1,
        from: first_witness,
    };
    hearer.apply(&rumour, first_witness, now);
    let (spread, dead) = run_silent(&mut hearer, &crashed, now, later);
    assert!(dead, "the hearer declares the death on its own timer");
    assert!(spread.is_empty(), "the hearer spread {spread:?}");

    // A member whose own turn found the crashed member unreachable spreads its suspicion,
    // then its finding of death.
    let mut witness = engine_without_turns(&keys[3], &all, now);
    witness.start_probe(crashed, now);
    let (spread, dead) = run_silent(&mut witness, &crashed, now, later);
    assert!(dead);
    assert!(
        matches!(
            spread.as_slice(),
            [
                MembershipUpdate::Suspect { .. },
                MembershipUpdate::Dead { .. }
            ]
        ),
        "the witness spread {spread:?}"
    );

    // A member whose own probe confirms a suspicion that enough others confirmed already
    // (which is all that shortens anyone's timeout) keeps its confirmation to itself.
    let mut late = engine_without_turns(&keys[4], &all, now);
    for witness in &keys[1..4] {
        let report = MembershipUpdate::Suspect {
            node: crashed,
            incarnation: 1,
            from: witness.node_id(),
        };
        late.apply(&report, witness.node_id(), now);
    }
    let report = MembershipUpdate::Suspect {
        node: crashed,
        incarnation: 1,
        from: keys[5].node_id(),
    };
    late.apply(&report, keys[5].node_id(), now);
    assert_eq!(
        late.membership().member(&crashed).unwrap().confirmations(),
        4
    );
    late.start_probe(crashed, now);
    let (spread, dead) = run_silent(&mut late, &crashed, now, later);
    assert!(dead);
    assert!(spread.is_empty(), "the late witness spread {spread:?}");
}

#[test]
fn a_probe_that_lost_its_first_ping_tries_once_more_directly_alongside_the_helpers() {
    let now = Instant::now();
    let keys: Vec<SecretKey> = (0..3).map(|_| SecretKey::generate()).collect();
    let all: Vec<&SecretKey> = keys.iter().collect();
    let (target, helper) = (keys[1].node_id(), keys[2].node_id());
    let mut prober = engine_without_turns(&keys[0], &all, now);
    prober.start_probe(target, now);
    while prober.next_action().is_some() {}

    // The first ping (or its answer) was lost: at the direct deadline the prober asks the
    // helper and pings the target again.
    let indirect = now + SwimConfig::default().probe_timeout + Duration::from_millis(10);
    prober.tick(indirect, &mut StdRng::seed_from_u64(3), |_| true);
    let mut again = None;
    let mut asked_helper = false;
    while let Some(action) = prober.next_action() {
        match action {
            Action::Send {
                token,
                to,
                request: SwimRequest::Ping { .. },
            } if to == target => again = Some(token),
            Action::Send {
                to,
                request: SwimRequest::PingReq { .. },
                ..
            } if to == helper => asked_helper = true,
            _ => {}
        }
    }
    assert!(asked_helper, "the helper is asked as before");
    let again = again.expect("a second direct ping goes out with the indirect probes");

    // Its answer ends the round: no suspicion, whatever the helper does.
    prober.on_response(
        again,
        target,
        Some(SwimResponse::Ack { record: None }),
        indirect,
    );
    let (spread, dead) = run_silent(&mut prober, &target, indirect, now + Duration::from_secs(3));
    assert!(!dead);
    assert!(spread.is_empty(), "{spread:?}");
    assert_eq!(
        state_of(&prober, &target).map(|(s, _)| s),
        Some(MemberState::Alive)
    );
}
