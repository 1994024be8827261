//! `blyan-ledger project-postgres`: a PostgreSQL read model of the log, for operators
//! who live in SQL.
//!
//! It follows the log over the public event API (pages of `GET /v1/events`, then the
//! WebSocket) and applies every event to the tables of `projector/migrations/`. The
//! log stays the only truth: the projector only reads from the server, and the tables
//! can be dropped and projected again at any time.
//!
//! Exactly once: the events of a batch are applied in one transaction, which also
//! advances `projector_position` (the next seq and the hash of the last event
//! applied). A crash at any moment leaves the tables at a batch boundary, and a
//! restart resumes from the stored position. Every record is checked against the
//! chain (its seq, its `prev_hash` and its own hash) before it is applied, and at
//! start the stored position's hash is compared with the server's event at that seq:
//! a log that disagrees stops the projector with [`ProjectorError::Diverged`].
//!
//! A session-level advisory lock keeps a second projector off the same database.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use blyan_sdk::client::{Client, ClientError, RetryPolicy};
use blyan_sdk::codec::decode_logged_event;
use blyan_sdk::core::registry::is_live;
use blyan_sdk::core::rounds::delta_committee;
use blyan_sdk::crypto::PublicKey;
use blyan_sdk::model::{Event, Genesis, Hash, Parameters, Phase, RoundPins};
use blyan_sdk::record::{GENESIS_PREV_HASH, Record};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Statement, Transaction};

/// The schema's migrations, in order. A migration is applied once, in one transaction
/// with its row in `schema_migrations`; a database newer than the last is refused.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "learning_state",
        include_str!("projector/migrations/0001_learning_state.sql"),
    ),
    (
        2,
        "liveness_windows",
        include_str!("projector/migrations/0002_liveness_windows.sql"),
    ),
];

/// The advisory lock one projector holds on its database ("blyan" in ASCII).
const LOCK_KEY: i64 = 0x0062_6c79_616e;

/// How often the metrics' view of the server's head is refreshed.
const HEAD_POLL: Duration = Duration::from_secs(2);

/// Failed requests in a row before the projector gives up (at up to 5 s each).
const RETRIES_MAX: u32 = 720;

/// How long the live stream may be quiet before the server's head is checked again.
const QUIET_CHECK: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// The ledger server's base URL.
    pub server: String,
    /// A libpq-style connection string or `postgresql://` URL.
    pub database_url: String,
    /// Most events applied in one transaction.
    pub batch_events_max: u32,
    /// Where to serve `GET /metrics` (the projector's lag), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the ledger server: {0}")]
    Server(#[from] ClientError),
    #[error("another projector holds this database (advisory lock {LOCK_KEY})")]
    Locked,
    #[error(
        "the database's schema is at version {found}, newer than this binary's {known}: run a newer projector"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error(
        "the log disagrees with the projection: the database applied event {seq} with hash {stored}, the server's event {seq} has hash {served}; project this log into a new database"
    )]
    Diverged {
        seq: u64,
        stored: String,
        served: String,
    },
    #[error(
        "the server's log is shorter than the projection: the database applied {applied} events, the server has {served}"
    )]
    Truncated { applied: u64, served: u64 },
    #[error("event {seq} does not follow the chain: {reason}")]
    Chain { seq: u64, reason: String },
    #[error("event {seq} does not decode: {reason}")]
    Decode { seq: u64, reason: String },
    #[error("event {seq} does not fit the projection: {reason}")]
    Inconsistent { seq: u64, reason: String },
    #[error("the metrics listener: {0}")]
    Listen(std::io::Error),
}

/// How far the projection has come: `seq_next` events applied, the last of them with
/// hash `head_hash` (the genesis's `prev_hash` before any).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    seq_next: u64,
    head_hash: Hash,
    network_id: String,
}

/// What `GET /metrics` reports.
#[derive(Debug, Default)]
struct Progress {
    applied: AtomicU64,
    head: AtomicU64,
    applied_total: AtomicU64,
    batches_total: AtomicU64,
    applied_at_ms: AtomicU64,
}

impl Progress {
    fn render(&self) -> String {
        let applied = self.applied.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Relaxed);
        let applied_at = self.applied_at_ms.load(Ordering::Relaxed) as f64 / 1e3;
        format!(
            "# HELP blyan_projector_applied_events Events of the log applied to the database.\n\
             # TYPE blyan_projector_applied_events gauge\n\
             blyan_projector_applied_events {applied}\n\
             # HELP blyan_projector_head_events Events in the server's log, as last polled.\n\
             # TYPE blyan_projector_head_events gauge\n\
             blyan_projector_head_events {head}\n\
             # HELP blyan_projector_lag_events Events in the server's log not yet applied.\n\
             # TYPE blyan_projector_lag_events gauge\n\
             blyan_projector_lag_events {}\n\
             # HELP blyan_projector_events_applied_total Events this process applied.\n\
             # TYPE blyan_projector_events_applied_total counter\n\
             blyan_projector_events_applied_total {}\n\
             # HELP blyan_projector_batches_total Transactions this process committed.\n\
             # TYPE blyan_projector_batches_total counter\n\
             blyan_projector_batches_total {}\n\
             # HELP blyan_projector_last_applied_timestamp_seconds When this process last committed events (0 before).\n\
             # TYPE blyan_projector_last_applied_timestamp_seconds gauge\n\
             blyan_projector_last_applied_timestamp_seconds {applied_at}\n",
            head.saturating_sub(applied),
            self.applied_total.load(Ordering::Relaxed),
            self.batches_total.load(Ordering::Relaxed),
        )
    }
}

