//! Domain types of the core: commands, events, genesis and parameters.
//!
//! These are the types the state machine works on. The protobuf messages of
//! `blyan-schemas` are converted to and from them by hand in [`crate::codec`]; the
//! one exception is [`PluginKind`], defined in `blyan-schemas` (so that the plugin
//! host shares it) and re-exported here.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;

/// A 32-byte blake3 hash.
pub type Hash = [u8; 32];

/// Bounds on command fields. Each is checked in `decide`; a command past one is
/// rejected and changes nothing.
pub mod limits {
    pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 64;
    pub const GPU_MODEL_CHARS_MAX: usize = 128;
    pub const ENDPOINT_CHARS_MAX: usize = 256;
    pub const EXPERTS_PER_NODE_MAX: usize = 4096;
    pub const CHAIN_TX_ID_CHARS_MAX: usize = 128;
    pub const BURNER_CHARS_MAX: usize = 128;
    pub const NETWORK_ID_CHARS_MAX: usize = 64;
    pub const GOVERNANCE_KEYS_MAX: usize = 64;
    /// Largest plugin module. The API's body limit is this plus room for the envelope.
    pub const PLUGIN_BYTES_MAX: usize = 4 << 20;
    pub const REWARD_SHARE_BPS_MAX: u32 = 10_000;
    /// A score fits 2^40, so the scores of a million nodes sum below 2^64, as the
    /// reward plugin's input requires.
    pub const MAX_SCORE_MAX: u64 = 1 << 40;
    /// Most registered nodes: the bound `MAX_SCORE_MAX` assumes (2^20, about a
    /// million), enforced where nodes are admitted.
    pub const NODES_MAX: usize = 1 << 20;
    /// Proposals one governance key may have pending at once (not activated, their
    /// activation round not yet open).
    pub const PENDING_PROPOSALS_PER_KEY_MAX: usize = 4;
    /// Items of one dataset pool.
    pub const POOL_ITEMS_MAX: usize = 1 << 16;
    pub const POOL_NAME_CHARS_MAX: usize = 128;
    /// Admitted validators at once.
    pub const VALIDATORS_MAX: usize = 4096;
    /// Largest delta blob a round may accept (`Parameters::delta_bytes_max`).
    pub const DELTA_BYTES_MAX: u64 = 1 << 30;
    /// Widest layer of a genesis model (inputs, hidden or outputs).
    pub const MODEL_WIDTH_MAX: u32 = 4096;
}

/// Held-out losses travel in the log as billionths of a mean squared error.
pub const LOSS_SCALE: f64 = 1e9;

/// A command as the signer sent it, after its signature was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCommand {
    /// The encoded `Command`, exactly as signed.
    pub body: Vec<u8>,
    pub signer: PublicKey,
    pub signature: [u8; 64],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub idempotency_key: Vec<u8>,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    RegisterNode(Capabilities),
    /// Alive in liveness window `window`, the one open now.
    Heartbeat {
        window: u64,
    },
    RecordBurn(Burn),
    ProposePlugin(PluginProposal),
    ProposeParameters {
        parameters: Parameters,
        activation_round: u64,
    },
    ApproveProposal {
        proposal_id: u64,
        /// The content hash of the proposal approved
        /// ([`crate::core::governance::Proposal::content_hash`]). `None` only in
        /// approvals logged before approvals named it: they decode and replay as they
        /// were decided, and the API refuses a new one without it.
        proposal_hash: Option<Hash>,
    },
    /// A curator registers a dataset pool.
    RegisterPool(PoolSpec),
    /// A node of a round commits to its delta:
    /// [`crate::core::rounds::commitment`] of the round, the node, the delta hash and a
    /// salt.
    CommitDelta {
        round: u64,
        commitment: Hash,
    },
    /// A node reveals the delta it committed to; the delta is a blob already uploaded.
    RevealDelta(Reveal),
    /// A validator of a round's committee submits one measurement per delta it was
    /// assigned, in the order of its assignment.
    SubmitMeasurements {
        round: u64,
        values: Vec<i64>,
    },
    /// A governance key proposes admitting (or removing) a validator key.
    ProposeValidator {
        validator: PublicKey,
        admit: bool,
        activation_round: u64,
    },
}

