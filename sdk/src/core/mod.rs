//! The pure state machine: `decide` turns a command, and `decide_input` a server
//! input, into events or a rejection; `State::apply` folds an event into the state.
//!
//! Nothing here does IO, reads a clock or draws randomness: time comes in through
//! [`Context`] and is written into the events. `apply` cannot fail and decides
//! nothing; every choice was already made by `decide` and recorded in the event.
//!
//! One module per area, each with its decisions, its part of the state and its own
//! rejection type: [`registry`], [`burns`], [`governance`], [`log`] (genesis and
//! checkpoints) and [`rounds`]. The dispatch below is exhaustive, so a command, a
//! server input or an event that no area handles does not compile.

pub mod burns;
pub mod experts;
pub mod governance;
pub mod hashed;
pub mod log;
pub mod pools;
pub mod registry;
pub mod rounds;
pub mod snapshot;
pub mod validators;

#[cfg(test)]
mod root_coverage;

use crate::crypto::PublicKey;
use crate::model::{
    Action, Checkpoint, Command, Event, Genesis, Hash, Phase, RoundPins, ServerInput, limits,
};
use burns::{BurnEntry, BurnRejection, Burns};
use experts::{ExpertRejection, Experts};
use governance::{Governance, GovernanceRejection};
use log::LogRejection;
use pools::{PoolRejection, Pools};
use registry::{Node, Registry, RegistryRejection};
use rounds::{RoundRejection, Rounds, World};
use validators::Validators;

/// What `decide` may know about the outside world, all of it recorded in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Log time of the record the events will be written in.
    pub time_ms: u64,
    /// The hash of the last record before them: what a round's seed derives from.
    pub head: Hash,
}

/// A command whose signature has been checked; `signer` is the actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub signer: PublicKey,
    pub command: Command,
}

/// All state, rebuilt from the log alone. Its collections are [`hashed::HashedMap`]s:
/// a clone shares them with the original, so a reader's snapshot costs O(1), and the
/// state root costs what changed since the last one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Left out of a snapshot: the log's first record holds it whole ([`snapshot`]).
    #[serde(skip)]
    genesis: Option<std::sync::Arc<Genesis>>,
    registry: Registry,
    burns: Burns,
    checkpoint_last: Option<Checkpoint>,
    governance: Governance,
    pools: Pools,
    validators: Validators,
    rounds: Rounds,
    experts: Experts,
    /// A round ended since the last checkpoint: the next event is one.
    round_ended: bool,
    /// Number of events applied; also the seq of the next event.
    events_applied: u64,
}

