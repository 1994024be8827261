//! Learning rounds on the log:
//!
//! ```text
//! Assigning ──► Commit ──► Reveal ──► Validate ──► Scoring ──► Rewarding ──► Finalized
//!     └────────────┴──────────┴──────────┴───────────────────────────────► Aborted
//! ```
//!
//! - **Opening.** The scheduler submits [`ServerInput::OpenRound`] when [`readiness`]
//!   holds: the burns since the last round plus the carried pool reach
//!   `round_burn_threshold`, a pool exists, enough validators are admitted, and an
//!   expert has `nodes_per_round_min` eligible nodes (a heartbeat within
//!   `heartbeat_timeout_ms`, and the expert among their capabilities).
//! - **Which expert.** The first, counting up from the expert of the last round opened
//!   (wrapping at `model_experts`, starting at 0), that has no round open and enough
//!   eligible nodes. So experts take turns, and rounds of different experts overlap.
//! - **Seed.** `blake3::derive_key(SEED_CONTEXT, head ‖ u64_be(round))`, `head` being
//!   the hash of the last record before the round opened: nobody can choose it.
//! - **Policy calls** (sharding while `Assigning`, scoring while `Scoring`, reward
//!   while `Rewarding`) run on a worker from [`policy_input`]; their checked output
//!   comes back as a [`ServerInput::PolicyResult`], which the core checks again
//!   against the input it rebuilds ([`blyan_schemas::check`]) and decides into events.
//! - **Phases with deadlines** (commit, reveal, validate) close early when everyone
//!   acted, or at their deadline by a [`ServerInput::Tick`]. A round short of commits,
//!   reveals or quorate deltas (`scored_deltas_min`) aborts, and its pool carries over.
//! - **Committee.** `validators_per_round` validators drawn at opening, weighted by
//!   reputation ([`super::validators`]). Each revealed delta gets `validators_per_delta`
//!   of them ([`delta_committee`]), never its own node's key; `validator_quorum` of
//!   those must measure it for it to score.
//! - **Money.** The pool is the reward share (`reward_share_bps`) of the round's burns
//!   plus what earlier rounds carried. `validator_reward_bps` of it goes to the
//!   committee in proportion to agreement; the reward plugin splits the rest by score.
//!   What is not paid carries over. At every seq, `accrued == paid + carried + the
//!   pools of the rounds still running` ([`Rounds::conservation`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use blyan_schemas::check;
use blyan_schemas::column;
use blyan_schemas::v1 as pb;
use prost::Message;

use super::experts::Experts;
use super::governance::Governance;
use super::hashed::{HashedMap, RootHash};
use super::pools::Pools;
use super::registry::Registry;
use super::validators::{self, Validators};
use super::{Context, RejectionClass, RootHasher};
use crate::crypto::PublicKey;
use crate::merkle::Frontier;
use crate::model::{
    Event, Hash, ModelSpec, Parameters, Payout, Phase, PluginFallback, PluginKind, PolicyResult,
    Reveal, RoundOutcome, RoundPins, RoundPlan, Shard, ValidatorOutcome,
};

pub const COMMITMENT_CONTEXT: &str = "blyan-ledger 2026-12 delta-commitment v1";
pub const SEED_CONTEXT: &str = "blyan-ledger 2026-12 round-seed v1";
pub const SHARD_LEAF_CONTEXT: &str = "blyan-ledger 2026-12 shard v1";
pub const SCORE_LEAF_CONTEXT: &str = "blyan-ledger 2026-12 score v1";
pub const PAYOUT_LEAF_CONTEXT: &str = "blyan-ledger 2026-12 payout v1";

/// Why the core refused a round command or input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoundRejection {
    #[error("round {round} can't open: the next round is {next}")]
    OutOfOrder { round: u64, next: u64 },
    #[error("no round can open: {reason}")]
    NotReady { reason: String },
    #[error("a tick at {time_ms} ms is after the log time {log_time_ms} ms")]
    TickInTheFuture { time_ms: u64, log_time_ms: u64 },
    #[error("no deadline is due at {time_ms} ms")]
    NothingDue { time_ms: u64 },
    #[error("round {0} does not exist")]
    RoundNotFound(u64),
    #[error("round {round} is in its {phase} phase")]
    WrongPhase { round: u64, phase: &'static str },
    #[error("the {phase} phase of round {round} closed at {deadline_ms} ms")]
    DeadlinePassed {
        round: u64,
        phase: &'static str,
        deadline_ms: u64,
    },
    #[error("{0} is not a node of this round")]
    NotInRound(PublicKey),
    #[error("{0} is not on this round's committee, or has no delta to measure")]
    NotOnCommittee(PublicKey),
    #[error("this node already committed in round {0}")]
    AlreadyCommitted(u64),
    #[error("this node did not commit in round {0}")]
    NotCommitted(u64),
    #[error("this node already revealed in round {0}")]
    AlreadyRevealed(u64),
    #[error("the reveal does not match the commitment")]
    CommitmentMismatch,
    #[error("another node already revealed this delta in round {0}")]
    DeltaCopied(u64),
    #[error("a delta of {bytes} bytes; this round accepts at most {max}")]
    DeltaTooLarge { bytes: u64, max: u64 },
    #[error("this validator already submitted in round {0}")]
    AlreadySubmitted(u64),
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("round {round} awaits no {kind} result")]
    NotAwaited { round: u64, kind: String },
    #[error("the policy result does not follow the {kind} fallback chain: {reason}")]
    NotTheChain { kind: String, reason: String },
    #[error("the {kind} output breaks the host checks: {reason}")]
    BadOutput { kind: String, reason: String },
}

