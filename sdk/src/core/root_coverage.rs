//! The state root covers the whole state: a change to any one field of a state,
//! however deep, changes its root.
//!
//! [`every_field`] destructures every struct of the state without `..`, so a field
//! added to the state does not compile until it has a mutation here too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;

use super::State;
use super::burns::{BurnEntry, Burns};
use super::experts::{ExpertVersion, Experts};
use super::governance::{Activation, Governance, Proposal, StoredPlugin, Subject};
use super::hashed::{HashedMap, RootHash};
use super::pools::{Pool, Pools};
use super::registry::{Liveness, Node, Registry};
use super::rounds::{Commit, Progress, Revealed, Round, Rounds, Submission};
use super::validators::{Validator, Validators};
use crate::crypto::PublicKey;
use crate::model::{
    Capabilities, Checkpoint, Genesis, LivenessWindow, ModelSpec, Parameters, Payout, Phase,
    PinnedPlugin, PluginFallback, PluginKind, PluginModule, PoolItem, RoundOutcome, RoundPins,
    RoundPlan, Shard, ValidatorOutcome,
};

fn key(byte: u8) -> PublicKey {
    PublicKey([byte; 32])
}

fn module(kind: PluginKind, tag: u8) -> PluginModule {
    PluginModule::new(kind, vec![0, b'a', b's', b'm', 1, 0, 0, 0, tag])
}

fn stored(module: &PluginModule) -> StoredPlugin {
    StoredPlugin {
        kind: module.kind,
        bytes: module.wasm.len(),
        stored_seq: 0,
    }
}

