//! Governance: plugin and parameter proposals, M-of-N approvals, activations at round
//! boundaries, and the pins of the round open now.
//!
//! Rules, all enforced in `decide`:
//! - only governance keys propose and approve; a proposal counts as its proposer's
//!   approval, and one key approves a proposal at most once;
//! - a proposal's `activation_round` must be later than the round open now, both when
//!   it is made and when it is approved (a proposal whose round has opened without it
//!   has expired);
//! - at `governance_threshold` distinct approvals the proposal is activated, in the same
//!   record as the approval that completed it;
//! - when round `r` opens it pins, for each kind, the activated plugin with the highest
//!   `activation_round <= r` (a later activation wins a tie), and likewise for the
//!   parameters; a round already open keeps its pins whatever is activated meanwhile.
//!
//! Every module ever proposed or run stays in the state (and in the log: inside the
//! cause of its `PluginProposed` event, in the genesis for the first plugins, or in
//! the `used_wasm` of a `PluginFallback` for an embedded default newer than the
//! genesis's).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::hashed::{HashedMap, RootHash};
use super::{RejectionClass, RootHasher};
use crate::crypto::PublicKey;
use crate::model::{
    Event, Genesis, Hash, Parameters, PinnedPlugin, PluginFallback, PluginKind, PluginModule,
    PluginProposal, RoundPins, limits,
};

/// Why governance refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GovernanceRejection {
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("the signer is not a governance key")]
    NotGovernance,
    #[error("the plugin module is {size} bytes; at most {max} are allowed")]
    PluginTooLarge { size: usize, max: usize },
    #[error("there is no proposal {0}")]
    ProposalNotFound(u64),
    #[error("proposal {0} is already activated")]
    ProposalAlreadyActivated(u64),
    #[error(
        "proposal {proposal_id} was for round {activation_round}, but round {round} is open: it expired"
    )]
    ProposalExpired {
        proposal_id: u64,
        activation_round: u64,
        round: u64,
    },
    #[error("the signer already approved proposal {0}")]
    AlreadyApproved(u64),
    #[error("the signer has {pending} pending proposals, the most a key may have")]
    TooManyPending { pending: usize },
    #[error("proposal {proposal_id} is not the content approved: its hash is {found}")]
    ProposalHashMismatch { proposal_id: u64, found: String },
}

impl GovernanceRejection {
    pub fn code(&self) -> &'static str {
        match self {
            GovernanceRejection::InvalidField { .. } => "invalid_field",
            GovernanceRejection::NotGovernance => "unauthorized",
            GovernanceRejection::PluginTooLarge { .. } => "plugin_too_large",
            GovernanceRejection::ProposalNotFound(_) => "proposal_not_found",
            GovernanceRejection::ProposalAlreadyActivated(_) => "proposal_already_activated",
            GovernanceRejection::ProposalExpired { .. } => "proposal_expired",
            GovernanceRejection::AlreadyApproved(_) => "already_approved",
            GovernanceRejection::ProposalHashMismatch { .. } => "proposal_hash_mismatch",
            GovernanceRejection::TooManyPending { .. } => "too_many_pending_proposals",
        }
    }

    pub fn class(&self) -> RejectionClass {
        match self {
            GovernanceRejection::InvalidField { .. } => RejectionClass::Invalid,
            GovernanceRejection::NotGovernance => RejectionClass::Forbidden,
            GovernanceRejection::PluginTooLarge { .. } => RejectionClass::TooLarge,
            GovernanceRejection::ProposalNotFound(_) => RejectionClass::NotFound,
            GovernanceRejection::ProposalAlreadyActivated(_)
            | GovernanceRejection::ProposalExpired { .. }
            | GovernanceRejection::AlreadyApproved(_)
            | GovernanceRejection::ProposalHashMismatch { .. }
            | GovernanceRejection::TooManyPending { .. } => RejectionClass::Conflict,
        }
    }
}

/// A stored plugin module: its kind, its size and the event that holds its bytes. The
/// bytes stay in the log ([`crate::model::Event::modules`]), read when a policy runs:
/// a module may be 4 MiB, and the state is held in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPlugin {
    pub kind: PluginKind,
    pub bytes: usize,
    /// Seq of the genesis, of the `PluginProposed` event, or of the `PluginFallback`
    /// event whose round an embedded default answered.
    pub stored_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Subject {
    Plugin {
        kind: PluginKind,
        #[serde(with = "crate::model::hex_array")]
        #[cfg_attr(feature = "openapi", schema(value_type = String))]
        hash: Hash,
    },
    Parameters(Parameters),
    /// Admit (or remove) a validator key; in force once approved.
    Validator {
        validator: PublicKey,
        admit: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub proposer: PublicKey,
    pub subject: Subject,
    pub activation_round: u64,
    pub approvals: BTreeSet<PublicKey>,
    pub proposed_seq: u64,
    /// Seq of the activation event, once the threshold was reached.
    pub activated_seq: Option<u64>,
}

/// An activated plugin or parameter set: what it is, from which round, and the seq
/// that activated it (the genesis for the first ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation<T> {
    pub activation_round: u64,
    pub seq: u64,
    pub value: T,
}