impl RoundRejection {
    pub fn code(&self) -> &'static str {
        match self {
            RoundRejection::OutOfOrder { .. } => "round_out_of_order",
            RoundRejection::NotReady { .. } => "round_not_ready",
            RoundRejection::TickInTheFuture { .. } => "tick_in_the_future",
            RoundRejection::NothingDue { .. } => "nothing_due",
            RoundRejection::RoundNotFound(_) => "round_not_found",
            RoundRejection::WrongPhase { .. } => "wrong_phase",
            RoundRejection::DeadlinePassed { .. } => "deadline_passed",
            RoundRejection::NotInRound(_) => "not_in_round",
            RoundRejection::NotOnCommittee(_) => "not_on_committee",
            RoundRejection::AlreadyCommitted(_) => "already_committed",
            RoundRejection::NotCommitted(_) => "not_committed",
            RoundRejection::AlreadyRevealed(_) => "already_revealed",
            RoundRejection::CommitmentMismatch => "commitment_mismatch",
            RoundRejection::DeltaCopied(_) => "delta_copied",
            RoundRejection::DeltaTooLarge { .. } => "delta_too_large",
            RoundRejection::AlreadySubmitted(_) => "already_submitted",
            RoundRejection::InvalidField { .. } => "invalid_field",
            RoundRejection::NotAwaited { .. } => "policy_result_not_awaited",
            RoundRejection::NotTheChain { .. } => "not_the_fallback_chain",
            RoundRejection::BadOutput { .. } => "policy_output_invalid",
        }
    }

    pub fn class(&self) -> RejectionClass {
        match self {
            RoundRejection::OutOfOrder { .. }
            | RoundRejection::NotReady { .. }
            | RoundRejection::NothingDue { .. }
            | RoundRejection::WrongPhase { .. }
            | RoundRejection::DeadlinePassed { .. }
            | RoundRejection::AlreadyCommitted(_)
            | RoundRejection::NotCommitted(_)
            | RoundRejection::AlreadyRevealed(_)
            | RoundRejection::DeltaCopied(_)
            | RoundRejection::AlreadySubmitted(_)
            | RoundRejection::NotAwaited { .. } => RejectionClass::Conflict,
            RoundRejection::NotInRound(_) | RoundRejection::NotOnCommittee(_) => {
                RejectionClass::Forbidden
            }
            RoundRejection::RoundNotFound(_) => RejectionClass::NotFound,
            RoundRejection::DeltaTooLarge { .. } => RejectionClass::TooLarge,
            RoundRejection::TickInTheFuture { .. }
            | RoundRejection::CommitmentMismatch
            | RoundRejection::InvalidField { .. }
            | RoundRejection::NotTheChain { .. }
            | RoundRejection::BadOutput { .. } => RejectionClass::Invalid,
        }
    }
}

/// A learning round: its plan and where it stands. What grows with the nodes (commits,
/// reveals, measurements) lives in maps of its own, keyed by round.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Round {
    pub pins: RoundPins,
    #[serde(with = "super::snapshot::arc")]
    pub plan: Arc<RoundPlan>,
    pub phase: Phase,
    /// When the current phase closes; 0 while a policy call is awaited or once over.
    pub deadline_ms: u64,
    pub opened_seq: u64,
    /// The seqs of the round's `AssignmentsMade`, `ScoresRecorded` and
    /// `RoundFinalized` or `RoundAborted`; 0 until logged. A receipt proves them.
    pub assignments_seq: u64,
    pub scores_seq: u64,
    pub ended_seq: u64,
    #[serde(with = "super::snapshot::arc_slice")]
    pub shards: Arc<[Shard]>,
    pub assignments_root: Hash,
    /// The revealed nodes, in key order, fixed when validation starts: delta `i` is
    /// the delta of `deltas[i]`.
    #[serde(with = "super::snapshot::arc_slice")]
    pub deltas: Arc<[PublicKey]>,
    /// The deltas each committee position measures, ascending, fixed with `deltas`.
    /// Derived from the deltas, the committee, the seed and `validators_per_delta`
    /// ([`Round::delta_committee`]), so the state root leaves it out.
    #[serde(with = "super::snapshot::arc_slice")]
    pub tasks: Arc<[Vec<u32>]>,
    /// One per delta, once the scoring plugin answered.
    #[serde(with = "super::snapshot::arc_slice")]
    pub scores: Arc<[u64]>,
    pub scores_root: Hash,
    #[serde(with = "super::snapshot::arc_option")]
    pub outcome: Option<Arc<RoundOutcome>>,
    pub abort_reason: Option<String>,
}

/// The committee positions that measure delta `index` of a round whose committee is
/// `committee`, whose seed is `seed` and that gives each delta `per_delta` measurers;
/// `node` is the delta's node. See [`Round::delta_committee`].
pub fn delta_committee(
    committee: &[PublicKey],
    seed: &Hash,
    per_delta: u32,
    index: usize,
    node: &PublicKey,
) -> Vec<u32> {
    let n = committee.len();
    if n == 0 {
        return Vec::new();
    }
    let k = per_delta as usize;
    let offset = u64::from_be_bytes(seed[..8].try_into().expect("8 bytes"));
    let start = ((offset % n as u64) as usize + index * k) % n;
    (0..n)
        .map(|t| (start + t) % n)
        .filter(|position| committee[*position] != *node)
        .take(k)
        .map(|position| position as u32)
        .collect()
}

impl Round {
    pub fn parameters(&self) -> &Parameters {
        &self.pins.parameters
    }

    fn is_node(&self, key: &PublicKey) -> bool {
        self.plan.nodes.binary_search(key).is_ok()
    }

    /// The committee positions that measure delta `index`: `validators_per_delta` of
    /// them, walking the committee from `(offset + index * K) mod N`, `offset` being
    /// the seed's first eight bytes, and skipping the delta's own node. Consecutive
    /// deltas take consecutive windows, so the load is balanced.
    pub fn delta_committee(&self, index: usize) -> Vec<u32> {
        delta_committee(
            &self.plan.committee,
            &self.plan.seed,
            self.parameters().validators_per_delta,
            index,
            &self.deltas[index],
        )
    }

    /// The deltas `validator` measures, ascending.
    pub fn tasks_of(&self, validator: &PublicKey) -> &[u32] {
        self.plan
            .committee
            .iter()
            .position(|key| key == validator)
            .and_then(|position| self.tasks.get(position))
            .map_or(&[], Vec::as_slice)
    }

    /// How many committee members measure at least one delta.
    pub fn measuring(&self) -> usize {
        self.tasks.iter().filter(|tasks| !tasks.is_empty()).count()
    }

