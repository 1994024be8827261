//! The JSON bodies of the HTTP API, written by the server and read by the client with
//! these same types, so the two can't drift apart.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::core::governance::Subject;
use crate::core::registry::Node;
use crate::crypto::PublicKey;
use crate::model::{Checkpoint, Genesis, Parameters, PluginKind, RoundPins};

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

/// `GET /v1/governance`: proposals, activations, the open round and the parameters in
/// force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovernanceView {
    /// The round open now, with its pins; none before the first.
    pub round: Option<RoundPins>,
    pub parameters: Parameters,
    pub governance_threshold: Option<u32>,
    pub proposals: Vec<ProposalView>,
    /// By plugin kind name.
    pub plugin_activations: BTreeMap<String, Vec<PluginActivationView>>,
    pub parameter_activations: Vec<ParametersActivationView>,
    pub fallbacks: Vec<FallbackView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    Pending,
    Activated,
    /// Its activation round opened without it.
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalView {
    pub id: u64,
    pub status: ProposalStatus,
    pub proposer: PublicKey,
    pub subject: Subject,
    pub activation_round: u64,
    pub approvals: BTreeSet<PublicKey>,
    pub proposed_seq: u64,
    pub activated_seq: Option<u64>,
    /// What an approval of this proposal must name, hex (empty from a server older
    /// than approvals that name it).
    #[serde(default)]
    pub content_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginActivationView {
    pub activation_round: u64,
    pub seq: u64,
    /// Hex.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParametersActivationView {
    pub activation_round: u64,
    pub seq: u64,
    pub parameters: Parameters,
}

/// A `PluginFallback` event at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackView {
    pub seq: u64,
    pub round: u64,
    pub kind: PluginKind,
    /// Hex.
    pub failed_hash: String,
    pub reason_code: String,
    pub reason: String,
    /// Hex.
    pub used_hash: String,
}

/// `GET /v1/plugins`: every stored module, and what each kind's policy call tries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginsView {
    pub plugins: Vec<PluginView>,
    /// By plugin kind name: module hashes (hex), in the order a call tries them.
    pub fallback_chains: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginView {
    /// Hex.
    pub hash: String,
    pub kind: PluginKind,
    pub bytes: usize,
    pub stored_seq: u64,
}