/// The governance part of the state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Governance {
    /// The parameters in force: the genesis ones until a round pins others.
    pub(super) parameters: Parameters,
    pub(super) plugins: HashedMap<Hash, StoredPlugin>,
    pub(super) plugin_activations: BTreeMap<PluginKind, Vec<Activation<Hash>>>,
    pub(super) parameter_activations: Vec<Activation<Parameters>>,
    pub(super) proposals: HashedMap<u64, Proposal>,
    /// The round open now, with its pins.
    pub(super) round: Option<RoundPins>,
    /// Per kind, the distinct plugins successive rounds pinned, oldest first; the
    /// genesis plugin is always first.
    pub(super) pinned_history: BTreeMap<PluginKind, Vec<Hash>>,
    /// Every fallback, by the seq of its event.
    pub(super) fallbacks: HashedMap<u64, PluginFallback>,
}

impl Governance {
    pub fn parameters(&self) -> &Parameters {
        &self.parameters
    }

    pub fn plugins(&self) -> &HashedMap<Hash, StoredPlugin> {
        &self.plugins
    }

    pub fn plugin(&self, hash: &Hash) -> Option<&StoredPlugin> {
        self.plugins.get(hash)
    }

    pub fn proposals(&self) -> &HashedMap<u64, Proposal> {
        &self.proposals
    }

    pub fn plugin_activations(&self) -> &BTreeMap<PluginKind, Vec<Activation<Hash>>> {
        &self.plugin_activations
    }

    pub fn parameter_activations(&self) -> &[Activation<Parameters>] {
        &self.parameter_activations
    }

    pub fn round(&self) -> Option<&RoundPins> {
        self.round.as_ref()
    }

    /// Proposals of `proposer` that can still be approved: not activated, and their
    /// activation round not yet open. A proposal whose round opened has expired and no
    /// longer counts.
    pub fn pending_proposals(&self, proposer: &PublicKey) -> usize {
        let round = self.round_number();
        self.proposals
            .iter()
            .filter(|(_, proposal)| {
                proposal.proposer == *proposer
                    && proposal.activated_seq.is_none()
                    && proposal.activation_round > round
            })
            .count()
    }

    /// The number of the round open now; 0 before the first.
    pub fn round_number(&self) -> u64 {
        self.round.as_ref().map_or(0, |round| round.round)
    }

    pub fn fallbacks(&self) -> &HashedMap<u64, PluginFallback> {
        &self.fallbacks
    }

    /// The plugins a policy call of the open round tries, in order: the pinned one, the
    /// one pinned before it, and the genesis plugin of that kind (without repeats).
    /// Before the first round, the genesis plugin alone.
    pub fn fallback_chain(&self, kind: PluginKind) -> Vec<Hash> {
        let history = self
            .pinned_history
            .get(&kind)
            .map(Vec::as_slice)
            .unwrap_or_default();
        self.fallback_chain_from(kind, history.last())
    }

    /// The chain of a round that pinned `pinned` of `kind`: that plugin, the one pinned
    /// before it, and the genesis plugin (without repeats). A round that pinned none of
    /// the kind gets the genesis plugin alone.
    pub fn fallback_chain_from(&self, kind: PluginKind, pinned: Option<&Hash>) -> Vec<Hash> {
        let history = self
            .pinned_history
            .get(&kind)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let position = pinned.and_then(|pinned| history.iter().rposition(|hash| hash == pinned));
        let mut chain: Vec<Hash> = Vec::new();
        let candidates = [
            position.map(|i| &history[i]),
            position.and_then(|i| i.checked_sub(1)).map(|i| &history[i]),
            history.first(),
        ];
        for hash in candidates.into_iter().flatten() {
            if !chain.contains(hash) {
                chain.push(*hash);
            }
        }
        chain
    }

