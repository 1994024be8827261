//! A seeded simulation of learning rounds against the pure core, with the default
//! policies running in the real plugin sandbox: node churn, late, missing, mismatched
//! and copied reveals, a minority of lying validators, and a validator that is also a
//! node. The invariants are checked after every event, and a replay of the produced
//! events reaches the same state root.
//!
//! `BLYAN_SIM_ROUNDS` sets the number of rounds (1,000 by default) and
//! `BLYAN_SIM_SEED` the seed; a failure prints both.

use blyan_plugin_host::{Host, Limits, defaults, run_with_fallback};
use blyan_sdk::codec;
use blyan_sdk::core::experts::ExpertRejection;
use blyan_sdk::core::registry::RegistryRejection;
use blyan_sdk::core::rounds::{self, Due, RoundRejection};
use blyan_sdk::core::{Authenticated, Context, Rejection, State, decide, decide_input};
use blyan_sdk::crypto::{Keypair, PublicKey};
use blyan_sdk::genesis::DevKeys;
use blyan_sdk::liveness;
use blyan_sdk::model::{
    Action, Burn, Capabilities, Command, Event, ExpertUpdate, Hash, ModelSpec, Parameters, Phase,
    PluginKind, PluginModule, PolicyResult, PoolItem, PoolSpec, Reveal, ServerInput,
};
use prost::Message;

/// splitmix64: a small, seeded, reproducible source of choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

struct Sim {
    state: State,
    events: Vec<Event>,
    time_ms: u64,
    head: Hash,
    keys: DevKeys,
    host: Host,
    nodes: Vec<Keypair>,
    validators: Vec<Keypair>,
    liars: Vec<PublicKey>,
    rng: Rng,
    key: u64,
    finalized: u64,
    aborted: u64,
    copies_refused: u64,
    merges: u64,
}

impl Sim {
    fn context(&self) -> Context {
        Context {
            time_ms: self.time_ms,
            head: self.head,
        }
    }

    fn apply(&mut self, events: Vec<Event>) {
        for event in events {
            self.state
                .check(&event)
                .unwrap_or_else(|error| panic!("{event:?}: {error}"));
            self.state.apply(&event);
            self.head = *blake3::hash(&[&self.head[..], format!("{event:?}").as_bytes()].concat())
                .as_bytes();
            self.check(&event);
            self.events.push(event);
        }
    }

    /// The invariants, after every event.
    fn check(&mut self, event: &Event) {
        let conservation = self.state.rounds().conservation();
        assert!(conservation.balances(), "funds: {conservation:?}");
        match event {
            Event::AssignmentsMade { round, shards, .. } => {
                let pool = self
                    .state
                    .pools()
                    .get(self.state.rounds().get(*round).unwrap().plan.pool_id)
                    .unwrap();
                let mut covered = vec![false; pool.training.len()];
                for shard in shards {
                    for index in shard.start..shard.start + shard.count {
                        assert!(!covered[index as usize], "item {index} assigned twice");
                        covered[index as usize] = true;
                        let id = pool.training[index as usize];
                        assert!(
                            !pool.items[id as usize].held_out,
                            "a held-out item assigned"
                        );
                    }
                }
            }
            Event::PhaseStarted {
                round,
                phase: Phase::Validate,
                ..
            } => {
                let entry = self.state.rounds().get(*round).unwrap();
                for index in 0..entry.deltas.len() {
                    for position in entry.delta_committee(index) {
                        assert_ne!(
                            entry.plan.committee[position as usize], entry.deltas[index],
                            "a validator measures its own delta"
                        );
                    }
                }
            }
            Event::RoundFinalized(outcome) => {
                self.finalized += 1;
                let quorum = self
                    .state
                    .rounds()
                    .get(outcome.round)
                    .unwrap()
                    .parameters()
                    .validator_quorum;
                for payout in &outcome.nodes {
                    let revealed = self.state.rounds().reveal(outcome.round, &payout.key);
                    assert!(revealed.is_some(), "a reward without a reveal");
                }
                let entry = self.state.rounds().get(outcome.round).unwrap();
                for (index, score) in entry.scores.iter().enumerate() {
                    let measured = entry
                        .plan
                        .committee
                        .iter()
                        .filter(|validator| {
                            entry.tasks_of(validator).contains(&(index as u32))
                                && self
                                    .state
                                    .rounds()
                                    .submission(outcome.round, validator)
                                    .is_some()
                        })
                        .count();
                    assert!(
                        *score == 0 || measured >= quorum as usize,
                        "a score short of its quorum"
                    );
                }
            }
            Event::RoundAborted { .. } => self.aborted += 1,
            _ => {}
        }
    }

