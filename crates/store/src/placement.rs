//! Replica placement: which nodes hold an item (a chunk, an object's metadata), computed
//! the same way on every node from the same member list, so no coordinator is needed.

use std::borrow::Cow;
use std::collections::HashSet;

use xnode_types::{NodeId, PublicKeyBytes};

/// A node that may hold replicas.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: NodeId,
    /// The node's self-declared zone: a tie-break among one operator's nodes only.
    pub zone: String,
    /// The operator that runs the node, from its verified operator certificate. Nodes of
    /// one operator are one failure domain, and one party, however many there are.
    pub operator: PublicKeyBytes,
}

/// The rendezvous score of `node` for `item`: the first 8 bytes (little-endian) of
/// `blake3(item || node id bytes)`.
pub fn score(item: &[u8], node: &NodeId) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(item);
    hasher.update(&node.to_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// Highest-random-weight (rendezvous) hashing: score(node) = blake3(item || node_id bytes)
/// as u64. Deterministic on every node, whatever the order of `candidates`.
///
/// Picks up to `n` distinct nodes, spreading across *operators*, in score order:
///
/// 1. the best-scoring node of each distinct operator, until `n` or the operators run out,
///    so an operator holds at most one replica of an item while there are `n` operators,
///    however many node ids and zone names it makes up;
/// 2. then, with fewer operators than `n`, the best remaining node of each zone not used
///    yet (one operator running nodes in several real zones still spreads over them);
/// 3. then the remaining best scores.
///
/// Returns them in pick order. Every pass only skips nodes, so removing a node that was
/// not picked for an item never changes that item's picks, and a member leaving moves
/// only the items it held.
pub fn place(item: &[u8], candidates: &[Candidate], n: usize) -> Vec<NodeId> {
    let mut ranked: Vec<(u64, &Candidate)> =
        candidates.iter().map(|c| (score(item, &c.id), c)).collect();
    // Ties (practically impossible) and duplicate entries still order the same everywhere.
    ranked.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| a.1.id.cmp(&b.1.id))
            .then_with(|| a.1.operator.cmp(&b.1.operator))
            .then_with(|| a.1.zone.cmp(&b.1.zone))
    });
    let mut seen = HashSet::new();
    ranked.retain(|(_, c)| seen.insert(c.id));

    let mut picked: Vec<NodeId> = Vec::with_capacity(n.min(ranked.len()));
    let mut taken = vec![false; ranked.len()];
    let mut operators = HashSet::new();
    let mut zones = HashSet::new();
    for (i, (_, c)) in ranked.iter().enumerate() {
        if picked.len() >= n {
            break;
        }
        if operators.insert(c.operator) {
            picked.push(c.id);
            zones.insert(c.zone.as_str());
            taken[i] = true;
        }
    }
    for (i, (_, c)) in ranked.iter().enumerate() {
        if picked.len() >= n {
            break;
        }
        if !taken[i] && zones.insert(c.zone.as_str()) {
            picked.push(c.id);
            taken[i] = true;
        }
    }
    for (i, (_, c)) in ranked.iter().enumerate() {
        if picked.len() >= n {
            break;
        }
        if !taken[i] {
            picked.push(c.id);
        }
    }
    picked
}

/// Most regions one pin may name.
pub const MAX_PINNED_REGIONS: usize = 8;
/// Longest region name, bytes (as a zone name in a node's config).
pub const MAX_REGION_NAME: usize = 64;

/// Why a list of regions cannot be a pin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error("a pin names at most {MAX_PINNED_REGIONS} regions, not {0}")]
    TooMany(usize),
    #[error("a region name is 1 to {MAX_REGION_NAME} bytes of letters, digits, '-', '_' and '.'")]
    BadName,
    #[error("region {0:?} is named twice")]
    Duplicate(String),
}

/// Checks the regions of a pin (data residency) as a tenant signed them. A region is a
/// node's declared zone (`--zone`, `zone` in the config), one concept under two names.
pub fn validate_regions(regions: &[String]) -> Result<(), RegionError> {
    if regions.len() > MAX_PINNED_REGIONS {
        return Err(RegionError::TooMany(regions.len()));
    }
    let mut seen = HashSet::new();
    for region in regions {
        let well_formed = !region.is_empty()
            && region.len() <= MAX_REGION_NAME
            && region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !well_formed {
            return Err(RegionError::BadName);
        }
        if !seen.insert(region.as_str()) {
            return Err(RegionError::Duplicate(region.clone()));
        }
    }
    Ok(())
}

