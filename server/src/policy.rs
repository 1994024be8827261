//! The plugin sandbox as the server uses it.
//!
//! - At proposal time the API runs [`Host::conformance`] before a `ProposePlugin`
//!   reaches the writer, so a module that can't answer the reference input is refused
//!   with the reason and never enters the log.
//! - A round's policy call goes through [`run_policy`]: the plugin the round pinned,
//!   then the one pinned before it, then the genesis plugin, then the default embedded
//!   in this binary. [`call`] runs it on a blocking worker and hands the result (the
//!   output, the module that produced it and every failure before it) to the writer as
//!   a `PolicyResult` server input, which the core checks against the input it rebuilds
//!   and decides into `PluginFallback` events and the round's own events. A replay
//!   decides those again from the logged input; `blyan replay --rerun-plugins` also
//!   runs the plugins again and requires the logged outputs and failures.

use std::sync::Arc;

use blyan_plugin_host::{self as host, Host, Limits, defaults, pb};
use blyan_sdk::core::governance::Governance;
use blyan_sdk::core::rounds::{self, Round};
use blyan_sdk::model::{
    PluginKind, PluginModule, PolicyFailure, PolicyResult, ServerInput, limits,
};
use prost::Message;

use crate::engine::{Engine, Receipt, SubmitError};
use crate::store::StoreError;

/// The host with the server's limits: modules as large as the ledger stores.
pub fn host() -> Host {
    Host::new(Limits {
        module_bytes_max: limits::PLUGIN_BYTES_MAX,
        ..Limits::default()
    })
}

/// A policy output and the server input that says how it was obtained.
#[derive(Debug)]
pub struct PolicyRun {
    /// Checked by the host against the input.
    pub output: pb::PolicyOutput,
    /// The server input the writer decides: the output's bytes, the module that
    /// produced them and every failure before it.
    pub result: PolicyResult,
}

#[derive(Debug, thiserror::Error)]
#[error("every plugin of kind {kind} failed, the embedded default included: {failures}")]
pub struct AllFailed {
    pub kind: PluginKind,
    pub failures: String,
}