    /// What round `round` would pin if it opened now.
    pub fn pins_for(&self, round: u64) -> (Vec<PinnedPlugin>, Parameters) {
        let plugins = PluginKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let activations = self.plugin_activations.get(&kind)?;
                latest(activations, round).map(|hash| PinnedPlugin { kind, hash: *hash })
            })
            .collect();
        let parameters = latest(&self.parameter_activations, round)
            .cloned()
            .unwrap_or_else(|| self.parameters.clone());
        (plugins, parameters)
    }

    pub(super) fn genesis(genesis: &Genesis, seq: u64) -> Governance {
        let mut governance = Governance {
            parameters: genesis.parameters.clone(),
            parameter_activations: vec![Activation {
                activation_round: 1,
                seq,
                value: genesis.parameters.clone(),
            }],
            ..Governance::default()
        };
        for module in &genesis.plugins {
            governance.store(module, seq);
            governance
                .plugin_activations
                .entry(module.kind)
                .or_default()
                .push(Activation {
                    activation_round: 1,
                    seq,
                    value: module.hash,
                });
            governance
                .pinned_history
                .entry(module.kind)
                .or_default()
                .push(module.hash);
        }
        governance
    }

    fn store(&mut self, module: &PluginModule, seq: u64) {
        if !self.plugins.contains_key(&module.hash) {
            self.plugins.insert(
                module.hash,
                StoredPlugin {
                    kind: module.kind,
                    bytes: module.wasm.len(),
                    stored_seq: seq,
                },
            );
        }
    }

    pub(super) fn next_proposal_id(&self) -> u64 {
        self.proposals.last().map_or(1, |(id, _)| id + 1)
    }

    pub(super) fn apply_plugin_proposed(
        &mut self,
        proposal_id: u64,
        proposer: PublicKey,
        module: &PluginModule,
        activation_round: u64,
        seq: u64,
    ) {
        self.store(module, seq);
        self.propose(
            proposal_id,
            proposer,
            Subject::Plugin {
                kind: module.kind,
                hash: module.hash,
            },
            activation_round,
            seq,
        );
    }

    pub(super) fn apply_parameters_proposed(
        &mut self,
        proposal_id: u64,
        proposer: PublicKey,
        parameters: &Parameters,
        activation_round: u64,
        seq: u64,
    ) {
        self.propose(
            proposal_id,
            proposer,
            Subject::Parameters(parameters.clone()),
            activation_round,
            seq,
        );
    }

    pub(super) fn apply_approved(&mut self, proposal_id: u64, approver: PublicKey, approvals: u32) {
        self.update_proposal(proposal_id, |proposal| {
            assert!(proposal.approvals.insert(approver), "approved twice");
            assert_eq!(proposal.approvals.len(), approvals as usize);
        });
    }

    pub(super) fn apply_plugin_activated(
        &mut self,
        proposal_id: u64,
        kind: PluginKind,
        hash: &Hash,
        activation_round: u64,
        seq: u64,
    ) {
        self.activate(proposal_id, seq);
        assert!(
            self.plugins.contains_key(hash),
            "activated an unknown plugin"
        );
        self.plugin_activations
            .entry(kind)
            .or_default()
            .push(Activation {
                activation_round,
                seq,
                value: *hash,
            });
    }

    pub(super) fn apply_parameters_activated(
        &mut self,
        proposal_id: u64,
        parameters: &Parameters,
        activation_round: u64,
        seq: u64,
    ) {
        self.activate(proposal_id, seq);
        self.parameter_activations.push(Activation {
            activation_round,
            seq,
            value: parameters.clone(),
        });
    }

    pub(super) fn apply_round_opened(&mut self, pins: &RoundPins) {
        assert_eq!(pins.round, self.round_number() + 1, "rounds open in order");
        for pinned in &pins.plugins {
            let history = self.pinned_history.entry(pinned.kind).or_default();
            if history.last() != Some(&pinned.hash) {
                history.push(pinned.hash);
            }
        }
        self.parameters = pins.parameters.clone();
        // The plan lives with the round itself; governance keeps the pins.
        self.round = Some(RoundPins {
            plan: None,
            ..pins.clone()
        });
    }

    pub(super) fn apply_validator_proposed(
        &mut self,
        proposal_id: u64,
        proposer: PublicKey,
        validator: PublicKey,
        admit: bool,
        activation_round: u64,
        seq: u64,
    ) {
        self.propose(
            proposal_id,
            proposer,
            Subject::Validator { validator, admit },
            activation_round,
            seq,
        );
    }

    pub(super) fn apply_validator_changed(&mut self, proposal_id: u64, seq: u64) {
        self.activate(proposal_id, seq);
    }

    pub(super) fn apply_fallback(&mut self, fallback: &PluginFallback, seq: u64) {
        if let Some(module) = &fallback.used_module {
            self.store(module, seq);
        }
        self.fallbacks.insert(seq, fallback.clone());
    }

    fn propose(
        &mut self,
        proposal_id: u64,
        proposer: PublicKey,
        subject: Subject,
        activation_round: u64,
        seq: u64,
    ) {
        assert_eq!(
            proposal_id,
            self.next_proposal_id(),
            "proposal ids are dense"
        );
        self.proposals.insert(
            proposal_id,
            Proposal {
                proposer,
                subject,
                activation_round,
                approvals: BTreeSet::new(),
                proposed_seq: seq,
                activated_seq: None,
            },
        );
    }

    fn update_proposal(&mut self, proposal_id: u64, change: impl FnOnce(&mut Proposal)) {
        self.proposals
            .update(&proposal_id, change)
            .expect("the proposal exists");
    }

    fn activate(&mut self, proposal_id: u64, seq: u64) {
        self.update_proposal(proposal_id, |proposal| {
            assert!(proposal.activated_seq.is_none(), "activated twice");
            proposal.activated_seq = Some(seq);
        });
    }

    /// Writes the governance part of the state root: the maps by their lattice hashes,
    /// and the rest, which grows only with activations and rounds' pins, in full.
    pub(super) fn hash_into(&self, hasher: &mut RootHasher) {
        parameters_into(hasher, &self.parameters);
        hasher.bytes(&self.plugins.checksum());
        hasher.u64(self.plugin_activations.len() as u64);
        for (kind, activations) in &self.plugin_activations {
            hasher.u64(*kind as u64);
            hasher.u64(activations.len() as u64);
            for activation in activations {
                hasher.u64(activation.activation_round);
                hasher.u64(activation.seq);
                hasher.bytes(&activation.value);
            }
        }
        hasher.u64(self.parameter_activations.len() as u64);
        for activation in &self.parameter_activations {
            hasher.u64(activation.activation_round);
            hasher.u64(activation.seq);
            parameters_into(hasher, &activation.value);
        }
        hasher.bytes(&self.proposals.checksum());
        match &self.round {
            None => hasher.u64(0),
            Some(round) => {
                hasher.u64(1);
                hasher.u64(round.round);
                hasher.u64(round.plugins.len() as u64);
                for pinned in &round.plugins {
                    hasher.u64(pinned.kind as u64);
                    hasher.bytes(&pinned.hash);
                }
                parameters_into(hasher, &round.parameters);
            }
        }
        hasher.u64(self.pinned_history.len() as u64);
        for (kind, history) in &self.pinned_history {
            hasher.u64(*kind as u64);
            hasher.u64(history.len() as u64);
            for hash in history {
                hasher.bytes(hash);
            }
        }
        hasher.bytes(&self.fallbacks.checksum());
    }
}