/// A state in which every collection holds an entry and every option is set.
fn base() -> State {
    let scoring = module(PluginKind::Scoring, 1);
    let pinned = module(PluginKind::Scoring, 2);
    let genesis = Genesis {
        network_id: "net".into(),
        operator_key: key(1),
        burn_oracle_key: key(2),
        governance_keys: vec![key(3)],
        governance_threshold: 1,
        curator_keys: vec![key(4)],
        parameters: Parameters::default(),
        plugins: vec![scoring.clone()],
        model: Some(ModelSpec {
            expert_hashes: vec![[20; 32]],
            shared_hash: [21; 32],
            ..ModelSpec::default_size(3)
        }),
    };
    State {
        genesis: Some(Arc::new(genesis)),
        registry: Registry {
            nodes: HashedMap::from_iter([(
                key(9),
                Node {
                    capabilities: Capabilities {
                        gpu_model: "H100".into(),
                        vram_mib: 80,
                        experts: vec![0, 3],
                        endpoint: "https://n".into(),
                    },
                    registered_seq: 1,
                    registered_ms: 10,
                    last_heartbeat_ms: 20,
                    index: 0,
                },
            )]),
            liveness: Liveness {
                open: 4,
                opened_ms: 40,
                recent: vec![LivenessWindow {
                    window: 3,
                    closed_ms: 40,
                    live: vec![1],
                    heartbeats_root: [5; 32],
                    blob: [6; 32],
                }],
            },
        },
        burns: Burns {
            entries: HashedMap::from_iter([(
                "tx".to_string(),
                BurnEntry {
                    burner: "0xb".into(),
                    amount: 5,
                    seq: 2,
                    time_ms: 30,
                },
            )]),
            total: 5,
        },
        checkpoint_last: Some(Checkpoint {
            tree_size: 3,
            merkle_root: [4; 32],
            signature: [5; 64],
        }),
        governance: Governance {
            parameters: Parameters::default(),
            plugins: HashedMap::from_iter([
                (scoring.hash, stored(&scoring)),
                (pinned.hash, stored(&pinned)),
            ]),
            plugin_activations: BTreeMap::from([(
                PluginKind::Scoring,
                vec![Activation {
                    activation_round: 1,
                    seq: 0,
                    value: scoring.hash,
                }],
            )]),
            parameter_activations: vec![Activation {
                activation_round: 1,
                seq: 0,
                value: Parameters::default(),
            }],
            proposals: HashedMap::from_iter([(
                1,
                Proposal {
                    proposer: key(3),
                    subject: Subject::Plugin {
                        kind: PluginKind::Scoring,
                        hash: pinned.hash,
                    },
                    activation_round: 1,
                    approvals: BTreeSet::from([key(3)]),
                    proposed_seq: 4,
                    activated_seq: Some(6),
                },
            )]),
            round: Some(RoundPins {
                round: 1,
                plugins: vec![PinnedPlugin {
                    kind: PluginKind::Scoring,
                    hash: pinned.hash,
                }],
                parameters: Parameters::default(),
                plan: None,
            }),
            pinned_history: BTreeMap::from([(PluginKind::Scoring, vec![scoring.hash])]),
            fallbacks: HashedMap::from_iter([(
                8,
                PluginFallback {
                    round: 1,
                    kind: PluginKind::Scoring,
                    failed_hash: pinned.hash,
                    reason_code: "plugin_trap".into(),
                    reason: "unreachable".into(),
                    used_hash: scoring.hash,
                    used_module: Some(scoring.clone()),
                },
            )]),
        },
        pools: Pools {
            pools: HashedMap::from_iter([(
                1,
                Pool {
                    curator: key(4),
                    name: "pool".into(),
                    items: vec![PoolItem {
                        bytes: 10,
                        checksum: [5; 32],
                        held_out: false,
                    }]
                    .into(),
                    training: vec![0].into(),
                    merkle_root: [6; 32],
                    registered_seq: 3,
                },
            )]),
        },
        validators: Validators {
            admitted: HashedMap::from_iter([(
                key(5),
                Validator {
                    reputation: 1_000,
                    admitted_seq: 4,
                },
            )]),
        },
        rounds: Rounds {
            rounds: HashedMap::from_iter([(
                1,
                Round {
                    pins: RoundPins {
                        round: 1,
                        plugins: vec![PinnedPlugin {
                            kind: PluginKind::Scoring,
                            hash: pinned.hash,
                        }],
                        parameters: Parameters::default(),
                        plan: None,
                    },
                    plan: Arc::new(RoundPlan {
                        expert: 0,
                        pool_id: 1,
                        seed: [7; 32],
                        nodes: vec![key(9)],
                        committee: vec![key(5)],
                        burns: 5,
                        reward_pool: 4,
                        model_versions: vec![0],
                    }),
                    phase: Phase::Finalized,
                    deadline_ms: 50,
                    opened_seq: 7,
                    assignments_seq: 8,
                    scores_seq: 10,
                    ended_seq: 12,
                    shards: vec![Shard {
                        node: key(9),
                        start: 0,
                        count: 1,
                    }]
                    .into(),
                    assignments_root: [8; 32],
                    deltas: vec![key(9)].into(),
                    tasks: vec![vec![0]].into(),
                    scores: vec![3].into(),
                    scores_root: [9; 32],
                    outcome: Some(Arc::new(RoundOutcome {
                        round: 1,
                        nodes: vec![Payout {
                            key: key(9),
                            amount: 3,
                        }],
                        validators: vec![ValidatorOutcome {
                            validator: key(5),
                            agreed: 1,
                            disagreed: 0,
                            reward: 1,
                            reputation: 1_001,
                        }],
                        rewards_root: [10; 32],
                        accepted: vec![[11; 32]],
                        carried: 0,
                    })),
                    abort_reason: Some("none".into()),
                },
            )]),
            progress: HashedMap::from_iter([(
                1,
                Progress {
                    commits: 1,
                    reveals: 1,
                    submissions: 1,
                },
            )]),
            commits: HashedMap::from_iter([(
                (1, key(9)),
                Commit {
                    commitment: [12; 32],
                    seq: 8,
                },
            )]),
            reveals: HashedMap::from_iter([(
                (1, key(9)),
                Revealed {
                    delta_hash: [11; 32],
                    salt: [13; 32],
                    delta_bytes: 100,
                    seq: 9,
                },
            )]),
            revealed_hashes: HashedMap::from_iter([((1, [11; 32]), key(9))]),
            submissions: HashedMap::from_iter([(
                (1, key(5)),
                Submission {
                    values: vec![7],
                    seq: 10,
                },
            )]),
            live: BTreeMap::from([(1, 1)]),
            expert_last: Some(0),
            burns_consumed: 5,
            accrued: 4,
            paid: 4,
            carried: 1,
        },
        experts: Experts {
            versions: HashedMap::from_iter([(
                (0, 1),
                ExpertVersion {
                    round: 1,
                    parent_hash: [20; 32],
                    weights_hash: [22; 32],
                    weights_bytes: 100,
                    merged: 1,
                    parent_held_out_loss: 50,
                    held_out_loss: 40,
                    seq: 13,
                },
            )]),
            heads: HashedMap::from_iter([(0, 1)]),
            owed: BTreeMap::from([(2, 1)]),
        },
        round_ended: true,
        events_applied: 9,
    }
}

