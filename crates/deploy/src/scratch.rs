//! Scratch space of jobs and workers: directories the node owns under its compute
//! directory, named only from checked components, and reads of what guests wrote that
//! never follow a symbolic link.
//!
//! A guest may plant a symbolic link in its `/out` at any moment, also while the node is
//! reading the directory (workers run while their outputs are published), so every file
//! and directory here is opened relative to its parent with `O_NOFOLLOW`: no path from a
//! tenant, a peer or a guest can lead the node outside the directory it gave the run.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags, openat, statat};

use crate::spec::validate_file_name;

/// Deepest directory nesting of `/out` the node reads; deeper files are not published.
const MAX_DEPTH: usize = 16;

/// `name` if it may be one file name in a directory the node owns (see
/// [`validate_file_name`]).
pub(crate) fn component(name: &str) -> io::Result<&str> {
    validate_file_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    Ok(name)
}

fn open_dir_at(parent: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    Ok(openat(
        parent,
        component(name)?,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn open_root(dir: &Path) -> io::Result<OwnedFd> {
    Ok(openat(
        CWD,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Creates the new file `name` in `dir` for writing. Fails if it exists (a link planted
/// there is never followed) or if `name` is not one plain component.
pub(crate) fn create_new(dir: &Path, name: &str) -> io::Result<File> {
    let root = open_root(dir)?;
    let fd = openat(
        &root,
        component(name)?,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(File::from(fd))
}

/// A regular file under an output directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutFile {
    /// The path relative to the directory, `/`-separated.
    pub rel: String,
    pub len: u64,
    /// Modification time (seconds, nanoseconds), to notice rewrites.
    pub modified: (i64, i64),
}

/// What a walk of an output directory found.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    /// Regular files, at most the `max_files` asked for, sorted by path.
    pub files: Vec<OutFile>,
    /// Bytes of every regular file seen.
    pub bytes: u64,
    /// Entries of every kind seen (files, directories, links...).
    pub entries: usize,
}

/// Walks `dir` without following links, for at most `max_entries` entries.
pub(crate) fn walk(dir: &Path, max_files: usize, max_entries: usize) -> Tree {
    let mut tree = Tree::default();
    let Ok(root) = open_root(dir) else {
        return tree;
    };
    let mut stack: Vec<(OwnedFd, String, usize)> = vec![(root, String::new(), 0)];
    while let Some((fd, prefix, depth)) = stack.pop() {
        let Ok(entries) = Dir::read_from(&fd) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            tree.entries += 1;
            if tree.entries > max_entries {
                tree.files.sort_by(|a, b| a.rel.cmp(&b.rel));
                return tree;
            }
            let Ok(stat) = statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let rel = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            #[allow(clippy::unnecessary_cast)]
            let mode = stat.st_mode as rustix::fs::RawMode;
            match FileType::from_raw_mode(mode) {
                FileType::Directory if depth < MAX_DEPTH => {
                    if let Ok(child) = open_dir_at(&fd, name) {
                        stack.push((child, rel, depth + 1));
                    }
                }
                FileType::RegularFile => {
                    let len = u64::try_from(stat.st_size).unwrap_or(0);
                    // Field types differ between platforms; these are plain values
                    // compared for equality, never computed with.
                    #[allow(clippy::unnecessary_cast, clippy::cast_possible_wrap)]
                    let modified = (stat.st_mtime as i64, stat.st_mtime_nsec as i64);
                    tree.bytes = tree.bytes.saturating_add(len);
                    if tree.files.len() < max_files {
                        tree.files.push(OutFile { rel, len, modified });
                    }
                }
                _ => {}
            }
        }
    }
    tree.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    tree
}

/// Opens the regular file `rel` (as [`walk`] gave it) under `dir` for reading, resolving
/// every component without following links.
pub(crate) fn open_file(dir: &Path, rel: &str) -> io::Result<File> {
    let mut parts: Vec<&str> = rel.split('/').collect();
    let last = parts
        .pop()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty path"))?;
    let mut fd = open_root(dir)?;
    for part in parts {
        fd = open_dir_at(&fd, part)?;
    }
    let file = openat(
        &fd,
        component(last)?,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let file = File::from(file);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// How often a run's `/out` is measured against its quota. A guest can write past the
/// quota by what it writes in this time, before it is stopped.
const QUOTA_CHECK: std::time::Duration = std::time::Duration::from_millis(200);
/// Entries of any kind a run's `/out` may hold (empty files and directories cost inodes).
pub(crate) const MAX_OUT_ENTRIES_PER_RUN: usize = 10_000;

/// Watches a run's `/out` and cancels the run when it holds more than `max_bytes` or
/// [`MAX_OUT_ENTRIES_PER_RUN`] entries. Stops watching when dropped.
pub(crate) struct QuotaWatch {
    task: tokio::task::JoinHandle<()>,
    breached: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl QuotaWatch {
    pub(crate) fn start(
        dir: std::path::PathBuf,
        max_bytes: u64,
        cancel: tokio_util::sync::CancellationToken,
    ) -> QuotaWatch {
        use std::sync::atomic::Ordering;
        let breached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = breached.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(QUOTA_CHECK).await;
                let dir = dir.clone();
                let over = tokio::task::spawn_blocking(move || {
                    let tree = walk(&dir, 0, MAX_OUT_ENTRIES_PER_RUN);
                    tree.bytes > max_bytes || tree.entries > MAX_OUT_ENTRIES_PER_RUN
                })
                .await
                .unwrap_or(false);
                if over {
                    flag.store(true, Ordering::Release);
                    cancel.cancel();
                    return;
                }
            }
        });
        QuotaWatch { task, breached }
    }

    /// Whether the run went past its quota (and was cancelled for it).
    pub(crate) fn breached(&self) -> bool {
        self.breached.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for QuotaWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_one_plain_component_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "/etc/passwd",
            "../x",
            "a\\b",
            "a\0b",
            "a\nb",
        ] {
            assert!(component(bad).is_err(), "{bad:?}");
        }
        assert!(component("input.txt").is_ok());
        assert!(component(&"x".repeat(256)).is_err());
    }

    #[test]
    fn links_planted_in_an_output_directory_are_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"node key").unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("real.txt"), b"hi").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), out.path().join("leak")).unwrap();
        std::os::unix::fs::symlink(outside.path(), out.path().join("dir")).unwrap();
        let tree = walk(out.path(), 100, 100);
        let names: Vec<&str> = tree.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(names, vec!["real.txt"]);
        assert!(open_file(out.path(), "leak").is_err());
        assert!(open_file(out.path(), "dir/secret").is_err());
        assert!(open_file(out.path(), "real.txt").is_ok());
        // Creating over a planted link fails rather than writing through it.
        assert!(create_new(out.path(), "leak").is_err());
        assert!(create_new(out.path(), "../escape").is_err());
        assert_eq!(
            std::fs::read(outside.path().join("secret")).unwrap(),
            b"node key"
        );
    }
}