impl RootHash for StoredPlugin {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.u64(self.kind as u64);
        hasher.u64(self.stored_seq);
    }
}

/// blake3 key-derivation context of a proposal's content hash.
pub const PROPOSAL_CONTEXT: &str = "blyan-ledger 2026-12 proposal v1";

impl Proposal {
    /// What an approval names: the proposer, the subject and the activation round,
    /// hashed as the state root writes them.
    pub fn content_hash(&self) -> Hash {
        let mut hasher = RootHasher(blake3::Hasher::new_derive_key(PROPOSAL_CONTEXT));
        self.content_into(&mut hasher);
        *hasher.0.finalize().as_bytes()
    }

    fn content_into(&self, hasher: &mut RootHasher) {
        hasher.bytes(&self.proposer.0);
        match &self.subject {
            Subject::Plugin { kind, hash } => {
                hasher.u64(1);
                hasher.u64(*kind as u64);
                hasher.bytes(hash);
            }
            Subject::Parameters(parameters) => {
                hasher.u64(2);
                parameters_into(hasher, parameters);
            }
            Subject::Validator { validator, admit } => {
                hasher.u64(3);
                hasher.bytes(&validator.0);
                hasher.u64(u64::from(*admit));
            }
        }
        hasher.u64(self.activation_round);
    }
}

impl RootHash for Proposal {
    fn hash_into(&self, hasher: &mut RootHasher) {
        self.content_into(hasher);
        hasher.u64(self.approvals.len() as u64);
        for approver in &self.approvals {
            hasher.bytes(&approver.0);
        }
        hasher.u64(self.proposed_seq);
        hasher.u64(self.activated_seq.map_or(0, |seq| seq + 1));
    }
}

impl RootHash for PluginFallback {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.u64(self.round);
        hasher.u64(self.kind as u64);
        hasher.bytes(&self.failed_hash);
        hasher.text(&self.reason_code);
        hasher.text(&self.reason);
        hasher.bytes(&self.used_hash);
    }
}

pub(crate) fn parameters_into(hasher: &mut RootHasher, parameters: &Parameters) {
    hasher.u64(parameters.heartbeat_timeout_ms);
    hasher.u128(parameters.round_burn_threshold);
    hasher.u64(parameters.checkpoint_interval_events);
    hasher.u64(u64::from(parameters.validator_quorum));
    hasher.u64(parameters.commit_deadline_ms);
    hasher.u64(parameters.reveal_deadline_ms);
    hasher.u64(u64::from(parameters.reward_share_bps));
    hasher.u64(parameters.max_score);
    hasher.u64(u64::from(parameters.model_experts));
    hasher.u64(parameters.liveness_window_ms);
    hasher.u64(u64::from(parameters.nodes_per_round_min));
    hasher.u64(u64::from(parameters.validators_per_round));
    hasher.u64(u64::from(parameters.validators_per_delta));
    hasher.u64(u64::from(parameters.scored_deltas_min));
    hasher.u64(u64::from(parameters.validator_reward_bps));
    hasher.u64(parameters.validate_deadline_ms);
    hasher.u64(parameters.delta_bytes_max);
}

/// The value of the activation with the highest `activation_round <= round`; among
/// equals, the one activated last.
fn latest<T>(activations: &[Activation<T>], round: u64) -> Option<&T> {
    activations
        .iter()
        .filter(|activation| activation.activation_round <= round)
        .max_by_key(|activation| (activation.activation_round, activation.seq))
        .map(|activation| &activation.value)
}

fn require_governance(genesis: &Genesis, signer: PublicKey) -> Result<(), GovernanceRejection> {
    if genesis.governance_keys.contains(&signer) {
        Ok(())
    } else {
        Err(GovernanceRejection::NotGovernance)
    }
}

/// A key may keep only a few proposals pending, so that one key below the threshold
/// can't fill the log and the state with modules nobody approves.
fn require_room(governance: &Governance, signer: &PublicKey) -> Result<(), GovernanceRejection> {
    let pending = governance.pending_proposals(signer);
    if pending >= limits::PENDING_PROPOSALS_PER_KEY_MAX {
        return Err(GovernanceRejection::TooManyPending { pending });
    }
    Ok(())
}

