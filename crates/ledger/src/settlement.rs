//! Money: tenant charges, operator payments and emission shares.
//!
//! This is the hot path of an epoch (a million receipts), so it works on compact integer
//! keys: operators and tenants are numbered by their position in sorted order (found
//! through fingerprint indexes), each receipt becomes a `(key, cumulative)` pair, and a
//! counting sort by tenant followed by a small sort per tenant brings every counter's
//! receipts together (the highest cumulative of each run is the one that counts) and
//! every (tenant, operator) line into tenant order. Only maxima and sums are taken over
//! runs of equal keys, so the result is independent of input order without any
//! stable-sort assumption.
//!
//! Rules, in order:
//! 1. a receipt counts only for this epoch and network, for a staked operator (rewards
//!    need a payout address) and for a tenant with an escrow record;
//! 2. a line's usage value is `Σ price(resource).cost(highest cumulative)` over the
//!    resources the tenant used at that operator (one floor per counter);
//! 3. a tenant whose usage exceeds its escrow pays exactly its escrow, shared pro rata:
//!    each line gets `floor(usage · escrow / total)` and the units left by the floors go
//!    one each to the lines with the largest remainders (ties: lower operator first);
//! 4. an operator keeps `payment · share` where the share depends on its penalty level;
//!    the rest is withheld (it stays in escrow custody, funding repairs);
//! 5. emission (see the crate docs) is shared by weight `storage payment · score`,
//!    excluding self-dealing lines and ejected or unbonding operators, with the share
//!    attributable to each tenant capped at `max_per_paid_ppm` of its storage payments.

use std::collections::BTreeMap;

use xnode_types::{NodeId, PublicKeyBytes};

use crate::accounts::{Stake, operator_key};
use crate::epoch::{IgnoredReceipts, OperatorReward, TenantCharge};
use crate::error::LedgerError;
use crate::fixed::{PPM, mul_div, mul_div_rem, scale_ppm};
use crate::lookup::{FingerprintIndex, key_fingerprint, node_fingerprint};
use crate::params::{Epoch, LedgerParams, Price, Resource};
use crate::penalties::{Penalty, PenaltyLevel};
use crate::receipt::VerifiedReceipt;

/// Bits of the packed key below the operator index: 8 for the resource code, then 32.
const OPERATOR_SHIFT: u32 = 8;
const TENANT_SHIFT: u32 = OPERATOR_SHIFT + 32;

/// Money owed between one tenant and one operator this epoch.
struct Line {
    tenant: u32,
    operator: u32,
    usage_value: u128,
    /// The part of `usage_value` that is storage (the only usage emission rewards).
    storage_value: u128,
    paid: u128,
}

/// The result of settling receipts.
pub(crate) struct Settled {
    pub operators: Vec<OperatorReward>,
    pub tenants: Vec<TenantCharge>,
    pub ignored: IgnoredReceipts,
}

