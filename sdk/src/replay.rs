//! Rebuilding state from the log, checking it on the way.
//!
//! The server replays its own log on start ([`ReplayChecks::STORED`]: the hash chain,
//! the event structure, the genesis and every checkpoint). An auditor replays a
//! downloaded log with [`ReplayChecks::AUDIT`], which also verifies every command
//! signature and decides every cause again (commands and server inputs alike),
//! requiring exactly the events the log holds. [`Replayer::finish`] checks what only
//! the end of the log shows.

use std::collections::{HashSet, VecDeque};

use crate::codec;
use crate::core::{Authenticated, Context, State, decide, decide_input};
use crate::crypto::{self, COMMAND_DOMAIN};
use crate::merkle::{self, Frontier};
use crate::model::{Cause, Event, Hash, LoggedEvent, ServerInput};
use crate::record::{ChainError, ChainVerifier, Record};

/// Which checks a replay runs beyond the hash chain and the event structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayChecks {
    pub signatures: bool,
    pub redecide: bool,
}

impl ReplayChecks {
    /// For a log this process wrote itself: signatures were checked when it was written.
    pub const STORED: ReplayChecks = ReplayChecks {
        signatures: false,
        redecide: false,
    };
    /// For a log from elsewhere: trust nothing.
    pub const AUDIT: ReplayChecks = ReplayChecks {
        signatures: true,
        redecide: true,
    };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("record at seq {seq}: {reason}")]
    Invalid { seq: u64, reason: String },
}

impl ReplayError {
    /// The first bad seq.
    pub fn seq(&self) -> u64 {
        match self {
            ReplayError::Chain(error) => error.seq(),
            ReplayError::Invalid { seq, .. } => *seq,
        }
    }
}

/// A record whose own hash is checked and whose event is decoded: the part of a replay
/// that needs no earlier record, so it can run on other threads ahead of
/// [`Replayer::push_checked`].
#[derive(Debug, Clone)]
pub struct CheckedRecord {
    pub record: Record,
    pub logged: LoggedEvent,
}

impl CheckedRecord {
    /// A record as stored under `seq`, read back: decoded, at that seq, its own hash
    /// checked and its event decoded. Every reader of stored records goes through here.
    pub fn decode(seq: u64, bytes: &[u8]) -> Result<CheckedRecord, ReplayError> {
        let record = Record::decode(bytes).map_err(|error| ChainError::Undecodable {
            seq,
            reason: error.to_string(),
        })?;
        if record.seq != seq {
            return Err(ChainError::WrongSeq {
                seq,
                found: record.seq,
            }
            .into());
        }
        CheckedRecord::check(record)
    }

    pub fn check(record: Record) -> Result<CheckedRecord, ReplayError> {
        record.check_hash()?;
        let logged =
            codec::decode_logged_event(&record.body).map_err(|error| ReplayError::Invalid {
                seq: record.seq,
                reason: error.to_string(),
            })?;
        Ok(CheckedRecord { record, logged })
    }
}

/// Folds records into a [`State`], one at a time, in order.
#[derive(Debug, Clone)]
pub struct Replayer {
    checks: ReplayChecks,
    state: State,
    chain: ChainVerifier,
    frontier: Frontier,
    /// Events the last cause decided that the log has not shown yet, and that cause's
    /// seq.
    expected: VecDeque<Event>,
    expected_cause_seq: u64,
    /// With `redecide`: every command's signer and idempotency key seen so far. The
    /// server answers a repeat from its index and logs nothing, so a repeat in the log
    /// is a command logged twice.
    idempotency_keys: HashSet<Vec<u8>>,
}

impl Replayer {
    pub fn new(checks: ReplayChecks) -> Replayer {
        Replayer {
            checks,
            state: State::default(),
            chain: ChainVerifier::default(),
            frontier: Frontier::default(),
            expected: VecDeque::new(),
            expected_cause_seq: 0,
            idempotency_keys: HashSet::new(),
        }
    }