/// Runs `input` through the fallback chain of `kind` in round `round`: `stored`, the
/// bytes of the chain's stored modules in its order, then the embedded default.
pub fn run_policy(
    host: &Host,
    governance: &Governance,
    round: &Round,
    kind: PluginKind,
    input: &pb::PolicyInput,
    stored: &[Arc<[u8]>],
) -> Result<PolicyRun, AllFailed> {
    let embedded = defaults::wasm(kind);
    let mut chain: Vec<&[u8]> = stored.iter().map(|wasm| &wasm[..]).collect();
    if !chain.contains(&embedded) {
        chain.push(embedded);
    }
    match host::run_with_fallback(host, &chain, input) {
        Ok(run) => {
            for failure in &run.failures {
                tracing::warn!(
                    %kind,
                    failed = %hex::encode(failure.hash),
                    limit_or_check = failure.error.code(),
                    error = %failure.error,
                    "a policy plugin failed; the next of the chain runs"
                );
            }
            // Only the embedded default can answer without being in the log (a binary
            // newer than the genesis); the first fallback event stores it then. Every
            // genesis the engine writes holds a module of every kind, so the default
            // answers only after a failure, and there is a first event.
            let unstored_module =
                (governance.plugin(&run.used).is_none()).then(|| PluginModule::new(kind, embedded));
            Ok(PolicyRun {
                result: PolicyResult {
                    round: round.pins.round,
                    kind,
                    module_hash: run.used,
                    output: run.output.encode_to_vec(),
                    failures: run
                        .failures
                        .iter()
                        .map(|failure| PolicyFailure {
                            hash: failure.hash,
                            reason_code: failure.error.code().to_string(),
                            reason: failure.error.to_string(),
                        })
                        .collect(),
                    unstored_module,
                },
                output: run.output,
            })
        }
        Err(failures) => Err(AllFailed {
            kind,
            failures: failures
                .iter()
                .map(|failure| format!("{}: {}", hex::encode(failure.hash), failure.error))
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

/// Why a policy call of the engine produced no result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    AllFailed(#[from] AllFailed),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error("reading a plugin module from the log: {0}")]
    Store(#[from] StoreError),
}

/// Runs the policy call round `round` awaits on a blocking worker, never on the
/// writer thread, with the chain of the published state and the host's limits, then
/// hands the checked result to the writer as a server input. Returns the output and
/// the receipt of the first event it decided. `None` when the round awaits no call.
pub async fn call(
    engine: &Engine,
    host: Arc<Host>,
    round: u64,
) -> Result<Option<(pb::PolicyOutput, Option<Receipt>)>, CallError> {
    let (governance, entry, kind, input) = {
        let published = engine.published();
        let state = &published.state;
        let Some((kind, input)) = state.policy_input(round) else {
            return Ok(None);
        };
        let entry = state
            .rounds()
            .get(round)
            .expect("a round awaiting a call")
            .clone();
        (state.governance().clone(), entry, kind, input)
    };
    let mut stored = Vec::new();
    for hash in rounds::fallback_chain(&governance, &entry, kind) {
        stored.extend(engine.module(&hash).await?);
    }
    let run = tokio::task::spawn_blocking(move || {
        run_policy(&host, &governance, &entry, kind, &input, &stored)
    })
    .await
    .expect("a policy worker panicked")?;
    let receipt = engine
        .submit_input(ServerInput::PolicyResult(run.result))
        .await?;
    Ok(Some((run.output, receipt)))
}

#[cfg(test)]
mod tests {
    use blyan_plugin_host::check;
    use blyan_sdk::core::{Authenticated, Context, State, decide, decide_input};
    use blyan_sdk::crypto::Keypair;
    use blyan_sdk::genesis::DevKeys;
    use blyan_sdk::model::{
        Action, Burn, Capabilities, Command, Event, Hash, Parameters, PluginFallback,
        PluginProposal, PoolItem, PoolSpec,
    };

    use super::*;

    /// `wasm` with a one-byte custom section appended: the same code, another hash.
    fn variant(wasm: &[u8], tag: u8) -> Vec<u8> {
        let mut module = wasm.to_vec();
        module.extend_from_slice(&[0, 3, 1, b'v', tag]);
        module
    }

    fn apply(state: &mut State, events: &[Event]) {
        for event in events {
            state.apply(event);
        }
    }

    /// Round parameters small enough for one node and one validator.
    fn small(parameters: Parameters) -> Parameters {
        Parameters {
            round_burn_threshold: 1,
            nodes_per_round_min: 1,
            validators_per_round: 1,
            validators_per_delta: 1,
            validator_quorum: 1,
            ..parameters
        }
    }

    fn when(state: &mut State, signer: &Keypair, key: &[u8], action: Action) {
        let command = Authenticated {
            signer: signer.public(),
            command: Command {
                idempotency_key: key.to_vec(),
                action,
            },
        };
        let events = decide(
            state,
            &command,
            &Context {
                time_ms: 1,
                head: [0; 32],
            },
        )
        .unwrap();
        apply(state, &events);
    }

    /// Opens round `round`: the first time with a pool, a validator and a node of
    /// every expert, and each time with a burn past the threshold.
    fn open_next(state: &mut State, keys: &DevKeys, round: u64) {
        if round == 1 {
            let item = |held_out| PoolItem {
                bytes: 1,
                checksum: [u8::from(held_out); 32],
                held_out,
            };
            let pool = PoolSpec {
                name: "pool".into(),
                items: vec![item(false), item(true)],
            };
            when(state, &keys.curator, b"pool", Action::RegisterPool(pool));
            let validator = Action::ProposeValidator {
                validator: keys.governance[2].public(),
                admit: true,
                activation_round: 1,
            };
            when(state, &keys.governance[0], b"validator", validator);
            let capabilities = Capabilities {
                gpu_model: "H100".into(),
                vram_mib: 81_920,
                experts: (0..4).collect(),
                endpoint: "https://node".into(),
            };
            when(
                state,
                &keys.governance[1],
                b"node",
                Action::RegisterNode(capabilities),
            );
        }
        let burn = Action::RecordBurn(Burn {
            chain_tx_id: format!("tx-{round}"),
            burner: "0xb".into(),
            amount: 10,
        });
        when(
            state,
            &keys.burn_oracle,
            format!("burn-{round}").as_bytes(),
            burn,
        );
        let input = ServerInput::OpenRound { round };
        let events = decide_input(
            state,
            &input,
            &Context {
                time_ms: 1,
                head: [0; 32],
            },
        )
        .unwrap();
        apply(state, &events);
    }

    /// A dev-genesis state (threshold 1, so a proposal activates at once) with the
    /// embedded defaults, where sharding `modules` are activated for rounds 1, 2, ...
    /// and that many rounds have opened.
    fn state_with(modules: &[Vec<u8>]) -> State {
        let keys = DevKeys::derive();
        let mut genesis = keys.genesis();
        genesis.governance_threshold = 1;
        genesis.parameters = small(genesis.parameters);
        genesis.plugins = PluginKind::ALL
            .into_iter()
            .map(|kind| PluginModule::new(kind, defaults::wasm(kind)))
            .collect();
        let mut state = State::default();
        state.apply(&Event::GenesisCreated(Box::new(genesis)));
        for (round, wasm) in (1..).zip(modules) {
            let proposal = Action::ProposePlugin(PluginProposal {
                kind: PluginKind::Sharding,
                wasm: wasm.clone().into(),
                activation_round: round,
            });
            when(&mut state, &keys.governance[0], &[round as u8], proposal);
            open_next(&mut state, &keys, round);
        }
        state
    }

    /// The sharding call round `round` awaits, through its chain, whose modules are
    /// among `modules` (the bytes the log would hold).
    fn run(state: &State, round: u64, modules: &[&[u8]]) -> (pb::PolicyInput, PolicyRun) {
        let (kind, input) = state.policy_input(round).expect("the round awaits a call");
        assert_eq!(kind, PluginKind::Sharding);
        let entry = state.rounds().get(round).unwrap();
        let stored: Vec<Arc<[u8]>> = rounds::fallback_chain(state.governance(), entry, kind)
            .iter()
            .map(|stored| {
                let wasm = modules
                    .iter()
                    .find(|wasm| hash(wasm) == *stored)
                    .expect("the test knows every module of the chain");
                Arc::from(*wasm)
            })
            .collect();
        let run = run_policy(&host(), state.governance(), entry, kind, &input, &stored).unwrap();
        (input, run)
    }

    fn fallbacks(events: &[Event]) -> Vec<&PluginFallback> {
        events
            .iter()
            .filter_map(|event| match event {
                Event::PluginFallback(fallback) => Some(fallback),
                _ => None,
            })
            .collect()
    }

    /// The events the core decides for a run's result.
    fn decided(state: &State, run: &PolicyRun) -> Vec<Event> {
        let input = ServerInput::PolicyResult(run.result.clone());
        let events = decide_input(
            state,
            &input,
            &Context {
                time_ms: 1,
                head: [0; 32],
            },
        )
        .unwrap();
        assert!(
            matches!(events.last(), Some(Event::AssignmentsMade { .. })),
            "the output becomes the round's assignments: {events:?}"
        );
        events
    }

    fn hash(wasm: &[u8]) -> Hash {
        *blake3::hash(wasm).as_bytes()
    }

    #[test]
    fn a_working_pinned_plugin_runs_without_fallback() {
        let good = variant(defaults::SHARDING, 1);
        let state = state_with(std::slice::from_ref(&good));
        let (input, run) = run(&state, 1, &[&good, defaults::SHARDING]);
        assert_eq!(run.result.module_hash, hash(&good));
        assert!(fallbacks(&decided(&state, &run)).is_empty());
        assert_eq!(check::output(&input, &run.output), Ok(()));
    }

    #[test]
    fn a_failing_pinned_plugin_falls_back_to_the_one_before_it_and_says_so() {
        let good = variant(defaults::SHARDING, 1);
        let broken = b"\0asm\x01\0\0\0broken".to_vec();
        let mut state = state_with(&[good.clone(), broken.clone()]);
        let (_, run) = run(&state, 2, &[&good, &broken, defaults::SHARDING]);
        assert_eq!(
            run.result.module_hash,
            hash(&good),
            "the plugin pinned before"
        );
        let events = decided(&state, &run);
        let [fallback] = fallbacks(&events)[..] else {
            panic!("{events:?}")
        };
        assert_eq!(fallback.round, 2);
        assert_eq!(fallback.failed_hash, hash(&broken));
        assert_eq!(fallback.reason_code, "plugin_malformed");
        assert_eq!(fallback.used_hash, hash(&good));
        assert!(
            fallback.used_module.is_none(),
            "the log holds the module used"
        );
        // The fallback is an event like any other: it applies and is in the state.
        apply(&mut state, &events);
        assert_eq!(state.governance().fallbacks().len(), 1);
    }

    #[test]
    fn when_every_stored_plugin_fails_the_embedded_default_answers() {
        // The genesis scoring plugin itself is broken here, as a log written by an old
        // binary might hold; the pinned plugin fails too.
        let broken_genesis = b"\0asm\x01\0\0\0old".to_vec();
        let broken_pinned = b"\0asm\x01\0\0\0new".to_vec();
        let keys = DevKeys::derive();
        let mut genesis = keys.genesis();
        genesis.governance_threshold = 1;
        genesis.plugins = PluginKind::ALL
            .into_iter()
            .map(|kind| match kind {
                PluginKind::Sharding => PluginModule::new(kind, broken_genesis.clone()),
                _ => PluginModule::new(kind, defaults::wasm(kind)),
            })
            .collect();
        genesis.parameters = small(genesis.parameters);
        let mut state = State::default();
        state.apply(&Event::GenesisCreated(Box::new(genesis)));
        let proposal = Action::ProposePlugin(PluginProposal {
            kind: PluginKind::Sharding,
            wasm: broken_pinned.clone().into(),
            activation_round: 1,
        });
        when(&mut state, &keys.governance[1], b"p", proposal);
        open_next(&mut state, &keys, 1);

        let (_, run) = run(&state, 1, &[&broken_genesis, &broken_pinned]);
        assert_eq!(run.result.module_hash, hash(defaults::SHARDING));
        let events = decided(&state, &run);
        let failed: Vec<Hash> = fallbacks(&events)
            .iter()
            .map(|fallback| fallback.failed_hash)
            .collect();
        assert_eq!(failed, [hash(&broken_pinned), hash(&broken_genesis)]);

        // The log did not hold this binary's default: the first fallback stores it,
        // so the log still holds every module it ran.
        let stored: Vec<Option<Hash>> = fallbacks(&events)
            .iter()
            .map(|fallback| fallback.used_module.as_ref().map(|m| m.hash))
            .collect();
        assert_eq!(stored, [Some(hash(defaults::SHARDING)), None]);
        assert!(
            state
                .governance()
                .plugin(&hash(defaults::SHARDING))
                .is_none()
        );
        apply(&mut state, &events);
        let plugin = state
            .governance()
            .plugin(&hash(defaults::SHARDING))
            .expect("stored by the fallback");
        assert_eq!(plugin.bytes, defaults::SHARDING.len());
        assert_eq!(plugin.kind, PluginKind::Sharding);
    }
}
