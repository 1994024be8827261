//! The HTTP API: one `app(engine) -> Router`, infallible handlers, and one [`ApiError`]
//! that maps every refusal to a status and a JSON body `{code, message}`.
//!
//! | status | codes |
//! | --- | --- |
//! | 400 | `malformed_command`, `malformed_request` |
//! | 401 | `bad_signature` |
//! | 403 | `unauthorized`, `not_curator`, `not_in_round`, `not_on_committee` (commands) |
//! | 404 | `node_not_found`, `proposal_not_found`, `plugin_not_found`, `blob_not_found`, `round_not_found`, `pool_not_found`, `item_not_found`, `assignment_not_found`, `not_in_round` (a receipt), `event_not_found`, `no_model`, `expert_not_found`, `round_without_model` |
//! | 412 | `precondition_failed` (a blob's `If-*` headers) |
//! | 416 | `range_not_satisfiable` (a blob's `Range`) |
//! | 409 | `idempotency_key_reused`, `node_already_registered`, `node_not_registered`, `registry_full`, `burn_conflict`, `already_approved`, `proposal_already_activated`, `proposal_expired`, `proposal_hash_mismatch`, `too_many_pending_proposals`, `wrong_phase`, `deadline_passed`, `already_committed`, `not_committed`, `already_revealed`, `delta_copied`, `already_submitted`, `blob_missing`, `round_not_ended`, `not_checkpointed`, `liveness_window_not_open`, `liveness_window_closing` |
//! | 413 | `body_too_large`, `plugin_too_large`, `blob_too_large`, `pool_too_large`, `delta_too_large` |
//! | 422 | `invalid_field`, `burn_total_overflow`, `blob_hash_mismatch`, `blob_size_mismatch`, `commitment_mismatch`, and the conformance failures `plugin_malformed`, `plugin_too_complex`, `plugin_imports`, `plugin_exports`, `plugin_abi_version`, `plugin_trap`, `plugin_out_of_fuel`, `plugin_deadline`, `plugin_memory`, `plugin_output`, `plugin_invariant`, and the check's own limits `plugin_check_timeout`, `plugin_check_limit` |
//! | 429 | `heartbeat_too_soon` (one a node per liveness window), `registration_rate_limited` (with `Retry-After`) |
//! | 500 | `storage_error`, `internal_error` |
//! | 503 | `writer_stopped`, `no_genesis`, `too_many_subscribers` |
//!
//! What the router, an extractor or a layer answers on its own is rewritten by
//! [`json_errors`] into the same shape, keeping its status: `not_found`,
//! `method_not_allowed`, `malformed_request` (a bad query, a missing WebSocket
//! upgrade), `request_timeout`, `body_too_large` (a `Content-Length` more than 8 MiB
//! past the limit is refused before any byte of the body is read), `upgrade_required`,
//! `internal_error`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use blyan_sdk::api::{
    ApiErrorBody, FallbackView, GovernanceView, Head, Health, HeartbeatHeld, NodeView,
    ParametersActivationView, PluginActivationView, PluginView, PluginsView, ProposalStatus,
    ProposalView, Receipt, StateSummary, StoredBlob,
};
use blyan_sdk::codec;
use blyan_sdk::core::RejectionClass;
use blyan_sdk::crypto::{self, COMMAND_DOMAIN, PublicKey};
use blyan_sdk::model::{Action, Cause, PluginKind, PluginProposal, ServerInput, limits};
use blyan_sdk::replay::CheckedRecord;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

mod admission;
mod experts;
mod openapi;
mod rounds;

use crate::blobs::{BlobStore, PutError};
use crate::conformance::{ConformanceError, Conformer};
use crate::engine::{Engine, Submission, SubmitError};
use crate::metrics::Gauges;
use admission::RegistrationRate;
use openapi::Route;
use utoipa::openapi::path::HttpMethod;

/// Bounds of the API.
#[derive(Debug, Clone, Copy)]
pub struct ApiConfig {
    /// Largest accepted request body.
    pub body_bytes_max: usize,
    /// A request that takes longer is answered 408.
    pub request_timeout_ms: u64,
    /// Most records in one `GET /v1/events` page, or one read of the WebSocket stream.
    pub events_page_max: u32,
    /// Most stored bytes in one such page; a page holds at least one record.
    pub events_page_bytes_max: usize,
    /// WebSocket subscribers at once; more are answered 503.
    pub subscribers_max: usize,
    /// Node registrations one source (an IPv4 address or an IPv6 /64) may make in an
    /// hour; more are answered 429.
    pub registrations_per_source_per_hour: u32,
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            // A plugin module and its envelope.
            body_bytes_max: limits::PLUGIN_BYTES_MAX + 64 * 1024,
            request_timeout_ms: 30_000,
            events_page_max: 1_000,
            events_page_bytes_max: 4 << 20,
            subscribers_max: 256,
            registrations_per_source_per_hour: 60,
        }
    }
}

