//! The single-writer engine: one task decides commands and server inputs against the
//! state, seals their events into records and commits each group in one synced write.
//!
//! A command is acknowledged only after the write that holds its events returned.
//! A failed write stops the writer for good (fail-stop): every waiting and later
//! command is refused, and the process exits so that a restart recovers from the log.
//!
//! The API holds an [`Engine`], a narrow handle: submit, read the published view,
//! read records, subscribe. Nothing else of the engine is reachable from outside.
//!
//! A heartbeat is the one command that decides no event: the writer holds it, one per
//! node, for the liveness window it names, and the scheduler closes the window with
//! all of them as one event and one blob ([`Engine::take_heartbeats`]). Held
//! heartbeats are in memory only: a crash loses the open window's, and their nodes
//! send the next one into the same window after the restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use blyan_plugin_host::defaults;
use blyan_sdk::codec;
use blyan_sdk::core::burns::BurnRejection;
use blyan_sdk::core::{Authenticated, Context, Rejection, State, decide, decide_input};
use blyan_sdk::crypto::Keypair;
use blyan_sdk::merkle::{self, Frontier};
use blyan_sdk::model::{
    Action, Cause, Command, Event, Genesis, Hash, LoggedEvent, PluginKind, PluginModule,
    ServerInput, SignedCommand,
};
use blyan_sdk::record::Record;
use blyan_sdk::replay::{CheckedRecord, ReplayChecks, ReplayError, Replayer};
use tokio::sync::{mpsc, oneshot, watch};

use crate::metrics::{Metrics, Observed};
use crate::snapshot;
use crate::store::{
    AppendBatch, IdempotencyEntry, LogStorage, ScanError, StoreError, idempotency_key, read_record,
};

/// Bounds of the engine. Each is a named, documented limit.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Commands and server inputs waiting for the writer; submitters wait when it is
    /// full.
    pub queue_commands_max: usize,
    /// Commands and server inputs decided and committed in one write.
    pub batch_commands_max: usize,
    /// Events between two state snapshots, each taken after a group commit that holds
    /// a checkpoint ([`crate::snapshot`]); 0 takes none.
    pub snapshot_interval_events: u64,
    /// The wall clock, in ms since the Unix epoch. Log time is this clock, but never
    /// earlier than the last record's time, across restarts too.
    pub clock_ms: fn() -> u64,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            queue_commands_max: 8_192,
            batch_commands_max: 1_024,
            snapshot_interval_events: 100_000,
            clock_ms: now_ms,
        }
    }
}

/// The answer to an accepted command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub event_hash: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("idempotency key already used for a different command at seq {seq}")]
    IdempotencyKeyReused { seq: u64 },
    #[error("a heartbeat of this node is already held for liveness window {window}")]
    HeartbeatTooSoon { window: u64 },
    #[error("liveness window {window} is closing; send the heartbeat for the next")]
    WindowClosing { window: u64 },
    #[error("the writer has stopped after a storage failure; restart the server")]
    WriterStopped,
}

impl SubmitError {
    /// The stable code the API and the metrics show.
    pub fn code(&self) -> &'static str {
        match self {
            SubmitError::Rejected(rejection) => rejection.code(),
            SubmitError::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            SubmitError::HeartbeatTooSoon { .. } => "heartbeat_too_soon",
            SubmitError::WindowClosing { .. } => "liveness_window_closing",
            SubmitError::WriterStopped => "writer_stopped",
        }
    }
}

/// A command whose signature the API has checked.
#[derive(Debug)]
pub struct Submission {
    pub signed: SignedCommand,
    pub command: Command,
}

/// What the writer decides: a command, or an input of the server's own.
#[derive(Debug)]
enum Input {
    Command(Submission),
    Server(ServerInput),
}

/// What readers see: only committed events. The state is a snapshot of the writer's,
/// sharing its maps, so publishing costs O(1) and the state is held once.
#[derive(Debug)]
pub struct Published {
    pub state: State,
    pub head_hash: Hash,
}

impl Published {
    /// Number of committed events.
    pub fn events(&self) -> u64 {
        self.state.events_applied()
    }

    /// The state root: constant work, since the maps' hashes were updated by the
    /// commits' writes.
    pub fn state_root(&self) -> Hash {
        self.state.root()
    }
}

/// The heartbeats held for the open liveness window.
#[derive(Debug, Default)]
struct Held {
    window: u64,
    /// By registry index: the signed body's hash (the same heartbeat sent again is
    /// answered as held) and the heartbeat.
    by_index: BTreeMap<u64, (Hash, SignedCommand)>,
    /// Log time of the first one held.
    first_ms: u64,
    /// The scheduler took them to close the window: later ones are refused until it
    /// has closed.
    sealed: bool,
}

/// Shared between the writer and the handles.
struct Shared {
    /// Written by the writer, sealed by the scheduler.
    held: Mutex<Held>,
    store: Arc<dyn LogStorage>,
    network_id: String,
    published: RwLock<Published>,
    /// Number of committed events, for subscribers.
    events_committed: watch::Sender<u64>,
    metrics: Metrics,
    writer_stopped: AtomicBool,
    /// The writer's clock, which log time follows.
    clock_ms: fn() -> u64,
}

type Reply = oneshot::Sender<Result<Option<Receipt>, SubmitError>>;

/// The handle the API submits and reads through.
#[derive(Clone)]
pub struct Engine {
    queue: mpsc::Sender<(Input, Reply)>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("network_id", &self.shared.network_id)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("corrupt log: {0}")]
    Corrupt(#[from] ReplayError),
    #[error("cannot read the log: {0}")]
    Store(#[from] StoreError),
    #[error("the genesis is refused: {0}")]
    GenesisRefused(Rejection),
    #[error("the log's genesis differs from the one given")]
    GenesisMismatch,
    #[error("the operator key {given} is not the genesis operator key {expected}")]
    OperatorKeyMismatch { given: String, expected: String },
}

/// Records handed from the reading thread to the applying one at a time.
const REPLAY_CHUNK_RECORDS: usize = 1_024;

/// Rebuilds state from every stored record, checking the chain and the structure.
/// Fails with the first bad seq.
///
/// Two stages on two threads: one reads, decodes and hashes records (work that needs no
/// earlier record); the calling thread checks the links and applies them in order.
pub fn replay_store(
    store: &dyn LogStorage,
    progress: &mut dyn FnMut(u64),
) -> Result<Replayer, OpenError> {
    replay_after(store, Replayer::new(ReplayChecks::STORED), progress)
}

/// Folds every stored record after the ones `replayer` has into it, as
/// [`replay_store`] does from the start.
fn replay_after(
    store: &dyn LogStorage,
    mut replayer: Replayer,
    progress: &mut dyn FnMut(u64),
) -> Result<Replayer, OpenError> {
    let from = replayer.len();
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<CheckedRecord>>(8);
    let scanned = std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut chunk = Vec::with_capacity(REPLAY_CHUNK_RECORDS);
            let scanned = store.scan(from, &mut |seq, value| {
                chunk.push(CheckedRecord::decode(seq, value).map_err(Some)?);
                if chunk.len() == REPLAY_CHUNK_RECORDS {
                    // A closed receiver means the applying side failed; it reports why.
                    sender.send(std::mem::take(&mut chunk)).map_err(|_| None)?;
                }
                Ok(())
            });
            if !chunk.is_empty() {
                let _ = sender.send(chunk);
            }
            scanned
        });
        for chunk in receiver {
            for checked in &chunk {
                replayer.push_checked(checked)?;
                progress(checked.record.seq);
            }
        }
        Ok::<_, OpenError>(reader.join().expect("the replay reader panicked"))
    })?;
    match scanned {
        Ok(()) => {}
        Err(ScanError::Store(error)) => return Err(OpenError::Store(error)),
        // The first bad record stopped the reader; everything before it was applied.
        Err(ScanError::Visit(Some(error))) => return Err(OpenError::Corrupt(error)),
        Err(ScanError::Visit(None)) => unreachable!("the applying side reported its error"),
    }
    replayer.finish()?;
    Ok(replayer)
}