    fn command(&mut self, signer: &Keypair, action: Action) -> Result<(), Rejection> {
        self.key += 1;
        let command = Authenticated {
            signer: signer.public(),
            command: Command {
                idempotency_key: self.key.to_be_bytes().to_vec(),
                action,
            },
        };
        let events = decide(&self.state, &command, &self.context())?;
        self.apply(events);
        Ok(())
    }

    fn input(&mut self, input: ServerInput) -> Result<(), Rejection> {
        let events = decide_input(&self.state, &input, &self.context())?;
        self.apply(events);
        Ok(())
    }

    /// Submits what is due until nothing is, as the server's scheduler does.
    fn settle(&mut self) {
        loop {
            let due = self.state.due(self.time_ms, &self.head);
            let Some(due) = due.into_iter().next() else {
                return;
            };
            match due {
                Due::Open(round) => self.input(ServerInput::OpenRound { round }).unwrap(),
                Due::Tick(time_ms) => self.input(ServerInput::Tick { time_ms }).unwrap(),
                Due::Policy { round, kind, input } => {
                    let run = run_with_fallback(&self.host, &[defaults::wasm(kind)], &input)
                        .expect("the default policy answers");
                    self.input(ServerInput::PolicyResult(PolicyResult {
                        round,
                        kind,
                        module_hash: run.used,
                        output: run.output.encode_to_vec(),
                        failures: Vec::new(),
                        unstored_module: None,
                    }))
                    .unwrap();
                }
                // The server merges with blyan-ml; the core checks only what it can
                // without the weights, so any weights hash stands in for them here.
                Due::Merge(round) => {
                    let state = &self.state;
                    let model = state.model().expect("the simulation has a model");
                    let entry = state.rounds().get(round).unwrap();
                    let expert = entry.plan.expert;
                    let head = state.experts().head(expert);
                    let update = ExpertUpdate {
                        round,
                        expert,
                        version: head + 1,
                        parent_hash: state.experts().hash(model, expert, head).unwrap(),
                        weights_hash: *blake3::hash(&round.to_be_bytes()).as_bytes(),
                        weights_bytes: 1,
                        merged: entry.outcome.as_ref().unwrap().accepted.clone(),
                        parent_held_out_loss: 2,
                        held_out_loss: 1,
                    };
                    // Each wrong update is refused, and a wrong event fails the check
                    // that a stored log passes, without a panic.
                    let accepted = &update.merged;
                    let wrong = [
                        ExpertUpdate {
                            version: head + 2,
                            ..update.clone()
                        },
                        ExpertUpdate {
                            version: 0,
                            ..update.clone()
                        },
                        ExpertUpdate {
                            parent_hash: [9; 32],
                            ..update.clone()
                        },
                        ExpertUpdate {
                            expert: expert + 1,
                            ..update.clone()
                        },
                        ExpertUpdate {
                            merged: accepted.iter().rev().chain(accepted).copied().collect(),
                            ..update.clone()
                        },
                        ExpertUpdate {
                            weights_bytes: 0,
                            ..update.clone()
                        },
                        ExpertUpdate {
                            round: round + 1_000,
                            ..update.clone()
                        },
                    ];
                    for wrong in wrong {
                        let refused = self.input(ServerInput::UpdateExpert(wrong.clone()));
                        assert!(
                            matches!(
                                &refused,
                                Err(Rejection::Experts(
                                    ExpertRejection::Mismatch { .. } | ExpertRejection::NotOwed(_)
                                ))
                            ),
                            "{wrong:?}: {refused:?}"
                        );
                        if wrong.version != head + 1 || wrong.expert != expert {
                            assert!(self.state.check(&Event::ExpertUpdated(wrong)).is_err());
                        }
                    }
                    // No round of the expert opens while its merge is owed.
                    assert!(self.state.rounds().running().all(|running| {
                        self.state.rounds().get(running).unwrap().plan.expert != expert
                    }));
                    self.merges += 1;
                    self.input(ServerInput::UpdateExpert(update)).unwrap();
                }
            }
        }
    }