/// Every field of `Parameters`, by index; `None` past the last.
fn mutate_parameters(parameters: &mut Parameters, field: usize, by: u64) -> Option<()> {
    let Parameters {
        heartbeat_timeout_ms,
        round_burn_threshold,
        checkpoint_interval_events,
        validator_quorum,
        commit_deadline_ms,
        reveal_deadline_ms,
        reward_share_bps,
        max_score,
        model_experts,
        liveness_window_ms,
        nodes_per_round_min,
        validators_per_round,
        validators_per_delta,
        scored_deltas_min,
        validator_reward_bps,
        validate_deadline_ms,
        delta_bytes_max,
    } = parameters;
    match field {
        0 => *heartbeat_timeout_ms = heartbeat_timeout_ms.wrapping_add(by),
        1 => *round_burn_threshold = round_burn_threshold.wrapping_add(u128::from(by)),
        2 => *checkpoint_interval_events = checkpoint_interval_events.wrapping_add(by),
        3 => *validator_quorum = validator_quorum.wrapping_add(by as u32 | 1),
        4 => *commit_deadline_ms = commit_deadline_ms.wrapping_add(by),
        5 => *reveal_deadline_ms = reveal_deadline_ms.wrapping_add(by),
        6 => *reward_share_bps = reward_share_bps.wrapping_add(by as u32 | 1),
        7 => *max_score = max_score.wrapping_add(by),
        8 => *model_experts = model_experts.wrapping_add(by as u32 | 1),
        9 => *liveness_window_ms = liveness_window_ms.wrapping_add(by),
        10 => *nodes_per_round_min = nodes_per_round_min.wrapping_add(by as u32 | 1),
        11 => *validators_per_round = validators_per_round.wrapping_add(by as u32 | 1),
        12 => *validators_per_delta = validators_per_delta.wrapping_add(by as u32 | 1),
        13 => *scored_deltas_min = scored_deltas_min.wrapping_add(by as u32 | 1),
        14 => *validator_reward_bps = validator_reward_bps.wrapping_add(by as u32 | 1),
        15 => *validate_deadline_ms = validate_deadline_ms.wrapping_add(by),
        16 => *delta_bytes_max = delta_bytes_max.wrapping_add(by),
        _ => return None,
    }
    Some(())
}

const PARAMETERS: usize = 17;

/// The fields `every_field` changes one by one before the parameter sets.
const FIELDS: usize = 146;

/// Takes the first entry out of `map`, which must have one.
fn pop_first<K: Ord + Clone + RootHash, V: Clone + RootHash>(map: &mut HashedMap<K, V>) -> (K, V) {
    let key = map.first().expect("the base has an entry").0.clone();
    let value = map.remove(&key).expect("the first entry");
    (key, value)
}

/// Takes the last entry out of `map`, which must have one.
fn pop_last<K: Ord + Clone + RootHash, V: Clone + RootHash>(map: &mut HashedMap<K, V>) -> (K, V) {
    let key = map.last().expect("the base has an entry").0.clone();
    let value = map.remove(&key).expect("the last entry");
    (key, value)
}