/// Records read at a time while rebuilding the index.
const REINDEX_PAGE_RECORDS: usize = 10_000;

/// Brings the derived idempotency index up to the log: it is written with the events,
/// so it lags only if it was deleted (or predates the marker), and then it is rebuilt
/// from the commands the log holds.
fn rebuild_index(store: &dyn LogStorage, events: u64) -> Result<(), OpenError> {
    let mut indexed = store.indexed_events()?;
    if indexed >= events {
        return Ok(());
    }
    tracing::info!(
        from = indexed,
        to = events,
        "rebuilding the idempotency index from the log"
    );
    while indexed < events {
        let page = store.read_encoded(indexed, events, REINDEX_PAGE_RECORDS, usize::MAX)?;
        let mut entries = Vec::new();
        for (offset, value) in page.iter().enumerate() {
            let checked = CheckedRecord::decode(indexed + offset as u64, value)?;
            if let Cause::Command(cause) = &checked.logged.cause {
                let command =
                    codec::decode_command(&cause.body).map_err(|error| ReplayError::Invalid {
                        seq: checked.record.seq,
                        reason: error.to_string(),
                    })?;
                let entry = IdempotencyEntry {
                    body_hash: *blake3::hash(&cause.body).as_bytes(),
                    seq: checked.record.seq,
                    event_hash: checked.record.hash,
                };
                entries.push((
                    idempotency_key(&cause.signer, &command.idempotency_key),
                    entry,
                ));
            }
        }
        indexed += page.len() as u64;
        store.write_index(&entries, indexed)?;
    }
    Ok(())
}

/// Brings the derived merkle column up to the log, as `rebuild_index` does the
/// idempotency index: it is written with the events, so it lags only if it was deleted
/// or predates the column, and then it is rebuilt from every record's hash.
fn rebuild_merkle(store: &dyn LogStorage, events: u64) -> Result<(), OpenError> {
    if store.merkle_leaves()? >= events {
        return Ok(());
    }
    tracing::info!(events, "rebuilding the log's Merkle subtrees");
    let mut frontier = Frontier::default();
    while frontier.len() < events {
        let page = store.read_encoded(frontier.len(), events, REINDEX_PAGE_RECORDS, usize::MAX)?;
        let mut subtrees = Vec::with_capacity(page.len() * 2);
        for value in &page {
            let checked = CheckedRecord::decode(frontier.len(), value)?;
            frontier.push_event_with(&checked.record.hash, |subtree| subtrees.push(subtree));
        }
        store.write_subtrees(&subtrees, frontier.len())?;
    }
    Ok(())
}

/// The answer the idempotency index already holds for a command, if any: its original
/// receipt, or a refusal for another body under the same key. The one lookup of the
/// index, for the writer and the API alike.
fn indexed_answer(
    store: &dyn LogStorage,
    signed: &SignedCommand,
    command: &Command,
) -> Result<Option<Result<Receipt, SubmitError>>, StoreError> {
    let key = idempotency_key(&signed.signer, &command.idempotency_key);
    let body_hash = *blake3::hash(&signed.body).as_bytes();
    Ok(store.idempotency(&key)?.map(|entry| {
        if entry.body_hash == body_hash {
            Ok(Receipt {
                seq: entry.seq,
                event_hash: entry.event_hash,
            })
        } else {
            Err(SubmitError::IdempotencyKeyReused { seq: entry.seq })
        }
    }))
}

/// Everything the writer task owns.
struct Writer {
    shared: Arc<Shared>,
    /// What the batch being sealed commits that the metrics count, once it is synced.
    observed: Vec<Observed>,
    state: State,
    frontier: Frontier,
    head_hash: Hash,
    time_ms_last: u64,
    operator: Keypair,
    config: EngineConfig,
    /// The batch being sealed holds a checkpoint.
    checkpointed: bool,
    /// The events of the last state snapshot taken (or started from).
    snapshot_events_last: u64,
    /// A state snapshot is being encoded.
    snapshot_writing: Arc<AtomicBool>,
}

/// `genesis`, holding the plugins embedded in this binary if it holds none: every log
/// the engine writes then has a stored module of every kind, so a policy's fallback
/// chain starts with one, and the embedded default answers only after a failure (whose
/// event stores it, should it be newer).
fn with_default_plugins(mut genesis: Genesis) -> Genesis {
    if genesis.plugins.is_empty() {
        genesis.plugins = PluginKind::ALL
            .into_iter()
            .map(|kind| PluginModule::new(kind, defaults::wasm(kind)))
            .collect();
    }
    genesis
}

