//! The HTTP API: one `app(engine) -> Router`, infallible handlers, and one [`ApiError`]
//! that maps every refusal to a status and a JSON body `{code, message}`.
//!
//! | status | codes |
//! | --- | --- |
//! | 400 | `malformed_command`, `malformed_request` |
//! | 401 | `bad_signature` |
//! | 403 | `unauthorized` |
//! | 404 | `node_not_found`, `proposal_not_found`, `plugin_not_found` |
//! | 409 | `idempotency_key_reused`, `node_already_registered`, `node_not_registered`, `burn_conflict`, `already_approved`, `proposal_already_activated`, `proposal_expired` |
//! | 413 | `body_too_large`, `plugin_too_large` |
//! | 422 | `invalid_field`, `burn_total_overflow`, and the conformance failures `plugin_malformed`, `plugin_imports`, `plugin_exports`, `plugin_abi_version`, `plugin_trap`, `plugin_out_of_fuel`, `plugin_deadline`, `plugin_memory`, `plugin_output`, `plugin_invariant` |
//! | 503 | `writer_stopped`, `no_genesis` |

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use blyan_plugin_host::Host;
use blyan_sdk::codec;
use blyan_sdk::core::RejectionClass;
use blyan_sdk::crypto::{self, COMMAND_DOMAIN, PublicKey};
use blyan_sdk::model::{Action, PluginProposal, limits};
use blyan_sdk::record::Record;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::engine::{Engine, Submission, SubmitError};
use crate::store::idempotency_key;

/// Bounds of the API.
#[derive(Debug, Clone, Copy)]
pub struct ApiConfig {
    /// Largest accepted request body.
    pub body_bytes_max: usize,
    /// A request that takes longer is answered 408.
    pub request_timeout_ms: u64,
    /// Most records in one `GET /v1/events` page.
    pub events_page_max: u32,
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            // A plugin module and its envelope.
            body_bytes_max: limits::PLUGIN_BYTES_MAX + 64 * 1024,
            request_timeout_ms: 30_000,
            events_page_max: 1_000,
        }
    }
}

#[derive(Debug, Clone)]
struct AppState {
    engine: Engine,
    config: ApiConfig,
    host: Arc<Host>,
}

pub fn app(engine: Engine, config: ApiConfig, host: Arc<Host>) -> Router {
    let timed = Router::new()
        .route("/v1/commands", post(submit_command))
        .route("/v1/events", get(events))
        .route("/v1/head", get(head))
        .route("/v1/state", get(state))
        .route("/v1/nodes/{pubkey}", get(node))
        .route("/v1/governance", get(governance))
        .route("/v1/plugins", get(plugins))
        .route("/v1/plugins/{hash}", get(plugin))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(config.request_timeout_ms),
        ));
    Router::new()
        .route("/v1/events/ws", get(events_ws))
        .merge(timed)
        .layer(DefaultBodyLimit::max(config.body_bytes_max))
        .layer(TraceLayer::new_for_http())
        .with_state(AppState {
            engine,
            config,
            host,
        })
}

/// A refusal as the client sees it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "code": self.code, "message": self.message })),
        )
            .into_response()
    }
}

pub fn submit_error_code(error: &SubmitError) -> &'static str {
    match error {
        SubmitError::Rejected(rejection) => rejection.code(),
        SubmitError::IdempotencyKeyReused { .. } => "idempotency_key_reused",
        SubmitError::WriterStopped => "writer_stopped",
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> ApiError {
        let status = match &error {
            SubmitError::Rejected(rejection) => match rejection.class() {
                RejectionClass::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                RejectionClass::Forbidden => StatusCode::FORBIDDEN,
                RejectionClass::Conflict => StatusCode::CONFLICT,
                // The engine answers these with the original receipt before they get here.
                RejectionClass::AlreadyDone => StatusCode::CONFLICT,
                RejectionClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                RejectionClass::NotFound => StatusCode::NOT_FOUND,
                RejectionClass::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            },
            SubmitError::IdempotencyKeyReused { .. } => StatusCode::CONFLICT,
            SubmitError::WriterStopped => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, submit_error_code(&error), error.to_string())
    }
}