/// Changes field number `field` of `state` by a non-zero `by`; `None` past the last.
fn every_field(state: &mut State, field: usize, by: u64) -> Option<()> {
    let byte = by as u8 | 1;
    let State {
        genesis,
        registry:
            Registry {
                nodes,
                liveness:
                    Liveness {
                        open: liveness_open,
                        opened_ms: liveness_opened_ms,
                        recent: liveness_recent,
                    },
            },
        burns: Burns { entries, total },
        checkpoint_last,
        governance:
            Governance {
                parameters,
                plugins,
                plugin_activations,
                parameter_activations,
                proposals,
                round,
                pinned_history,
                fallbacks,
            },
        pools: Pools { pools },
        validators: Validators { admitted },
        rounds:
            Rounds {
                rounds,
                progress,
                commits,
                reveals,
                revealed_hashes,
                submissions,
                live,
                expert_last,
                burns_consumed,
                accrued,
                paid,
                carried,
            },
        experts: Experts {
            versions,
            heads,
            owed,
        },
        round_ended,
        events_applied,
    } = state;
    let Genesis {
        network_id,
        operator_key,
        burn_oracle_key,
        governance_keys,
        governance_threshold,
        curator_keys,
        parameters: genesis_parameters,
        plugins: genesis_plugins,
        model,
    } = Arc::make_mut(genesis.as_mut().expect("the base has a genesis"));
    let ModelSpec {
        inputs,
        hidden,
        outputs,
        experts: model_experts,
        seed: model_seed,
        shared_hash,
        expert_hashes,
    } = model.as_mut().expect("the base has a model");
    let (mut version_key, mut version) = pop_first(versions);
    let ExpertVersion {
        round: version_round,
        parent_hash,
        weights_hash,
        weights_bytes,
        merged,
        parent_held_out_loss,
        held_out_loss,
        seq: version_seq,
    } = &mut version;
    let (mut head_key, mut head) = pop_first(heads);
    let (mut node_key, mut node) = pop_first(nodes);
    let Node {
        capabilities:
            Capabilities {
                gpu_model,
                vram_mib,
                experts,
                endpoint,
            },
        registered_seq,
        registered_ms,
        last_heartbeat_ms,
        index: node_index,
    } = &mut node;
    let LivenessWindow {
        window: recent_window,
        closed_ms: recent_closed_ms,
        live: recent_live,
        heartbeats_root: recent_root,
        blob: recent_blob,
    } = liveness_recent.first_mut().expect("the base has a window");
    let (mut tx, mut entry) = pop_first(entries);
    let BurnEntry {
        burner,
        amount,
        seq: burn_seq,
        time_ms: burn_time_ms,
    } = &mut entry;
    let Checkpoint {
        tree_size,
        merkle_root,
        signature,
    } = checkpoint_last.as_mut().expect("the base has a checkpoint");
    let (mut plugin_hash, mut plugin) = pop_last(plugins);
    // Derived, so not hashed: the module is named by its key, the blake3 hash of its
    // bytes, and `bytes` is their length.
    let StoredPlugin {
        kind: plugin_kind,
        bytes: _,
        stored_seq,
    } = &mut plugin;
    let activations = plugin_activations
        .get_mut(&PluginKind::Scoring)
        .expect("the base has an activation");
    let Activation {
        activation_round: plugin_activation_round,
        seq: plugin_activation_seq,
        value: plugin_activation_value,
    } = &mut activations[0];
    let Activation {
        activation_round: parameters_activation_round,
        seq: parameters_activation_seq,
        value: parameters_activation_value,
    } = &mut parameter_activations[0];
    let (mut proposal_id, mut proposal) = pop_first(proposals);
    let Proposal {
        proposer,
        subject,
        activation_round: proposal_round,
        approvals,
        proposed_seq,
        activated_seq,
    } = &mut proposal;
    let RoundPins {
        round: round_number,
        plugins: round_plugins,
        parameters: round_parameters,
        // Always `None` in governance: a round's plan lives with the round.
        plan: _,
    } = round.as_mut().expect("the base has a round");
    let (mut pool_id, mut pool) = pop_first(pools);
    let Pool {
        curator,
        name: pool_name,
        items: pool_items,
        training,
        merkle_root: pool_root,
        registered_seq: pool_seq,
    } = &mut pool;
    let (mut validator_key, mut validator) = pop_first(admitted);
    let Validator {
        reputation,
        admitted_seq,
    } = &mut validator;
    let (mut round_id, mut learning) = pop_first(rounds);
    let Round {
        pins: learning_pins,
        plan,
        phase,
        deadline_ms,
        opened_seq,
        assignments_seq,
        scores_seq,
        ended_seq,
        shards,
        assignments_root,
        deltas,
        // Derived from the deltas, the committee and the seed: not in the root.
        tasks: _,
        scores,
        scores_root,
        outcome,
        abort_reason,
    } = &mut learning;
    let RoundPlan {
        expert,
        pool_id: plan_pool,
        seed,
        nodes: plan_nodes,
        committee,
        burns: plan_burns,
        reward_pool,
        model_versions,
    } = Arc::make_mut(plan);
    let RoundOutcome {
        round: _,
        nodes: node_payouts,
        validators: validator_outcomes,
        rewards_root,
        accepted,
        carried: outcome_carried,
    } = Arc::make_mut(outcome.as_mut().expect("the base has an outcome"));
    let (mut progress_key, mut progress_entry) = pop_first(progress);
    let (mut commit_key, mut commit) = pop_first(commits);
    let (mut reveal_key, mut revealed) = pop_first(reveals);
    let (mut hash_key, mut hash_node) = pop_first(revealed_hashes);
    let (mut submission_key, mut submission) = pop_first(submissions);
    let history = pinned_history
        .get_mut(&PluginKind::Scoring)
        .expect("the base has a pinned history");
    let (mut fallback_seq, mut fallback) = pop_first(fallbacks);
    let PluginFallback {
        round: fallback_round,
        kind: fallback_kind,
        failed_hash,
        reason_code,
        reason,
        used_hash,
        // Derived, so not hashed: the module is stored in `plugins` under `used_hash`,
        // with the fallback's seq as its `stored_seq`.
        used_module: _,
    } = &mut fallback;

    let mut field = field;
    let mut next = || {
        field = field.wrapping_sub(1);
        field == usize::MAX
    };
    let flip = |bytes: &mut [u8]| bytes[0] ^= byte;
    if next() {
        *events_applied += by;
    } else if next() {
        network_id.push('x');
    } else if next() {
        flip(&mut operator_key.0);
    } else if next() {
        flip(&mut burn_oracle_key.0);
    } else if next() {
        governance_keys.push(key(byte));
    } else if next() {
        *governance_threshold = governance_threshold.wrapping_add(by as u32 | 1);
    } else if next() {
        genesis_plugins[0].kind = PluginKind::Reward;
    } else if next() {
        genesis_plugins[0] = module(PluginKind::Scoring, byte.wrapping_add(7));
    } else if next() {
        flip(&mut node_key.0);
    } else if next() {
        gpu_model.push('x');
    } else if next() {
        *vram_mib = vram_mib.wrapping_add(by as u32 | 1);
    } else if next() {
        experts.push(1_000);
    } else if next() {
        endpoint.push('x');
    } else if next() {
        *registered_seq += by;
    } else if next() {
        *registered_ms += by;
    } else if next() {
        *last_heartbeat_ms += by;
    } else if next() {
        *node_index += by;
    } else if next() {
        *liveness_open += by;
    } else if next() {
        *liveness_opened_ms += by;
    } else if next() {
        *recent_window += by;
    } else if next() {
        *recent_closed_ms += by;
    } else if next() {
        recent_live.push(byte);
    } else if next() {
        recent_root[0] ^= byte;
    } else if next() {
        recent_blob[0] ^= byte;
    } else if next() {
        tx.push('x');
    } else if next() {
        burner.push('x');
    } else if next() {
        *amount += u128::from(by);
    } else if next() {
        *burn_seq += by;
    } else if next() {
        *burn_time_ms += by;
    } else if next() {
        *total += u128::from(by);
    } else if next() {
        *tree_size += by;
    } else if next() {
        flip(merkle_root);
    } else if next() {
        flip(signature);
    } else if next() {
        flip(&mut plugin_hash);
    } else if next() {
        *plugin_kind = PluginKind::Reward;
    } else if next() {
        *stored_seq += by;
    } else if next() {
        *plugin_activation_round += by;
    } else if next() {
        *plugin_activation_seq += by;
    } else if next() {
        flip(plugin_activation_value);
    } else if next() {
        *parameters_activation_round += by;
    } else if next() {
        *parameters_activation_seq += by;
    } else if next() {
        proposal_id += by;
    } else if next() {
        flip(&mut proposer.0);
    } else if next() {
        *subject = Subject::Parameters(Parameters::default());
    } else if next() {
        *proposal_round += by;
    } else if next() {
        approvals.insert(key(byte.wrapping_add(100)));
    } else if next() {
        *proposed_seq += by;
    } else if next() {
        *activated_seq = None;
    } else if next() {
        *round_number += by;
    } else if next() {
        round_plugins[0].kind = PluginKind::Reward;
    } else if next() {
        flip(&mut round_plugins[0].hash);
    } else if next() {
        history.push([byte; 32]);
    } else if next() {
        fallback_seq += by;
    } else if next() {
        *fallback_round += by;
    } else if next() {
        *fallback_kind = PluginKind::Reward;
    } else if next() {
        flip(failed_hash);
    } else if next() {
        reason_code.push('x');
    } else if next() {
        reason.push('x');
    } else if next() {
        flip(used_hash);
    } else if next() {
        curator_keys.push(key(byte));
    } else if next() {
        pool_id += by;
    } else if next() {
        flip(&mut curator.0);
    } else if next() {
        pool_name.push('x');
    } else if next() {
        Arc::make_mut(pool_items)[0].bytes += by;
    } else if next() {
        flip(&mut Arc::make_mut(pool_items)[0].checksum);
    } else if next() {
        Arc::make_mut(pool_items)[0].held_out ^= true;
    } else if next() {
        *training = vec![0, 1].into();
    } else if next() {
        flip(pool_root);
    } else if next() {
        *pool_seq += by;
    } else if next() {
        flip(&mut validator_key.0);
    } else if next() {
        *reputation += by;
    } else if next() {
        *admitted_seq += by;
    } else if next() {
        round_id += by;
    } else if next() {
        learning_pins.round += by;
    } else if next() {
        flip(&mut learning_pins.plugins[0].hash);
    } else if next() {
        *expert += 1;
    } else if next() {
        *plan_pool += by;
    } else if next() {
        flip(seed);
    } else if next() {
        plan_nodes.push(key(byte));
    } else if next() {
        committee.push(key(byte));
    } else if next() {
        *plan_burns += u128::from(by);
    } else if next() {
        *reward_pool += u128::from(by);
    } else if next() {
        *phase = Phase::Aborted;
    } else if next() {
        *deadline_ms += by;
    } else if next() {
        *opened_seq += by;
    } else if next() {
        *assignments_seq += by;
    } else if next() {
        *scores_seq += by;
    } else if next() {
        *ended_seq += by;
    } else if next() {
        *shards = vec![Shard {
            node: key(9),
            start: by,
            count: 1,
        }]
        .into();
    } else if next() {
        flip(assignments_root);
    } else if next() {
        *deltas = vec![key(9), key(byte)].into();
    } else if next() {
        *scores = vec![3 + by].into();
    } else if next() {
        flip(scores_root);
    } else if next() {
        node_payouts[0].amount += u128::from(by);
    } else if next() {
        validator_outcomes[0].agreed += 1;
    } else if next() {
        validator_outcomes[0].disagreed += 1;
    } else if next() {
        validator_outcomes[0].reward += u128::from(by);
    } else if next() {
        validator_outcomes[0].reputation += by;
    } else if next() {
        flip(rewards_root);
    } else if next() {
        accepted.push([byte; 32]);
    } else if next() {
        *outcome_carried += u128::from(by);
    } else if next() {
        abort_reason.as_mut().expect("set").push('x');
    } else if next() {
        progress_key += by;
    } else if next() {
        progress_entry.commits += 1;
    } else if next() {
        progress_entry.reveals += 1;
    } else if next() {
        progress_entry.submissions += 1;
    } else if next() {
        flip(&mut commit_key.1.0);
    } else if next() {
        flip(&mut commit.commitment);
    } else if next() {
        commit.seq += by;
    } else if next() {
        flip(&mut reveal_key.1.0);
    } else if next() {
        flip(&mut revealed.delta_hash);
    } else if next() {
        flip(&mut revealed.salt);
    } else if next() {
        revealed.delta_bytes += by;
    } else if next() {
        revealed.seq += by;
    } else if next() {
        flip(&mut hash_key.1);
    } else if next() {
        flip(&mut hash_node.0);
    } else if next() {
        flip(&mut submission_key.1.0);
    } else if next() {
        submission.values.push(1);
    } else if next() {
        submission.seq += by;
    } else if next() {
        live.insert(2, 2);
    } else if next() {
        *expert_last = None;
    } else if next() {
        *burns_consumed += u128::from(by);
    } else if next() {
        *accrued += u128::from(by);
    } else if next() {
        *paid += u128::from(by);
    } else if next() {
        *carried += u128::from(by);
    } else if next() {
        *round_ended = false;
    } else if next() {
        *inputs += 1;
    } else if next() {
        *hidden += 1;
    } else if next() {
        *outputs += 1;
    } else if next() {
        *model_experts += 1;
    } else if next() {
        *model_seed += by;
    } else if next() {
        flip(shared_hash);
    } else if next() {
        expert_hashes.push([byte; 32]);
    } else if next() {
        model_versions.push(1);
    } else if next() {
        version_key.1 += by;
    } else if next() {
        *version_round += by;
    } else if next() {
        flip(parent_hash);
    } else if next() {
        flip(weights_hash);
    } else if next() {
        *weights_bytes += by;
    } else if next() {
        *merged += 1;
    } else if next() {
        *parent_held_out_loss += by;
    } else if next() {
        *held_out_loss += by;
    } else if next() {
        *version_seq += by;
    } else if next() {
        head_key += by;
    } else if next() {
        head += by;
    } else if next() {
        owed.insert(5, 0);
    } else {
        // The parameter sets: the genesis's, the governance's, each activation's and
        // the round's, each field of each.
        let sets = [
            genesis_parameters,
            parameters,
            parameters_activation_value,
            round_parameters,
            &mut learning_pins.parameters,
        ];
        let (set, parameter) = (field / PARAMETERS, field % PARAMETERS);
        let parameters = sets.into_iter().nth(set)?;
        mutate_parameters(parameters, parameter, by)?;
    }
    // Put the entries taken out back, under their (maybe changed) keys.
    nodes.insert(node_key, node);
    entries.insert(tx, entry);
    plugins.insert(plugin_hash, plugin);
    proposals.insert(proposal_id, proposal);
    fallbacks.insert(fallback_seq, fallback);
    pools.insert(pool_id, pool);
    admitted.insert(validator_key, validator);
    rounds.insert(round_id, learning);
    progress.insert(progress_key, progress_entry);
    commits.insert(commit_key, commit);
    reveals.insert(reveal_key, revealed);
    revealed_hashes.insert(hash_key, hash_node);
    submissions.insert(submission_key, submission);
    versions.insert(version_key, version);
    heads.insert(head_key, head);
    Some(())
}

