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

/// File name of the operator key inside the data dir, when no other is configured.
pub const OPERATOR_KEY_FILE: &str = "operator.key";

/// Loads the node key from `data_dir`, creating it on first start.
pub fn load_or_create_key(data_dir: &Path) -> Result<(SecretKey, bool), NodeError> {
    load_or_create_key_file(&data_dir.join(KEY_FILE))
}

/// Loads the operator key: from `configured` if set (it must exist: a mistyped path must
/// not quietly make a new operator), else from the data dir, creating it on first start.
pub fn load_operator_key(
    data_dir: &Path,
    configured: Option<&Path>,
) -> Result<(SecretKey, bool), NodeError> {
    match configured {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| NodeError::Key {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            Ok((decode_key(&bytes, path)?, false))
        }
        None => load_or_create_key_file(&data_dir.join(OPERATOR_KEY_FILE)),
    }
}

/// Writes `key` to `path` in the key file format, readable only by its owner (for tools
/// and tests that hand one operator key to several nodes).
pub fn write_key_file(path: &Path, key: &SecretKey) -> Result<(), NodeError> {
    let shown = path.display().to_string();
    let bytes = xnode_wire::encode(&KeyFile { seed: key.seed() }).map_err(|e| NodeError::Key {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    write_private(path, &bytes).map_err(|e| NodeError::Key {
        path: shown,
        reason: e.to_string(),
    })
}

fn decode_key(bytes: &[u8], path: &Path) -> Result<SecretKey, NodeError> {
    let shown = path.display().to_string();
    let file: KeyFile = xnode_wire::decode(bytes, 1024).map_err(|e| NodeError::Key {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    SecretKey::from_seed(&file.seed).map_err(|e| NodeError::Key {
        path: shown,
        reason: e.to_string(),
    })
}

fn load_or_create_key_file(path: &Path) -> Result<(SecretKey, bool), NodeError> {
    let path = path.to_path_buf();
    let shown = path.display().to_string();
    match std::fs::read(&path) {
        Ok(bytes) => Ok((decode_key(&bytes, &path)?, false)),
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
    fn operator_key_is_created_in_the_data_dir_or_loaded_from_a_shared_file() {
        let dir = tempfile::tempdir().unwrap();
        let (own, created) = load_operator_key(dir.path(), None).unwrap();
        assert!(created);
        assert!(dir.path().join(OPERATOR_KEY_FILE).is_file());
        let (again, _) = load_operator_key(dir.path(), None).unwrap();
        assert_eq!(own.public(), again.public());

        let shared = dir.path().join("shared-operator.key");
        let key = SecretKey::generate();
        write_key_file(&shared, &key).unwrap();
        let other = tempfile::tempdir().unwrap();
        let (loaded, created) = load_operator_key(other.path(), Some(&shared)).unwrap();
        assert!(!created);
        assert_eq!(loaded.public(), key.public());
        // A configured path that does not exist is an error, not a new operator.
        assert!(load_operator_key(other.path(), Some(&dir.path().join("nope"))).is_err());
    }

    #[test]
    fn corrupt_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), b"garbage").unwrap();
        let err = load_or_create_key(dir.path()).unwrap_err();
        assert!(err.to_string().contains("node.key"), "{err}");
    }
}
