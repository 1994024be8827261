//! Conversion between the protobuf messages of `blyan-schemas` and the domain types.
//!
//! Decoding checks every length and presence rule, so the core never sees a
//! half-formed value. Encoding is used once, when a value is first written; whatever
//! is hashed or signed afterwards is the stored bytes, never a re-encoding.

use blyan_schemas::v1 as pb;
use prost::Message;

use crate::crypto::{self, COMMAND_DOMAIN, Keypair, PublicKey};
use crate::model::{
    Action, Burn, Capabilities, Cause, Checkpoint, Command, Event, ExpertUpdate, Genesis, Hash,
    LivenessWindow, LoggedEvent, ModelSpec, Parameters, Payout, Phase, PinnedPlugin,
    PluginFallback, PluginKind, PluginModule, PluginProposal, PolicyFailure, PolicyResult,
    PoolItem, PoolSpec, Reveal, RoundOutcome, RoundPins, RoundPlan, ServerInput, Shard,
    SignedCommand, ValidatorOutcome, limits,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl From<prost::DecodeError> for DecodeError {
    fn from(error: prost::DecodeError) -> DecodeError {
        DecodeError(format!("invalid protobuf: {error}"))
    }
}

fn key(bytes: &[u8], field: &str) -> Result<PublicKey, DecodeError> {
    PublicKey::from_slice(bytes)
        .ok_or_else(|| DecodeError(format!("{field} must be 32 bytes, got {}", bytes.len())))
}

fn array<const N: usize>(bytes: &[u8], field: &str) -> Result<[u8; N], DecodeError> {
    bytes
        .try_into()
        .map_err(|_| DecodeError(format!("{field} must be {N} bytes, got {}", bytes.len())))
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, DecodeError> {
    value.ok_or_else(|| DecodeError(format!("{field} is missing")))
}

fn u128_required(value: Option<pb::U128>, field: &str) -> Result<u128, DecodeError> {
    Ok(u128_from_pb(&required(value, field)?))
}

/// A column of 32-byte keys.
fn keys(bytes: &[u8], field: &str) -> Result<Vec<PublicKey>, DecodeError> {
    if !bytes.len().is_multiple_of(32) {
        return Err(DecodeError(format!(
            "{field}: not a whole number of 32-byte keys"
        )));
    }
    bytes
        .chunks_exact(32)
        .map(|chunk| key(chunk, field))
        .collect()
}

fn keys_to_pb(keys: &[PublicKey]) -> Vec<u8> {
    keys.iter().flat_map(|key| key.0).collect()
}

fn hashes(bytes: &[u8], field: &str) -> Result<Vec<Hash>, DecodeError> {
    if !bytes.len().is_multiple_of(32) {
        return Err(DecodeError(format!(
            "{field}: not a whole number of 32-byte hashes"
        )));
    }
    bytes
        .chunks_exact(32)
        .map(|chunk| array(chunk, field))
        .collect()
}

fn phase_from_pb(value: i32) -> Result<Phase, DecodeError> {
    Ok(match pb::Phase::try_from(value) {
        Ok(pb::Phase::Assigning) => Phase::Assigning,
        Ok(pb::Phase::Commit) => Phase::Commit,
        Ok(pb::Phase::Reveal) => Phase::Reveal,
        Ok(pb::Phase::Validate) => Phase::Validate,
        Ok(pb::Phase::Scoring) => Phase::Scoring,
        Ok(pb::Phase::Rewarding) => Phase::Rewarding,
        Ok(pb::Phase::Finalized) => Phase::Finalized,
        Ok(pb::Phase::Aborted) => Phase::Aborted,
        Ok(pb::Phase::Unspecified) | Err(_) => {
            return Err(DecodeError(format!("unknown phase {value}")));
        }
    })
}

fn phase_to_pb(phase: Phase) -> pb::Phase {
    match phase {
        Phase::Assigning => pb::Phase::Assigning,
        Phase::Commit => pb::Phase::Commit,
        Phase::Reveal => pb::Phase::Reveal,
        Phase::Validate => pb::Phase::Validate,
        Phase::Scoring => pb::Phase::Scoring,
        Phase::Rewarding => pb::Phase::Rewarding,
        Phase::Finalized => pb::Phase::Finalized,
        Phase::Aborted => pb::Phase::Aborted,
    }
}

fn pool_items_from_pb(items: Vec<pb::PoolItem>) -> Result<Vec<PoolItem>, DecodeError> {
    items
        .into_iter()
        .map(|item| {
            Ok(PoolItem {
                bytes: item.bytes,
                checksum: array(&item.checksum, "checksum")?,
                held_out: item.held_out,
            })
        })
        .collect()
}

fn pool_items_to_pb(items: &[PoolItem]) -> Vec<pb::PoolItem> {
    items
        .iter()
        .map(|item| pb::PoolItem {
            bytes: item.bytes,
            checksum: item.checksum.to_vec(),
            held_out: item.held_out,
        })
        .collect()
}

pub fn u128_to_pb(value: u128) -> pb::U128 {
    pb::U128 {
        hi: (value >> 64) as u64,
        lo: value as u64,
    }
}

pub fn u128_from_pb(value: &pb::U128) -> u128 {
    (u128::from(value.hi) << 64) | u128::from(value.lo)
}

pub fn plugin_kind_from_pb(value: i32) -> Result<PluginKind, DecodeError> {
    pb::PluginKind::try_from(value)
        .ok()
        .and_then(PluginKind::from_pb)
        .ok_or_else(|| {
            DecodeError(format!(
                "plugin kind must be sharding (1), scoring (2) or reward (3), got {value}"
            ))
        })
}

fn pinned_from_pb(kind: i32, hash: &[u8]) -> Result<PinnedPlugin, DecodeError> {
    Ok(PinnedPlugin {
        kind: plugin_kind_from_pb(kind)?,
        hash: array(hash, "wasm_hash")?,
    })
}

pub fn signed_command_from_pb(message: pb::SignedCommand) -> Result<SignedCommand, DecodeError> {
    Ok(SignedCommand {
        signer: key(&message.signer, "signer")?,
        signature: array(&message.signature, "signature")?,
        body: message.body,
    })
}

pub fn signed_command_to_pb(command: &SignedCommand) -> pb::SignedCommand {
    pb::SignedCommand {
        body: command.body.clone(),
        signer: command.signer.0.to_vec(),
        signature: command.signature.to_vec(),
    }
}

pub fn encode_signed_command(command: &SignedCommand) -> Vec<u8> {
    signed_command_to_pb(command).encode_to_vec()
}

/// Encodes `command` once and signs those bytes for `network_id`.
pub fn sign_command(signer: &Keypair, network_id: &str, command: &Command) -> SignedCommand {
    let body = encode_command(command);
    let signature = signer.sign(&crypto::signing_message(COMMAND_DOMAIN, network_id, &body));
    SignedCommand {
        body,
        signer: signer.public(),
        signature,
    }
}

pub fn decode_signed_command(bytes: &[u8]) -> Result<SignedCommand, DecodeError> {
    signed_command_from_pb(pb::SignedCommand::decode(bytes)?)
}

pub fn decode_command(body: &[u8]) -> Result<Command, DecodeError> {
    let message = pb::Command::decode(body)?;
    let action = match required(message.action, "command action")? {
        pb::command::Action::RegisterNode(register) => Action::RegisterNode(capabilities_from_pb(
            required(register.capabilities, "capabilities")?,
        )),
        pb::command::Action::Heartbeat(heartbeat) => Action::Heartbeat {
            window: heartbeat.window,
        },
        pb::command::Action::RecordBurn(burn) => Action::RecordBurn(Burn {
            chain_tx_id: burn.chain_tx_id,
            burner: burn.burner,
            amount: u128_from_pb(&required(burn.amount, "amount")?),
        }),
        pb::command::Action::ProposePlugin(proposal) => Action::ProposePlugin(PluginProposal {
            kind: plugin_kind_from_pb(proposal.kind)?,
            wasm: proposal.wasm.into(),
            activation_round: proposal.activation_round,
        }),
        pb::command::Action::ProposeParameters(proposal) => Action::ProposeParameters {
            parameters: parameters_from_pb(required(proposal.parameters, "parameters")?)?,
            activation_round: proposal.activation_round,
        },
        pb::command::Action::ApproveProposal(approval) => Action::ApproveProposal {
            proposal_id: approval.proposal_id,
            proposal_hash: if approval.proposal_hash.is_empty() {
                None
            } else {
                Some(array(&approval.proposal_hash, "proposal_hash")?)
            },
        },
        pb::command::Action::RegisterPool(pool) => Action::RegisterPool(PoolSpec {
            name: pool.name,
            items: pool_items_from_pb(pool.items)?,
        }),
        pb::command::Action::CommitDelta(commit) => Action::CommitDelta {
            round: commit.round,
            commitment: array(&commit.commitment, "commitment")?,
        },
        pb::command::Action::RevealDelta(reveal) => Action::RevealDelta(Reveal {
            round: reveal.round,
            delta_hash: array(&reveal.delta_hash, "delta_hash")?,
            salt: array(&reveal.salt, "salt")?,
            delta_bytes: reveal.delta_bytes,
        }),
        pb::command::Action::SubmitMeasurements(submit) => Action::SubmitMeasurements {
            round: submit.round,
            values: submit.values,
        },
        pb::command::Action::ProposeValidator(proposal) => Action::ProposeValidator {
            validator: key(&proposal.validator, "validator")?,
            admit: proposal.admit,
            activation_round: proposal.activation_round,
        },
    };
    Ok(Command {
        idempotency_key: message.idempotency_key,
        action,
    })
}

pub fn encode_command(command: &Command) -> Vec<u8> {
    let action = match &command.action {
        Action::RegisterNode(capabilities) => pb::command::Action::RegisterNode(pb::RegisterNode {
            capabilities: Some(capabilities_to_pb(capabilities)),
        }),
        Action::Heartbeat { window } => {
            pb::command::Action::Heartbeat(pb::Heartbeat { window: *window })
        }
        Action::RecordBurn(burn) => pb::command::Action::RecordBurn(pb::RecordBurn {
            chain_tx_id: burn.chain_tx_id.clone(),
            burner: burn.burner.clone(),
            amount: Some(u128_to_pb(burn.amount)),
        }),
        Action::ProposePlugin(proposal) => pb::command::Action::ProposePlugin(pb::ProposePlugin {
            kind: proposal.kind.to_pb().into(),
            wasm: proposal.wasm.to_vec(),
            activation_round: proposal.activation_round,
        }),
        Action::ProposeParameters {
            parameters,
            activation_round,
        } => pb::command::Action::ProposeParameters(pb::ProposeParameters {
            parameters: Some(parameters_to_pb(parameters)),
            activation_round: *activation_round,
        }),
        Action::ApproveProposal {
            proposal_id,
            proposal_hash,
        } => pb::command::Action::ApproveProposal(pb::ApproveProposal {
            proposal_id: *proposal_id,
            proposal_hash: proposal_hash.map(|hash| hash.to_vec()).unwrap_or_default(),
        }),
        Action::RegisterPool(pool) => pb::command::Action::RegisterPool(pb::RegisterPool {
            name: pool.name.clone(),
            items: pool_items_to_pb(&pool.items),
        }),
        Action::CommitDelta { round, commitment } => {
            pb::command::Action::CommitDelta(pb::CommitDelta {
                round: *round,
                commitment: commitment.to_vec(),
            })
        }
        Action::RevealDelta(reveal) => pb::command::Action::RevealDelta(pb::RevealDelta {
            round: reveal.round,
            delta_hash: reveal.delta_hash.to_vec(),
            salt: reveal.salt.to_vec(),
            delta_bytes: reveal.delta_bytes,
        }),
        Action::SubmitMeasurements { round, values } => {
            pb::command::Action::SubmitMeasurements(pb::SubmitMeasurements {
                round: *round,
                values: values.clone(),
            })
        }
        Action::ProposeValidator {
            validator,
            admit,
            activation_round,
        } => pb::command::Action::ProposeValidator(pb::ProposeValidator {
            validator: validator.0.to_vec(),
            admit: *admit,
            activation_round: *activation_round,
        }),
    };
    pb::Command {
        idempotency_key: command.idempotency_key.clone(),
        action: Some(action),
    }
    .encode_to_vec()
}

fn capabilities_from_pb(message: pb::NodeCapabilities) -> Capabilities {
    Capabilities {
        gpu_model: message.gpu_model,
        vram_mib: message.vram_mib,
        experts: message.experts,
        endpoint: message.endpoint,
    }
}

fn capabilities_to_pb(capabilities: &Capabilities) -> pb::NodeCapabilities {
    pb::NodeCapabilities {
        gpu_model: capabilities.gpu_model.clone(),
        vram_mib: capabilities.vram_mib,
        experts: capabilities.experts.clone(),
        endpoint: capabilities.endpoint.clone(),
    }
}

fn parameters_from_pb(message: pb::Parameters) -> Result<Parameters, DecodeError> {
    let defaults = Parameters::default();
    Ok(Parameters {
        heartbeat_timeout_ms: message.heartbeat_timeout_ms,
        round_burn_threshold: u128_from_pb(&required(
            message.round_burn_threshold,
            "round_burn_threshold",
        )?),
        checkpoint_interval_events: message.checkpoint_interval_events,
        validator_quorum: message.validator_quorum,
        commit_deadline_ms: message.commit_deadline_ms,
        reveal_deadline_ms: message.reveal_deadline_ms,
        reward_share_bps: message.reward_share_bps,
        max_score: message.max_score,
        model_experts: message
            .model_experts
            .unwrap_or(limits::EXPERTS_PER_NODE_MAX as u32),
        liveness_window_ms: message.liveness_window_ms.unwrap_or(0),
        nodes_per_round_min: message
            .nodes_per_round_min
            .unwrap_or(defaults.nodes_per_round_min),
        validators_per_round: message
            .validators_per_round
            .unwrap_or(defaults.validators_per_round),
        validators_per_delta: message
            .validators_per_delta
            .unwrap_or(defaults.validators_per_delta),
        scored_deltas_min: message
            .scored_deltas_min
            .unwrap_or(defaults.scored_deltas_min),
        validator_reward_bps: message
            .validator_reward_bps
            .unwrap_or(defaults.validator_reward_bps),
        validate_deadline_ms: message
            .validate_deadline_ms
            .unwrap_or(defaults.validate_deadline_ms),
        delta_bytes_max: message.delta_bytes_max.unwrap_or(defaults.delta_bytes_max),
    })
}

fn parameters_to_pb(parameters: &Parameters) -> pb::Parameters {
    pb::Parameters {
        heartbeat_timeout_ms: parameters.heartbeat_timeout_ms,
        round_burn_threshold: Some(u128_to_pb(parameters.round_burn_threshold)),
        checkpoint_interval_events: parameters.checkpoint_interval_events,
        validator_quorum: parameters.validator_quorum,
        commit_deadline_ms: parameters.commit_deadline_ms,
        reveal_deadline_ms: parameters.reveal_deadline_ms,
        reward_share_bps: parameters.reward_share_bps,
        max_score: parameters.max_score,
        model_experts: Some(parameters.model_experts),
        liveness_window_ms: Some(parameters.liveness_window_ms),
        nodes_per_round_min: Some(parameters.nodes_per_round_min),
        validators_per_round: Some(parameters.validators_per_round),
        validators_per_delta: Some(parameters.validators_per_delta),
        scored_deltas_min: Some(parameters.scored_deltas_min),
        validator_reward_bps: Some(parameters.validator_reward_bps),
        validate_deadline_ms: Some(parameters.validate_deadline_ms),
        delta_bytes_max: Some(parameters.delta_bytes_max),
    }
}

pub fn decode_logged_event(body: &[u8]) -> Result<LoggedEvent, DecodeError> {
    use pb::event::Kind;
    let message = pb::Event::decode(body)?;
    let command = message.cause.map(signed_command_from_pb).transpose()?;
    let server_input = message.server_input;
    let event = match required(message.kind, "event kind")? {
        Kind::GenesisCreated(genesis) => Event::GenesisCreated(Box::new(Genesis {
            network_id: genesis.network_id,
            operator_key: key(&genesis.operator_key, "operator_key")?,
            burn_oracle_key: key(&genesis.burn_oracle_key, "burn_oracle_key")?,
            governance_keys: genesis
                .governance_keys
                .iter()
                .map(|bytes| key(bytes, "governance key"))
                .collect::<Result<_, _>>()?,
            governance_threshold: genesis.governance_threshold,
            curator_keys: genesis
                .curator_keys
                .iter()
                .map(|bytes| key(bytes, "curator key"))
                .collect::<Result<_, _>>()?,
            parameters: parameters_from_pb(required(genesis.parameters, "parameters")?)?,
            plugins: genesis
                .plugins
                .into_iter()
                .map(|module| {
                    Ok(PluginModule::new(
                        plugin_kind_from_pb(module.kind)?,
                        module.wasm,
                    ))
                })
                .collect::<Result<_, DecodeError>>()?,
            model: genesis
                .model
                .map(|model| {
                    Ok::<_, DecodeError>(ModelSpec {
                        inputs: model.inputs,
                        hidden: model.hidden,
                        outputs: model.outputs,
                        experts: model.experts,
                        seed: model.seed,
                        shared_hash: array(&model.shared_hash, "shared_hash")?,
                        expert_hashes: hashes(&model.expert_hashes, "expert_hashes")?,
                    })
                })
                .transpose()?,
        })),
        Kind::NodeRegistered(registered) => Event::NodeRegistered {
            node: key(&registered.node, "node")?,
            capabilities: capabilities_from_pb(required(registered.capabilities, "capabilities")?),
            time_ms: registered.time_ms,
        },
        Kind::HeartbeatRecorded(heartbeat) => Event::HeartbeatRecorded {
            node: key(&heartbeat.node, "node")?,
            time_ms: heartbeat.time_ms,
        },
        Kind::BurnRecorded(burn) => Event::BurnRecorded {
            burn: Burn {
                chain_tx_id: burn.chain_tx_id,
                burner: burn.burner,
                amount: u128_from_pb(&required(burn.amount, "amount")?),
            },
            time_ms: burn.time_ms,
        },
        Kind::CheckpointCreated(checkpoint) => Event::CheckpointCreated(Checkpoint {
            tree_size: checkpoint.tree_size,
            merkle_root: array(&checkpoint.merkle_root, "merkle_root")?,
            signature: array(&checkpoint.signature, "signature")?,
        }),
        Kind::PluginProposed(proposed) => {
            // The module is the cause's: the log stores it once.
            let wasm = match command.as_ref().map(|cause| decode_command(&cause.body)) {
                Some(Ok(Command {
                    action: Action::ProposePlugin(proposal),
                    ..
                })) => proposal.wasm,
                _ => {
                    return Err(DecodeError(
                        "a plugin proposal's cause must be a ProposePlugin command".into(),
                    ));
                }
            };
            let module = PluginModule::new(plugin_kind_from_pb(proposed.kind)?, wasm);
            if module.hash.as_slice() != proposed.wasm_hash {
                return Err(DecodeError(
                    "wasm_hash is not the blake3 hash of the proposed module".into(),
                ));
            }
            Event::PluginProposed {
                proposal_id: proposed.proposal_id,
                proposer: key(&proposed.proposer, "proposer")?,
                module,
                activation_round: proposed.activation_round,
            }
        }
        Kind::ParametersProposed(proposed) => Event::ParametersProposed {
            proposal_id: proposed.proposal_id,
            proposer: key(&proposed.proposer, "proposer")?,
            parameters: parameters_from_pb(required(proposed.parameters, "parameters")?)?,
            activation_round: proposed.activation_round,
        },
        Kind::ProposalApproved(approved) => Event::ProposalApproved {
            proposal_id: approved.proposal_id,
            approver: key(&approved.approver, "approver")?,
            approvals: approved.approvals,
        },
        Kind::PluginActivated(activated) => {
            let pinned = pinned_from_pb(activated.kind, &activated.wasm_hash)?;
            Event::PluginActivated {
                proposal_id: activated.proposal_id,
                kind: pinned.kind,
                hash: pinned.hash,
                activation_round: activated.activation_round,
            }
        }
        Kind::ParametersActivated(activated) => Event::ParametersActivated {
            proposal_id: activated.proposal_id,
            parameters: parameters_from_pb(required(activated.parameters, "parameters")?)?,
            activation_round: activated.activation_round,
        },
        Kind::RoundOpened(opened) => Event::RoundOpened(RoundPins {
            round: opened.round,
            plugins: opened
                .plugins
                .iter()
                .map(|pinned| pinned_from_pb(pinned.kind, &pinned.wasm_hash))
                .collect::<Result<_, _>>()?,
            parameters: parameters_from_pb(required(opened.parameters, "parameters")?)?,
            plan: opened
                .plan
                .map(|plan| {
                    Ok::<_, DecodeError>(RoundPlan {
                        expert: plan.expert,
                        pool_id: plan.pool_id,
                        seed: array(&plan.seed, "seed")?,
                        nodes: keys(&plan.nodes, "nodes")?,
                        committee: keys(&plan.committee, "committee")?,
                        burns: u128_required(plan.burns, "burns")?,
                        reward_pool: u128_required(plan.reward_pool, "reward_pool")?,
                        model_versions: plan.model_versions,
                    })
                })
                .transpose()?,
        }),
        Kind::PluginFallback(fallback) => {
            let kind = plugin_kind_from_pb(fallback.kind)?;
            let used_hash = array(&fallback.used_hash, "used_hash")?;
            let used_module = (!fallback.used_wasm.is_empty())
                .then(|| PluginModule::new(kind, fallback.used_wasm))
                .map(|module| {
                    if module.hash == used_hash {
                        Ok(module)
                    } else {
                        Err(DecodeError("used_wasm does not hash to used_hash".into()))
                    }
                })
                .transpose()?;
            Event::PluginFallback(PluginFallback {
                round: fallback.round,
                kind,
                failed_hash: array(&fallback.failed_hash, "failed_hash")?,
                reason_code: fallback.reason_code,
                reason: fallback.reason,
                used_hash,
                used_module,
            })
        }
        Kind::PoolRegistered(registered) => {
            // The items are the cause's: the log stores them once.
            let items = match command.as_ref().map(|cause| decode_command(&cause.body)) {
                Some(Ok(Command {
                    action: Action::RegisterPool(pool),
                    ..
                })) => pool.items,
                _ => {
                    return Err(DecodeError(
                        "a pool registration's cause must be a RegisterPool command".into(),
                    ));
                }
            };
            if items.len() != registered.item_count as usize {
                return Err(DecodeError(
                    "item_count is not the number of the cause's items".into(),
                ));
            }
            Event::PoolRegistered {
                pool_id: registered.pool_id,
                curator: key(&registered.curator, "curator")?,
                pool: PoolSpec {
                    name: registered.name,
                    items,
                },
                merkle_root: array(&registered.merkle_root, "merkle_root")?,
            }
        }
        Kind::ValidatorProposed(proposed) => Event::ValidatorProposed {
            proposal_id: proposed.proposal_id,
            proposer: key(&proposed.proposer, "proposer")?,
            validator: key(&proposed.validator, "validator")?,
            admit: proposed.admit,
            activation_round: proposed.activation_round,
        },
        Kind::ValidatorChanged(changed) => Event::ValidatorChanged {
            proposal_id: changed.proposal_id,
            validator: key(&changed.validator, "validator")?,
            admit: changed.admit,
        },
        Kind::AssignmentsMade(made) => {
            let nodes = keys(&made.nodes, "nodes")?;
            if nodes.len() != made.starts.len() || nodes.len() != made.counts.len() {
                return Err(DecodeError(
                    "an assignment's nodes, starts and counts differ in length".into(),
                ));
            }
            Event::AssignmentsMade {
                round: made.round,
                shards: nodes
                    .into_iter()
                    .zip(made.starts)
                    .zip(made.counts)
                    .map(|((node, start), count)| Shard { node, start, count })
                    .collect(),
                merkle_root: array(&made.merkle_root, "merkle_root")?,
                deadline_ms: made.deadline_ms,
            }
        }
        Kind::DeltaCommitted(committed) => Event::DeltaCommitted {
            round: committed.round,
            node: key(&committed.node, "node")?,
            commitment: array(&committed.commitment, "commitment")?,
        },
        Kind::DeltaRevealed(revealed) => Event::DeltaRevealed {
            node: key(&revealed.node, "node")?,
            reveal: Reveal {
                round: revealed.round,
                delta_hash: array(&revealed.delta_hash, "delta_hash")?,
                salt: array(&revealed.salt, "salt")?,
                delta_bytes: revealed.delta_bytes,
            },
        },
        Kind::PhaseStarted(started) => Event::PhaseStarted {
            round: started.round,
            phase: phase_from_pb(started.phase)?,
            deadline_ms: started.deadline_ms,
        },
        Kind::MeasurementsSubmitted(submitted) => Event::MeasurementsSubmitted {
            round: submitted.round,
            validator: key(&submitted.validator, "validator")?,
            values: submitted.values,
        },
        Kind::ScoresRecorded(recorded) => Event::ScoresRecorded {
            round: recorded.round,
            scores: recorded.scores,
            merkle_root: array(&recorded.merkle_root, "merkle_root")?,
        },
        Kind::RoundFinalized(finalized) => Event::RoundFinalized(RoundOutcome {
            round: finalized.round,
            nodes: finalized
                .nodes
                .into_iter()
                .map(|payout| {
                    Ok(Payout {
                        key: key(&payout.key, "payout key")?,
                        amount: u128_required(payout.amount, "amount")?,
                    })
                })
                .collect::<Result<_, DecodeError>>()?,
            validators: finalized
                .validators
                .into_iter()
                .map(|outcome| {
                    Ok(ValidatorOutcome {
                        validator: key(&outcome.validator, "validator")?,
                        agreed: outcome.agreed,
                        disagreed: outcome.disagreed,
                        reward: u128_required(outcome.reward, "reward")?,
                        reputation: outcome.reputation,
                    })
                })
                .collect::<Result<_, DecodeError>>()?,
            rewards_root: array(&finalized.rewards_root, "rewards_root")?,
            accepted: hashes(&finalized.accepted, "accepted")?,
            carried: u128_required(finalized.carried, "carried")?,
        }),
        Kind::RoundAborted(aborted) => Event::RoundAborted {
            round: aborted.round,
            reason: aborted.reason,
            carried: u128_required(aborted.carried, "carried")?,
        },
        Kind::ExpertUpdated(updated) => Event::ExpertUpdated(ExpertUpdate {
            round: updated.round,
            expert: updated.expert,
            version: updated.version,
            parent_hash: array(&updated.parent_hash, "parent_hash")?,
            weights_hash: array(&updated.weights_hash, "weights_hash")?,
            weights_bytes: updated.weights_bytes,
            merged: hashes(&updated.merged, "merged")?,
            parent_held_out_loss: updated.parent_held_out_loss,
            held_out_loss: updated.held_out_loss,
        }),
        Kind::LivenessWindowClosed(closed) => Event::LivenessWindowClosed(LivenessWindow {
            window: closed.window,
            closed_ms: closed.closed_ms,
            live: closed.live,
            heartbeats_root: array(&closed.heartbeats_root, "heartbeats_root")?,
            blob: array(&closed.blob, "blob")?,
        }),
    };
    let cause = match (command, server_input) {
        (Some(_), Some(_)) => {
            return Err(DecodeError(
                "an event has one cause: a command or a server input, not both".into(),
            ));
        }
        (Some(command), None) => Cause::Command(command),
        (None, Some(input)) => Cause::Server(server_input_from_pb(input, &event)?),
        // Logs written before server inputs existed left the genesis's and the
        // checkpoints' out.
        (None, None) => match &event {
            Event::GenesisCreated(genesis) => Cause::Server(ServerInput::Genesis(genesis.clone())),
            Event::CheckpointCreated(checkpoint) => Cause::Server(ServerInput::Checkpoint {
                merkle_root: checkpoint.merkle_root,
                signature: checkpoint.signature,
            }),
            _ => Cause::FollowUp,
        },
    };
    Ok(LoggedEvent { cause, event })
}

/// `event` is the input's own event: a genesis input is stored as its event.
fn server_input_from_pb(
    message: pb::ServerInput,
    event: &Event,
) -> Result<ServerInput, DecodeError> {
    use pb::server_input::Kind;
    Ok(match required(message.kind, "server input kind")? {
        Kind::Genesis(pb::GenesisInput {}) => match event {
            Event::GenesisCreated(genesis) => ServerInput::Genesis(genesis.clone()),
            _ => {
                return Err(DecodeError(
                    "a genesis input's event must be the genesis".into(),
                ));
            }
        },
        Kind::Checkpoint(checkpoint) => ServerInput::Checkpoint {
            merkle_root: array(&checkpoint.merkle_root, "merkle_root")?,
            signature: array(&checkpoint.signature, "signature")?,
        },
        Kind::ExpertUpdate(pb::ExpertUpdateInput {}) => match event {
            Event::ExpertUpdated(update) => ServerInput::UpdateExpert(update.clone()),
            _ => {
                return Err(DecodeError(
                    "an expert update input's event must be the update".into(),
                ));
            }
        },
        Kind::LivenessWindow(pb::LivenessWindowInput {}) => match event {
            Event::LivenessWindowClosed(window) => ServerInput::CloseLivenessWindow(window.clone()),
            _ => {
                return Err(DecodeError(
                    "a liveness window input's event must be the window".into(),
                ));
            }
        },
        Kind::Tick(tick) => ServerInput::Tick {
            time_ms: tick.time_ms,
        },
        Kind::OpenRound(open) => ServerInput::OpenRound { round: open.round },
        Kind::PolicyResult(result) => {
            let kind = plugin_kind_from_pb(result.kind)?;
            let module_hash = array(&result.module_hash, "module_hash")?;
            let unstored_module = (!result.unstored_wasm.is_empty())
                .then(|| PluginModule::new(kind, result.unstored_wasm))
                .map(|module| {
                    if module.hash == module_hash {
                        Ok(module)
                    } else {
                        Err(DecodeError(
                            "unstored_wasm does not hash to module_hash".into(),
                        ))
                    }
                })
                .transpose()?;
            ServerInput::PolicyResult(PolicyResult {
                round: result.round,
                kind,
                module_hash,
                output: result.output,
                failures: result
                    .failures
                    .into_iter()
                    .map(|failure| {
                        Ok(PolicyFailure {
                            hash: array(&failure.hash, "failure hash")?,
                            reason_code: failure.reason_code,
                            reason: failure.reason,
                        })
                    })
                    .collect::<Result<_, DecodeError>>()?,
                unstored_module,
            })
        }
    })
}

fn server_input_to_pb(input: &ServerInput) -> pb::ServerInput {
    use pb::server_input::Kind;
    let kind = match input {
        ServerInput::Genesis(_) => Kind::Genesis(pb::GenesisInput {}),
        ServerInput::Checkpoint {
            merkle_root,
            signature,
        } => Kind::Checkpoint(pb::CheckpointInput {
            merkle_root: merkle_root.to_vec(),
            signature: signature.to_vec(),
        }),
        ServerInput::Tick { time_ms } => Kind::Tick(pb::TickInput { time_ms: *time_ms }),
        ServerInput::OpenRound { round } => Kind::OpenRound(pb::OpenRoundInput { round: *round }),
        ServerInput::UpdateExpert(_) => Kind::ExpertUpdate(pb::ExpertUpdateInput {}),
        ServerInput::CloseLivenessWindow(_) => Kind::LivenessWindow(pb::LivenessWindowInput {}),
        ServerInput::PolicyResult(result) => Kind::PolicyResult(pb::PolicyResultInput {
            round: result.round,
            kind: result.kind.to_pb().into(),
            module_hash: result.module_hash.to_vec(),
            output: result.output.clone(),
            failures: result
                .failures
                .iter()
                .map(|failure| pb::PolicyFailure {
                    hash: failure.hash.to_vec(),
                    reason_code: failure.reason_code.clone(),
                    reason: failure.reason.clone(),
                })
                .collect(),
            unstored_wasm: result
                .unstored_module
                .as_ref()
                .map_or_else(Vec::new, |module| module.wasm.to_vec()),
        }),
    };
    pb::ServerInput { kind: Some(kind) }
}

pub fn encode_logged_event(logged: &LoggedEvent) -> Vec<u8> {
    use pb::event::Kind;
    let kind = match &logged.event {
        Event::GenesisCreated(genesis) => Kind::GenesisCreated(pb::GenesisCreatedV1 {
            network_id: genesis.network_id.clone(),
            operator_key: genesis.operator_key.0.to_vec(),
            burn_oracle_key: genesis.burn_oracle_key.0.to_vec(),
            governance_keys: genesis
                .governance_keys
                .iter()
                .map(|key| key.0.to_vec())
                .collect(),
            governance_threshold: genesis.governance_threshold,
            curator_keys: genesis
                .curator_keys
                .iter()
                .map(|key| key.0.to_vec())
                .collect(),
            parameters: Some(parameters_to_pb(&genesis.parameters)),
            plugins: genesis
                .plugins
                .iter()
                .map(|module| pb::PluginModule {
                    kind: module.kind.to_pb().into(),
                    wasm: module.wasm.to_vec(),
                })
                .collect(),
            model: genesis.model.as_ref().map(|model| pb::ModelSpec {
                inputs: model.inputs,
                hidden: model.hidden,
                outputs: model.outputs,
                experts: model.experts,
                seed: model.seed,
                shared_hash: model.shared_hash.to_vec(),
                expert_hashes: model.expert_hashes.iter().flatten().copied().collect(),
            }),
        }),
        Event::NodeRegistered {
            node,
            capabilities,
            time_ms,
        } => Kind::NodeRegistered(pb::NodeRegisteredV1 {
            node: node.0.to_vec(),
            capabilities: Some(capabilities_to_pb(capabilities)),
            time_ms: *time_ms,
        }),
        Event::HeartbeatRecorded { node, time_ms } => {
            Kind::HeartbeatRecorded(pb::HeartbeatRecordedV1 {
                node: node.0.to_vec(),
                time_ms: *time_ms,
            })
        }
        Event::BurnRecorded { burn, time_ms } => Kind::BurnRecorded(pb::BurnRecordedV1 {
            chain_tx_id: burn.chain_tx_id.clone(),
            burner: burn.burner.clone(),
            amount: Some(u128_to_pb(burn.amount)),
            time_ms: *time_ms,
        }),
        Event::CheckpointCreated(checkpoint) => Kind::CheckpointCreated(pb::CheckpointCreatedV1 {
            tree_size: checkpoint.tree_size,
            merkle_root: checkpoint.merkle_root.to_vec(),
            signature: checkpoint.signature.to_vec(),
        }),
        Event::PluginProposed {
            proposal_id,
            proposer,
            module,
            activation_round,
        } => Kind::PluginProposed(pb::PluginProposedV1 {
            proposal_id: *proposal_id,
            proposer: proposer.0.to_vec(),
            kind: module.kind.to_pb().into(),
            wasm_hash: module.hash.to_vec(),
            activation_round: *activation_round,
        }),
        Event::ParametersProposed {
            proposal_id,
            proposer,
            parameters,
            activation_round,
        } => Kind::ParametersProposed(pb::ParametersProposedV1 {
            proposal_id: *proposal_id,
            proposer: proposer.0.to_vec(),
            parameters: Some(parameters_to_pb(parameters)),
            activation_round: *activation_round,
        }),
        Event::ProposalApproved {
            proposal_id,
            approver,
            approvals,
        } => Kind::ProposalApproved(pb::ProposalApprovedV1 {
            proposal_id: *proposal_id,
            approver: approver.0.to_vec(),
            approvals: *approvals,
        }),
        Event::PluginActivated {
            proposal_id,
            kind,
            hash,
            activation_round,
        } => Kind::PluginActivated(pb::PluginActivatedV1 {
            proposal_id: *proposal_id,
            kind: kind.to_pb().into(),
            wasm_hash: hash.to_vec(),
            activation_round: *activation_round,
        }),
        Event::ParametersActivated {
            proposal_id,
            parameters,
            activation_round,
        } => Kind::ParametersActivated(pb::ParametersActivatedV1 {
            proposal_id: *proposal_id,
            parameters: Some(parameters_to_pb(parameters)),
            activation_round: *activation_round,
        }),
        Event::RoundOpened(pins) => Kind::RoundOpened(pb::RoundOpenedV1 {
            round: pins.round,
            plugins: pins
                .plugins
                .iter()
                .map(|pinned| pb::PinnedPlugin {
                    kind: pinned.kind.to_pb().into(),
                    wasm_hash: pinned.hash.to_vec(),
                })
                .collect(),
            parameters: Some(parameters_to_pb(&pins.parameters)),
            plan: pins.plan.as_ref().map(|plan| pb::RoundPlan {
                expert: plan.expert,
                pool_id: plan.pool_id,
                seed: plan.seed.to_vec(),
                nodes: keys_to_pb(&plan.nodes),
                committee: keys_to_pb(&plan.committee),
                burns: Some(u128_to_pb(plan.burns)),
                reward_pool: Some(u128_to_pb(plan.reward_pool)),
                model_versions: plan.model_versions.clone(),
            }),
        }),
        Event::PluginFallback(fallback) => Kind::PluginFallback(pb::PluginFallbackV1 {
            round: fallback.round,
            kind: fallback.kind.to_pb().into(),
            failed_hash: fallback.failed_hash.to_vec(),
            reason_code: fallback.reason_code.clone(),
            reason: fallback.reason.clone(),
            used_hash: fallback.used_hash.to_vec(),
            // The module is of the fallback's kind, as decoding rebuilds it.
            used_wasm: fallback
                .used_module
                .as_ref()
                .map_or_else(Vec::new, |module| {
                    debug_assert_eq!(module.kind, fallback.kind);
                    module.wasm.to_vec()
                }),
        }),
        Event::PoolRegistered {
            pool_id,
            curator,
            pool,
            merkle_root,
        } => {
            debug_assert!(
                matches!(
                    logged.cause.command().map(|cause| decode_command(&cause.body)),
                    Some(Ok(Command { action: Action::RegisterPool(ref spec), .. })) if spec == pool
                ),
                "a pool's items are its cause's"
            );
            Kind::PoolRegistered(pb::PoolRegisteredV1 {
                pool_id: *pool_id,
                curator: curator.0.to_vec(),
                name: pool.name.clone(),
                item_count: pool.items.len() as u32,
                merkle_root: merkle_root.to_vec(),
            })
        }
        Event::ValidatorProposed {
            proposal_id,
            proposer,
            validator,
            admit,
            activation_round,
        } => Kind::ValidatorProposed(pb::ValidatorProposedV1 {
            proposal_id: *proposal_id,
            proposer: proposer.0.to_vec(),
            validator: validator.0.to_vec(),
            admit: *admit,
            activation_round: *activation_round,
        }),
        Event::ValidatorChanged {
            proposal_id,
            validator,
            admit,
        } => Kind::ValidatorChanged(pb::ValidatorChangedV1 {
            proposal_id: *proposal_id,
            validator: validator.0.to_vec(),
            admit: *admit,
        }),
        Event::AssignmentsMade {
            round,
            shards,
            merkle_root,
            deadline_ms,
        } => Kind::AssignmentsMade(pb::AssignmentsMadeV1 {
            round: *round,
            nodes: shards.iter().flat_map(|shard| shard.node.0).collect(),
            starts: shards.iter().map(|shard| shard.start).collect(),
            counts: shards.iter().map(|shard| shard.count).collect(),
            merkle_root: merkle_root.to_vec(),
            deadline_ms: *deadline_ms,
        }),
        Event::DeltaCommitted {
            round,
            node,
            commitment,
        } => Kind::DeltaCommitted(pb::DeltaCommittedV1 {
            round: *round,
            node: node.0.to_vec(),
            commitment: commitment.to_vec(),
        }),
        Event::DeltaRevealed { node, reveal } => Kind::DeltaRevealed(pb::DeltaRevealedV1 {
            round: reveal.round,
            node: node.0.to_vec(),
            delta_hash: reveal.delta_hash.to_vec(),
            salt: reveal.salt.to_vec(),
            delta_bytes: reveal.delta_bytes,
        }),
        Event::PhaseStarted {
            round,
            phase,
            deadline_ms,
        } => Kind::PhaseStarted(pb::PhaseStartedV1 {
            round: *round,
            phase: phase_to_pb(*phase).into(),
            deadline_ms: *deadline_ms,
        }),
        Event::MeasurementsSubmitted {
            round,
            validator,
            values,
        } => Kind::MeasurementsSubmitted(pb::MeasurementsSubmittedV1 {
            round: *round,
            validator: validator.0.to_vec(),
            values: values.clone(),
        }),
        Event::ScoresRecorded {
            round,
            scores,
            merkle_root,
        } => Kind::ScoresRecorded(pb::ScoresRecordedV1 {
            round: *round,
            scores: scores.clone(),
            merkle_root: merkle_root.to_vec(),
        }),
        Event::RoundFinalized(outcome) => Kind::RoundFinalized(pb::RoundFinalizedV1 {
            round: outcome.round,
            nodes: outcome
                .nodes
                .iter()
                .map(|payout| pb::Payout {
                    key: payout.key.0.to_vec(),
                    amount: Some(u128_to_pb(payout.amount)),
                })
                .collect(),
            validators: outcome
                .validators
                .iter()
                .map(|validator| pb::ValidatorOutcome {
                    validator: validator.validator.0.to_vec(),
                    agreed: validator.agreed,
                    disagreed: validator.disagreed,
                    reward: Some(u128_to_pb(validator.reward)),
                    reputation: validator.reputation,
                })
                .collect(),
            rewards_root: outcome.rewards_root.to_vec(),
            accepted: outcome.accepted.iter().flatten().copied().collect(),
            carried: Some(u128_to_pb(outcome.carried)),
        }),
        Event::RoundAborted {
            round,
            reason,
            carried,
        } => Kind::RoundAborted(pb::RoundAbortedV1 {
            round: *round,
            reason: reason.clone(),
            carried: Some(u128_to_pb(*carried)),
        }),
        Event::ExpertUpdated(update) => Kind::ExpertUpdated(pb::ExpertUpdatedV1 {
            round: update.round,
            expert: update.expert,
            version: update.version,
            parent_hash: update.parent_hash.to_vec(),
            weights_hash: update.weights_hash.to_vec(),
            weights_bytes: update.weights_bytes,
            merged: update.merged.iter().flatten().copied().collect(),
            parent_held_out_loss: update.parent_held_out_loss,
            held_out_loss: update.held_out_loss,
        }),
        Event::LivenessWindowClosed(window) => {
            Kind::LivenessWindowClosed(pb::LivenessWindowClosedV1 {
                window: window.window,
                closed_ms: window.closed_ms,
                live: window.live.clone(),
                heartbeats_root: window.heartbeats_root.to_vec(),
                blob: window.blob.to_vec(),
            })
        }
    };
    let (cause, server_input) = match &logged.cause {
        Cause::Command(command) => (Some(signed_command_to_pb(command)), None),
        Cause::Server(input) => {
            debug_assert!(
                !matches!(input, ServerInput::Genesis(genesis) if logged.event != Event::GenesisCreated(genesis.clone())),
                "a genesis input is stored as its event"
            );
            debug_assert!(
                !matches!(input, ServerInput::UpdateExpert(update) if logged.event != Event::ExpertUpdated(update.clone())),
                "an expert update input is stored as its event"
            );
            debug_assert!(
                !matches!(input, ServerInput::CloseLivenessWindow(window) if logged.event != Event::LivenessWindowClosed(window.clone())),
                "a liveness window input is stored as its event"
            );
            (None, Some(server_input_to_pb(input)))
        }
        Cause::FollowUp => (None, None),
    };
    pb::Event {
        cause,
        server_input,
        kind: Some(kind),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u128_round_trips_at_the_edges() {
        for value in [
            0,
            1,
            u128::from(u64::MAX),
            u128::from(u64::MAX) + 1,
            u128::MAX,
        ] {
            assert_eq!(u128_from_pb(&u128_to_pb(value)), value);
        }
    }

    #[test]
    fn logged_event_round_trips() {
        let logged = LoggedEvent {
            cause: Cause::Command(SignedCommand {
                body: vec![1, 2, 3],
                signer: PublicKey([9; 32]),
                signature: [4; 64],
            }),
            event: Event::BurnRecorded {
                burn: Burn {
                    chain_tx_id: "0xabc".into(),
                    burner: "0xdef".into(),
                    amount: u128::MAX - 5,
                },
                time_ms: 77,
            },
        };
        assert_eq!(
            decode_logged_event(&encode_logged_event(&logged)),
            Ok(logged)
        );
    }

    #[test]
    fn a_fallback_carries_the_module_it_stores_and_only_one_that_matches_its_hash() {
        let module = PluginModule::new(PluginKind::Reward, &b"\0asm\x01\0\0\0"[..]);
        let fallback = PluginFallback {
            round: 3,
            kind: PluginKind::Reward,
            failed_hash: [1; 32],
            reason_code: "plugin_trap".into(),
            reason: "unreachable".into(),
            used_hash: module.hash,
            used_module: Some(module),
        };
        for used_module in [fallback.used_module.clone(), None] {
            let logged = LoggedEvent {
                cause: Cause::FollowUp,
                event: Event::PluginFallback(PluginFallback {
                    used_module,
                    ..fallback.clone()
                }),
            };
            assert_eq!(
                decode_logged_event(&encode_logged_event(&logged)),
                Ok(logged)
            );
        }
        let mut message = pb::Event::decode(
            &encode_logged_event(&LoggedEvent {
                cause: Cause::FollowUp,
                event: Event::PluginFallback(fallback),
            })[..],
        )
        .unwrap();
        let Some(pb::event::Kind::PluginFallback(encoded)) = &mut message.kind else {
            panic!("{message:?}")
        };
        encoded.used_wasm.push(0);
        let error = decode_logged_event(&message.encode_to_vec()).unwrap_err();
        assert!(error.0.contains("does not hash to used_hash"), "{error}");
    }

    #[test]
    fn short_signer_is_a_decode_error() {
        let message = pb::SignedCommand {
            body: vec![],
            signer: vec![1; 31],
            signature: vec![0; 64],
        };
        let error = decode_signed_command(&message.encode_to_vec()).unwrap_err();
        assert!(error.0.contains("signer must be 32 bytes"), "{error}");
    }
}
