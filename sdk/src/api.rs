//! The JSON bodies of the HTTP API, written by the server and read by the client with
//! these same types, so the two can't drift apart.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::core::governance::Subject;
use crate::core::registry::Node;
use crate::crypto::PublicKey;
use crate::model::{
    Checkpoint, Genesis, Parameters, Phase, PluginKind, PoolItem, RoundPins, Shard,
};

/// The answer to an accepted command: where its event is in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Receipt {
    pub seq: u64,
    /// Hex.
    pub event_hash: String,
}

/// `GET /v1/head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Head {
    pub network_id: String,
    /// Number of events in the log; the last one has seq `events - 1`.
    pub events: u64,
    /// Hex.
    pub head_hash: String,
    /// Hex.
    pub state_root: String,
    /// The liveness window open now: the one a heartbeat names.
    pub liveness_window: u64,
}

/// The answer to a heartbeat (202): held for its liveness window, and logged, with the
/// window's others, when it closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatHeld {
    pub window: u64,
}

/// The JSON error body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiErrorBody {
    pub code: String,
    pub message: String,
}

/// `GET /v1/state`: a summary of the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateSummary {
    pub network_id: String,
    pub events: u64,
    /// Its plugins are listed by kind and hash; their modules are at `/v1/plugins`,
    /// and a client reading this body gets none.
    pub genesis: Option<Genesis>,
    pub nodes: usize,
    pub burns: usize,
    #[serde(with = "crate::model::u128_string")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub burn_total: u128,
    pub checkpoint_last: Option<Checkpoint>,
}

/// `GET /v1/nodes/{pubkey}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeView {
    pub pubkey: PublicKey,
    pub node: Node,
    /// Log time the node was last seen: the close of the newest liveness window it
    /// heartbeated in, within `heartbeat_timeout_ms`, or its registration.
    pub last_seen_ms: u64,
}

/// `GET /healthz` while the writer runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    pub events: u64,
}

/// `PUT /v1/blobs/{hash}`: the blob is stored and synced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredBlob {
    /// Hex.
    pub hash: String,
    pub bytes: u64,
}

/// `GET /v1/governance`: proposals, activations, the open round and the parameters in
/// force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ProposalStatus {
    Pending,
    Activated,
    /// Its activation round opened without it.
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginActivationView {
    pub activation_round: u64,
    pub seq: u64,
    /// Hex.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParametersActivationView {
    pub activation_round: u64,
    pub seq: u64,
    pub parameters: Parameters,
}

/// A `PluginFallback` event at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginsView {
    pub plugins: Vec<PluginView>,
    /// By plugin kind name: module hashes (hex), in the order a call tries them.
    pub fallback_chains: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginView {
    /// Hex.
    pub hash: String,
    pub kind: PluginKind,
    pub bytes: usize,
    pub stored_seq: u64,
}

/// A Merkle inclusion proof: leaf `index` of `count`, with rs_merkle's proof hashes
/// (hex); check it with [`crate::merkle::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MerkleProofView {
    pub index: usize,
    pub count: usize,
    pub hashes: Vec<String>,
}

/// `GET /v1/rounds` (a list of these) and the head of `GET /v1/rounds/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoundSummary {
    pub round: u64,
    pub expert: u32,
    pub pool_id: u64,
    pub phase: Phase,
    /// When the phase closes, in log time; 0 while a policy call is awaited or once over.
    pub deadline_ms: u64,
    pub nodes: usize,
    pub committee: Vec<PublicKey>,
    #[serde(with = "crate::model::u128_string")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reward_pool: u128,
    pub commits: u32,
    pub reveals: u32,
    pub submissions: u32,
    pub abort_reason: Option<String>,
}

/// A revealed delta of a round and, once scored, its score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeltaView {
    pub node: PublicKey,
    /// Hex.
    pub delta_hash: String,
    pub delta_bytes: u64,
    pub score: Option<u64>,
}

