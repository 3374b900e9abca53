//! The embedded database behind every node: redb, wrapped in a narrow byte-oriented API.
//!
//! Subsystems see named tables of byte keys and byte values, with point reads, atomic write
//! batches and ordered prefix scans. Keeping the surface this small keeps the engine
//! replaceable and keeps encoding decisions (and their versions) with the subsystems.
//!
//! The file carries its own format version in a meta table; a node refuses to open a
//! database written by a newer format rather than misreading it.

mod commit;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// The on-disk layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("__meta");

/// Errors from the embedded database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open database at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "database at {path} has format version {found}, newer than this build's {supported}; upgrade xnode"
    )]
    NewerFormat {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("database error: {0}")]
    Engine(String),
}

macro_rules! engine_err {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self { DbError::Engine(e.to_string()) }
        }
    )*};
}
engine_err!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A table name. Tables are created on first write.
#[derive(Clone, Copy, Debug)]
pub struct Table(pub &'static str);

impl Table {
    fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.0)
    }
}

/// Key-value pairs returned by scans, in key order.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// One write in an atomic batch.
#[derive(Debug, Clone)]
pub enum WriteOp {
    Put {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        key: Vec<u8>,
    },
}

/// A handle to the node's database. Cheap to clone; all clones share one file, and one
/// queue of writers ([`commit`]: writes that wait at the same time share a commit).
#[derive(Clone)]
pub struct Db {
    inner: Arc<redb::Database>,
    writers: Arc<commit::CommitQueue>,
    commits: Arc<AtomicU64>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db")
    }
}

impl Db {
    /// Opens (or creates) the database file at `path` and checks its format version.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let shown = path.display().to_string();
        let db = redb::Database::create(path).map_err(|e| DbError::Open {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let this = Self::around(db);
        this.check_format(&shown)?;
        Ok(this)
    }

    /// A database held in memory only, gone when the last handle drops: for simulations
    /// that run thousands of nodes' tables in one process, and for tests.
    pub fn in_memory() -> Result<Self, DbError> {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| DbError::Open {
                path: "(memory)".into(),
                reason: e.to_string(),
            })?;
        let this = Self::around(db);
        this.check_format("(memory)")?;
        Ok(this)
    }

    fn around(db: redb::Database) -> Self {
        Self {
            inner: Arc::new(db),
            writers: Arc::default(),
            commits: Arc::default(),
        }
    }

