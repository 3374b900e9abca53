//! The chunk trash: chunks garbage collection removed are kept here for a while before they
//! are deleted for good, so a mistaken collection (metadata that was out of sight when the
//! round ran) can be undone: a read that misses a chunk looks here and restores it.
//!
//! One file per chunk, `<chunks dir>/trash/<64 hex digits>`, whose modification time is
//! the moment it was trashed. The trash is on the chunk store's file system, so trashing is
//! a rename. Nothing in it is indexed or served as is: a restore re-verifies the bytes
//! against the id and stores them through [`ChunkStore::put`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::chunks::{ChunkId, ChunkStore, PutOutcome};
use crate::{StoreError, io_err};

/// The trash directory's name under the chunk store's directory.
pub const TRASH_DIR: &str = "trash";

/// The trash of one chunk store.
#[derive(Debug, Clone)]
pub struct Trash {
    dir: PathBuf,
}

impl Trash {
    /// The trash of the chunk store in `chunks_dir`; the directory is made when first used.
    pub fn new(chunks_dir: &Path) -> Self {
        Self {
            dir: chunks_dir.join(TRASH_DIR),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, id: &ChunkId) -> PathBuf {
        self.dir.join(id.to_hex())
    }

    /// Moves chunk `id` out of `store` into the trash. Returns whether the store held it.
    pub fn put(&self, store: &ChunkStore, id: &ChunkId) -> Result<bool, StoreError> {
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let target = self.path_of(id);
        let moved = store.move_out(id, &target)?;
        if target.exists() {
            // The retention period starts now, not when the chunk was written.
            let file = fs::File::options()
                .write(true)
                .open(&target)
                .map_err(io_err(&target))?;
            file.set_modified(SystemTime::now())
                .map_err(io_err(&target))?;
        }
        Ok(moved)
    }

    /// Whether the trash holds chunk `id`.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.path_of(id).exists()
    }

    /// The chunks the trash holds (files that are not named by a chunk id are left out).
    pub fn ids(&self) -> Result<Vec<ChunkId>, StoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&self.dir))?;
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|name| ChunkId::from_hex(name).ok())
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Puts chunk `id` back into `store` if the trash holds it intact, and returns its
    /// bytes. A trashed file that no longer matches its id is deleted.
    pub fn restore(&self, store: &ChunkStore, id: &ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path_of(id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        if ChunkId::of(&bytes) != *id {
            let _ = fs::remove_file(&path);
            return Ok(None);
        }
        match store.put(id, &bytes)? {
            PutOutcome::Stored | PutOutcome::AlreadyPresent => {}
        }
        let _ = fs::remove_file(&path);
        Ok(Some(bytes))
    }

    /// Deletes for good what was trashed longer than `retention` ago. Returns how many
    /// chunks were deleted.
    pub fn purge(&self, retention: Duration) -> Result<u64, StoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let now = SystemTime::now();
        let mut purged = 0u64;
        for entry in entries {
            let entry = entry.map_err(io_err(&self.dir))?;
            let path = entry.path();
            let expired = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= retention);
            if expired && fs::remove_file(&path).is_ok() {
                purged += 1;
            }
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use xnode_db::Db;

    use super::*;
    use crate::StoreMetrics;

    #[test]
    fn trashed_chunks_are_restored_intact_or_purged_after_retention() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("node.redb")).unwrap();
        let store =
            ChunkStore::open(&dir.path().join("chunks"), db, StoreMetrics::default()).unwrap();
        let trash = Trash::new(store.dir());
        let (a, b) = (b"chunk a".to_vec(), b"chunk b".to_vec());
        let (ida, idb) = (ChunkId::of(&a), ChunkId::of(&b));
        store.put(&ida, &a).unwrap();
        store.put(&idb, &b).unwrap();

        assert!(trash.put(&store, &ida).unwrap());
        assert!(trash.put(&store, &idb).unwrap());
        assert!(!store.contains(&ida).unwrap());
        assert_eq!(store.get(&ida).unwrap(), None);
        assert!(trash.contains(&ida));
        assert!(!trash.put(&store, &ChunkId::of(b"never held")).unwrap());
        std::fs::write(trash.dir().join("not-a-chunk"), b"x").unwrap();
        let mut ids = trash.ids().unwrap();
        ids.sort();
        let mut expected = vec![ida, idb];
        expected.sort();
        assert_eq!(ids, expected);
        std::fs::remove_file(trash.dir().join("not-a-chunk")).unwrap();

        // A restore verifies the bytes and puts the chunk back.
        assert_eq!(trash.restore(&store, &ida).unwrap(), Some(a.clone()));
        assert_eq!(store.get(&ida).unwrap(), Some(a));
        assert!(!trash.contains(&ida));
        // A trashed file that rotted is not restored.
        std::fs::write(trash.dir().join(idb.to_hex()), b"rotted").unwrap();
        assert_eq!(trash.restore(&store, &idb).unwrap(), None);

        // Purging keeps what is younger than the retention and deletes the rest.
        store.put(&idb, &b).unwrap();
        trash.put(&store, &idb).unwrap();
        assert_eq!(trash.purge(Duration::from_secs(3600)).unwrap(), 0);
        assert!(trash.contains(&idb));
        assert_eq!(trash.purge(Duration::ZERO).unwrap(), 1);
        assert!(!trash.contains(&idb));
    }

    #[test]
    fn a_put_rewrites_a_chunk_whose_file_vanished() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("node.redb")).unwrap();
        let store =
            ChunkStore::open(&dir.path().join("chunks"), db, StoreMetrics::default()).unwrap();
        let bytes = b"held".to_vec();
        let id = ChunkId::of(&bytes);
        assert_eq!(store.put(&id, &bytes).unwrap(), PutOutcome::Stored);
        let hex = id.to_hex();
        std::fs::remove_file(store.dir().join(&hex[..2]).join(&hex)).unwrap();
        // The index still lists it, but the answer must not claim a copy that is gone.
        assert_eq!(store.put(&id, &bytes).unwrap(), PutOutcome::Stored);
        assert_eq!(store.get(&id).unwrap(), Some(bytes));
        assert_eq!(store.stats().chunks, 1);
    }
}
