//! Measures what this machine offers: CPU, memory and disk, total and free.

use std::path::Path;

use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System};
use xnode_types::Capacity;

/// Samples capacity. CPU usage needs two samples, so this keeps its `System` between calls.
pub struct CapacityProbe {
    system: System,
}

impl std::fmt::Debug for CapacityProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CapacityProbe")
    }
}

impl Default for CapacityProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl CapacityProbe {
    pub fn new() -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        Self { system }
    }

    /// Samples now; `data_dir` selects the disk that is reported.
    pub fn sample(&mut self, data_dir: &Path) -> Capacity {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let cores = self.system.cpus().len().max(1) as u32;
        let busy = self.system.global_cpu_usage().clamp(0.0, 100.0) as f64 / 100.0;
        let cpu_free_millis = ((1.0 - busy) * cores as f64 * 1000.0) as u32;
        let (disk_bytes, disk_free_bytes) = disk_for(data_dir);
        Capacity {
            cpu_cores: cores,
            cpu_free_millis,
            memory_bytes: self.system.total_memory(),
            memory_free_bytes: self.system.available_memory(),
            disk_bytes,
            disk_free_bytes,
        }
    }
}

/// Bytes received and sent by every network interface since the machine started.
pub fn network_totals() -> (u64, u64) {
    let networks = Networks::new_with_refreshed_list();
    networks.iter().fold((0, 0), |(rx, tx), (_, data)| {
        (rx + data.total_received(), tx + data.total_transmitted())
    })
}

/// Total and available bytes of the filesystem holding `path` (the longest mount point
/// that is a prefix of it).
fn disk_for(path: &Path) -> (u64, u64) {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let disks = Disks::new_with_refreshed_list();
    disks
        .list()
        .iter()
        .filter(|d| path.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| (d.total_space(), d.available_space()))
        .unwrap_or((0, 0))
}