fn require_future(
    governance: &Governance,
    activation_round: u64,
) -> Result<(), GovernanceRejection> {
    let round = governance.round_number();
    if activation_round <= round {
        return Err(GovernanceRejection::InvalidField {
            field: "activation_round",
            reason: format!("must be after round {round}, the round open now"),
        });
    }
    Ok(())
}

/// The events of a new proposal: proposed, approved by its proposer, and activated at
/// once when the threshold is 1.
fn proposed(
    genesis: &Genesis,
    proposal_id: u64,
    signer: PublicKey,
    proposed: Event,
    activated: Event,
) -> Vec<Event> {
    let mut events = vec![
        proposed,
        Event::ProposalApproved {
            proposal_id,
            approver: signer,
            approvals: 1,
        },
    ];
    if genesis.governance_threshold <= 1 {
        events.push(activated);
    }
    events
}

pub(crate) fn decide_propose_plugin(
    governance: &Governance,
    genesis: &Genesis,
    signer: PublicKey,
    proposal: &PluginProposal,
) -> Result<Vec<Event>, GovernanceRejection> {
    require_governance(genesis, signer)?;
    require_room(governance, &signer)?;
    let size = proposal.wasm.len();
    if size > limits::PLUGIN_BYTES_MAX {
        return Err(GovernanceRejection::PluginTooLarge {
            size,
            max: limits::PLUGIN_BYTES_MAX,
        });
    }
    if size == 0 {
        return Err(GovernanceRejection::InvalidField {
            field: "wasm",
            reason: "must not be empty".into(),
        });
    }
    require_future(governance, proposal.activation_round)?;
    let proposal_id = governance.next_proposal_id();
    let module = PluginModule::new(proposal.kind, proposal.wasm.clone());
    let activated = Event::PluginActivated {
        proposal_id,
        kind: module.kind,
        hash: module.hash,
        activation_round: proposal.activation_round,
    };
    let event = Event::PluginProposed {
        proposal_id,
        proposer: signer,
        module,
        activation_round: proposal.activation_round,
    };
    Ok(proposed(genesis, proposal_id, signer, event, activated))
}

pub(crate) fn decide_propose_parameters(
    governance: &Governance,
    genesis: &Genesis,
    signer: PublicKey,
    parameters: &Parameters,
    activation_round: u64,
) -> Result<Vec<Event>, GovernanceRejection> {
    require_governance(genesis, signer)?;
    require_room(governance, &signer)?;
    parameters
        .validate()
        .map_err(|(field, reason)| GovernanceRejection::InvalidField { field, reason })?;
    // The model's experts are fixed by its genesis: a round can train only those.
    if let Some(model) = &genesis.model
        && parameters.model_experts != model.experts
    {
        return Err(GovernanceRejection::InvalidField {
            field: "model_experts",
            reason: format!(
                "must stay {}, the experts of the genesis model",
                model.experts
            ),
        });
    }
    require_future(governance, activation_round)?;
    let proposal_id = governance.next_proposal_id();
    let activated = Event::ParametersActivated {
        proposal_id,
        parameters: parameters.clone(),
        activation_round,
    };
    let event = Event::ParametersProposed {
        proposal_id,
        proposer: signer,
        parameters: parameters.clone(),
        activation_round,
    };
    Ok(proposed(genesis, proposal_id, signer, event, activated))
}

pub(crate) fn decide_propose_validator(
    governance: &Governance,
    genesis: &Genesis,
    signer: PublicKey,
    validator: PublicKey,
    admit: bool,
    activation_round: u64,
    admitted: usize,
) -> Result<Vec<Event>, GovernanceRejection> {
    require_governance(genesis, signer)?;
    require_room(governance, &signer)?;
    require_future(governance, activation_round)?;
    if admit && admitted >= limits::VALIDATORS_MAX {
        return Err(GovernanceRejection::InvalidField {
            field: "validator",
            reason: format!("{admitted} validators are admitted, the most there can be"),
        });
    }
    let proposal_id = governance.next_proposal_id();
    let activated = Event::ValidatorChanged {
        proposal_id,
        validator,
        admit,
    };
    let event = Event::ValidatorProposed {
        proposal_id,
        proposer: signer,
        validator,
        admit,
        activation_round,
    };
    Ok(proposed(genesis, proposal_id, signer, event, activated))
}