    fn rejected(&self, result: Result<(), Rejection>) -> RoundRejection {
        match result {
            Err(Rejection::Rounds(rejection)) => rejection,
            other => panic!("expected a round rejection, got {other:?}"),
        }
    }

    /// One round: a burn past the threshold, heartbeats from the nodes that stay, and
    /// every phase with its misbehaviours.
    fn round(&mut self) {
        self.time_ms += 2_000;
        self.key += 1;
        let burn = Action::RecordBurn(Burn {
            chain_tx_id: format!("tx-{}", self.key),
            burner: "0xb".into(),
            amount: u128::from(self.rng.next() % 1_000 + 100),
        });
        let oracle = self.keys.burn_oracle.clone();
        self.command(&oracle, burn).unwrap();
        // Churn: some nodes miss their heartbeat and drop out of the next round. The
        // heartbeats decide nothing; the window's close logs them, as the server does.
        let window = self.state.registry().liveness().open();
        let network_id = self.state.genesis().unwrap().network_id.clone();
        let mut held = Vec::new();
        for node in self.nodes.clone() {
            if self.rng.chance(85) {
                let action = Action::Heartbeat { window };
                self.command(&node, action.clone()).unwrap();
                let command = Command {
                    idempotency_key: self.key.to_be_bytes().to_vec(),
                    action,
                };
                let index = self.state.node(&node.public()).unwrap().index;
                held.push((index, codec::sign_command(&node, &network_id, &command)));
            }
        }
        if !held.is_empty() {
            held.sort_by_key(|(index, _)| *index);
            let (closed, blob) = liveness::seal(window, self.time_ms, &held);
            self.input(ServerInput::CloseLivenessWindow(closed.clone()))
                .unwrap();
            assert_eq!(
                liveness::verify(&self.state, &network_id, &closed, &blob),
                Ok(held.len())
            );
            // A heartbeat signed for the closed window is refused from now on.
            let replayed = self.command(&self.nodes[0].clone(), Action::Heartbeat { window });
            assert!(matches!(
                replayed,
                Err(Rejection::Registry(RegistryRejection::WindowNotOpen { .. }))
            ));
        }
        self.settle();
        let running: Vec<u64> = self.state.rounds().running().collect();
        for round_id in running {
            self.play(round_id);
        }
    }