    /// Every committee position's deltas, from [`Round::delta_committee`].
    fn tasks_by_position(&self) -> Arc<[Vec<u32>]> {
        let mut tasks = vec![Vec::new(); self.plan.committee.len()];
        for index in 0..self.deltas.len() {
            for position in self.delta_committee(index) {
                tasks[position as usize].push(index as u32);
            }
        }
        tasks.into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Commit {
    #[serde(with = "crate::model::hex_array")]
    pub commitment: Hash,
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revealed {
    #[serde(with = "crate::model::hex_array")]
    pub delta_hash: Hash,
    #[serde(with = "crate::model::hex_array")]
    pub salt: Hash,
    pub delta_bytes: u64,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Submission {
    pub values: Vec<i64>,
    pub seq: u64,
}

/// How many have acted in a round's phases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub commits: u32,
    pub reveals: u32,
    pub submissions: u32,
}

/// The rounds part of the state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rounds {
    pub(super) rounds: HashedMap<u64, Round>,
    pub(super) progress: HashedMap<u64, Progress>,
    pub(super) commits: HashedMap<(u64, PublicKey), Commit>,
    pub(super) reveals: HashedMap<(u64, PublicKey), Revealed>,
    /// Which node revealed a delta hash in a round: copies are refused. Only within
    /// the round: training is deterministic, so nodes given the same base and items
    /// in a later round (after an abort, or a round that accepted nothing) honestly
    /// make the same bytes again. A copy of another round's delta is measured on this
    /// round's base like any other, and a delta of another expert does not fit.
    pub(super) revealed_hashes: HashedMap<(u64, Hash), PublicKey>,
    pub(super) submissions: HashedMap<(u64, PublicKey), Submission>,
    /// Each expert with a round running, and that round.
    pub(super) live: BTreeMap<u32, u64>,
    pub(super) expert_last: Option<u32>,
    /// Burns counted into rounds so far.
    #[serde(with = "crate::model::u128_string")]
    pub(super) burns_consumed: u128,
    /// The reward share of every round's burns, summed.
    #[serde(with = "crate::model::u128_string")]
    pub(super) accrued: u128,
    #[serde(with = "crate::model::u128_string")]
    pub(super) paid: u128,
    /// Unpaid pools waiting for the next round.
    #[serde(with = "crate::model::u128_string")]
    pub(super) carried: u128,
}

/// The money of the rounds at one seq, which must balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Conservation {
    #[serde(with = "crate::model::u128_string")]
    pub accrued: u128,
    #[serde(with = "crate::model::u128_string")]
    pub paid: u128,
    #[serde(with = "crate::model::u128_string")]
    pub carried: u128,
    /// The pools of the rounds still running.
    #[serde(with = "crate::model::u128_string")]
    pub running: u128,
}

impl Conservation {
    pub fn balances(&self) -> bool {
        self.paid
            .checked_add(self.carried)
            .and_then(|sum| sum.checked_add(self.running))
            == Some(self.accrued)
    }
}

impl Rounds {
    pub fn get(&self, round: u64) -> Option<&Round> {
        self.rounds.get(&round)
    }

    /// Rounds from `from` on, by number.
    pub fn from(&self, from: u64) -> impl Iterator<Item = (&u64, &Round)> {
        self.rounds.range_from(from)
    }

    /// The rounds still running, one per expert at most, by expert: as many as there
    /// are experts, however many rounds have ended.
    pub fn running(&self) -> impl Iterator<Item = u64> + '_ {
        self.live.values().copied()
    }

    pub fn progress(&self, round: u64) -> Progress {
        self.progress.get(&round).copied().unwrap_or_default()
    }

    pub fn commit(&self, round: u64, node: &PublicKey) -> Option<&Commit> {
        self.commits.get(&(round, *node))
    }

    pub fn reveal(&self, round: u64, node: &PublicKey) -> Option<&Revealed> {
        self.reveals.get(&(round, *node))
    }

    pub fn submission(&self, round: u64, validator: &PublicKey) -> Option<&Submission> {
        self.submissions.get(&(round, *validator))
    }

    pub fn burns_consumed(&self) -> u128 {
        self.burns_consumed
    }

    pub fn carried(&self) -> u128 {
        self.carried
    }

    pub fn conservation(&self) -> Conservation {
        Conservation {
            accrued: self.accrued,
            paid: self.paid,
            carried: self.carried,
            running: self
                .live
                .values()
                .filter_map(|round| self.rounds.get(round))
                .map(|round| round.plan.reward_pool)
                .sum(),
        }
    }

    fn round(&self, round: u64) -> Result<&Round, RoundRejection> {
        self.rounds
            .get(&round)
            .ok_or(RoundRejection::RoundNotFound(round))
    }
}

/// `blake3::derive_key(COMMITMENT_CONTEXT, u64_be(round) ‖ node ‖ delta_hash ‖ salt)`.
pub fn commitment(round: u64, node: &PublicKey, delta_hash: &Hash, salt: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key(COMMITMENT_CONTEXT);
    hasher.update(&round.to_be_bytes());
    hasher.update(&node.0);
    hasher.update(delta_hash);
    hasher.update(salt);
    *hasher.finalize().as_bytes()
}

/// The content of a shard's leaf in a round's assignments tree.
pub fn shard_leaf(round: u64, shard: &Shard) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key(SHARD_LEAF_CONTEXT);
    hasher.update(&round.to_be_bytes());
    hasher.update(&shard.node.0);
    hasher.update(&shard.start.to_be_bytes());
    hasher.update(&shard.count.to_be_bytes());
    *hasher.finalize().as_bytes()
}

/// The content of a delta's leaf in a round's scores tree.
pub fn score_leaf(round: u64, node: &PublicKey, delta_hash: &Hash, score: u64) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key(SCORE_LEAF_CONTEXT);
    hasher.update(&round.to_be_bytes());
    hasher.update(&node.0);
    hasher.update(delta_hash);
    hasher.update(&score.to_be_bytes());
    *hasher.finalize().as_bytes()
}

/// Who is paid in a round: a node for its delta, or a validator for its measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payee {
    Node = 0,
    Validator = 1,
}

/// The content of a payout's leaf in a round's rewards tree.
pub fn payout_leaf(round: u64, payee: Payee, payout: &Payout) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key(PAYOUT_LEAF_CONTEXT);
    hasher.update(&round.to_be_bytes());
    hasher.update(&[payee as u8]);
    hasher.update(&payout.key.0);
    hasher.update(&payout.amount.to_be_bytes());
    *hasher.finalize().as_bytes()
}

/// The leaves of a round's scores tree: delta `i` of `deltas` with score `i`.
pub fn score_leaves(
    rounds: &Rounds,
    round_id: u64,
    deltas: &[PublicKey],
    scores: &[u64],
) -> Vec<Hash> {
    deltas
        .iter()
        .zip(scores)
        .map(|(node, score)| {
            let revealed = rounds.reveal(round_id, node).expect("a delta was revealed");
            score_leaf(round_id, node, &revealed.delta_hash, *score)
        })
        .collect()
}

/// The leaves of a round's rewards tree: the nodes' payouts, then the validators'.
pub fn payout_leaves(
    round_id: u64,
    nodes: &[Payout],
    validators: &[ValidatorOutcome],
) -> Vec<Hash> {
    nodes
        .iter()
        .map(|payout| payout_leaf(round_id, Payee::Node, payout))
        .chain(validators.iter().map(|outcome| {
            payout_leaf(
                round_id,
                Payee::Validator,
                &Payout {
                    key: outcome.validator,
                    amount: outcome.reward,
                },
            )
        }))
        .collect()
}

/// The RFC 6962 root over leaf contents.
pub fn merkle_root(contents: impl IntoIterator<Item = Hash>) -> Hash {
    let mut frontier = Frontier::default();
    for content in contents {
        frontier.push_event(&content);
    }
    frontier.root()
}

/// `floor(amount * bps / 10 000)` without overflow.
pub fn share(amount: u128, bps: u32) -> u128 {
    let bps = u128::from(bps);
    amount / 10_000 * bps + amount % 10_000 * bps / 10_000
}

/// What a round needs of the rest of the state.
pub(super) struct World<'a> {
    pub governance: &'a Governance,
    pub registry: &'a Registry,
    pub pools: &'a Pools,
    pub validators: &'a Validators,
    pub burns_total: u128,
    pub experts: &'a Experts,
    pub model: Option<&'a ModelSpec>,
}

