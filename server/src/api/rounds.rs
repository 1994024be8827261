//! The learning rounds' read API: rounds, a node's assignment, a validator's tasks,
//! pools with item proofs, the validators, round receipts and event proofs.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use blyan_sdk::api::{
    AssignmentView, DeltaView, ItemProofView, ItemView, MerkleProofView, PayoutView, PoolView,
    RoundSummary, RoundView, TaskView, TasksView, ValidatorView,
};
use blyan_sdk::core::State as LedgerState;
use blyan_sdk::core::pools::{self, Pool};
use blyan_sdk::core::rounds::{self, Round};
use blyan_sdk::crypto::PublicKey;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use blyan_sdk::merkle::Tree;
use blyan_sdk::model::{Checkpoint, Hash};
use blyan_sdk::receipt::{EventProof, LeafProof, ProvenRecord, RoundReceipt};
use blyan_sdk::record::Record;

use super::{ApiError, AppState, storage_error};

fn not_found(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, code, message)
}

fn key(text: &str) -> Result<PublicKey, ApiError> {
    PublicKey::from_hex(text).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            "the public key must be 64 hex characters",
        )
    })
}

/// Trees kept to answer proofs: one round's 10,000 nodes each asking for their shard's
/// proof would otherwise rebuild the same tree 10,000 times.
const TREES_KEPT: usize = 16;

/// The most recently used trees, by root. A root names its tree's contents for good
/// (the roots are of immutable, checkpointed data), so an entry never goes stale.
#[derive(Debug, Default)]
pub(super) struct Trees {
    kept: Mutex<VecDeque<(Hash, Arc<Tree>)>>,
}

impl Trees {
    /// The tree of `root`, built from `contents` if it is not kept.
    fn get(&self, root: &Hash, contents: impl FnOnce() -> Vec<Hash>) -> Arc<Tree> {
        let mut kept = self.kept.lock().expect("trees lock");
        if let Some(index) = kept.iter().position(|(kept_root, _)| kept_root == root) {
            let entry = kept.remove(index).expect("the index is in range");
            let tree = entry.1.clone();
            kept.push_front(entry);
            return tree;
        }
        drop(kept);
        let tree = Arc::new(Tree::new(&contents()));
        assert_eq!(tree.root(), *root, "a root is the root of its contents");
        let mut kept = self.kept.lock().expect("trees lock");
        kept.push_front((*root, tree.clone()));
        kept.truncate(TREES_KEPT);
        tree
    }
}

fn proof_view(tree: &Tree, index: usize) -> MerkleProofView {
    MerkleProofView {
        index,
        count: tree.len(),
        hashes: tree.proof(index).iter().map(hex::encode).collect(),
    }
}

fn leaf_proof(tree: &Tree, index: usize) -> LeafProof {
    LeafProof {
        index: index as u64,
        count: tree.len() as u64,
        hashes: tree.proof(index),
    }
}

fn shards_tree(trees: &Trees, id: u64, round: &Round) -> Arc<Tree> {
    trees.get(&round.assignments_root, || {
        round
            .shards
            .iter()
            .map(|shard| rounds::shard_leaf(id, shard))
            .collect()
    })
}