#[derive(Debug, Clone)]
struct AppState {
    engine: Engine,
    config: ApiConfig,
    subscribers: Arc<tokio::sync::Semaphore>,
    /// Runs the conformance check of proposals in a child process with hard limits.
    conformer: Arc<Conformer>,
    registrations: Arc<RegistrationRate>,
    blobs: Arc<BlobStore>,
    /// The Merkle trees of the rounds' and pools' roots that proofs were asked of.
    trees: Arc<rounds::Trees>,
    /// `/v1/openapi.json`, written once from the route table.
    openapi: Arc<String>,
}

/// Every route, documented: the router is built from this table and
/// `/v1/openapi.json` is written from it.
fn routes() -> Vec<Route> {
    use blyan_sdk::api as views;
    use openapi::{Body, json, json_list};
    const BAD_PATH: (u16, &str) = (400, "malformed_request (a bad path or query)");
    const STORAGE: (u16, &str) = (500, "storage_error");
    const TIMEOUT: (u16, &str) = (408, "request_timeout");
    let route = |method: HttpMethod, path, summary, handler| Route {
        method,
        path,
        summary,
        status: 200,
        timed: true,
        query: &[],
        headers: &[],
        also: &[],
        head: false,
        request: Body::None,
        response: Body::None,
        errors: &[],
        handler,
    };
    let round_errors: &'static [(u16, &'static str)] = &[
        BAD_PATH,
        (404, "round_not_found, assignment_not_found, pool_not_found"),
        TIMEOUT,
    ];
    vec![
        Route {
            request: Body::Bytes("application/x-protobuf"),
            response: Body::Json(json::<views::Receipt>),
            also: &[(
                202,
                "A heartbeat, held for its liveness window (a HeartbeatHeld, `{window}`): logged when the window closes",
            )],
            errors: &[
                (400, "malformed_command, malformed_request"),
                (401, "bad_signature"),
                (
                    403,
                    "unauthorized, not_curator, not_in_round, not_on_committee",
                ),
                (
                    404,
                    "node_not_registered, proposal_not_found, round_not_found",
                ),
                (
                    409,
                    "the core's Conflict rejections (wrong_phase, already_committed, delta_copied, liveness_window_not_open, ...), idempotency_key_reused, blob_missing, liveness_window_closing",
                ),
                (
                    413,
                    "body_too_large, plugin_too_large, pool_too_large, delta_too_large",
                ),
                (
                    422,
                    "invalid_field, commitment_mismatch, burn_total_overflow, blob_size_mismatch, the conformance check's plugin_malformed, plugin_trap, plugin_out_of_fuel, plugin_memory, plugin_deadline, plugin_invariant, plugin_check_timeout and plugin_check_limit",
                ),
                (
                    429,
                    "heartbeat_too_soon (one a node per liveness window), registration_rate_limited (with Retry-After)",
                ),
                (503, "no_genesis, writer_stopped"),
                (500, "storage_error, internal_error"),
                TIMEOUT,
            ],
            ..route(
                HttpMethod::Post,
                "/v1/commands",
                "Submit a signed command (a protobuf SignedCommand)",
                post(submit_command),
            )
        },
        Route {
            query: &[
                ("from", "the first seq (0 when absent)"),
                ("limit", "records, at most the server's page size"),
                (
                    "format",
                    "`json`, or `proto` for an EventRecordPage; when absent, `proto` only if `Accept` names application/x-protobuf",
                ),
            ],
            response: Body::Events,
            errors: &[BAD_PATH, STORAGE, TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/v1/events",
                "A page of the log's records",
                get(events),
            )
        },
        Route {
            response: Body::Json(json::<views::Head>),
            errors: &[TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/v1/head",
                "The log's length, head hash and state root",
                get(head),
            )
        },
        Route {
            response: Body::Json(json::<views::StateSummary>),
            errors: &[TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/v1/state",
                "A summary of the state",
                get(state),
            )
        },
        Route {
            response: Body::Json(json::<views::NodeView>),
            errors: &[BAD_PATH, (404, "node_not_found"), TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/v1/nodes/{pubkey}",
                "A registered node",
                get(node),
            )
        },
        Route {
            response: Body::Json(json::<views::GovernanceView>),
            errors: &[TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/v1/governance",
                "Proposals, activations, the open round's pins and the parameters in force",
                get(governance),
            )
        },
        Route {
            response: Body::Json(json::<views::PluginsView>),
            errors: &[TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/v1/plugins",
                "Every stored plugin module and each kind's fallback chain",
                get(plugins),
            )
        },
        Route {
            response: Body::Bytes("application/wasm"),
            errors: &[BAD_PATH, (404, "plugin_not_found"), STORAGE, TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/v1/plugins/{hash}",
                "A stored plugin module's bytes",
                get(plugin),
            )
        },
        Route {
            query: &[
                ("from", "the first round (0 when absent)"),
                ("limit", "rounds, 100 when absent, at most 1,000"),
            ],
            response: Body::Json(json_list::<views::RoundSummary>),
            errors: &[BAD_PATH, TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/v1/rounds",
                "A page of rounds by number",
                get(rounds::list),
            )
        },
        Route {
            response: Body::Json(json::<views::RoundView>),
            errors: &[BAD_PATH, (404, "round_not_found"), TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/v1/rounds/{id}",
                "A round: its plan, pins, roots, deltas, scores and rewards",
                get(rounds::show),
            )
        },
        Route {
            response: Body::Json(json::<views::AssignmentView>),
            errors: round_errors,
            ..route(
                HttpMethod::Get,
                "/v1/rounds/{id}/assignments/{node}",
                "A node's shard, its items and the shard's proof",
                get(rounds::assignment),
            )
        },
        Route {
            response: Body::Json(json::<views::TasksView>),
            errors: round_errors,
            ..route(
                HttpMethod::Get,
                "/v1/rounds/{id}/tasks/{validator}",
                "The deltas a committee member measures and the held-out items",
                get(rounds::tasks),
            )
        },
        Route {
            response: Body::Json(json::<views::ModelView>),
            errors: &[
                BAD_PATH,
                (404, "no_model, round_not_found, round_without_model"),
                TIMEOUT,
            ],
            ..route(
                HttpMethod::Get,
                "/v1/rounds/{id}/model",
                "The version of every expert a round trains from and measures against",
                get(experts::round_model),
            )
        },
        Route {
            response: Body::Json(json::<blyan_sdk::receipt::RoundReceipt>),
            errors: &[
                BAD_PATH,
                (404, "round_not_found, not_in_round"),
                (409, "round_not_ended, not_checkpointed"),
                STORAGE,
                TIMEOUT,
            ],
            ..route(
                HttpMethod::Get,
                "/v1/rounds/{id}/receipts/{key}",
                "A key's receipt of an ended round, with its proofs",
                get(rounds::receipt),
            )
        },
        Route {
            response: Body::Json(json::<views::PoolView>),
            errors: &[BAD_PATH, (404, "pool_not_found"), TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/v1/pools/{id}",
                "A dataset pool and its items",
                get(rounds::pool),
            )
        },
        Route {
            response: Body::Json(json::<views::ItemProofView>),
            errors: &[BAD_PATH, (404, "pool_not_found, item_not_found"), TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/v1/pools/{id}/items/{item}/proof",
                "An item's inclusion proof against the pool's root",
                get(rounds::item_proof),
            )
        },
        Route {
            response: Body::Json(json_list::<views::ValidatorView>),
            errors: &[TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/v1/validators",
                "The admitted validators and their reputation",
                get(rounds::validators),
            )
        },
        Route {
            response: Body::Json(json::<blyan_sdk::receipt::EventProof>),
            errors: &[
                BAD_PATH,
                (404, "event_not_found"),
                (409, "not_checkpointed"),
                STORAGE,
                TIMEOUT,
            ],
            ..route(
                HttpMethod::Get,
                "/v1/proofs/events/{seq}",
                "An event's inclusion proof against the latest checkpoint",
                get(rounds::event_proof),
            )
        },
        Route {
            response: Body::Json(json::<views::ModelView>),
            errors: &[(404, "no_model"), TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/v1/experts",
                "The genesis model and every expert's newest version",
                get(experts::list),
            )
        },
        Route {
            query: &[
                ("from", "the first version (0 when absent)"),
                ("limit", "versions, 100 when absent, at most 1,000"),
            ],
            response: Body::Json(json_list::<views::ExpertVersionView>),
            errors: &[BAD_PATH, (404, "no_model, expert_not_found"), TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/v1/experts/{id}/versions",
                "One expert's parameter chain",
                get(experts::versions),
            )
        },
        Route {
            response: Body::Json(json::<views::Health>),
            errors: &[(503, "writer_stopped")],
            ..route(
                HttpMethod::Get,
                "/healthz",
                "Whether the writer runs",
                get(healthz),
            )
        },
        Route {
            response: Body::Bytes("text/html; charset=utf-8"),
            errors: &[TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/",
                "The explorer: a page that follows the log live (embedded, no build step)",
                get(explorer),
            )
        },
        Route {
            response: Body::Bytes("application/wasm"),
            headers: &[(
                "If-None-Match",
                "answered 304 when it names the module's ETag (its blake3 hash)",
            )],
            also: &[(304, "Not modified: the module is the one the ETag names")],
            errors: &[TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/explorer/audit.wasm",
                "The explorer's audit module: the sdk's audit replay, which checks every record the page reads and recomputes the state root",
                get(explorer_audit),
            )
        },
        Route {
            response: Body::Bytes("text/plain; version=0.0.4"),
            errors: &[TIMEOUT],
            ..route(
                HttpMethod::Get,
                "/metrics",
                "Prometheus metrics",
                get(metrics),
            )
        },
        Route {
            response: Body::Json(|_| {
                utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::Object)
                        .description(Some("This document"))
                        .build(),
                ))
            }),
            ..route(
                HttpMethod::Get,
                "/v1/openapi.json",
                "This OpenAPI document",
                get(openapi_json),
            )
        },
        Route {
            timed: false,
            status: 101,
            query: &[("from", "the first seq to stream (0 when absent)")],
            response: Body::Bytes("application/octet-stream"),
            errors: &[
                BAD_PATH,
                (426, "upgrade_required"),
                (503, "too_many_subscribers"),
            ],
            ..route(
                HttpMethod::Get,
                "/v1/events/ws",
                "The log as a WebSocket stream: one binary message per EventRecord, the backlog from `from` and then live",
                get(events_ws),
            )
        },
        Route {
            timed: false,
            headers: &[
                (
                    "Range",
                    "one byte range, `bytes=START-END`: answered 206 with those bytes",
                ),
                (
                    "If-Modified-Since",
                    "answered 304 when the blob is not newer than this (its `Last-Modified`)",
                ),
                ("If-Unmodified-Since", "answered 412 when the blob is newer"),
            ],
            also: &[
                (206, "Partial content: the bytes of the `Range` asked for"),
                (304, "Not modified: the blob is the one the condition names"),
            ],
            head: true,
            response: Body::Bytes("application/octet-stream"),
            errors: &[
                BAD_PATH,
                (404, "blob_not_found"),
                (412, "precondition_failed"),
                (416, "range_not_satisfiable"),
                STORAGE,
            ],
            ..route(
                HttpMethod::Get,
                "/v1/blobs/{hash}",
                "A blob's bytes, named by their blake3 hash",
                get(get_blob),
            )
        },
        Route {
            timed: false,
            request: Body::Bytes("application/octet-stream"),
            response: Body::Json(json::<views::StoredBlob>),
            errors: &[
                (
                    400,
                    "malformed_request (a bad hash, or an upload cut short or idle)",
                ),
                (413, "blob_too_large"),
                (422, "blob_hash_mismatch"),
                STORAGE,
            ],
            ..route(
                HttpMethod::Put,
                "/v1/blobs/{hash}",
                "Store a blob under its blake3 hash; answered once synced",
                put(put_blob),
            )
        },
    ]
}

