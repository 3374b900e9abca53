//! Placement of deployments and jobs: rendezvous hashing over the live nodes that meet a
//! deployment's constraints, so every node computes the same answer from the same view.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use xnode_mesh::MemberState;
use xnode_types::{NodeId, NodeRecord};

use crate::Compute;
use crate::spec::DeploymentSpec;

/// A node placement can use.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: NodeId,
    pub zone: String,
    pub labels: BTreeMap<String, String>,
    pub memory_free_bytes: u64,
}

/// How long the gateway reuses its placement candidates. Gathering them reads every
/// node record in the registry, too much to do on every call; a replica that died within
/// this window is skipped by the gateway's retries anyway.
const CALL_CANDIDATES_TTL: Duration = Duration::from_millis(250);

impl Compute {
    /// Live nodes (this one included) with what placement needs to know about them.
    pub fn candidates(&self) -> Vec<Candidate> {
        let mut alive: Vec<NodeId> = self
            .mesh
            .members()
            .into_iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| m.id)
            .collect();
        alive.push(self.node_id);
        alive
            .into_iter()
            .filter_map(|id| {
                let entry = self.registry.get(&NodeRecord::registry_key(&id))?;
                let record = xnode_registry::node_record(&entry)?;
                Some(Candidate {
                    id,
                    zone: record.zone,
                    labels: record.labels,
                    memory_free_bytes: record.capacity.memory_free_bytes,
                })
            })
            .collect()
    }

    /// The nodes that should run `spec`'s replicas, best first.
    pub fn place(&self, spec: &DeploymentSpec) -> Vec<NodeId> {
        place(&spec.name, spec, &self.candidates(), spec.replicas as usize)
    }

    /// [`Compute::place`] for the gateway's hot path, over candidates at most
    /// [`CALL_CANDIDATES_TTL`] old.
    pub(crate) fn place_for_call(&self, spec: &DeploymentSpec) -> Vec<NodeId> {
        let now = std::time::Instant::now();
        let cached = xnode_types::lock(&self.catalog.call_candidates)
            .as_ref()
            .filter(|(at, _)| now.duration_since(*at) < CALL_CANDIDATES_TTL)
            .map(|(_, c)| c.clone());
        let candidates = match cached {
            Some(c) => c,
            None => {
                let fresh = Arc::new(self.candidates());
                *xnode_types::lock(&self.catalog.call_candidates) = Some((now, fresh.clone()));
                fresh
            }
        };
        place(&spec.name, spec, &candidates, spec.replicas as usize)
    }
}

/// Rendezvous placement: every candidate that satisfies the constraints gets a score from
/// hashing the item with its id, and the `n` highest win. Removing a node moves only the
/// items it held; every node computes the same answer from the same membership.
pub fn place(item: &str, spec: &DeploymentSpec, candidates: &[Candidate], n: usize) -> Vec<NodeId> {
    let reserve = spec.memory_reserve_bytes();
    let mut scored: Vec<([u8; 32], NodeId)> = candidates
        .iter()
        .filter(|c| spec.placement.zones.is_empty() || spec.placement.zones.contains(&c.zone))
        .filter(|c| {
            spec.placement
                .labels
                .iter()
                .all(|(k, v)| c.labels.get(k) == Some(v))
        })
        .filter(|c| c.memory_free_bytes >= reserve)
        .map(|c| (score(item, &c.id), c.id))
        .collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(n).map(|(_, id)| id).collect()
}

/// The rendezvous score of `node` for `item`: the highest scores win.
pub fn score(item: &str, node: &NodeId) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"xnode/compute-placement/v1\n");
    h.update(item.as_bytes());
    h.update(b"\n");
    h.update(&node.to_bytes());
    *h.finalize().as_bytes()
}
