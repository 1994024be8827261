//! Derived state snapshots, so that a start replays only the log's tail.
//!
//! The writer takes one after a group commit that holds a checkpoint, once
//! `--snapshot-interval-events` events have passed since the last; a thread of its
//! own writes it (the state's clone shares its maps with the writer's, so taking it
//! costs next to nothing). A stored snapshot is
//!
//! ```text
//! "BLYSNAP1" ‖ u64_be events ‖ head_hash ‖ build ‖ state_root ‖ body_hash ‖ state (JSON)
//! ```
//!
//! (each hash 32 bytes). `head_hash` is the hash of record `events - 1`, which chains
//! every record before it: a snapshot is of exactly one log prefix. `build` is the
//! blake3 hash of the executable that wrote it, `body_hash` the blake3 hash of the
//! JSON, which is [`State::snapshot_to`]'s.
//!
//! At start the newest snapshot is tried first. It is used only if all of this
//! holds: the running executable wrote it; its body is whole; the log still holds
//! record `events - 1` with that hash; the state decodes and restores (the genesis and
//! stored plugin modules from the log); its recomputed root is the written root; it
//! counts `events` events; and the merkle column covers those events and gives the
//! root the last checkpoint signed, whose frontier the records after that checkpoint
//! complete. A snapshot that fails is deleted with a warning and the next older one is
//! tried; without one, the whole log is replayed. One the merkle column does not
//! cover yet (a column deleted, rebuilt after the replay) is kept for the next start.
//! An I/O error reading the folder, or a bad record, stops the start as one reading
//! the log does.
//!
//! A snapshot never decides anything the log does not: it is a fold of the log that
//! this same build already made. Another build may fold the log otherwise (a fixed
//! rule), so the first start of an upgrade replays the whole log, checking every
//! record again, and takes its own snapshots from there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use blyan_sdk::core::State;
use blyan_sdk::merkle::Frontier;
use blyan_sdk::model::Hash;
use blyan_sdk::replay::{CheckedRecord, Replayer};

use crate::store::{LogStorage, StoreError, read_record};

const MAGIC: &[u8; 8] = b"BLYSNAP1";
/// Where a stored snapshot's fields start: its event count, head hash and state root.
pub(crate) const EVENTS_AT: usize = MAGIC.len();
pub(crate) const HEAD_AT: usize = EVENTS_AT + 8;
const BUILD_AT: usize = HEAD_AT + 32;
pub(crate) const ROOT_AT: usize = BUILD_AT + 32;
const BODY_HASH_AT: usize = ROOT_AT + 32;
const HEADER_BYTES: usize = BODY_HASH_AT + 32;

/// The blake3 hash of the running executable, read once; `None` when it can't be
/// read, and then no snapshot is written or used.
fn build() -> Option<Hash> {
    static BUILD: std::sync::OnceLock<Option<Hash>> = std::sync::OnceLock::new();
    *BUILD.get_or_init(|| {
        let hashed = std::env::current_exe().and_then(|path| {
            let mut hasher = blake3::Hasher::new();
            std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
            Ok(*hasher.finalize().as_bytes())
        });
        hashed
            .inspect_err(
                |error| tracing::warn!(%error, "the executable can't be read: no state snapshots"),
            )
            .ok()
    })
}

/// A stored snapshot's bytes, written by the build `build`.
fn encode(state: &State, head_hash: &Hash, build: &Hash) -> Vec<u8> {
    // The body is written in place after the header, whose last field is its hash.
    let mut bytes = Vec::with_capacity(HEADER_BYTES);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&state.events_applied().to_be_bytes());
    bytes.extend_from_slice(head_hash);
    bytes.extend_from_slice(build);
    bytes.extend_from_slice(&state.root());
    bytes.extend_from_slice(&[0; 32]);
    state.snapshot_to(&mut bytes);
    let body_hash = blake3::hash(&bytes[HEADER_BYTES..]);
    bytes[BODY_HASH_AT..HEADER_BYTES].copy_from_slice(body_hash.as_bytes());
    bytes
}

/// Writes a snapshot of `state`, whose last record has `head_hash`, on a thread of its
/// own, unless one is being written: `writing` says so, and one at a time holds the
/// state's bytes. `written` is told how it went once `writing` is clear again; a
/// failure is also logged, and costs only a longer start. False when none was started.
pub fn spawn_write(
    store: Arc<dyn LogStorage>,
    state: State,
    head_hash: Hash,
    writing: Arc<AtomicBool>,
    written: impl FnOnce(u64, bool) + Send + 'static,
) -> bool {
    let Some(build) = build() else {
        return false;
    };
    if writing.swap(true, Ordering::AcqRel) {
        return false;
    }
    let encoding = writing.clone();
    let spawned = std::thread::Builder::new()
        .name("snapshot".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            let events = state.events_applied();
            let bytes = encode(&state, &head_hash, &build);
            let stored = store.write_snapshot(events, &bytes);
            encoding.store(false, Ordering::Release);
            match &stored {
                Ok(()) => tracing::info!(
                    events,
                    bytes = bytes.len(),
                    millis = started.elapsed().as_millis() as u64,
                    "state snapshot written"
                ),
                Err(error) => tracing::warn!(events, %error, "state snapshot not written"),
            }
            written(events, stored.is_ok());
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "state snapshot not started");
        writing.store(false, Ordering::Release);
        return false;
    }
    true
}

