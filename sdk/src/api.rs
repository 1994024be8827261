//! The JSON bodies of the HTTP API, written by the server and read by the client with
//! these same types, so the two can't drift apart.

use serde::{Deserialize, Serialize};

use crate::core::registry::Node;
use crate::crypto::PublicKey;
use crate::model::{Checkpoint, Genesis};

/// The answer to an accepted command: where its event is in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub seq: u64,
    /// Hex.
    pub event_hash: String,
}

/// `GET /v1/head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub network_id: String,
    /// Number of events in the log; the last one has seq `events - 1`.
    pub events: u64,
    /// Hex.
    pub head_hash: String,
    /// Hex.
    pub state_root: String,
}

/// The JSON error body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    pub code: String,
    pub message: String,
}

/// `GET /v1/state`: a summary of the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSummary {
    pub network_id: String,
    pub events: u64,
    /// Its plugins are listed by kind and hash; their modules are at `/v1/plugins`,
    /// and a client reading this body gets none.
    pub genesis: Option<Genesis>,
    pub nodes: usize,
    pub burns: usize,
    #[serde(with = "crate::model::u128_string")]
    pub burn_total: u128,
    pub checkpoint_last: Option<Checkpoint>,
}

/// `GET /v1/nodes/{pubkey}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub pubkey: PublicKey,
    pub node: Node,
}

/// `GET /healthz` while the writer runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub events: u64,
}

/// `PUT /v1/blobs/{hash}`: the blob is stored and synced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBlob {
    /// Hex.
    pub hash: String,
    pub bytes: u64,
}
