//! The provider's rule for tenants whose edge stops countersigning.
//!
//! A provider serves on credit between exchanges. When a tenant's usage has gone without a
//! countersignature for longer than the grace, the provider stops serving that tenant
//! until a countersignature covers its usage again: it never has to carry more than one
//! grace of unpaid service per tenant. The gate is pure: time is an argument.

use std::collections::BTreeMap;

use xnode_types::PublicKeyBytes;

#[derive(Clone, Copy, Debug)]
struct TenantState {
    /// When every metered unit of the tenant was last covered by a countersignature, or
    /// when uncovered usage was first seen.
    covered_at_ms: u64,
    /// Whether some metered usage is not covered yet.
    uncovered: bool,
}

/// Which tenants the provider still serves.
#[derive(Debug)]
pub struct ServeGate {
    grace_ms: u64,
    tenants: BTreeMap<PublicKeyBytes, TenantState>,
}

impl ServeGate {
    /// A gate that tolerates `grace_ms` of uncovered usage.
    pub fn new(grace_ms: u64) -> Self {
        Self {
            grace_ms,
            tenants: BTreeMap::new(),
        }
    }

    /// Records, after an exchange round, whether all of `tenant`'s metered usage is
    /// covered by countersigned receipts.
    pub fn observe(&mut self, tenant: PublicKeyBytes, covered: bool, now_ms: u64) {
        let state = self.tenants.entry(tenant).or_insert(TenantState {
            covered_at_ms: now_ms,
            uncovered: false,
        });
        if covered {
            state.covered_at_ms = now_ms;
            state.uncovered = false;
        } else if !state.uncovered {
            // The grace runs from the first round that found usage uncovered.
            state.uncovered = true;
            state.covered_at_ms = now_ms;
        }
    }

    /// Whether `tenant` may be served at `now_ms`.
    pub fn may_serve(&self, tenant: &PublicKeyBytes, now_ms: u64) -> bool {
        match self.tenants.get(tenant) {
            Some(state) if state.uncovered => {
                now_ms.saturating_sub(state.covered_at_ms) <= self.grace_ms
            }
            _ => true,
        }
    }

    /// Forgets tenants covered for longer than the grace (their state is the default).
    pub fn prune(&mut self, now_ms: u64) {
        let grace = self.grace_ms;
        self.tenants.retain(|_, state| {
            state.uncovered || now_ms.saturating_sub(state.covered_at_ms) <= grace
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_cut_off_only_after_the_grace_and_restored_by_a_countersignature() {
        let tenant = PublicKeyBytes([7; 32]);
        let mut gate = ServeGate::new(1_000);
        assert!(gate.may_serve(&tenant, 0));
        gate.observe(tenant, false, 10_000);
        gate.observe(tenant, false, 10_500);
        assert!(gate.may_serve(&tenant, 11_000));
        gate.observe(tenant, false, 11_001);
        assert!(!gate.may_serve(&tenant, 11_001));
        gate.observe(tenant, true, 12_000);
        assert!(gate.may_serve(&tenant, 12_000));
        gate.prune(20_000);
        assert!(gate.may_serve(&tenant, 20_000));
    }
}