fn not_ready(reason: impl Into<String>) -> RoundRejection {
    RoundRejection::NotReady {
        reason: reason.into(),
    }
}

/// The plan of the next round if it could open at `time_ms` after the record `head`,
/// or why it can't.
pub(super) fn readiness(
    rounds: &Rounds,
    world: &World<'_>,
    time_ms: u64,
    head: &Hash,
) -> Result<RoundPins, RoundRejection> {
    let round = world.governance.round_number() + 1;
    let (plugins, parameters) = world.governance.pins_for(round);
    let burns = world.burns_total - rounds.burns_consumed;
    if burns.saturating_add(rounds.carried) < parameters.round_burn_threshold {
        return Err(not_ready("the burns have not reached the threshold"));
    }
    let (pool_id, _) = world
        .pools
        .newest()
        .ok_or_else(|| not_ready("no dataset pool is registered"))?;
    let committee_size = (parameters.validators_per_round as usize).min(world.validators.len());
    if committee_size < parameters.validator_quorum as usize {
        return Err(not_ready(format!(
            "{} validators are admitted; a quorum is {}",
            world.validators.len(),
            parameters.validator_quorum
        )));
    }
    let experts = parameters.model_experts;
    let mut eligible: Vec<Vec<PublicKey>> = vec![Vec::new(); experts as usize];
    for (key, node) in world.registry.nodes.iter() {
        if time_ms.saturating_sub(world.registry.last_seen_ms(node))
            > parameters.heartbeat_timeout_ms
        {
            continue;
        }
        for expert in &node.capabilities.experts {
            if let Some(list) = eligible.get_mut(*expert as usize) {
                list.push(*key);
            }
        }
    }
    let first = rounds.expert_last.map_or(0, |last| last + 1);
    let expert = (0..experts)
        .map(|i| (first + i) % experts)
        .find(|expert| {
            !rounds.live.contains_key(expert)
                && !world.experts.owes(*expert)
                && eligible[*expert as usize].len() >= parameters.nodes_per_round_min as usize
        })
        .ok_or_else(|| {
            not_ready(format!(
                "no expert without a round or a merge owed has {} eligible nodes",
                parameters.nodes_per_round_min
            ))
        })?;
    let mut material = Vec::with_capacity(40);
    material.extend_from_slice(head);
    material.extend_from_slice(&round.to_be_bytes());
    let seed = blake3::derive_key(SEED_CONTEXT, &material);
    let committee = world.validators.draw(&seed, committee_size);
    let reward_pool = share(burns, parameters.reward_share_bps) + rounds.carried;
    Ok(RoundPins {
        round,
        plugins,
        plan: Some(RoundPlan {
            expert,
            pool_id,
            seed,
            nodes: std::mem::take(&mut eligible[expert as usize]),
            committee,
            burns,
            reward_pool,
            model_versions: world
                .model
                .map_or_else(Vec::new, |model| world.experts.heads_of(model)),
        }),
        parameters,
    })
}

pub(super) fn decide_open_round(
    rounds: &Rounds,
    world: &World<'_>,
    round: u64,
    context: &Context,
) -> Result<Vec<Event>, RoundRejection> {
    let next = world.governance.round_number() + 1;
    if round != next {
        return Err(RoundRejection::OutOfOrder { round, next });
    }
    Ok(vec![Event::RoundOpened(readiness(
        rounds,
        world,
        context.time_ms,
        &context.head,
    )?)])
}

/// The events that close the current phase of `round` at `time_ms`.
fn close_phase(rounds: &Rounds, round_id: u64, round: &Round, time_ms: u64) -> Vec<Event> {
    let parameters = round.parameters();
    let progress = rounds.progress(round_id);
    let minimum = parameters.scored_deltas_min;
    let abort = |reason: &str| {
        vec![Event::RoundAborted {
            round: round_id,
            reason: reason.into(),
            carried: round.plan.reward_pool,
        }]
    };
    let start = |phase: Phase, deadline_ms: u64| {
        vec![Event::PhaseStarted {
            round: round_id,
            phase,
            deadline_ms,
        }]
    };
    match round.phase {
        Phase::Commit if progress.commits < minimum => abort("too_few_commits"),
        Phase::Commit => start(
            Phase::Reveal,
            time_ms.saturating_add(parameters.reveal_deadline_ms),
        ),
        Phase::Reveal if progress.reveals < minimum => abort("too_few_reveals"),
        Phase::Reveal => start(
            Phase::Validate,
            time_ms.saturating_add(parameters.validate_deadline_ms),
        ),
        Phase::Validate if quorate(rounds, round_id, round).count() < minimum as usize => {
            abort("too_few_validations")
        }
        Phase::Validate => start(Phase::Scoring, 0),
        Phase::Assigning
        | Phase::Scoring
        | Phase::Rewarding
        | Phase::Finalized
        | Phase::Aborted => Vec::new(),
    }
}

/// Each delta's measurements, in committee order of its measurers, as submitted.
fn measurements(rounds: &Rounds, round_id: u64, round: &Round) -> Vec<Vec<i64>> {
    let mut per_delta: Vec<Vec<i64>> = vec![Vec::new(); round.deltas.len()];
    for validator in round.plan.committee.iter() {
        let Some(submission) = rounds.submission(round_id, validator) else {
            continue;
        };
        for (task, value) in round.tasks_of(validator).iter().zip(&submission.values) {
            per_delta[*task as usize].push(*value);
        }
    }
    per_delta
}

/// The indexes of the deltas that reached their quorum.
fn quorate<'a>(
    rounds: &Rounds,
    round_id: u64,
    round: &'a Round,
) -> impl Iterator<Item = usize> + 'a {
    let quorum = round.parameters().validator_quorum as usize;
    measurements(rounds, round_id, round)
        .into_iter()
        .enumerate()
        .filter(move |(_, values)| values.len() >= quorum)
        .map(|(index, _)| index)
}

/// A tick closes every phase whose deadline it reached, round by round.
pub(super) fn decide_tick(
    rounds: &Rounds,
    time_ms: u64,
    context: &Context,
) -> Result<Vec<Event>, RoundRejection> {
    if time_ms > context.time_ms {
        return Err(RoundRejection::TickInTheFuture {
            time_ms,
            log_time_ms: context.time_ms,
        });
    }
    let mut closing: Vec<(u64, u64)> = rounds
        .live
        .values()
        .filter_map(|round_id| {
            let round = rounds.get(*round_id)?;
            (round.deadline_ms != 0 && round.deadline_ms <= time_ms)
                .then_some((round.deadline_ms, *round_id))
        })
        .collect();
    closing.sort_unstable();
    let mut events = Vec::new();
    for (_, round_id) in closing {
        let round = rounds.round(round_id).expect("a live round exists");
        events.extend(close_phase(rounds, round_id, round, context.time_ms));
    }
    if events.is_empty() {
        return Err(RoundRejection::NothingDue { time_ms });
    }
    Ok(events)
}

