//! Monotonic usage counters per (tenant, provider, resource, epoch), kept in the node's
//! database.
//!
//! Increments accumulate in memory and [`Meter::flush`] adds them to the stored totals in
//! one atomic batch, so the request path never waits for a disk write. A crash loses at
//! most the increments since the last flush (the provider under-counts, never charges
//! twice); a restart reads the stored totals back and continues from them, so nothing is
//! reset or counted twice. The provider uses one meter for what it served; the edge uses
//! another (its own table) for what it observed of each provider.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use xnode_db::{Db, Table, WriteOp};
use xnode_ledger::{Epoch, ReceiptKey, Resource};
use xnode_types::{NodeId, PublicKeyBytes, lock};
use xnode_wire::Versioned;

use crate::MeteringError;

/// The counter a meter keeps: the ledger's receipt key.
pub type CounterKey = ReceiptKey;

/// One counter's stored total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct CounterRecord {
    cumulative: u64,
}

impl Versioned for CounterRecord {
    const KIND_TAG: u8 = xnode_wire::kinds::METER_COUNTER;
    const KIND_NAME: &'static str = "meter counter";
    const VERSION: u8 = 1;
}

const MAX_RECORD: usize = 64;

/// Counters in one database table, with increments pending in memory.
pub struct Meter {
    db: Db,
    table: Table,
    pending: Mutex<BTreeMap<CounterKey, u64>>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("table", &self.table.0)
            .finish_non_exhaustive()
    }
}

/// `epoch (8 bytes big-endian) | tenant (32) | resource code (1) | provider (multihash)`:
/// epoch first, so one epoch's counters are one ordered prefix scan.
pub(crate) fn counter_key_bytes(key: &CounterKey) -> Vec<u8> {
    let provider = key.provider.to_bytes();
    let mut out = Vec::with_capacity(41 + provider.len());
    out.extend_from_slice(&key.epoch.0.to_be_bytes());
    out.extend_from_slice(&key.tenant.0);
    out.push(key.resource.code());
    out.extend_from_slice(&provider);
    out
}

pub(crate) fn parse_counter_key(bytes: &[u8]) -> Option<CounterKey> {
    let (epoch, rest) = bytes.split_first_chunk::<8>()?;
    let (tenant, rest) = rest.split_first_chunk::<32>()?;
    let (code, provider) = rest.split_first()?;
    let resource = Resource::ALL.into_iter().find(|r| r.code() == *code)?;
    let provider = libp2p_peer_id(provider)?;
    Some(CounterKey {
        tenant: PublicKeyBytes(*tenant),
        provider,
        resource,
        epoch: Epoch(u64::from_be_bytes(*epoch)),
    })
}

fn libp2p_peer_id(bytes: &[u8]) -> Option<NodeId> {
    libp2p_identity::PeerId::from_bytes(bytes)
        .ok()
        .map(NodeId::from_peer_id)
}