    fn play(&mut self, round_id: u64) {
        let entry = self.state.rounds().get(round_id).unwrap().clone();
        match entry.phase {
            Phase::Commit => {
                let outsider = Keypair::from_secret([250; 32]);
                let refused = self.command(
                    &outsider,
                    Action::CommitDelta {
                        round: round_id,
                        commitment: [0; 32],
                    },
                );
                assert!(matches!(
                    self.rejected(refused),
                    RoundRejection::NotInRound(_)
                ));
                let nodes: Vec<Keypair> = self
                    .nodes
                    .iter()
                    .filter(|node| {
                        entry.plan.nodes.contains(&node.public())
                            && self
                                .state
                                .rounds()
                                .commit(round_id, &node.public())
                                .is_none()
                    })
                    .cloned()
                    .collect();
                for node in nodes {
                    if self.rng.chance(10) {
                        continue; // a missing commit
                    }
                    let (delta_hash, salt) = delta(round_id, &node.public());
                    let commitment =
                        rounds::commitment(round_id, &node.public(), &delta_hash, &salt);
                    let commit = Action::CommitDelta {
                        round: round_id,
                        commitment,
                    };
                    if let Err(refused) = self.command(&node, commit.clone()) {
                        // Another round's deadline may have moved time past this one's.
                        let rejection = self.rejected(Err(refused));
                        assert!(
                            matches!(rejection, RoundRejection::DeadlinePassed { .. }),
                            "{rejection:?}"
                        );
                        break;
                    }
                    let again = self.command(&node, commit);
                    assert!(matches!(
                        self.rejected(again),
                        RoundRejection::AlreadyCommitted(_)
                            | RoundRejection::WrongPhase { .. }
                            | RoundRejection::DeadlinePassed { .. }
                    ));
                }
                self.late(round_id);
            }
            Phase::Reveal => {
                let nodes: Vec<Keypair> = self
                    .nodes
                    .iter()
                    .filter(|node| {
                        self.state
                            .rounds()
                            .commit(round_id, &node.public())
                            .is_some()
                            && self
                                .state
                                .rounds()
                                .reveal(round_id, &node.public())
                                .is_none()
                    })
                    .cloned()
                    .collect();
                let mut first: Option<Hash> = None;
                for node in nodes {
                    if self.rng.chance(10) {
                        continue; // a missing reveal
                    }
                    let (delta_hash, salt) = delta(round_id, &node.public());
                    if let Some(copied) = first
                        && self.rng.chance(20)
                    {
                        // A copy of a revealed delta: refused whatever the salt.
                        let copy = Action::RevealDelta(Reveal {
                            round: round_id,
                            delta_hash: copied,
                            salt,
                            delta_bytes: 100,
                        });
                        let refused = self.command(&node, copy);
                        if let RoundRejection::DeltaCopied(_) = self.rejected(refused) {
                            self.copies_refused += 1;
                        }
                    }
                    if self.rng.chance(10) {
                        // A reveal that does not match its commitment.
                        let wrong = Action::RevealDelta(Reveal {
                            round: round_id,
                            delta_hash,
                            salt: [7; 32],
                            delta_bytes: 100,
                        });
                        let refused = self.command(&node, wrong);
                        assert!(matches!(
                            self.rejected(refused),
                            RoundRejection::CommitmentMismatch
                                | RoundRejection::WrongPhase { .. }
                                | RoundRejection::DeadlinePassed { .. }
                        ));
                        continue;
                    }
                    let reveal = Action::RevealDelta(Reveal {
                        round: round_id,
                        delta_hash,
                        salt,
                        delta_bytes: 100,
                    });
                    match self.command(&node, reveal) {
                        Ok(()) => first = first.or(Some(delta_hash)),
                        // Another round's deadline may have moved time past this one's.
                        Err(refused) => {
                            let rejection = self.rejected(Err(refused));
                            assert!(
                                matches!(
                                    rejection,
                                    RoundRejection::WrongPhase { .. }
                                        | RoundRejection::DeadlinePassed { .. }
                                ),
                                "{rejection:?}"
                            );
                        }
                    }
                }
                self.late(round_id);
            }
            Phase::Validate => {
                for validator in self.validators.clone() {
                    let tasks = entry.tasks_of(&validator.public());
                    let submitted = self
                        .state
                        .rounds()
                        .submission(round_id, &validator.public())
                        .is_some();
                    if tasks.is_empty() || submitted || self.rng.chance(10) {
                        continue;
                    }
                    let liar = self.liars.contains(&validator.public());
                    let values: Vec<i64> = tasks
                        .iter()
                        .map(|task| {
                            let good = good(round_id, &entry.deltas[*task as usize]);
                            let value = if good { 1_000_000 } else { -1_000_000 };
                            if liar { -value } else { value }
                        })
                        .collect();
                    let submitted = self.command(
                        &validator,
                        Action::SubmitMeasurements {
                            round: round_id,
                            values,
                        },
                    );
                    if let Err(refused) = submitted {
                        let rejection = self.rejected(Err(refused));
                        assert!(
                            matches!(
                                rejection,
                                RoundRejection::WrongPhase { .. }
                                    | RoundRejection::DeadlinePassed { .. }
                            ),
                            "{rejection:?}"
                        );
                    }
                }
                self.late(round_id);
            }
            Phase::Assigning
            | Phase::Scoring
            | Phase::Rewarding
            | Phase::Finalized
            | Phase::Aborted => {}
        }
        self.settle();
    }

