//! Resource capacity and availability that nodes advertise and placement reads.

use serde::{Deserialize, Serialize};

/// What a node offers and what of it is currently free.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Logical CPU cores.
    pub cpu_cores: u32,
    /// Free CPU in thousandths of a core (1000 = one idle core).
    pub cpu_free_millis: u32,
    pub memory_bytes: u64,
    pub memory_free_bytes: u64,
    pub disk_bytes: u64,
    pub disk_free_bytes: u64,
}
