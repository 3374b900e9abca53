//! The node's persistent identity: its ed25519 key file and its incarnation counter.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use xnode_types::SecretKey;
use xnode_wire::{Versioned, kinds};

use crate::NodeError;

/// File name of the node key inside the data dir.
pub const KEY_FILE: &str = "node.key";

#[derive(Serialize, Deserialize)]
struct KeyFile {
    seed: [u8; 32],
}

impl Versioned for KeyFile {
    const KIND_TAG: u8 = kinds::KEY_FILE;
    const KIND_NAME: &'static str = "node key file";
    const VERSION: u8 = 1;
}

/// Loads the node key from `data_dir`, creating it on first start.
pub fn load_or_create_key(data_dir: &Path) -> Result<(SecretKey, bool), NodeError> {
    let path = data_dir.join(KEY_FILE);
    let shown = path.display().to_string();
    match std::fs::read(&path) {
        Ok(bytes) => {
            let file: KeyFile = xnode_wire::decode(&bytes, 1024).map_err(|e| NodeError::Key {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            let key = SecretKey::from_seed(&file.seed).map_err(|e| NodeError::Key {
                path: shown,
                reason: e.to_string(),
            })?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            let bytes =
                xnode_wire::encode(&KeyFile { seed: key.seed() }).map_err(|e| NodeError::Key {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            write_private(&path, &bytes).map_err(|e| NodeError::Key {
                path: shown,
                reason: e.to_string(),
            })?;
            Ok((key, true))
        }
        Err(e) => Err(NodeError::Key {
            path: shown,
            reason: e.to_string(),
        }),
    }
}

/// Writes a file readable only by its owner, durably, via a temporary file and a rename so
/// a crash never leaves a half-written key.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, created) = load_or_create_key(dir.path()).unwrap();
        assert!(created);
        let (b, created) = load_or_create_key(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(a.node_id(), b.node_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn corrupt_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), b"garbage").unwrap();
        let err = load_or_create_key(dir.path()).unwrap_err();
        assert!(err.to_string().contains("node.key"), "{err}");
    }
}
