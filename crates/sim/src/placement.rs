//! How many keys the real placement function ([`xnode_store::place`], rendezvous hashing
//! spread over operators) moves when one node leaves or joins.

use rand::Rng;
use rand::rngs::StdRng;
use xnode_store::{Candidate, place};
use xnode_types::{NodeId, PublicKeyBytes, SecretKey};

use crate::net::REGIONS;

/// Keys moved by one membership change.
#[derive(Clone, Debug)]
pub struct PlacementReport {
    pub nodes: usize,
    pub keys: usize,
    pub replicas: usize,
    /// Replicas that must move when one node leaves, as a fraction of all replicas.
    pub leave_moved: f64,
    /// Replicas that must move when one node joins, as a fraction of all replicas.
    pub join_moved: f64,
    /// Keys with at least one replica moved when one node leaves.
    pub leave_keys_touched: f64,
}

fn candidate(id: NodeId, index: usize) -> Candidate {
    let mut operator = [0u8; 32];
    operator[..8].copy_from_slice(&(index as u64).to_le_bytes());
    Candidate {
        id,
        zone: REGIONS[index % REGIONS.len()].to_owned(),
        // One operator per node: the case where placement spreads over every node.
        operator: PublicKeyBytes(operator),
    }
}

/// Replicas (of `keys` random keys at `replicas` copies) that differ between placing on
/// `before` and on `after`.
fn moved(
    before: &[Candidate],
    after: &[Candidate],
    keys: &[[u8; 32]],
    replicas: usize,
) -> (u64, u64) {
    let mut moved = 0u64;
    let mut touched = 0u64;
    for key in keys {
        let old = place(key, before, replicas);
        let new = place(key, after, replicas);
        let kept = old.iter().filter(|id| new.contains(id)).count();
        let lost = old.len().saturating_sub(kept) as u64;
        moved = moved.saturating_add(lost);
        touched = touched.saturating_add(u64::from(lost > 0));
    }
    (moved, touched)
}

/// Measures key movement on `nodes` for one leave (a random node) and one join (a new
/// node).
pub fn key_movement(
    nodes: &[NodeId],
    keys: usize,
    replicas: usize,
    rng: &mut StdRng,
) -> PlacementReport {
    let candidates: Vec<Candidate> = nodes
        .iter()
        .enumerate()
        .map(|(i, id)| candidate(*id, i))
        .collect();
    let items: Vec<[u8; 32]> = (0..keys).map(|_| rng.r#gen()).collect();
    let total = (keys.saturating_mul(replicas)).max(1) as f64;
    let mut without = candidates.clone();
    if !without.is_empty() {
        without.remove(rng.gen_range(0..without.len()));
    }
    let (leave, touched) = moved(&candidates, &without, &items, replicas);
    let mut with = candidates.clone();
    let joining =
        SecretKey::from_seed(&rng.r#gen::<[u8; 32]>()).unwrap_or_else(|_| SecretKey::generate());
    with.push(candidate(joining.node_id(), nodes.len()));
    let (join, _) = moved(&candidates, &with, &items, replicas);
    PlacementReport {
        nodes: nodes.len(),
        keys,
        replicas,
        leave_moved: leave as f64 / total,
        join_moved: join as f64 / total,
        leave_keys_touched: touched as f64 / keys.max(1) as f64,
    }
}
