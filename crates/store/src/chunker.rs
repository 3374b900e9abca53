//! Chunking parameters: how large the pieces of an object are.
//!
//! Objects are cut into fixed-size plaintext chunks (the last one may be shorter), each
//! sealed and stored under the BLAKE3 hash of its ciphertext.

/// The chunk size new objects are written with: 1 MiB balances per-chunk overhead (index
/// entries, manifest size, RPC round trips) against memory per in-flight chunk.
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;

/// The largest chunk size a manifest may declare. It bounds the memory one chunk can make a
/// node allocate, whoever wrote the manifest.
pub const MAX_CHUNK_SIZE: u32 = 8 * 1024 * 1024;