/// A payout of a finalized round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PayoutView {
    pub key: PublicKey,
    #[serde(with = "crate::model::u128_string")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub amount: u128,
}

/// `GET /v1/rounds/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoundView {
    #[serde(flatten)]
    pub summary: RoundSummary,
    /// Hex.
    pub seed: String,
    /// The plugin of each kind the round pinned.
    pub plugins: Vec<crate::model::PinnedPlugin>,
    /// Hex.
    pub assignments_root: String,
    /// Hex.
    pub scores_root: String,
    pub deltas: Vec<DeltaView>,
    pub node_rewards: Vec<PayoutView>,
    pub validator_rewards: Vec<PayoutView>,
    /// Hex, once finalized.
    pub rewards_root: Option<String>,
    /// What the round carried over to the next one, once over.
    #[serde(with = "crate::model::u128_string")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub carried: u128,
}

/// One item a node or a validator works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemView {
    pub id: u32,
    #[serde(flatten)]
    pub item: PoolItem,
}

/// `GET /v1/rounds/{id}/assignments/{node}`: a node's shard, its items, and the
/// shard's proof against the round's assignments root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssignmentView {
    pub round: u64,
    pub expert: u32,
    pub pool_id: u64,
    pub shard: Shard,
    pub items: Vec<ItemView>,
    /// Hex.
    pub assignments_root: String,
    pub proof: MerkleProofView,
}

/// A delta a validator measures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskView {
    pub node: PublicKey,
    /// Hex: the blob to fetch.
    pub delta_hash: String,
    pub delta_bytes: u64,
}

/// `GET /v1/rounds/{id}/tasks/{validator}`: the deltas a committee member measures,
/// in the order its measurements go, and the held-out items it measures on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TasksView {
    pub round: u64,
    pub expert: u32,
    pub pool_id: u64,
    pub deltas: Vec<TaskView>,
    pub held_out: Vec<ItemView>,
}

/// `GET /v1/pools/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolView {
    pub id: u64,
    pub curator: PublicKey,
    pub name: String,
    /// Hex.
    pub merkle_root: String,
    pub items: Vec<ItemView>,
}

/// `GET /v1/pools/{id}/items/{item}/proof`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemProofView {
    pub pool_id: u64,
    #[serde(flatten)]
    pub item: ItemView,
    /// Hex: the pool's items root.
    pub merkle_root: String,
    /// Hex: the content hash of the item's leaf.
    pub leaf: String,
    pub proof: MerkleProofView,
}

/// `GET /v1/validators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValidatorView {
    pub key: PublicKey,
    pub reputation: u64,
    pub admitted_seq: u64,
}

/// One version of an expert on the parameter chain. Version 0 is the genesis's: it
/// has no parent, round or losses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExpertVersionView {
    pub expert: u32,
    pub version: u32,
    /// Hex: the weights' blake3 hash, a blob.
    pub weights_hash: String,
    /// Hex; `None` for version 0.
    pub parent_hash: Option<String>,
    /// The round whose merge made it, and the seq of its `ExpertUpdated`.
    pub round: Option<u64>,
    pub seq: Option<u64>,
    pub weights_bytes: Option<u64>,
    /// Deltas merged into it.
    pub merged: u32,
    /// Held-out mean squared error in billionths, of the model the round trained
    /// from and of the model with this version.
    pub parent_held_out_loss: Option<u64>,
    pub held_out_loss: Option<u64>,
}

/// `GET /v1/experts` (every expert's newest version) and `GET
/// /v1/rounds/{id}/model` (the versions a round trains from): the model's sizes, the
/// router's weights and one version per expert, in expert order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelView {
    pub inputs: u32,
    pub hidden: u32,
    pub outputs: u32,
    pub experts: u32,
    pub seed: u64,
    /// Hex: the router's weights, a blob that rounds never change.
    pub shared_hash: String,
    pub versions: Vec<ExpertVersionView>,
}
