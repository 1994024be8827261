//! Rounds: opening the next round, deadline ticks, and the results of a round's
//! policy calls. Learning rounds themselves build on these.
//!
//! A policy call runs on a worker, never in the core: its checked output comes back
//! as a [`ServerInput::PolicyResult`](crate::model::ServerInput), which the core checks
//! against the round's fallback chain and decides into events.

use super::RejectionClass;
use super::governance::{Governance, open_round};
use crate::model::{Event, PluginFallback, PolicyResult};

/// Why the core refused a round input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoundRejection {
    #[error("round {round} can't open: the next round is {next}")]
    OutOfOrder { round: u64, next: u64 },
    #[error("a tick at {time_ms} ms is after the log time {log_time_ms} ms")]
    TickInTheFuture { time_ms: u64, log_time_ms: u64 },
    #[error("no deadline is due at {time_ms} ms")]
    NothingDue { time_ms: u64 },
    #[error("a policy result for round {round}, but round {open} is open")]
    NotTheOpenRound { round: u64, open: u64 },
    #[error("the policy result does not follow the {kind} fallback chain: {reason}")]
    NotTheChain { kind: String, reason: String },
}

impl RoundRejection {
    pub fn code(&self) -> &'static str {
        match self {
            RoundRejection::OutOfOrder { .. } => "round_out_of_order",
            RoundRejection::TickInTheFuture { .. } => "tick_in_the_future",
            RoundRejection::NothingDue { .. } => "nothing_due",
            RoundRejection::NotTheOpenRound { .. } => "not_the_open_round",
            RoundRejection::NotTheChain { .. } => "not_the_fallback_chain",
        }
    }

    pub fn class(&self) -> RejectionClass {
        match self {
            RoundRejection::OutOfOrder { .. }
            | RoundRejection::NothingDue { .. }
            | RoundRejection::NotTheOpenRound { .. } => RejectionClass::Conflict,
            RoundRejection::TickInTheFuture { .. } | RoundRejection::NotTheChain { .. } => {
                RejectionClass::Invalid
            }
        }
    }
}

pub(super) fn decide_open_round(
    governance: &Governance,
    round: u64,
) -> Result<Vec<Event>, RoundRejection> {
    let next = governance.round_number() + 1;
    if round != next {
        return Err(RoundRejection::OutOfOrder { round, next });
    }
    Ok(vec![open_round(governance)])
}

/// A tick closes whatever deadline it reached. No phase has a deadline yet, so every
/// tick is refused until rounds have phases.
pub(super) fn decide_tick(time_ms: u64, log_time_ms: u64) -> Result<Vec<Event>, RoundRejection> {
    if time_ms > log_time_ms {
        return Err(RoundRejection::TickInTheFuture {
            time_ms,
            log_time_ms,
        });
    }
    Err(RoundRejection::NothingDue { time_ms })
}

/// The fallback events of a policy call: one per plugin that failed before the one
/// that answered, which must be the next of the chain, or the embedded default after
/// every stored one failed. The output's own events come with the round lifecycle.
pub(super) fn decide_policy_result(
    governance: &Governance,
    result: &PolicyResult,
) -> Result<Vec<Event>, RoundRejection> {
    let open = governance.round_number();
    if result.round != open {
        return Err(RoundRejection::NotTheOpenRound {
            round: result.round,
            open,
        });
    }
    let not_the_chain = |reason: &str| RoundRejection::NotTheChain {
        kind: result.kind.to_string(),
        reason: reason.to_string(),
    };
    let chain = governance.fallback_chain(result.kind);
    let failed = result.failures.len();
    if failed > chain.len()
        || !result
            .failures
            .iter()
            .zip(&chain)
            .all(|(failure, hash)| failure.hash == *hash)
    {
        return Err(not_the_chain(
            "the failed plugins are not the chain's, in order",
        ));
    }
    match chain.get(failed) {
        Some(next) if *next != result.module_hash => {
            return Err(not_the_chain(
                "the answering plugin is not the chain's next",
            ));
        }
        Some(_) => {}
        // Every stored plugin failed: the embedded default answered.
        None if chain.contains(&result.module_hash) => {
            return Err(not_the_chain("a plugin that failed can't answer"));
        }
        None => {}
    }
    let stored = match governance.plugin(&result.module_hash) {
        Some(plugin) if plugin.kind != result.kind => {
            return Err(not_the_chain("the answering module is of another kind"));
        }
        Some(_) => true,
        None => false,
    };
    match &result.unstored_module {
        Some(module)
            if stored
                || module.hash != result.module_hash
                || module.kind != result.kind
                || failed == 0 =>
        {
            return Err(not_the_chain(
                "only an unstored default that answered after a failure is carried",
            ));
        }
        None if !stored => {
            return Err(not_the_chain("the answering module is not stored"));
        }
        Some(_) | None => {}
    }
    let mut unstored = result.unstored_module.clone();
    Ok(result
        .failures
        .iter()
        .map(|failure| {
            Event::PluginFallback(PluginFallback {
                round: result.round,
                kind: result.kind,
                failed_hash: failure.hash,
                reason_code: failure.reason_code.clone(),
                reason: failure.reason.clone(),
                used_hash: result.module_hash,
                used_module: unstored.take(),
            })
        })
        .collect())
}