/// A dataset pool: checksummed items, each a blob, some held out for measurement.
/// An item's id is its index in `items`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub name: String,
    pub items: Vec<PoolItem>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolItem {
    pub bytes: u64,
    /// The blake3 hash of the item's bytes; the blob's name.
    #[serde(with = "hex_array")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub checksum: Hash,
    /// Held-out items are never assigned for training; validators measure on them.
    pub held_out: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reveal {
    pub round: u64,
    #[serde(with = "hex_array")]
    pub delta_hash: Hash,
    #[serde(with = "hex_array")]
    pub salt: Hash,
    /// The delta blob's size, which the API checks against the stored blob.
    pub delta_bytes: u64,
}

pub use blyan_schemas::PluginKind;

/// A plugin module, named by the blake3 hash of its bytes.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginModule {
    pub kind: PluginKind,
    #[serde(with = "hex_array")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub hash: Hash,
    /// Shared by the events that carry them; the state keeps only the hash.
    #[serde(skip)]
    pub wasm: Arc<[u8]>,
}

impl PluginModule {
    pub fn new(kind: PluginKind, wasm: impl Into<Arc<[u8]>>) -> PluginModule {
        let wasm = wasm.into();
        PluginModule {
            kind,
            hash: *blake3::hash(&wasm).as_bytes(),
            wasm,
        }
    }
}

impl std::fmt::Debug for PluginModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginModule")
            .field("kind", &self.kind)
            .field("hash", &hex::encode(self.hash))
            .field("bytes", &self.wasm.len())
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginProposal {
    pub kind: PluginKind,
    pub wasm: Arc<[u8]>,
    pub activation_round: u64,
}
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capabilities {
    pub gpu_model: String,
    pub vram_mib: u32,
    pub experts: Vec<u32>,
    pub endpoint: String,
}

/// A burn as the oracle saw it on the token chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Burn {
    pub chain_tx_id: String,
    pub burner: String,
    /// Base units.
    #[serde(with = "u128_string")]
    pub amount: u128,
}

/// The default threshold as JSON writes it: a decimal string.
#[cfg(feature = "openapi")]
fn default_burn_threshold() -> String {
    Parameters::default().round_burn_threshold.to_string()
}

/// Missing fields of a genesis file take their defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Parameters {
    pub heartbeat_timeout_ms: u64,
    #[serde(with = "u128_string")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, default = default_burn_threshold)
    )]
    pub round_burn_threshold: u128,
    pub checkpoint_interval_events: u64,
    pub validator_quorum: u32,
    pub commit_deadline_ms: u64,
    pub reveal_deadline_ms: u64,
    pub reward_share_bps: u32,
    pub max_score: u64,
    /// Experts the model has; a node may claim only experts `0..model_experts`.
    pub model_experts: u32,
    /// Shortest liveness window, in log time: the open window closes once this long
    /// has passed since the last close and it holds a heartbeat.
    pub liveness_window_ms: u64,
    /// Eligible nodes a round needs to open.
    pub nodes_per_round_min: u32,
    /// Validators a round draws for its committee (N).
    pub validators_per_round: u32,
    /// Validators of the committee that measure each delta (K). `validator_quorum`
    /// (M <= K) of them must measure it for it to score.
    pub validators_per_delta: u32,
    /// A round aborts when fewer deltas than this reach their quorum.
    pub scored_deltas_min: u32,
    /// The validators' share of a round's pool, in basis points.
    pub validator_reward_bps: u32,
    /// How long the committee has to measure once reveals close, in log time.
    pub validate_deadline_ms: u64,
    /// Largest delta blob a round accepts.
    pub delta_bytes_max: u64,
}