async fn submit_command(
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let metrics = &app.engine.shared.metrics;
    let refuse = |error: ApiError| {
        metrics.record_rejection(error.code);
        error
    };
    let body = body.map_err(|rejection| {
        refuse(if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body exceeds {} bytes", app.config.body_bytes_max),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                rejection.body_text(),
            )
        })
    })?;
    let malformed = |message: String| {
        refuse(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_command",
            message,
        ))
    };
    let signed =
        codec::decode_signed_command(&body).map_err(|error| malformed(error.to_string()))?;
    crypto::verify(
        COMMAND_DOMAIN,
        &app.engine.shared.network_id,
        &signed.body,
        &signed.signer,
        &signed.signature,
    )
    .map_err(|error| {
        refuse(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            error.to_string(),
        ))
    })?;
    let command =
        codec::decode_command(&signed.body).map_err(|error| malformed(error.to_string()))?;
    // A replayed proposal skips the check: the writer answers it from the idempotency
    // index (with the original receipt, or as a reused key), whatever the limits are
    // now. An index that can't be read counts as unseen; the writer then fails on it.
    let seen = || {
        let key = idempotency_key(&signed.signer, &command.idempotency_key);
        matches!(app.engine.shared.store.idempotency(&key), Ok(Some(_)))
    };
    if let Action::ProposePlugin(proposal) = &command.action
        && !seen()
    {
        conformance(&app, &signed.signer, proposal)
            .await
            .map_err(refuse)?;
    }
    let receipt = app.engine.submit(Submission { signed, command }).await?;
    Ok(
        Json(json!({ "seq": receipt.seq, "event_hash": hex::encode(receipt.event_hash) }))
            .into_response(),
    )
}

/// The dry run a plugin proposal must pass before it reaches the writer. Only a
/// governance key's proposal of an acceptable size is worth compiling; any other is
/// refused by `decide` with its own code.
async fn conformance(
    app: &AppState,
    signer: &PublicKey,
    proposal: &PluginProposal,
) -> Result<(), ApiError> {
    let governance = {
        let published = app.engine.shared.published.read().expect("published lock");
        published
            .state
            .genesis()
            .is_some_and(|genesis| genesis.governance_keys.contains(signer))
    };
    if !governance || proposal.wasm.len() > limits::PLUGIN_BYTES_MAX {
        return Ok(());
    }
    let host = app.host.clone();
    let wasm = proposal.wasm.clone();
    let kind = proposal.kind;
    let verdict = tokio::task::spawn_blocking(move || host.conformance(kind, &wasm))
        .await
        .map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                error.to_string(),
            )
        })?;
    verdict.map(|_| ()).map_err(|error| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            error.code(),
            format!(
                "the {} plugin failed the conformance check: {error}",
                proposal.kind
            ),
        )
    })
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    from: u64,
    limit: Option<u32>,
    format: Option<String>,
}

fn wants_protobuf(query: &EventsQuery, headers: &HeaderMap) -> bool {
    match query.format.as_deref() {
        Some(format) => format == "proto",
        None => headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("application/x-protobuf")),
    }
}

fn storage_error(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "storage_error",
        error.to_string(),
    )
}