/// The round of a command, in `phase` and before its deadline.
fn in_phase<'a>(
    rounds: &'a Rounds,
    round_id: u64,
    phase: Phase,
    context: &Context,
) -> Result<&'a Round, RoundRejection> {
    let round = rounds.round(round_id)?;
    if round.phase != phase {
        return Err(RoundRejection::WrongPhase {
            round: round_id,
            phase: round.phase.name(),
        });
    }
    if context.time_ms > round.deadline_ms {
        return Err(RoundRejection::DeadlinePassed {
            round: round_id,
            phase: phase.name(),
            deadline_ms: round.deadline_ms,
        });
    }
    Ok(round)
}

pub(super) fn decide_commit(
    rounds: &Rounds,
    signer: PublicKey,
    round_id: u64,
    commitment: &Hash,
    context: &Context,
) -> Result<Vec<Event>, RoundRejection> {
    let round = in_phase(rounds, round_id, Phase::Commit, context)?;
    if !round.is_node(&signer) {
        return Err(RoundRejection::NotInRound(signer));
    }
    if rounds.commit(round_id, &signer).is_some() {
        return Err(RoundRejection::AlreadyCommitted(round_id));
    }
    let mut events = vec![Event::DeltaCommitted {
        round: round_id,
        node: signer,
        commitment: *commitment,
    }];
    if rounds.progress(round_id).commits as usize + 1 == round.plan.nodes.len() {
        let mut after = rounds.clone();
        after.progress.insert(
            round_id,
            Progress {
                commits: rounds.progress(round_id).commits + 1,
                ..rounds.progress(round_id)
            },
        );
        events.extend(close_phase(&after, round_id, round, context.time_ms));
    }
    Ok(events)
}

pub(super) fn decide_reveal(
    rounds: &Rounds,
    signer: PublicKey,
    reveal: &Reveal,
    context: &Context,
) -> Result<Vec<Event>, RoundRejection> {
    let round_id = reveal.round;
    let round = in_phase(rounds, round_id, Phase::Reveal, context)?;
    if !round.is_node(&signer) {
        return Err(RoundRejection::NotInRound(signer));
    }
    let committed = rounds
        .commit(round_id, &signer)
        .ok_or(RoundRejection::NotCommitted(round_id))?;
    if rounds.reveal(round_id, &signer).is_some() {
        return Err(RoundRejection::AlreadyRevealed(round_id));
    }
    if rounds
        .revealed_hashes
        .contains_key(&(round_id, reveal.delta_hash))
    {
        return Err(RoundRejection::DeltaCopied(round_id));
    }
    if commitment(round_id, &signer, &reveal.delta_hash, &reveal.salt) != committed.commitment {
        return Err(RoundRejection::CommitmentMismatch);
    }
    let max = round.parameters().delta_bytes_max;
    if reveal.delta_bytes > max {
        return Err(RoundRejection::DeltaTooLarge {
            bytes: reveal.delta_bytes,
            max,
        });
    }
    if reveal.delta_bytes == 0 {
        return Err(RoundRejection::InvalidField {
            field: "delta_bytes",
            reason: "must be non-zero".into(),
        });
    }
    let mut events = vec![Event::DeltaRevealed {
        node: signer,
        reveal: *reveal,
    }];
    let progress = rounds.progress(round_id);
    if progress.reveals + 1 == progress.commits {
        let mut after = rounds.clone();
        after.progress.insert(
            round_id,
            Progress {
                reveals: progress.reveals + 1,
                ..progress
            },
        );
        events.extend(close_phase(&after, round_id, round, context.time_ms));
    }
    Ok(events)
}

pub(super) fn decide_measurements(
    rounds: &Rounds,
    signer: PublicKey,
    round_id: u64,
    values: &[i64],
    context: &Context,
) -> Result<Vec<Event>, RoundRejection> {
    let round = in_phase(rounds, round_id, Phase::Validate, context)?;
    let tasks = round.tasks_of(&signer);
    if tasks.is_empty() {
        return Err(RoundRejection::NotOnCommittee(signer));
    }
    if rounds.submission(round_id, &signer).is_some() {
        return Err(RoundRejection::AlreadySubmitted(round_id));
    }
    if values.len() != tasks.len() {
        return Err(RoundRejection::InvalidField {
            field: "values",
            reason: format!(
                "one measurement per assigned delta: {} assigned, {} given",
                tasks.len(),
                values.len()
            ),
        });
    }
    let mut events = vec![Event::MeasurementsSubmitted {
        round: round_id,
        validator: signer,
        values: values.to_vec(),
    }];
    let progress = rounds.progress(round_id);
    if progress.submissions as usize + 1 == round.measuring() {
        let mut after = rounds.clone();
        after.submissions.insert(
            (round_id, signer),
            Submission {
                values: values.to_vec(),
                seq: 0,
            },
        );
        events.extend(close_phase(&after, round_id, round, context.time_ms));
    }
    Ok(events)
}

/// The policy call a round awaits, if it awaits one.
pub fn awaited(round: &Round) -> Option<PluginKind> {
    match round.phase {
        Phase::Assigning => Some(PluginKind::Sharding),
        Phase::Scoring => Some(PluginKind::Scoring),
        Phase::Rewarding => Some(PluginKind::Reward),
        Phase::Commit | Phase::Reveal | Phase::Validate | Phase::Finalized | Phase::Aborted => None,
    }
}

/// The part of the pool that goes to the validators.
fn validator_pool(round: &Round) -> u128 {
    share(
        round.plan.reward_pool,
        round.parameters().validator_reward_bps,
    )
}

fn key_column(keys: &[PublicKey]) -> Vec<u8> {
    keys.iter().flat_map(|key| key.0).collect()
}

/// The input of the policy call `round_id` awaits, rebuilt from the state alone: the
/// server runs it, and the core checks the output against it.
pub(super) fn policy_input(
    rounds: &Rounds,
    world: &World<'_>,
    round_id: u64,
) -> Option<(PluginKind, pb::PolicyInput)> {
    use pb::policy_input::Kind;
    let round = rounds.get(round_id)?;
    let kind = awaited(round)?;
    let input = match kind {
        PluginKind::Sharding => {
            let pool = world.pools.get(round.plan.pool_id)?;
            Kind::Sharding(pb::ShardingInput {
                round: round_id,
                seed: round.plan.seed.to_vec(),
                item_count: pool.training.len() as u64,
                node_keys: key_column(&round.plan.nodes).into(),
                capabilities: column::to_column(round.plan.nodes.iter().map(|key| {
                    world.registry.nodes.get(key).map_or(1, |node| {
                        u64::from(node.capabilities.vram_mib / 1024).max(1)
                    })
                }))
                .into(),
            })
        }
        PluginKind::Scoring => {
            let measured = measurements(rounds, round_id, round);
            Kind::Scoring(pb::ScoringInput {
                round: round_id,
                quorum: round.parameters().validator_quorum,
                max_score: round.parameters().max_score,
                measurement_counts: column::to_column(
                    measured.iter().map(|values| values.len() as u32),
                )
                .into(),
                measurements: column::to_column(measured.into_iter().flatten()).into(),
            })
        }
        PluginKind::Reward => Kind::Reward(pb::RewardInput {
            round: round_id,
            pool: Some(check::u128_pb(
                round.plan.reward_pool - validator_pool(round),
            )),
            node_keys: key_column(&round.deltas).into(),
            scores: column::to_column(round.scores.iter().copied()).into(),
        }),
    };
    Some((kind, pb::PolicyInput { kind: Some(input) }))
}