    /// Write transactions committed since the database was opened: fewer than the calls
    /// to [`Db::write`] when writers overlapped and shared commits.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn check_format(&self, path: &str) -> Result<(), DbError> {
        let txn = self.inner.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("format_version")?.map(|v| {
                let bytes = v.value();
                let mut arr = [0u8; 4];
                if bytes.len() == 4 {
                    arr.copy_from_slice(bytes);
                }
                u32::from_le_bytes(arr)
            });
            match found {
                Some(v) if v > FORMAT_VERSION => {
                    return Err(DbError::NewerFormat {
                        path: path.to_owned(),
                        found: v,
                        supported: FORMAT_VERSION,
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert("format_version", FORMAT_VERSION.to_le_bytes().as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        let txn = self.inner.begin_read()?;
        let t = match txn.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    pub fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), DbError> {
        self.write(vec![WriteOp::Put {
            table,
            key: key.to_vec(),
            value: value.to_vec(),
        }])
    }

    pub fn delete(&self, table: Table, key: &[u8]) -> Result<(), DbError> {
        self.write(vec![WriteOp::Delete {
            table,
            key: key.to_vec(),
        }])
    }

    /// Applies every operation atomically and durably (fsync before returning). Writes
    /// that wait at the same time are committed together, in one transaction; each still
    /// applies all of its operations or none.
    pub fn write(&self, ops: Vec<WriteOp>) -> Result<(), DbError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.writers
            .write(ops, |batches| self.commit_batches(batches))
    }

    /// Commits `batches` in one transaction; if that fails, each alone, so that one
    /// batch's error is its own. One outcome per batch, in order.
    fn commit_batches(&self, batches: &[&[WriteOp]]) -> Vec<Result<(), DbError>> {
        if batches.len() > 1 && self.commit_together(batches).is_ok() {
            return batches.iter().map(|_| Ok(())).collect();
        }
        batches
            .iter()
            .map(|batch| self.commit_together(std::slice::from_ref(batch)))
            .collect()
    }

    /// Applies every operation of `batches`, in order, in one transaction, and commits it.
    fn commit_together(&self, batches: &[&[WriteOp]]) -> Result<(), DbError> {
        let txn = self.inner.begin_write()?;
        for op in batches.iter().flat_map(|batch| batch.iter()) {
            match op {
                WriteOp::Put { table, key, value } => {
                    let mut t = txn.open_table(table.def())?;
                    t.insert(key.as_slice(), value.as_slice())?;
                }
                WriteOp::Delete { table, key } => {
                    let mut t = txn.open_table(table.def())?;
                    t.remove(key.as_slice())?;
                }
            }
        }
        txn.commit()?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// All entries whose key starts with `prefix`, in key order, at most `limit` of them.
    pub fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KvPairs, DbError> {
        self.scan_from(table, prefix, prefix, limit)
    }

    /// Entries with keys `>= start` that start with `prefix`, in key order, at most `limit`.
    pub fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KvPairs, DbError> {
        let txn = self.inner.begin_read()?;
        let t = match txn.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let lower = if start >= prefix { start } else { prefix };
        let mut out = Vec::new();
        for item in t.range::<&[u8]>(lower..)? {
            let (k, v) = item?;
            let key = k.value();
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((key.to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Number of entries in a table.
    pub fn len(&self, table: Table) -> Result<u64, DbError> {
        let txn = self.inner.begin_read()?;
        match txn.open_table(table.def()) {
            Ok(t) => Ok(redb::ReadableTableMetadata::len(&t)?),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Table = Table("t");

    #[test]
    fn put_get_delete_scan() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("x.redb")).unwrap();
        assert_eq!(db.get(T, b"a").unwrap(), None);
        db.put(T, b"a/1", b"one").unwrap();
        db.put(T, b"a/2", b"two").unwrap();
        db.put(T, b"b/1", b"other").unwrap();
        assert_eq!(db.get(T, b"a/1").unwrap().as_deref(), Some(&b"one"[..]));
        let scanned = db.scan_prefix(T, b"a/", 10).unwrap();
        assert_eq!(scanned.len(), 2);
        assert_eq!(db.scan_from(T, b"a/", b"a/2", 10).unwrap().len(), 1);
        assert_eq!(db.scan_prefix(T, b"a/", 1).unwrap().len(), 1);
        db.delete(T, b"a/1").unwrap();
        assert_eq!(db.get(T, b"a/1").unwrap(), None);
        assert_eq!(db.len(T).unwrap(), 2);
    }

    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.redb");
        {
            let db = Db::open(&path).unwrap();
            db.put(T, b"k", b"v").unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(db.get(T, b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn an_in_memory_database_reads_its_writes_and_is_its_own() {
        let a = Db::in_memory().unwrap();
        let b = Db::in_memory().unwrap();
        a.put(T, b"k", b"v").unwrap();
        assert_eq!(a.get(T, b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(b.get(T, b"k").unwrap(), None);
        assert_eq!(a.scan_prefix(T, b"", 10).unwrap().len(), 1);
    }

    fn put(key: &str) -> WriteOp {
        WriteOp::Put {
            table: T,
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
        }
    }

    /// A write redb refuses: the meta table holds text keys, not bytes.
    fn refused() -> WriteOp {
        WriteOp::Put {
            table: Table("__meta"),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        }
    }

    #[test]
    fn concurrent_writers_share_commits_and_each_gets_its_own_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("x.redb")).unwrap();
        let before = db.commits();
        let (threads, each) = (16, 50);
        std::thread::scope(|scope| {
            for t in 0..threads {
                let db = db.clone();
                scope.spawn(move || {
                    for i in 0..each {
                        // Two keys in one batch: both or neither.
                        db.write(vec![put(&format!("{t}/{i}/a")), put(&format!("{t}/{i}/b"))])
                            .unwrap();
                        if t == 0 {
                            // A refused batch fails alone, whoever shares its commit.
                            assert!(db.write(vec![put("never"), refused()]).is_err());
                        }
                    }
                });
            }
        });
        assert_eq!(db.len(T).unwrap(), threads * each * 2);
        assert_eq!(db.get(T, b"never").unwrap(), None);
        let commits = db.commits() - before;
        assert!(
            commits < threads * each,
            "{commits} commits for {} writes: no writes shared a commit",
            threads * each
        );
    }

    #[test]
    fn a_shared_commit_that_fails_is_retried_batch_by_batch() {
        let db = Db::in_memory().unwrap();
        let good_a = [put("a")];
        let bad = [put("b"), refused()];
        let good_c = [put("c")];
        let outcomes = db.commit_batches(&[&good_a, &bad, &good_c]);
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(outcomes[1].is_err(), "{outcomes:?}");
        assert!(db.get(T, b"a").unwrap().is_some());
        assert!(db.get(T, b"c").unwrap().is_some());
        // The refused batch left nothing, not even its first write.
        assert_eq!(db.get(T, b"b").unwrap(), None);
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.redb");
        std::fs::write(&path, b"this is not a database file at all, not even close").unwrap();
        assert!(matches!(Db::open(&path), Err(DbError::Open { .. })));
    }
}
