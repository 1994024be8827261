//! Rebuilding state from the log, checking it on the way.
//!
//! The server replays its own log on start ([`ReplayChecks::STORED`]: the hash chain,
//! the event structure and every checkpoint). An auditor replays a downloaded log with
//! [`ReplayChecks::AUDIT`], which also verifies every command signature and decides
//! every command again, requiring the exact events the log holds.

use std::collections::VecDeque;

use crate::codec;
use crate::core::{Authenticated, Context, State, decide};
use crate::crypto::{self, COMMAND_DOMAIN};
use crate::merkle::{self, Frontier};
use crate::model::{Event, Hash, LoggedEvent};
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
    /// Events the last command decided that the log has not shown yet.
    expected: VecDeque<Event>,
}

impl Replayer {
    pub fn new(checks: ReplayChecks) -> Replayer {
        Replayer {
            checks,
            state: State::default(),
            chain: ChainVerifier::default(),
            frontier: Frontier::default(),
            expected: VecDeque::new(),
        }
    }

    /// Checks and applies one record. On error nothing was applied.
    pub fn push(&mut self, record: &Record) -> Result<(), ReplayError> {
        self.push_checked(&CheckedRecord::check(record.clone())?)
    }

    /// Checks the links and the meaning of a record whose own hash is checked, then
    /// applies it. On error nothing was applied.
    pub fn push_checked(&mut self, checked: &CheckedRecord) -> Result<(), ReplayError> {
        let CheckedRecord { record, logged } = checked;
        self.chain.clone().push_hashed(record)?;
        let seq = record.seq;
        let invalid = |reason: String| ReplayError::Invalid { seq, reason };
        match (&logged.cause, &logged.event) {
            (None, Event::GenesisCreated(genesis)) => {
                if seq != 0 {
                    return Err(invalid("genesis after seq 0".into()));
                }
                crate::genesis::validate(genesis).map_err(|error| invalid(error.to_string()))?;
            }
            (_, _) if seq == 0 => return Err(invalid("seq 0 must be the genesis".into())),
            (None, Event::CheckpointCreated(checkpoint)) => {
                if checkpoint.tree_size != seq {
                    return Err(invalid(format!(
                        "checkpoint covers {} events, expected {seq}",
                        checkpoint.tree_size
                    )));
                }
                if checkpoint.merkle_root != self.frontier.root() {
                    return Err(invalid(
                        "checkpoint Merkle root does not match the log".into(),
                    ));
                }
                let genesis = self.state.genesis().expect("seq > 0 has a genesis");
                merkle::verify_checkpoint(
                    &genesis.operator_key,
                    &genesis.network_id,
                    checkpoint.tree_size,
                    &checkpoint.merkle_root,
                    &checkpoint.signature,
                )
                .map_err(|error| invalid(format!("checkpoint signature: {error}")))?;
            }
            (None, event) if self.checks.redecide => {
                let Some(expected) = self.expected.front() else {
                    return Err(invalid("event without a cause".into()));
                };
                if expected != event {
                    return Err(invalid(
                        "event differs from what its command decides".into(),
                    ));
                }
            }
            (None, _) => {}
            (Some(_), Event::GenesisCreated(_) | Event::CheckpointCreated(_)) => {
                return Err(invalid("server events carry no command".into()));
            }
            (Some(cause), event) => {
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
                    let authenticated = Authenticated {
                        signer: cause.signer,
                        command,
                    };
                    let decided = decide(
                        &self.state,
                        &authenticated,
                        &Context {
                            time_ms: record.time_ms,
                        },
                    )
                    .map_err(|rejection| {
                        invalid(format!("its command is rejected on replay: {rejection}"))
                    })?;
                    if decided.first() != Some(event) {
                        return Err(invalid(
                            "event differs from what its command decides".into(),
                        ));
                    }
                    self.expected = decided.into_iter().skip(1).collect();
                }
            }
        }
        if logged.cause.is_none()
            && !matches!(
                logged.event,
                Event::GenesisCreated(_) | Event::CheckpointCreated(_)
            )
        {
            self.expected.pop_front();
        }
        self.chain.push_hashed(record).expect("checked above");
        self.frontier.push_event(&record.hash);
        self.state.apply(&logged.event);
        Ok(())
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

    pub fn into_parts(self) -> (State, Frontier, Hash) {
        let head_hash = self.chain.head_hash();
        (self.state, self.frontier, head_hash)
    }
}