async fn events(
    State(app): State<AppState>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(format) = query
        .format
        .as_deref()
        .filter(|format| !matches!(*format, "proto" | "json"))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            format!("format must be proto or json, not {format}"),
        ));
    }
    let limit = query
        .limit
        .unwrap_or(100)
        .clamp(1, app.config.events_page_max) as usize;
    let end = app.engine.shared.events_committed.borrow().to_owned();
    let store = app.engine.shared.store.clone();
    let from = query.from;
    let encoded = tokio::task::spawn_blocking(move || store.read_encoded(from, end, limit))
        .await
        .map_err(storage_error)?
        .map_err(storage_error)?;
    if wants_protobuf(&query, &headers) {
        // An `EventRecordPage` is field 1 repeated: each stored record, tagged and
        // length-prefixed, exactly as stored.
        let mut page = Vec::with_capacity(encoded.iter().map(|value| value.len() + 6).sum());
        for value in &encoded {
            prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut page);
            prost::encoding::encode_varint(value.len() as u64, &mut page);
            page.extend_from_slice(value);
        }
        return Ok(([(header::CONTENT_TYPE, "application/x-protobuf")], page).into_response());
    }
    let records: Vec<serde_json::Value> = encoded
        .iter()
        .map(|value| render_record(value))
        .collect::<Result<_, _>>()?;
    Ok(Json(json!({ "records": records })).into_response())
}

fn render_record(value: &[u8]) -> Result<serde_json::Value, ApiError> {
    let record = Record::decode(value).map_err(storage_error)?;
    let logged = codec::decode_logged_event(&record.body).map_err(storage_error)?;
    let cause = logged.cause.map(|cause| {
        json!({
            "signer": cause.signer,
            "signature": hex::encode(cause.signature),
            "body": hex::encode(&cause.body),
        })
    });
    Ok(json!({
        "seq": record.seq,
        "prev_hash": hex::encode(record.prev_hash),
        "time_ms": record.time_ms,
        "hash": hex::encode(record.hash),
        "event": logged.event,
        "cause": cause,
    }))
}

#[derive(Debug, Deserialize)]
struct WsQuery {
    #[serde(default)]
    from: u64,
}

async fn events_ws(
    State(app): State<AppState>,
    Query(query): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| stream_events(app, query.from, socket))
}

/// Sends the backlog from `from`, then every record as it is committed, each as one
/// binary message holding the stored `EventRecord`.
async fn stream_events(app: AppState, from: u64, mut socket: WebSocket) {
    let shared = app.engine.shared.clone();
    let mut committed = shared.events_committed.subscribe();
    let mut seq_next = from;
    loop {
        let end = *committed.borrow_and_update();
        while seq_next < end {
            let store = shared.store.clone();
            let limit = app.config.events_page_max as usize;
            let page =
                match tokio::task::spawn_blocking(move || store.read_encoded(seq_next, end, limit))
                    .await
                {
                    Ok(Ok(page)) if !page.is_empty() => page,
                    _ => return,
                };
            for value in page {
                if socket.send(Message::Binary(value.into())).await.is_err() {
                    return;
                }
                seq_next += 1;
            }
        }
        tokio::select! {
            changed = committed.changed() => if changed.is_err() { return },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn head(State(app): State<AppState>) -> Json<serde_json::Value> {
    let published = app.engine.shared.published.read().expect("published lock");
    Json(json!({
        "network_id": app.engine.shared.network_id,
        "events": published.events(),
        "head_hash": hex::encode(published.head_hash),
        "state_root": hex::encode(published.state_root()),
    }))
}

async fn state(State(app): State<AppState>) -> Json<serde_json::Value> {
    let published = app.engine.shared.published.read().expect("published lock");
    let state = &published.state;
    Json(json!({
        "network_id": app.engine.shared.network_id,
        "events": state.events_applied(),
        "genesis": state.genesis(),
        "nodes": state.nodes().len(),
        "burns": state.burn_count(),
        "burn_total": state.burn_total().to_string(),
        "checkpoint_last": state.checkpoint_last(),
    }))
}

async fn node(
    State(app): State<AppState>,
    Path(pubkey): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = PublicKey::from_hex(&pubkey).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            "the public key must be 64 hex characters",
        )
    })?;
    let published = app.engine.shared.published.read().expect("published lock");
    let node = published.state.node(&key).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "node_not_found",
            format!("node {key} is not registered"),
        )
    })?;
    Ok(Json(json!({ "pubkey": key, "node": node })))
}

