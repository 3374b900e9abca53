//! Prometheus metrics owned by the registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as MetricsRegistry;

/// Counters and gauges for the registry, registered under the `registry_` prefix.
#[derive(Clone, Debug, Default)]
pub struct RegistryMetrics {
    pub entries: Gauge,
    pub tombstones: Gauge,
    pub applied: Counter,
    pub stale: Counter,
    pub invalid_signatures: Counter,
    pub rejected_by_policy: Counter,
    pub malformed: Counter,
    pub invalid_on_disk: Counter,
    pub sync_rounds: Counter,
    pub sync_entries_received: Counter,
}

impl RegistryMetrics {
    pub fn register(registry: &mut MetricsRegistry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("registry");
        r.register("entries", "Live entries in the registry", m.entries.clone());
        r.register(
            "tombstones",
            "Tombstones kept in the registry",
            m.tombstones.clone(),
        );
        r.register(
            "applied",
            "Entries that updated the registry",
            m.applied.clone(),
        );
        r.register(
            "stale",
            "Entries ignored because a newer version was held",
            m.stale.clone(),
        );
        r.register(
            "invalid_signatures",
            "Entries dropped because their signature did not verify",
            m.invalid_signatures.clone(),
        );
        r.register(
            "rejected_by_policy",
            "Entries dropped because their owner may not write their key",
            m.rejected_by_policy.clone(),
        );
        r.register(
            "malformed",
            "Entries dropped because they did not decode",
            m.malformed.clone(),
        );
        r.register(
            "invalid_on_disk",
            "Entries skipped at start because they no longer decoded or verified",
            m.invalid_on_disk.clone(),
        );
        r.register(
            "sync_rounds",
            "Anti-entropy rounds completed",
            m.sync_rounds.clone(),
        );
        r.register(
            "sync_entries_received",
            "Entries that anti-entropy brought in",
            m.sync_entries_received.clone(),
        );
        m
    }
}