pub fn app(
    engine: Engine,
    config: ApiConfig,
    conformer: Arc<Conformer>,
    blobs: Arc<BlobStore>,
) -> Router {
    let routes = routes();
    let openapi = Arc::new(
        openapi::document(&routes)
            .to_json()
            .expect("the OpenAPI document serialises"),
    );
    let (mut timed, mut untimed) = (Router::new(), Router::new());
    for route in routes {
        if route.timed {
            timed = timed.route(route.path, route.handler);
        } else {
            untimed = untimed.route(route.path, route.handler);
        }
    }
    let timed = timed
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(config.request_timeout_ms),
        ))
        .layer(middleware::from_fn_with_state(
            config.body_bytes_max as u64,
            refuse_declared_oversize,
        ));
    // Blobs are large: an upload or a download takes as long as its bytes need, not
    // the request timeout. `put_blob` refuses a declared oversize itself, as
    // `blob_too_large`.
    untimed
        .merge(timed)
        .fallback(unknown_path)
        .layer(DefaultBodyLimit::max(config.body_bytes_max))
        .layer(middleware::from_fn(json_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(AppState {
            engine,
            subscribers: Arc::new(tokio::sync::Semaphore::new(config.subscribers_max)),
            registrations: Arc::new(RegistrationRate::new(
                config.registrations_per_source_per_hour,
            )),
            config,
            conformer,
            blobs,
            trees: Arc::default(),
            openapi,
        })
}

/// The explorer page: one file, its script and style inline, embedded in the binary.
const EXPLORER: &str = include_str!("explorer/index.html");

async fn explorer() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        EXPLORER,
    )
        .into_response()
}