/// Why a command or a server input was refused: the area's own rejection, or one of
/// the two every command can meet. Each has a stable `code`; its class says what the
/// caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    #[error("the ledger has no genesis yet")]
    NoGenesis,
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error(transparent)]
    Registry(#[from] RegistryRejection),
    #[error(transparent)]
    Burns(#[from] BurnRejection),
    #[error(transparent)]
    Governance(#[from] GovernanceRejection),
    #[error(transparent)]
    Log(#[from] LogRejection),
    #[error(transparent)]
    Rounds(#[from] RoundRejection),
    #[error(transparent)]
    Pools(#[from] PoolRejection),
    #[error(transparent)]
    Experts(#[from] ExpertRejection),
}

/// What the caller should do about a rejection; the API maps each to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionClass {
    /// Fix the command (422).
    Invalid,
    /// The signer may not do this (403).
    Forbidden,
    /// The state does not allow it now (409).
    Conflict,
    /// Already done; not an error (200 with the original seq).
    AlreadyDone,
    /// The command names something that does not exist (404).
    NotFound,
    /// The command carries more than the ledger stores (413).
    TooLarge,
    /// Too soon after the last one; retry later (429).
    TooSoon,
    /// The server is not ready (503).
    Unavailable,
}

impl Rejection {
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NoGenesis => "no_genesis",
            Rejection::InvalidField { .. } => "invalid_field",
            Rejection::Registry(rejection) => rejection.code(),
            Rejection::Burns(rejection) => rejection.code(),
            Rejection::Governance(rejection) => rejection.code(),
            Rejection::Log(rejection) => rejection.code(),
            Rejection::Rounds(rejection) => rejection.code(),
            Rejection::Pools(rejection) => rejection.code(),
            Rejection::Experts(rejection) => rejection.code(),
        }
    }

    pub fn class(&self) -> RejectionClass {
        match self {
            Rejection::NoGenesis => RejectionClass::Unavailable,
            Rejection::InvalidField { .. } => RejectionClass::Invalid,
            Rejection::Registry(rejection) => rejection.class(),
            Rejection::Burns(rejection) => rejection.class(),
            Rejection::Governance(rejection) => rejection.class(),
            Rejection::Log(rejection) => rejection.class(),
            Rejection::Rounds(rejection) => rejection.class(),
            Rejection::Pools(rejection) => rejection.class(),
            Rejection::Experts(rejection) => rejection.class(),
        }
    }
}

/// The one check of free text: a length in characters and no control characters.
/// Each area turns the `(field, reason)` into its own rejection.
pub(crate) fn check_text(
    field: &'static str,
    value: &str,
    chars_min: usize,
    chars_max: usize,
) -> Result<(), (&'static str, String)> {
    let chars = value.chars().count();
    if chars < chars_min || chars > chars_max {
        return Err((
            field,
            format!("must be {chars_min}..={chars_max} characters, got {chars}"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err((field, "must not contain control characters".into()));
    }
    Ok(())
}

/// Decides what a command does. Pure: the same state, command and context always give
/// the same answer.
pub fn decide(
    state: &State,
    command: &Authenticated,
    context: &Context,
) -> Result<Vec<Event>, Rejection> {
    let genesis = state.genesis.as_ref().ok_or(Rejection::NoGenesis)?;
    let key_len = command.command.idempotency_key.len();
    if key_len == 0 || key_len > limits::IDEMPOTENCY_KEY_BYTES_MAX {
        return Err(Rejection::InvalidField {
            field: "idempotency_key",
            reason: format!(
                "must be 1..={} bytes, got {key_len}",
                limits::IDEMPOTENCY_KEY_BYTES_MAX
            ),
        });
    }
    let signer = command.signer;
    let governance = &state.governance;
    Ok(match &command.command.action {
        Action::RegisterNode(capabilities) => state.registry.decide_register(
            signer,
            capabilities,
            governance.parameters(),
            context,
        )?,
        Action::Heartbeat { window } => state.registry.decide_heartbeat(signer, *window)?,
        Action::RecordBurn(burn) => state.burns.decide_record(genesis, signer, burn, context)?,
        Action::ProposePlugin(proposal) => {
            governance::decide_propose_plugin(governance, genesis, signer, proposal)?
        }
        Action::ProposeParameters {
            parameters,
            activation_round,
        } => governance::decide_propose_parameters(
            governance,
            genesis,
            signer,
            parameters,
            *activation_round,
        )?,
        Action::ApproveProposal {
            proposal_id,
            proposal_hash,
        } => governance::decide_approve(
            governance,
            genesis,
            signer,
            *proposal_id,
            proposal_hash.as_ref(),
        )?,
        Action::ProposeValidator {
            validator,
            admit,
            activation_round,
        } => governance::decide_propose_validator(
            governance,
            genesis,
            signer,
            *validator,
            *admit,
            *activation_round,
            state.validators.len(),
        )?,
        Action::RegisterPool(spec) => state.pools.decide_register(genesis, signer, spec)?,
        Action::CommitDelta { round, commitment } => {
            rounds::decide_commit(&state.rounds, signer, *round, commitment, context)?
        }
        Action::RevealDelta(reveal) => {
            rounds::decide_reveal(&state.rounds, signer, reveal, context)?
        }
        Action::SubmitMeasurements { round, values } => {
            rounds::decide_measurements(&state.rounds, signer, *round, values, context)?
        }
    })
}

/// Decides what a server input does, as [`decide`] does for a command: pure, and
/// decided again by an audit replay.
pub fn decide_input(
    state: &State,
    input: &ServerInput,
    context: &Context,
) -> Result<Vec<Event>, Rejection> {
    let genesis_applied = || {
        state
            .genesis
            .as_ref()
            .map(|_| ())
            .ok_or(Rejection::NoGenesis)
    };
    let world = state.world();
    Ok(match input {
        ServerInput::Genesis(genesis) => log::decide_genesis(state, genesis)?,
        ServerInput::Checkpoint {
            merkle_root,
            signature,
        } => {
            genesis_applied()?;
            log::decide_checkpoint(state, merkle_root, signature)?
        }
        ServerInput::Tick { time_ms } => {
            genesis_applied()?;
            rounds::decide_tick(&state.rounds, *time_ms, context)?
        }
        ServerInput::OpenRound { round } => {
            genesis_applied()?;
            rounds::decide_open_round(&state.rounds, &world, *round, context)?
        }
        ServerInput::PolicyResult(result) => {
            genesis_applied()?;
            rounds::decide_policy_result(&state.rounds, &world, result, context)?
        }
        ServerInput::UpdateExpert(update) => {
            genesis_applied()?;
            experts::decide_update(&state.experts, &state.rounds, world.model, update)?
        }
        ServerInput::CloseLivenessWindow(window) => {
            genesis_applied()?;
            state
                .registry
                .decide_close_window(window, state.governance.parameters(), context)?
        }
    })
}

impl State {
    /// Why `event` cannot apply to this state, if it cannot: the structural rules that
    /// `apply` asserts, checked without panicking. A log read from storage or from
    /// elsewhere passes this for every event before it is applied, so a log whose
    /// chain is intact but whose meaning is corrupt is refused by the seq of its first
    /// bad event.
    pub fn check(&self, event: &Event) -> Result<(), String> {
        let seq = self.events_applied;
        let governance = &self.governance;
        let proposal = |proposal_id: &u64| {
            governance
                .proposals
                .get(proposal_id)
                .ok_or_else(|| format!("proposal {proposal_id} does not exist"))
        };
        let unactivated = |proposal_id: &u64| {
            proposal(proposal_id)?.activated_seq.map_or(Ok(()), |at| {
                Err(format!("proposal {proposal_id} was activated at seq {at}"))
            })
        };
        let next_proposal = |proposal_id: &u64| {
            let next = governance.next_proposal_id();
            if *proposal_id == next {
                Ok(())
            } else {
                Err(format!("proposal {proposal_id} is not the next id, {next}"))
            }
        };
        match event {
            Event::GenesisCreated(_) if seq != 0 || self.genesis.is_some() => {
                Err("a genesis that is not the first event".into())
            }
            Event::GenesisCreated(_) => Ok(()),
            _ if self.genesis.is_none() => Err("an event before the genesis".into()),
            Event::NodeRegistered { node, .. } if self.registry.nodes.contains_key(node) => {
                Err(format!("node {node} is already registered"))
            }
            Event::HeartbeatRecorded { node, .. } if !self.registry.nodes.contains_key(node) => {
                Err(format!("node {node} is not registered"))
            }
            Event::LivenessWindowClosed(window) => {
                let liveness = &self.registry.liveness;
                if window.window != liveness.open {
                    Err(format!(
                        "liveness window {} closes while window {} is open",
                        window.window, liveness.open
                    ))
                } else if window.closed_ms < liveness.opened_ms {
                    Err(format!(
                        "liveness window {} closes before it opened",
                        window.window
                    ))
                } else {
                    self.registry
                        .check_bitmap(&window.live)
                        .map_err(|(field, reason)| format!("{field}: {reason}"))
                }
            }
            Event::BurnRecorded { burn, .. } => {
                if self.burns.entries.contains_key(&burn.chain_tx_id) {
                    Err(format!("burn {} is already recorded", burn.chain_tx_id))
                } else if self.burns.total.checked_add(burn.amount).is_none() {
                    Err("the burn total overflows".into())
                } else {
                    Ok(())
                }
            }
            Event::CheckpointCreated(checkpoint) if checkpoint.tree_size != seq => Err(format!(
                "a checkpoint of {} events at seq {seq}",
                checkpoint.tree_size
            )),
            Event::PluginProposed { proposal_id, .. }
            | Event::ParametersProposed { proposal_id, .. } => next_proposal(proposal_id),
            Event::ProposalApproved {
                proposal_id,
                approver,
                approvals,
            } => {
                let approved = &proposal(proposal_id)?.approvals;
                if approved.contains(approver) {
                    Err(format!(
                        "{approver} already approved proposal {proposal_id}"
                    ))
                } else if approved.len() + 1 != *approvals as usize {
                    Err(format!(
                        "{approvals} approvals logged, {} counted",
                        approved.len() + 1
                    ))
                } else {
                    Ok(())
                }
            }
            Event::PluginActivated {
                proposal_id, hash, ..
            } => {
                unactivated(proposal_id)?;
                if governance.plugins.contains_key(hash) {
                    Ok(())
                } else {
                    Err(format!("plugin {} is not stored", hex::encode(hash)))
                }
            }
            Event::ParametersActivated { proposal_id, .. } => unactivated(proposal_id),
            Event::RoundOpened(pins) if pins.round != governance.round_number() + 1 => {
                Err(format!(
                    "round {} opens after round {}",
                    pins.round,
                    governance.round_number()
                ))
            }
            Event::RoundOpened(RoundPins {
                plan: Some(plan), ..
            }) => {
                if self.rounds.live.contains_key(&plan.expert) {
                    Err(format!(
                        "expert {} already has a round running",
                        plan.expert
                    ))
                } else if plan.burns > self.burns.total - self.rounds.burns_consumed {
                    Err("a round consumes more burns than were recorded".into())
                } else if plan.reward_pool < self.rounds.carried {
                    Err("a round's pool leaves out what was carried".into())
                } else if self.experts.owes(plan.expert) {
                    Err(format!("expert {} still owes a merge", plan.expert))
                } else if plan.model_versions
                    != self
                        .model()
                        .map_or_else(Vec::new, |model| self.experts.heads_of(model))
                {
                    Err("a round pins other versions than the experts' newest".into())
                } else {
                    Ok(())
                }
            }
            Event::PoolRegistered { pool_id, .. } => {
                let next = self.pools.newest().map_or(1, |(id, _)| id + 1);
                if *pool_id == next {
                    Ok(())
                } else {
                    Err(format!("pool {pool_id} is not the next id, {next}"))
                }
            }
            Event::ValidatorProposed { proposal_id, .. } => next_proposal(proposal_id),
            Event::ValidatorChanged { proposal_id, .. } => unactivated(proposal_id),
            Event::AssignmentsMade { round, .. } => {
                self.running(*round).and_then(|entry| match entry.phase {
                    Phase::Assigning => Ok(()),
                    phase => Err(format!("round {round} is in its {} phase", phase.name())),
                })
            }
            Event::DeltaCommitted { round, node, .. } => {
                self.running(*round)?;
                match self.rounds.commit(*round, node) {
                    Some(_) => Err(format!("{node} already committed in round {round}")),
                    None => Ok(()),
                }
            }
            Event::DeltaRevealed { node, reveal } => {
                self.running(reveal.round)?;
                match self.rounds.reveal(reveal.round, node) {
                    Some(_) => Err(format!("{node} already revealed in round {}", reveal.round)),
                    None => Ok(()),
                }
            }
            Event::MeasurementsSubmitted {
                round, validator, ..
            } => {
                self.running(*round)?;
                match self.rounds.submission(*round, validator) {
                    Some(_) => Err(format!("{validator} already submitted in round {round}")),
                    None => Ok(()),
                }
            }
            Event::PhaseStarted { round, .. }
            | Event::ScoresRecorded { round, .. }
            | Event::RoundAborted { round, .. } => self.running(*round).map(|_| ()),
            Event::RoundFinalized(outcome) => {
                let entry = self.running(outcome.round)?;
                if outcome.carried > entry.plan.reward_pool {
                    Err("a round carries more than its pool".into())
                } else {
                    Ok(())
                }
            }
            Event::ExpertUpdated(update) => {
                let head = self.experts.head(update.expert);
                if self.experts.owed.get(&update.round) != Some(&update.expert) {
                    Err(format!(
                        "round {} owes no merge of expert {}",
                        update.round, update.expert
                    ))
                } else if update.version != head + 1 {
                    Err(format!(
                        "expert {} is at version {head}: the next is {}, not {}",
                        update.expert,
                        head + 1,
                        update.version
                    ))
                } else {
                    Ok(())
                }
            }
            Event::NodeRegistered { .. }
            | Event::HeartbeatRecorded { .. }
            | Event::CheckpointCreated(_)
            | Event::RoundOpened(_)
            | Event::PluginFallback(_) => Ok(()),
        }
    }

    /// The round `round`, if it is running.
    fn running(&self, round: u64) -> Result<&rounds::Round, String> {
        match self.rounds.get(round) {
            None => Err(format!("round {round} does not exist")),
            Some(entry) if entry.phase.is_over() => Err(format!("round {round} is over")),
            Some(entry) => Ok(entry),
        }
    }

    /// Folds one event in. Infallible: an event that cannot apply was never decided
    /// (and a log's events pass [`State::check`] first), so a violation here is a
    /// programmer error and panics.
    pub fn apply(&mut self, event: &Event) {
        let seq = self.events_applied;
        match event {
            Event::GenesisCreated(genesis) => {
                assert!(
                    self.genesis.is_none() && seq == 0,
                    "genesis must be the first event"
                );
                self.genesis = Some(std::sync::Arc::new(genesis.as_ref().clone()));
                self.governance = Governance::genesis(genesis, seq);
            }
            Event::NodeRegistered {
                node,
                capabilities,
                time_ms,
            } => self
                .registry
                .apply_registered(*node, capabilities, *time_ms, seq),
            Event::HeartbeatRecorded { node, time_ms } => {
                self.registry.apply_heartbeat(node, *time_ms)
            }
            Event::LivenessWindowClosed(window) => self
                .registry
                .apply_window_closed(window, self.governance.parameters()),
            Event::BurnRecorded { burn, time_ms } => self.burns.apply_recorded(burn, *time_ms, seq),
            Event::CheckpointCreated(checkpoint) => {
                assert_eq!(
                    checkpoint.tree_size, seq,
                    "a checkpoint covers every event before it"
                );
                self.checkpoint_last = Some(checkpoint.clone());
            }
            Event::PluginProposed {
                proposal_id,
                proposer,
                module,
                activation_round,
            } => self.governance.apply_plugin_proposed(
                *proposal_id,
                *proposer,
                module,
                *activation_round,
                seq,
            ),
            Event::ParametersProposed {
                proposal_id,
                proposer,
                parameters,
                activation_round,
            } => self.governance.apply_parameters_proposed(
                *proposal_id,
                *proposer,
                parameters,
                *activation_round,
                seq,
            ),
            Event::ProposalApproved {
                proposal_id,
                approver,
                approvals,
            } => self
                .governance
                .apply_approved(*proposal_id, *approver, *approvals),
            Event::PluginActivated {
                proposal_id,
                kind,
                hash,
                activation_round,
            } => self.governance.apply_plugin_activated(
                *proposal_id,
                *kind,
                hash,
                *activation_round,
                seq,
            ),
            Event::ParametersActivated {
                proposal_id,
                parameters,
                activation_round,
            } => self.governance.apply_parameters_activated(
                *proposal_id,
                parameters,
                *activation_round,
                seq,
            ),
            Event::RoundOpened(pins) => {
                self.governance.apply_round_opened(pins);
                self.rounds.apply_opened(pins, self.burns.total, seq);
            }
            Event::PluginFallback(fallback) => self.governance.apply_fallback(fallback, seq),
            Event::PoolRegistered {
                pool_id,
                curator,
                pool,
                merkle_root,
            } => self
                .pools
                .apply_registered(*pool_id, *curator, pool, *merkle_root, seq),
            Event::ValidatorProposed {
                proposal_id,
                proposer,
                validator,
                admit,
                activation_round,
            } => self.governance.apply_validator_proposed(
                *proposal_id,
                *proposer,
                *validator,
                *admit,
                *activation_round,
                seq,
            ),
            Event::ValidatorChanged {
                proposal_id,
                validator,
                admit,
            } => {
                self.governance.apply_validator_changed(*proposal_id, seq);
                self.validators.apply_changed(*validator, *admit, seq);
            }
            Event::AssignmentsMade {
                round,
                shards,
                merkle_root,
                deadline_ms,
            } => self
                .rounds
                .apply_assignments(*round, shards, merkle_root, *deadline_ms, seq),
            Event::DeltaCommitted {
                round,
                node,
                commitment,
            } => self.rounds.apply_committed(*round, *node, commitment, seq),
            Event::DeltaRevealed { node, reveal } => self.rounds.apply_revealed(*node, reveal, seq),
            Event::PhaseStarted {
                round,
                phase,
                deadline_ms,
            } => self
                .rounds
                .apply_phase_started(*round, *phase, *deadline_ms),
            Event::MeasurementsSubmitted {
                round,
                validator,
                values,
            } => self
                .rounds
                .apply_measurements(*round, *validator, values, seq),
            Event::ScoresRecorded {
                round,
                scores,
                merkle_root,
            } => self.rounds.apply_scores(*round, scores, merkle_root, seq),
            Event::RoundFinalized(outcome) => {
                for validator in &outcome.validators {
                    self.validators
                        .apply_reputation(&validator.validator, validator.reputation);
                }
                self.rounds.apply_finalized(outcome, seq);
                if self.model().is_some() {
                    let expert = self
                        .rounds
                        .get(outcome.round)
                        .expect("a finalized round exists")
                        .plan
                        .expert;
                    self.experts
                        .apply_finalized(outcome.round, expert, outcome.accepted.len());
                }
                self.round_ended = true;
            }
            Event::RoundAborted {
                round,
                reason,
                carried,
            } => {
                self.rounds.apply_aborted(*round, reason, *carried, seq);
                self.round_ended = true;
            }
            Event::ExpertUpdated(update) => self.experts.apply_updated(update, seq),
        }
        if matches!(event, Event::CheckpointCreated(_)) {
            self.round_ended = false;
        }
        self.events_applied = seq + 1;
    }

    pub fn genesis(&self) -> Option<&Genesis> {
        self.genesis.as_deref()
    }

    pub fn node(&self, key: &PublicKey) -> Option<&Node> {
        self.registry.nodes.get(key)
    }

    pub fn nodes(&self) -> &hashed::HashedMap<PublicKey, Node> {
        &self.registry.nodes
    }

    /// The registry, with the liveness windows.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn burn(&self, chain_tx_id: &str) -> Option<&BurnEntry> {
        self.burns.entries.get(chain_tx_id)
    }

    pub fn burn_count(&self) -> usize {
        self.burns.entries.len()
    }

    pub fn burn_total(&self) -> u128 {
        self.burns.total
    }

    pub fn checkpoint_last(&self) -> Option<&Checkpoint> {
        self.checkpoint_last.as_ref()
    }

    pub fn governance(&self) -> &Governance {
        &self.governance
    }

    pub fn events_applied(&self) -> u64 {
        self.events_applied
    }

    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    pub fn validators(&self) -> &Validators {
        &self.validators
    }

    pub fn rounds(&self) -> &Rounds {
        &self.rounds
    }

    pub fn experts(&self) -> &Experts {
        &self.experts
    }

    /// The plan of the merge round `round` owes; `None` when it owes none.
    pub fn merge_plan(&self, round: u64) -> Option<experts::MergePlan> {
        experts::merge_plan(
            &self.experts,
            &self.rounds,
            &self.pools,
            self.model()?,
            round,
        )
    }

    /// The genesis model, if the ledger trains one: a genesis model whose version-0
    /// weights are not named (a genesis decided without a blob store) trains nothing.
    pub fn model(&self) -> Option<&crate::model::ModelSpec> {
        self.genesis
            .as_ref()
            .and_then(|genesis| genesis.model.as_ref())
            .filter(|model| model.expert_hashes.len() == model.experts as usize)
    }

    fn world(&self) -> World<'_> {
        World {
            governance: &self.governance,
            registry: &self.registry,
            pools: &self.pools,
            validators: &self.validators,
            burns_total: self.burns.total,
            experts: &self.experts,
            model: self.model(),
        }
    }

    /// The server inputs the scheduler owes the log at `time_ms`, the last record
    /// being `head`: rounds that can open, deadlines that passed, and the policy calls
    /// rounds await. Submitting them is the server's job; the core decides each.
    pub fn due(&self, time_ms: u64, head: &Hash) -> Vec<rounds::Due> {
        if self.genesis.is_none() {
            return Vec::new();
        }
        rounds::due(&self.rounds, &self.world(), time_ms, head)
    }

    /// The input of the policy call `round` awaits, rebuilt from the state.
    pub fn policy_input(
        &self,
        round: u64,
    ) -> Option<(crate::model::PluginKind, blyan_schemas::v1::PolicyInput)> {
        rounds::policy_input(&self.rounds, &self.world(), round)
    }

    /// Events since the last checkpoint, or since the genesis before the first one.
    fn events_since_checkpoint(&self) -> u64 {
        let covered = self
            .checkpoint_last
            .as_ref()
            .map_or(0, |checkpoint| checkpoint.tree_size + 1);
        self.events_applied - covered
    }

    /// True when enough events have passed since the last checkpoint that the next
    /// event must be one.
    pub fn checkpoint_due(&self) -> bool {
        self.genesis.is_some()
            && (self.round_ended
                || self.events_since_checkpoint()
                    >= self.governance.parameters().checkpoint_interval_events)
    }

    /// A deterministic hash over the whole state: every field written with a length
    /// prefix in a fixed order, and each collection by the checksum of its lattice hash
    /// (see [`hashed`]), so two states hash equal exactly when they are equal. Its cost
    /// does not grow with the nodes, burns, proposals, plugins or fallbacks held.
    pub fn root(&self) -> Hash {
        let mut hasher = RootHasher(blake3::Hasher::new_derive_key(STATE_ROOT_CONTEXT));
        hasher.u64(self.events_applied);
        match &self.genesis {
            None => hasher.u64(0),
            Some(genesis) => {
                hasher.u64(1);
                hasher.text(&genesis.network_id);
                hasher.bytes(&genesis.operator_key.0);
                hasher.bytes(&genesis.burn_oracle_key.0);
                hasher.u64(genesis.governance_keys.len() as u64);
                for key in &genesis.governance_keys {
                    hasher.bytes(&key.0);
                }
                hasher.u64(u64::from(genesis.governance_threshold));
                hasher.u64(genesis.curator_keys.len() as u64);
                for key in &genesis.curator_keys {
                    hasher.bytes(&key.0);
                }
                governance::parameters_into(&mut hasher, &genesis.parameters);
                hasher.u64(genesis.plugins.len() as u64);
                for module in &genesis.plugins {
                    hasher.u64(module.kind as u64);
                    hasher.bytes(&module.hash);
                }
                // Nothing without a model: the root of a genesis written before
                // models existed stays what it was.
                if let Some(model) = &genesis.model {
                    for width in [model.inputs, model.hidden, model.outputs, model.experts] {
                        hasher.u64(u64::from(width));
                    }
                    hasher.u64(model.seed);
                    hasher.bytes(&model.shared_hash);
                    hasher.u64(model.expert_hashes.len() as u64);
                    for hash in &model.expert_hashes {
                        hasher.bytes(hash);
                    }
                }
            }
        }
        hasher.bytes(&self.registry.nodes.checksum());
        self.registry.liveness.hash_into(&mut hasher);
        hasher.bytes(&self.burns.entries.checksum());
        hasher.u128(self.burns.total);
        match &self.checkpoint_last {
            None => hasher.u64(0),
            Some(checkpoint) => {
                hasher.u64(1);
                hasher.u64(checkpoint.tree_size);
                hasher.bytes(&checkpoint.merkle_root);
                hasher.bytes(&checkpoint.signature);
            }
        }
        self.governance.hash_into(&mut hasher);
        hasher.bytes(&self.pools.pools.checksum());
        hasher.bytes(&self.validators.admitted.checksum());
        self.rounds.hash_into(&mut hasher);
        hasher.u64(u64::from(self.round_ended));
        self.experts.hash_into(&mut hasher);
        *hasher.0.finalize().as_bytes()
    }
}

/// blake3 key-derivation context of the state root.
pub const STATE_ROOT_CONTEXT: &str = "blyan-ledger 2026-12 state-root v2";

/// The writer of the state root and of its entries; only this crate writes into it.
pub struct RootHasher(blake3::Hasher);

impl RootHasher {
    pub(crate) fn u64(&mut self, value: u64) {
        self.0.update(&value.to_be_bytes());
    }
    pub(crate) fn u128(&mut self, value: u128) {
        self.0.update(&value.to_be_bytes());
    }
    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.u64(value.len() as u64);
        self.0.update(value);
    }
    pub(crate) fn text(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Given events, when a command, then events or a rejection.

    use super::*;
    use crate::crypto::Keypair;
    use crate::model::{Burn, Capabilities, LivenessWindow, Parameters};

    fn oracle() -> Keypair {
        Keypair::from_secret([2; 32])
    }

    fn genesis() -> Event {
        Event::GenesisCreated(Box::new(Genesis {
            network_id: "test-net".into(),
            operator_key: Keypair::from_secret([1; 32]).public(),
            burn_oracle_key: oracle().public(),
            governance_keys: vec![Keypair::from_secret([3; 32]).public()],
            governance_threshold: 1,
            curator_keys: Vec::new(),
            parameters: Parameters {
                checkpoint_interval_events: 3,
                liveness_window_ms: 1_000,
                ..Parameters::default()
            },
            plugins: Vec::new(),
            model: None,
        }))
    }

    fn capabilities() -> Capabilities {
        Capabilities {
            gpu_model: "H100".into(),
            vram_mib: 81_920,
            experts: vec![0, 3],
            endpoint: "https://n1".into(),
        }
    }

    fn burn(tx: &str, amount: u128) -> Burn {
        Burn {
            chain_tx_id: tx.into(),
            burner: "0xburner".into(),
            amount,
        }
    }

    /// The state after `events`; shared with the governance tests.
    pub(crate) fn given(events: &[Event]) -> State {
        let mut state = State::default();
        for event in events {
            state.apply(event);
        }
        state
    }

    /// `decide` on `action` signed by `signer`; shared with the governance tests.
    pub(crate) fn when(
        state: &State,
        signer: &Keypair,
        action: Action,
    ) -> Result<Vec<Event>, Rejection> {
        let command = Authenticated {
            signer: signer.public(),
            command: Command {
                idempotency_key: b"k1".to_vec(),
                action,
            },
        };
        decide(
            state,
            &command,
            &Context {
                time_ms: 5_000,
                head: [0; 32],
            },
        )
    }

    #[test]
    fn register_node_then_registered() {
        let node = Keypair::from_secret([9; 32]);
        let state = given(&[genesis()]);
        let events = when(&state, &node, Action::RegisterNode(capabilities())).unwrap();
        assert_eq!(
            events,
            vec![Event::NodeRegistered {
                node: node.public(),
                capabilities: capabilities(),
                time_ms: 5_000
            }]
        );
        let after = given(&[genesis(), events[0].clone()]);
        assert_eq!(after.node(&node.public()).unwrap().registered_seq, 1);
    }

    #[test]
    fn register_twice_then_conflict() {
        let node = Keypair::from_secret([9; 32]);
        let registered = Event::NodeRegistered {
            node: node.public(),
            capabilities: capabilities(),
            time_ms: 1,
        };
        let state = given(&[genesis(), registered]);
        assert_eq!(
            when(&state, &node, Action::RegisterNode(capabilities())),
            Err(Rejection::Registry(
                RegistryRejection::NodeAlreadyRegistered(node.public())
            ))
        );
    }

    #[test]
    fn register_with_bad_capabilities_then_invalid() {
        let node = Keypair::from_secret([9; 32]);
        let state = given(&[genesis()]);
        let cases = [
            (
                Capabilities {
                    gpu_model: String::new(),
                    ..capabilities()
                },
                "gpu_model",
            ),
            (
                Capabilities {
                    vram_mib: 0,
                    ..capabilities()
                },
                "vram_mib",
            ),
            (
                Capabilities {
                    experts: vec![],
                    ..capabilities()
                },
                "experts",
            ),
            (
                Capabilities {
                    experts: vec![3, 3],
                    ..capabilities()
                },
                "experts",
            ),
            (
                Capabilities {
                    endpoint: "x".repeat(257),
                    ..capabilities()
                },
                "endpoint",
            ),
        ];
        for (bad, expected_field) in cases {
            match when(&state, &node, Action::RegisterNode(bad)) {
                Err(Rejection::Registry(RegistryRejection::InvalidField { field, .. })) => {
                    assert_eq!(field, expected_field)
                }
                other => panic!("expected invalid {expected_field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn heartbeat_from_unknown_node_then_rejected() {
        let node = Keypair::from_secret([9; 32]);
        assert_eq!(
            when(&given(&[genesis()]), &node, Action::Heartbeat { window: 0 }),
            Err(Rejection::Registry(RegistryRejection::NodeNotRegistered(
                node.public()
            )))
        );
    }

    fn registered(seed: u8, time_ms: u64) -> Event {
        Event::NodeRegistered {
            node: Keypair::from_secret([seed; 32]).public(),
            capabilities: capabilities(),
            time_ms,
        }
    }

    /// `decide_input` on `input` at log time `time_ms`.
    fn when_input(
        state: &State,
        input: ServerInput,
        time_ms: u64,
    ) -> Result<Vec<Event>, Rejection> {
        decide_input(
            state,
            &input,
            &Context {
                time_ms,
                head: [0; 32],
            },
        )
    }

    fn window(window: u64, closed_ms: u64, live: Vec<u8>) -> LivenessWindow {
        LivenessWindow {
            window,
            closed_ms,
            live,
            heartbeats_root: [7; 32],
            blob: [8; 32],
        }
    }

    #[test]
    fn heartbeat_decides_no_event_and_only_for_the_open_window() {
        let node = Keypair::from_secret([9; 32]);
        let state = given(&[genesis(), registered(9, 1)]);
        assert_eq!(
            when(&state, &node, Action::Heartbeat { window: 0 }),
            Ok(Vec::new())
        );
        let closed = given(&[
            genesis(),
            registered(9, 1),
            Event::LivenessWindowClosed(window(0, 2_000, vec![1])),
        ]);
        // A heartbeat signed for a closed window can't be sent again.
        let refused = when(&closed, &node, Action::Heartbeat { window: 0 });
        assert_eq!(
            refused,
            Err(Rejection::Registry(RegistryRejection::WindowNotOpen {
                window: 0,
                open: 1
            }))
        );
        assert_eq!(refused.unwrap_err().class(), RejectionClass::Conflict);
        assert_eq!(
            when(&closed, &node, Action::Heartbeat { window: 1 }),
            Ok(Vec::new())
        );
    }

    #[test]
    fn a_window_closes_in_order_once_due_with_a_bitmap_of_registered_nodes() {
        let state = given(&[genesis(), registered(9, 1), registered(10, 2)]);
        let close = |live: Vec<u8>, number: u64, at: u64| {
            when_input(
                &state,
                ServerInput::CloseLivenessWindow(window(number, at, live)),
                at,
            )
        };
        let live = vec![0b11];
        assert_eq!(
            close(live.clone(), 0, 1_000),
            Ok(vec![Event::LivenessWindowClosed(window(
                0,
                1_000,
                live.clone()
            ))])
        );
        // Before the shortest window has passed, or a window other than the open one.
        assert_eq!(
            close(live.clone(), 0, 999),
            Err(Rejection::Registry(RegistryRejection::WindowNotOver {
                window: 0,
                opened_ms: 0,
                due_ms: 1_000
            }))
        );
        assert!(matches!(
            close(live.clone(), 1, 1_000),
            Err(Rejection::Registry(RegistryRejection::WindowNotOpen { .. }))
        ));
        // A close stamped with another time than the log's.
        assert!(matches!(
            when_input(
                &state,
                ServerInput::CloseLivenessWindow(window(0, 1_500, live.clone())),
                1_600
            ),
            Err(Rejection::Registry(RegistryRejection::InvalidField {
                field: "closed_ms",
                ..
            }))
        ));
        // Empty, padded, or naming a third node of two.
        for bad in [vec![], vec![0b01, 0], vec![0b100]] {
            assert!(
                matches!(
                    close(bad.clone(), 0, 1_000),
                    Err(Rejection::Registry(RegistryRejection::InvalidField {
                        field: "live",
                        ..
                    }))
                ),
                "{bad:?}"
            );
            assert!(
                state
                    .check(&Event::LivenessWindowClosed(window(0, 1_000, bad)))
                    .is_err()
            );
        }
    }

    #[test]
    fn a_window_keeps_its_nodes_live_for_the_timeout_and_the_root_covers_it() {
        // The genesis's timeout is the default, 60 s; node 10 registered at 1 ms,
        // node 9 at 2 ms, and only node 10 (bit 0) heartbeats.
        let base = [genesis(), registered(10, 1), registered(9, 2)];
        let before = given(&base);
        let closed = Event::LivenessWindowClosed(window(0, 50_000, vec![0b01]));
        let after = given(&[base[0].clone(), base[1].clone(), base[2].clone(), closed]);
        assert_ne!(before.root(), after.root());
        let seen = |state: &State, seed: u8| {
            let node = state
                .node(&Keypair::from_secret([seed; 32]).public())
                .unwrap();
            state.registry().last_seen_ms(node)
        };
        assert_eq!(seen(&after, 10), 50_000);
        assert_eq!(seen(&after, 9), 2);
        assert_eq!(after.registry().liveness().open(), 1);
        assert_eq!(after.registry().liveness().opened_ms(), 50_000);
        // A window closed past the timeout drops the first one from the state.
        let mut later = after.clone();
        later.apply(&Event::LivenessWindowClosed(window(1, 200_000, vec![0b10])));
        assert_eq!(later.registry().liveness().recent().len(), 1);
        assert_eq!(seen(&later, 10), 1);
        assert_eq!(seen(&later, 9), 200_000);
    }

    #[test]
    fn a_heartbeat_logged_one_by_one_still_applies() {
        // Logs written before liveness windows hold one event per heartbeat.
        let node = Keypair::from_secret([9; 32]).public();
        let state = given(&[
            genesis(),
            registered(9, 1),
            Event::HeartbeatRecorded {
                node,
                time_ms: 5_000,
            },
        ]);
        let entry = state.node(&node).unwrap();
        assert_eq!(entry.last_heartbeat_ms, 5_000);
        assert_eq!(state.registry().last_seen_ms(entry), 5_000);
    }

    #[test]
    fn register_past_the_models_experts_then_invalid() {
        let node = Keypair::from_secret([9; 32]);
        let state = given(&[genesis()]);
        let experts = Parameters::default().model_experts;
        let past = Capabilities {
            experts: vec![0, experts],
            ..capabilities()
        };
        assert!(matches!(
            when(&state, &node, Action::RegisterNode(past)),
            Err(Rejection::Registry(RegistryRejection::InvalidField {
                field: "experts",
                ..
            }))
        ));
        let last = Capabilities {
            experts: vec![0, experts - 1],
            ..capabilities()
        };
        assert!(when(&state, &node, Action::RegisterNode(last)).is_ok());
    }

    #[test]
    fn burn_by_non_oracle_then_unauthorized() {
        let intruder = Keypair::from_secret([8; 32]);
        assert_eq!(
            when(
                &given(&[genesis()]),
                &intruder,
                Action::RecordBurn(burn("tx1", 10))
            ),
            Err(Rejection::Burns(BurnRejection::NotBurnOracle))
        );
    }

    #[test]
    fn burn_then_total_grows_and_same_tx_is_idempotent() {
        let recorded = Event::BurnRecorded {
            burn: burn("tx1", 10),
            time_ms: 4,
        };
        let state = given(&[genesis(), recorded]);
        assert_eq!(state.burn_total(), 10);
        assert_eq!(
            when(&state, &oracle(), Action::RecordBurn(burn("tx1", 10))),
            Err(Rejection::Burns(BurnRejection::AlreadyRecorded {
                chain_tx_id: "tx1".into(),
                seq: 1
            }))
        );
        assert_eq!(
            when(&state, &oracle(), Action::RecordBurn(burn("tx1", 11))),
            Err(Rejection::Burns(BurnRejection::Conflict {
                chain_tx_id: "tx1".into(),
                seq: 1
            }))
        );
    }

    #[test]
    fn burn_of_zero_or_overflowing_total_then_invalid() {
        let state = given(&[
            genesis(),
            Event::BurnRecorded {
                burn: burn("tx1", u128::MAX),
                time_ms: 4,
            },
        ]);
        assert_eq!(
            when(&state, &oracle(), Action::RecordBurn(burn("tx2", 1))),
            Err(Rejection::Burns(BurnRejection::TotalOverflow))
        );
        assert!(matches!(
            when(&state, &oracle(), Action::RecordBurn(burn("tx3", 0))),
            Err(Rejection::Burns(BurnRejection::InvalidField {
                field: "amount",
                ..
            }))
        ));
    }

    #[test]
    fn empty_idempotency_key_then_invalid() {
        let state = given(&[genesis()]);
        let command = Authenticated {
            signer: oracle().public(),
            command: Command {
                idempotency_key: vec![],
                action: Action::RecordBurn(burn("tx1", 1)),
            },
        };
        assert!(matches!(
            decide(
                &state,
                &command,
                &Context {
                    time_ms: 0,
                    head: [0; 32]
                }
            ),
            Err(Rejection::InvalidField {
                field: "idempotency_key",
                ..
            })
        ));
    }

    #[test]
    fn checkpoint_is_due_every_interval() {
        let mut state = given(&[genesis()]);
        let mut due_at = Vec::new();
        for index in 0..8 {
            if state.checkpoint_due() {
                due_at.push(state.events_applied());
                let tree_size = state.events_applied();
                state.apply(&Event::CheckpointCreated(Checkpoint {
                    tree_size,
                    merkle_root: [0; 32],
                    signature: [0; 64],
                }));
            } else {
                state.apply(&Event::BurnRecorded {
                    burn: burn(&format!("tx{index}"), 1),
                    time_ms: 0,
                });
            }
        }
        // Interval 3: events 0..3 then a checkpoint at 3; 4..7 then one at 7.
        assert_eq!(due_at, vec![3, 7]);
    }

    #[test]
    fn root_depends_on_every_change_and_only_on_state() {
        let node = Keypair::from_secret([9; 32]);
        let base = given(&[genesis()]);
        let registered = given(&[
            genesis(),
            Event::NodeRegistered {
                node: node.public(),
                capabilities: capabilities(),
                time_ms: 1,
            },
        ]);
        let registered_later = given(&[
            genesis(),
            Event::NodeRegistered {
                node: node.public(),
                capabilities: capabilities(),
                time_ms: 2,
            },
        ]);
        assert_ne!(base.root(), registered.root());
        assert_ne!(registered.root(), registered_later.root());
        assert_eq!(registered.root(), registered.clone().root());
    }
}