    /// Sometimes the phase runs out: time passes its deadline, and a late command is
    /// refused before the tick closes it.
    fn late(&mut self, round_id: u64) {
        let entry = self.state.rounds().get(round_id).unwrap().clone();
        if entry.phase.is_over() || entry.deadline_ms == 0 || !self.rng.chance(30) {
            return;
        }
        self.time_ms = self.time_ms.max(entry.deadline_ms + 1);
        let node = self.nodes[0].clone();
        let late = self.command(
            &node,
            Action::CommitDelta {
                round: round_id,
                commitment: [1; 32],
            },
        );
        assert!(matches!(
            self.rejected(late),
            RoundRejection::DeadlinePassed { .. }
                | RoundRejection::WrongPhase { .. }
                | RoundRejection::NotInRound(_)
                | RoundRejection::AlreadyCommitted(_)
        ));
        self.settle();
    }
}

/// A node's delta in a round, and its salt.
fn delta(round: u64, node: &PublicKey) -> (Hash, Hash) {
    let material = [&round.to_be_bytes()[..], &node.0].concat();
    (
        blake3::derive_key("sim delta", &material),
        blake3::derive_key("sim salt", &material),
    )
}

/// Whether a node's delta helps: the honest validators' truth.
fn good(round: u64, node: &PublicKey) -> bool {
    !delta(round, node).0[0].is_multiple_of(4)
}

fn simulate(seed: u64, rounds: u64) -> Sim {
    let keys = DevKeys::derive();
    let mut genesis = keys.genesis();
    genesis.governance_threshold = 1;
    genesis.parameters = Parameters {
        round_burn_threshold: 100,
        nodes_per_round_min: 2,
        validators_per_round: 5,
        validators_per_delta: 3,
        validator_quorum: 2,
        scored_deltas_min: 1,
        model_experts: 2,
        liveness_window_ms: 1_000,
        commit_deadline_ms: 10_000,
        reveal_deadline_ms: 10_000,
        validate_deadline_ms: 10_000,
        ..Parameters::default()
    };
    genesis.plugins = PluginKind::ALL
        .into_iter()
        .map(|kind| PluginModule::new(kind, defaults::wasm(kind)))
        .collect();
    genesis.model = Some(ModelSpec {
        experts: 2,
        shared_hash: [1; 32],
        expert_hashes: vec![[2; 32], [3; 32]],
        ..ModelSpec::default_size(0)
    });
    let nodes: Vec<Keypair> = (0..8u8)
        .map(|i| Keypair::from_secret([100 + i; 32]))
        .collect();
    // Six validators, one of them also node 0; two of them (fewer than half of any
    // committee's measurers of a delta, most of the time) lie.
    let mut validators: Vec<Keypair> = (0..5u8)
        .map(|i| Keypair::from_secret([200 + i; 32]))
        .collect();
    validators.push(nodes[0].clone());
    let liars = vec![validators[0].public()];
    let mut sim = Sim {
        state: State::default(),
        events: Vec::new(),
        time_ms: 1_000,
        head: [0; 32],
        keys,
        host: Host::new(Limits::default()),
        nodes,
        validators,
        liars,
        rng: Rng(seed),
        key: 0,
        finalized: 0,
        aborted: 0,
        copies_refused: 0,
        merges: 0,
    };
    sim.input(ServerInput::Genesis(Box::new(genesis))).unwrap();
    let item = |i: u8, held_out| PoolItem {
        bytes: 10,
        checksum: [i; 32],
        held_out,
    };
    let pool = PoolSpec {
        name: "sim".into(),
        items: (0..40).map(|i| item(i, i.is_multiple_of(5))).collect(),
    };
    let curator = sim.keys.curator.clone();
    sim.command(&curator, Action::RegisterPool(pool)).unwrap();
    let governor = sim.keys.governance[0].clone();
    for validator in sim.validators.clone() {
        let admit = Action::ProposeValidator {
            validator: validator.public(),
            admit: true,
            activation_round: 1,
        };
        sim.command(&governor, admit).unwrap();
    }
    for (i, node) in sim.nodes.clone().iter().enumerate() {
        let capabilities = Capabilities {
            gpu_model: "H100".into(),
            vram_mib: 16_384 * (1 + i as u32 % 3),
            experts: if i % 2 == 0 { vec![0, 1] } else { vec![1] },
            endpoint: format!("https://node-{i}"),
        };
        sim.command(node, Action::RegisterNode(capabilities))
            .unwrap();
    }
    for _ in 0..rounds {
        sim.round();
    }
    sim
}