/// The sdk's audit replay for the explorer page, built for wasm32 by `build.rs`.
const EXPLORER_AUDIT: &[u8] = include_bytes!(env!("BLYAN_AUDIT_WASM"));

/// The module's ETag: its blake3 hash, so a browser revalidates it for nothing.
static EXPLORER_AUDIT_ETAG: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("\"{}\"", blake3::hash(EXPLORER_AUDIT).to_hex()));

async fn explorer_audit(headers: HeaderMap) -> Response {
    let etag = EXPLORER_AUDIT_ETAG.as_str();
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tags| tags.as_bytes() == etag.as_bytes());
    let headers = [
        (header::CONTENT_TYPE, "application/wasm"),
        (header::CACHE_CONTROL, "no-cache"),
        (header::ETAG, etag),
    ];
    if cached {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (headers, EXPLORER_AUDIT).into_response()
    }
}

async fn openapi_json(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        app.openapi.as_str().to_owned(),
    )
        .into_response()
}

/// How far past the body limit a declared `Content-Length` may go and still be read up
/// to the limit before the 413: a client that sends a body slightly too large then
/// reads its answer instead of a reset in the middle of its write.
const DECLARED_OVERSIZE_READ_BYTES: u64 = 8 << 20;

/// A body whose `Content-Length` says it is far too large is refused at once with 413,
/// before any of it is read, instead of after a wait for bytes that may never come.
async fn refuse_declared_oversize(
    State(bytes_max): State<u64>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match declared {
        Some(bytes) if bytes > bytes_max.saturating_add(DECLARED_OVERSIZE_READ_BYTES) => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body's Content-Length, {bytes}, exceeds {bytes_max} bytes"),
            )
            .into_response()
        }
        _ => next.run(request).await,
    }
}