/// Follows the log into the database until the server or the database fails, or the
/// log disagrees with what the database holds.
pub async fn run(config: ProjectorConfig) -> Result<(), ProjectorError> {
    let (mut db, connection) = tokio_postgres::connect(&config.database_url, NoTls).await?;
    let connection = tokio::spawn(connection);
    let outcome = project(&config, &mut db).await;
    drop(db);
    // The connection task ends with the client; its own error, if any, is the same
    // one the client's calls returned.
    let _ = connection.await;
    outcome
}

async fn project(
    config: &ProjectorConfig,
    db: &mut tokio_postgres::Client,
) -> Result<(), ProjectorError> {
    let locked: bool = db
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
        .await?
        .get(0);
    if !locked {
        return Err(ProjectorError::Locked);
    }
    migrate(db).await?;
    let mut position = stored_position(db).await?;
    // A daemon: the server may restart under it, so it waits for it (about half an
    // hour of failures in a row) rather than fail at once.
    let server = Client::with_retry(
        &config.server,
        RetryPolicy {
            attempts_max: RETRIES_MAX,
            ..RetryPolicy::default()
        },
    );
    check_position(&server, &position).await?;
    tracing::info!(
        seq_next = position.seq_next,
        "projecting the log into PostgreSQL"
    );

    let progress = Arc::new(Progress::default());
    progress.applied.store(position.seq_next, Ordering::Relaxed);
    let _metrics = match config.metrics_listen {
        Some(address) => Some(serve_metrics(address, progress.clone(), server.clone()).await?),
        None => None,
    };

    let mut projection = Projection::default();
    let batch = config.batch_events_max.max(1);
    // The backlog, page by page; then the live stream.
    loop {
        let records = server.events(position.seq_next, batch).await?;
        if records.is_empty() {
            break;
        }
        projection
            .apply_batch(db, &mut position, &records, &progress)
            .await?;
    }
    let mut subscription = server.subscribe(position.seq_next);
    loop {
        // A quiet stream may be a server that came back with a shorter log (restored
        // from an older backup), which would never send the next seq.
        let first = match tokio::time::timeout(QUIET_CHECK, subscription.next()).await {
            Ok(record) => record?,
            Err(_) => {
                let served = server.head().await?.events;
                if served < position.seq_next {
                    return Err(ProjectorError::Truncated {
                        applied: position.seq_next,
                        served,
                    });
                }
                continue;
            }
        };
        let mut records = vec![first];
        // Whatever else has already arrived joins the same transaction.
        while records.len() < batch as usize {
            match tokio::time::timeout(Duration::ZERO, subscription.next()).await {
                Ok(record) => records.push(record?),
                Err(_) => break,
            }
        }
        projection
            .apply_batch(db, &mut position, &records, &progress)
            .await?;
    }
}

/// Serves `GET /metrics` until dropped, and polls the server's head for the lag.
async fn serve_metrics(
    address: SocketAddr,
    progress: Arc<Progress>,
    server: Client,
) -> Result<Tasks, ProjectorError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(ProjectorError::Listen)?;
    let rendered = progress.clone();
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let progress = rendered.clone();
            async move { progress.render() }
        }),
    );
    let serving = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the metrics listener stopped");
        }
    });
    let polling = tokio::spawn(async move {
        loop {
            match server.head().await {
                Ok(head) => progress.head.store(head.events, Ordering::Relaxed),
                Err(error) => tracing::warn!(%error, "polling the server's head"),
            }
            tokio::time::sleep(HEAD_POLL).await;
        }
    });
    Ok(Tasks(vec![serving, polling]))
}

/// Tasks aborted when dropped.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

async fn migrate(db: &mut tokio_postgres::Client) -> Result<(), ProjectorError> {
    db.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let found: i32 = db
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |(version, ..)| *version);
    if found > known {
        return Err(ProjectorError::SchemaTooNew { found, known });
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|(version, ..)| *version > found) {
        let transaction = db.transaction().await?;
        transaction.batch_execute(sql).await?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
        transaction.commit().await?;
        tracing::info!(version, name, "applied a schema migration");
    }
    Ok(())
}

