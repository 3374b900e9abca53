//! Metering and the receipt exchange: the node side of the ledger's cumulative,
//! dual-signed receipts.
//!
//! - [`Meter`] (`meter.rs`): the provider's monotonic counter per (tenant, resource,
//!   epoch), persisted in the node's database so a restart neither resets nor double
//!   counts it. The crate that owns a resource feeds it (storage, compute).
//! - [`EdgeCheck`] (`edge.rs`): the tenant's edge's own observations of the same usage
//!   and the check of a provider's proposal against them, within a [`Tolerance`].
//! - [`RunReport`] (`runs.rs`): the edge's observation of jobs and workers, from their
//!   providers' cumulative reports, bounded by what the tenant signed.
//! - [`ServeGate`] (`gate.rs`): the provider's rule that a tenant whose edge stops
//!   countersigning stops being served after a grace.
//! - [`ReceiptStore`] (`store.rs`): the latest countersigned receipt of every counter, on
//!   the provider and on the edge, listed by epoch.
//! - [`ReceiptRequest`] and [`ReceiptResponse`] (`proto.rs`): the versioned wire messages.
//!
//! Everything here is sans-I/O apart from the database: the node's worker decides when
//! to propose and carries the messages (see `docs/design/metering.md`).

mod edge;
mod error;
mod exchange;
mod gate;
mod meter;
mod proto;
mod runs;
mod store;

pub use edge::{Decision, EdgeCheck, Refusal, Tolerance};
pub use error::MeteringError;
pub use exchange::{
    GRANTS, GrantAcceptError, GrantError, Metering, MeteringConfig, OBSERVED, PROVIDED, RECEIPTS,
    RUNS_SEEN, ReceiptService,
};
pub use gate::ServeGate;
pub use meter::byte_hours;
pub use meter::{CounterKey, Meter};
pub use proto::{MAX_RECEIPT_MESSAGE, ReceiptRequest, ReceiptResponse};
pub use runs::RunReport;
pub use store::{ReceiptStore, StoreReceiptError};

use xnode_ledger::{Epoch, RECEIPT_VERSION, Receipt, ReceiptBody};
use xnode_types::SecretKey;

/// The epoch that `now_ms` falls in, for epochs of `epoch_ms` milliseconds since the Unix
/// epoch (`epoch_ms` of zero is treated as one millisecond, so this never divides by zero).
pub fn epoch_at(now_ms: u64, epoch_ms: u64) -> Epoch {
    Epoch(now_ms / epoch_ms.max(1))
}

/// The provider's half of a receipt for `counter` at `cumulative`, signed with `key`.
pub fn propose(
    network: &str,
    key: &SecretKey,
    counter: CounterKey,
    cumulative: u64,
    seq: u64,
) -> Receipt {
    ReceiptBody {
        v: RECEIPT_VERSION,
        network: network.to_owned(),
        tenant: counter.tenant,
        provider: key.node_id(),
        provider_key: key.public(),
        resource: counter.resource,
        epoch: counter.epoch,
        cumulative,
        seq,
    }
    .sign_as_provider(key)
}