async fn unknown_path(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {}", uri.path()),
    )
}

/// Most bytes of a non-JSON error body kept as the message.
const ERROR_TEXT_BYTES_MAX: usize = 4 * 1024;

/// The one error contract: every response that is not a success has the JSON body
/// `{code, message}`. Handlers answer with [`ApiError`]; a response that axum, an
/// extractor's rejection or a tower layer wrote (a wrong method, a bad query, a
/// missing upgrade, a timeout) is rewritten here with its status and headers, and its
/// text as the message.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, ERROR_TEXT_BYTES_MAX).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_string()
    } else {
        text
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "malformed_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UPGRADE_REQUIRED => "upgrade_required",
        status if status.is_server_error() => "internal_error",
        _ => "refused",
    };
    let mut rewritten = ApiError::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().append(name.clone(), value.clone());
        }
    }
    rewritten
}

/// A refusal as the client sees it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    /// Static but for the codes a child process reports (the conformance check's).
    code: Cow<'static, str>,
    message: String,
}

impl ApiError {
    fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ApiErrorBody {
                code: self.code.into_owned(),
                message: self.message,
            }),
        )
            .into_response()
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
                RejectionClass::TooSoon => StatusCode::TOO_MANY_REQUESTS,
            },
            SubmitError::IdempotencyKeyReused { .. } | SubmitError::WindowClosing { .. } => {
                StatusCode::CONFLICT
            }
            SubmitError::HeartbeatTooSoon { .. } => StatusCode::TOO_MANY_REQUESTS,
            SubmitError::WriterStopped => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, error.code(), error.to_string())
    }
}

async fn submit_command(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let metrics = app.engine.metrics();
    let refuse = |error: ApiError| {
        metrics.record_rejection(error.code.clone());
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
        app.engine.network_id(),
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
    if let Action::ApproveProposal {
        proposal_hash: None,
        ..
    } = &command.action
    {
        return Err(refuse(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "proposal_hash: an approval must name the content hash of the proposal it approves",
        )));
    }
    // A replayed proposal skips the check: the writer answers it from the idempotency
    // index (with the original receipt, or as a reused key), whatever the limits are
    // now. An index that can't be read counts as unseen; the writer then fails on it.
    let seen = || matches!(app.engine.indexed_answer(&signed, &command), Ok(Some(_)));
    if let Action::ProposePlugin(proposal) = &command.action
        && !seen()
    {
        conformance(&app, &signed.signer, proposal)
            .await
            .map_err(refuse)?;
    }
    if !seen() {
        blobs_present(&app, &command.action).map_err(refuse)?;
    }
    let charged = matches!(command.action, Action::RegisterNode(_)) && !seen();
    if charged && let Err(wait) = app.registrations.take(peer.ip(), Instant::now()) {
        let error = refuse(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "registration_rate_limited",
            format!(
                "this source may register {} nodes an hour; the next in {} s",
                app.config.registrations_per_source_per_hour,
                wait.as_secs() + 1
            ),
        ));
        return Ok((
            [(header::RETRY_AFTER, (wait.as_secs() + 1).to_string())],
            error,
        )
            .into_response());
    }
    if let Action::Heartbeat { window } = command.action {
        app.engine
            .heartbeat(Submission { signed, command })
            .await
            .map_err(|error| refuse(error.into()))?;
        return Ok((StatusCode::ACCEPTED, Json(HeartbeatHeld { window })).into_response());
    }
    let receipt = app.engine.submit(Submission { signed, command }).await;
    if charged && receipt.is_err() {
        app.registrations.refund(peer.ip(), Instant::now());
    }
    let receipt = receipt?;
    Ok(Json(Receipt {
        seq: receipt.seq,
        event_hash: hex::encode(receipt.event_hash),
    })
    .into_response())
}