/// The fallback events of a policy call, then the round events of its output: one
/// fallback per plugin that failed before the one that answered, which must be the
/// next of the round's chain, or the embedded default after every stored one failed.
pub(super) fn decide_policy_result(
    rounds: &Rounds,
    world: &World<'_>,
    result: &PolicyResult,
    context: &Context,
) -> Result<Vec<Event>, RoundRejection> {
    let round = rounds.round(result.round)?;
    let not_awaited = || RoundRejection::NotAwaited {
        round: result.round,
        kind: result.kind.to_string(),
    };
    let (kind, input) = policy_input(rounds, world, result.round).ok_or_else(not_awaited)?;
    if kind != result.kind {
        return Err(not_awaited());
    }
    let mut events = fallbacks(world.governance, round, result)?;
    let bad_output = |reason: String| RoundRejection::BadOutput {
        kind: kind.to_string(),
        reason,
    };
    let output = pb::PolicyOutput::decode(result.output.as_slice())
        .map_err(|error| bad_output(error.to_string()))?;
    check::output(&input, &output).map_err(bad_output)?;
    use pb::policy_output::Kind;
    events.extend(match output.kind.expect("checked: it names its kind") {
        Kind::Sharding(sharding) => sharding_events(result.round, round, &sharding, context),
        Kind::Scoring(scoring) => scoring_events(rounds, result.round, round, &scoring),
        Kind::Reward(reward) => reward_events(rounds, world, result.round, round, &reward),
    });
    Ok(events)
}

fn column_of<T: column::Fixed>(bytes: &[u8]) -> Vec<T> {
    column::values(bytes)
        .expect("checked: a whole column")
        .collect()
}

fn sharding_events(
    round_id: u64,
    round: &Round,
    output: &pb::ShardingOutput,
    context: &Context,
) -> Vec<Event> {
    let shards: Vec<Shard> = column_of::<u32>(&output.node_indexes)
        .into_iter()
        .zip(column_of::<u64>(&output.starts))
        .zip(column_of::<u64>(&output.counts))
        .map(|((node, start), count)| Shard {
            node: round.plan.nodes[node as usize],
            start,
            count,
        })
        .collect();
    let merkle_root = merkle_root(shards.iter().map(|shard| shard_leaf(round_id, shard)));
    vec![Event::AssignmentsMade {
        round: round_id,
        shards,
        merkle_root,
        deadline_ms: context
            .time_ms
            .saturating_add(round.parameters().commit_deadline_ms),
    }]
}

fn scoring_events(
    rounds: &Rounds,
    round_id: u64,
    round: &Round,
    output: &pb::ScoringOutput,
) -> Vec<Event> {
    let scores: Vec<u64> = column_of(&output.scores);
    let merkle_root = merkle_root(score_leaves(rounds, round_id, &round.deltas, &scores));
    vec![
        Event::ScoresRecorded {
            round: round_id,
            scores,
            merkle_root,
        },
        Event::PhaseStarted {
            round: round_id,
            phase: Phase::Rewarding,
            deadline_ms: 0,
        },
    ]
}

fn reward_events(
    rounds: &Rounds,
    world: &World<'_>,
    round_id: u64,
    round: &Round,
    output: &pb::RewardOutput,
) -> Vec<Event> {
    let nodes: Vec<Payout> = column_of::<u64>(&output.amounts_hi)
        .into_iter()
        .zip(column_of::<u64>(&output.amounts_lo))
        .zip(round.deltas.iter())
        .map(|((hi, lo), key)| Payout {
            key: *key,
            amount: (u128::from(hi) << 64) | u128::from(lo),
        })
        .collect();
    // Agreement: the sign of each measurement of a quorate delta against its score.
    let quorum = round.parameters().validator_quorum as usize;
    let measured = measurements(rounds, round_id, round);
    let mut tallies: Vec<(u32, u32)> = Vec::with_capacity(round.plan.committee.len());
    for validator in round.plan.committee.iter() {
        let submission = rounds.submission(round_id, validator);
        let (mut agreed, mut disagreed) = (0u32, 0u32);
        for (position, task) in round.tasks_of(validator).iter().enumerate() {
            let task = *task as usize;
            if measured[task].len() < quorum {
                continue;
            }
            let scored = round.scores[task] > 0;
            match submission.map(|submission| submission.values[position]) {
                Some(value) if (value > 0) == scored => agreed += 1,
                Some(_) | None => disagreed += 1,
            }
        }
        tallies.push((agreed, disagreed));
    }
    let pool = validator_pool(round);
    let agreed_total: u128 = tallies.iter().map(|(agreed, _)| u128::from(*agreed)).sum();
    let mut rewards: Vec<u128> = tallies
        .iter()
        .map(|(agreed, _)| {
            let agreed = u128::from(*agreed);
            // floor(pool * agreed / total) without overflow; nothing when none agreed.
            pool.checked_div(agreed_total).map_or(0, |whole| {
                whole * agreed + pool % agreed_total * agreed / agreed_total
            })
        })
        .collect();
    // The remainder of the floor division, one base unit each, to the agreeing
    // validators in committee order.
    if agreed_total > 0 {
        let mut remainder = pool - rewards.iter().sum::<u128>();
        for (reward, (agreed, _)) in rewards.iter_mut().zip(&tallies) {
            if remainder == 0 {
                break;
            }
            if *agreed > 0 {
                *reward += 1;
                remainder -= 1;
            }
        }
    }
    let validators: Vec<ValidatorOutcome> = round
        .plan
        .committee
        .iter()
        .zip(&tallies)
        .zip(&rewards)
        .map(|((validator, (agreed, disagreed)), reward)| {
            let reputation = world.validators.get(validator).map_or(0, |entry| {
                validators::next_reputation(entry.reputation, *agreed, *disagreed)
            });
            ValidatorOutcome {
                validator: *validator,
                agreed: *agreed,
                disagreed: *disagreed,
                reward: *reward,
                reputation,
            }
        })
        .collect();
    let paid: u128 = nodes.iter().map(|payout| payout.amount).sum::<u128>()
        + validators
            .iter()
            .map(|outcome| outcome.reward)
            .sum::<u128>();
    let rewards_root = merkle_root(payout_leaves(round_id, &nodes, &validators));
    let accepted = round
        .deltas
        .iter()
        .zip(round.scores.iter())
        .filter(|(_, score)| **score > 0)
        .map(|(node, _)| {
            rounds
                .reveal(round_id, node)
                .expect("a delta was revealed")
                .delta_hash
        })
        .collect();
    vec![Event::RoundFinalized(RoundOutcome {
        round: round_id,
        nodes,
        validators,
        rewards_root,
        accepted,
        carried: round.plan.reward_pool - paid,
    })]
}