async fn stored_position(db: &tokio_postgres::Client) -> Result<Position, ProjectorError> {
    let row = db
        .query_opt(
            "SELECT seq_next, head_hash, network_id FROM projector_position",
            &[],
        )
        .await?;
    Ok(match row {
        None => Position {
            seq_next: 0,
            head_hash: GENESIS_PREV_HASH,
            network_id: String::new(),
        },
        Some(row) => Position {
            seq_next: row.get::<_, i64>(0) as u64,
            head_hash: hash_of(row.get(1)),
            network_id: row.get(2),
        },
    })
}

/// The server's event at the stored position's last seq must carry its hash.
async fn check_position(server: &Client, position: &Position) -> Result<(), ProjectorError> {
    let Some(last) = position.seq_next.checked_sub(1) else {
        return Ok(());
    };
    let served = server.events(last, 1).await?;
    let Some(record) = served.first().filter(|record| record.seq == last) else {
        return Err(ProjectorError::Truncated {
            applied: position.seq_next,
            served: server.head().await?.events,
        });
    };
    if record.hash != position.head_hash {
        return Err(ProjectorError::Diverged {
            seq: last,
            stored: hex::encode(position.head_hash),
            served: hex::encode(record.hash),
        });
    }
    Ok(())
}

fn hash_of(bytes: &[u8]) -> Hash {
    bytes.try_into().unwrap_or([0; 32])
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// The connection's prepared statements, by SQL text.
#[derive(Default)]
struct Projection {
    statements: HashMap<&'static str, Statement>,
}

/// One event's parameters, borrowed for one statement.
type Params<'a> = [&'a (dyn ToSql + Sync)];

impl Projection {
    async fn apply_batch(
        &mut self,
        db: &mut tokio_postgres::Client,
        position: &mut Position,
        records: &[Record],
        progress: &Progress,
    ) -> Result<(), ProjectorError> {
        let transaction = db.transaction().await?;
        let mut next = position.clone();
        for record in records {
            check_chain(&next, record)?;
            let logged =
                decode_logged_event(&record.body).map_err(|error| ProjectorError::Decode {
                    seq: record.seq,
                    reason: error.to_string(),
                })?;
            let mut event = EventTx {
                projection: self,
                transaction: &transaction,
                record,
            };
            event.apply(&logged.event).await?;
            if let Event::GenesisCreated(genesis) = &logged.event {
                next.network_id = genesis.network_id.clone();
            }
            next.seq_next = record.seq + 1;
            next.head_hash = record.hash;
        }
        let seq_next = sql_int(next.seq_next, next.seq_next)?;
        let statement = self
            .statement(
                &transaction,
                "INSERT INTO projector_position (network_id, seq_next, head_hash)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (singleton) DO UPDATE
                 SET seq_next = $2, head_hash = $3, updated_at = now()",
            )
            .await?;
        transaction
            .execute(
                &statement,
                &[&next.network_id, &seq_next, &&next.head_hash[..]],
            )
            .await?;
        transaction.commit().await?;
        progress
            .applied_total
            .fetch_add(next.seq_next - position.seq_next, Ordering::Relaxed);
        progress.batches_total.fetch_add(1, Ordering::Relaxed);
        progress.applied.store(next.seq_next, Ordering::Relaxed);
        progress.applied_at_ms.store(now_ms(), Ordering::Relaxed);
        *position = next;
        Ok(())
    }

