//! The async HTTP and WebSocket client of the ledger API.
//!
//! Submissions are retried with exponential backoff and full jitter on transport
//! errors, 5xx and 429. A retry resends the identical signed bytes, so it carries the
//! same idempotency key and the server returns the original answer. A subscription
//! resumes from the last seq it delivered after a disconnect.

use std::time::Duration;

use futures_util::StreamExt;
use prost::Message;
use tokio_tungstenite::tungstenite;

use crate::api::{
    ApiErrorBody, AssignmentView, ExpertVersionView, GovernanceView, Head, HeartbeatHeld,
    ItemProofView, ModelView, NodeView, PluginsView, PoolView, Receipt, RoundSummary, RoundView,
    StateSummary, StoredBlob, TasksView, ValidatorView,
};
use crate::codec;
use crate::crypto::PublicKey;
use crate::model::{Hash, SignedCommand};
use crate::receipt::{EventProof, RoundReceipt};
use crate::record::Record;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("server answered {status}: {} ({})", body.message, body.code)]
    Api { status: u16, body: ApiErrorBody },
    #[error("cannot decode the server's answer: {0}")]
    Decode(String),
    #[error("websocket: {0}")]
    WebSocket(String),
}

impl ClientError {
    fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport(error) => !error.is_decode() && !error.is_builder(),
            // A heartbeat too soon stays too soon for its whole window, and a source
            // out of registrations for minutes (`Retry-After`): the caller decides
            // when to send the next.
            ClientError::Api { status, body } => {
                *status >= 500
                    || (*status == 429
                        && body.code != "heartbeat_too_soon"
                        && body.code != "registration_rate_limited")
            }
            ClientError::Decode(_) => false,
            ClientError::WebSocket(_) => true,
        }
    }

    /// The API error code, if the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => Some(&body.code),
            _ => None,
        }
    }
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts_max: u32,
    pub delay_initial_ms: u64,
    pub delay_max_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts_max: 8,
            delay_initial_ms: 50,
            delay_max_ms: 5_000,
        }
    }
}

impl RetryPolicy {
    /// A random delay in [0, min(max, initial * 2^attempt)].
    fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .delay_initial_ms
            .saturating_mul(1u64 << attempt.min(32))
            .min(self.delay_max_ms);
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("the OS random source failed");
        Duration::from_millis(u64::from_le_bytes(random) % (ceiling + 1))
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    retry: RetryPolicy,
}

impl Client {
    pub fn new(base_url: &str) -> Client {
        Client::with_retry(base_url, RetryPolicy::default())
    }