impl Default for Parameters {
    fn default() -> Parameters {
        Parameters {
            heartbeat_timeout_ms: 60_000,
            round_burn_threshold: 1_000_000_000_000_000_000_000,
            checkpoint_interval_events: 10_000,
            validator_quorum: 3,
            commit_deadline_ms: 600_000,
            reveal_deadline_ms: 300_000,
            reward_share_bps: 8_000,
            max_score: 1_000_000_000,
            model_experts: 4,
            liveness_window_ms: 10_000,
            nodes_per_round_min: 3,
            validators_per_round: 16,
            validators_per_delta: 5,
            scored_deltas_min: 1,
            validator_reward_bps: 1_000,
            validate_deadline_ms: 300_000,
            delta_bytes_max: 64 << 20,
        }
    }
}

impl Parameters {
    /// Every rule a parameter set must keep, whether in a genesis or a proposal.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let nonzero = [
            ("heartbeat_timeout_ms", self.heartbeat_timeout_ms),
            (
                "checkpoint_interval_events",
                self.checkpoint_interval_events,
            ),
            ("validator_quorum", u64::from(self.validator_quorum)),
            ("commit_deadline_ms", self.commit_deadline_ms),
            ("reveal_deadline_ms", self.reveal_deadline_ms),
            ("reward_share_bps", u64::from(self.reward_share_bps)),
            ("max_score", self.max_score),
            ("model_experts", u64::from(self.model_experts)),
            ("nodes_per_round_min", u64::from(self.nodes_per_round_min)),
            ("validators_per_round", u64::from(self.validators_per_round)),
            ("validators_per_delta", u64::from(self.validators_per_delta)),
            ("scored_deltas_min", u64::from(self.scored_deltas_min)),
            ("validate_deadline_ms", self.validate_deadline_ms),
            ("delta_bytes_max", self.delta_bytes_max),
        ];
        for (field, value) in nonzero {
            if value == 0 {
                return Err((field, "must be non-zero".into()));
            }
        }
        if self.round_burn_threshold == 0 {
            return Err(("round_burn_threshold", "must be non-zero".into()));
        }
        if self.reward_share_bps > limits::REWARD_SHARE_BPS_MAX {
            return Err((
                "reward_share_bps",
                format!("must be at most {}", limits::REWARD_SHARE_BPS_MAX),
            ));
        }
        if self.validator_reward_bps > limits::REWARD_SHARE_BPS_MAX {
            return Err((
                "validator_reward_bps",
                format!("must be at most {}", limits::REWARD_SHARE_BPS_MAX),
            ));
        }
        if self.validator_quorum > self.validators_per_delta {
            return Err((
                "validator_quorum",
                "must be at most validators_per_delta".into(),
            ));
        }
        if self.validators_per_delta > self.validators_per_round {
            return Err((
                "validators_per_delta",
                "must be at most validators_per_round".into(),
            ));
        }
        if self.validators_per_round as usize > limits::VALIDATORS_MAX {
            return Err((
                "validators_per_round",
                format!("must be at most {}", limits::VALIDATORS_MAX),
            ));
        }
        if self.delta_bytes_max > limits::DELTA_BYTES_MAX {
            return Err((
                "delta_bytes_max",
                format!("must be at most {}", limits::DELTA_BYTES_MAX),
            ));
        }
        if self.model_experts as usize > limits::EXPERTS_PER_NODE_MAX {
            return Err((
                "model_experts",
                format!("must be at most {}", limits::EXPERTS_PER_NODE_MAX),
            ));
        }
        if self.liveness_window_ms >= self.heartbeat_timeout_ms {
            return Err((
                "liveness_window_ms",
                "must be shorter than heartbeat_timeout_ms".into(),
            ));
        }
        if self.max_score > limits::MAX_SCORE_MAX {
            return Err((
                "max_score",
                format!("must be at most {}", limits::MAX_SCORE_MAX),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Genesis {
    pub network_id: String,
    pub operator_key: PublicKey,
    pub burn_oracle_key: PublicKey,
    pub governance_keys: Vec<PublicKey>,
    pub governance_threshold: u32,
    /// Keys that may register dataset pools.
    #[serde(default)]
    pub curator_keys: Vec<PublicKey>,
    pub parameters: Parameters,
    /// One plugin per kind, in force from round 1. Not read from a genesis file: the
    /// server fills in the plugins embedded in its binary. Shown by kind and hash.
    #[serde(default, deserialize_with = "ignored")]
    pub plugins: Vec<PluginModule>,
    /// The model the network trains. `None` only in logs written before the
    /// parameter chain existed: their rounds train nothing the ledger records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
}

/// A Mixture-of-Experts block: a router over `experts` MLPs of `inputs → hidden →
/// outputs`, initialised from `seed`, and version 0 of its weights. The weights are
/// blobs: the router's (`shared_hash`), which rounds never change, and each expert's.
/// A genesis file names the sizes and the seed; the server fills in the hashes of the
/// weights it initialises.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelSpec {
    pub inputs: u32,
    pub hidden: u32,
    pub outputs: u32,
    pub experts: u32,
    pub seed: u64,
    #[serde(
        serialize_with = "hex_array::serialize",
        default,
        deserialize_with = "ignored"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub shared_hash: Hash,
    #[serde(
        serialize_with = "hex_vec::serialize",
        default,
        deserialize_with = "ignored"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub expert_hashes: Vec<Hash>,
}

impl ModelSpec {
    /// The default size: 8 → 16 → 4, four experts, 884 parameters.
    pub fn default_size(seed: u64) -> ModelSpec {
        ModelSpec {
            inputs: 8,
            hidden: 16,
            outputs: 4,
            experts: 4,
            seed,
            shared_hash: [0; 32],
            expert_hashes: Vec::new(),
        }
    }
}

/// The next version of an expert: the score-weighted merge of a finalized round's
/// accepted deltas into the version the round trained from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExpertUpdate {
    pub round: u64,
    pub expert: u32,
    pub version: u32,
    #[serde(with = "hex_array")]
    pub parent_hash: Hash,
    /// The new weights' blake3 hash; the weights are a blob.
    #[serde(with = "hex_array")]
    pub weights_hash: Hash,
    pub weights_bytes: u64,
    /// The accepted deltas merged, in delta order; an accepted delta that does not
    /// decode or fit the expert is left out.
    #[serde(with = "hex_vec")]
    pub merged: Vec<Hash>,
    /// Mean squared error on the pool's held-out items, in [`LOSS_SCALE`] units, of
    /// the model the round trained from and of the model with this version.
    pub parent_held_out_loss: u64,
    pub held_out_loss: u64,
}

/// Everything that can happen. Named in the past tense; each variant is one versioned
/// protobuf message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Boxed: the genesis is by far the largest event and appears once, while every
    /// other event is moved through decode and apply by value.
    GenesisCreated(Box<Genesis>),
    NodeRegistered {
        node: PublicKey,
        capabilities: Capabilities,
        time_ms: u64,
    },
    /// One node's heartbeat, one event each, in logs written before liveness windows.
    /// No server decides it any more; it still applies as it did.
    HeartbeatRecorded {
        node: PublicKey,
        time_ms: u64,
    },
    BurnRecorded {
        burn: Burn,
        time_ms: u64,
    },
    CheckpointCreated(Checkpoint),
    PluginProposed {
        proposal_id: u64,
        proposer: PublicKey,
        module: PluginModule,
        activation_round: u64,
    },
    ParametersProposed {
        proposal_id: u64,
        proposer: PublicKey,
        parameters: Parameters,
        activation_round: u64,
    },
    ProposalApproved {
        proposal_id: u64,
        approver: PublicKey,
        approvals: u32,
    },
    PluginActivated {
        proposal_id: u64,
        kind: PluginKind,
        #[serde(with = "hex_array")]
        hash: Hash,
        activation_round: u64,
    },
    ParametersActivated {
        proposal_id: u64,
        parameters: Parameters,
        activation_round: u64,
    },
    RoundOpened(RoundPins),
    PluginFallback(PluginFallback),
    PoolRegistered {
        pool_id: u64,
        curator: PublicKey,
        pool: PoolSpec,
        /// [`crate::core::pools::items_root`] of the items.
        #[serde(with = "hex_array")]
        merkle_root: Hash,
    },
    ValidatorProposed {
        proposal_id: u64,
        proposer: PublicKey,
        validator: PublicKey,
        admit: bool,
        activation_round: u64,
    },
    /// A validator proposal reached its threshold: the key is admitted (or removed)
    /// from this event on.
    ValidatorChanged {
        proposal_id: u64,
        validator: PublicKey,
        admit: bool,
    },
    /// The sharding plugin's checked output: the round's training items, node by node.
    /// The commit phase runs until `deadline_ms`.
    AssignmentsMade {
        round: u64,
        shards: Vec<Shard>,
        #[serde(with = "hex_array")]
        merkle_root: Hash,
        deadline_ms: u64,
    },
    DeltaCommitted {
        round: u64,
        node: PublicKey,
        #[serde(with = "hex_array")]
        commitment: Hash,
    },
    DeltaRevealed {
        node: PublicKey,
        reveal: Reveal,
    },
    /// A phase closed, early (everyone acted) or at its deadline, and `phase` began.
    PhaseStarted {
        round: u64,
        phase: Phase,
        /// When `phase` closes; 0 for a phase that waits on a policy call.
        deadline_ms: u64,
    },
    MeasurementsSubmitted {
        round: u64,
        validator: PublicKey,
        values: Vec<i64>,
    },
    /// The scoring plugin's checked output: one score per revealed delta, in delta
    /// order.
    ScoresRecorded {
        round: u64,
        scores: Vec<u64>,
        #[serde(with = "hex_array")]
        merkle_root: Hash,
    },
    RoundFinalized(RoundOutcome),
    /// A round short of nodes, commits, reveals or measurements: its pool carries over.
    RoundAborted {
        round: u64,
        reason: String,
        #[serde(with = "u128_string")]
        carried: u128,
    },
    ExpertUpdated(ExpertUpdate),
    LivenessWindowClosed(LivenessWindow),
}