/// The plugins a policy call of `round` tries, in order: the one it pinned, the one
/// pinned before that, and the genesis plugin of that kind (without repeats).
pub fn fallback_chain(governance: &Governance, round: &Round, kind: PluginKind) -> Vec<Hash> {
    let pinned = round
        .pins
        .plugins
        .iter()
        .find(|pinned| pinned.kind == kind)
        .map(|pinned| pinned.hash);
    governance.fallback_chain_from(kind, pinned.as_ref())
}

fn fallbacks(
    governance: &Governance,
    round: &Round,
    result: &PolicyResult,
) -> Result<Vec<Event>, RoundRejection> {
    let not_the_chain = |reason: &str| RoundRejection::NotTheChain {
        kind: result.kind.to_string(),
        reason: reason.to_string(),
    };
    let chain = fallback_chain(governance, round, result.kind);
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

/// A server input the scheduler owes the log at `time_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// The next round can open.
    Open(u64),
    /// A deadline passed: a tick at the earliest one due.
    Tick(u64),
    /// A round awaits this policy call.
    Policy {
        round: u64,
        kind: PluginKind,
        input: pb::PolicyInput,
    },
    /// A finalized round owes the merge of its accepted deltas
    /// ([`super::experts`]).
    Merge(u64),
}

pub(super) fn due(rounds: &Rounds, world: &World<'_>, time_ms: u64, head: &Hash) -> Vec<Due> {
    let mut due = Vec::new();
    for round_id in rounds.live.values() {
        if let Some((kind, input)) = policy_input(rounds, world, *round_id) {
            due.push(Due::Policy {
                round: *round_id,
                kind,
                input,
            });
        }
    }
    let deadline = rounds
        .live
        .values()
        .filter_map(|round_id| rounds.get(*round_id))
        .map(|round| round.deadline_ms)
        .filter(|deadline| *deadline != 0 && *deadline <= time_ms)
        .min();
    if let Some(deadline) = deadline {
        due.push(Due::Tick(deadline));
    }
    due.extend(world.experts.owed().map(Due::Merge));
    if readiness(rounds, world, time_ms, head).is_ok() {
        due.push(Due::Open(world.governance.round_number() + 1));
    }
    due
}

/// The earliest deadline of a running round, if any.
pub fn next_deadline(rounds: &Rounds) -> Option<u64> {
    rounds
        .live
        .values()
        .filter_map(|round_id| rounds.get(*round_id))
        .map(|round| round.deadline_ms)
        .filter(|deadline| *deadline != 0)
        .min()
}

impl Rounds {
    pub(super) fn apply_opened(&mut self, pins: &RoundPins, burns_total: u128, seq: u64) {
        let Some(plan) = &pins.plan else {
            // A round logged before learning rounds existed: it pinned, nothing more.
            return;
        };
        self.burns_consumed = self
            .burns_consumed
            .checked_add(plan.burns)
            .filter(|consumed| *consumed <= burns_total)
            .expect("a round consumes only recorded burns");
        let share = plan
            .reward_pool
            .checked_sub(self.carried)
            .expect("a round's pool holds what was carried");
        self.accrued += share;
        self.carried = 0;
        self.expert_last = Some(plan.expert);
        let previous = self.live.insert(plan.expert, pins.round);
        assert!(previous.is_none(), "one round per expert at a time");
        self.rounds.insert(
            pins.round,
            Round {
                pins: RoundPins {
                    plan: None,
                    ..pins.clone()
                },
                plan: Arc::new(plan.clone()),
                phase: Phase::Assigning,
                deadline_ms: 0,
                opened_seq: seq,
                assignments_seq: 0,
                scores_seq: 0,
                ended_seq: 0,
                shards: Arc::new([]),
                assignments_root: [0; 32],
                deltas: Arc::new([]),
                tasks: Arc::new([]),
                scores: Arc::new([]),
                scores_root: [0; 32],
                outcome: None,
                abort_reason: None,
            },
        );
        self.progress.insert(pins.round, Progress::default());
    }

    fn update(&mut self, round: u64, change: impl FnOnce(&mut Round)) {
        self.rounds
            .update(&round, change)
            .expect("an event names a round that exists");
    }

    fn update_progress(&mut self, round: u64, change: impl FnOnce(&mut Progress)) {
        self.progress
            .update(&round, change)
            .expect("a round has its progress");
    }

    pub(super) fn apply_assignments(
        &mut self,
        round: u64,
        shards: &[Shard],
        merkle_root: &Hash,
        deadline_ms: u64,
        seq: u64,
    ) {
        self.update(round, |entry| {
            assert_eq!(entry.phase, Phase::Assigning);
            entry.assignments_seq = seq;
            entry.shards = shards.into();
            entry.assignments_root = *merkle_root;
            entry.phase = Phase::Commit;
            entry.deadline_ms = deadline_ms;
        });
    }

    pub(super) fn apply_committed(
        &mut self,
        round: u64,
        node: PublicKey,
        commitment: &Hash,
        seq: u64,
    ) {
        let previous = self.commits.insert(
            (round, node),
            Commit {
                commitment: *commitment,
                seq,
            },
        );
        assert!(previous.is_none(), "one commit per node");
        self.update_progress(round, |progress| progress.commits += 1);
    }

    pub(super) fn apply_revealed(&mut self, node: PublicKey, reveal: &Reveal, seq: u64) {
        let previous = self.reveals.insert(
            (reveal.round, node),
            Revealed {
                delta_hash: reveal.delta_hash,
                salt: reveal.salt,
                delta_bytes: reveal.delta_bytes,
                seq,
            },
        );
        assert!(previous.is_none(), "one reveal per node");
        self.revealed_hashes
            .insert((reveal.round, reveal.delta_hash), node);
        self.update_progress(reveal.round, |progress| progress.reveals += 1);
    }

    pub(super) fn apply_phase_started(&mut self, round: u64, phase: Phase, deadline_ms: u64) {
        let deltas: Option<Arc<[PublicKey]>> = (phase == Phase::Validate).then(|| {
            let entry = self.rounds.get(&round).expect("the round exists");
            entry
                .plan
                .nodes
                .iter()
                .filter(|node| self.reveals.contains_key(&(round, **node)))
                .copied()
                .collect()
        });
        self.update(round, |entry| {
            entry.phase = phase;
            entry.deadline_ms = deadline_ms;
            if let Some(deltas) = deltas {
                entry.deltas = deltas;
                entry.tasks = entry.tasks_by_position();
            }
        });
    }