    pub fn with_retry(base_url: &str, retry: RetryPolicy) -> Client {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a default reqwest client builds");
        Client {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            retry,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn with_retries<T, F, Fut>(&self, mut attempt_once: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut attempt = 0;
        loop {
            match attempt_once().await {
                Err(error) if error.is_retryable() && attempt + 1 < self.retry.attempts_max => {
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(ApiErrorBody {
            code: "unexpected_response".into(),
            message: text,
        });
        Err(ClientError::Api {
            status: status.as_u16(),
            body,
        })
    }

    /// Submits without retrying; one HTTP request.
    pub async fn submit_once(&self, command: &SignedCommand) -> Result<Receipt, ClientError> {
        self.submit_bytes_once(codec::encode_signed_command(command))
            .await
    }

    /// Posts raw bytes as a command, for tools that must send exactly what they hold.
    pub async fn submit_bytes_once(&self, bytes: Vec<u8>) -> Result<Receipt, ClientError> {
        let response = self
            .http
            .post(format!("{}/v1/commands", self.base_url))
            .header("content-type", "application/x-protobuf")
            .body(bytes)
            .send()
            .await?;
        Client::json(response).await
    }

    /// Submits, retrying with backoff; every attempt sends the same signed bytes.
    pub async fn submit(&self, command: &SignedCommand) -> Result<Receipt, ClientError> {
        let bytes = codec::encode_signed_command(command);
        self.with_retries(|| self.submit_bytes_once(bytes.clone()))
            .await
    }

    /// Submits a heartbeat, retrying as [`Client::submit`] does: the server holds it
    /// for its window (202).
    pub async fn heartbeat(&self, command: &SignedCommand) -> Result<HeartbeatHeld, ClientError> {
        let bytes = codec::encode_signed_command(command);
        self.with_retries(|| async {
            let response = self
                .http
                .post(format!("{}/v1/commands", self.base_url))
                .header("content-type", "application/x-protobuf")
                .body(bytes.clone())
                .send()
                .await?;
            Client::json(response).await
        })
        .await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.with_retries(|| async {
            let response = self
                .http
                .get(format!("{}{path}", self.base_url))
                .send()
                .await?;
            Client::json(response).await
        })
        .await
    }

    async fn json<T: serde::de::DeserializeOwned>(
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        Client::check(response)
            .await?
            .json()
            .await
            .map_err(|error| ClientError::Decode(error.to_string()))
    }

    pub async fn head(&self) -> Result<Head, ClientError> {
        self.get_json("/v1/head").await
    }

    pub async fn state(&self) -> Result<StateSummary, ClientError> {
        self.get_json("/v1/state").await
    }

    /// Proposals, activations, the open round's pins and the parameters in force.
    pub async fn governance(&self) -> Result<GovernanceView, ClientError> {
        self.get_json("/v1/governance").await
    }

    /// Every stored plugin module (hash, kind, size) and each kind's fallback chain.
    pub async fn plugins(&self) -> Result<PluginsView, ClientError> {
        self.get_json("/v1/plugins").await
    }

    pub async fn node(&self, key: &PublicKey) -> Result<NodeView, ClientError> {
        self.get_json(&format!("/v1/nodes/{key}")).await
    }

    /// Up to `limit` rounds from round `from` on (the server caps a page at 1,000).
    pub async fn rounds(&self, from: u64, limit: u32) -> Result<Vec<RoundSummary>, ClientError> {
        self.get_json(&format!("/v1/rounds?from={from}&limit={limit}"))
            .await
    }

    pub async fn round(&self, round: u64) -> Result<RoundView, ClientError> {
        self.get_json(&format!("/v1/rounds/{round}")).await
    }

    /// A node's shard of a round, its items and the shard's proof.
    pub async fn assignment(
        &self,
        round: u64,
        node: &PublicKey,
    ) -> Result<AssignmentView, ClientError> {
        self.get_json(&format!("/v1/rounds/{round}/assignments/{node}"))
            .await
    }

    /// The deltas a committee member measures in a round, and the held-out items.
    pub async fn tasks(&self, round: u64, validator: &PublicKey) -> Result<TasksView, ClientError> {
        self.get_json(&format!("/v1/rounds/{round}/tasks/{validator}"))
            .await
    }

    /// A round's receipt for `key`, once the round ended and a checkpoint covers it.
    pub async fn receipt(&self, round: u64, key: &PublicKey) -> Result<RoundReceipt, ClientError> {
        self.get_json(&format!("/v1/rounds/{round}/receipts/{key}"))
            .await
    }

    /// Event `seq`'s inclusion proof against the latest checkpoint.
    pub async fn event_proof(&self, seq: u64) -> Result<EventProof, ClientError> {
        self.get_json(&format!("/v1/proofs/events/{seq}")).await
    }

    pub async fn pool(&self, pool: u64) -> Result<PoolView, ClientError> {
        self.get_json(&format!("/v1/pools/{pool}")).await
    }

    pub async fn item_proof(&self, pool: u64, item: u32) -> Result<ItemProofView, ClientError> {
        self.get_json(&format!("/v1/pools/{pool}/items/{item}/proof"))
            .await
    }

    pub async fn validators(&self) -> Result<Vec<ValidatorView>, ClientError> {
        self.get_json("/v1/validators").await
    }

    /// The model and every expert's newest version.
    pub async fn experts(&self) -> Result<ModelView, ClientError> {
        self.get_json("/v1/experts").await
    }

    /// Up to `limit` versions of `expert` from version `from` on (the server caps a
    /// page at 1,000).
    pub async fn expert_versions(
        &self,
        expert: u32,
        from: u32,
        limit: u32,
    ) -> Result<Vec<ExpertVersionView>, ClientError> {
        self.get_json(&format!(
            "/v1/experts/{expert}/versions?from={from}&limit={limit}"
        ))
        .await
    }

    /// The model a round trains from and measures against.
    pub async fn round_model(&self, round: u64) -> Result<ModelView, ClientError> {
        self.get_json(&format!("/v1/rounds/{round}/model")).await
    }

    /// Stores a blob under its blake3 hash, retrying; the answer names the hash.
    pub async fn put_blob(&self, bytes: &[u8]) -> Result<StoredBlob, ClientError> {
        let hash = hex::encode(blake3::hash(bytes).as_bytes());
        self.with_retries(|| async {
            let response = self
                .http
                .put(format!("{}/v1/blobs/{hash}", self.base_url))
                .body(bytes.to_vec())
                .send()
                .await?;
            Client::json(response).await
        })
        .await
    }

    /// A whole blob, checked against its hash: a server can't hand out other bytes.
    pub async fn blob(&self, hash: &Hash) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/v1/blobs/{}", self.base_url, hex::encode(hash));
        let bytes = self
            .with_retries(|| async {
                Ok(Client::check(self.http.get(&url).send().await?)
                    .await?
                    .bytes()
                    .await?)
            })
            .await?;
        if blake3::hash(&bytes).as_bytes() != hash {
            return Err(ClientError::Decode(format!(
                "blob {} does not hash to its name",
                hex::encode(hash)
            )));
        }
        Ok(bytes.to_vec())
    }

    /// Up to `limit` records from `from`, in protobuf.
    pub async fn events(&self, from: u64, limit: u32) -> Result<Vec<Record>, ClientError> {
        let url = format!(
            "{}/v1/events?from={from}&limit={limit}&format=proto",
            self.base_url
        );
        let bytes = self
            .with_retries(|| async {
                Ok(Client::check(self.http.get(&url).send().await?)
                    .await?
                    .bytes()
                    .await?)
            })
            .await?;
        let page = blyan_schemas::v1::EventRecordPage::decode(bytes)
            .map_err(|error| ClientError::Decode(error.to_string()))?;
        page.records
            .into_iter()
            .map(|record| {
                Record::from_pb(record).map_err(|error| ClientError::Decode(error.to_string()))
            })
            .collect()
    }

    /// A live stream of records from `from` on, over `GET /v1/events/ws`.
    pub fn subscribe(&self, from: u64) -> Subscription {
        let ws_base = self.base_url.replacen("http", "ws", 1);
        Subscription {
            ws_base,
            seq_next: from,
            socket: None,
            retry: self.retry,
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Records in seq order, without gaps or repeats, across reconnects.
pub struct Subscription {
    ws_base: String,
    seq_next: u64,
    socket: Option<Socket>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("ws_base", &self.ws_base)
            .field("seq_next", &self.seq_next)
            .finish()
    }
}

impl Subscription {
    /// The seq of the next record this subscription will deliver.
    pub fn seq_next(&self) -> u64 {
        self.seq_next
    }

    /// The next record. Reconnects from the next expected seq when the connection
    /// drops; fails after the retry policy's attempts are spent in a row.
    pub async fn next(&mut self) -> Result<Record, ClientError> {
        let mut failures = 0;
        loop {
            match self.next_once().await {
                Ok(Some(record)) => return Ok(record),
                Ok(None) => {}
                Err(error) => {
                    self.socket = None;
                    failures += 1;
                    if failures >= self.retry.attempts_max {
                        return Err(error);
                    }
                    tokio::time::sleep(self.retry.delay(failures)).await;
                }
            }
        }
    }

    async fn next_once(&mut self) -> Result<Option<Record>, ClientError> {
        if self.socket.is_none() {
            let url = format!("{}/v1/events/ws?from={}", self.ws_base, self.seq_next);
            let (socket, _) = tokio_tungstenite::connect_async(url)
                .await
                .map_err(|error| ClientError::WebSocket(error.to_string()))?;
            self.socket = Some(socket);
        }
        let socket = self.socket.as_mut().expect("connected above");
        match socket.next().await {
            None => Err(ClientError::WebSocket("connection closed".into())),
            Some(Err(error)) => Err(ClientError::WebSocket(error.to_string())),
            Some(Ok(tungstenite::Message::Binary(bytes))) => {
                let record = Record::decode(&bytes)
                    .map_err(|error| ClientError::Decode(error.to_string()))?;
                if record.seq < self.seq_next {
                    return Ok(None);
                }
                if record.seq > self.seq_next {
                    return Err(ClientError::Decode(format!(
                        "expected seq {}, got {}",
                        self.seq_next, record.seq
                    )));
                }
                self.seq_next += 1;
                Ok(Some(record))
            }
            Some(Ok(tungstenite::Message::Close(_))) => {
                Err(ClientError::WebSocket("closed by the server".into()))
            }
            Some(Ok(_)) => Ok(None),
        }
    }
}
