//! Errors of the metering crate.

/// Why a meter or receipt-store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeteringError {
    /// The node's database failed.
    #[error("metering database: {0}")]
    Db(#[from] xnode_db::DbError),
    /// A stored record could not be encoded or decoded.
    #[error("metering record: {0}")]
    Wire(#[from] xnode_wire::WireError),
    /// A counter would pass `u64::MAX`; the increment is refused rather than wrapped.
    #[error("counter for resource {resource} would overflow")]
    Overflow {
        /// The resource's code.
        resource: u8,
    },
}
