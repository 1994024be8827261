//! The log's own events: the genesis at seq 0, and checkpoints at their cadence.

use super::{RejectionClass, State};
use crate::model::{Checkpoint, Event, Genesis, Hash};

/// Why the core refused a genesis or a checkpoint input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogRejection {
    #[error("a genesis may only be the first event")]
    GenesisNotFirst,
    #[error("invalid genesis: {0}")]
    GenesisInvalid(String),
    #[error(
        "no checkpoint is due: {events_since} events since the last one, the interval is {interval}"
    )]
    CheckpointNotDue { events_since: u64, interval: u64 },
}

impl LogRejection {
    pub fn code(&self) -> &'static str {
        match self {
            LogRejection::GenesisNotFirst => "genesis_not_first",
            LogRejection::GenesisInvalid(_) => "genesis_invalid",
            LogRejection::CheckpointNotDue { .. } => "checkpoint_not_due",
        }
    }

    pub fn class(&self) -> RejectionClass {
        match self {
            LogRejection::GenesisInvalid(_) => RejectionClass::Invalid,
            LogRejection::GenesisNotFirst | LogRejection::CheckpointNotDue { .. } => {
                RejectionClass::Conflict
            }
        }
    }
}

pub(super) fn decide_genesis(state: &State, genesis: &Genesis) -> Result<Vec<Event>, LogRejection> {
    if state.genesis.is_some() || state.events_applied != 0 {
        return Err(LogRejection::GenesisNotFirst);
    }
    crate::genesis::validate(genesis)
        .map_err(|error| LogRejection::GenesisInvalid(error.to_string()))?;
    Ok(vec![Event::GenesisCreated(Box::new(genesis.clone()))])
}

/// A checkpoint is due as soon as `checkpoint_interval_events` events followed the
/// last one (or the genesis), even between the events of one cause; it covers every
/// event before it. The Merkle root and the signature are checked by the replay,
/// which holds the log's Merkle frontier.
pub(super) fn decide_checkpoint(
    state: &State,
    merkle_root: &Hash,
    signature: &[u8; 64],
) -> Result<Vec<Event>, LogRejection> {
    if !state.checkpoint_due() {
        return Err(LogRejection::CheckpointNotDue {
            events_since: state.events_since_checkpoint(),
            interval: state.governance.parameters().checkpoint_interval_events,
        });
    }
    Ok(vec![Event::CheckpointCreated(Checkpoint {
        tree_size: state.events_applied,
        merkle_root: *merkle_root,
        signature: *signature,
    })])
}