/// Settles the epoch's receipts; `penalties` must hold every staked operator.
pub(crate) fn settle(
    epoch: Epoch,
    params: &LedgerParams,
    receipts: &[VerifiedReceipt],
    stakes: &BTreeMap<NodeId, &Stake>,
    escrows: &BTreeMap<PublicKeyBytes, u128>,
    penalties: &BTreeMap<NodeId, Penalty>,
) -> Result<Settled, LedgerError> {
    let operators: Vec<(&NodeId, &Stake)> = stakes.iter().map(|(id, s)| (id, *s)).collect();
    let tenants: Vec<(&PublicKeyBytes, u128)> = escrows.iter().map(|(t, b)| (t, *b)).collect();
    let operator_index =
        FingerprintIndex::new(operators.iter().map(|(id, _)| (node_fingerprint(id), **id)));
    let tenant_index =
        FingerprintIndex::new(tenants.iter().map(|(key, _)| (key_fingerprint(key), **key)));
    let mut ignored = IgnoredReceipts::default();

    let mut counters: Vec<(u128, u64)> = Vec::with_capacity(receipts.len());
    for receipt in receipts {
        let body = receipt.body();
        if body.epoch != epoch {
            ignored.wrong_epoch += 1;
            continue;
        }
        if body.network != params.network {
            ignored.wrong_network += 1;
            continue;
        }
        let Some(tenant) = tenant_index.find(key_fingerprint(&body.tenant), &body.tenant) else {
            ignored.tenant_without_escrow += 1;
            continue;
        };
        let Some(operator) = operator_index.find(node_fingerprint(&body.provider), &body.provider)
        else {
            ignored.provider_not_staked += 1;
            continue;
        };
        let key = (index_u128(tenant) << TENANT_SHIFT)
            | (index_u128(operator) << OPERATOR_SHIFT)
            | u128::from(body.resource.code());
        counters.push((key, body.cumulative));
    }
    let counters = sort_counters(counters, tenants.len());

    let mut prices = [Price::new(0, 0); 256];
    for resource in Resource::ALL {
        prices[usize::from(resource.code())] = params.prices.price(resource);
    }
    let mut lines = lines_from_counters(&counters, &prices, &mut ignored);

    // Charge each tenant: its lines are contiguous because the tenant is the high key.
    let mut charges = Vec::new();
    let mut start = 0;
    while start < lines.len() {
        let tenant = lines[start].tenant;
        let end = start + run_length(&lines[start..], |line| line.tenant == tenant);
        let escrow = tenants
            .get(to_usize(tenant))
            .map_or(0, |(_, balance)| *balance);
        let (usage_value, charged) = charge_tenant(&mut lines[start..end], escrow);
        if let Some((key, _)) = tenants.get(to_usize(tenant)) {
            charges.push(TenantCharge {
                tenant: **key,
                usage_value,
                charged,
            });
        }
        start = end;
    }

    let levels: Vec<Option<&Penalty>> =
        operators.iter().map(|(id, _)| penalties.get(*id)).collect();
    let mut payments = vec![0u128; operators.len()];
    for line in &lines {
        let slot = &mut payments[to_usize(line.operator)];
        *slot = slot
            .checked_add(line.paid)
            .ok_or(LedgerError::AmountOverflow)?;
    }
    let emission = share_emission(params, &lines, &operators, &tenants, &levels)?;

    let mut rewards = Vec::new();
    for (index, (operator, stake)) in operators.iter().enumerate() {
        let payment = payments[index];
        let emitted = emission[index];
        if payment == 0 && emitted == 0 {
            continue;
        }
        let share = levels[index].map_or(PPM, Penalty::payment_share_ppm);
        let kept = scale_ppm(payment, share);
        rewards.push(OperatorReward {
            operator: **operator,
            payout_address: stake.payout_address,
            from_payments: kept,
            withheld: payment - kept,
            emission: emitted,
            reward: kept
                .checked_add(emitted)
                .ok_or(LedgerError::AmountOverflow)?,
        });
    }
    Ok(Settled {
        operators: rewards,
        tenants: charges,
        ignored,
    })
}

/// Sorts `(key, cumulative)` counters by key: a counting sort on the tenant (the key's
/// high part) into per-tenant buckets, then a small sort per bucket, which touches memory
/// far less than one sort of a million entries. Entries with equal keys may end up in any
/// order; only their maximum cumulative is used.
fn sort_counters(counters: Vec<(u128, u64)>, tenant_count: usize) -> Vec<(u128, u64)> {
    // Every key's tenant index came from the tenant index, so it is below `tenant_count`.
    let tenant_of = |key: u128| usize::try_from(key >> TENANT_SHIFT).unwrap_or(usize::MAX);
    let mut starts = vec![0usize; tenant_count + 1];
    for (key, _) in &counters {
        if let Some(count) = starts.get_mut(tenant_of(*key).saturating_add(1)) {
            *count += 1;
        }
    }
    for bucket in 1..starts.len() {
        starts[bucket] += starts[bucket - 1];
    }
    let mut next = starts.clone();
    let mut sorted = vec![(0u128, 0u64); counters.len()];
    for counter in counters {
        let Some(slot) = next.get_mut(tenant_of(counter.0)) else {
            continue;
        };
        if let Some(target) = sorted.get_mut(*slot) {
            *target = counter;
        }
        *slot += 1;
    }
    for bucket in starts.windows(2) {
        if let Some(entries) = sorted.get_mut(bucket[0]..bucket[1]) {
            entries.sort_unstable_by_key(|(key, _)| *key);
        }
    }
    sorted
}

