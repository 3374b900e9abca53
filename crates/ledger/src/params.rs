//! Epochs, metered resources, prices and every tunable of settlement.
//!
//! All parameters travel inside the epoch input rather than living in code, so two nodes
//! recompute the same epoch only if they agree on them, and a network can change prices
//! or penalty thresholds at an epoch boundary without a software upgrade. Defaults follow
//! the reference figures in the crate docs (Storj's reputation constants, 1 MiB chunks).

use serde::{Deserialize, Serialize};

use crate::error::LedgerError;
use crate::fixed::{PPM, mul_div};

/// A settlement epoch number (1 h by default; the length is the caller's business).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch(pub u64);

/// A metered resource. Each receipt counts units of exactly one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Resource {
    /// Bytes stored × hours held (one GB held one hour is 10^9 units).
    StorageByteHours,
    /// Bytes served to the tenant.
    EgressBytes,
    /// WebAssembly fuel burnt by function invocations.
    FunctionFuel,
    /// Function invocations.
    FunctionRequests,
    /// WebAssembly fuel burnt by jobs.
    JobFuel,
    /// WebAssembly fuel burnt by long-running workers.
    WorkerFuel,
}

impl Resource {
    /// Every resource, in code order.
    pub const ALL: [Resource; 6] = [
        Resource::StorageByteHours,
        Resource::EgressBytes,
        Resource::FunctionFuel,
        Resource::FunctionRequests,
        Resource::JobFuel,
        Resource::WorkerFuel,
    ];

    /// The stable one-byte code used in signing texts. Never renumber: signatures bind it.
    pub fn code(self) -> u8 {
        match self {
            Resource::StorageByteHours => 1,
            Resource::EgressBytes => 2,
            Resource::FunctionFuel => 3,
            Resource::FunctionRequests => 4,
            Resource::JobFuel => 5,
            Resource::WorkerFuel => 6,
        }
    }
}

/// A price as a rational: `amount` token base units per `10^per_units_log10` units.
///
/// The cost of `n` units is `floor(n * amount / 10^per_units_log10)`, computed exactly in
/// 256 bits (saturating at `u128::MAX`, which any escrow bound then caps). Example: with an
/// 18-decimal token worth $1, $1.50 per TB-month (730 h) is 1.5e18 / (1e12 × 730) ≈ 2054.79
/// base units per byte-hour, i.e. `Price { amount: 2_054_794_520_548, per_units_log10: 9 }`
/// (base units per GB-hour).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Base units charged per `10^per_units_log10` units.
    pub amount: u128,
    /// Decimal exponent of the unit batch the amount is for (at most 38).
    pub per_units_log10: u8,
}

impl Price {
    /// A price of `amount` base units per `10^per_units_log10` units.
    pub const fn new(amount: u128, per_units_log10: u8) -> Self {
        Self {
            amount,
            per_units_log10,
        }
    }

    /// `floor(units * amount / 10^k)`, saturating at `u128::MAX`.
    pub fn cost(&self, units: u128) -> u128 {
        let Some(denominator) = 10u128.checked_pow(u32::from(self.per_units_log10)) else {
            return 0;
        };
        mul_div(units, self.amount, denominator).unwrap_or(u128::MAX)
    }

    fn validate(&self) -> Result<(), LedgerError> {
        if 10u128
            .checked_pow(u32::from(self.per_units_log10))
            .is_none()
        {
            return Err(LedgerError::PriceExponentTooLarge(self.per_units_log10));
        }
        Ok(())
    }
}

/// The price of every [`Resource`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceTable {
    /// Price of [`Resource::StorageByteHours`].
    pub storage_byte_hours: Price,
    /// Price of [`Resource::EgressBytes`].
    pub egress_bytes: Price,
    /// Price of [`Resource::FunctionFuel`].
    pub function_fuel: Price,
    /// Price of [`Resource::FunctionRequests`].
    pub function_requests: Price,
    /// Price of [`Resource::JobFuel`].
    pub job_fuel: Price,
    /// Price of [`Resource::WorkerFuel`].
    pub worker_fuel: Price,
}