/// A closed liveness window: who heartbeated in it, and where their signed heartbeats
/// are ([`crate::liveness`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LivenessWindow {
    /// Numbered from 0; each closes once, in order.
    pub window: u64,
    /// Log time of the close: a node in `live` counts as seen then.
    pub closed_ms: u64,
    /// Bit i (byte i / 8, bit i % 8, least significant first) is the node registered
    /// i-th. No trailing zero byte; at least one bit is set.
    #[serde(with = "hex_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub live: Vec<u8>,
    /// RFC 6962 Merkle root over blake3 of each signed heartbeat, in registry order.
    #[serde(with = "hex_array")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub heartbeats_root: Hash,
    /// blake3 of the blob that holds those heartbeats.
    #[serde(with = "hex_array")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub blob: Hash,
}

impl Event {
    /// The event's type, as its JSON form's `type` field names it.
    pub fn name(&self) -> &'static str {
        match self {
            Event::GenesisCreated(_) => "genesis_created",
            Event::NodeRegistered { .. } => "node_registered",
            Event::HeartbeatRecorded { .. } => "heartbeat_recorded",
            Event::BurnRecorded { .. } => "burn_recorded",
            Event::CheckpointCreated(_) => "checkpoint_created",
            Event::PluginProposed { .. } => "plugin_proposed",
            Event::ParametersProposed { .. } => "parameters_proposed",
            Event::ProposalApproved { .. } => "proposal_approved",
            Event::PluginActivated { .. } => "plugin_activated",
            Event::ParametersActivated { .. } => "parameters_activated",
            Event::RoundOpened(_) => "round_opened",
            Event::PluginFallback(_) => "plugin_fallback",
            Event::PoolRegistered { .. } => "pool_registered",
            Event::ValidatorProposed { .. } => "validator_proposed",
            Event::ValidatorChanged { .. } => "validator_changed",
            Event::AssignmentsMade { .. } => "assignments_made",
            Event::DeltaCommitted { .. } => "delta_committed",
            Event::DeltaRevealed { .. } => "delta_revealed",
            Event::PhaseStarted { .. } => "phase_started",
            Event::MeasurementsSubmitted { .. } => "measurements_submitted",
            Event::ScoresRecorded { .. } => "scores_recorded",
            Event::RoundFinalized(_) => "round_finalized",
            Event::RoundAborted { .. } => "round_aborted",
            Event::ExpertUpdated(_) => "expert_updated",
            Event::LivenessWindowClosed(_) => "liveness_window_closed",
        }
    }

    /// The plugin modules this event stores. The log is where module bytes live: the
    /// state keeps only each module's hash and the seq of the event that stores it.
    pub fn modules(&self) -> &[PluginModule] {
        match self {
            Event::GenesisCreated(genesis) => &genesis.plugins,
            Event::PluginProposed { module, .. } => std::slice::from_ref(module),
            Event::PluginFallback(fallback) => fallback.used_module.as_slice(),
            Event::NodeRegistered { .. }
            | Event::HeartbeatRecorded { .. }
            | Event::BurnRecorded { .. }
            | Event::CheckpointCreated(_)
            | Event::ParametersProposed { .. }
            | Event::ProposalApproved { .. }
            | Event::PluginActivated { .. }
            | Event::ParametersActivated { .. }
            | Event::RoundOpened(_)
            | Event::PoolRegistered { .. }
            | Event::ValidatorProposed { .. }
            | Event::ValidatorChanged { .. }
            | Event::AssignmentsMade { .. }
            | Event::DeltaCommitted { .. }
            | Event::DeltaRevealed { .. }
            | Event::PhaseStarted { .. }
            | Event::MeasurementsSubmitted { .. }
            | Event::ScoresRecorded { .. }
            | Event::RoundFinalized(_)
            | Event::RoundAborted { .. }
            | Event::ExpertUpdated(_)
            | Event::LivenessWindowClosed(_) => &[],
        }
    }
}