    pub(super) fn apply_measurements(
        &mut self,
        round: u64,
        validator: PublicKey,
        values: &[i64],
        seq: u64,
    ) {
        let previous = self.submissions.insert(
            (round, validator),
            Submission {
                values: values.to_vec(),
                seq,
            },
        );
        assert!(previous.is_none(), "one submission per validator");
        self.update_progress(round, |progress| progress.submissions += 1);
    }

    pub(super) fn apply_scores(
        &mut self,
        round: u64,
        scores: &[u64],
        merkle_root: &Hash,
        seq: u64,
    ) {
        self.update(round, |entry| {
            entry.scores_seq = seq;
            entry.scores = scores.into();
            entry.scores_root = *merkle_root;
        });
    }

    fn end(&mut self, round: u64) -> u32 {
        let expert = self
            .rounds
            .get(&round)
            .expect("the round exists")
            .plan
            .expert;
        self.live.remove(&expert);
        expert
    }

    pub(super) fn apply_finalized(&mut self, outcome: &RoundOutcome, seq: u64) {
        let round = outcome.round;
        let pool = self
            .rounds
            .get(&round)
            .expect("the round exists")
            .plan
            .reward_pool;
        let paid = pool
            .checked_sub(outcome.carried)
            .expect("a round pays at most its pool");
        self.paid += paid;
        self.carried += outcome.carried;
        self.end(round);
        let outcome = Arc::new(outcome.clone());
        self.update(round, |entry| {
            entry.phase = Phase::Finalized;
            entry.deadline_ms = 0;
            entry.ended_seq = seq;
            entry.outcome = Some(outcome);
        });
    }

    pub(super) fn apply_aborted(&mut self, round: u64, reason: &str, carried: u128, seq: u64) {
        self.carried += carried;
        self.end(round);
        self.update(round, |entry| {
            entry.phase = Phase::Aborted;
            entry.deadline_ms = 0;
            entry.ended_seq = seq;
            entry.abort_reason = Some(reason.to_string());
        });
    }

    /// Writes the rounds part of the state root.
    pub(super) fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.bytes(&self.rounds.checksum());
        hasher.bytes(&self.progress.checksum());
        hasher.bytes(&self.commits.checksum());
        hasher.bytes(&self.reveals.checksum());
        hasher.bytes(&self.revealed_hashes.checksum());
        hasher.bytes(&self.submissions.checksum());
        hasher.u64(self.live.len() as u64);
        for (expert, round) in &self.live {
            hasher.u64(u64::from(*expert));
            hasher.u64(*round);
        }
        hasher.u64(self.expert_last.map_or(0, |expert| u64::from(expert) + 1));
        hasher.u128(self.burns_consumed);
        hasher.u128(self.accrued);
        hasher.u128(self.paid);
        hasher.u128(self.carried);
    }
}

impl RootHash for (u64, PublicKey) {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.u64(self.0);
        hasher.bytes(&self.1.0);
    }
}

impl RootHash for (u64, Hash) {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.u64(self.0);
        hasher.bytes(&self.1);
    }
}

fn keys_into(hasher: &mut RootHasher, keys: &[PublicKey]) {
    hasher.u64(keys.len() as u64);
    for key in keys {
        hasher.bytes(&key.0);
    }
}

impl RootHash for Round {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.u64(self.pins.round);
        hasher.u64(self.pins.plugins.len() as u64);
        for pinned in &self.pins.plugins {
            hasher.u64(pinned.kind as u64);
            hasher.bytes(&pinned.hash);
        }
        super::governance::parameters_into(hasher, &self.pins.parameters);
        let plan = &self.plan;
        hasher.u64(u64::from(plan.expert));
        hasher.u64(plan.pool_id);
        hasher.bytes(&plan.seed);
        keys_into(hasher, &plan.nodes);
        keys_into(hasher, &plan.committee);
        hasher.u128(plan.burns);
        hasher.u128(plan.reward_pool);
        // Nothing without a model, as before models existed.
        if !plan.model_versions.is_empty() {
            hasher.u64(plan.model_versions.len() as u64);
            for version in &plan.model_versions {
                hasher.u64(u64::from(*version));
            }
        }
        hasher.u64(self.phase as u64);
        hasher.u64(self.deadline_ms);
        hasher.u64(self.opened_seq);
        hasher.u64(self.assignments_seq);
        hasher.u64(self.scores_seq);
        hasher.u64(self.ended_seq);
        hasher.u64(self.shards.len() as u64);
        for shard in self.shards.iter() {
            hasher.bytes(&shard.node.0);
            hasher.u64(shard.start);
            hasher.u64(shard.count);
        }
        hasher.bytes(&self.assignments_root);
        keys_into(hasher, &self.deltas);
        hasher.u64(self.scores.len() as u64);
        for score in self.scores.iter() {
            hasher.u64(*score);
        }
        hasher.bytes(&self.scores_root);
        match &self.outcome {
            None => hasher.u64(0),
            Some(outcome) => {
                hasher.u64(1);
                hasher.u64(outcome.nodes.len() as u64);
                for payout in &outcome.nodes {
                    hasher.bytes(&payout.key.0);
                    hasher.u128(payout.amount);
                }
                hasher.u64(outcome.validators.len() as u64);
                for validator in &outcome.validators {
                    hasher.bytes(&validator.validator.0);
                    hasher.u64(u64::from(validator.agreed));
                    hasher.u64(u64::from(validator.disagreed));
                    hasher.u128(validator.reward);
                    hasher.u64(validator.reputation);
                }
                hasher.bytes(&outcome.rewards_root);
                hasher.u64(outcome.accepted.len() as u64);
                for hash in &outcome.accepted {
                    hasher.bytes(hash);
                }
                hasher.u128(outcome.carried);
            }
        }
        match &self.abort_reason {
            None => hasher.u64(0),
            Some(reason) => {
                hasher.u64(1);
                hasher.text(reason);
            }
        }
    }
}

impl RootHash for Progress {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.u64(u64::from(self.commits));
        hasher.u64(u64::from(self.reveals));
        hasher.u64(u64::from(self.submissions));
    }
}

impl RootHash for Commit {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.bytes(&self.commitment);
        hasher.u64(self.seq);
    }
}

impl RootHash for Revealed {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.bytes(&self.delta_hash);
        hasher.bytes(&self.salt);
        hasher.u64(self.delta_bytes);
        hasher.u64(self.seq);
    }
}

impl RootHash for Submission {
    fn hash_into(&self, hasher: &mut RootHasher) {
        hasher.u64(self.values.len() as u64);
        for value in &self.values {
            hasher.u64(*value as u64);
        }
        hasher.u64(self.seq);
    }
}