/// A command that names blobs is accepted only once they are stored, at the size it
/// says: a reveal's delta, and every item of a pool.
fn blobs_present(app: &AppState, action: &Action) -> Result<(), ApiError> {
    let named: Vec<(blyan_sdk::model::Hash, u64)> = match action {
        Action::RevealDelta(reveal) => vec![(reveal.delta_hash, reveal.delta_bytes)],
        Action::RegisterPool(pool) => pool
            .items
            .iter()
            .map(|item| (item.checksum, item.bytes))
            .collect(),
        Action::RegisterNode(_)
        | Action::Heartbeat { .. }
        | Action::RecordBurn(_)
        | Action::ProposePlugin(_)
        | Action::ProposeParameters { .. }
        | Action::ApproveProposal { .. }
        | Action::CommitDelta { .. }
        | Action::SubmitMeasurements { .. }
        | Action::ProposeValidator { .. } => Vec::new(),
    };
    for (hash, bytes) in named {
        match app.blobs.stat(&hash).map_err(storage_error)? {
            None => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "blob_missing",
                    format!("blob {} is not stored; upload it first", hex::encode(hash)),
                ));
            }
            Some(stored) if stored.bytes != bytes => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "blob_size_mismatch",
                    format!(
                        "blob {} holds {} bytes, the command says {bytes}",
                        hex::encode(hash),
                        stored.bytes
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The dry run a plugin proposal must pass before it reaches the writer. Only a
/// governance key's proposal of an acceptable size, from a key with room for another
/// pending proposal, is worth compiling; any other is refused by `decide` with its own
/// code.
async fn conformance(
    app: &AppState,
    signer: &PublicKey,
    proposal: &PluginProposal,
) -> Result<(), ApiError> {
    let worth_compiling = {
        let published = app.engine.published();
        let state = &published.state;
        state
            .genesis()
            .is_some_and(|genesis| genesis.governance_keys.contains(signer))
            && state.governance().pending_proposals(signer) < limits::PENDING_PROPOSALS_PER_KEY_MAX
    };
    if !worth_compiling || proposal.wasm.len() > limits::PLUGIN_BYTES_MAX {
        return Ok(());
    }
    app.conformer
        .check(proposal.kind, &proposal.wasm)
        .await
        .map_err(|error| {
            let status = match error {
                ConformanceError::Child(_) => StatusCode::INTERNAL_SERVER_ERROR,
                ConformanceError::Refused { .. }
                | ConformanceError::Timeout(_)
                | ConformanceError::Limit { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            };
            ApiError::new(
                status,
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

pub(super) fn storage_error(error: impl std::fmt::Display) -> ApiError {
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
    let encoded = app
        .engine
        .records(query.from, limit, app.config.events_page_bytes_max)
        .await
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
    // Every record is decoded (and its hash checked) before the answer starts, so a
    // bad one is a 500 in JSON; `{"records":[...]}` is then rendered record by record
    // as the client reads, so a slow reader holds the page and one rendered record.
    let checked: Vec<CheckedRecord> = encoded
        .iter()
        .zip(query.from..)
        .map(|(value, seq)| CheckedRecord::decode(seq, value))
        .collect::<Result<_, _>>()
        .map_err(storage_error)?;
    drop(encoded);
    let count = checked.len();
    let chunks = checked
        .into_iter()
        .enumerate()
        .map(move |(index, checked)| {
            let mut chunk = if index == 0 {
                b"{\"records\":[".to_vec()
            } else {
                b",".to_vec()
            };
            serde_json::to_writer(&mut chunk, &render_record(&checked))
                .map_err(std::io::Error::other)?;
            if index + 1 == count {
                chunk.extend_from_slice(b"]}");
            }
            Ok::<_, std::io::Error>(Bytes::from(chunk))
        });
    let body = if count == 0 {
        axum::body::Body::from(r#"{"records":[]}"#)
    } else {
        axum::body::Body::from_stream(futures_util::stream::iter(chunks))
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn render_record(checked: &CheckedRecord) -> serde_json::Value {
    let CheckedRecord { record, logged } = checked;
    let (cause, server_input) = match &logged.cause {
        Cause::Command(cause) => (
            Some(json!({
                "signer": cause.signer,
                "signature": hex::encode(cause.signature),
                "body": hex::encode(&cause.body),
            })),
            None,
        ),
        Cause::Server(input) => (None, Some(render_input(input))),
        Cause::FollowUp => (None, None),
    };
    json!({
        "seq": record.seq,
        "prev_hash": hex::encode(record.prev_hash),
        "time_ms": record.time_ms,
        "hash": hex::encode(record.hash),
        "event": logged.event,
        "cause": cause,
        "server_input": server_input,
    })
}

/// A server input as JSON; a genesis, an expert update or a liveness window input is
/// its event, shown once there.
fn render_input(input: &ServerInput) -> serde_json::Value {
    let name = input.name();
    match input {
        ServerInput::Genesis(_)
        | ServerInput::UpdateExpert(_)
        | ServerInput::CloseLivenessWindow(_) => json!({ "type": name }),
        ServerInput::Checkpoint { merkle_root, .. } => {
            json!({ "type": name, "merkle_root": hex::encode(merkle_root) })
        }
        ServerInput::Tick { time_ms } => json!({ "type": name, "time_ms": time_ms }),
        ServerInput::OpenRound { round } => json!({ "type": name, "round": round }),
        ServerInput::PolicyResult(result) => json!({
            "type": name,
            "round": result.round,
            "kind": result.kind,
            "module_hash": hex::encode(result.module_hash),
            "output": hex::encode(&result.output),
            "failures": result.failures.iter().map(|failure| json!({
                "hash": hex::encode(failure.hash),
                "reason_code": failure.reason_code,
                "reason": failure.reason,
            })).collect::<Vec<_>>(),
        }),
    }
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
    let Ok(permit) = app.subscribers.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_subscribers",
            format!(
                "{} WebSocket subscribers are connected, the most this server takes",
                app.config.subscribers_max
            ),
        )
        .into_response();
    };
    // A subscriber only listens: what it may send is small.
    upgrade
        .max_message_size(SUBSCRIBER_MESSAGE_BYTES_MAX)
        .max_frame_size(SUBSCRIBER_MESSAGE_BYTES_MAX)
        .on_upgrade(move |socket| async move {
            stream_events(app, query.from, socket).await;
            drop(permit);
        })
}

/// Largest message or frame a WebSocket subscriber may send.
const SUBSCRIBER_MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// Sends the backlog from `from`, then every record as it is committed, each as one
/// binary message holding the stored `EventRecord`.
async fn stream_events(app: AppState, from: u64, mut socket: WebSocket) {
    let mut committed = app.engine.subscribe();
    let mut seq_next = from;
    loop {
        let end = *committed.borrow_and_update();
        while seq_next < end {
            let limit = app.config.events_page_max as usize;
            let bytes_max = app.config.events_page_bytes_max;
            let page = match app.engine.records(seq_next, limit, bytes_max).await {
                Ok(page) if !page.is_empty() => page,
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

async fn head(State(app): State<AppState>) -> Json<Head> {
    let published = app.engine.published();
    Json(Head {
        network_id: app.engine.network_id().to_string(),
        events: published.events(),
        head_hash: hex::encode(published.head_hash),
        state_root: hex::encode(published.state_root()),
        liveness_window: published.state.registry().liveness().open(),
    })
}

async fn state(State(app): State<AppState>) -> Json<StateSummary> {
    let published = app.engine.published();
    let state = &published.state;
    Json(StateSummary {
        network_id: app.engine.network_id().to_string(),
        events: state.events_applied(),
        genesis: state.genesis().cloned(),
        nodes: state.nodes().len(),
        burns: state.burn_count(),
        burn_total: state.burn_total(),
        checkpoint_last: state.checkpoint_last().cloned(),
    })
}

async fn node(
    State(app): State<AppState>,
    Path(pubkey): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    let key = PublicKey::from_hex(&pubkey).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            "the public key must be 64 hex characters",
        )
    })?;
    let published = app.engine.published();
    let node = published.state.node(&key).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "node_not_found",
            format!("node {key} is not registered"),
        )
    })?;
    Ok(Json(NodeView {
        pubkey: key,
        node: node.clone(),
        last_seen_ms: published.state.registry().last_seen_ms(node),
    }))
}

/// Proposals, activations and the round open now.
async fn governance(State(app): State<AppState>) -> Json<GovernanceView> {
    let published = app.engine.published();
    let governance = published.state.governance();
    let round = governance.round_number();
    let proposals = governance
        .proposals()
        .iter()
        .map(|(id, proposal)| ProposalView {
            id: *id,
            status: match proposal.activated_seq {
                Some(_) => ProposalStatus::Activated,
                None if proposal.activation_round <= round => ProposalStatus::Expired,
                None => ProposalStatus::Pending,
            },
            proposer: proposal.proposer,
            subject: proposal.subject.clone(),
            activation_round: proposal.activation_round,
            approvals: proposal.approvals.clone(),
            proposed_seq: proposal.proposed_seq,
            activated_seq: proposal.activated_seq,
            content_hash: hex::encode(proposal.content_hash()),
        })
        .collect();
    Json(GovernanceView {
        round: governance.round().cloned(),
        parameters: governance.parameters().clone(),
        governance_threshold: published
            .state
            .genesis()
            .map(|genesis| genesis.governance_threshold),
        proposals,
        plugin_activations: governance
            .plugin_activations()
            .iter()
            .map(|(kind, activations)| {
                let activations = activations
                    .iter()
                    .map(|activation| PluginActivationView {
                        activation_round: activation.activation_round,
                        seq: activation.seq,
                        hash: hex::encode(activation.value),
                    })
                    .collect();
                (kind.name().to_string(), activations)
            })
            .collect(),
        parameter_activations: governance
            .parameter_activations()
            .iter()
            .map(|activation| ParametersActivationView {
                activation_round: activation.activation_round,
                seq: activation.seq,
                parameters: activation.value.clone(),
            })
            .collect(),
        fallbacks: governance
            .fallbacks()
            .iter()
            .map(|(seq, fallback)| FallbackView {
                seq: *seq,
                round: fallback.round,
                kind: fallback.kind,
                failed_hash: hex::encode(fallback.failed_hash),
                reason_code: fallback.reason_code.clone(),
                reason: fallback.reason.clone(),
                used_hash: hex::encode(fallback.used_hash),
            })
            .collect(),
    })
}

/// Every plugin module the log holds, and what each round would run.
async fn plugins(State(app): State<AppState>) -> Json<PluginsView> {
    let published = app.engine.published();
    let governance = published.state.governance();
    let plugins = governance
        .plugins()
        .iter()
        .map(|(hash, plugin)| PluginView {
            hash: hex::encode(hash),
            kind: plugin.kind,
            bytes: plugin.bytes,
            stored_seq: plugin.stored_seq,
        })
        .collect();
    let fallback_chains = PluginKind::ALL
        .into_iter()
        .map(|kind| {
            let chain = governance
                .fallback_chain(kind)
                .iter()
                .map(hex::encode)
                .collect();
            (kind.name().to_string(), chain)
        })
        .collect();
    Json(PluginsView {
        plugins,
        fallback_chains,
    })
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
    let wasm = app
        .engine
        .module(&key)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "plugin_not_found",
                format!("no plugin module has hash {hash}"),
            )
        })?;
    Ok((
        [(header::CONTENT_TYPE, "application/wasm")],
        Bytes::from_owner(wasm),
    )
        .into_response())
}

fn blob_hash(hash: &str) -> Result<[u8; 32], ApiError> {
    hex::decode(hash)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                "the hash must be 64 hex characters",
            )
        })
}

