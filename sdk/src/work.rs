//! What a node trains on and a validator measures, and the two traits that do it.
//!
//! They carry no IO, so a trainer or a measurer (the ML crate's, or a test's) depends
//! on the sdk without its client.

use std::sync::Arc;

use crate::crypto::PublicKey;
use crate::model::ModelSpec;

/// What a trainer or a measurer reports when it can't do its work.
pub type WorkError = Box<dyn std::error::Error + Send + Sync>;

/// One checked item of a pool: its bytes hash to its checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: u32,
    pub bytes: Vec<u8>,
}

/// The model a round trains from and measures against: the router's weights and the
/// version of every expert that the round pinned, each blob checked against the hash
/// the log names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseModel {
    /// The sizes and seed; its `shared_hash` is the router's, and it names no expert
    /// hashes (those of this model are in `hashes`).
    pub spec: ModelSpec,
    pub shared: Vec<u8>,
    /// One blob per expert, in expert order.
    pub experts: Vec<Vec<u8>>,
    /// The hashes of `shared` and of every expert's blob, in that order: what tells
    /// two base models apart.
    pub hashes: Vec<crate::model::Hash>,
}

/// A node's work in a round: the round's expert, the model it trains from and its
/// checked training items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Work {
    pub round: u64,
    pub expert: u32,
    pub pool_id: u64,
    /// `None` when the ledger's genesis names no model.
    pub base: Option<Arc<BaseModel>>,
    pub items: Vec<Item>,
}

/// One delta a validator measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub round: u64,
    pub expert: u32,
    /// The model the delta applies to; `None` without a genesis model.
    pub base: Option<Arc<BaseModel>>,
    pub node: PublicKey,
    pub delta: Vec<u8>,
}

/// Produces a node's delta for the round's expert from its items.
pub trait Trainer: Send {
    fn train(&mut self, work: &Work) -> Result<Vec<u8>, WorkError>;
}

/// Measures a delta on the held-out items: the fixed-point improvement it brings,
/// positive when it helps. A delta that can't be used is measured as harmful, so a
/// measurer never fails on a node's bytes.
pub trait Measurer: Send {
    fn measure(&mut self, task: &Task, held_out: &[Item]) -> i64;
}