/// The replayer of the newest usable snapshot, ready for the log after it; `None`
/// when no snapshot is usable. Each unusable one is deleted, with a warning.
pub fn resume(store: &dyn LogStorage) -> Result<Option<Replayer>, StoreError> {
    let Some(build) = build() else {
        return Ok(None);
    };
    for events in store.snapshots()?.into_iter().rev() {
        let Some(bytes) = store.snapshot(events)? else {
            continue;
        };
        match restore(store, events, &bytes, &build)? {
            Ok(replayer) => {
                tracing::info!(events, "starting from the state snapshot");
                return Ok(Some(replayer));
            }
            Err(Unused::NotYet(reason)) => {
                tracing::warn!(events, reason, "state snapshot kept for a later start");
            }
            Err(Unused::Refused(reason)) => {
                tracing::warn!(events, reason, "state snapshot refused; deleting it");
                store.delete_snapshot(events)?;
            }
        }
    }
    Ok(None)
}

/// Why a stored snapshot is not used now.
enum Unused {
    /// It can never be: it is deleted.
    Refused(String),
    /// A later start may use it: it is kept.
    NotYet(&'static str),
}

/// The replayer of one stored snapshot, or why it can't be used. Only the store's own
/// failures are errors.
fn restore(
    store: &dyn LogStorage,
    events: u64,
    bytes: &[u8],
    build: &Hash,
) -> Result<Result<Replayer, Unused>, StoreError> {
    let refused = |reason: String| Ok(Err(Unused::Refused(reason)));
    if bytes.len() < HEADER_BYTES || &bytes[..MAGIC.len()] != MAGIC {
        return refused("not a snapshot of this format".into());
    }
    let (header, body) = bytes.split_at(HEADER_BYTES);
    let field = |at: usize| -> Hash { header[at..at + 32].try_into().expect("32 bytes") };
    let written_events =
        u64::from_be_bytes(header[EVENTS_AT..HEAD_AT].try_into().expect("8 bytes"));
    let (head_hash, root) = (field(HEAD_AT), field(ROOT_AT));
    if field(BUILD_AT) != *build {
        return refused("another build of the server wrote it".into());
    }
    if field(BODY_HASH_AT) != *blake3::hash(body).as_bytes() {
        return refused("its body is not the one written".into());
    }
    if written_events != events || events == 0 {
        return refused(format!("it says it covers {written_events} events"));
    }
    let Some(last) = read_record(store, events - 1)? else {
        return refused("the log is shorter than the snapshot".into());
    };
    if last.record.hash != head_hash {
        return refused(format!(
            "the log's record {} is not the one the snapshot follows",
            events - 1
        ));
    }
    if store.merkle_leaves()? < events {
        return Ok(Err(Unused::NotYet(
            "the merkle column does not cover it yet",
        )));
    }
    let mut event_at = |seq: u64| match read_record(store, seq) {
        Ok(Some(checked)) => Ok(checked.logged.event),
        Ok(None) => Err("the log does not hold it".into()),
        Err(error) => Err(error.to_string()),
    };
    let state = match State::restore(body, &mut event_at) {
        Ok(state) => state,
        Err(error) => return refused(error.to_string()),
    };
    if state.events_applied() != events {
        return refused(format!(
            "its state counts {} events",
            state.events_applied()
        ));
    }
    if state.root() != root {
        return refused("the restored state's root is not the root written".into());
    }
    // The writer goes on from this frontier, and signs checkpoints with its root: the
    // merkle column gives it up to the last checkpoint, which must have signed its
    // root, and the log's own records the rest (the rest of one group commit).
    let Some(checkpoint) = state.checkpoint_last() else {
        return refused("its state holds no checkpoint".into());
    };
    let tree_size = checkpoint.tree_size;
    let mut frontier = match stored_frontier(store, tree_size)? {
        Some(frontier) if frontier.root() == checkpoint.merkle_root => frontier,
        _ => return refused("the merkle column disagrees with the last checkpoint".into()),
    };
    let after = store.read_encoded(tree_size, events, usize::MAX, usize::MAX)?;
    for (offset, bytes) in after.iter().enumerate() {
        let checked = CheckedRecord::decode(tree_size + offset as u64, bytes)?;
        frontier.push_event(&checked.record.hash);
    }
    if frontier.len() != events {
        return refused("the log lacks a record the snapshot covers".into());
    }
    Ok(Ok(Replayer::resume(state, &last.record, frontier)))
}

/// The frontier of the first `len` events, from the merkle column; `None` when the
/// column lacks a subtree of it.
fn stored_frontier(store: &dyn LogStorage, len: u64) -> Result<Option<Frontier>, StoreError> {
    let frontier = Frontier::from_subtrees(len, &mut |level, index| {
        store.subtree(level, index).map_err(Some)?.ok_or(None)
    });
    match frontier {
        Ok(frontier) => Ok(Some(frontier)),
        Err(None) => Ok(None),
        Err(Some(error)) => Err(error),
    }
}