/// The phases of a learning round, in order; a round ends finalized or aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Phase {
    /// Waiting for the sharding plugin.
    Assigning,
    Commit,
    Reveal,
    Validate,
    /// Waiting for the scoring plugin.
    Scoring,
    /// Waiting for the reward plugin.
    Rewarding,
    Finalized,
    Aborted,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Assigning,
        Phase::Commit,
        Phase::Reveal,
        Phase::Validate,
        Phase::Scoring,
        Phase::Rewarding,
        Phase::Finalized,
        Phase::Aborted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Assigning => "assigning",
            Phase::Commit => "commit",
            Phase::Reveal => "reveal",
            Phase::Validate => "validate",
            Phase::Scoring => "scoring",
            Phase::Rewarding => "rewarding",
            Phase::Finalized => "finalized",
            Phase::Aborted => "aborted",
        }
    }

    pub fn is_over(self) -> bool {
        matches!(self, Phase::Finalized | Phase::Aborted)
    }
}

/// Items `[start, start + count)` of the pool's training items go to `node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Shard {
    pub node: PublicKey,
    pub start: u64,
    pub count: u64,
}

/// How a round ended well: who was paid what, and what goes into the next version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundOutcome {
    pub round: u64,
    /// One per revealed delta, in delta order (node key order).
    pub nodes: Vec<Payout>,
    /// One per committee member, in committee order.
    pub validators: Vec<ValidatorOutcome>,
    /// [`crate::core::rounds::payout_leaf`] of every payout, nodes then validators.
    #[serde(with = "hex_array")]
    pub rewards_root: Hash,
    /// The delta hashes with a score above zero, for the expert's next version.
    #[serde(with = "hex_vec")]
    pub accepted: Vec<Hash>,
    /// What was not paid and carries over to the next round.
    #[serde(with = "u128_string")]
    pub carried: u128,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    pub key: PublicKey,
    #[serde(with = "u128_string")]
    pub amount: u128,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorOutcome {
    pub validator: PublicKey,
    /// Measurements of scored deltas whose sign agreed with the final score.
    pub agreed: u32,
    pub disagreed: u32,
    #[serde(with = "u128_string")]
    pub reward: u128,
    /// The validator's reputation after this round.
    pub reputation: u64,
}