pub(crate) fn decide_approve(
    governance: &Governance,
    genesis: &Genesis,
    signer: PublicKey,
    proposal_id: u64,
    proposal_hash: Option<&Hash>,
) -> Result<Vec<Event>, GovernanceRejection> {
    require_governance(genesis, signer)?;
    let proposal = governance
        .proposals
        .get(&proposal_id)
        .ok_or(GovernanceRejection::ProposalNotFound(proposal_id))?;
    let found = proposal.content_hash();
    if proposal_hash.is_some_and(|named| named != &found) {
        return Err(GovernanceRejection::ProposalHashMismatch {
            proposal_id,
            found: hex::encode(found),
        });
    }
    if proposal.activated_seq.is_some() {
        return Err(GovernanceRejection::ProposalAlreadyActivated(proposal_id));
    }
    let round = governance.round_number();
    if proposal.activation_round <= round {
        return Err(GovernanceRejection::ProposalExpired {
            proposal_id,
            activation_round: proposal.activation_round,
            round,
        });
    }
    if proposal.approvals.contains(&signer) {
        return Err(GovernanceRejection::AlreadyApproved(proposal_id));
    }
    let approvals = proposal.approvals.len() as u32 + 1;
    let mut events = vec![Event::ProposalApproved {
        proposal_id,
        approver: signer,
        approvals,
    }];
    if approvals >= genesis.governance_threshold {
        events.push(match &proposal.subject {
            Subject::Plugin { kind, hash } => Event::PluginActivated {
                proposal_id,
                kind: *kind,
                hash: *hash,
                activation_round: proposal.activation_round,
            },
            Subject::Parameters(parameters) => Event::ParametersActivated {
                proposal_id,
                parameters: parameters.clone(),
                activation_round: proposal.activation_round,
            },
            Subject::Validator { validator, admit } => Event::ValidatorChanged {
                proposal_id,
                validator: *validator,
                admit: *admit,
            },
        });
    }
    Ok(events)
}

/// The event that opens the next round, pinning what is in force at its boundary. The
/// round lifecycle calls this; it is pure, like `decide`.
pub fn open_round(governance: &Governance) -> Event {
    let round = governance.round_number() + 1;
    let (plugins, parameters) = governance.pins_for(round);
    Event::RoundOpened(RoundPins {
        round,
        plugins,
        parameters,
        plan: None,
    })
}

#[cfg(test)]
mod tests {
    //! Given events, when a command (or a round opens), then events or a rejection.

    use super::*;
    use crate::core::tests::{given, when};
    use crate::core::{Rejection, State};
    use crate::crypto::Keypair;
    use crate::model::Action;

    fn governor(i: u8) -> Keypair {
        Keypair::from_secret([10 + i; 32])
    }

    fn module(kind: PluginKind, tag: u8) -> PluginModule {
        PluginModule::new(kind, vec![0, b'a', b's', b'm', tag])
    }

    fn genesis(threshold: u32) -> Event {
        Event::GenesisCreated(Box::new(Genesis {
            network_id: "test-net".into(),
            operator_key: Keypair::from_secret([1; 32]).public(),
            burn_oracle_key: Keypair::from_secret([2; 32]).public(),
            governance_keys: (1..=3).map(|i| governor(i).public()).collect(),
            governance_threshold: threshold,
            curator_keys: Vec::new(),
            parameters: Parameters::default(),
            plugins: PluginKind::ALL
                .into_iter()
                .map(|kind| module(kind, 0))
                .collect(),
            model: None,
        }))
    }

    fn propose(kind: PluginKind, tag: u8, activation_round: u64) -> Action {
        Action::ProposePlugin(PluginProposal {
            kind,
            wasm: module(kind, tag).wasm,
            activation_round,
        })
    }

    /// An approval of proposal `proposal_id` as `state` holds it (of nothing in
    /// particular if it holds none).
    fn approve(state: &State, proposal_id: u64) -> Action {
        let proposal_hash = state
            .governance()
            .proposals()
            .get(&proposal_id)
            .map_or([0; 32], Proposal::content_hash);
        Action::ApproveProposal {
            proposal_id,
            proposal_hash: Some(proposal_hash),
        }
    }

    #[test]
    fn a_key_keeps_only_a_few_proposals_pending_and_expired_ones_free_room() {
        let mut state = given(&[genesis(2)]);
        for tag in 0..limits::PENDING_PROPOSALS_PER_KEY_MAX as u8 {
            let events = when(&state, &governor(1), propose(PluginKind::Scoring, tag, 1)).unwrap();
            state = then(state, &events);
        }
        let refused = when(&state, &governor(1), propose(PluginKind::Scoring, 99, 1));
        assert_eq!(
            refused,
            Err(Rejection::Governance(GovernanceRejection::TooManyPending {
                pending: limits::PENDING_PROPOSALS_PER_KEY_MAX
            }))
        );
        // Another key has its own room.
        assert!(when(&state, &governor(2), propose(PluginKind::Scoring, 99, 1)).is_ok());
        // Once round 1 opens, the proposals for it have expired and free the room.
        let state = then(state.clone(), &[open_round(state.governance())]);
        assert_eq!(
            state.governance().pending_proposals(&governor(1).public()),
            0
        );
        assert!(when(&state, &governor(1), propose(PluginKind::Scoring, 99, 2)).is_ok());
    }

    #[test]
    fn an_approval_of_other_content_is_refused() {
        let state = given(&[genesis(2)]);
        let events = when(&state, &governor(1), propose(PluginKind::Scoring, 1, 1)).unwrap();
        let state = then(state, &events);
        let other = Action::ApproveProposal {
            proposal_id: 1,
            proposal_hash: Some([9; 32]),
        };
        assert!(matches!(
            when(&state, &governor(2), other),
            Err(Rejection::Governance(
                GovernanceRejection::ProposalHashMismatch { proposal_id: 1, .. }
            ))
        ));
        assert!(when(&state, &governor(2), approve(&state, 1)).is_ok());
    }

