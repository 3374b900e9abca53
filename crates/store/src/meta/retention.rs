//! The one rule of S3 Object Lock that replicas and readers enforce themselves: a version
//! under an unexpired COMPLIANCE retention is never deleted or weakened, whoever seals
//! the entry that would do it.
//!
//! The gateway of the tenant's edge enforces every Object Lock rule (GOVERNANCE and its
//! bypass, legal holds, shortening). Those depend on who asks and with which header, which
//! a replica cannot see. COMPLIANCE depends on nothing but time: until it lapses nobody may
//! delete the version or change it except by lengthening the retention. So a replica
//! refuses, and a reader ignores, an entry that would break it, even a correctly sealed
//! one, which a node holding the tenant's write authority could make if modified
//! (SECURITY.md). The time compared is the breaking entry's own version, which no replica
//! accepts dated ahead of its clock, so every replica and reader decides the same way
//! whatever its own clock says.

use super::{ObjectMeta, internal_key};

/// The metadata entry holding a version's retention mode (`GOVERNANCE` or `COMPLIANCE`).
pub const LOCK_MODE_ENTRY: &str = ":lock-mode";
/// The metadata entry holding the end of a version's retention (Unix milliseconds).
pub const LOCK_UNTIL_ENTRY: &str = ":lock-until";
/// The retention mode that nobody may shorten or remove.
pub const COMPLIANCE_MODE: &str = "COMPLIANCE";
/// Version objects of a versioned bucket live under this internal directory
/// (`\0ver/<key>/<id>`); the object's own key keeps a copy of its current version, which
/// a newer version rightly replaces, so only version objects are held by their lock.
pub const VERSIONS_DIRECTORY: &str = "ver/";

impl ObjectMeta {
    /// Whether this entry is a version object of a versioned bucket.
    pub fn is_version_object(&self) -> bool {
        self.path.key.starts_with(&internal_key(VERSIONS_DIRECTORY))
    }

    /// The end of this version's COMPLIANCE retention (Unix ms), if it has one. A
    /// malformed end reads as never: the entry is sealed by the tenant's authority, and a
    /// lock must never read weaker than it was written.
    pub fn compliance_until_ms(&self) -> Option<u64> {
        let info = self.info.as_ref()?;
        if !self.is_version_object()
            || info.user_meta.get(LOCK_MODE_ENTRY).map(String::as_str) != Some(COMPLIANCE_MODE)
        {
            return None;
        }
        Some(
            info.user_meta
                .get(LOCK_UNTIL_ENTRY)
                .and_then(|until| until.parse().ok())
                .unwrap_or(u64::MAX),
        )
    }

    /// Whether this entry, replacing `held`, would delete or weaken a COMPLIANCE retention
    /// that had not lapsed when this entry was written: a tombstone, other content, or a
    /// retention that is not COMPLIANCE until at least as late. Tags, legal holds and a
    /// longer retention over the same content are allowed, as S3 allows them.
    pub fn breaks_lock_of(&self, held: &ObjectMeta) -> bool {
        let Some(until) = held.compliance_until_ms() else {
            return false;
        };
        if self.path != held.path || self.version.wall_ms >= until {
            return false;
        }
        let same_content = match (&self.info, &held.info) {
            (Some(new), Some(old)) => new.manifest == old.manifest && new.size == old.size,
            _ => false,
        };
        !(same_content && self.compliance_until_ms().is_some_and(|new| new >= until))
    }
}