    /// Goes on from a state restored from a snapshot ([`State::restore`]) of the log up
    /// to `last`, whose Merkle frontier is `frontier`, with the checks a server's
    /// start-up makes ([`ReplayChecks::STORED`]). The state must be the fold of the log
    /// up to `last`; the caller checks it (its root, and `last`'s hash).
    pub fn resume(state: State, last: &Record, frontier: Frontier) -> Replayer {
        assert_eq!(
            state.events_applied(),
            last.seq + 1,
            "the state is of another seq"
        );
        assert_eq!(
            frontier.len(),
            last.seq + 1,
            "the frontier is of another seq"
        );
        Replayer {
            state,
            chain: ChainVerifier::after(last),
            frontier,
            ..Replayer::new(ReplayChecks::STORED)
        }
    }

    /// Checks and applies one record. On error nothing was applied.
    pub fn push(&mut self, record: &Record) -> Result<(), ReplayError> {
        self.push_checked(&CheckedRecord::check(record.clone())?)
    }

    /// Checks the links and the meaning of a record whose own hash is checked, then
    /// applies it. On error nothing was applied.
    ///
    /// Always: the chain, seq 0 is the genesis and nothing else is, every checkpoint
    /// comes exactly when due and matches the log's Merkle root and the operator's
    /// signature. With `signatures`: every command's signature. With `redecide`: every
    /// cause is decided again and must give the logged events, byte for byte, with no
    /// event left out.
    pub fn push_checked(&mut self, checked: &CheckedRecord) -> Result<(), ReplayError> {
        let CheckedRecord { record, logged } = checked;
        self.chain.clone().push_hashed(record)?;
        let seq = record.seq;
        let invalid = |reason: String| ReplayError::Invalid { seq, reason };
        let is_genesis = matches!(logged.cause, Cause::Server(ServerInput::Genesis(_)));
        if (seq == 0) != is_genesis {
            return Err(invalid(if seq == 0 {
                "seq 0 must be the genesis".into()
            } else {
                "a genesis after seq 0".into()
            }));
        }
        let is_checkpoint = matches!(logged.cause, Cause::Server(ServerInput::Checkpoint { .. }));
        // The genesis and checkpoints are recognised by their cause; their events must
        // be what those causes decide, in every mode.
        if is_genesis != matches!(logged.event, Event::GenesisCreated(_))
            || is_checkpoint != matches!(logged.event, Event::CheckpointCreated(_))
        {
            return Err(invalid(
                "a genesis or a checkpoint must be its own server input's event".into(),
            ));
        }
        if self.state.checkpoint_due() != is_checkpoint {
            return Err(invalid(if is_checkpoint {
                "a checkpoint that is not due".into()
            } else {
                format!(
                    "a checkpoint was due here, after {} events",
                    self.state
                        .governance()
                        .parameters()
                        .checkpoint_interval_events
                )
            }));
        }
        let context = Context {
            time_ms: record.time_ms,
            head: record.prev_hash,
        };
        let mut decided = None;
        let mut new_key = None;
        match &logged.cause {
            Cause::Command(cause) => {
                if self.checks.signatures {
                    let network_id = &self
                        .state
                        .genesis()
                        .expect("seq > 0 has a genesis")
                        .network_id;
                    crypto::verify(
                        COMMAND_DOMAIN,
                        network_id,
                        &cause.body,
                        &cause.signer,
                        &cause.signature,
                    )
                    .map_err(|error| invalid(format!("command signature: {error}")))?;
                }
                if self.checks.redecide {
                    let command = codec::decode_command(&cause.body)
                        .map_err(|error| invalid(error.to_string()))?;
                    let mut key = cause.signer.0.to_vec();
                    key.extend_from_slice(&command.idempotency_key);
                    if self.idempotency_keys.contains(&key) {
                        return Err(invalid(
                            "a command under an idempotency key its signer already used".into(),
                        ));
                    }
                    let authenticated = Authenticated {
                        signer: cause.signer,
                        command,
                    };
                    decided = Some(decide(&self.state, &authenticated, &context).map_err(
                        |rejection| {
                            invalid(format!("its command is refused on replay: {rejection}"))
                        },
                    )?);
                    new_key = Some(key);
                }
            }
            Cause::Server(input) => {
                // The genesis and checkpoints are decided in every mode: it is cheap,
                // and a server start-up checks them too.
                if self.checks.redecide || is_genesis || is_checkpoint {
                    decided = Some(decide_input(&self.state, input, &context).map_err(
                        |rejection| {
                            invalid(format!(
                                "its server input is refused on replay: {rejection}"
                            ))
                        },
                    )?);
                }
                if let ServerInput::Checkpoint { merkle_root, .. } = input {
                    self.check_checkpoint(merkle_root, &logged.event)
                        .map_err(invalid)?;
                }
            }
            Cause::FollowUp => {
                if self.checks.redecide {
                    match self.expected.front() {
                        None => return Err(invalid("an event without a cause".into())),
                        Some(expected) if expected != &logged.event => {
                            return Err(invalid(format!(
                                "event differs from what its cause at seq {} decides",
                                self.expected_cause_seq
                            )));
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        if let Some(decided) = decided {
            // A checkpoint may come between the events of one cause; any other cause
            // must find the last one's events all logged.
            if !is_checkpoint && self.checks.redecide {
                self.check_nothing_pending(seq)?;
            }
            let mut decided = decided.into_iter();
            if decided.next().as_ref() != Some(&logged.event) {
                return Err(invalid("event differs from what its cause decides".into()));
            }
            if !is_checkpoint {
                self.expected = decided.collect();
                self.expected_cause_seq = seq;
            }
        } else if matches!(logged.cause, Cause::FollowUp) && self.checks.redecide {
            self.expected.pop_front();
        }
        self.state
            .check(&logged.event)
            .map_err(|reason| invalid(format!("the event cannot apply: {reason}")))?;
        if let Some(key) = new_key {
            self.idempotency_keys.insert(key);
        }
        self.chain.push_hashed(record).expect("checked above");
        self.frontier.push_event(&record.hash);
        self.state.apply(&logged.event);
        Ok(())
    }

    /// Checks what only the end of the log can show: that no cause decided an event
    /// the log left out (with `redecide`), and that no checkpoint is due.
    pub fn finish(&self) -> Result<(), ReplayError> {
        let seq = self.len();
        if self.checks.redecide {
            self.check_nothing_pending(seq)?;
        }
        if self.state.checkpoint_due() {
            return Err(ReplayError::Invalid {
                seq,
                reason: "the log ends where a checkpoint is due".into(),
            });
        }
        Ok(())
    }

    fn check_nothing_pending(&self, seq: u64) -> Result<(), ReplayError> {
        if self.expected.is_empty() {
            return Ok(());
        }
        Err(ReplayError::Invalid {
            seq,
            reason: format!(
                "the cause at seq {} decided {} more event(s) that the log does not hold",
                self.expected_cause_seq,
                self.expected.len()
            ),
        })
    }

    /// A checkpoint's root is the log's, and the operator key signed it.
    fn check_checkpoint(&self, merkle_root: &Hash, event: &Event) -> Result<(), String> {
        if *merkle_root != self.frontier.root() {
            return Err("checkpoint Merkle root does not match the log".into());
        }
        let Event::CheckpointCreated(checkpoint) = event else {
            return Err("a checkpoint input must decide a checkpoint".into());
        };
        let genesis = self.state.genesis().expect("seq > 0 has a genesis");
        merkle::verify_checkpoint(
            &genesis.operator_key,
            &genesis.network_id,
            checkpoint.tree_size,
            &checkpoint.merkle_root,
            &checkpoint.signature,
        )
        .map_err(|error| format!("checkpoint signature: {error}"))
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    pub fn len(&self) -> u64 {
        self.chain.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chain.is_empty()
    }

    pub fn head_hash(&self) -> Hash {
        self.chain.head_hash()
    }

    /// The log time of the last record; 0 for an empty log.
    pub fn time_ms_last(&self) -> u64 {
        self.chain.time_ms_last()
    }

    pub fn into_parts(self) -> (State, Frontier, Hash) {
        let head_hash = self.chain.head_hash();
        (self.state, self.frontier, head_hash)
    }
}

#[cfg(test)]
mod tests {
    //! Audit replay of logs written as the server writes them, then tampered with by
    //! someone who holds the operator key: every record is sealed again and every
    //! checkpoint signed again (and placed again where it falls due), so only deciding
    //! each cause again can notice.

    use super::*;
    use crate::codec;
    use crate::genesis::DevKeys;
    use crate::model::{
        Action, Burn, Capabilities, Checkpoint, Command, Genesis, Parameters, PluginKind,
        PluginModule, PluginProposal, PolicyFailure, PolicyResult, PoolItem, PoolSpec, RoundPins,
    };
    use crate::record::{GENESIS_PREV_HASH, RECORD_CONTEXT};

    /// Distinct bytes per kind and tag: modules are named by their hash.
    fn module(kind: PluginKind, tag: u8) -> PluginModule {
        PluginModule::new(kind, vec![0, b'a', b's', b'm', 1, 0, 0, 0, tag, kind as u8])
    }

    fn genesis(keys: &DevKeys) -> Genesis {
        let mut genesis = keys.genesis();
        genesis.parameters.checkpoint_interval_events = 3;
        genesis.parameters = Parameters {
            round_burn_threshold: 1,
            nodes_per_round_min: 1,
            validators_per_round: 1,
            validators_per_delta: 1,
            validator_quorum: 1,
            ..genesis.parameters
        };
        genesis.plugins = PluginKind::ALL
            .into_iter()
            .map(|kind| module(kind, 0))
            .collect();
        genesis
    }

    /// Causes and the events they decide, without checkpoints: [`seal`] places those.
    struct Log {
        keys: DevKeys,
        state: State,
        logged: Vec<LoggedEvent>,
        /// The chain [`seal`] makes of `logged`, kept as it grows: its head is what a
        /// cause is decided after (a round's seed derives from it).
        sealed: Vec<Record>,
    }

    impl Log {
        fn new() -> Log {
            let keys = DevKeys::derive();
            let input = ServerInput::Genesis(Box::new(genesis(&keys)));
            let mut log = Log {
                state: State::default(),
                logged: Vec::new(),
                sealed: Vec::new(),
                keys,
            };
            log.input(input);
            log
        }

        fn context(&self) -> Context {
            Context {
                time_ms: 1_000,
                head: self
                    .sealed
                    .last()
                    .map_or(GENESIS_PREV_HASH, |record| record.hash),
            }
        }

        fn push(&mut self, cause: Cause, decided: Vec<Event>) {
            let mut cause = Some(cause);
            for event in decided {
                self.state.apply(&event);
                self.logged.push(LoggedEvent {
                    cause: cause.take().unwrap_or(Cause::FollowUp),
                    event,
                });
            }
            self.sealed = seal(&self.keys, &self.logged, true);
        }

        fn input(&mut self, input: ServerInput) {
            let decided = decide_input(&self.state, &input, &self.context()).unwrap();
            self.push(Cause::Server(input), decided);
        }

        /// `signer` 0 is the burn oracle, 1.. the governance keys.
        fn command(&mut self, signer: usize, key: &str, action: Action) {
            let keypair = match signer {
                0 => &self.keys.burn_oracle,
                CURATOR => &self.keys.curator,
                index => &self.keys.governance[index - 1],
            };
            let command = Command {
                idempotency_key: key.as_bytes().to_vec(),
                action,
            };
            let signed = codec::sign_command(keypair, "blyan-dev", &command);
            let authenticated = Authenticated {
                signer: keypair.public(),
                command,
            };
            let decided = decide(&self.state, &authenticated, &self.context()).unwrap();
            self.push(Cause::Command(signed), decided);
        }
    }

    fn checkpoint(keys: &DevKeys, seq: u64, frontier: &Frontier) -> LoggedEvent {
        let merkle_root = frontier.root();
        let signature = merkle::sign_checkpoint(&keys.operator, "blyan-dev", seq, &merkle_root);
        LoggedEvent {
            cause: Cause::Server(ServerInput::Checkpoint {
                merkle_root,
                signature,
            }),
            event: Event::CheckpointCreated(Checkpoint {
                tree_size: seq,
                merkle_root,
                signature,
            }),
        }
    }

    /// Seals `logged` into a chain as the writer does: each checkpoint signed, and
    /// with `place`, appended right after the event that made it due (any checkpoint
    /// in `logged` is dropped); without, kept where `logged` has it.
    fn seal(keys: &DevKeys, logged: &[LoggedEvent], place: bool) -> Vec<Record> {
        let mut records: Vec<Record> = Vec::new();
        let mut frontier = Frontier::default();
        let mut state = State::default();
        let mut append = |logged: LoggedEvent,
                          records: &mut Vec<Record>,
                          frontier: &mut Frontier| {
            let prev_hash = records.last().map_or(GENESIS_PREV_HASH, |last| last.hash);
            let seq = records.len() as u64;
            let record = Record::seal(seq, prev_hash, 1_000, codec::encode_logged_event(&logged));
            frontier.push_event(&record.hash);
            state.apply(&logged.event);
            records.push(record);
            place && state.checkpoint_due()
        };
        for logged in logged {
            let logged = match logged.cause {
                Cause::Server(ServerInput::Checkpoint { .. }) if place => continue,
                Cause::Server(ServerInput::Checkpoint { .. }) => {
                    checkpoint(keys, records.len() as u64, &frontier)
                }
                _ => logged.clone(),
            };
            if append(logged, &mut records, &mut frontier) {
                let due = checkpoint(keys, records.len() as u64, &frontier);
                append(due, &mut records, &mut frontier);
            }
        }
        records
    }

    fn audit(records: &[Record]) -> Result<State, ReplayError> {
        let mut replayer = Replayer::new(ReplayChecks::AUDIT);
        for record in records {
            replayer.push(record)?;
        }
        replayer.finish()?;
        Ok(replayer.state().clone())
    }

    fn burn(tx: &str) -> Action {
        Action::RecordBurn(Burn {
            chain_tx_id: tx.into(),
            burner: "0xb".into(),
            amount: 5,
        })
    }

    /// `Log::command`'s signer for the curator key.
    const CURATOR: usize = 99;

    /// Genesis, burns, a sharding plugin proposed and approved (threshold 2), a pool,
    /// a validator and a node, round 1 opened, and its sharding call, whose pinned
    /// plugin failed.
    fn honest() -> Log {
        let mut log = Log::new();
        log.command(0, "b1", burn("tx1"));
        let pinned = module(PluginKind::Sharding, 1);
        log.command(
            1,
            "p1",
            Action::ProposePlugin(PluginProposal {
                kind: PluginKind::Sharding,
                wasm: pinned.wasm.clone(),
                activation_round: 1,
            }),
        );
        let proposal_hash = log
            .state
            .governance()
            .proposals()
            .get(&1)
            .expect("proposal 1")
            .content_hash();
        log.command(
            2,
            "a1",
            Action::ApproveProposal {
                proposal_id: 1,
                proposal_hash: Some(proposal_hash),
            },
        );
        let item = |held_out| PoolItem {
            bytes: 1,
            checksum: [u8::from(held_out); 32],
            held_out,
        };
        log.command(
            CURATOR,
            "pool",
            Action::RegisterPool(PoolSpec {
                name: "pool".into(),
                items: vec![item(false), item(true)],
            }),
        );
        let validator = log.keys.governance[2].public();
        log.command(
            1,
            "v1",
            Action::ProposeValidator {
                validator,
                admit: true,
                activation_round: 1,
            },
        );
        let proposal_hash = log
            .state
            .governance()
            .proposals()
            .get(&2)
            .expect("proposal 2")
            .content_hash();
        log.command(
            2,
            "v2",
            Action::ApproveProposal {
                proposal_id: 2,
                proposal_hash: Some(proposal_hash),
            },
        );
        log.command(
            3,
            "node",
            Action::RegisterNode(Capabilities {
                gpu_model: "H100".into(),
                vram_mib: 81_920,
                experts: vec![0],
                endpoint: "https://node".into(),
            }),
        );
        log.input(ServerInput::OpenRound { round: 1 });
        log.command(0, "b2", burn("tx2"));
        // The one node gets the one training item.
        let output = blyan_schemas::v1::PolicyOutput {
            kind: Some(blyan_schemas::v1::policy_output::Kind::Sharding(
                blyan_schemas::v1::ShardingOutput {
                    node_indexes: blyan_schemas::column::to_column([0u32]),
                    starts: blyan_schemas::column::to_column([0u64]),
                    counts: blyan_schemas::column::to_column([1u64]),
                },
            )),
        };
        log.input(ServerInput::PolicyResult(PolicyResult {
            round: 1,
            kind: PluginKind::Sharding,
            module_hash: module(PluginKind::Sharding, 0).hash,
            output: prost::Message::encode_to_vec(&output),
            failures: vec![PolicyFailure {
                hash: pinned.hash,
                reason_code: "plugin_out_of_fuel".into(),
                reason: "all fuel consumed".into(),
            }],
            unstored_module: None,
        }));
        log.command(0, "b3", burn("tx3"));
        log
    }

    /// The seq of the first record whose event matches.
    fn seq_of(records: &[Record], found: impl Fn(&Event) -> bool) -> usize {
        records
            .iter()
            .position(|record| found(&codec::decode_logged_event(&record.body).unwrap().event))
            .expect("the log holds the event")
    }

    fn position(log: &Log, found: impl Fn(&Event) -> bool) -> usize {
        log.logged
            .iter()
            .position(|logged| found(&logged.event))
            .expect("the log holds the event")
    }

    fn refused_at(records: &[Record], seq: usize, reason: &str) {
        match audit(records) {
            Err(ReplayError::Invalid {
                seq: found,
                reason: why,
            }) => {
                assert_eq!(found, seq as u64, "{why}");
                assert!(why.contains(reason), "{why}");
            }
            other => panic!("expected a refusal at seq {seq}, got {other:?}"),
        }
    }

    #[test]
    fn a_log_with_server_inputs_passes_the_audit() {
        let log = honest();
        let records = seal(&log.keys, &log.logged, true);
        let state = audit(&records).unwrap();
        assert_eq!(state.governance().round_number(), 1);
        assert_eq!(state.governance().fallbacks().len(), 1);
        assert_eq!(state.burn_total(), 15);
        assert_eq!(state.events_applied(), records.len() as u64);
        // Every third event is followed by a checkpoint, one of them between the
        // proposal's two events.
        let checkpoints = seq_of(&records, |event| {
            matches!(event, Event::CheckpointCreated(_))
        });
        assert_eq!(checkpoints, 3);
        let follow_up = codec::decode_logged_event(&records[4].body).unwrap();
        assert_eq!(follow_up.cause, Cause::FollowUp);
    }

    #[test]
    fn an_altered_server_event_is_refused_at_its_seq() {
        let honest = honest();
        let records = seal(&honest.keys, &honest.logged, true);
        let at = position(&honest, |event| matches!(event, Event::PluginFallback(_)));
        let seq = seq_of(&records, |event| matches!(event, Event::PluginFallback(_)));
        let mut logged = honest.logged.clone();
        let Event::PluginFallback(fallback) = &mut logged[at].event else {
            unreachable!()
        };
        fallback.reason_code = "plugin_trap".into();
        refused_at(
            &seal(&honest.keys, &logged, true),
            seq,
            "differs from what its cause decides",
        );

        let at = position(&honest, |event| matches!(event, Event::RoundOpened(_)));
        let seq = seq_of(&records, |event| matches!(event, Event::RoundOpened(_)));
        let mut logged = honest.logged.clone();
        let Event::RoundOpened(RoundPins { parameters, .. }) = &mut logged[at].event else {
            unreachable!()
        };
        parameters.reward_share_bps = 10_000;
        refused_at(
            &seal(&honest.keys, &logged, true),
            seq,
            "differs from what its cause decides",
        );

        // A policy result that does not follow the round's fallback chain.
        let at = position(&honest, |event| matches!(event, Event::PluginFallback(_)));
        let seq = seq_of(&records, |event| matches!(event, Event::PluginFallback(_)));
        let mut logged = honest.logged.clone();
        let Cause::Server(ServerInput::PolicyResult(result)) = &mut logged[at].cause else {
            unreachable!()
        };
        result.module_hash = [7; 32];
        refused_at(&seal(&honest.keys, &logged, true), seq, "fallback chain");
    }

    #[test]
    fn a_dropped_follow_up_is_refused_at_the_next_cause_or_at_the_end() {
        let honest = honest();
        let activation = position(&honest, |event| {
            matches!(event, Event::PluginActivated { .. })
        });
        let mut logged = honest.logged.clone();
        logged.remove(activation);
        let records = seal(&honest.keys, &logged, true);
        let next_cause = seq_of(&records, |event| {
            matches!(event, Event::PoolRegistered { .. })
        });
        refused_at(&records, next_cause, "decided 1 more event(s)");

        // A log that ends right after the approval misses the activation too.
        let records = seal(&honest.keys, &honest.logged[..activation], true);
        refused_at(&records, records.len(), "decided 1 more event(s)");
    }

    #[test]
    fn a_command_logged_twice_under_one_idempotency_key_is_refused() {
        let mut log = honest();
        // Another burn, accepted by `decide`, under the key of the first one: the
        // server would have answered it from its index without logging it.
        log.command(0, "b1", burn("tx9"));
        let records = seal(&log.keys, &log.logged, true);
        let repeat = seq_of(
            &records,
            |event| matches!(event, Event::BurnRecorded { burn, .. } if burn.chain_tx_id == "tx9"),
        );
        refused_at(&records, repeat, "idempotency key its signer already used");
    }

    #[test]
    fn checkpoints_must_come_exactly_at_their_cadence() {
        let honest = honest();
        let records = seal(&honest.keys, &honest.logged, true);
        let mut logged: Vec<LoggedEvent> = records
            .iter()
            .map(|record| codec::decode_logged_event(&record.body).unwrap())
            .collect();
        let checkpoint = logged.remove(3);
        refused_at(
            &seal(&honest.keys, &logged, false),
            3,
            "a checkpoint was due here",
        );

        logged.insert(2, checkpoint);
        refused_at(&seal(&honest.keys, &logged, false), 2, "not due");
    }

    #[test]
    fn the_schema_names_the_record_hash_context_the_code_uses() {
        let schema = include_str!("../../schemas/proto/blyan/v1/envelope.proto");
        assert!(
            schema.contains(&format!("\"{RECORD_CONTEXT}\"")),
            "envelope.proto must give the record-hash context {RECORD_CONTEXT:?}"
        );
    }
}