impl PriceTable {
    /// The price of one resource.
    pub fn price(&self, resource: Resource) -> Price {
        match resource {
            Resource::StorageByteHours => self.storage_byte_hours,
            Resource::EgressBytes => self.egress_bytes,
            Resource::FunctionFuel => self.function_fuel,
            Resource::FunctionRequests => self.function_requests,
            Resource::JobFuel => self.job_fuel,
            Resource::WorkerFuel => self.worker_fuel,
        }
    }
}

impl Default for PriceTable {
    /// Storj-like prices for an 18-decimal token worth $1: $1.50/TB-month stored,
    /// $2/TB egress; compute at $0.20 per 10^12 fuel and $0.20 per million requests.
    fn default() -> Self {
        Self {
            storage_byte_hours: Price::new(2_054_794_520_548, 9),
            egress_bytes: Price::new(2_000_000, 0),
            function_fuel: Price::new(200_000, 0),
            function_requests: Price::new(200_000_000_000, 0),
            job_fuel: Price::new(200_000, 0),
            worker_fuel: Price::new(200_000, 0),
        }
    }
}

/// Reputation: a beta model after Storj's audit score (see the crate docs for the formula).
///
/// `alpha` and `beta` are counted in micro-audits (10^-6 of one audit) so the decay can be
/// applied in integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationParams {
    /// λ, the forgetting factor applied once per counted audit, in ppm (Storj: 0.999).
    pub decay_ppm: u64,
    /// w, the weight of one counted audit, in micro-audits (Storj: 1 audit).
    pub weight_micro: u128,
    /// α0, the starting success mass of a new node, in micro-audits (Storj: 1000 audits).
    pub initial_alpha_micro: u128,
    /// β0, the starting failure mass, in micro-audits (Storj: 0).
    pub initial_beta_micro: u128,
    /// A node's audits count in an epoch only if this many distinct auditors issued them.
    pub min_distinct_auditors: u32,
    /// How many auditors are dropped from each end (highest and lowest failure rate)
    /// before summing; needs `min_distinct_auditors >= 2 * trimmed + 1`.
    pub trimmed_auditors_per_side: u32,
    /// At most this many audits of one node by one auditor count per epoch; an auditor
    /// that sent more is scaled down to this many, keeping its failure ratio.
    pub max_audits_per_auditor: u32,
}

impl Default for ReputationParams {
    fn default() -> Self {
        Self {
            decay_ppm: 999_000,
            weight_micro: 1_000_000,
            initial_alpha_micro: 1_000 * 1_000_000,
            initial_beta_micro: 0,
            min_distinct_auditors: 3,
            trimmed_auditors_per_side: 1,
            max_audits_per_auditor: 64,
        }
    }
}

/// Stepped penalties (see the crate docs for the steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PenaltyParams {
    /// Threshold 1: a score below this earns a warning.
    pub warn_below_ppm: u64,
    /// Threshold 2: a score below this scales the operator's reward by its score.
    pub reduce_below_ppm: u64,
    /// Threshold 3: a score below this ejects the node (Storj disqualifies below 0.96).
    pub eject_below_ppm: u64,
    /// Bytes of data one failed audit stands for (one chunk).
    pub chunk_size_bytes: u64,
    /// What the network pays to repair one byte: the slash per failed audit is
    /// `repair_price.cost(chunk_size_bytes)`.
    pub repair_price: Price,
    /// An operator whose bond falls below this after slashing is ejected (bond exhausted).
    pub min_bond: u128,
}

impl Default for PenaltyParams {
    /// Thresholds 0.99 / 0.975 / 0.96; 1 MiB chunks; repair at 1.5 × ($2/TB egress).
    fn default() -> Self {
        Self {
            warn_below_ppm: 990_000,
            reduce_below_ppm: 975_000,
            eject_below_ppm: 960_000,
            chunk_size_bytes: 1024 * 1024,
            repair_price: Price::new(3_000_000, 0),
            min_bond: 1,
        }
    }
}

