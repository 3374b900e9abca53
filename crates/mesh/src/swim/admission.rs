//! Bounds on how fast, and how far, hearsay may grow the membership table.
//!
//! A peer can sign liveness records for as many fresh keys as it likes, so a valid
//! signature alone must not be enough to grow every node's table without bound. Each
//! source may introduce at most [`MAX_ADMISSIONS_PER_WINDOW`] members per
//! [`ADMISSION_WINDOW`], members nobody has vouched for (never heard from directly, not in
//! the registry) are capped at [`MAX_UNVERIFIED_MEMBERS`], and the whole table at
//! [`MAX_MEMBERS`]. Unverified members that die are forgotten after
//! [`UNVERIFIED_RETENTION`].

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use xnode_types::NodeId;

/// The window over which admissions per source are counted.
pub const ADMISSION_WINDOW: Duration = Duration::from_secs(10);
/// New members one source may introduce per window. A network of a few hundred nodes
/// still learns of everyone in one push-pull from each of a few peers.
pub const MAX_ADMISSIONS_PER_WINDOW: u32 = 64;
/// Members known only from hearsay (never heard from directly, not vouched for by the
/// registry) at any one time.
pub const MAX_UNVERIFIED_MEMBERS: usize = 256;
/// Members of any kind. Beyond this, only members already known are updated. Room for a
/// network of 10,000 nodes with margin; a member costs about 200 bytes here (the table
/// keeps entries small, see `table`), so a full table is a few megabytes.
pub const MAX_MEMBERS: usize = 16_384;
/// How long an unverified member that is dead or gone is remembered before it is
/// forgotten, freeing its place.
pub const UNVERIFIED_RETENTION: Duration = Duration::from_secs(60);

/// Per-source admission counters over fixed windows.
#[derive(Debug, Default)]
pub(crate) struct Admissions {
    windows: HashMap<NodeId, (Instant, u32)>,
}

impl Admissions {
    /// Whether `source` may introduce one more member now.
    pub(crate) fn allows(&self, source: &NodeId, now: Instant) -> bool {
        match self.windows.get(source) {
            Some((start, count)) if now.duration_since(*start) < ADMISSION_WINDOW => {
                *count < MAX_ADMISSIONS_PER_WINDOW
            }
            _ => true,
        }
    }

    /// Counts one admission by `source`.
    pub(crate) fn record(&mut self, source: NodeId, now: Instant) {
        let entry = self.windows.entry(source).or_insert((now, 0));
        if now.duration_since(entry.0) >= ADMISSION_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// Forgets windows that have ended, so the map holds only recent sources.
    pub(crate) fn prune(&mut self, now: Instant) {
        self.windows
            .retain(|_, (start, _)| now.duration_since(*start) < ADMISSION_WINDOW);
    }
}