impl Engine {
    /// Opens the engine on `store`: replays the log (writing `genesis` first if the log
    /// is empty, with the plugins embedded in this binary when it names none) and starts
    /// the writer task. The replay starts from the newest usable state snapshot, if
    /// any, and folds only the records after it. The returned handle ends with the
    /// writer; it resolves to an error after a storage failure.
    pub fn start(
        store: Arc<dyn LogStorage>,
        genesis: Genesis,
        operator: Keypair,
        config: EngineConfig,
    ) -> Result<(Engine, tokio::task::JoinHandle<Result<(), StoreError>>), OpenError> {
        let resumed = snapshot::resume(store.as_ref())?;
        let snapshot_events = resumed.as_ref().map_or(0, Replayer::len);
        let replayer = match resumed {
            Some(resumed) => replay_after(store.as_ref(), resumed, &mut |_| {})?,
            None => replay_store(store.as_ref(), &mut |_| {})?,
        };
        rebuild_index(store.as_ref(), replayer.len())?;
        rebuild_merkle(store.as_ref(), replayer.len())?;
        let time_ms_last = replayer.time_ms_last();
        let (state, frontier, head_hash) = replayer.into_parts();
        let events = state.events_applied();
        let shared = Arc::new(Shared {
            held: Mutex::new(Held::default()),
            store,
            network_id: genesis.network_id.clone(),
            published: RwLock::new(Published {
                state: state.clone(),
                head_hash,
            }),
            events_committed: watch::channel(events).0,
            metrics: Metrics::default(),
            writer_stopped: AtomicBool::new(false),
            clock_ms: config.clock_ms,
        });
        shared
            .metrics
            .record_start(snapshot_events, events - snapshot_events);
        let mut writer = Writer {
            shared: shared.clone(),
            state,
            frontier,
            head_hash,
            time_ms_last,
            operator,
            config,
            observed: Vec::new(),
            checkpointed: false,
            snapshot_events_last: snapshot_events,
            snapshot_writing: Arc::new(AtomicBool::new(false)),
        };
        if events == 0 {
            // Nothing is written under a key that can't sign the log's checkpoints.
            if writer.operator.public() != genesis.operator_key {
                return Err(OpenError::OperatorKeyMismatch {
                    given: writer.operator.public().to_hex(),
                    expected: genesis.operator_key.to_hex(),
                });
            }
            // The genesis goes through the writer's own path, as any server input.
            let (reply, mut answer) = oneshot::channel();
            let input = ServerInput::Genesis(Box::new(with_default_plugins(genesis.clone())));
            writer.commit(&mut vec![(Input::Server(input), reply)])?;
            // `commit` answered before it returned.
            match answer.try_recv() {
                Ok(Ok(_)) => {}
                Ok(Err(SubmitError::Rejected(rejection))) => {
                    return Err(OpenError::GenesisRefused(rejection));
                }
                Ok(Err(_)) | Err(_) => unreachable!("a committed genesis is answered"),
            }
        }
        let log_genesis = writer
            .state
            .genesis()
            .expect("the log has a genesis")
            .clone();
        // What a log keeps as it wrote it is not compared: its plugins (this binary's
        // embedded defaults may be newer) and its model's weights (the log names
        // them; this binary only initialised them again). A log written before
        // genesis models existed keeps training none, with the experts it counted.
        let comparable = |genesis: &Genesis| {
            let mut genesis = Genesis {
                plugins: Vec::new(),
                ..genesis.clone()
            };
            match (&log_genesis.model, &mut genesis.model) {
                (None, model) => {
                    *model = None;
                    genesis.parameters.model_experts = log_genesis.parameters.model_experts;
                }
                (Some(_), Some(model)) => {
                    model.shared_hash = [0; 32];
                    model.expert_hashes.clear();
                }
                (Some(_), None) => {}
            }
            genesis
        };
        if comparable(&log_genesis) != comparable(&genesis) {
            return Err(OpenError::GenesisMismatch);
        }
        if writer.operator.public() != log_genesis.operator_key {
            return Err(OpenError::OperatorKeyMismatch {
                given: writer.operator.public().to_hex(),
                expected: log_genesis.operator_key.to_hex(),
            });
        }
        let (queue, receiver) = mpsc::channel(config.queue_commands_max);
        // The writer blocks on fsync: it gets a thread of its own, not an async worker.
        let handle = tokio::task::spawn_blocking(move || writer.run(receiver));
        Ok((Engine { queue, shared }, handle))
    }

    /// Queues a command and waits until its events are durable (or it is refused).
    /// A heartbeat goes through [`Engine::heartbeat`].
    pub async fn submit(&self, submission: Submission) -> Result<Receipt, SubmitError> {
        self.enqueue(Input::Command(submission))
            .await
            .map(|receipt| {
                receipt.expect("an accepted command other than a heartbeat decides an event")
            })
    }

    /// Queues a heartbeat and waits until the writer holds it for its window (or
    /// refuses it). It is logged when the window closes.
    pub async fn heartbeat(&self, submission: Submission) -> Result<(), SubmitError> {
        debug_assert!(matches!(
            submission.command.action,
            Action::Heartbeat { .. }
        ));
        match self.enqueue(Input::Command(submission)).await? {
            None => Ok(()),
            Some(_) => unreachable!("a heartbeat decides no event"),
        }
    }

    /// When the open liveness window may close at `now_ms` and heartbeats are held for
    /// it: the window and its heartbeats, each with its node's registry index, in
    /// index order. From then on heartbeats for the window are refused
    /// ([`SubmitError::WindowClosing`]) until the close commits; asked again before
    /// that, it answers the same. A window is due `liveness_window_ms` after it opened
    /// (the core's rule) and after its first heartbeat (the server's): one that opened
    /// idle still gives every node a whole window to heartbeat in.
    pub fn take_heartbeats(&self, now_ms: u64) -> Option<(u64, Vec<(u64, SignedCommand)>)> {
        let (open, window_ms, opened_ms) = {
            let published = self.published();
            let liveness = published.state.registry().liveness();
            let window_ms = published.state.governance().parameters().liveness_window_ms;
            (liveness.open(), window_ms, liveness.opened_ms())
        };
        let mut held = self.shared.held.lock().expect("held heartbeats lock");
        let due_ms = opened_ms.max(held.first_ms).saturating_add(window_ms);
        if held.window != open || held.by_index.is_empty() || now_ms < due_ms {
            return None;
        }
        held.sealed = true;
        Some((
            open,
            held.by_index
                .iter()
                .map(|(index, (_, command))| (*index, command.clone()))
                .collect(),
        ))
    }

    /// Queues an input of the server's own, decided like a command; the receipt is of
    /// its first event, if it decided any.
    pub async fn submit_input(&self, input: ServerInput) -> Result<Option<Receipt>, SubmitError> {
        self.enqueue(Input::Server(input)).await
    }