    /// Applies `events` on top of `state`.
    fn then(mut state: State, events: &[Event]) -> State {
        for event in events {
            state.apply(event);
        }
        state
    }

    fn pinned(state: &State, kind: PluginKind) -> Hash {
        let round = state.governance().round().expect("a round is open");
        round.plugins.iter().find(|p| p.kind == kind).unwrap().hash
    }

    #[test]
    fn only_governance_keys_propose_and_approve() {
        let state = given(&[genesis(2)]);
        let outsider = Keypair::from_secret([99; 32]);
        let refused = Err(Rejection::Governance(GovernanceRejection::NotGovernance));
        assert_eq!(
            when(&state, &outsider, propose(PluginKind::Scoring, 1, 1)),
            refused
        );
        let events = when(&state, &governor(1), propose(PluginKind::Scoring, 1, 1)).unwrap();
        let state = then(state, &events);
        assert_eq!(when(&state, &outsider, approve(&state, 1)), refused);
    }

    #[test]
    fn a_proposal_alone_is_one_approval_and_activates_nothing_below_the_threshold() {
        let state = given(&[genesis(2)]);
        let events = when(&state, &governor(1), propose(PluginKind::Scoring, 1, 1)).unwrap();
        let hash = module(PluginKind::Scoring, 1).hash;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(
            &events[0],
            Event::PluginProposed { proposal_id: 1, module, activation_round: 1, .. }
                if module.hash == hash
        ));
        assert_eq!(
            events[1],
            Event::ProposalApproved {
                proposal_id: 1,
                approver: governor(1).public(),
                approvals: 1
            }
        );
        let state = then(state, &events);
        assert!(
            state.governance().plugin(&hash).is_some(),
            "the module is stored"
        );
        assert_eq!(
            state
                .governance()
                .proposals()
                .get(&1)
                .unwrap()
                .activated_seq,
            None
        );

