//! What the aggregation achieved, judged at the end of a run: for every slot final by
//! then, the totals the nodes hold against the ground truth, how soon each node first held
//! the exact total, and whether every node's trees still match its view.

use xnode_mesh::swim::Membership;
use xnode_observe::SLOT_MS;
use xnode_observe::aggregate::OPEN_MS;

use super::workload::{Truth, requests_of};
use super::{BASE_UNIX_MS, FINAL_MARGIN_MS, Observer, ROUND, eligible_members, unix_ms};
use crate::report::{AggregationReport, SlotOutcome, SlotsOutcome, Spread};

impl Observer {
    /// Whether node `index`'s trees hold other members than its view gave when they were
    /// last refreshed (it has no pending change, so they should be the same). A check of
    /// the change tracking.
    fn stale(&self, index: usize, membership: &Membership) -> bool {
        let Some(participant) = self.participants.get(index).and_then(Option::as_ref) else {
            return false;
        };
        let Some(tree) = participant.view.as_ref().and_then(|v| v.trees.first()) else {
            return false;
        };
        if !participant.pending.is_empty() {
            return false;
        }
        let members = eligible_members(membership, &self.settles_at, participant.refreshed_ms);
        members.len() != tree.len() || !members.iter().all(|m| tree.contains(m))
    }

