//! Reputation: a beta-model audit score, after Storj's, fed only by corroborated audits.
//!
//! **Score.** Each node has a success mass α and a failure mass β (in micro-audits).
//! Storj updates them per audit: `α ← λα + w·[passed]`, `β ← λβ + w·[failed]`, and the
//! score is `α / (α + β)`. Here an epoch's counted audits are applied together so the
//! result cannot depend on their order: with `n` counted audits of which `S` passed and
//! `F` failed, `α ← λ^n·α + w·S` and `β ← λ^n·β + w·F` (λ^n by squaring in ppm, floors
//! throughout), and `score = floor(10^6 · α / (α + β))` ppm. A node never audited keeps
//! `α0, β0` (score 1 with the defaults, like a fresh Storj node).
//!
//! **Which audits count.** Per audited node and epoch:
//! 1. results from another epoch or network, and self-audits, are dropped;
//! 2. an auditor's repeated verdicts on one chunk collapse to its latest (`at_ms`; on a tie
//!    a failure wins);
//! 3. an auditor's verdicts are capped at `max_audits_per_auditor`, scaled down keeping
//!    its failure ratio (`F' = floor(F·cap/total)`), so volume buys no extra weight;
//! 4. nothing counts unless at least `min_distinct_auditors` (3) distinct auditors
//!    audited the node;
//! 5. the auditors are ranked by failure ratio and the `trimmed_auditors_per_side` (1)
//!    with the highest and the lowest ratios are dropped; the rest are summed into `S, F`.
//!
//! Step 5 is what makes a single hostile auditor harmless: one that reports only failures
//! has the highest ratio and is trimmed (it cannot ruin a score), one that vouches with
//! only passes for a friend has the lowest and is trimmed too (it cannot pad one). With `t`
//! trimmed per side, any `t` colluding auditors are neutralised. Honest failures still
//! count through the middle auditors, so a node that silently lost data keeps losing score.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xnode_types::NodeId;

use crate::audit::VerifiedAudit;
use crate::fixed::{PPM, mul_div, pow_ppm, scale_ppm};
use crate::lookup::node_fingerprint;
use crate::params::{Epoch, ReputationParams};

/// One node's beta-model masses, in micro-audits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reputation {
    /// α: decayed weight of passed audits.
    pub alpha_micro: u128,
    /// β: decayed weight of failed audits.
    pub beta_micro: u128,
}

impl Reputation {
    /// The masses of a node with no audit history (α0, β0).
    pub fn initial(params: &ReputationParams) -> Self {
        Self {
            alpha_micro: params.initial_alpha_micro,
            beta_micro: params.initial_beta_micro,
        }
    }

    /// `floor(10^6 · α / (α + β))`; one (10^6) when both masses are zero.
    pub fn score_ppm(&self) -> u64 {
        let (mut alpha, mut beta) = (self.alpha_micro, self.beta_micro);
        let total = loop {
            match alpha.checked_add(beta) {
                Some(total) => break total,
                None => {
                    alpha >>= 1;
                    beta >>= 1;
                }
            }
        };
        if total == 0 {
            return PPM;
        }
        mul_div(alpha, u128::from(PPM), total)
            .and_then(|score| u64::try_from(score).ok())
            .unwrap_or(PPM)
    }

    /// The masses after one epoch's counted audits.
    pub fn after(&self, tally: &AuditTally, params: &ReputationParams) -> Self {
        let counted = tally.counted_passes.saturating_add(tally.counted_failures);
        let decay = pow_ppm(params.decay_ppm, counted);
        let credit = |mass: u128, audits: u64| {
            scale_ppm(mass, decay)
                .saturating_add(params.weight_micro.saturating_mul(u128::from(audits)))
        };
        Self {
            alpha_micro: credit(self.alpha_micro, tally.counted_passes),
            beta_micro: credit(self.beta_micro, tally.counted_failures),
        }
    }
}

/// Every known node's reputation, carried from epoch to epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationState {
    /// Masses by node; a node absent here has the initial masses.
    pub nodes: BTreeMap<NodeId, Reputation>,
}

