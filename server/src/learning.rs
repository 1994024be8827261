//! The parameter chain on the server (see `blyan_sdk::core::experts`).
//!
//! - [`with_model_weights`]: version 0 of the genesis model, initialised from its seed
//!   and stored as blobs before the genesis names their hashes.
//! - [`merge`]: the merge a finalized round owes. It reads the round's base versions,
//!   its accepted deltas and its pool's held-out items from the blob store, merges on
//!   a blocking worker (`blyan_ml::merge`: host arithmetic, the same bytes on every
//!   machine; the losses on the CPU), measures the held-out loss of the model before and after (`u64::MAX`
//!   when the pool's items do not fit the model), stores the
//!   new weights and hands the update to the writer as a server input, which the core
//!   checks and decides into `ExpertUpdated`.

use std::io;

use blyan_ml::{MlError, MoeConfig};
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
    #[error("the merge worker failed: {0}")]
    Worker(String),
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

/// Makes and submits the next version of the expert that round `round_id` trained,
/// if the round owes it. `None` when it owes nothing (done already, or never).
pub async fn merge(
    engine: &Engine,
    blobs: &BlobStore,
    round_id: u64,
) -> Result<Option<Option<Receipt>>, MergeError> {
    let (plan, config, owed) = {
        let published = engine.published();
        let state = &published.state;
        (
            state.merge_plan(round_id),
            state.model().map(MoeConfig::of),
            state.experts().owed().any(|owed| owed == round_id),
        )
    };
    let (Some(plan), Some(config)) = (plan, config) else {
        // `State::check` keeps a log whose rounds pin other versions out, so a round
        // that owes a merge always has its plan.
        if owed {
            tracing::error!(round = round_id, "a round owes a merge but has no plan");
        }
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
    let expert = plan.expert as usize;
    let next = tokio::task::spawn_blocking(move || {
        blyan_ml::next_version(
            config,
            expert,
            &shared,
            &base,
            &deltas,
            &held_out,
            // The merge is host arithmetic; the losses are small forward passes, on
            // the CPU even in a `cuda` build, so a server without a GPU still merges.
            &blyan_ml::Device::Cpu,
        )
    })
    .await
    .map_err(|error| MergeError::Worker(error.to_string()))??;
    let stored = blobs.put_bytes(next.merged.weights).await?;
    let update = ExpertUpdate {
        round: round_id,
        expert: plan.expert,
        version: plan.version,
        parent_hash: plan.parent_hash,
        weights_hash: stored.hash,
        weights_bytes: stored.bytes,
        merged: next
            .merged
            .merged
            .iter()
            .map(|index| plan.deltas[*index].0)
            .collect(),
        parent_held_out_loss: next.parent_held_out_loss,
        held_out_loss: next.held_out_loss,
    };
    tracing::info!(
        round = round_id,
        expert,
        version = update.version,
        merged = update.merged.len(),
        parent_held_out_loss = update.parent_held_out_loss,
        held_out_loss = update.held_out_loss,
        "merged a round's deltas into the expert's next version"
    );
    Ok(Some(
        engine
            .submit_input(ServerInput::UpdateExpert(update))
            .await?,
    ))
}