/// Streams the body into the blob named by its blake3 hash; answers once it is synced.
/// The blob size limit is its own, apart from the command body limit.
async fn put_blob(
    State(app): State<AppState>,
    Path(hash): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<StoredBlob>, ApiError> {
    let key = blob_hash(&hash)?;
    let max = app.blobs.blob_bytes_max();
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "blob_too_large",
            format!("a blob is at most {max} bytes"),
        )
    };
    // A blob already stored gets the same answer, whatever the limit is now.
    if let Some(stored) = app.blobs.stat(&key).map_err(storage_error)? {
        return Ok(Json(StoredBlob {
            hash: hex::encode(stored.hash),
            bytes: stored.bytes,
        }));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(too_large());
    }
    let stored =
        app.blobs
            .put(&key, body.into_data_stream())
            .await
            .map_err(|error| match error {
                PutError::TooLarge { .. } => too_large(),
                PutError::HashMismatch { .. } => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "blob_hash_mismatch",
                    error.to_string(),
                ),
                PutError::Interrupted(_) => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_request",
                    error.to_string(),
                ),
                PutError::Io(_) => storage_error(error),
            })?;
    Ok(Json(StoredBlob {
        hash: hex::encode(stored.hash),
        bytes: stored.bytes,
    }))
}