/// Proposals, activations and the round open now.
async fn governance(State(app): State<AppState>) -> Json<serde_json::Value> {
    let published = app.engine.shared.published.read().expect("published lock");
    let governance = published.state.governance();
    let round = governance.round_number();
    let proposals: Vec<serde_json::Value> = governance
        .proposals()
        .iter()
        .map(|(id, proposal)| {
            let status = match proposal.activated_seq {
                Some(_) => "activated",
                None if proposal.activation_round <= round => "expired",
                None => "pending",
            };
            json!({
                "id": id,
                "status": status,
                "proposer": proposal.proposer,
                "subject": proposal.subject,
                "activation_round": proposal.activation_round,
                "approvals": proposal.approvals,
                "proposed_seq": proposal.proposed_seq,
                "activated_seq": proposal.activated_seq,
            })
        })
        .collect();
    Json(json!({
        "round": governance.round(),
        "parameters": governance.parameters(),
        "governance_threshold": published.state.genesis().map(|genesis| genesis.governance_threshold),
        "proposals": proposals,
        "plugin_activations": governance
            .plugin_activations()
            .iter()
            .map(|(kind, activations)| {
                let activations: Vec<serde_json::Value> = activations
                    .iter()
                    .map(|activation| {
                        json!({
                            "activation_round": activation.activation_round,
                            "seq": activation.seq,
                            "hash": hex::encode(activation.value),
                        })
                    })
                    .collect();
                (kind.name().to_string(), json!(activations))
            })
            .collect::<serde_json::Map<_, _>>(),
        "parameter_activations": governance
            .parameter_activations()
            .iter()
            .map(|activation| {
                json!({
                    "activation_round": activation.activation_round,
                    "seq": activation.seq,
                    "parameters": activation.value,
                })
            })
            .collect::<Vec<_>>(),
        "fallbacks": governance.fallbacks().iter().map(|(seq, fallback)| json!({ "seq": seq, "fallback": fallback })).collect::<Vec<_>>(),
    }))
}

/// Every plugin module the log holds, and what each round would run.
async fn plugins(State(app): State<AppState>) -> Json<serde_json::Value> {
    let published = app.engine.shared.published.read().expect("published lock");
    let governance = published.state.governance();
    let plugins: Vec<serde_json::Value> = governance
        .plugins()
        .iter()
        .map(|(hash, plugin)| {
            json!({
                "hash": hex::encode(hash),
                "kind": plugin.kind,
                "bytes": plugin.bytes,
                "stored_seq": plugin.stored_seq,
            })
        })
        .collect();
    let chains: serde_json::Map<String, serde_json::Value> = blyan_sdk::model::PluginKind::ALL
        .into_iter()
        .map(|kind| {
            let chain: Vec<String> = governance
                .fallback_chain(kind)
                .iter()
                .map(hex::encode)
                .collect();
            (kind.name().to_string(), json!(chain))
        })
        .collect();
    Json(json!({ "plugins": plugins, "fallback_chains": chains }))
}

/// The bytes of one stored module, by its blake3 hash.
async fn plugin(
    State(app): State<AppState>,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    let key: [u8; 32] = hex::decode(&hash)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                "the hash must be 64 hex characters",
            )
        })?;
    let published = app.engine.shared.published.read().expect("published lock");
    let plugin = published.state.governance().plugin(&key).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "plugin_not_found",
            format!("no plugin module has hash {hash}"),
        )
    })?;
    Ok((
        [(header::CONTENT_TYPE, "application/wasm")],
        plugin.wasm.to_vec(),
    )
        .into_response())
}

async fn healthz(State(app): State<AppState>) -> Response {
    if app.engine.shared.writer_stopped() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "writer_stopped",
            "the writer stopped after a storage failure",
        )
        .into_response();
    }
    Json(json!({ "status": "ok", "events": *app.engine.shared.events_committed.borrow() }))
        .into_response()
}

async fn metrics(State(app): State<AppState>) -> Response {
    let shared = &app.engine.shared;
    let text = shared
        .metrics
        .render(*shared.events_committed.borrow(), shared.writer_stopped());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