/// How many fields `every_field` knows: the first index it refuses.
fn field_count() -> usize {
    (0..)
        .find(|&field| every_field(&mut base(), field, 1).is_none())
        .unwrap()
}

#[test]
fn every_field_is_counted() {
    // The fields above, and five parameter sets.
    assert_eq!(field_count(), FIELDS + 5 * PARAMETERS);
}

/// Reads a snapshot of `state` back, with the genesis and the stored fallback modules
/// taken from `state` as a log would give them.
fn restored(state: &State) -> State {
    let genesis = state.genesis.clone().expect("a genesis");
    let fallbacks = state.governance.fallbacks.clone();
    let mut written = Vec::new();
    state.snapshot_to(&mut written);
    State::restore(&written, &mut |seq| match seq {
        0 => Ok(crate::model::Event::GenesisCreated(Box::new(
            (*genesis).clone(),
        ))),
        seq => fallbacks
            .get(&seq)
            .map(|fallback| crate::model::Event::PluginFallback(fallback.clone()))
            .ok_or_else(|| format!("no event {seq}")),
    })
    .expect("the snapshot reads back")
}

#[test]
fn a_snapshot_leaves_the_module_bytes_to_the_log() {
    let base = base();
    let mut written = Vec::new();
    base.snapshot_to(&mut written);
    let written = String::from_utf8(written).unwrap();
    let fallback = base.governance.fallbacks.get(&8).unwrap();
    let wasm = &fallback.used_module.as_ref().unwrap().wasm;
    assert!(!wasm.is_empty());
    // Neither the genesis nor the fallback's module bytes are written.
    assert!(!written.contains("network_id"), "{written}");
    assert!(!written.contains("\"wasm\""), "{written}");
    let restored = restored(&base);
    assert_eq!(restored, base);
    let back = restored.governance.fallbacks.get(&8).unwrap();
    assert_eq!(&back.used_module.as_ref().unwrap().wasm, wasm);
}

