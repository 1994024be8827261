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
use super::governance::{Activation, Governance, Proposal, StoredPlugin, Subject};
use super::hashed::{HashedMap, RootHash};
use super::registry::{Node, Registry};
use crate::crypto::PublicKey;
use crate::model::{
    Capabilities, Checkpoint, Genesis, Parameters, PinnedPlugin, PluginFallback, PluginKind,
    PluginModule, RoundPins,
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
        wasm: module.wasm.clone(),
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
        parameters: Parameters::default(),
        plugins: vec![scoring.clone()],
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
                },
            )]),
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
                    used_module: None,
                },
            )]),
        },
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
        heartbeat_interval_min_ms,
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
        9 => *heartbeat_interval_min_ms = heartbeat_interval_min_ms.wrapping_add(by),
        _ => return None,
    }
    Some(())
}

const PARAMETERS: usize = 10;

/// The fields `every_field` changes one by one before the parameter sets.
const FIELDS: usize = 51;

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
        registry: Registry { nodes },
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
        events_applied,
    } = state;
    let Genesis {
        network_id,
        operator_key,
        burn_oracle_key,
        governance_keys,
        governance_threshold,
        parameters: genesis_parameters,
        plugins: genesis_plugins,
    } = Arc::make_mut(genesis.as_mut().expect("the base has a genesis"));
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
    } = &mut node;
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
    // Derived, so not hashed: the module is named by its key, the blake3 hash of it,
    // and `bytes` is its length.
    let StoredPlugin {
        kind: plugin_kind,
        wasm: _,
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
    } = round.as_mut().expect("the base has a round");
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
    } else {
        // The parameter sets: the genesis's, the governance's, each activation's and
        // the round's, each field of each.
        let sets = [
            genesis_parameters,
            parameters,
            parameters_activation_value,
            round_parameters,
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
    // The fields above, and four parameter sets of ten.
    assert_eq!(field_count(), FIELDS + 4 * PARAMETERS);
}

proptest! {
    #[test]
    fn changing_any_one_field_changes_the_root(field in 0..(FIELDS + 4 * PARAMETERS), by in 1u64..1 << 40) {
        let base = base();
        let mut changed = base.clone();
        every_field(&mut changed, field, by).expect("a known field");
        prop_assert_ne!(&changed, &base, "field {} did not change", field);
        prop_assert_ne!(changed.root(), base.root(), "the root misses field {}", field);
    }
}
