//! Measures what this machine offers: CPU, memory and disk, total and free.

use std::path::Path;

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, Networks, RefreshKind, System};
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
        // Where `/proc/stat` cannot be read (a sandbox that hides the kernel's files), the
        // cores this process may run on are the honest count.
        let cores = match self.system.cpus().len() {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        } as u32;
        let busy = self.system.global_cpu_usage().clamp(0.0, 100.0) as f64 / 100.0;
        let cpu_free_millis = ((1.0 - busy) * cores as f64 * 1000.0) as u32;
        let (memory_bytes, memory_free_bytes) = match self.system.total_memory() {
            0 => memory_from_syscall(),
            total => (total, self.system.available_memory()),
        };
        let (disk_bytes, disk_free_bytes) = disk_for(data_dir);
        Capacity {
            cpu_cores: cores,
            cpu_free_millis,
            memory_bytes,
            memory_free_bytes,
            disk_bytes,
            disk_free_bytes,
        }
    }
}

/// Total and free memory from the `sysinfo(2)` system call, for when `/proc/meminfo` cannot
/// be read. Placement refuses work to a node that reports no free memory, so a node that
/// could not measure it would take none. Free here is free plus buffers: the kernel's
/// "available" estimate (which also counts reclaimable page cache) needs `/proc/meminfo`.
// The fields are the kernel's `unsigned long`: 64 bits here, 32 on 32-bit targets.
#[allow(clippy::useless_conversion)]
fn memory_from_syscall() -> (u64, u64) {
    let info = rustix::system::sysinfo();
    let unit = u64::from(info.mem_unit.max(1));
    let total = u64::from(info.totalram).saturating_mul(unit);
    let free = u64::from(info.freeram)
        .saturating_add(u64::from(info.bufferram))
        .saturating_mul(unit);
    (total, free.min(total))
}

/// Bytes received and sent by every network interface since the machine started.
pub fn network_totals() -> (u64, u64) {
    let networks = Networks::new_with_refreshed_list();
    networks.iter().fold((0, 0), |(rx, tx), (_, data)| {
        (rx + data.total_received(), tx + data.total_transmitted())
    })
}

/// Total and available bytes of the filesystem holding `path`, asked of that filesystem
/// itself (`statvfs`): a list of mounts from `/proc` would miss it where a sandbox hides
/// `/proc`'s kernel files, and placement would see a full disk. Available is what an
/// unprivileged user may still write, as the node does.
fn disk_for(path: &Path) -> (u64, u64) {
    match rustix::fs::statvfs(path) {
        Ok(fs) => (
            fs.f_blocks.saturating_mul(fs.f_frsize),
            fs.f_bavail.saturating_mul(fs.f_frsize),
        ),
        Err(_) => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_dirs_filesystem_and_the_memory_are_measured_without_proc() {
        let dir = tempfile::tempdir().unwrap();
        let (total, free) = disk_for(dir.path());
        assert!(total > 0 && free <= total, "disk {free} of {total}");
        assert_eq!(disk_for(&dir.path().join("missing")), (0, 0));
        let (total, free) = memory_from_syscall();
        assert!(
            total > 0 && free > 0 && free <= total,
            "memory {free} of {total}"
        );
    }
}