#[test]
fn a_snapshot_refuses_a_log_that_does_not_hold_what_it_names() {
    let base = base();
    let mut written = Vec::new();
    base.snapshot_to(&mut written);
    let genesis = base.genesis.clone().unwrap();
    let fallback = base.governance.fallbacks.get(&8).unwrap().clone();
    let other = PluginModule::new(PluginKind::Scoring, vec![9; 9]);
    let logs: [(u64, Vec<crate::model::Event>); 3] = [
        // Seq 0 is not the genesis.
        (
            0,
            vec![crate::model::Event::PluginFallback(fallback.clone())],
        ),
        // The fallback's event stores another module than the one the state names.
        (
            8,
            vec![
                crate::model::Event::GenesisCreated(Box::new((*genesis).clone())),
                crate::model::Event::PluginFallback(PluginFallback {
                    used_module: Some(other),
                    ..fallback.clone()
                }),
            ],
        ),
        // The log ends before the fallback's event.
        (
            8,
            vec![crate::model::Event::GenesisCreated(Box::new(
                (*genesis).clone(),
            ))],
        ),
    ];
    for (refused_seq, log) in logs {
        let mut event_at = |seq: u64| {
            let index = if seq == 0 { 0 } else { 1 };
            log.get(index)
                .cloned()
                .ok_or_else(|| format!("no event {seq}"))
        };
        match State::restore(&written, &mut event_at) {
            Err(super::snapshot::RestoreError::Event { seq, .. }) => assert_eq!(seq, refused_seq),
            other => panic!("restored from a log without what it names: {other:?}"),
        }
    }
}

proptest! {
    /// Every field survives a snapshot, however deep.
    #[test]
    fn a_snapshot_reads_back_to_the_state_with_any_one_field_changed(field in 0..(FIELDS + 5 * PARAMETERS), by in 1u64..1 << 40) {
        let mut changed = base();
        every_field(&mut changed, field, by).expect("a known field");
        let restored = restored(&changed);
        prop_assert_eq!(restored.root(), changed.root());
        prop_assert_eq!(&restored, &changed, "field {} did not survive", field);
    }

    #[test]
    fn changing_any_one_field_changes_the_root(field in 0..(FIELDS + 5 * PARAMETERS), by in 1u64..1 << 40) {
        let base = base();
        let mut changed = base.clone();
        every_field(&mut changed, field, by).expect("a known field");
        prop_assert_ne!(&changed, &base, "field {} did not change", field);
        prop_assert_ne!(changed.root(), base.root(), "the root misses field {}", field);
    }
}
