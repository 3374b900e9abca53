//! Admission of connections: at most so many in total and so many per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds its maximum number of connections.
    Total,
    /// This client address holds its maximum number of connections.
    PerAddress,
}

/// Counts of what the gate did, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateStats {
    pub open: u64,
    pub admitted: u64,
    pub refused_total: u64,
    pub refused_per_address: u64,
}

/// Counts open connections per client address and in total.
///
/// The map holds only addresses with an open connection, so its size is bounded by the
/// total limit whatever addresses clients come from.
#[derive(Debug)]
pub struct ConnectionGate {
    max_total: usize,
    max_per_address: usize,
    open: Mutex<Open>,
    admitted: AtomicU64,
    refused_total: AtomicU64,
    refused_per_address: AtomicU64,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Admission {
    gate: Arc<ConnectionGate>,
    address: IpAddr,
}

impl ConnectionGate {
    /// A gate for at most `max_total` connections, `max_per_address` from one address.
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Self {
            max_total,
            max_per_address,
            open: Mutex::new(Open::default()),
            admitted: AtomicU64::new(0),
            refused_total: AtomicU64::new(0),
            refused_per_address: AtomicU64::new(0),
        }
    }

    /// Admits a connection from `address`, or says which limit it hit.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admission, Refusal> {
        let address = canonical(address);
        let mut open = xnode_types::lock(&self.open);
        if open.total >= self.max_total {
            self.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Total);
        }
        let from_address = open.by_address.get(&address).copied().unwrap_or(0);
        if from_address >= self.max_per_address {
            self.refused_per_address.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerAddress);
        }
        open.total += 1;
        open.by_address.insert(address, from_address + 1);
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(Admission {
            gate: Arc::clone(self),
            address,
        })
    }

    /// What the gate has done so far.
    pub fn stats(&self) -> GateStats {
        let open = xnode_types::lock(&self.open).total as u64;
        GateStats {
            open,
            admitted: self.admitted.load(Ordering::Relaxed),
            refused_total: self.refused_total.load(Ordering::Relaxed),
            refused_per_address: self.refused_per_address.load(Ordering::Relaxed),
        }
    }

    fn release(&self, address: IpAddr) {
        let mut open = xnode_types::lock(&self.open);
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_address.get_mut(&address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.by_address.remove(&address);
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.gate.release(self.address);
    }
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) counts as its IPv4
/// address, so a dual-stack listener does not give it two allowances.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_per_address_and_in_total_and_places_come_back() {
        let gate = Arc::new(ConnectionGate::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).unwrap_err(), Refusal::PerAddress);
        let _b1 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(c).unwrap_err(), Refusal::Total);
        drop(a1);
        let _c1 = gate.admit(c).unwrap();
        let stats = gate.stats();
        assert_eq!(stats.open, 3);
        assert_eq!(stats.admitted, 4);
        assert_eq!(stats.refused_per_address, 1);
        assert_eq!(stats.refused_total, 1);
    }

    #[test]
    fn the_address_map_forgets_addresses_with_nothing_open() {
        let gate = Arc::new(ConnectionGate::new(10, 10));
        for i in 0..100u8 {
            drop(gate.admit(IpAddr::from([192, 0, 2, i])).unwrap());
        }
        assert!(xnode_types::lock(&gate.open).by_address.is_empty());
        assert_eq!(gate.stats().open, 0);
    }

    #[test]
    fn a_mapped_ipv4_address_shares_its_ipv4_allowance() {
        let gate = Arc::new(ConnectionGate::new(10, 1));
        let _v4 = gate.admit("192.0.2.7".parse().unwrap()).unwrap();
        assert_eq!(
            gate.admit("::ffff:192.0.2.7".parse().unwrap()).unwrap_err(),
            Refusal::PerAddress
        );
    }
}