/// What a round runs with, fixed when it opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoundPins {
    pub round: u64,
    /// One plugin hash per kind, in kind order.
    pub plugins: Vec<PinnedPlugin>,
    pub parameters: Parameters,
    /// What the round trains and with whom. `None` only in rounds logged before
    /// learning rounds existed, which pinned and trained nothing.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub plan: Option<RoundPlan>,
}

/// A learning round's fixed facts, decided when it opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoundPlan {
    pub expert: u32,
    pub pool_id: u64,
    /// Derived from the log head before the round opened: nobody chooses it.
    #[serde(with = "hex_array")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub seed: Hash,
    /// The eligible nodes when it opened, in ascending key order.
    pub nodes: Vec<PublicKey>,
    /// The validators drawn for it, in draw order.
    pub committee: Vec<PublicKey>,
    /// The burns this round consumed.
    #[serde(with = "u128_string")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub burns: u128,
    /// Its reward pool: the reward share of `burns`, plus what earlier rounds carried.
    #[serde(with = "u128_string")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reward_pool: u128,
    /// The version of every expert when it opened: the model its nodes train from and
    /// its validators measure against. Empty without a model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_versions: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PinnedPlugin {
    pub kind: PluginKind,
    #[serde(with = "hex_array")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub hash: Hash,
}

