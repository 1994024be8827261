//! The parameter chain's read API: the model and every expert's newest version
//! (`/v1/experts`), one expert's versions (`/v1/experts/{id}/versions`), and the
//! versions a round trains from (`/v1/rounds/{id}/model`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use blyan_sdk::api::{ExpertVersionView, ModelView};
use blyan_sdk::core::State as LedgerState;
use blyan_sdk::model::ModelSpec;

use super::{ApiError, AppState};

/// The most versions one `GET /v1/experts/{id}/versions` returns.
pub const VERSIONS_PAGE_MAX: u32 = 1_000;

fn model_of(state: &LedgerState) -> Result<&ModelSpec, ApiError> {
    state.model().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_model",
            "this ledger's genesis names no model",
        )
    })
}

/// `expert` at `version`; the chain has every version up to the expert's head.
fn version_view(
    state: &LedgerState,
    model: &ModelSpec,
    expert: u32,
    version: u32,
) -> ExpertVersionView {
    let experts = state.experts();
    let weights_hash = experts
        .hash(model, expert, version)
        .expect("the chain has every version up to its head");
    let entry = experts.version(expert, version);
    ExpertVersionView {
        expert,
        version,
        weights_hash: hex::encode(weights_hash),
        parent_hash: entry.map(|entry| hex::encode(entry.parent_hash)),
        round: entry.map(|entry| entry.round),
        seq: entry.map(|entry| entry.seq),
        weights_bytes: entry.map(|entry| entry.weights_bytes),
        merged: entry.map_or(0, |entry| entry.merged),
        parent_held_out_loss: entry.map(|entry| entry.parent_held_out_loss),
        held_out_loss: entry.map(|entry| entry.held_out_loss),
    }
}

fn model_view(state: &LedgerState, model: &ModelSpec, versions: &[u32]) -> ModelView {
    ModelView {
        inputs: model.inputs,
        hidden: model.hidden,
        outputs: model.outputs,
        experts: model.experts,
        seed: model.seed,
        shared_hash: hex::encode(model.shared_hash),
        versions: (0..model.experts)
            .zip(versions)
            .map(|(expert, version)| version_view(state, model, expert, *version))
            .collect(),
    }
}

pub(super) async fn list(State(app): State<AppState>) -> Result<Json<ModelView>, ApiError> {
    let published = app.engine.published();
    let state = &published.state;
    let model = model_of(state)?;
    let heads = state.experts().heads_of(model);
    Ok(Json(model_view(state, model, &heads)))
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct VersionsQuery {
    #[serde(default)]
    from: u32,
    /// 100 when absent; at most [`VERSIONS_PAGE_MAX`].
    limit: Option<u32>,
}

pub(super) async fn versions(
    State(app): State<AppState>,
    Path(expert): Path<u32>,
    Query(query): Query<VersionsQuery>,
) -> Result<Json<Vec<ExpertVersionView>>, ApiError> {
    let published = app.engine.published();
    let state = &published.state;
    let model = model_of(state)?;
    if expert >= model.experts {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "expert_not_found",
            format!("the model has {} experts", model.experts),
        ));
    }
    let head = state.experts().head(expert);
    let limit = query.limit.unwrap_or(100).clamp(1, VERSIONS_PAGE_MAX);
    let end = query.from.saturating_add(limit).min(head.saturating_add(1));
    Ok(Json(
        (query.from..end)
            .map(|version| version_view(state, model, expert, version))
            .collect(),
    ))
}

pub(super) async fn round_model(
    State(app): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<ModelView>, ApiError> {
    let published = app.engine.published();
    let state = &published.state;
    let model = model_of(state)?;
    let round = state.rounds().get(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "round_not_found",
            format!("round {id} does not exist"),
        )
    })?;
    if round.plan.model_versions.len() != model.experts as usize {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "round_without_model",
            format!("round {id} pins no model"),
        ));
    }
    Ok(Json(model_view(state, model, &round.plan.model_versions)))
}