impl Meter {
    /// A meter over `table` of `db`.
    pub fn new(db: Db, table: Table) -> Self {
        Self {
            db,
            table,
            pending: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds `units` to `key`'s counter (in memory until the next [`Meter::flush`]).
    /// Saturates rather than wraps: a counter near `u64::MAX` is absurd usage anyway.
    pub fn add(&self, key: CounterKey, units: u64) {
        if units == 0 {
            return;
        }
        let mut pending = lock(&self.pending);
        let slot = pending.entry(key).or_insert(0);
        *slot = slot.saturating_add(units);
    }

    /// Adds every pending increment to the stored totals, in one atomic batch.
    pub fn flush(&self) -> Result<(), MeteringError> {
        let pending = std::mem::take(&mut *lock(&self.pending));
        if pending.is_empty() {
            return Ok(());
        }
        let mut ops = Vec::with_capacity(pending.len());
        let mut failed = None;
        for (key, add) in &pending {
            let stored = match self.stored(key) {
                Ok(stored) => stored,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let Some(cumulative) = stored.checked_add(*add) else {
                failed = Some(MeteringError::Overflow {
                    resource: key.resource.code(),
                });
                break;
            };
            ops.push(WriteOp::Put {
                table: self.table,
                key: counter_key_bytes(key),
                value: xnode_wire::encode(&CounterRecord { cumulative })?,
            });
        }
        let result = match failed {
            Some(e) => Err(e),
            None => self.db.write(ops).map_err(MeteringError::from),
        };
        if result.is_err() {
            // Put the increments back, so a failed flush loses nothing.
            let mut back = lock(&self.pending);
            for (key, add) in pending {
                let slot = back.entry(key).or_insert(0);
                *slot = slot.saturating_add(add);
            }
        }
        result
    }

    fn stored(&self, key: &CounterKey) -> Result<u64, MeteringError> {
        Ok(match self.db.get(self.table, &counter_key_bytes(key))? {
            Some(bytes) => xnode_wire::decode::<CounterRecord>(&bytes, MAX_RECORD)?.cumulative,
            None => 0,
        })
    }

    /// The counter's total: stored plus pending.
    pub fn cumulative(&self, key: &CounterKey) -> Result<u64, MeteringError> {
        let pending = lock(&self.pending).get(key).copied().unwrap_or(0);
        Ok(self.stored(key)?.saturating_add(pending))
    }

    /// Every stored counter of `epoch` with its total (flush first to include pending).
    pub fn epoch(&self, epoch: Epoch) -> Result<Vec<(CounterKey, u64)>, MeteringError> {
        let rows = self
            .db
            .scan_prefix(self.table, &epoch.0.to_be_bytes(), usize::MAX)?;
        let mut out = Vec::with_capacity(rows.len());
        for (key, value) in rows {
            // A key this build cannot parse was written by a newer one; skip, not fail.
            let Some(key) = parse_counter_key(&key) else {
                continue;
            };
            let record = xnode_wire::decode::<CounterRecord>(&value, MAX_RECORD)?;
            out.push((key, record.cumulative));
        }
        Ok(out)
    }
}

/// Byte-hours for `bytes` held for `elapsed_ms`, rounded down (exact in 128 bits).
pub fn byte_hours(bytes: u64, elapsed_ms: u64) -> u64 {
    let product = u128::from(bytes) * u128::from(elapsed_ms) / 3_600_000;
    u64::try_from(product).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xnode_types::SecretKey;

    const TABLE: Table = Table("test_meter");

    fn key(epoch: u64, resource: Resource) -> CounterKey {
        CounterKey {
            tenant: SecretKey::from_seed(&[9; 32]).unwrap().public(),
            provider: SecretKey::from_seed(&[8; 32]).unwrap().node_id(),
            resource,
            epoch: Epoch(epoch),
        }
    }

    #[test]
    fn counters_are_monotonic_and_survive_a_restart_without_double_counting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let requests = key(5, Resource::FunctionRequests);
        {
            let meter = Meter::new(Db::open(&path).unwrap(), TABLE);
            meter.add(requests, 3);
            meter.add(requests, 4);
            assert_eq!(meter.cumulative(&requests).unwrap(), 7);
            meter.flush().unwrap();
            // A second flush with nothing pending adds nothing.
            meter.flush().unwrap();
            assert_eq!(meter.cumulative(&requests).unwrap(), 7);
            meter.add(requests, 1);
            meter.flush().unwrap();
        }
        // Reopened: the total is what was flushed, not reset and not doubled.
        let meter = Meter::new(Db::open(&path).unwrap(), TABLE);
        assert_eq!(meter.cumulative(&requests).unwrap(), 8);
        meter.add(requests, 2);
        meter.flush().unwrap();
        assert_eq!(meter.cumulative(&requests).unwrap(), 10);
    }

    #[test]
    fn epochs_are_listed_apart() {
        let dir = tempfile::tempdir().unwrap();
        let meter = Meter::new(Db::open(&dir.path().join("db.redb")).unwrap(), TABLE);
        meter.add(key(5, Resource::FunctionRequests), 1);
        meter.add(key(5, Resource::FunctionFuel), 100);
        meter.add(key(6, Resource::FunctionRequests), 2);
        meter.flush().unwrap();
        let five = meter.epoch(Epoch(5)).unwrap();
        assert_eq!(
            five,
            vec![
                (key(5, Resource::FunctionFuel), 100),
                (key(5, Resource::FunctionRequests), 1)
            ]
        );
        assert_eq!(meter.epoch(Epoch(6)).unwrap().len(), 1);
        assert!(meter.epoch(Epoch(7)).unwrap().is_empty());
    }

    #[test]
    fn counter_keys_round_trip_and_garbage_is_refused() {
        let k = key(u64::MAX, Resource::WorkerFuel);
        assert_eq!(parse_counter_key(&counter_key_bytes(&k)), Some(k));
        assert_eq!(parse_counter_key(&[1, 2, 3]), None);
        let mut bad = counter_key_bytes(&k);
        bad[40] = 99;
        assert_eq!(parse_counter_key(&bad), None);
    }

    #[test]
    fn byte_hours_are_exact_and_bounded() {
        assert_eq!(byte_hours(1_000_000_000, 3_600_000), 1_000_000_000);
        assert_eq!(byte_hours(10, 1_800_000), 5);
        assert_eq!(byte_hours(u64::MAX, u64::MAX), u64::MAX);
    }
}
