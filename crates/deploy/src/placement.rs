//! Placement of deployments and jobs: rendezvous hashing over the live nodes that meet a
//! deployment's constraints, so every node computes the same answer from the same view.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use xnode_mesh::MemberState;
use xnode_types::{NodeId, NodeRecord, PublicKeyBytes};

use crate::Compute;
use crate::spec::DeploymentSpec;

/// A node placement can use.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: NodeId,
    pub zone: String,
    /// The node's verified operator: replicas spread over operators first.
    pub operator: PublicKeyBytes,
    pub labels: BTreeMap<String, String>,
    pub memory_free_bytes: u64,
}

/// How long the gateway reuses its placement candidates. Gathering them reads every
/// node record in the registry, too much to do on every call; a replica that died within
/// this window is skipped by the gateway's retries anyway.
const CALL_CANDIDATES_TTL: Duration = Duration::from_millis(250);

impl Compute {
    /// Live, admitted nodes (this one included) with what placement needs to know about
    /// them. A node without a valid operator certificate, or one the admission policy does
    /// not admit, runs no one's work.
    pub fn candidates(&self) -> Vec<Candidate> {
        let mut alive: Vec<NodeId> = self
            .mesh
            .members()
            .into_iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| m.id)
            .collect();
        alive.push(self.node_id);
        let records: Vec<NodeRecord> = alive
            .into_iter()
            .filter_map(|id| {
                let entry = self.registry.get(&NodeRecord::registry_key(&id))?;
                xnode_registry::node_record(&entry)
            })
            // A draining (or departed) node takes no new work; its replicas move away.
            .filter(|r| r.status == xnode_types::NodeStatus::Active)
            .collect();
        self.storage
            .admission()
            .admitted(&self.registry, records)
            .into_iter()
            .map(|a| Candidate {
                id: a.record.node_id,
                zone: a.record.zone,
                operator: a.operator,
                labels: a.record.labels,
                memory_free_bytes: a.record.capacity.memory_free_bytes,
            })
            .collect()
    }

    /// Replicas, long-running workers and jobs running on this node now: what a drain
    /// waits to see moved away or finished.
    pub fn running_here(&self) -> usize {
        let local = xnode_types::lock(&self.local);
        local
            .http
            .len()
            .saturating_add(local.workers.len())
            .saturating_add(local.jobs.len())
    }

    /// Whether `node` is admitted to run work (by its record in the registry), whether
    /// or not it is live. Reports of runs count only from admitted nodes: a node the
    /// admission policy keeps out could otherwise grind an id that ranks above a job's
    /// runner and report a result for it.
    pub fn admitted(&self, node: &NodeId) -> bool {
        self.registry
            .get(&NodeRecord::registry_key(node))
            .and_then(|e| xnode_registry::node_record(&e))
            .is_some_and(|r| self.storage.admission().is_admitted(&self.registry, &r))
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
/// hashing the item with its id. The best-scoring node of each distinct operator is taken
/// first, in score order, so one operator runs at most one replica while there are `n`
/// operators (node ids cost nothing, operators under an allowlist do); with fewer
/// operators, the remaining best scores fill the rest. Every pass only skips nodes, so
/// removing a node moves only the items it held, and every node computes the same answer
/// from the same membership.
pub fn place(item: &str, spec: &DeploymentSpec, candidates: &[Candidate], n: usize) -> Vec<NodeId> {
    let reserve = spec.memory_reserve_bytes();
    let mut scored: Vec<([u8; 32], NodeId, PublicKeyBytes)> = candidates
        .iter()
        .filter(|c| spec.placement.zones.is_empty() || spec.placement.zones.contains(&c.zone))
        .filter(|c| {
            spec.placement
                .labels
                .iter()
                .all(|(k, v)| c.labels.get(k) == Some(v))
        })
        .filter(|c| c.memory_free_bytes >= reserve)
        .map(|c| (score(item, &c.id), c.id, c.operator))
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    let mut picked: Vec<NodeId> = Vec::with_capacity(n.min(scored.len()));
    let mut taken = vec![false; scored.len()];
    let mut operators = std::collections::HashSet::new();
    for (i, (_, id, operator)) in scored.iter().enumerate() {
        if picked.len() >= n {
            break;
        }
        if operators.insert(*operator) {
            picked.push(*id);
            taken[i] = true;
        }
    }
    for (i, (_, id, _)) in scored.iter().enumerate() {
        if picked.len() >= n {
            break;
        }
        if !taken[i] {
            picked.push(*id);
        }
    }
    picked
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use xnode_types::SecretKey;

    use super::*;
    use crate::spec::Kind;

    fn spec(name: &str, replicas: u32) -> DeploymentSpec {
        DeploymentSpec {
            v: 1,
            name: name.into(),
            kind: Kind::Http,
            module: String::new(),
            replicas,
            limits: Default::default(),
            env: Default::default(),
            args: vec![],
            allowed_hosts: vec![],
            placement: Default::default(),
            storage: None,
            memory_reserve_mb: Some(0),
            owner: SecretKey::generate().public().to_hex(),
            created_ms: 0,
        }
    }

    fn candidate(operator: PublicKeyBytes, zone: &str) -> Candidate {
        Candidate {
            id: SecretKey::generate().node_id(),
            zone: zone.into(),
            operator,
            labels: Default::default(),
            memory_free_bytes: u64::MAX,
        }
    }

    /// Review finding 5 for compute: ground node ids with invented zones under one
    /// operator key run at most one replica of a deployment while 3 operators exist.
    #[test]
    fn an_operator_with_ground_ids_runs_one_replica() {
        let spec = spec("target", 3);
        let honest: Vec<Candidate> = (0..3)
            .map(|_| candidate(SecretKey::generate().public(), "default"))
            .collect();
        let best_honest = honest.iter().map(|c| score("target", &c.id)).max().unwrap();
        let attacker = SecretKey::generate().public();
        let mut all = honest.clone();
        let mut ground = 0;
        while ground < 20 {
            let c = candidate(attacker, &format!("invented-{ground}"));
            if score("target", &c.id) > best_honest {
                all.push(c);
                ground += 1;
            }
        }
        let picked = place("target", &spec, &all, 3);
        assert_eq!(picked.len(), 3);
        let attackers = picked
            .iter()
            .filter(|id| all.iter().any(|c| c.id == **id && c.operator == attacker))
            .count();
        assert_eq!(attackers, 1, "{picked:?}");
        // With independent operators only, placement is the plain top scores.
        let mut by_score: Vec<_> = honest.iter().map(|c| (score("x", &c.id), c.id)).collect();
        by_score.sort_by_key(|x| std::cmp::Reverse(x.0));
        let expected: Vec<NodeId> = by_score.iter().take(2).map(|x| x.1).collect();
        assert_eq!(place("x", &spec, &honest, 2), expected);
        // Fewer operators than replicas: filled by score, all distinct.
        let few: Vec<Candidate> = all[2..].to_vec();
        let picked = place("target", &spec, &few, 3);
        assert_eq!(picked.iter().collect::<HashSet<_>>().len(), 3);
    }

    #[test]
    fn a_deployment_pinned_to_regions_runs_only_there() {
        let all: Vec<Candidate> = ["eu", "eu", "us", "us", "ap"]
            .iter()
            .map(|zone| candidate(SecretKey::generate().public(), zone))
            .collect();
        let zone_of = |id: &NodeId| all.iter().find(|c| c.id == *id).unwrap().zone.clone();
        // A manifest writes the pin `regions`; it is the same field as `zones`.
        let placement: crate::spec::PlacementSpec =
            serde_json::from_str(r#"{"regions": ["eu", "ap"]}"#).unwrap();
        assert_eq!(placement.zones, vec!["eu".to_owned(), "ap".to_owned()]);
        let mut pinned = spec("pinned", 3);
        pinned.placement = placement;
        for i in 0..50 {
            let name = format!("app-{i}");
            let picked = place(&name, &pinned, &all, 3);
            assert_eq!(picked.len(), 3, "two eu nodes and one ap node");
            assert!(picked.iter().all(|id| zone_of(id) != "us"), "{picked:?}");
            // More replicas than the regions have nodes: fewer replicas, never elsewhere.
            assert_eq!(place(&name, &pinned, &all, 5).len(), 3);
        }
        // A pin no candidate satisfies places nothing (the deploy is refused).
        pinned.placement.zones = vec!["mars".into()];
        assert!(place("pinned", &pinned, &all, 3).is_empty());
    }
}
