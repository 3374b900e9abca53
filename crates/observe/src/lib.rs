//! The Open Observability Protocol: what every node measures, the compact summaries it
//! shares, and the network-wide view every node builds from them.
//!
//! - [`Recorder`] accumulates this node's measurements per *scope* (`node`, `storage`,
//!   `bucket:<name>`, later `deployment:<name>`): requests, errors by class, latency as a
//!   mergeable [`Histogram`], bytes in and out, and distinct active tenants.
//! - [`NodeSummary`] is a versioned snapshot of those *cumulative* counters plus system and
//!   peer figures. Nodes gossip one every few seconds. Because counters are cumulative, a
//!   lost or late summary loses nothing: the next one carries it.
//! - [`NetworkView`] turns the summaries of every node into per-node 10-second slots and
//!   answers sliding windows (1 min, 5 min, 1 h) over them. A dead node's past slots stay
//!   in window totals until they age out; live views leave it out.
//!
//! This crate does no I/O: the node feeds it and publishes its output.

pub mod aggregate;
mod histogram;
mod recorder;
mod summary;
mod view;

pub use histogram::Histogram;
pub use recorder::{MAX_SCOPE_NAME, MAX_SCOPES, Outcome, Recorder};
pub use summary::{
    FiguresRequest, MAX_PEER_RTTS, MAX_SUMMARY_BYTES, NodeFigures, NodeSummary, PeerCounts,
    PeerRtt, ScopeStats, SystemStats,
};
pub use view::{
    Ingested, MAX_SERIES, MAX_SUMMARY_SKEW_MS, NetworkView, NodeLive, SLOT_MS, WINDOWS,
    WindowTotals,
};