/// Optional emission on top of tenants' payments, capped per epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmissionParams {
    /// At most this many new tokens (base units) are distributed per epoch; 0 disables it.
    pub budget_per_epoch: u128,
    /// The emission attributable to one tenant is at most this fraction (ppm) of its
    /// storage payments in the epoch. Bounds what a wash trader with a fresh key can gain;
    /// see the crate docs.
    pub max_per_paid_ppm: u64,
}

impl Default for EmissionParams {
    /// No emission; if enabled, at most 0.5 token of emission per token paid.
    fn default() -> Self {
        Self {
            budget_per_epoch: 0,
            max_per_paid_ppm: 500_000,
        }
    }
}

/// Everything that shapes settlement besides the epoch's data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerParams {
    /// The network's name; receipts and audits signed for another network do not count.
    pub network: String,
    /// What each resource costs.
    pub prices: PriceTable,
    /// The audit score model.
    pub reputation: ReputationParams,
    /// The penalty steps.
    pub penalties: PenaltyParams,
    /// The optional emission.
    pub emission: EmissionParams,
}

impl LedgerParams {
    /// Default parameters for the named network.
    pub fn with_defaults(network: impl Into<String>) -> Self {
        Self {
            network: network.into(),
            prices: PriceTable::default(),
            reputation: ReputationParams::default(),
            penalties: PenaltyParams::default(),
            emission: EmissionParams::default(),
        }
    }

    /// Checks the parameters are consistent.
    pub fn validate(&self) -> Result<(), LedgerError> {
        for resource in Resource::ALL {
            self.prices.price(resource).validate()?;
        }
        self.penalties.repair_price.validate()?;
        let penalties = &self.penalties;
        if !(penalties.eject_below_ppm <= penalties.reduce_below_ppm
            && penalties.reduce_below_ppm <= penalties.warn_below_ppm
            && penalties.warn_below_ppm <= PPM)
        {
            return Err(LedgerError::ThresholdsOutOfOrder);
        }
        let reputation = &self.reputation;
        if reputation.decay_ppm > PPM {
            return Err(LedgerError::DecayAboveOne(reputation.decay_ppm));
        }
        let needed = 2 * u64::from(reputation.trimmed_auditors_per_side) + 1;
        if u64::from(reputation.min_distinct_auditors) < needed {
            return Err(LedgerError::TooFewAuditorsForTrim {
                configured: reputation.min_distinct_auditors,
                trimmed: reputation.trimmed_auditors_per_side,
                needed,
            });
        }
        if reputation.max_audits_per_auditor == 0 {
            return Err(LedgerError::ZeroAuditCap);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_is_a_rational_per_power_of_ten() {
        let per_thousand = Price::new(3, 3);
        assert_eq!(per_thousand.cost(999), 2);
        assert_eq!(per_thousand.cost(1_000), 3);
        assert_eq!(Price::new(u128::MAX, 0).cost(2), u128::MAX);
        assert_eq!(Price::new(5, 39).cost(1), 0);
    }

    #[test]
    fn defaults_validate_and_bad_params_are_refused() {
        let params = LedgerParams::with_defaults("test");
        assert_eq!(params.validate(), Ok(()));

        let mut bad = params.clone();
        bad.penalties.eject_below_ppm = 999_999;
        assert_eq!(bad.validate(), Err(LedgerError::ThresholdsOutOfOrder));

        let mut bad = params.clone();
        bad.reputation.decay_ppm = PPM + 1;
        assert_eq!(bad.validate(), Err(LedgerError::DecayAboveOne(PPM + 1)));

        let mut bad = params.clone();
        bad.prices.job_fuel.per_units_log10 = 39;
        assert_eq!(bad.validate(), Err(LedgerError::PriceExponentTooLarge(39)));

        let mut bad = params.clone();
        bad.reputation.min_distinct_auditors = 2;
        assert!(matches!(
            bad.validate(),
            Err(LedgerError::TooFewAuditorsForTrim { needed: 3, .. })
        ));

        let mut bad = params;
        bad.reputation.max_audits_per_auditor = 0;
        assert_eq!(bad.validate(), Err(LedgerError::ZeroAuditCap));
    }
}