        // The proposer approving again does not count twice.
        assert_eq!(
            when(&state, &governor(1), approve(&state, 1)),
            Err(Rejection::Governance(GovernanceRejection::AlreadyApproved(
                1
            )))
        );
        // A second key reaches 2 of 3: approved and activated in one decision.
        let events = when(&state, &governor(2), approve(&state, 1)).unwrap();
        assert_eq!(
            events,
            vec![
                Event::ProposalApproved {
                    proposal_id: 1,
                    approver: governor(2).public(),
                    approvals: 2
                },
                Event::PluginActivated {
                    proposal_id: 1,
                    kind: PluginKind::Scoring,
                    hash,
                    activation_round: 1
                },
            ]
        );
        let state = then(state, &events);
        assert_eq!(
            when(&state, &governor(3), approve(&state, 1)),
            Err(Rejection::Governance(
                GovernanceRejection::ProposalAlreadyActivated(1)
            ))
        );
        assert_eq!(
            when(&state, &governor(3), approve(&state, 7)),
            Err(Rejection::Governance(
                GovernanceRejection::ProposalNotFound(7)
            ))
        );
    }

    #[test]
    fn given_an_approved_activation_when_a_round_opens_then_it_pins_the_new_hash_and_an_open_round_keeps_the_old()
     {
        let old = module(PluginKind::Sharding, 0).hash;
        let new = module(PluginKind::Sharding, 1).hash;
        let state = given(&[genesis(2)]);
        let state = then(state.clone(), &[open_round(state.governance())]);
        assert_eq!(pinned(&state, PluginKind::Sharding), old);

        // While round 1 is open, governance activates a new sharding plugin for round 2.
        let proposed = when(&state, &governor(1), propose(PluginKind::Sharding, 1, 2)).unwrap();
        let state = then(state, &proposed);
        let approved = when(&state, &governor(3), approve(&state, 1)).unwrap();
        assert!(matches!(approved[1], Event::PluginActivated { .. }));
        let state = then(state, &approved);

        // The open round keeps the plugin it pinned.
        assert_eq!(state.governance().round_number(), 1);
        assert_eq!(pinned(&state, PluginKind::Sharding), old);

        // The next round pins the new one; the other kinds keep theirs.
        let opened = open_round(state.governance());
        let Event::RoundOpened(pins) = &opened else {
            panic!("{opened:?}")
        };
        assert_eq!(pins.round, 2);
        let state = then(state, std::slice::from_ref(&opened));
        assert_eq!(pinned(&state, PluginKind::Sharding), new);
        assert_eq!(
            pinned(&state, PluginKind::Reward),
            module(PluginKind::Reward, 0).hash
        );
        assert_eq!(
            state.governance().fallback_chain(PluginKind::Sharding),
            vec![new, old]
        );
    }

    #[test]
    fn an_activation_for_a_later_round_waits_for_it() {
        let state = given(&[genesis(1)]);
        let events = when(&state, &governor(2), propose(PluginKind::Reward, 5, 3)).unwrap();
        assert_eq!(events.len(), 3, "threshold 1 activates at once: {events:?}");
        let mut state = then(state, &events);
        for round in 1..=3 {
            let opened = open_round(state.governance());
            state = then(state, &[opened]);
            let expected = module(PluginKind::Reward, if round < 3 { 0 } else { 5 }).hash;
            assert_eq!(
                pinned(&state, PluginKind::Reward),
                expected,
                "round {round}"
            );
        }
    }

    #[test]
    fn a_proposal_whose_round_opened_without_it_expires() {
        let state = given(&[genesis(2)]);
        let events = when(&state, &governor(1), propose(PluginKind::Scoring, 1, 1)).unwrap();
        let state = then(state, &events);
        let state = then(state.clone(), &[open_round(state.governance())]);
        assert_eq!(
            when(&state, &governor(2), approve(&state, 1)),
            Err(Rejection::Governance(
                GovernanceRejection::ProposalExpired {
                    proposal_id: 1,
                    activation_round: 1,
                    round: 1
                }
            ))
        );
        // And a new proposal must aim past the open round.
        assert!(matches!(
            when(&state, &governor(1), propose(PluginKind::Scoring, 2, 1)),
            Err(Rejection::Governance(GovernanceRejection::InvalidField {
                field: "activation_round",
                ..
            }))
        ));
    }

    #[test]
    fn oversized_and_empty_modules_are_refused() {
        let state = given(&[genesis(2)]);
        let big = Action::ProposePlugin(PluginProposal {
            kind: PluginKind::Scoring,
            wasm: vec![0; limits::PLUGIN_BYTES_MAX + 1].into(),
            activation_round: 1,
        });
        assert_eq!(
            when(&state, &governor(1), big),
            Err(Rejection::Governance(GovernanceRejection::PluginTooLarge {
                size: limits::PLUGIN_BYTES_MAX + 1,
                max: limits::PLUGIN_BYTES_MAX
            }))
        );
        let empty = Action::ProposePlugin(PluginProposal {
            kind: PluginKind::Scoring,
            wasm: Vec::new().into(),
            activation_round: 1,
        });
        assert!(matches!(
            when(&state, &governor(1), empty),
            Err(Rejection::Governance(GovernanceRejection::InvalidField {
                field: "wasm",
                ..
            }))
        ));
    }

    #[test]
    fn parameters_change_through_the_same_flow_and_only_at_a_round_boundary() {
        let state = given(&[genesis(2)]);
        let bad = Parameters {
            reward_share_bps: 10_001,
            ..Parameters::default()
        };
        let refused = when(
            &state,
            &governor(1),
            Action::ProposeParameters {
                parameters: bad,
                activation_round: 1,
            },
        );
        assert!(matches!(
            refused,
            Err(Rejection::Governance(GovernanceRejection::InvalidField {
                field: "reward_share_bps",
                ..
            }))
        ));
        let wanted = Parameters {
            validator_quorum: 4,
            checkpoint_interval_events: 50,
            ..Parameters::default()
        };
        let events = when(
            &state,
            &governor(1),
            Action::ProposeParameters {
                parameters: wanted.clone(),
                activation_round: 1,
            },
        )
        .unwrap();
        let state = then(state, &events);
        let events = when(&state, &governor(2), approve(&state, 1)).unwrap();
        assert!(matches!(events[1], Event::ParametersActivated { .. }));
        let state = then(state, &events);
        assert_eq!(
            state.governance().parameters(),
            &Parameters::default(),
            "not before the boundary"
        );
        let state = then(state.clone(), &[open_round(state.governance())]);
        assert_eq!(state.governance().parameters(), &wanted);
        assert_eq!(state.governance().round().unwrap().parameters, wanted);
    }

    #[test]
    fn the_fallback_chain_is_pinned_then_previous_then_genesis() {
        let genesis_hash = module(PluginKind::Scoring, 0).hash;
        let mut state = given(&[genesis(1)]);
        assert_eq!(
            state.governance().fallback_chain(PluginKind::Scoring),
            vec![genesis_hash]
        );
        for (tag, round) in [(1u8, 1u64), (2, 2)] {
            let events = when(
                &state,
                &governor(1),
                propose(PluginKind::Scoring, tag, round),
            )
            .unwrap();
            state = then(state, &events);
            let opened = open_round(state.governance());
            state = then(state, &[opened]);
        }
        assert_eq!(
            state.governance().fallback_chain(PluginKind::Scoring),
            vec![
                module(PluginKind::Scoring, 2).hash,
                module(PluginKind::Scoring, 1).hash,
                genesis_hash
            ]
        );
    }

    #[test]
    fn the_root_covers_governance() {
        let base = given(&[genesis(2)]);
        let roots: Vec<Hash> = [1, 2]
            .map(|tag| {
                let events = when(&base, &governor(1), propose(PluginKind::Scoring, tag, 1));
                then(base.clone(), &events.unwrap()).root()
            })
            .to_vec();
        assert_ne!(roots[0], roots[1], "same event count, other module");
        let for_round = |round| {
            let events = when(&base, &governor(1), propose(PluginKind::Scoring, 1, round));
            then(base.clone(), &events.unwrap()).root()
        };
        assert_ne!(for_round(1), for_round(2), "same module, other round");
    }
}