    /// What the aggregation did: exactness and convergence of every slot that is final by
    /// `end_us`, message sizes, and the shared trees. `alive` and `memberships` are the
    /// simulator's, by node index; traffic is filled in by the caller.
    pub fn report<'a>(
        &self,
        alive: &[bool],
        memberships: impl Iterator<Item = &'a Membership>,
        steady_seconds: f64,
        end_us: u64,
    ) -> AggregationReport {
        let end_ms = unix_ms(end_us);
        let live: Vec<usize> = (0..self.participants.len())
            .filter(|&i| alive.get(i).copied().unwrap_or(false))
            .collect();
        let mut report = AggregationReport {
            round_seconds: ROUND.as_secs_f64(),
            views_built: self.views_built,
            views_peak: self.views_peak,
            tracking_misses: self.tracking_misses,
            stale_views: memberships
                .enumerate()
                .filter(|(i, m)| alive.get(*i).copied().unwrap_or(false) && self.stale(*i, m))
                .count(),
            ..AggregationReport::default()
        };
        let m = &self.messages;
        report.reports = m.reports;
        report.audit_requests = m.audit_requests;
        report.audit_bytes = m.audit_bytes;
        report.audit_disagreements = m.disagreements;
        report.audit_corrections = m.corrections;
        report.refused_reports = m.refused;
        report.largest_report_bytes = m.largest_report;
        report.largest_answer_bytes = m.largest_answer;
        report.mean_report_bytes = m.report_bytes as f64 / m.reports.max(1) as f64;
        report.mean_answer_bytes = m.answer_bytes as f64 / m.answers.max(1) as f64;
        let rounds = (steady_seconds / ROUND.as_secs_f64()).max(f64::MIN_POSITIVE);
        // Over the nodes that were there for the whole window.
        let per_round: Vec<f64> = live
            .iter()
            .filter(|&&i| {
                self.participants
                    .get(i)
                    .and_then(Option::as_ref)
                    .is_some_and(|p| p.joined_us <= self.counting_since_us)
            })
            .filter_map(|&i| self.reports_received.get(i))
            .map(|&n| n as f64 / rounds)
            .collect();
        report.reports_received_per_round_mean =
            per_round.iter().sum::<f64>() / per_round.len().max(1) as f64;
        report.reports_received_per_round_max = per_round.iter().copied().fold(0.0, f64::max);

        let mut exact_after = Vec::new();
        for (slot, truth) in &self.truth {
            if slot.saturating_add(OPEN_MS).saturating_add(FINAL_MARGIN_MS) > end_ms {
                continue;
            }
            let outcome = self.judge(*slot, truth, &live, &mut exact_after);
            let class: &mut SlotsOutcome = if outcome.disturbed {
                &mut report.disturbed
            } else {
                &mut report.quiet
            };
            class.slots = class.slots.saturating_add(1);
            class.holders = class.holders.saturating_add(outcome.holders);
            class.exact = class.exact.saturating_add(outcome.exact);
            class.as_designed = class.as_designed.saturating_add(outcome.as_designed);
            if outcome.exact < outcome.holders {
                class.inexact_slots = class.inexact_slots.saturating_add(1);
            }
            if outcome.exact.saturating_add(outcome.as_designed) < outcome.holders {
                class.unexplained_slots = class.unexplained_slots.saturating_add(1);
            }
            report.slots.push(outcome);
        }
        report.exact_after = Spread::of(exact_after);
        report
    }

    /// What the nodes in `live` that were there when `slot` started hold of it, against
    /// the truth and what deaths and joins change by design. For a quiet slot, adds to
    /// `exact_after` the seconds after the slot's end at which each node first held the
    /// exact total.
    fn judge(
        &self,
        slot: u64,
        truth: &Truth,
        live: &[usize],
        exact_after: &mut Vec<f64>,
    ) -> SlotOutcome {
        let start_us = slot.saturating_sub(BASE_UNIX_MS).saturating_mul(1_000);
        let end_of_slot_us = start_us.saturating_add(SLOT_MS.saturating_mul(1_000));
        let open_until_us = start_us.saturating_add(OPEN_MS.saturating_mul(1_000));
        let disturbed = self
            .disruptions
            .iter()
            .any(|&t| t >= start_us && t < open_until_us);
        let design = self.by_design.get(&slot).cloned().unwrap_or_default();
        let (lost_requests, lost_nodes, added_nodes) = design.bounds();
        let mut outcome = SlotOutcome {
            start_s: start_us / 1_000_000,
            disturbed,
            truth_requests: truth.requests,
            truth_nodes: truth.nodes,
            design_lost_requests: lost_requests,
            design_lost_nodes: lost_nodes,
            design_added_nodes: added_nodes,
            held_requests: (u64::MAX, 0),
            held_nodes: (u32::MAX, 0),
            ..SlotOutcome::default()
        };
        let firsts = self.first_exact.get(&slot);
        for &i in live {
            let Some(participant) = self.participants.get(i).and_then(Option::as_ref) else {
                continue;
            };
            // A node that joined later is not expected to hold the slot.
            if participant.joined_us > start_us {
                continue;
            }
            outcome.holders = outcome.holders.saturating_add(1);
            match participant.aggregator.total(slot) {
                Some(total) => {
                    if truth.matches(total) {
                        outcome.exact = outcome.exact.saturating_add(1);
                    } else if design.explains(truth, total) {
                        outcome.as_designed = outcome.as_designed.saturating_add(1);
                    }
                    let requests = requests_of(total);
                    outcome.held_requests.0 = outcome.held_requests.0.min(requests);
                    outcome.held_requests.1 = outcome.held_requests.1.max(requests);
                    outcome.held_nodes.0 = outcome.held_nodes.0.min(total.nodes);
                    outcome.held_nodes.1 = outcome.held_nodes.1.max(total.nodes);
                }
                None => outcome.missing = outcome.missing.saturating_add(1),
            }
            if !disturbed {
                let first = firsts.and_then(|f| f.get(i)).copied().unwrap_or(u64::MAX);
                exact_after.push(if first == u64::MAX {
                    f64::INFINITY
                } else {
                    first.saturating_sub(end_of_slot_us) as f64 / 1e6
                });
            }
        }
        if outcome.held_requests.0 > outcome.held_requests.1 {
            // No node held a total of the slot.
            outcome.held_requests = (0, 0);
            outcome.held_nodes = (0, 0);
        }
        outcome
    }
}