/// Collapses sorted `(key, cumulative)` counters into one line per (tenant, operator).
fn lines_from_counters(
    counters: &[(u128, u64)],
    prices: &[Price; 256],
    ignored: &mut IgnoredReceipts,
) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    let mut index = 0;
    while index < counters.len() {
        let key = counters[index].0;
        let run = run_length(&counters[index..], |(other, _)| *other == key);
        ignored.superseded += u64::try_from(run - 1).unwrap_or(u64::MAX);
        let cumulative = counters[index..index + run]
            .iter()
            .map(|(_, cumulative)| *cumulative)
            .max()
            .unwrap_or(0);
        index += run;

        let code = u8::try_from(key & 0xff).unwrap_or(0);
        let cost = prices[usize::from(code)].cost(u128::from(cumulative));
        let storage = if code == Resource::StorageByteHours.code() {
            cost
        } else {
            0
        };
        let tenant = u32::try_from(key >> TENANT_SHIFT).unwrap_or(u32::MAX);
        let operator = u32::try_from((key >> OPERATOR_SHIFT) & u128::from(u32::MAX)).unwrap_or(0);
        match lines.last_mut() {
            Some(line) if line.tenant == tenant && line.operator == operator => {
                line.usage_value = line.usage_value.saturating_add(cost);
                line.storage_value = line.storage_value.saturating_add(storage);
            }
            _ => lines.push(Line {
                tenant,
                operator,
                usage_value: cost,
                storage_value: storage,
                paid: 0,
            }),
        }
    }
    lines
}

/// Sets `paid` on one tenant's lines; returns `(usage value, amount charged)`.
fn charge_tenant(lines: &mut [Line], escrow: u128) -> (u128, u128) {
    let mut usage_total = 0u128;
    let mut saturated = false;
    for line in lines.iter() {
        match usage_total.checked_add(line.usage_value) {
            Some(sum) => usage_total = sum,
            None => {
                usage_total = u128::MAX;
                saturated = true;
            }
        }
    }
    if !saturated && usage_total <= escrow {
        for line in lines.iter_mut() {
            line.paid = line.usage_value;
        }
        return (usage_total, usage_total);
    }

    // Pro rata: floor shares, then the leftover units by largest remainder.
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(lines.len());
    let mut floor_total = 0u128;
    for (position, line) in lines.iter_mut().enumerate() {
        let (share, remainder) =
            mul_div_rem(line.usage_value, escrow, usage_total).unwrap_or((0, 0));
        line.paid = share;
        floor_total = floor_total.saturating_add(share);
        remainders.push((remainder, position));
    }
    if floor_total <= escrow {
        let mut leftover = escrow - floor_total;
        // Largest remainder first; equal remainders go to the earlier (lower) operator.
        remainders.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (remainder, position) in remainders {
            if leftover == 0 || remainder == 0 {
                break;
            }
            lines[position].paid += 1;
            leftover -= 1;
        }
    } else {
        // Only reachable when the usage total saturated: clamp in operator order.
        let mut available = escrow;
        for line in lines.iter_mut() {
            line.paid = line.paid.min(available);
            available -= line.paid;
        }
    }
    let charged = lines
        .iter()
        .fold(0u128, |sum, line| sum.saturating_add(line.paid));
    (usage_total, charged)
}

