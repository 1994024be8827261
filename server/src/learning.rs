//! The parameter chain on the server (see `blyan_sdk::core::experts`).
//!
//! - [`with_model_weights`]: version 0 of the genesis model, initialised from its seed
//!   and stored as blobs before the genesis names their hashes.
//! - [`merge`]: the merge a finalized round owes. It reads the round's base versions,
//!   its accepted deltas and its pool's held-out items from the blob store, merges on
//!   a blocking worker (`blyan_ml::merge`: host arithmetic, the same bytes on every
//!   machine), measures the held-out loss of the model before and after (`u64::MAX`
//!   when the pool's items do not fit the model), stores the
//!   new weights and hands the update to the writer as a server input, which the core
//!   checks and decides into `ExpertUpdated`.

use std::collections::HashMap;
use std::io;

use blyan_ml::{CandleMeasurer, MlError, Moe, MoeConfig};
use blyan_sdk::model::{ExpertUpdate, Genesis, Hash, ServerInput};
use blyan_sdk::work::Item;

use crate::blobs::{BlobStore, PutError};
use crate::engine::{Engine, Receipt, SubmitError};

/// Why the server could not make an expert's weights.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("blob {0} is not stored")]
    MissingBlob(String),
    #[error("reading a blob: {0}")]
    Read(#[from] io::Error),
    #[error(transparent)]
    Ml(#[from] MlError),
    #[error("storing the weights: {0}")]
    Put(#[from] PutError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

async fn read(blobs: &BlobStore, hash: &Hash) -> Result<Vec<u8>, MergeError> {
    blobs
        .read(hash)
        .await?
        .ok_or_else(|| MergeError::MissingBlob(hex::encode(hash)))
}

/// `genesis` with its model's version-0 weights stored and named, when it has a model
/// that names none (as a genesis file does). The same sizes and seed give the same
/// bytes, so a restart names the hashes its log's genesis already holds.
pub async fn with_model_weights(
    mut genesis: Genesis,
    blobs: &BlobStore,
) -> Result<Genesis, MergeError> {
    if let Some(model) = &mut genesis.model
        && model.expert_hashes.is_empty()
    {
        let (shared, experts) = blyan_ml::initial_weights(model)?;
        model.shared_hash = blobs.put_bytes(shared).await?.hash;
        for bytes in experts {
            model.expert_hashes.push(blobs.put_bytes(bytes).await?.hash);
        }
    }
    Ok(genesis)
}

/// What a merge reads from the published state.
struct Plan {
    update: ExpertUpdate,
    config: MoeConfig,
    shared: Hash,
    /// The version of every expert the round trained from.
    base: Vec<Hash>,
    /// The accepted deltas and their scores, in delta order.
    deltas: Vec<(Hash, u64)>,
    held_out: Vec<(u32, Hash)>,
}

fn plan(engine: &Engine, round_id: u64) -> Option<Plan> {
    let published = engine.published();
    let state = &published.state;
    let model = state.model()?;
    state.experts().owed().find(|owed| *owed == round_id)?;
    let round = state.rounds().get(round_id)?;
    let experts = state.experts();
    let expert = round.plan.expert;
    let head = experts.head(expert);
    let base = (0..model.experts)
        .zip(&round.plan.model_versions)
        .map(|(expert, version)| experts.hash(model, expert, *version))
        .collect::<Option<Vec<_>>>()?;
    let scores: HashMap<Hash, u64> = round
        .deltas
        .iter()
        .zip(round.scores.iter())
        .filter_map(|(node, score)| {
            let revealed = state.rounds().reveal(round_id, node)?;
            Some((revealed.delta_hash, *score))
        })
        .collect();
    let deltas = round
        .outcome
        .as_ref()?
        .accepted
        .iter()
        .map(|hash| (*hash, scores.get(hash).copied().unwrap_or(0)))
        .collect();
    let pool = state.pools().get(round.plan.pool_id)?;
    let held_out = pool
        .items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.held_out)
        .map(|(id, item)| (id as u32, item.checksum))
        .collect();
    Some(Plan {
        update: ExpertUpdate {
            round: round_id,
            expert,
            version: head + 1,
            parent_hash: experts.hash(model, expert, head)?,
            weights_hash: [0; 32],
            weights_bytes: 0,
            merged: Vec::new(),
            parent_held_out_loss: 0,
            held_out_loss: 0,
        },
        config: MoeConfig::of(model),
        shared: model.shared_hash,
        base,
        deltas,
        held_out,
    })
}

/// Makes and submits the next version of the expert that round `round_id` trained,
/// if the round owes it. `None` when it owes nothing (done already, or never).
pub async fn merge(
    engine: &Engine,
    blobs: &BlobStore,
    round_id: u64,
) -> Result<Option<Option<Receipt>>, MergeError> {
    let Some(plan) = plan(engine, round_id) else {
        return Ok(None);
    };
    let shared = read(blobs, &plan.shared).await?;
    let mut base = Vec::with_capacity(plan.base.len());
    for hash in &plan.base {
        base.push(read(blobs, hash).await?);
    }
    let mut deltas = Vec::with_capacity(plan.deltas.len());
    for (hash, score) in &plan.deltas {
        deltas.push((read(blobs, hash).await?, *score));
    }
    let mut held_out = Vec::with_capacity(plan.held_out.len());
    for (id, checksum) in &plan.held_out {
        held_out.push(Item {
            id: *id,
            bytes: read(blobs, checksum).await?,
        });
    }
    let delta_hashes: Vec<Hash> = plan.deltas.iter().map(|(hash, _)| *hash).collect();
    let Plan {
        mut update, config, ..
    } = plan;
    let expert = update.expert as usize;
    let (merged, parent_loss, loss) = tokio::task::spawn_blocking(move || -> Result<_, MlError> {
        let inputs: Vec<(&[u8], u64)> = deltas
            .iter()
            .map(|(bytes, score)| (bytes.as_slice(), *score))
            .collect();
        let merged = blyan_ml::merge(&config, expert, &base[expert], &inputs)?;
        let device = blyan_ml::device()?;
        let before_parts: Vec<&[u8]> = base.iter().map(Vec::as_slice).collect();
        let mut after_parts = before_parts.clone();
        after_parts[expert] = &merged.weights;
        let before = Moe::assemble(config, &shared, &before_parts, &device)?;
        let after = Moe::assemble(config, &shared, &after_parts, &device)?;
        // Held-out items that do not fit the model (a pool of other data) leave the
        // losses unmeasured, `u64::MAX`, and the chain still moves on.
        let measurer = CandleMeasurer::new(before.clone());
        let loss = |model: &Moe| {
            measurer
                .loss(model, &held_out)
                .map_or(u64::MAX, blyan_ml::loss_fixed)
        };
        Ok((merged, loss(&before), loss(&after)))
    })
    .await
    .expect("a merge worker panicked")?;
    update.merged = merged
        .merged
        .iter()
        .map(|index| delta_hashes[*index])
        .collect();
    let stored = blobs.put_bytes(merged.weights).await?;
    update.weights_hash = stored.hash;
    update.weights_bytes = stored.bytes;
    update.parent_held_out_loss = parent_loss;
    update.held_out_loss = loss;
    tracing::info!(
        round = round_id,
        expert,
        version = update.version,
        merged = update.merged.len(),
        parent_held_out_loss = parent_loss,
        held_out_loss = loss,
        "merged a round's deltas into the expert's next version"
    );
    Ok(Some(
        engine
            .submit_input(ServerInput::UpdateExpert(update))
            .await?,
    ))
}