/// A blob's bytes, streamed, with `Range` requests honoured.
async fn get_blob(
    State(app): State<AppState>,
    Path(hash): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let key = blob_hash(&hash)?;
    if app.blobs.stat(&key).map_err(storage_error)?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "blob_not_found",
            format!("no blob has hash {hash}"),
        ));
    }
    // A blob file has no extension: it is served as application/octet-stream.
    let response = tower_http::services::ServeFile::new(app.blobs.path(&key))
        .try_call(request)
        .await
        .map_err(storage_error)?;
    let status = response.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(response.map(axum::body::Body::new));
    }
    // Every refusal carries the JSON body: an unsatisfiable range, a failed
    // precondition, a file gone since the check above.
    Err(ApiError::new(
        status,
        match status {
            StatusCode::RANGE_NOT_SATISFIABLE => "range_not_satisfiable",
            StatusCode::PRECONDITION_FAILED => "precondition_failed",
            StatusCode::NOT_FOUND => "blob_not_found",
            _ => "malformed_request",
        },
        format!("the blob can't be served as asked: {status}"),
    ))
}

async fn healthz(State(app): State<AppState>) -> Response {
    if app.engine.writer_stopped() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "writer_stopped",
            "the writer stopped after a storage failure",
        )
        .into_response();
    }
    Json(Health {
        status: "ok".into(),
        events: app.engine.events_committed(),
    })
    .into_response()
}

async fn metrics(State(app): State<AppState>) -> Response {
    let engine = &app.engine;
    let now_ms = engine.now_ms();
    let mut gauges = Gauges {
        events: engine.events_committed(),
        writer_stopped: engine.writer_stopped(),
        subscribers: app.config.subscribers_max - app.subscribers.available_permits(),
        blobs: app.blobs.stored(),
        ..Gauges::default()
    };
    {
        let published = engine.published();
        let rounds = published.state.rounds();
        // Several experts may share a running round.
        let running: std::collections::BTreeSet<u64> = rounds.running().collect();
        for id in running {
            let round = rounds.get(id).expect("a running round is stored");
            *gauges.rounds_running.entry(round.phase).or_default() += 1;
            if round.deadline_ms > 0 && now_ms > round.deadline_ms {
                let overdue = (now_ms - round.deadline_ms) as f64 / 1e3;
                gauges.round_overdue_seconds = gauges.round_overdue_seconds.max(overdue);
            }
        }
        if let Some(model) = published.state.model() {
            let experts = published.state.experts();
            gauges.experts = (0..model.experts)
                .map(|expert| {
                    let version = experts.head(expert);
                    let loss = experts
                        .version(expert, version)
                        .map(|entry| entry.held_out_loss)
                        .filter(|loss| *loss != u64::MAX)
                        .map(|loss| loss as f64 / blyan_sdk::model::LOSS_SCALE);
                    (version, loss)
                })
                .collect();
        }
    }
    let text = engine.metrics().render(&gauges);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