impl ReputationState {
    /// A node's masses, or the initial ones if it was never audited.
    pub fn get(&self, node: &NodeId, params: &ReputationParams) -> Reputation {
        self.nodes
            .get(node)
            .copied()
            .unwrap_or_else(|| Reputation::initial(params))
    }

    /// The state after applying one epoch's tallies (nodes without counted audits keep
    /// their masses).
    pub fn advance(
        &self,
        tallies: &BTreeMap<NodeId, AuditTally>,
        params: &ReputationParams,
    ) -> Self {
        let mut next = self.clone();
        for (node, tally) in tallies {
            if tally.counted_passes == 0 && tally.counted_failures == 0 {
                continue;
            }
            let updated = self.get(node, params).after(tally, params);
            next.nodes.insert(*node, updated);
        }
        next
    }
}

/// What one epoch's audits of one node amount to after deduplication, caps and trimming.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTally {
    /// Distinct auditors with at least one valid verdict on the node.
    pub distinct_auditors: u32,
    /// Passed audits that count (zero if too few auditors).
    pub counted_passes: u64,
    /// Failed audits that count (zero if too few auditors); sizes the slash.
    pub counted_failures: u64,
}

/// Audit results that did not count, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredAudits {
    /// Results for another epoch.
    pub wrong_epoch: u64,
    /// Results signed for another network.
    pub wrong_network: u64,
    /// An auditor auditing itself.
    pub self_audits: u64,
    /// Earlier verdicts of the same auditor on the same chunk.
    pub superseded: u64,
    /// Nodes audited by fewer than `min_distinct_auditors` auditors this epoch.
    pub nodes_below_auditor_quorum: u64,
}

/// One auditor's (capped) verdict counts on one node.
#[derive(Clone, Copy)]
struct AuditorCounts<'a> {
    auditor: &'a NodeId,
    passes: u64,
    failures: u64,
}

impl AuditorCounts<'_> {
    fn total(&self) -> u64 {
        self.passes.saturating_add(self.failures)
    }

    /// Orders by failure ratio (`failures / total`, compared exactly), then auditor id.
    fn cmp_by_failure_ratio(&self, other: &Self) -> Ordering {
        let left = u128::from(self.failures) * u128::from(other.total());
        let right = u128::from(other.failures) * u128::from(self.total());
        left.cmp(&right)
            .then_with(|| self.auditor.cmp(other.auditor))
    }

    fn capped(mut self, cap: u64) -> Self {
        let total = self.total();
        if total > cap {
            let failures = mul_div(
                u128::from(self.failures),
                u128::from(cap),
                u128::from(total),
            )
            .and_then(|f| u64::try_from(f).ok())
            .unwrap_or(cap)
            .min(cap);
            self.failures = failures;
            self.passes = cap - failures;
        }
        self
    }
}

/// One usable verdict, with inline fingerprints so sorting rarely follows a reference.
struct Verdict<'a> {
    audited_fingerprint: u64,
    auditor_fingerprint: u64,
    chunk: &'a [u8; 32],
    at_ms: u64,
    failed: bool,
    audited: &'a NodeId,
    auditor: &'a NodeId,
}

impl Verdict<'_> {
    /// Fingerprints first, full ids last: a total order that compares ids only between
    /// verdicts whose fingerprints, chunk, time and outcome are all equal.
    fn cmp_fast(&self, other: &Self) -> Ordering {
        (self.audited_fingerprint, self.auditor_fingerprint)
            .cmp(&(other.audited_fingerprint, other.auditor_fingerprint))
            .then_with(|| {
                (self.chunk, self.at_ms, self.failed).cmp(&(other.chunk, other.at_ms, other.failed))
            })
            .then_with(|| (self.audited, self.auditor).cmp(&(other.audited, other.auditor)))
    }

    /// Full ids first: the order used if two ids share a fingerprint.
    fn cmp_full(&self, other: &Self) -> Ordering {
        (
            self.audited,
            self.auditor,
            self.chunk,
            self.at_ms,
            self.failed,
        )
            .cmp(&(
                other.audited,
                other.auditor,
                other.chunk,
                other.at_ms,
                other.failed,
            ))
    }
}