/// A plugin of a round failed and the round used another one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginFallback {
    pub round: u64,
    pub kind: PluginKind,
    #[serde(with = "hex_array")]
    pub failed_hash: Hash,
    pub reason_code: String,
    pub reason: String,
    #[serde(with = "hex_array")]
    pub used_hash: Hash,
    /// The module that answered, when the log did not hold it yet (an embedded
    /// default newer than the genesis's), so that the log holds every module it ran.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "module_without_bytes"
    )]
    pub used_module: Option<PluginModule>,
}

/// A signed commitment to the first `tree_size` event hashes. Read with no unknown
/// field, as the receipts and proofs that carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Checkpoint {
    pub tree_size: u64,
    #[serde(with = "hex_array")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub merkle_root: Hash,
    #[serde(with = "hex_array")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub signature: [u8; 64],
}

/// An event together with its cause, as stored in a record's body: the log alone says
/// why every event exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEvent {
    pub cause: Cause,
    pub event: Event,
}

/// Why an event exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A signed command, exactly as received.
    Command(SignedCommand),
    /// A decision the server made on its own.
    Server(ServerInput),
    /// A later event of the last command or server input: one cause may decide
    /// several events, and only the first record carries it. A checkpoint may come
    /// between them.
    FollowUp,
}

impl Cause {
    /// The signed command, when the cause is one.
    pub fn command(&self) -> Option<&SignedCommand> {
        match self {
            Cause::Command(command) => Some(command),
            Cause::Server(_) | Cause::FollowUp => None,
        }
    }
}

/// What the server decides on its own, through the same queue and the same pure core
/// as a command. Each carries whatever the server chose, so a replay decides it again
/// from the log alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerInput {
    /// The log's first event. The genesis is the event's own content: the record
    /// stores it once, in the event, and decoding fills it in here.
    Genesis(Box<Genesis>),
    /// A checkpoint, signed by the operator key over the log's Merkle root.
    Checkpoint {
        merkle_root: Hash,
        signature: [u8; 64],
    },
    /// A deadline passed: log time reached `time_ms`.
    Tick { time_ms: u64 },
    /// The next round opens, pinning what is in force at its boundary.
    OpenRound { round: u64 },
    /// A policy call of a round returned, on a worker, through the fallback chain.
    PolicyResult(PolicyResult),
    /// The server merged a finalized round's accepted deltas into the expert's next
    /// version. The update is the event's own content: the record stores it once.
    UpdateExpert(ExpertUpdate),
    /// The server closed the open liveness window with the heartbeats it held for it.
    /// The window is the event's own content: the record stores it once.
    CloseLivenessWindow(LivenessWindow),
}