    async fn statement(
        &mut self,
        transaction: &Transaction<'_>,
        sql: &'static str,
    ) -> Result<Statement, ProjectorError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = transaction.prepare(sql).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

fn check_chain(position: &Position, record: &Record) -> Result<(), ProjectorError> {
    let broken = |reason: String| ProjectorError::Chain {
        seq: record.seq,
        reason,
    };
    if record.seq != position.seq_next {
        return Err(broken(format!("expected seq {}", position.seq_next)));
    }
    if record.prev_hash != position.head_hash {
        return Err(broken(format!(
            "its prev_hash {} is not the hash {} of the event before",
            hex::encode(record.prev_hash),
            hex::encode(position.head_hash)
        )));
    }
    record
        .check_hash()
        .map_err(|error| broken(error.to_string()))
}

/// A u64 of the log as PostgreSQL's bigint.
fn sql_int(value: u64, seq: u64) -> Result<i64, ProjectorError> {
    i64::try_from(value).map_err(|_| ProjectorError::Inconsistent {
        seq,
        reason: format!("{value} does not fit a bigint"),
    })
}

fn json(parameters: &Parameters) -> String {
    serde_json::to_string(parameters).expect("parameters serialize")
}

/// One event being applied inside its batch's transaction.
struct EventTx<'a, 't> {
    projection: &'a mut Projection,
    transaction: &'a Transaction<'t>,
    record: &'a Record,
}

impl EventTx<'_, '_> {
    async fn execute(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<u64, ProjectorError> {
        let statement = self.projection.statement(self.transaction, sql).await?;
        Ok(self.transaction.execute(&statement, params).await?)
    }

    /// An update that must change exactly one row.
    async fn update_one(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<(), ProjectorError> {
        match self.execute(sql, params).await? {
            1 => Ok(()),
            rows => Err(self.inconsistent(format!("{rows} rows matched `{sql}`"))),
        }
    }

    fn inconsistent(&self, reason: String) -> ProjectorError {
        ProjectorError::Inconsistent {
            seq: self.record.seq,
            reason,
        }
    }

    fn int(&self, value: u64) -> Result<i64, ProjectorError> {
        sql_int(value, self.record.seq)
    }

    async fn apply(&mut self, event: &Event) -> Result<(), ProjectorError> {
        let seq = self.int(self.record.seq)?;
        let time_ms = self.int(self.record.time_ms)?;
        self.execute(
            "INSERT INTO events (seq, hash, prev_hash, time_ms, kind) VALUES ($1, $2, $3, $4, $5)",
            &[
                &seq,
                &&self.record.hash[..],
                &&self.record.prev_hash[..],
                &time_ms,
                &event.name(),
            ],
        )
        .await?;
        match event {
            Event::GenesisCreated(genesis) => self.genesis(genesis, seq).await,
            Event::NodeRegistered {
                node,
                capabilities,
                time_ms,
            } => {
                let time_ms = self.int(*time_ms)?;
                let vram = i64::from(capabilities.vram_mib);
                self.execute(
                    "INSERT INTO nodes (pubkey, gpu_model, vram_mib, endpoint, registered_seq,
                         registered_ms, last_heartbeat_ms, registry_index)
                     VALUES ($1, $2, $3, $4, $5, $6, $6, (SELECT count(*) FROM nodes))",
                    &[
                        &&node.0[..],
                        &capabilities.gpu_model,
                        &vram,
                        &capabilities.endpoint,
                        &seq,
                        &time_ms,
                    ],
                )
                .await?;
                for expert in &capabilities.experts {
                    self.execute(
                        "INSERT INTO node_experts (node, expert) VALUES ($1, $2)",
                        &[&&node.0[..], &(*expert as i32)],
                    )
                    .await?;
                }
                Ok(())
            }
            Event::HeartbeatRecorded { node, time_ms } => {
                let time_ms = self.int(*time_ms)?;
                self.update_one(
                    "UPDATE nodes SET last_heartbeat_ms = $2, heartbeats = heartbeats + 1
                     WHERE pubkey = $1",
                    &[&&node.0[..], &time_ms],
                )
                .await
            }
            Event::LivenessWindowClosed(window) => {
                let indexes: Vec<i64> = (0..window.live.len() as u64 * 8)
                    .filter(|index| is_live(&window.live, *index))
                    .map(|index| self.int(index))
                    .collect::<Result<_, _>>()?;
                let closed_ms = self.int(window.closed_ms)?;
                let number = self.int(window.window)?;
                let nodes = indexes.len() as i64;
                let updated = self
                    .execute(
                        "UPDATE nodes SET last_heartbeat_ms = $2, heartbeats = heartbeats + 1
                         WHERE registry_index = ANY($1)",
                        &[&indexes, &closed_ms],
                    )
                    .await?;
                if updated != indexes.len() as u64 {
                    return Err(self.inconsistent(format!(
                        "liveness window {} names {} nodes, {updated} are registered",
                        window.window,
                        indexes.len()
                    )));
                }
                self.execute(
                    "INSERT INTO liveness_windows (seq, number, closed_ms, nodes, heartbeats_root, blob)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &seq,
                        &number,
                        &closed_ms,
                        &nodes,
                        &&window.heartbeats_root[..],
                        &&window.blob[..],
                    ],
                )
                .await
                .map(drop)
            }
            Event::BurnRecorded { burn, time_ms } => {
                let time_ms = self.int(*time_ms)?;
                self.execute(
                    "INSERT INTO burns (seq, chain_tx_id, burner, amount, time_ms)
                     VALUES ($1, $2, $3, $4::text::numeric, $5)",
                    &[
                        &seq,
                        &burn.chain_tx_id,
                        &burn.burner,
                        &burn.amount.to_string(),
                        &time_ms,
                    ],
                )
                .await
                .map(drop)
            }
            Event::CheckpointCreated(checkpoint) => {
                let tree_size = self.int(checkpoint.tree_size)?;
                self.execute(
                    "INSERT INTO checkpoints (seq, tree_size, merkle_root, signature)
                     VALUES ($1, $2, $3, $4)",
                    &[
                        &seq,
                        &tree_size,
                        &&checkpoint.merkle_root[..],
                        &&checkpoint.signature[..],
                    ],
                )
                .await
                .map(drop)
            }
            Event::PluginProposed {
                proposal_id,
                proposer,
                module,
                activation_round,
            } => {
                let (id, round) = (self.int(*proposal_id)?, activation_round.to_string());
                self.execute(
                    "INSERT INTO proposals (id, kind, proposer, proposed_seq, activation_round,
                         plugin_kind, plugin_hash)
                     VALUES ($1, 'plugin', $2, $3, $4::text::numeric, $5, $6)",
                    &[
                        &id,
                        &&proposer.0[..],
                        &seq,
                        &round,
                        &module.kind.name(),
                        &&module.hash[..],
                    ],
                )
                .await
                .map(drop)
            }
            Event::ParametersProposed {
                proposal_id,
                proposer,
                parameters,
                activation_round,
            } => {
                let (id, round) = (self.int(*proposal_id)?, activation_round.to_string());
                self.execute(
                    "INSERT INTO proposals (id, kind, proposer, proposed_seq, activation_round,
                         parameters)
                     VALUES ($1, 'parameters', $2, $3, $4::text::numeric, $5::text::jsonb)",
                    &[&id, &&proposer.0[..], &seq, &round, &json(parameters)],
                )
                .await
                .map(drop)
            }
            Event::ValidatorProposed {
                proposal_id,
                proposer,
                validator,
                admit,
                activation_round,
            } => {
                let (id, round) = (self.int(*proposal_id)?, activation_round.to_string());
                self.execute(
                    "INSERT INTO proposals (id, kind, proposer, proposed_seq, activation_round,
                         validator, admit)
                     VALUES ($1, 'validator', $2, $3, $4::text::numeric, $5, $6)",
                    &[
                        &id,
                        &&proposer.0[..],
                        &seq,
                        &round,
                        &&validator.0[..],
                        admit,
                    ],
                )
                .await
                .map(drop)
            }
            Event::ProposalApproved {
                proposal_id,
                approver,
                approvals,
            } => {
                let id = self.int(*proposal_id)?;
                self.execute(
                    "INSERT INTO approvals (proposal_id, approver, seq) VALUES ($1, $2, $3)",
                    &[&id, &&approver.0[..], &seq],
                )
                .await?;
                self.update_one(
                    "UPDATE proposals SET approvals = $2 WHERE id = $1",
                    &[&id, &(*approvals as i32)],
                )
                .await
            }
            Event::PluginActivated {
                proposal_id,
                kind,
                hash,
                activation_round,
            } => {
                let (id, round) = (self.int(*proposal_id)?, activation_round.to_string());
                self.execute(
                    "INSERT INTO plugin_activations (seq, kind, hash, activation_round, proposal_id)
                     VALUES ($1, $2, $3, $4::text::numeric, $5)",
                    &[&seq, &kind.name(), &&hash[..], &round, &id],
                )
                .await?;
                self.activated(id, seq).await
            }
            Event::ParametersActivated {
                proposal_id,
                parameters,
                activation_round,
            } => {
                let (id, round) = (self.int(*proposal_id)?, activation_round.to_string());
                self.execute(
                    "INSERT INTO parameter_activations (seq, activation_round, proposal_id,
                         parameters)
                     VALUES ($1, $2::text::numeric, $3, $4::text::jsonb)",
                    &[&seq, &round, &id, &json(parameters)],
                )
                .await?;
                self.activated(id, seq).await
            }
            Event::ValidatorChanged {
                proposal_id,
                validator,
                admit,
            } => {
                let id = self.int(*proposal_id)?;
                let key = &validator.0[..];
                if *admit {
                    // A key admitted again starts over, as the core's does.
                    self.execute(
                        "INSERT INTO validators (pubkey, admitted, changed_seq, admitted_seq,
                             reputation)
                         VALUES ($1, true, $2, $2, $3)
                         ON CONFLICT (pubkey) DO UPDATE
                         SET admitted = true, changed_seq = $2,
                             admitted_seq = CASE WHEN validators.admitted
                                 THEN validators.admitted_seq ELSE $2 END,
                             reputation = CASE WHEN validators.admitted
                                 THEN validators.reputation ELSE $3 END",
                        &[
                            &key,
                            &seq,
                            &(blyan_sdk::core::validators::REPUTATION_INITIAL as i64),
                        ],
                    )
                    .await?;
                } else {
                    // A removed key keeps no reputation, as in the core. Removing a key
                    // that was never admitted changes nothing there; here it leaves a
                    // row that says so.
                    self.execute(
                        "INSERT INTO validators (pubkey, admitted, changed_seq)
                         VALUES ($1, false, $2)
                         ON CONFLICT (pubkey) DO UPDATE
                         SET admitted = false, changed_seq = $2, reputation = NULL",
                        &[&key, &seq],
                    )
                    .await?;
                }
                self.execute(
                    "INSERT INTO validator_changes (seq, proposal_id, validator, admit)
                     VALUES ($1, $2, $3, $4)",
                    &[&seq, &id, &key, admit],
                )
                .await?;
                self.activated(id, seq).await
            }
            Event::RoundOpened(pins) => self.round_opened(pins, seq, time_ms).await,
            Event::PluginFallback(fallback) => {
                let round = self.int(fallback.round)?;
                self.execute(
                    "INSERT INTO plugin_fallbacks (seq, round, kind, failed_hash, reason_code,
                         reason, used_hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &seq,
                        &round,
                        &fallback.kind.name(),
                        &&fallback.failed_hash[..],
                        &fallback.reason_code,
                        // PostgreSQL's text holds no NUL, and a plugin's own names may
                        // appear in the reason.
                        &fallback.reason.replace('\0', "\u{fffd}"),
                        &&fallback.used_hash[..],
                    ],
                )
                .await
                .map(drop)
            }
            Event::PoolRegistered {
                pool_id,
                curator,
                pool,
                merkle_root,
            } => {
                let id = self.int(*pool_id)?;
                self.execute(
                    "INSERT INTO pools (id, curator, name, merkle_root, registered_seq)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&id, &&curator.0[..], &pool.name, &&merkle_root[..], &seq],
                )
                .await?;
                for (index, item) in pool.items.iter().enumerate() {
                    self.execute(
                        "INSERT INTO pool_items (pool_id, item, bytes, checksum, held_out)
                         VALUES ($1, $2, $3::text::numeric, $4, $5)",
                        &[
                            &id,
                            &(index as i32),
                            &item.bytes.to_string(),
                            &&item.checksum[..],
                            &item.held_out,
                        ],
                    )
                    .await?;
                }
                Ok(())
            }
            Event::AssignmentsMade {
                round,
                shards,
                merkle_root,
                deadline_ms,
            } => {
                let round = self.int(*round)?;
                for shard in shards {
                    let (start, count) = (self.int(shard.start)?, self.int(shard.count)?);
                    self.execute(
                        "INSERT INTO assignments (round, node, start_item, items, seq)
                         VALUES ($1, $2, $3, $4, $5)",
                        &[&round, &&shard.node.0[..], &start, &count, &seq],
                    )
                    .await?;
                }
                self.update_one(
                    "UPDATE rounds SET assignments_root = $2 WHERE id = $1",
                    &[&round, &&merkle_root[..]],
                )
                .await?;
                self.phase(round, Phase::Commit, *deadline_ms, seq, time_ms)
                    .await
            }
            Event::DeltaCommitted {
                round,
                node,
                commitment,
            } => {
                let round = self.int(*round)?;
                self.execute(
                    "INSERT INTO deltas (round, node, commitment, committed_seq)
                     VALUES ($1, $2, $3, $4)",
                    &[&round, &&node.0[..], &&commitment[..], &seq],
                )
                .await
                .map(drop)
            }
            Event::DeltaRevealed { node, reveal } => {
                let (round, bytes) = (self.int(reveal.round)?, self.int(reveal.delta_bytes)?);
                self.update_one(
                    "UPDATE deltas SET delta_hash = $3, salt = $4, delta_bytes = $5,
                         revealed_seq = $6
                     WHERE round = $1 AND node = $2",
                    &[
                        &round,
                        &&node.0[..],
                        &&reveal.delta_hash[..],
                        &&reveal.salt[..],
                        &bytes,
                        &seq,
                    ],
                )
                .await
            }
            Event::PhaseStarted {
                round,
                phase,
                deadline_ms,
            } => {
                let round = self.int(*round)?;
                if *phase == Phase::Validate {
                    // Delta i is the i-th revealed node in key order (bytea order is
                    // byte order, as the core's key order is).
                    self.execute(
                        "UPDATE deltas SET delta_index = ranked.index
                         FROM (SELECT node, (row_number() OVER (ORDER BY node) - 1)::integer
                                   AS index
                               FROM deltas WHERE round = $1 AND delta_hash IS NOT NULL) ranked
                         WHERE deltas.round = $1 AND deltas.node = ranked.node",
                        &[&round],
                    )
                    .await?;
                }
                self.phase(round, *phase, *deadline_ms, seq, time_ms).await
            }
            Event::MeasurementsSubmitted {
                round,
                validator,
                values,
            } => self.measurements(*round, validator, values, seq).await,
            Event::ScoresRecorded {
                round,
                scores,
                merkle_root,
            } => {
                let round = self.int(*round)?;
                for (index, score) in scores.iter().enumerate() {
                    self.update_one(
                        "UPDATE deltas SET score = $3::text::numeric
                         WHERE round = $1 AND delta_index = $2",
                        &[&round, &(index as i32), &score.to_string()],
                    )
                    .await?;
                }
                self.update_one(
                    "UPDATE rounds SET scores_root = $2 WHERE id = $1",
                    &[&round, &&merkle_root[..]],
                )
                .await
            }
            Event::RoundFinalized(outcome) => {
                let round = self.int(outcome.round)?;
                for payout in &outcome.nodes {
                    self.execute(
                        "INSERT INTO rewards (round, recipient, role, amount, seq)
                         VALUES ($1, $2, 'node', $3::text::numeric, $4)",
                        &[&round, &&payout.key.0[..], &payout.amount.to_string(), &seq],
                    )
                    .await?;
                }
                for validator in &outcome.validators {
                    let reputation = self.int(validator.reputation)?;
                    self.execute(
                        "INSERT INTO rewards (round, recipient, role, amount, agreed, disagreed,
                             reputation, seq)
                         VALUES ($1, $2, 'validator', $3::text::numeric, $4, $5, $6, $7)",
                        &[
                            &round,
                            &&validator.validator.0[..],
                            &validator.reward.to_string(),
                            &(validator.agreed as i32),
                            &(validator.disagreed as i32),
                            &reputation,
                            &seq,
                        ],
                    )
                    .await?;
                    // A key removed meanwhile keeps no reputation, as in the core.
                    self.execute(
                        "UPDATE validators SET reputation = $2 WHERE pubkey = $1 AND admitted",
                        &[&&validator.validator.0[..], &reputation],
                    )
                    .await?;
                }
                self.update_one(
                    "UPDATE rounds SET rewards_root = $2, carried = $3::text::numeric,
                         ended_seq = $4, ended_ms = $5
                     WHERE id = $1",
                    &[
                        &round,
                        &&outcome.rewards_root[..],
                        &outcome.carried.to_string(),
                        &seq,
                        &time_ms,
                    ],
                )
                .await?;
                self.phase(round, Phase::Finalized, 0, seq, time_ms).await
            }
            Event::RoundAborted {
                round,
                reason,
                carried,
            } => {
                let round = self.int(*round)?;
                self.update_one(
                    "UPDATE rounds SET abort_reason = $2, carried = $3::text::numeric,
                         ended_seq = $4, ended_ms = $5
                     WHERE id = $1",
                    &[&round, reason, &carried.to_string(), &seq, &time_ms],
                )
                .await?;
                self.phase(round, Phase::Aborted, 0, seq, time_ms).await
            }
            Event::ExpertUpdated(update) => {
                let round = self.int(update.round)?;
                let bytes = self.int(update.weights_bytes)?;
                self.execute(
                    "INSERT INTO expert_versions (expert, version, weights_hash, parent_hash,
                         round, seq, weights_bytes, merged, parent_held_out_loss,
                         held_out_loss)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::numeric,
                         $10::text::numeric)",
                    &[
                        &(update.expert as i32),
                        &(update.version as i32),
                        &&update.weights_hash[..],
                        &&update.parent_hash[..],
                        &round,
                        &seq,
                        &bytes,
                        &(update.merged.len() as i32),
                        &loss(update.parent_held_out_loss),
                        &loss(update.held_out_loss),
                    ],
                )
                .await?;
                self.update_one(
                    "UPDATE experts SET version = $2, weights_hash = $3 WHERE id = $1",
                    &[
                        &(update.expert as i32),
                        &(update.version as i32),
                        &&update.weights_hash[..],
                    ],
                )
                .await
            }
        }
    }

    async fn genesis(&mut self, genesis: &Genesis, seq: i64) -> Result<(), ProjectorError> {
        for module in &genesis.plugins {
            self.execute(
                "INSERT INTO plugin_activations (seq, kind, hash, activation_round)
                 VALUES ($1, $2, $3, 1)",
                &[&seq, &module.kind.name(), &&module.hash[..]],
            )
            .await?;
        }
        self.execute(
            "INSERT INTO parameter_activations (seq, activation_round, parameters)
             VALUES ($1, 1, $2::text::jsonb)",
            &[&seq, &json(&genesis.parameters)],
        )
        .await?;
        let Some(model) = &genesis.model else {
            return Ok(());
        };
        for (expert, hash) in model.expert_hashes.iter().enumerate() {
            let expert = expert as i32;
            self.execute(
                "INSERT INTO experts (id, version, weights_hash) VALUES ($1, 0, $2)",
                &[&expert, &&hash[..]],
            )
            .await?;
            self.execute(
                "INSERT INTO expert_versions (expert, version, weights_hash, seq, merged)
                 VALUES ($1, 0, $2, $3, 0)",
                &[&expert, &&hash[..], &seq],
            )
            .await?;
        }
        Ok(())
    }

    async fn activated(&mut self, proposal: i64, seq: i64) -> Result<(), ProjectorError> {
        self.update_one(
            "UPDATE proposals SET activated_seq = $2 WHERE id = $1",
            &[&proposal, &seq],
        )
        .await
    }

    async fn round_opened(
        &mut self,
        pins: &RoundPins,
        seq: i64,
        time_ms: i64,
    ) -> Result<(), ProjectorError> {
        let Some(plan) = &pins.plan else {
            // A round logged before learning rounds existed pinned and trained
            // nothing: the core keeps no round for it, nor do the tables.
            return Ok(());
        };
        let round = self.int(pins.round)?;
        let pool_id = self.int(plan.pool_id)?;
        let versions: Vec<i32> = plan.model_versions.iter().map(|v| *v as i32).collect();
        self.execute(
            "INSERT INTO rounds (id, expert, pool_id, seed, burns, reward_pool, model_versions,
                 parameters, opened_seq, opened_ms, phase, deadline_ms)
             VALUES ($1, $2, $3, $4, $5::text::numeric, $6::text::numeric, $7,
                 $8::text::jsonb, $9, $10, 'assigning', 0)",
            &[
                &round,
                &(plan.expert as i32),
                &pool_id,
                &&plan.seed[..],
                &plan.burns.to_string(),
                &plan.reward_pool.to_string(),
                &versions,
                &json(&pins.parameters),
                &seq,
                &time_ms,
            ],
        )
        .await?;
        for plugin in &pins.plugins {
            self.execute(
                "INSERT INTO round_plugins (round, kind, hash) VALUES ($1, $2, $3)",
                &[&round, &plugin.kind.name(), &&plugin.hash[..]],
            )
            .await?;
        }
        self.execute(
            "INSERT INTO round_phases (round, phase, seq, started_ms, deadline_ms)
             VALUES ($1, 'assigning', $2, $3, 0)",
            &[&round, &seq, &time_ms],
        )
        .await?;
        for node in &plan.nodes {
            self.execute(
                "INSERT INTO round_nodes (round, node) VALUES ($1, $2)",
                &[&round, &&node.0[..]],
            )
            .await?;
        }
        for (position, validator) in plan.committee.iter().enumerate() {
            self.execute(
                "INSERT INTO round_committee (round, position, validator) VALUES ($1, $2, $3)",
                &[&round, &(position as i32), &&validator.0[..]],
            )
            .await?;
        }
        Ok(())
    }

    /// `phase` began: the round's current phase, and its history.
    async fn phase(
        &mut self,
        round: i64,
        phase: Phase,
        deadline_ms: u64,
        seq: i64,
        time_ms: i64,
    ) -> Result<(), ProjectorError> {
        let deadline = deadline_ms.to_string();
        self.update_one(
            "UPDATE rounds SET phase = $2, deadline_ms = $3::text::numeric WHERE id = $1",
            &[&round, &phase.name(), &deadline],
        )
        .await?;
        self.execute(
            "INSERT INTO round_phases (round, phase, seq, started_ms, deadline_ms)
             VALUES ($1, $2, $3, $4, $5::text::numeric)",
            &[&round, &phase.name(), &seq, &time_ms, &deadline],
        )
        .await
        .map(drop)
    }

    /// A committee member's measurements: one per delta it was given, in the order of
    /// [`delta_committee`], which the core's task lists follow.
    async fn measurements(
        &mut self,
        round: u64,
        validator: &PublicKey,
        values: &[i64],
        seq: i64,
    ) -> Result<(), ProjectorError> {
        let round = self.int(round)?;
        let statement = self
            .projection
            .statement(
                self.transaction,
                "SELECT seed, (parameters ->> 'validators_per_delta')::integer FROM rounds
                 WHERE id = $1",
            )
            .await?;
        let row = self.transaction.query_one(&statement, &[&round]).await?;
        let seed = hash_of(row.get(0));
        let per_delta = row.get::<_, i32>(1) as u32;
        let statement = self
            .projection
            .statement(
                self.transaction,
                "SELECT validator FROM round_committee WHERE round = $1 ORDER BY position",
            )
            .await?;
        let committee = self.keys(&statement, round).await?;
        let statement = self
            .projection
            .statement(
                self.transaction,
                "SELECT node FROM deltas WHERE round = $1 AND delta_index IS NOT NULL
                 ORDER BY delta_index",
            )
            .await?;
        let deltas = self.keys(&statement, round).await?;
        let position = committee
            .iter()
            .position(|key| key == validator)
            .ok_or_else(|| self.inconsistent(format!("{validator} is not on the committee")))?;
        let tasks: Vec<&PublicKey> = deltas
            .iter()
            .enumerate()
            .filter(|(index, node)| {
                delta_committee(&committee, &seed, per_delta, *index, node)
                    .contains(&(position as u32))
            })
            .map(|(_, node)| node)
            .collect();
        if tasks.len() != values.len() {
            return Err(self.inconsistent(format!(
                "{} measurements for {} tasks",
                values.len(),
                tasks.len()
            )));
        }
        self.execute(
            "INSERT INTO measurements (round, validator, seq) VALUES ($1, $2, $3)",
            &[&round, &&validator.0[..], &seq],
        )
        .await?;
        for (node, value) in tasks.into_iter().zip(values) {
            self.execute(
                "INSERT INTO validation_records (round, validator, node, value)
                 VALUES ($1, $2, $3, $4)",
                &[&round, &&validator.0[..], &&node.0[..], value],
            )
            .await?;
        }
        Ok(())
    }

    async fn keys(
        &self,
        statement: &Statement,
        round: i64,
    ) -> Result<Vec<PublicKey>, ProjectorError> {
        let rows = self.transaction.query(statement, &[&round]).await?;
        rows.iter()
            .map(|row| {
                PublicKey::from_slice(row.get(0))
                    .ok_or_else(|| self.inconsistent("a stored key is not 32 bytes".into()))
            })
            .collect()
    }
}

/// A held-out loss in billionths; `u64::MAX` (unmeasurable) is stored as null.
fn loss(value: u64) -> Option<String> {
    (value != u64::MAX).then(|| value.to_string())
}