/// Whether two distinct ids share a fingerprint among verdicts sorted by `cmp_fast`
/// (verdicts with equal fingerprints are adjacent there, so checking neighbours suffices).
fn fingerprints_collide(verdicts: &[Verdict]) -> bool {
    verdicts.windows(2).any(|pair| {
        let (a, b) = (&pair[0], &pair[1]);
        a.audited_fingerprint == b.audited_fingerprint
            && (a.audited != b.audited
                || (a.auditor_fingerprint == b.auditor_fingerprint && a.auditor != b.auditor))
    })
}

/// Tallies the epoch's audits per audited node (see the module docs for the rules).
///
/// Public so that a node can compute every node's reputation between settlements (to
/// steer placement away from nodes that fail audits) with exactly the rules the epoch
/// applies: `ReputationState::advance` over these tallies is what `compute_epoch` does.
pub fn tally_audits(
    audits: &[VerifiedAudit],
    epoch: Epoch,
    network: &str,
    params: &ReputationParams,
) -> (BTreeMap<NodeId, AuditTally>, IgnoredAudits) {
    let mut ignored = IgnoredAudits::default();
    let mut verdicts: Vec<Verdict> = Vec::with_capacity(audits.len());
    for audit in audits {
        let body = audit.body();
        if body.epoch != epoch {
            ignored.wrong_epoch += 1;
        } else if body.network != network {
            ignored.wrong_network += 1;
        } else if body.auditor == body.audited {
            ignored.self_audits += 1;
        } else {
            verdicts.push(Verdict {
                audited_fingerprint: node_fingerprint(&body.audited),
                auditor_fingerprint: node_fingerprint(&body.auditor),
                chunk: &body.chunk,
                at_ms: body.at_ms,
                failed: !body.passed,
                audited: &body.audited,
                auditor: &body.auditor,
            });
        }
    }
    // Sorting a total order makes the rest independent of input order. Either order puts
    // each (audited, auditor) pair's verdicts together, each chunk's verdicts together and
    // by time, so the last of a chunk's run is the auditor's latest verdict (a failure
    // winning a tie). Without fingerprint collisions, equal fingerprints mean equal ids.
    verdicts.sort_unstable_by(Verdict::cmp_fast);
    let by_fingerprint = !fingerprints_collide(&verdicts);
    if !by_fingerprint {
        verdicts.sort_unstable_by(Verdict::cmp_full);
    }
    let same_audited = |a: &Verdict, b: &Verdict| {
        a.audited_fingerprint == b.audited_fingerprint && (by_fingerprint || a.audited == b.audited)
    };
    let same_auditor = |a: &Verdict, b: &Verdict| {
        same_audited(a, b)
            && a.auditor_fingerprint == b.auditor_fingerprint
            && (by_fingerprint || a.auditor == b.auditor)
    };

    let cap = u64::from(params.max_audits_per_auditor);
    let mut tallies = BTreeMap::new();
    let mut node_auditors: Vec<AuditorCounts> = Vec::new();
    let mut index = 0;
    while index < verdicts.len() {
        let node_start = index;
        node_auditors.clear();
        while index < verdicts.len() && same_audited(&verdicts[index], &verdicts[node_start]) {
            let auditor_start = index;
            let mut counts = AuditorCounts {
                auditor: verdicts[auditor_start].auditor,
                passes: 0,
                failures: 0,
            };
            while index < verdicts.len() && same_auditor(&verdicts[index], &verdicts[auditor_start])
            {
                let chunk = verdicts[index].chunk;
                let mut latest_failed = verdicts[index].failed;
                index += 1;
                while index < verdicts.len()
                    && same_auditor(&verdicts[index], &verdicts[auditor_start])
                    && verdicts[index].chunk == chunk
                {
                    ignored.superseded += 1;
                    latest_failed = verdicts[index].failed;
                    index += 1;
                }
                if latest_failed {
                    counts.failures += 1;
                } else {
                    counts.passes += 1;
                }
            }
            node_auditors.push(counts.capped(cap));
        }
        let audited = verdicts[node_start].audited;
        let tally = trimmed_tally(&mut node_auditors, params);
        if tally.counted_passes == 0 && tally.counted_failures == 0 {
            ignored.nodes_below_auditor_quorum += 1;
        }
        tallies.insert(*audited, tally);
    }
    (tallies, ignored)
}