impl ServerInput {
    /// A stable name, as the API shows it.
    pub fn name(&self) -> &'static str {
        match self {
            ServerInput::Genesis(_) => "genesis",
            ServerInput::Checkpoint { .. } => "checkpoint",
            ServerInput::Tick { .. } => "tick",
            ServerInput::OpenRound { .. } => "open_round",
            ServerInput::PolicyResult(_) => "policy_result",
            ServerInput::UpdateExpert(_) => "expert_update",
            ServerInput::CloseLivenessWindow(_) => "liveness_window",
        }
    }
}

/// The checked output of one policy call, and the failures before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyResult {
    pub round: u64,
    pub kind: PluginKind,
    /// The module that produced `output`.
    pub module_hash: Hash,
    /// The encoded `PolicyOutput`, as the host checked it.
    pub output: Vec<u8>,
    /// Each plugin of the chain that failed before `module_hash`, in order.
    pub failures: Vec<PolicyFailure>,
    /// The module that answered when the log does not hold it yet (an embedded
    /// default newer than the genesis's); the first fallback event stores it.
    pub unstored_module: Option<PluginModule>,
}

/// One plugin of a fallback chain that failed, and the limit or check that ended it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyFailure {
    pub hash: Hash,
    /// A stable code: `plugin_out_of_fuel`, `plugin_deadline`, `plugin_trap`, ...
    pub reason_code: String,
    pub reason: String,
}

/// Reads a module as its serde form writes it, by kind and hash, without its bytes:
/// only a state snapshot reads one back, and `State::restore` takes the bytes from the
/// log.
fn module_without_bytes<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PluginModule>, D::Error> {
    #[derive(Deserialize)]
    struct Named {
        kind: PluginKind,
        #[serde(with = "hex_array")]
        hash: Hash,
    }
    Ok(
        Option::<Named>::deserialize(deserializer)?.map(|named| PluginModule {
            kind: named.kind,
            hash: named.hash,
            wasm: Arc::from(Vec::new()),
        }),
    )
}

/// Reads past a field that a file may not set (the server fills it in), leaving its
/// default. Unlike `skip_deserializing`, the field stays in the API's schema.
fn ignored<'de, D: serde::Deserializer<'de>, T: Default>(deserializer: D) -> Result<T, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer)?;
    Ok(T::default())
}

/// u128 amounts travel as decimal strings in JSON: many JSON readers lose precision
/// past 2^53.
pub mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Hex as this crate writes it: lower case only, so that every value has one spelling
/// (a receipt, say, can't be altered and still read the same).
pub fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    if !text
        .bytes()
        .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err("hex must be lower case 0-9a-f".into());
    }
    hex::decode(text).map_err(|error| error.to_string())
}

/// Lists of hashes travel as lists of hex strings in JSON.
pub mod hex_vec {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::decode_hex;

    pub fn serialize<S: Serializer>(value: &[[u8; 32]], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(value.len()))?;
        for hash in value {
            seq.serialize_element(&hex::encode(hash))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<[u8; 32]>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| {
                let bytes = decode_hex(text).map_err(serde::de::Error::custom)?;
                bytes
                    .try_into()
                    .map_err(|_| serde::de::Error::custom("expected 32 bytes"))
            })
            .collect()
    }
}

/// Optional hashes travel as hex or null in JSON.
pub mod hex_option {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(
        value: &Option<[u8; 32]>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(hash) => serializer.serialize_some(&hex::encode(hash)),
            None => serializer.serialize_none(),
        }
    }
}

/// Optional u128 amounts travel as decimal strings or null in JSON.
pub mod u128_option {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(
        value: &Option<u128>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(amount) => serializer.serialize_some(&amount.to_string()),
            None => serializer.serialize_none(),
        }
    }
}

/// Byte strings travel as hex in JSON.
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::decode_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// Fixed-size byte arrays travel as hex in JSON.
pub mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(
        value: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = super::decode_hex(&text).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom(format!("expected {N} bytes")))
    }
}
