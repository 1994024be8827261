//! The Blyan Ledger protocol as a library.
//!
//! Who uses it: the server (which runs [`core::decide`] and [`core::State::apply`] in its
//! single writer), GPU nodes, validators, the burn oracle and auditors (through
//! [`client`] and the `blyan` CLI).
//!
//! What it promises: the same log gives the same [`core::State`] and the same state
//! root wherever it is replayed, because the server and every client run this exact
//! state machine. Nothing in the core does IO, reads a clock or draws randomness.
//!
//! Architecture invariant: this crate never depends on the server, RocksDB, wasmtime
//! or candle.

pub mod api;
pub mod codec;
pub mod core;
pub mod crypto;
pub mod genesis;
pub mod liveness;
pub mod merkle;
pub mod model;
pub mod receipt;
pub mod record;
pub mod replay;
pub mod work;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod protocol;
