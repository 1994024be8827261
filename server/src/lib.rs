//! `blyan-ledger`: the server that keeps the Blyan event log.
//!
//! Who uses it: operators (through the `blyan-ledger` binary), and the benchmarks and
//! tests of this crate. Clients talk to it over HTTP only.
//!
//! - [`store`]: RocksDB, the log and its derived index.
//! - [`blobs`]: content-addressed blobs, one synced file each.
//! - [`engine`]: the single writer; group commit; fail-stop.
//! - [`api`]: the axum router.
//! - [`listen`]: the accept loop and its connection limits.
//! - [`policy`]: the plugin sandbox as the server uses it: conformance at proposal
//!   time, and the fallback chain of a round's policy calls.
//! - [`projector`]: `blyan-ledger project-postgres`, the PostgreSQL read model.
//! - [`scheduler`]: submits the server inputs learning rounds are owed.
//! - [`serve`]: wiring for `blyan-ledger serve`.

pub mod api;
pub mod blobs;
pub mod conformance;
pub mod demo;
pub mod engine;
pub mod learning;
pub mod listen;
pub mod metrics;
pub mod policy;
pub mod projector;
pub mod scheduler;
pub mod serve;
pub mod snapshot;
pub mod store;