#[test]
fn rounds_keep_every_invariant_and_replay_to_the_same_root() {
    let rounds: u64 = std::env::var("BLYAN_SIM_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000);
    let seed: u64 = std::env::var("BLYAN_SIM_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(7);
    let started = std::time::Instant::now();
    let outcome = std::panic::catch_unwind(|| simulate(seed, rounds));
    let sim = outcome.unwrap_or_else(|panic| {
        eprintln!(
            "reproduce with: BLYAN_SIM_SEED={seed} BLYAN_SIM_ROUNDS={rounds} cargo test --workspace --test rounds"
        );
        std::panic::resume_unwind(panic)
    });
    eprintln!(
        "{rounds} rounds (seed {seed}): {} finalized, {} aborted, {} copies refused, {} events, {:?}",
        sim.finalized,
        sim.aborted,
        sim.copies_refused,
        sim.events.len(),
        started.elapsed()
    );
    assert!(sim.finalized > rounds / 10, "rounds finalize");
    assert!(sim.aborted > 0, "some rounds abort");
    assert!(sim.copies_refused > 0, "copies were tried and refused");
    // Validators that lied lost reputation against the honest ones.
    let reputation = |key: &PublicKey| sim.state.validators().get(key).unwrap().reputation;
    assert!(reputation(&sim.liars[0]) < reputation(&sim.validators[1].public()));
    // Every merge owed was made: each expert's versions are 1, 2, ... with no gap.
    assert!(sim.merges > 0, "rounds merged");
    assert_eq!(sim.state.experts().owed().count(), 0);
    let versions: u32 = (0..2).map(|expert| sim.state.experts().head(expert)).sum();
    assert_eq!(versions as u64, sim.merges);
    // A replay of the events, each checked as a stored log's is, reaches the same
    // state and root.
    let mut replayed = State::default();
    for event in &sim.events {
        replayed.check(event).unwrap();
        replayed.apply(event);
    }
    assert_eq!(replayed.root(), sim.state.root());
    // A snapshot of the state reads back to the same state, with the genesis and any
    // stored plugin module taken from the events.
    let mut event_at = |seq: u64| {
        sim.events
            .get(seq as usize)
            .cloned()
            .ok_or_else(|| format!("no event {seq}"))
    };
    let mut written = Vec::new();
    sim.state.snapshot_to(&mut written);
    let restored = State::restore(&written, &mut event_at).unwrap();
    assert_eq!(restored.root(), sim.state.root());
    assert_eq!(restored, sim.state);
}