/// Applies the auditor quorum and trimming to one node's per-auditor counts.
fn trimmed_tally(auditors: &mut [AuditorCounts], params: &ReputationParams) -> AuditTally {
    let distinct = u32::try_from(auditors.len()).unwrap_or(u32::MAX);
    let mut tally = AuditTally {
        distinct_auditors: distinct,
        ..AuditTally::default()
    };
    if distinct < params.min_distinct_auditors {
        return tally;
    }
    auditors.sort_unstable_by(AuditorCounts::cmp_by_failure_ratio);
    let trim = usize::try_from(params.trimmed_auditors_per_side).unwrap_or(usize::MAX);
    let kept = auditors
        .iter()
        .skip(trim)
        .take(auditors.len().saturating_sub(trim.saturating_mul(2)));
    for counts in kept {
        tally.counted_passes = tally.counted_passes.saturating_add(counts.passes);
        tally.counted_failures = tally.counted_failures.saturating_add(counts.failures);
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AUDIT_VERSION, AuditBody, AuditResult};
    use xnode_types::{SecretKey, SignatureBytes};

    fn node(seed: u8) -> NodeId {
        SecretKey::from_seed(&[seed; 32]).unwrap().node_id()
    }

    fn verdict(auditor: u8, audited: u8, chunk: u8, passed: bool, at_ms: u64) -> VerifiedAudit {
        VerifiedAudit::assume_verified(AuditResult {
            body: AuditBody {
                v: AUDIT_VERSION,
                network: "t".into(),
                epoch: Epoch(1),
                auditor: node(auditor),
                auditor_key: SecretKey::from_seed(&[auditor; 32]).unwrap().public(),
                audited: node(audited),
                chunk: [chunk; 32],
                passed,
                at_ms,
            },
            auditor_sig: SignatureBytes([0; 64]),
        })
    }

    fn tally(audits: &[VerifiedAudit]) -> (BTreeMap<NodeId, AuditTally>, IgnoredAudits) {
        tally_audits(audits, Epoch(1), "t", &ReputationParams::default())
    }

    #[test]
    fn storj_constants_give_storj_scores() {
        let params = ReputationParams::default();
        let fresh = Reputation::initial(&params);
        assert_eq!(fresh.score_ppm(), PPM);
        // 41 straight failures take a perfect node just below 0.96 (Storj's DQ line).
        let mut reputation = fresh;
        for _ in 0..41 {
            let failure = AuditTally {
                distinct_auditors: 3,
                counted_passes: 0,
                counted_failures: 1,
            };
            reputation = reputation.after(&failure, &params);
        }
        let score = reputation.score_ppm();
        assert!((959_000..961_000).contains(&score), "{score}");
    }

    #[test]
    fn fewer_than_three_auditors_do_not_count() {
        let audits: Vec<_> = (0..20)
            .flat_map(|chunk| {
                [
                    verdict(1, 9, chunk, false, 5),
                    verdict(2, 9, chunk, false, 5),
                ]
            })
            .collect();
        let (tallies, ignored) = tally(&audits);
        let t = tallies[&node(9)];
        assert_eq!(t.distinct_auditors, 2);
        assert_eq!((t.counted_passes, t.counted_failures), (0, 0));
        assert_eq!(ignored.nodes_below_auditor_quorum, 1);
    }

    #[test]
    fn a_single_hostile_auditor_can_neither_ruin_nor_pad() {
        // Two honest auditors see a healthy node; a hostile one reports 60 failures.
        let mut audits = Vec::new();
        for chunk in 0..10 {
            audits.push(verdict(1, 9, chunk, true, 1));
            audits.push(verdict(2, 9, chunk, true, 1));
        }
        for chunk in 0..60 {
            audits.push(verdict(3, 9, chunk, false, 1));
        }
        let t = tally(&audits).0[&node(9)];
        assert_eq!(t.counted_failures, 0);
        assert_eq!(t.counted_passes, 10);

        // Two honest auditors see a failing node; a friend vouches with passes.
        let mut audits = Vec::new();
        for chunk in 0..10 {
            audits.push(verdict(1, 8, chunk, chunk >= 5, 1));
            audits.push(verdict(2, 8, chunk, chunk >= 4, 1));
            audits.push(verdict(3, 8, chunk, true, 1));
        }
        let t = tally(&audits).0[&node(8)];
        assert_eq!((t.counted_passes, t.counted_failures), (6, 4));
    }

    #[test]
    fn latest_verdict_per_chunk_wins_and_self_audits_are_dropped() {
        let audits = vec![
            verdict(1, 9, 0, false, 1),
            verdict(1, 9, 0, true, 2),
            verdict(2, 9, 0, true, 3),
            verdict(2, 9, 0, false, 3),
            verdict(3, 9, 0, false, 4),
            verdict(9, 9, 1, true, 4),
        ];
        let (tallies, ignored) = tally(&audits);
        assert_eq!(ignored.superseded, 2);
        assert_eq!(ignored.self_audits, 1);
        // Ratios: auditor 1 passes, auditor 2 fails (tie goes to failure), auditor 3 fails;
        // trimming keeps one of the failing ones.
        let t = tallies[&node(9)];
        assert_eq!((t.counted_passes, t.counted_failures), (0, 1));
    }

    #[test]
    fn per_auditor_cap_keeps_the_ratio() {
        let auditor = node(1);
        let counts = AuditorCounts {
            auditor: &auditor,
            passes: 300,
            failures: 100,
        }
        .capped(64);
        assert_eq!((counts.passes, counts.failures), (48, 16));
    }

    /// A node id from a sha256 multihash digest (a valid peer id with a chosen digest).
    fn crafted_node(digest: [u8; 32]) -> NodeId {
        let mut bytes = vec![0x12, 0x20];
        bytes.extend_from_slice(&digest);
        NodeId::from_peer_id(libp2p_identity::PeerId::from_bytes(&bytes).unwrap())
    }

    #[test]
    fn fingerprint_collisions_fall_back_to_full_ids() {
        // Two audited nodes and two auditors share fingerprints (same last 8 bytes).
        let mut digest = [7u8; 32];
        let healthy = crafted_node(digest);
        digest[0] = 1;
        let failing = crafted_node(digest);
        assert_eq!(node_fingerprint(&healthy), node_fingerprint(&failing));
        let auditors: Vec<NodeId> = (0..3u8)
            .flat_map(|i| {
                let mut a = [9u8; 32];
                a[0] = i;
                let mut b = a;
                b[1] = 0xee;
                [crafted_node(a), crafted_node(b)]
            })
            .collect();
        let mut audits = Vec::new();
        for (n, auditor) in auditors.iter().enumerate() {
            for chunk in 0..6u8 {
                for (audited, passed) in [(healthy, true), (failing, false)] {
                    let mut body = verdict(1, 2, chunk, passed, u64::from(chunk))
                        .result()
                        .body
                        .clone();
                    body.auditor = *auditor;
                    body.audited = audited;
                    body.at_ms = (n as u64) * 10 + u64::from(chunk);
                    audits.push(VerifiedAudit::assume_verified(AuditResult {
                        body,
                        auditor_sig: SignatureBytes([0; 64]),
                    }));
                }
            }
        }
        let (tallies, _) = tally(&audits);
        assert_eq!(tallies.len(), 2);
        let (h, f) = (tallies[&healthy], tallies[&failing]);
        assert_eq!(
            (h.distinct_auditors, h.counted_passes, h.counted_failures),
            (6, 24, 0)
        );
        assert_eq!(
            (f.distinct_auditors, f.counted_passes, f.counted_failures),
            (6, 0, 24)
        );
    }

    #[test]
    fn score_survives_huge_masses() {
        let reputation = Reputation {
            alpha_micro: u128::MAX,
            beta_micro: u128::MAX,
        };
        assert_eq!(reputation.score_ppm(), 500_000);
        let zero = Reputation {
            alpha_micro: 0,
            beta_micro: 0,
        };
        assert_eq!(zero.score_ppm(), PPM);
    }
}