fn conflict(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

fn round_of(state: &LedgerState, round: u64) -> Result<&Round, ApiError> {
    state
        .rounds()
        .get(round)
        .ok_or_else(|| not_found("round_not_found", format!("round {round} does not exist")))
}

fn pool_of(state: &LedgerState, pool_id: u64) -> Result<&Pool, ApiError> {
    state
        .pools()
        .get(pool_id)
        .ok_or_else(|| not_found("pool_not_found", format!("pool {pool_id} does not exist")))
}

fn item_view(pool: &Pool, id: u32) -> ItemView {
    ItemView {
        id,
        item: pool.items[id as usize],
    }
}

fn summary(state: &LedgerState, id: u64, round: &Round) -> RoundSummary {
    let progress = state.rounds().progress(id);
    RoundSummary {
        round: id,
        expert: round.plan.expert,
        pool_id: round.plan.pool_id,
        phase: round.phase,
        deadline_ms: round.deadline_ms,
        nodes: round.plan.nodes.len(),
        committee: round.plan.committee.clone(),
        reward_pool: round.plan.reward_pool,
        commits: progress.commits,
        reveals: progress.reveals,
        submissions: progress.submissions,
        abort_reason: round.abort_reason.clone(),
    }
}

/// The most rounds one `GET /v1/rounds` returns.
pub const ROUNDS_PAGE_MAX: u32 = 1_000;

#[derive(Debug, serde::Deserialize)]
pub(super) struct RoundsQuery {
    /// The first round to list.
    #[serde(default)]
    from: u64,
    /// 100 when absent; at most [`ROUNDS_PAGE_MAX`].
    limit: Option<u32>,
}

/// A page of rounds by number: a listing costs its page, however many rounds the
/// log holds.
pub(super) async fn list(
    State(app): State<AppState>,
    Query(query): Query<RoundsQuery>,
) -> Json<Vec<RoundSummary>> {
    let published = app.engine.published();
    let state = &published.state;
    let limit = query.limit.unwrap_or(100).clamp(1, ROUNDS_PAGE_MAX) as usize;
    Json(
        state
            .rounds()
            .from(query.from)
            .take(limit)
            .map(|(id, round)| summary(state, *id, round))
            .collect(),
    )
}

pub(super) async fn show(
    State(app): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<RoundView>, ApiError> {
    let published = app.engine.published();
    let state = &published.state;
    let round = round_of(state, id)?;
    let deltas = round
        .deltas
        .iter()
        .enumerate()
        .filter_map(|(index, node)| {
            let revealed = state.rounds().reveal(id, node)?;
            Some(DeltaView {
                node: *node,
                delta_hash: hex::encode(revealed.delta_hash),
                delta_bytes: revealed.delta_bytes,
                score: round.scores.get(index).copied(),
            })
        })
        .collect();
    let payouts = |payouts: Vec<(PublicKey, u128)>| {
        payouts
            .into_iter()
            .map(|(key, amount)| PayoutView { key, amount })
            .collect()
    };
    let outcome = round.outcome.as_deref();
    Ok(Json(RoundView {
        summary: summary(state, id, round),
        seed: hex::encode(round.plan.seed),
        plugins: round.pins.plugins.clone(),
        assignments_root: hex::encode(round.assignments_root),
        scores_root: hex::encode(round.scores_root),
        deltas,
        node_rewards: payouts(outcome.map_or_else(Vec::new, |outcome| {
            outcome.nodes.iter().map(|p| (p.key, p.amount)).collect()
        })),
        validator_rewards: payouts(outcome.map_or_else(Vec::new, |outcome| {
            outcome
                .validators
                .iter()
                .map(|v| (v.validator, v.reward))
                .collect()
        })),
        rewards_root: outcome.map(|outcome| hex::encode(outcome.rewards_root)),
        carried: match (outcome, round.phase.is_over()) {
            (Some(outcome), _) => outcome.carried,
            (None, true) => round.plan.reward_pool,
            (None, false) => 0,
        },
    }))
}

pub(super) async fn assignment(
    State(app): State<AppState>,
    Path((id, node)): Path<(u64, String)>,
) -> Result<Json<AssignmentView>, ApiError> {
    let node = key(&node)?;
    let published = app.engine.published();
    let state = &published.state;
    let round = round_of(state, id)?;
    let index = round
        .shards
        .iter()
        .position(|shard| shard.node == node)
        .ok_or_else(|| {
            not_found(
                "assignment_not_found",
                format!("round {id} assigns nothing to {node}"),
            )
        })?;
    let shard = round.shards[index];
    let pool = pool_of(state, round.plan.pool_id)?;
    let tree = shards_tree(&app.trees, id, round);
    Ok(Json(AssignmentView {
        round: id,
        expert: round.plan.expert,
        pool_id: round.plan.pool_id,
        shard,
        items: (shard.start..shard.start + shard.count)
            .map(|training| item_view(pool, pool.training[training as usize]))
            .collect(),
        assignments_root: hex::encode(round.assignments_root),
        proof: proof_view(&tree, index),
    }))
}

pub(super) async fn tasks(
    State(app): State<AppState>,
    Path((id, validator)): Path<(u64, String)>,
) -> Result<Json<TasksView>, ApiError> {
    let validator = key(&validator)?;
    let published = app.engine.published();
    let state = &published.state;
    let round = round_of(state, id)?;
    let pool = pool_of(state, round.plan.pool_id)?;
    let deltas = round
        .tasks_of(&validator)
        .iter()
        .filter_map(|&task| {
            let node = round.deltas[task as usize];
            let revealed = state.rounds().reveal(id, &node)?;
            Some(TaskView {
                node,
                delta_hash: hex::encode(revealed.delta_hash),
                delta_bytes: revealed.delta_bytes,
            })
        })
        .collect();
    Ok(Json(TasksView {
        round: id,
        expert: round.plan.expert,
        pool_id: round.plan.pool_id,
        deltas,
        held_out: pool.held_out().map(|id| item_view(pool, id)).collect(),
    }))
}

pub(super) async fn pool(
    State(app): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<PoolView>, ApiError> {
    let published = app.engine.published();
    let pool = pool_of(&published.state, id)?;
    Ok(Json(PoolView {
        id,
        curator: pool.curator,
        name: pool.name.clone(),
        merkle_root: hex::encode(pool.merkle_root),
        items: (0..pool.items.len() as u32)
            .map(|item| item_view(pool, item))
            .collect(),
    }))
}

pub(super) async fn item_proof(
    State(app): State<AppState>,
    Path((id, item)): Path<(u64, u32)>,
) -> Result<Json<ItemProofView>, ApiError> {
    let published = app.engine.published();
    let pool = pool_of(&published.state, id)?;
    if item as usize >= pool.items.len() {
        return Err(not_found(
            "item_not_found",
            format!("pool {id} has {} items", pool.items.len()),
        ));
    }
    let tree = app.trees.get(&pool.merkle_root, || {
        pool.items
            .iter()
            .enumerate()
            .map(|(index, entry)| pools::item_leaf(index as u32, entry))
            .collect()
    });
    Ok(Json(ItemProofView {
        pool_id: id,
        item: item_view(pool, item),
        merkle_root: hex::encode(pool.merkle_root),
        leaf: hex::encode(pools::item_leaf(item, &pool.items[item as usize])),
        proof: proof_view(&tree, item as usize),
    }))
}

pub(super) async fn validators(State(app): State<AppState>) -> Json<Vec<ValidatorView>> {
    let published = app.engine.published();
    Json(
        published
            .state
            .validators()
            .iter()
            .map(|(key, validator)| ValidatorView {
                key: *key,
                reputation: validator.reputation,
                admitted_seq: validator.admitted_seq,
            })
            .collect(),
    )
}

/// What a receipt needs from the state, taken under the read lock.
struct ReceiptPlan {
    checkpoint: Checkpoint,
    seqs: Vec<u64>,
    assignment: Option<LeafProof>,
    score: Option<LeafProof>,
    payouts: Vec<LeafProof>,
}

fn receipt_plan(
    trees: &Trees,
    state: &LedgerState,
    id: u64,
    key: &PublicKey,
) -> Result<ReceiptPlan, ApiError> {
    let round = round_of(state, id)?;
    if round.ended_seq == 0 {
        return Err(conflict(
            "round_not_ended",
            format!("round {id} is still running; its receipts come once it ends"),
        ));
    }
    if round.plan.nodes.binary_search(key).is_err() && !round.plan.committee.contains(key) {
        return Err(not_found(
            "not_in_round",
            format!("{key} is neither a node nor a validator of round {id}"),
        ));
    }
    let checkpoint = state
        .checkpoint_last()
        .filter(|checkpoint| checkpoint.tree_size > round.ended_seq)
        .ok_or_else(|| {
            conflict(
                "not_checkpointed",
                format!("no checkpoint covers the end of round {id} yet"),
            )
        })?
        .clone();
    let mut seqs = Vec::new();
    let assignment = round
        .shards
        .iter()
        .position(|shard| shard.node == *key)
        .map(|index| {
            seqs.push(round.assignments_seq);
            leaf_proof(&shards_tree(trees, id, round), index)
        });
    let mut score = None;
    if let Some(revealed) = state.rounds().reveal(id, key) {
        seqs.push(revealed.seq);
        if round.scores_seq != 0 {
            seqs.push(round.scores_seq);
            let index = round
                .deltas
                .iter()
                .position(|node| node == key)
                .expect("a revealed node of a scored round has a delta");
            let tree = trees.get(&round.scores_root, || {
                rounds::score_leaves(state.rounds(), id, &round.deltas, &round.scores)
            });
            score = Some(leaf_proof(&tree, index));
        }
    }
    seqs.push(round.ended_seq);
    let mut payouts = Vec::new();
    if let Some(outcome) = round.outcome.as_deref() {
        let tree = trees.get(&outcome.rewards_root, || {
            rounds::payout_leaves(id, &outcome.nodes, &outcome.validators)
        });
        if let Some(position) = outcome.nodes.iter().position(|payout| payout.key == *key) {
            payouts.push(leaf_proof(&tree, position));
        }
        if let Some(position) = outcome
            .validators
            .iter()
            .position(|validator| validator.validator == *key)
        {
            payouts.push(leaf_proof(&tree, outcome.nodes.len() + position));
        }
    }
    seqs.sort_unstable();
    Ok(ReceiptPlan {
        checkpoint,
        seqs,
        assignment,
        score,
        payouts,
    })
}

/// The record at `seq` with its inclusion proof in the tree of `tree_size` events.
async fn proven_record(app: &AppState, seq: u64, tree_size: u64) -> Result<ProvenRecord, ApiError> {
    let encoded = app.engine.record(seq).await.map_err(storage_error)?;
    let record = Record::decode(&encoded).map_err(storage_error)?;
    let proof = app
        .engine
        .event_proof(seq, tree_size)
        .await
        .map_err(storage_error)?;
    Ok(ProvenRecord {
        seq,
        prev_hash: record.prev_hash,
        time_ms: record.time_ms,
        body: record.body,
        proof,
    })
}

pub(super) async fn receipt(
    State(app): State<AppState>,
    Path((id, key_text)): Path<(u64, String)>,
) -> Result<Json<RoundReceipt>, ApiError> {
    let key = key(&key_text)?;
    let plan = receipt_plan(&app.trees, &app.engine.published().state, id, &key)?;
    let mut records = Vec::with_capacity(plan.seqs.len());
    for seq in &plan.seqs {
        records.push(proven_record(&app, *seq, plan.checkpoint.tree_size).await?);
    }
    Ok(Json(RoundReceipt {
        network_id: app.engine.network_id().to_string(),
        round: id,
        key,
        checkpoint: plan.checkpoint,
        records,
        assignment: plan.assignment,
        score: plan.score,
        payouts: plan.payouts,
    }))
}

pub(super) async fn event_proof(
    State(app): State<AppState>,
    Path(seq): Path<u64>,
) -> Result<Json<EventProof>, ApiError> {
    let checkpoint = {
        let published = app.engine.published();
        if seq >= published.events() {
            return Err(not_found(
                "event_not_found",
                format!("the log holds {} events", published.events()),
            ));
        }
        published
            .state
            .checkpoint_last()
            .filter(|checkpoint| checkpoint.tree_size > seq)
            .cloned()
            .ok_or_else(|| {
                conflict(
                    "not_checkpointed",
                    format!("no checkpoint covers event {seq} yet"),
                )
            })?
    };
    let record = proven_record(&app, seq, checkpoint.tree_size).await?;
    Ok(Json(EventProof {
        network_id: app.engine.network_id().to_string(),
        checkpoint,
        record,
    }))
}