/// Emission per operator index (all zeros when the budget is zero).
fn share_emission(
    params: &LedgerParams,
    lines: &[Line],
    operators: &[(&NodeId, &Stake)],
    tenants: &[(&PublicKeyBytes, u128)],
    levels: &[Option<&Penalty>],
) -> Result<Vec<u128>, LedgerError> {
    let mut emission = vec![0u128; operators.len()];
    let budget = params.emission.budget_per_epoch;
    if budget == 0 {
        return Ok(emission);
    }
    // A tenant key that is also an operator's key maps to that operator's payout address.
    let key_payouts: BTreeMap<PublicKeyBytes, [u8; 20]> = operators
        .iter()
        .filter_map(|(id, stake)| operator_key(id).map(|key| (key, stake.payout_address)))
        .collect();
    let eligible: Vec<bool> = operators
        .iter()
        .zip(levels)
        .map(|((_, stake), penalty)| {
            stake.unbonding_at.is_none()
                && penalty.is_none_or(|penalty| penalty.level != PenaltyLevel::Ejected)
        })
        .collect();

    // The storage part of what each line paid (storage_value <= usage_value, so at most
    // `paid`); only this earns emission.
    let storage_paid: Vec<u128> = lines
        .iter()
        .map(|line| {
            if line.storage_value == 0 {
                0
            } else if line.storage_value == line.usage_value {
                line.paid
            } else {
                mul_div(line.paid, line.storage_value, line.usage_value).unwrap_or(0)
            }
        })
        .collect();

    // Lines are grouped by tenant: find each tenant's own payout address (if its key is an
    // operator's) once per tenant, not once per line.
    let mut weights: Vec<u128> = Vec::with_capacity(lines.len());
    let mut current_tenant = None;
    let mut tenant_payout = None;
    for (line, storage_paid) in lines.iter().zip(&storage_paid) {
        if current_tenant != Some(line.tenant) {
            current_tenant = Some(line.tenant);
            tenant_payout = tenants
                .get(to_usize(line.tenant))
                .and_then(|(key, _)| key_payouts.get(*key));
        }
        let operator = to_usize(line.operator);
        let self_dealing = tenant_payout == Some(&operators[operator].1.payout_address);
        let weight = if self_dealing || !eligible[operator] {
            0
        } else {
            let score = levels[operator].map_or(PPM, |penalty| penalty.score_ppm);
            scale_ppm(*storage_paid, score)
        };
        weights.push(weight);
    }
    let total_weight = weights
        .iter()
        .try_fold(0u128, |sum, weight| sum.checked_add(*weight))
        .ok_or(LedgerError::AmountOverflow)?;
    if total_weight == 0 {
        return Ok(emission);
    }

    let mut start = 0;
    while start < lines.len() {
        let tenant = lines[start].tenant;
        let end = start + run_length(&lines[start..], |line| line.tenant == tenant);
        let shares: Vec<u128> = weights[start..end]
            .iter()
            .map(|weight| mul_div(budget, *weight, total_weight).unwrap_or(0))
            .collect();
        let attributed = shares
            .iter()
            .fold(0u128, |sum, share| sum.saturating_add(*share));
        let paid = storage_paid[start..end]
            .iter()
            .fold(0u128, |sum, paid| sum.saturating_add(*paid));
        let cap = mul_div(
            paid,
            u128::from(params.emission.max_per_paid_ppm),
            u128::from(PPM),
        )
        .unwrap_or(u128::MAX);
        for (line, share) in lines[start..end].iter().zip(shares) {
            let share = if attributed > cap {
                mul_div(share, cap, attributed).unwrap_or(0)
            } else {
                share
            };
            let slot = &mut emission[to_usize(line.operator)];
            *slot = slot.checked_add(share).ok_or(LedgerError::AmountOverflow)?;
        }
        start = end;
    }
    Ok(emission)
}

/// How many leading items satisfy `same` (runs are short: a linear scan beats a binary
/// search over the whole remainder).
fn run_length<T>(items: &[T], same: impl Fn(&T) -> bool) -> usize {
    items.iter().take_while(|item| same(item)).count()
}

fn index_u128(index: usize) -> u128 {
    u128::try_from(index).unwrap_or(u128::MAX)
}

fn to_usize(index: u32) -> usize {
    usize::try_from(index).unwrap_or(usize::MAX)
}