    async fn enqueue(&self, input: Input) -> Result<Option<Receipt>, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((input, reply))
            .await
            .map_err(|_| SubmitError::WriterStopped)?;
        answer.await.map_err(|_| SubmitError::WriterStopped)?
    }

    /// The answer the idempotency index already holds for this command, if any.
    pub fn indexed_answer(
        &self,
        signed: &SignedCommand,
        command: &Command,
    ) -> Result<Option<Result<Receipt, SubmitError>>, StoreError> {
        indexed_answer(self.shared.store.as_ref(), signed, command)
    }

    /// The published view: committed state only. Hold it briefly; the writer waits
    /// for it to publish.
    pub fn published(&self) -> std::sync::RwLockReadGuard<'_, Published> {
        self.shared.published.read().expect("published lock")
    }

    /// Encoded records from `from`, at most `limit`, all committed.
    pub async fn records(
        &self,
        from: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let end = self.events_committed();
        let store = self.shared.store.clone();
        tokio::task::spawn_blocking(move || store.read_encoded(from, end, limit, bytes_max))
            .await
            .expect("a record read panicked")
    }

    /// The inclusion proof of event `seq` in the log's tree of the first `size` events,
    /// read from the stored subtrees. `size` comes from a published state (its
    /// checkpoint), whose records and subtrees were stored before it was published,
    /// even while `events_committed` has not caught up with it yet.
    pub async fn event_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        assert!(seq < size, "event {seq} is not in a tree of {size}");
        let store = self.shared.store.clone();
        tokio::task::spawn_blocking(move || {
            merkle::inclusion_path(seq, size, &mut |level, index| {
                store
                    .subtree(level, index)?
                    .ok_or_else(|| StoreError::Malformed {
                        key: format!("merkle subtree {level}/{index}"),
                        reason: "missing".into(),
                    })
            })
        })
        .await
        .expect("a proof read panicked")
    }

    /// The encoded record at `seq`, which a published state holds (so it is stored).
    pub async fn record(&self, seq: u64) -> Result<Vec<u8>, StoreError> {
        let store = self.shared.store.clone();
        tokio::task::spawn_blocking(move || store.read_encoded(seq, seq + 1, 1, usize::MAX))
            .await
            .expect("a record read panicked")?
            .pop()
            .ok_or_else(|| StoreError::Malformed {
                key: format!("event {seq}"),
                reason: "not stored".into(),
            })
    }

    /// The bytes of a stored plugin module, read from the record that stores them (the
    /// state keeps only its hash and that seq). `None` for a module the log does not
    /// hold.
    pub async fn module(&self, hash: &Hash) -> Result<Option<Arc<[u8]>>, StoreError> {
        let stored_seq = self
            .published()
            .state
            .governance()
            .plugin(hash)
            .map(|plugin| plugin.stored_seq);
        let Some(seq) = stored_seq else {
            return Ok(None);
        };
        let encoded = self.record(seq).await?;
        let hash = *hash;
        // A module's record may be 8 MiB, decoded and hashed: off the async workers.
        tokio::task::spawn_blocking(move || {
            let record = CheckedRecord::decode(seq, &encoded)?;
            let module = record
                .logged
                .event
                .modules()
                .iter()
                .find(|module| module.hash == hash)
                .ok_or_else(|| StoreError::Malformed {
                    key: format!("event {seq}"),
                    reason: format!("does not store module {}", hex::encode(hash)),
                })?;
            Ok(Some(module.wasm.clone()))
        })
        .await
        .expect("a module read panicked")
    }

    /// Now, by the writer's clock, which log time follows.
    pub fn now_ms(&self) -> u64 {
        (self.shared.clock_ms)()
    }

    /// Number of committed events.
    pub fn events_committed(&self) -> u64 {
        *self.shared.events_committed.borrow()
    }

    /// Changes with every commit, to the number of committed events.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.events_committed.subscribe()
    }

    pub fn network_id(&self) -> &str {
        &self.shared.network_id
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub fn writer_stopped(&self) -> bool {
        self.shared.writer_stopped.load(Ordering::SeqCst)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// What a logged event commits that the metrics count: a deadline that passed (a
/// tick, carried by its first event) and what the event itself is. Most count nothing.
fn observed(logged: &LoggedEvent) -> impl Iterator<Item = Observed> {
    let tick = matches!(logged.cause, Cause::Server(ServerInput::Tick { .. }))
        .then_some(Observed::DeadlinePassed);
    let event = match &logged.event {
        Event::RoundFinalized(_) => Some(Observed::RoundFinalized),
        Event::RoundAborted { .. } => Some(Observed::RoundAborted),
        Event::PluginFallback(fallback) => Some(Observed::PluginFallback(fallback.kind)),
        _ => None,
    };
    tick.into_iter().chain(event)
}

/// How one input of a batch will be answered once the batch is durable.
enum Outcome {
    Done(Result<Option<Receipt>, SubmitError>),
    /// The receipt of a record in this batch, by its index.
    InBatch(usize),
}

impl Writer {
    /// Takes whatever is queued, up to a batch, waiting only when the queue is empty:
    /// the group grows with the load while one write is in flight.
    fn next_batch(
        &self,
        queue: &mut mpsc::Receiver<(Input, Reply)>,
        batch: &mut Vec<(Input, Reply)>,
    ) -> bool {
        let Some(first) = queue.blocking_recv() else {
            return false;
        };
        batch.push(first);
        while batch.len() < self.config.batch_commands_max {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        true
    }

    fn run(mut self, mut queue: mpsc::Receiver<(Input, Reply)>) -> Result<(), StoreError> {
        let mut batch = Vec::with_capacity(self.config.batch_commands_max);
        while self.next_batch(&mut queue, &mut batch) {
            if let Err(error) = self.commit(&mut batch) {
                tracing::error!(%error, "storage write failed; the writer stops and the server must restart");
                self.shared.writer_stopped.store(true, Ordering::SeqCst);
                queue.close();
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(SubmitError::WriterStopped));
                }
                while let Ok((_, reply)) = queue.try_recv() {
                    let _ = reply.send(Err(SubmitError::WriterStopped));
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// Seals the events one cause decided, the first with the cause and the rest as
    /// its follow-ups, each followed by a checkpoint when one is due.
    fn seal_decided(
        &mut self,
        cause: Cause,
        decided: Vec<Event>,
        time_ms: u64,
        append: &mut AppendBatch,
    ) {
        let mut cause = Some(cause);
        for event in decided {
            let logged = LoggedEvent {
                cause: cause.take().unwrap_or(Cause::FollowUp),
                event,
            };
            self.seal(&logged, time_ms, append);
            self.append_checkpoint_if_due(append, time_ms);
        }
    }

    /// Seals one event into the batch, with the Merkle subtrees its record completes.
    fn seal(&mut self, logged: &LoggedEvent, time_ms: u64, append: &mut AppendBatch) {
        let seq = self.state.events_applied();
        let record = Record::seal(
            seq,
            self.head_hash,
            time_ms,
            codec::encode_logged_event(logged),
        );
        self.head_hash = record.hash;
        self.frontier
            .push_event_with(&record.hash, |subtree| append.subtrees.push(subtree));
        self.observed.extend(observed(logged));
        self.state.apply(&logged.event);
        append.records.push(record);
    }

    /// Decides every input of the batch, writes the result in one synced write, then
    /// publishes and answers. On a write error nothing is published or answered.
    fn commit(&mut self, batch: &mut Vec<(Input, Reply)>) -> Result<(), StoreError> {
        let time_ms = (self.config.clock_ms)().max(self.time_ms_last);
        self.time_ms_last = time_ms;
        let mut append = AppendBatch::default();
        let mut outcomes = Vec::with_capacity(batch.len());
        // Index entries of this batch, for duplicates inside one batch.
        let mut pending: HashMap<Vec<u8>, (Hash, usize)> = HashMap::new();
        for (input, _) in batch.iter() {
            let submission = match input {
                Input::Command(submission) => submission,
                Input::Server(input) => {
                    let context = Context {
                        time_ms,
                        head: self.head_hash,
                    };
                    // A window closes at the log time of the batch that logs it.
                    let stamped;
                    let input = match input {
                        ServerInput::CloseLivenessWindow(window) => {
                            let mut window = window.clone();
                            window.closed_ms = time_ms;
                            stamped = ServerInput::CloseLivenessWindow(window);
                            &stamped
                        }
                        input => input,
                    };
                    outcomes.push(match decide_input(&self.state, input, &context) {
                        Ok(decided) if decided.is_empty() => Outcome::Done(Ok(None)),
                        Ok(decided) => {
                            let first = append.records.len();
                            let cause = Cause::Server(input.clone());
                            self.seal_decided(cause, decided, time_ms, &mut append);
                            Outcome::InBatch(first)
                        }
                        Err(rejection) => Outcome::Done(Err(rejection.into())),
                    });
                    continue;
                }
            };
            let body_hash = *blake3::hash(&submission.signed.body).as_bytes();
            let key = idempotency_key(
                &submission.signed.signer,
                &submission.command.idempotency_key,
            );
            if let Some(&(hash, index)) = pending.get(&key) {
                outcomes.push(if hash == body_hash {
                    Outcome::InBatch(index)
                } else {
                    Outcome::Done(Err(SubmitError::IdempotencyKeyReused {
                        seq: append.records[index].seq,
                    }))
                });
                continue;
            }
            if let Some(answer) = indexed_answer(
                self.shared.store.as_ref(),
                &submission.signed,
                &submission.command,
            )? {
                outcomes.push(Outcome::Done(answer.map(Some)));
                continue;
            }
            let authenticated = Authenticated {
                signer: submission.signed.signer,
                command: submission.command.clone(),
            };
            let context = Context {
                time_ms,
                head: self.head_hash,
            };
            match decide(&self.state, &authenticated, &context) {
                Ok(decided) if decided.is_empty() => {
                    let Action::Heartbeat { window } = submission.command.action else {
                        unreachable!("only a heartbeat decides no event")
                    };
                    outcomes.push(Outcome::Done(
                        self.hold(submission, window, body_hash, time_ms),
                    ));
                }
                Ok(decided) => {
                    let first = append.records.len();
                    let cause = Cause::Command(submission.signed.clone());
                    self.seal_decided(cause, decided, time_ms, &mut append);
                    let record = &append.records[first];
                    let entry = IdempotencyEntry {
                        body_hash,
                        seq: record.seq,
                        event_hash: record.hash,
                    };
                    append.idempotency.push((key.clone(), entry));
                    pending.insert(key, (body_hash, first));
                    outcomes.push(Outcome::InBatch(first));
                }
                Err(Rejection::Burns(BurnRejection::AlreadyRecorded { seq, .. })) => {
                    outcomes.push(Outcome::Done(Ok(Some(self.receipt_of(seq, &append)?))));
                }
                Err(rejection) => outcomes.push(Outcome::Done(Err(rejection.into()))),
            }
        }
        if !append.records.is_empty() {
            let started = Instant::now();
            self.shared.store.append(&append)?;
            self.shared
                .metrics
                .record_write(append.records.len(), started.elapsed());
            self.shared
                .metrics
                .record_committed(self.observed.drain(..));
            self.publish(&append);
            self.snapshot_if_due();
        }
        for ((input, reply), outcome) in batch.drain(..).zip(outcomes) {
            let answer = match outcome {
                Outcome::Done(answer) => answer,
                Outcome::InBatch(index) => {
                    let record = &append.records[index];
                    Ok(Some(Receipt {
                        seq: record.seq,
                        event_hash: record.hash,
                    }))
                }
            };
            match input {
                Input::Command(_) => self.shared.metrics.record_answer(&answer),
                Input::Server(input) => {
                    if let Err(error) = &answer {
                        tracing::warn!(input = input.name(), %error, "a server input was refused");
                    }
                }
            }
            let _ = reply.send(answer);
        }
        Ok(())
    }

    /// Holds a heartbeat the core accepted for `window`, the open one: once per node,
    /// answering the same heartbeat sent again as held.
    fn hold(
        &self,
        submission: &Submission,
        window: u64,
        body_hash: Hash,
        time_ms: u64,
    ) -> Result<Option<Receipt>, SubmitError> {
        let index = self
            .state
            .node(&submission.signed.signer)
            .expect("the core accepts heartbeats of registered nodes")
            .index;
        let mut held = self.shared.held.lock().expect("held heartbeats lock");
        if held.window != window {
            // The window before has closed: what it held is logged.
            *held = Held {
                window,
                ..Held::default()
            };
        }
        if held.sealed {
            return Err(SubmitError::WindowClosing { window });
        }
        match held.by_index.get(&index) {
            Some((hash, _)) if *hash == body_hash => Ok(None),
            Some(_) => Err(SubmitError::HeartbeatTooSoon { window }),
            None => {
                if held.by_index.is_empty() {
                    held.first_ms = time_ms;
                }
                held.by_index
                    .insert(index, (body_hash, submission.signed.clone()));
                Ok(None)
            }
        }
    }

    /// After a synced batch that holds a checkpoint, once the interval has passed since
    /// the last, hands a clone of the state (O(1)) to a thread that writes a snapshot.
    fn snapshot_if_due(&mut self) {
        let checkpointed = std::mem::take(&mut self.checkpointed);
        let events = self.state.events_applied();
        let interval = self.config.snapshot_interval_events;
        if !checkpointed || interval == 0 || events - self.snapshot_events_last < interval {
            return;
        }
        let shared = self.shared.clone();
        // While one is being written the next checkpoint tries again.
        if snapshot::spawn_write(
            self.shared.store.clone(),
            self.state.clone(),
            self.head_hash,
            self.snapshot_writing.clone(),
            move |events, stored| shared.metrics.record_snapshot(events, stored),
        ) {
            self.snapshot_events_last = events;
        }
    }

    /// A checkpoint is a server input the writer decides itself, right after the event
    /// that made it due.
    fn append_checkpoint_if_due(&mut self, append: &mut AppendBatch, time_ms: u64) {
        if !self.state.checkpoint_due() {
            return;
        }
        self.checkpointed = true;
        let tree_size = self.state.events_applied();
        let merkle_root = self.frontier.root();
        let signature = merkle::sign_checkpoint(
            &self.operator,
            &self.shared.network_id,
            tree_size,
            &merkle_root,
        );
        let input = ServerInput::Checkpoint {
            merkle_root,
            signature,
        };
        let context = Context {
            time_ms,
            head: self.head_hash,
        };
        let decided =
            decide_input(&self.state, &input, &context).expect("a due checkpoint is decided");
        for event in decided {
            let logged = LoggedEvent {
                cause: Cause::Server(input.clone()),
                event,
            };
            self.seal(&logged, time_ms, append);
        }
    }

    /// The receipt of an event already decided: in this batch or in the store.
    fn receipt_of(&self, seq: u64, append: &AppendBatch) -> Result<Receipt, StoreError> {
        if let Some(record) = append.records.iter().find(|record| record.seq == seq) {
            return Ok(Receipt {
                seq,
                event_hash: record.hash,
            });
        }
        let missing = || StoreError::Malformed {
            key: seq.to_string(),
            reason: "an applied event is missing from the log".into(),
        };
        let checked = read_record(self.shared.store.as_ref(), seq)?.ok_or_else(missing)?;
        Ok(Receipt {
            seq,
            event_hash: checked.record.hash,
        })
    }

    /// Hands readers a snapshot of the state the batch committed.
    fn publish(&self, append: &AppendBatch) {
        debug_assert_eq!(
            append.records.last().map(|record| record.hash),
            Some(self.head_hash)
        );
        let snapshot = self.state.clone();
        let events_total = snapshot.events_applied();
        let previous = {
            let mut published = self.shared.published.write().expect("published lock");
            published.head_hash = self.head_hash;
            std::mem::replace(&mut published.state, snapshot)
        };
        // The old snapshot is dropped outside the lock: freeing what only it held
        // does not keep readers waiting.
        drop(previous);
        self.shared.events_committed.send_replace(events_total);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use blyan_sdk::genesis::DevKeys;
    use blyan_sdk::merkle::Subtree;
    use blyan_sdk::model::{Action, Burn};

    use super::*;
    use crate::store::RocksStore;

    /// Wraps the real store and fails every append once told to, as a full disk or a
    /// failed fsync would.
    struct FailingStore {
        inner: Arc<RocksStore>,
        failing: AtomicBool,
    }

    impl LogStorage for FailingStore {
        fn append(&self, batch: &AppendBatch) -> Result<(), StoreError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Malformed {
                    key: "-".into(),
                    reason: "injected fsync failure".into(),
                });
            }
            self.inner.append(batch)
        }
        fn idempotency(&self, key: &[u8]) -> Result<Option<IdempotencyEntry>, StoreError> {
            self.inner.idempotency(key)
        }
        fn read_encoded(
            &self,
            from: u64,
            end: u64,
            limit: usize,
            bytes_max: usize,
        ) -> Result<Vec<Vec<u8>>, StoreError> {
            self.inner.read_encoded(from, end, limit, bytes_max)
        }
        fn scan(&self, from: u64, visit: crate::store::Visit<'_>) -> Result<(), ScanError> {
            self.inner.scan(from, visit)
        }
        fn indexed_events(&self) -> Result<u64, StoreError> {
            self.inner.indexed_events()
        }
        fn write_index(
            &self,
            entries: &[(Vec<u8>, IdempotencyEntry)],
            indexed_events: u64,
        ) -> Result<(), StoreError> {
            self.inner.write_index(entries, indexed_events)
        }
        fn merkle_leaves(&self) -> Result<u64, StoreError> {
            self.inner.merkle_leaves()
        }
        fn write_subtrees(&self, subtrees: &[Subtree], leaves: u64) -> Result<(), StoreError> {
            self.inner.write_subtrees(subtrees, leaves)
        }
        fn subtree(&self, level: u32, index: u64) -> Result<Option<Hash>, StoreError> {
            self.inner.subtree(level, index)
        }
        fn snapshots(&self) -> Result<Vec<u64>, StoreError> {
            self.inner.snapshots()
        }
        fn snapshot(&self, events: u64) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.snapshot(events)
        }
        fn write_snapshot(&self, events: u64, snapshot: &[u8]) -> Result<(), StoreError> {
            self.inner.write_snapshot(events, snapshot)
        }
        fn delete_snapshot(&self, events: u64) -> Result<(), StoreError> {
            self.inner.delete_snapshot(events)
        }
    }

    fn burn(keys: &DevKeys, tx: &str) -> Submission {
        let command = Command {
            idempotency_key: tx.as_bytes().to_vec(),
            action: Action::RecordBurn(Burn {
                chain_tx_id: tx.into(),
                burner: "b".into(),
                amount: 7,
            }),
        };
        Submission {
            signed: codec::sign_command(&keys.burn_oracle, "blyan-dev", &command),
            command,
        }
    }

    #[tokio::test]
    async fn a_failed_write_stops_the_writer_and_acknowledges_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DevKeys::derive();
        let store = Arc::new(FailingStore {
            inner: RocksStore::open(dir.path()).unwrap(),
            failing: AtomicBool::new(false),
        });
        let (engine, writer) = Engine::start(
            store.clone(),
            keys.genesis(),
            keys.operator.clone(),
            EngineConfig::default(),
        )
        .unwrap();
        let accepted = engine.submit(burn(&keys, "tx-1")).await.unwrap();
        assert_eq!(accepted.seq, 1);

        store.failing.store(true, Ordering::SeqCst);
        assert_eq!(
            engine.submit(burn(&keys, "tx-2")).await,
            Err(SubmitError::WriterStopped)
        );
        assert!(
            writer.await.unwrap().is_err(),
            "the writer must end with the storage error"
        );
        assert!(engine.writer_stopped());
        // Fail-stop: later commands are refused even though the store would work again.
        store.failing.store(false, Ordering::SeqCst);
        assert_eq!(
            engine.submit(burn(&keys, "tx-3")).await,
            Err(SubmitError::WriterStopped)
        );
        assert_eq!(engine.published().events(), 2);

        // The log holds exactly the acknowledged events.
        drop(engine);
        let inner = Arc::into_inner(store).unwrap().inner;
        let replayer = replay_store(inner.as_ref(), &mut |_| {}).unwrap();
        assert_eq!(replayer.len(), 2);
        assert_eq!(replayer.head_hash(), accepted.event_hash);
    }

    #[tokio::test]
    async fn a_log_written_before_models_restarts_on_the_dev_genesis_and_a_changed_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DevKeys::derive();
        // The dev genesis as logs were written before it named a model.
        let mut old = keys.genesis();
        old.model = None;
        old.parameters.model_experts = 64;
        {
            let (engine, writer) = Engine::start(
                RocksStore::open(dir.path()).unwrap(),
                old,
                keys.operator.clone(),
                EngineConfig::default(),
            )
            .unwrap();
            engine.submit(burn(&keys, "tx-1")).await.unwrap();
            drop(engine);
            writer.await.unwrap().unwrap();
        }
        // Today's dev genesis, its model's weights named as the server names them.
        let mut current = keys.genesis();
        let model = current.model.as_mut().unwrap();
        model.shared_hash = [1; 32];
        model.expert_hashes = vec![[2; 32]; 4];
        let (engine, writer) = Engine::start(
            RocksStore::open(dir.path()).unwrap(),
            current.clone(),
            keys.operator.clone(),
            EngineConfig::default(),
        )
        .unwrap();
        assert_eq!(engine.published().events(), 2);
        assert!(engine.published().state.model().is_none(), "it trains none");
        drop(engine);
        writer.await.unwrap().unwrap();
        // Any other change to the genesis is still refused.
        current.governance_threshold = 3;
        let refused = Engine::start(
            RocksStore::open(dir.path()).unwrap(),
            current,
            keys.operator.clone(),
            EngineConfig::default(),
        );
        assert!(matches!(refused, Err(OpenError::GenesisMismatch)));
    }

    #[tokio::test]
    async fn duplicates_inside_one_batch_get_one_event() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DevKeys::derive();
        let (engine, _writer) = Engine::start(
            RocksStore::open(dir.path()).unwrap(),
            keys.genesis(),
            keys.operator.clone(),
            EngineConfig::default(),
        )
        .unwrap();
        let answers =
            futures_util::future::join_all((0..16).map(|_| engine.submit(burn(&keys, "tx-same"))))
                .await;
        let first = answers[0].clone().unwrap();
        assert!(
            answers.iter().all(|answer| *answer == Ok(first)),
            "{answers:?}"
        );
        assert_eq!(engine.published().events(), 2);
    }

    /// Waits, a bounded time, until the engine has written a snapshot of `events`
    /// events and can take the next.
    async fn snapshot_written(engine: &Engine, events: u64) {
        for _ in 0..500 {
            if engine.metrics().snapshot_written().1 == events {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("no snapshot of {events} events was written");
    }

    #[tokio::test]
    async fn a_start_replays_only_after_the_newest_snapshot_and_a_bad_one_costs_only_time() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DevKeys::derive();
        let mut genesis = keys.genesis();
        genesis.parameters.checkpoint_interval_events = 4;
        let config = EngineConfig {
            snapshot_interval_events: 5,
            ..EngineConfig::default()
        };
        let start = |store: Arc<RocksStore>| {
            Engine::start(store, genesis.clone(), keys.operator.clone(), config).unwrap()
        };
        let store = RocksStore::open(dir.path()).unwrap();
        let (engine, writer) = start(store.clone());
        assert_eq!(engine.metrics().start_replay().0, 0);
        // seq 0 genesis, then a checkpoint after every 4 events: 1..=3 burns, 4 ckpt,
        // 5..=8, 9 ckpt, 10..=13, 14 ckpt. Each checkpoint's batch is 5 events past the
        // last snapshot, so each takes one.
        let mut burns = 0;
        for events in [5, 10, 15] {
            let count = if events == 5 { 3 } else { 4 };
            for _ in 0..count {
                engine
                    .submit(burn(&keys, &format!("tx-{burns}")))
                    .await
                    .unwrap();
                burns += 1;
            }
            snapshot_written(&engine, events).await;
        }
        // Every older snapshot went when a newer one was written.
        assert_eq!(store.snapshots().unwrap(), vec![15]);
        assert_eq!(engine.metrics().snapshot_written(), (3, 15));
        let root = engine.published().state_root();
        assert_eq!(engine.published().events(), 15);
        drop(engine);
        writer.await.unwrap().unwrap();

        // The start folds only what follows the snapshot, and reaches the state the
        // whole log gives; the writer goes on from there.
        let full = replay_store(store.as_ref(), &mut |_| {}).unwrap();
        assert_eq!(full.state().root(), root);
        let (engine, writer) = start(store.clone());
        assert_eq!(engine.metrics().start_replay(), (15, 0));
        assert_eq!(engine.published().state_root(), root);
        assert_eq!(engine.published().state, *full.state());
        let receipt = engine.submit(burn(&keys, "tx-after")).await.unwrap();
        assert_eq!(receipt.seq, 15);
        let root = engine.published().state_root();
        drop(engine);
        writer.await.unwrap().unwrap();

        // Each of these is refused and deleted, and the start replays the whole log to
        // the same state.
        let bytes = store.snapshot(15).unwrap().unwrap();
        let changed = |at: usize| {
            let mut changed = bytes.clone();
            changed[at] ^= 1;
            changed
        };
        let mut longer = bytes.clone();
        longer[snapshot::EVENTS_AT..snapshot::EVENTS_AT + 8].copy_from_slice(&99u64.to_be_bytes());
        // Whitespace decodes to the same state: only the body's hash tells.
        let mut padded = bytes.clone();
        padded.push(b' ');
        let refused = [
            (15, changed(snapshot::ROOT_AT)), // a root that is not its state's
            (15, changed(snapshot::ROOT_AT - 1)), // another build's
            (15, changed(snapshot::HEAD_AT)), // of another prefix of a log
            (15, padded),                     // a body not the one written
            (99, longer),                     // past the log's end
            (14, bytes.clone()),              // under another name than its own
            (15, b"not a snapshot".to_vec()),
        ];
        for (events, stored) in refused {
            store.write_snapshot(events, &stored).unwrap();
            let (engine, writer) = start(store.clone());
            assert_eq!(engine.metrics().start_replay().0, 0, "{events}");
            assert_eq!(engine.published().state_root(), root);
            assert!(store.snapshots().unwrap().is_empty(), "{events}");
            drop(engine);
            writer.await.unwrap().unwrap();
        }
        // A merkle column that disagrees with the last checkpoint refuses it too: the
        // checkpoint signed the first 14 events, whose first peak is leaves 0..8.
        let leaves = store.merkle_leaves().unwrap();
        let peak = store.subtree(3, 0).unwrap().unwrap();
        let wrong = Subtree {
            level: 3,
            index: 0,
            hash: [7; 32],
        };
        store.write_subtrees(&[wrong], leaves).unwrap();
        store.write_snapshot(15, &bytes).unwrap();
        let (engine, writer) = start(store.clone());
        assert_eq!(engine.metrics().start_replay().0, 0);
        assert!(store.snapshots().unwrap().is_empty());
        drop(engine);
        writer.await.unwrap().unwrap();
        let right = Subtree {
            hash: peak,
            ..wrong
        };
        store.write_subtrees(&[right], leaves).unwrap();
        // One the merkle column does not cover yet (deleted, rebuilt after the replay)
        // is kept for the next start, which uses it.
        store.write_snapshot(15, &bytes).unwrap();
        store.write_subtrees(&[], 0).unwrap();
        let (engine, writer) = start(store.clone());
        assert_eq!(engine.metrics().start_replay().0, 0);
        assert_eq!(store.snapshots().unwrap(), vec![15]);
        drop(engine);
        writer.await.unwrap().unwrap();
        let (engine, writer) = start(store.clone());
        assert_eq!(engine.metrics().start_replay(), (15, 1));
        assert_eq!(engine.published().state_root(), root);
        drop(engine);
        writer.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_checkpoint_follows_every_interval_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DevKeys::derive();
        let mut genesis = keys.genesis();
        genesis.parameters.checkpoint_interval_events = 4;
        {
            let (engine, writer) = Engine::start(
                RocksStore::open(dir.path()).unwrap(),
                genesis.clone(),
                keys.operator.clone(),
                EngineConfig::default(),
            )
            .unwrap();
            for index in 0..7 {
                engine
                    .submit(burn(&keys, &format!("tx-{index}")))
                    .await
                    .unwrap();
            }
            {
                let published = engine.published();
                // seq 0 genesis, 1..=3 burns, 4 checkpoint, 5..=8 burns, 9 checkpoint: a
                // checkpoint follows every 4 events after the previous one.
                assert_eq!(published.events(), 10);
                assert_eq!(published.state.checkpoint_last().unwrap().tree_size, 9);
            }
            // Closing the queue ends the writer, which releases the store.
            drop(engine);
            writer.await.unwrap().unwrap();
        }
        // Re-verifies both checkpoints' roots and signatures on the way.
        let store = RocksStore::open(dir.path()).unwrap();
        let replayer = replay_store(store.as_ref(), &mut |_| {}).unwrap();
        assert_eq!(replayer.state().checkpoint_last().unwrap().tree_size, 9);
    }

    /// Reads every stored record back.
    fn stored(store: &dyn LogStorage) -> Vec<Record> {
        let mut records = Vec::new();
        store
            .scan(0, &mut |seq, value| {
                records.push(CheckedRecord::decode(seq, value).unwrap().record);
                Ok(())
            })
            .unwrap();
        records
    }

    #[tokio::test]
    async fn log_time_never_goes_backwards_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DevKeys::derive();
        let open = |clock_ms: fn() -> u64| {
            Engine::start(
                RocksStore::open(dir.path()).unwrap(),
                keys.genesis(),
                keys.operator.clone(),
                EngineConfig {
                    clock_ms,
                    ..EngineConfig::default()
                },
            )
            .unwrap()
        };
        let (engine, writer) = open(|| 5_000_000);
        engine.submit(burn(&keys, "tx-1")).await.unwrap();
        drop(engine);
        writer.await.unwrap().unwrap();
        // The clock is now an hour behind the last record.
        let (engine, writer) = open(|| 5_000_000 - 3_600_000);
        engine.submit(burn(&keys, "tx-2")).await.unwrap();
        drop(engine);
        writer.await.unwrap().unwrap();
        let store = RocksStore::open(dir.path()).unwrap();
        let times: Vec<u64> = stored(store.as_ref())
            .iter()
            .map(|record| record.time_ms)
            .collect();
        assert_eq!(times, [5_000_000, 5_000_000, 5_000_000]);
        // And the log opens again.
        replay_store(store.as_ref(), &mut |_| {}).unwrap();
    }

    #[tokio::test]
    async fn server_inputs_go_through_the_queue_and_pass_the_audit() {
        use blyan_sdk::model::{
            Action, Capabilities, Parameters, PluginProposal, PoolItem, PoolSpec,
        };

        let dir = tempfile::tempdir().unwrap();
        let keys = DevKeys::derive();
        let store = RocksStore::open(dir.path()).unwrap();
        let mut genesis = keys.genesis();
        genesis.parameters = Parameters {
            round_burn_threshold: 1,
            nodes_per_round_min: 1,
            validators_per_round: 1,
            validators_per_delta: 1,
            validator_quorum: 1,
            ..genesis.parameters
        };
        let (engine, writer) = Engine::start(
            store.clone(),
            genesis,
            keys.operator.clone(),
            EngineConfig::default(),
        )
        .unwrap();
        // Governance pins a sharding module that can't run for round 1.
        let broken = b"\0asm\x01\0\0\0broken".to_vec();
        let signed = |signer: &Keypair, key: &[u8], action: Action| {
            let command = Command {
                idempotency_key: key.to_vec(),
                action,
            };
            Submission {
                signed: codec::sign_command(signer, "blyan-dev", &command),
                command,
            }
        };
        let approve = |proposal_id: u64| {
            let proposal_hash = engine
                .published()
                .state
                .governance()
                .proposals()
                .get(&proposal_id)
                .expect("the proposal")
                .content_hash();
            Action::ApproveProposal {
                proposal_id,
                proposal_hash: Some(proposal_hash),
            }
        };
        let propose = Action::ProposePlugin(PluginProposal {
            kind: PluginKind::Sharding,
            wasm: broken.clone().into(),
            activation_round: 1,
        });
        engine
            .submit(signed(&keys.governance[0], b"p", propose))
            .await
            .unwrap();
        engine
            .submit(signed(&keys.governance[1], b"a", approve(1)))
            .await
            .unwrap();
        // A round needs a pool, a validator, a live node and burns.
        let item = |held_out| PoolItem {
            bytes: 1,
            checksum: [u8::from(held_out); 32],
            held_out,
        };
        let pool = Action::RegisterPool(PoolSpec {
            name: "pool".into(),
            items: vec![item(false), item(false), item(true)],
        });
        engine
            .submit(signed(&keys.curator, b"pool", pool))
            .await
            .unwrap();
        let admit = Action::ProposeValidator {
            validator: keys.governance[2].public(),
            admit: true,
            activation_round: 1,
        };
        engine
            .submit(signed(&keys.governance[0], b"v", admit))
            .await
            .unwrap();
        engine
            .submit(signed(&keys.governance[1], b"va", approve(2)))
            .await
            .unwrap();
        let node = Keypair::from_secret([40; 32]);
        let capabilities = Capabilities {
            gpu_model: "H100".into(),
            vram_mib: 81_920,
            experts: vec![0],
            endpoint: "https://node".into(),
        };
        engine
            .submit(signed(&node, b"n", Action::RegisterNode(capabilities)))
            .await
            .unwrap();
        assert!(matches!(
            engine
                .submit_input(ServerInput::OpenRound { round: 1 })
                .await,
            Err(SubmitError::Rejected(Rejection::Rounds(
                blyan_sdk::core::rounds::RoundRejection::NotReady { .. }
            )))
        ));
        engine.submit(burn(&keys, "tx-1")).await.unwrap();
        let opened = engine
            .submit_input(ServerInput::OpenRound { round: 1 })
            .await
            .unwrap()
            .expect("the round opens");
        assert_eq!(
            engine
                .submit_input(ServerInput::OpenRound { round: 3 })
                .await,
            Err(SubmitError::Rejected(Rejection::Rounds(
                blyan_sdk::core::rounds::RoundRejection::OutOfOrder { round: 3, next: 2 }
            )))
        );
        let host = Arc::new(crate::policy::host());
        let (_, fallback) = crate::policy::call(&engine, host, 1)
            .await
            .unwrap()
            .expect("the round awaits its assignments");
        let fallback = fallback.expect("the broken module falls back");
        assert_eq!(fallback.seq, opened.seq + 1);
        {
            let published = engine.published();
            let fallbacks = published.state.governance().fallbacks();
            assert_eq!(fallbacks.len(), 1);
            let logged = fallbacks.get(&fallback.seq).expect("under its seq");
            assert_eq!(logged.failed_hash, *blake3::hash(&broken).as_bytes());
            assert_eq!(logged.reason_code, "plugin_malformed");
            let round = published.state.rounds().get(1).expect("round 1");
            assert_eq!(round.phase, blyan_sdk::model::Phase::Commit);
            assert_eq!(round.shards.iter().map(|shard| shard.count).sum::<u64>(), 2);
        }
        drop(engine);
        writer.await.unwrap().unwrap();

        // An auditor decides every cause again and gets the same state.
        let records = stored(store.as_ref());
        let mut replayer = Replayer::new(ReplayChecks::AUDIT);
        for record in &records {
            replayer.push(record).unwrap();
        }
        replayer.finish().unwrap();
        let kinds: Vec<&str> = records
            .iter()
            .map(
                |record| match codec::decode_logged_event(&record.body).unwrap().cause {
                    Cause::Command(_) => "command",
                    Cause::Server(input) => input.name(),
                    Cause::FollowUp => "follow_up",
                },
            )
            .collect();
        assert_eq!(
            kinds[kinds.len() - 3..],
            ["open_round", "policy_result", "follow_up"]
        );
    }
}