/// The candidates a pin to `regions` allows: those whose zone is one of them, or all of
/// them when `regions` is empty (no pin). A pure filter applied before [`place`], so a
/// pinned item's placement is still the same on every node, and never falls back to a
/// node outside the pin: with no candidate left, the answer is empty and the caller
/// reports the pin as unsatisfiable.
pub fn in_regions<'a>(candidates: &'a [Candidate], regions: &[String]) -> Cow<'a, [Candidate]> {
    if regions.is_empty() {
        return Cow::Borrowed(candidates);
    }
    Cow::Owned(
        candidates
            .iter()
            .filter(|c| regions.contains(&c.zone))
            .cloned()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use xnode_types::SecretKey;

    use super::*;

    /// `per_zone` nodes in each zone, all run by one operator.
    fn nodes(zones: &[&str], per_zone: usize) -> Vec<Candidate> {
        let operator = SecretKey::generate().public();
        zones
            .iter()
            .flat_map(|z| {
                (0..per_zone).map(move |_| Candidate {
                    id: SecretKey::generate().node_id(),
                    zone: (*z).to_owned(),
                    operator,
                })
            })
            .collect()
    }

    /// `count` nodes, each with its own operator (and all in one zone).
    fn independent(count: usize) -> Vec<Candidate> {
        (0..count)
            .map(|_| Candidate {
                id: SecretKey::generate().node_id(),
                zone: "default".into(),
                operator: SecretKey::generate().public(),
            })
            .collect()
    }

    fn item(i: u32) -> Vec<u8> {
        blake3::hash(&i.to_le_bytes()).as_bytes().to_vec()
    }

    #[test]
    fn deterministic_distinct_and_order_independent() {
        let c = nodes(&["a", "b"], 4);
        let mut reversed = c.clone();
        reversed.reverse();
        for i in 0..50 {
            let p = place(&item(i), &c, 3);
            assert_eq!(p.len(), 3);
            assert_eq!(p, place(&item(i), &c, 3));
            assert_eq!(p, place(&item(i), &reversed, 3));
            let distinct: HashSet<_> = p.iter().collect();
            assert_eq!(distinct.len(), 3);
        }
        // Different items land on different nodes (not all on the same ones).
        let firsts: HashSet<_> = (0..50).map(|i| place(&item(i), &c, 1)[0]).collect();
        assert!(firsts.len() > 2);
    }

    #[test]
    fn spreads_across_zones() {
        let c = nodes(&["a", "b", "c"], 3);
        let zone_of = |id: &NodeId| c.iter().find(|x| x.id == *id).unwrap().zone.clone();
        for i in 0..100 {
            let p = place(&item(i), &c, 3);
            let zones: HashSet<_> = p.iter().map(zone_of).collect();
            assert_eq!(zones.len(), 3, "item {i} placed on {p:?}");
        }
        // More replicas than zones: one per zone first, then the best of the rest.
        for i in 0..20 {
            let p = place(&item(i), &c, 5);
            let first_three: HashSet<_> = p[..3].iter().map(zone_of).collect();
            assert_eq!(first_three.len(), 3);
            assert_eq!(p.iter().collect::<HashSet<_>>().len(), 5);
        }
        // One zone only: plain rendezvous.
        let single = nodes(&["z"], 5);
        let p = place(&item(1), &single, 3);
        let mut by_score: Vec<_> = single
            .iter()
            .map(|c| (score(&item(1), &c.id), c.id))
            .collect();
        by_score.sort_by_key(|x| std::cmp::Reverse(x.0));
        assert_eq!(p, by_score[..3].iter().map(|x| x.1).collect::<Vec<_>>());
    }

    #[test]
    fn removing_a_node_moves_only_its_items() {
        let c = nodes(&["a", "b", "c"], 3);
        for gone in 0..c.len() {
            let removed = c[gone].id;
            let rest: Vec<_> = c.iter().filter(|x| x.id != removed).cloned().collect();
            for i in 0..100 {
                let before = place(&item(i), &c, 3);
                let after = place(&item(i), &rest, 3);
                if before.contains(&removed) {
                    assert!(!after.contains(&removed));
                    // The survivors keep their replicas.
                    let kept = before.iter().filter(|id| **id != removed).count();
                    assert_eq!(after.iter().filter(|id| before.contains(id)).count(), kept);
                } else {
                    assert_eq!(before, after, "item {i} moved when an unrelated node left");
                }
            }
        }
    }

    #[test]
    fn spreads_across_operators_before_zones() {
        // Three operators with three nodes each; each operator's nodes share its zone
        // labels with the others', so zones say nothing about who runs what.
        let mut c = Vec::new();
        for _ in 0..3 {
            c.extend(nodes(&["a", "b", "c"], 1));
        }
        let operator_of = |id: &NodeId| c.iter().find(|x| x.id == *id).unwrap().operator;
        for i in 0..200 {
            let p = place(&item(i), &c, 3);
            let operators: HashSet<_> = p.iter().map(operator_of).collect();
            assert_eq!(operators.len(), 3, "item {i} placed on {p:?}");
        }
    }

    #[test]
    fn independent_operators_get_plain_rendezvous() {
        // A devnet: every node has its own operator key. Placement is the top scores.
        let c = independent(7);
        for i in 0..50 {
            let mut by_score: Vec<_> = c.iter().map(|x| (score(&item(i), &x.id), x.id)).collect();
            by_score.sort_by_key(|x| std::cmp::Reverse(x.0));
            let expected: Vec<NodeId> = by_score[..3].iter().map(|x| x.1).collect();
            assert_eq!(place(&item(i), &c, 3), expected);
        }
    }

    /// Review finding 5: an attacker grinds node ids whose scores beat every honest node
    /// for a chosen item and declares each in an invented zone. Under one operator key it
    /// gets one replica, whatever it grinds.
    #[test]
    fn an_operator_with_ground_ids_and_invented_zones_gets_one_replica() {
        let honest = independent(3);
        let target = b"meta/some-tenant/photos".to_vec();
        let best_honest = honest.iter().map(|c| score(&target, &c.id)).max().unwrap();
        let attacker_operator = SecretKey::generate().public();
        let mut attackers = Vec::new();
        while attackers.len() < 20 {
            let id = SecretKey::generate().node_id();
            if score(&target, &id) > best_honest {
                attackers.push(Candidate {
                    id,
                    zone: format!("invented-{}", attackers.len()),
                    operator: attacker_operator,
                });
            }
        }
        let mut all = honest.clone();
        all.extend(attackers.iter().cloned());
        let is_attacker = |id: &NodeId| attackers.iter().any(|a| a.id == *id);
        let p = place(&target, &all, 3);
        assert_eq!(p.len(), 3);
        assert_eq!(p.iter().filter(|id| is_attacker(id)).count(), 1, "{p:?}");
        // Not only for the ground item: over many items, never more than one.
        for i in 0..2000 {
            let p = place(&item(i), &all, 3);
            assert!(
                p.iter().filter(|id| is_attacker(id)).count() <= 1,
                "item {i}: {p:?}"
            );
        }
        // With fewer operators than replicas, the rest is filled as before: by score.
        let few: Vec<Candidate> = honest[..1]
            .iter()
            .cloned()
            .chain(attackers.iter().cloned())
            .collect();
        assert_eq!(place(&target, &few, 3).len(), 3);
    }

    #[test]
    fn small_and_degenerate_inputs() {
        let c = nodes(&["a", "b"], 1);
        let all = place(&item(0), &c, 5);
        assert_eq!(all.len(), 2);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 2);
        assert!(place(&item(0), &c, 0).is_empty());
        assert!(place(&item(0), &[], 3).is_empty());
        // A node listed twice counts once.
        let mut dup = c.clone();
        dup.push(c[0].clone());
        assert_eq!(place(&item(0), &dup, 5).len(), 2);
        assert!(place(b"", &c, 1).len() == 1);
    }

    #[test]
    fn a_pin_places_only_in_its_regions_and_never_elsewhere() {
        let c = nodes(&["eu", "us", "ap"], 3);
        let zone_of = |id: &NodeId| c.iter().find(|x| x.id == *id).unwrap().zone.clone();
        let eu = vec!["eu".to_owned()];
        let eu_ap = vec!["eu".to_owned(), "ap".to_owned()];
        for i in 0..200 {
            let p = place(&item(i), &in_regions(&c, &eu), 3);
            assert_eq!(p.len(), 3, "three eu nodes hold three copies");
            assert!(p.iter().all(|id| zone_of(id) == "eu"), "item {i}: {p:?}");
            // More copies than the region has nodes: fewer copies, never another region.
            let p = place(&item(i), &in_regions(&c, &eu), 5);
            assert_eq!(p.len(), 3);
            assert!(p.iter().all(|id| zone_of(id) == "eu"));
            // Two regions: spread over both, nothing in the third.
            let p = place(&item(i), &in_regions(&c, &eu_ap), 4);
            let zones: HashSet<_> = p.iter().map(zone_of).collect();
            assert!(!zones.contains("us"), "item {i}: {p:?}");
            assert_eq!(zones.len(), 2, "item {i}: {p:?}");
        }
        // The filter is order independent, so every node computes the same placement.
        let mut reversed = c.clone();
        reversed.reverse();
        for i in 0..50 {
            assert_eq!(
                place(&item(i), &in_regions(&c, &eu), 2),
                place(&item(i), &in_regions(&reversed, &eu), 2)
            );
        }
        // No pin: every candidate.
        assert_eq!(in_regions(&c, &[]).len(), c.len());
        // A pin nobody satisfies leaves nothing to place on.
        let mars = vec!["mars".to_owned()];
        assert!(in_regions(&c, &mars).is_empty());
        assert!(place(&item(0), &in_regions(&c, &mars), 3).is_empty());
    }

    #[test]
    fn region_lists_are_checked() {
        let ok: Vec<String> = vec!["eu-west.1".into(), "us_east".into()];
        assert_eq!(validate_regions(&ok), Ok(()));
        assert_eq!(validate_regions(&[]), Ok(()));
        for bad in ["", "a b", "zone/1", "\u{0}", &"x".repeat(65)] {
            assert_eq!(
                validate_regions(&[bad.to_owned()]),
                Err(RegionError::BadName),
                "{bad:?}"
            );
        }
        assert!(matches!(
            validate_regions(&["a".into(), "a".into()]),
            Err(RegionError::Duplicate(_))
        ));
        let many: Vec<String> = (0..9).map(|i| format!("r{i}")).collect();
        assert_eq!(validate_regions(&many), Err(RegionError::TooMany(9)));
    }
}
