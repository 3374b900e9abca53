//! Core domain types shared by every Xnode subsystem: identities, keys, clocks and resources.
//!
//! This crate performs no I/O. Everything here is plain data plus the pure functions that
//! sign, verify and order it, so every layer above can depend on it.

pub mod hlc;
pub mod identity;
pub mod resources;
pub mod util;

pub use hlc::{Hlc, HlcClock};
pub use identity::{KeyError, NodeId, PublicKeyBytes, SecretKey, SignatureBytes, Signer};
pub use resources::Capacity;
pub use util::{duration_text, lock, read_clone, unix_ms, unix_nanos};

/// The software version every node advertises in its record and API.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod node_record;
pub use node_record::{NodeRecord, NodeStatus};
pub mod operator;
pub use operator::OperatorCert;
pub mod request_auth;
