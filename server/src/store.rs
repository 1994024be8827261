//! The RocksDB store: the `events` column family (the only truth) and the derived
//! `idempotency` and `merkle` column families, written together in one synced
//! `WriteBatch`. `merkle` holds the root of every perfect subtree of the log's Merkle
//! tree, keyed by `u8 level ‖ u64_be index`, so an inclusion proof reads O(log² n)
//! values. State snapshots ([`crate::snapshot`]) are files in the `snapshots/` folder
//! beside RocksDB's own, `<events, 20 digits>.snapshot` for the snapshot of the first
//! `events` events, each written whole under a temporary name and renamed, without a
//! sync: a lost or torn one only makes a start replay more. They are outside RocksDB
//! so that deleting them is deleting the folder, and a binary that knows nothing of
//! them opens the store as before.
//!
//! The engine talks to storage through the narrow [`LogStorage`] trait, so tests can
//! wrap it with a double that injects write failures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blyan_sdk::crypto::PublicKey;
use blyan_sdk::merkle::Subtree;
use blyan_sdk::model::Hash;
use blyan_sdk::record::Record;
use blyan_sdk::replay::{CheckedRecord, ReplayError};
use rocksdb::{
    ColumnFamilyDescriptor, DBWithThreadMode, Direction, IteratorMode, MultiThreaded, Options,
    WriteBatch, WriteOptions,
};

const CF_EVENTS: &str = "events";
const CF_IDEMPOTENCY: &str = "idempotency";
const CF_MERKLE: &str = "merkle";
const SNAPSHOTS_DIR: &str = "snapshots";
const SNAPSHOT_SUFFIX: &str = ".snapshot";

fn snapshot_name(events: u64) -> String {
    format!("{events:020}{SNAPSHOT_SUFFIX}")
}
/// Key of the idempotency column's own marker: how many leading events it indexes.
/// Entry keys are at least 33 bytes (signer and a non-empty key), so they never collide.
/// The merkle column's marker, under the same key, counts the leaves it holds; its
/// entry keys are 9 bytes.
const INDEXED_EVENTS_KEY: &[u8] = b"";

fn subtree_key(level: u32, index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = level as u8;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

type Db = DBWithThreadMode<MultiThreaded>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("stored value under {key} is malformed: {reason}")]
    Malformed { key: String, reason: String },
    #[error(transparent)]
    Corrupt(#[from] ReplayError),
    #[error("state snapshot {path}: {source}")]
    Snapshot {
        path: String,
        source: std::io::Error,
    },
}

/// What the idempotency index remembers of an accepted command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyEntry {
    /// blake3 of the signed command body.
    pub body_hash: Hash,
    pub seq: u64,
    pub event_hash: Hash,
}

impl IdempotencyEntry {
    fn encode(&self) -> [u8; 72] {
        let mut value = [0u8; 72];
        value[..32].copy_from_slice(&self.body_hash);
        value[32..40].copy_from_slice(&self.seq.to_be_bytes());
        value[40..].copy_from_slice(&self.event_hash);
        value
    }

    fn decode(value: &[u8]) -> Option<IdempotencyEntry> {
        if value.len() != 72 {
            return None;
        }
        Some(IdempotencyEntry {
            body_hash: value[..32].try_into().ok()?,
            seq: u64::from_be_bytes(value[32..40].try_into().ok()?),
            event_hash: value[40..].try_into().ok()?,
        })
    }
}

pub fn idempotency_key(signer: &PublicKey, key: &[u8]) -> Vec<u8> {
    let mut composite = Vec::with_capacity(32 + key.len());
    composite.extend_from_slice(&signer.0);
    composite.extend_from_slice(key);
    composite
}

/// One group commit: consecutive records, their index entries and the Merkle
/// subtrees they complete.
#[derive(Debug, Default)]
pub struct AppendBatch {
    pub records: Vec<Record>,
    pub idempotency: Vec<(Vec<u8>, IdempotencyEntry)>,
    pub subtrees: Vec<Subtree>,
}

/// Called with each stored (seq key, encoded record); an error stops the scan: the
/// record's, or `None` when the visitor stopped for a reason it reports itself.
pub type Visit<'a> = &'a mut dyn FnMut(u64, &[u8]) -> Result<(), Option<ReplayError>>;

/// The stored record at `seq`, decoded and its hash checked; `None` past the log's end.
pub fn read_record(store: &dyn LogStorage, seq: u64) -> Result<Option<CheckedRecord>, StoreError> {
    store
        .read_encoded(seq, seq + 1, 1, usize::MAX)?
        .first()
        .map(|bytes| CheckedRecord::decode(seq, bytes).map_err(StoreError::from))
        .transpose()
}

/// Narrow storage interface of the engine and the API.
pub trait LogStorage: Send + Sync + 'static {
    /// Writes the batch atomically and durably (fsync'd WAL) before returning.
    fn append(&self, batch: &AppendBatch) -> Result<(), StoreError>;
    fn idempotency(&self, composite_key: &[u8]) -> Result<Option<IdempotencyEntry>, StoreError>;
    /// Encoded `EventRecord`s from `from`, at most `limit`, stopping before `end`.
    /// Stored records from `from` up to `end`: at most `limit` of them, and no more than
    /// `bytes_max` bytes together, except that the first is returned whatever its size.
    fn read_encoded(
        &self,
        from: u64,
        end: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Calls `visit` with every stored (seq key, encoded record) from seq `from` on, in
    /// order.
    fn scan(&self, from: u64, visit: crate::store::Visit<'_>) -> Result<(), ScanError>;
    /// How many leading events the idempotency index covers; 0 for a new or deleted
    /// index.
    fn indexed_events(&self) -> Result<u64, StoreError>;
    /// Writes index entries rebuilt from the log, then marks the first `indexed_events`
    /// events as indexed.
    fn write_index(
        &self,
        entries: &[(Vec<u8>, IdempotencyEntry)],
        indexed_events: u64,
    ) -> Result<(), StoreError>;
    /// How many leading leaves the merkle column covers; 0 for a new or deleted one.
    fn merkle_leaves(&self) -> Result<u64, StoreError>;
    /// Writes subtrees rebuilt from the log, then marks the first `leaves` as covered.
    fn write_subtrees(&self, subtrees: &[Subtree], leaves: u64) -> Result<(), StoreError>;
    /// The root of the perfect subtree `index` at `level`, if stored.
    fn subtree(&self, level: u32, index: u64) -> Result<Option<Hash>, StoreError>;
    /// The event counts of the stored snapshots, ascending.
    fn snapshots(&self) -> Result<Vec<u64>, StoreError>;
    /// The snapshot of the first `events` events, if stored.
    fn snapshot(&self, events: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores the snapshot of the first `events` events and deletes every older one.
    fn write_snapshot(&self, events: u64, snapshot: &[u8]) -> Result<(), StoreError>;
    /// Deletes the snapshot of the first `events` events.
    fn delete_snapshot(&self, events: u64) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the scan stopped at a bad record")]
    Visit(Option<ReplayError>),
}

pub struct RocksStore {
    db: Db,
    /// The state snapshots' folder.
    snapshots: PathBuf,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.db.path())
            .finish()
    }
}

fn column_families() -> Vec<ColumnFamilyDescriptor> {
    // Every command looks its idempotency key up, and almost every lookup misses: a
    // bloom filter answers most misses without reading a data block.
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    let mut idempotency = Options::default();
    idempotency.set_block_based_table_factory(&table);
    vec![
        ColumnFamilyDescriptor::new(CF_EVENTS, Options::default()),
        ColumnFamilyDescriptor::new(CF_IDEMPOTENCY, idempotency),
        ColumnFamilyDescriptor::new(CF_MERKLE, Options::default()),
    ]
}

impl RocksStore {
    /// Opens (creating if needed) the store under `path`.
    pub fn open(path: &Path) -> Result<Arc<RocksStore>, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // One writer commits groups; more background threads help flush and compaction
        // keep up on small machines.
        options.increase_parallelism(2);
        options.set_paranoid_checks(true);
        let db = Db::open_cf_descriptors(&options, path, column_families())?;
        let snapshots = path.join(SNAPSHOTS_DIR);
        std::fs::create_dir_all(&snapshots).map_err(|source| StoreError::Snapshot {
            path: snapshots.display().to_string(),
            source,
        })?;
        Ok(Arc::new(RocksStore { db, snapshots }))
    }

    /// Opens read-only, for replaying a log that a running server may hold open.
    pub fn open_read_only(path: &Path) -> Result<Arc<RocksStore>, StoreError> {
        let db =
            Db::open_cf_descriptors_read_only(&Options::default(), path, column_families(), false)?;
        let snapshots = path.join(SNAPSHOTS_DIR);
        Ok(Arc::new(RocksStore { db, snapshots }))
    }

    fn snapshot_error(&self, name: &str) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = self.snapshots.join(name).display().to_string();
        move |source| StoreError::Snapshot { path, source }
    }

    fn cf(&self, name: &str) -> Arc<rocksdb::BoundColumnFamily<'_>> {
        self.db
            .cf_handle(name)
            .expect("column family opened with the store")
    }

    /// A derived column's marker: how many leading events it covers.
    fn marker(&self, column: &str) -> Result<u64, StoreError> {
        let Some(value) = self
            .db
            .get_pinned_cf(&self.cf(column), INDEXED_EVENTS_KEY)?
        else {
            return Ok(0);
        };
        let bytes: [u8; 8] = value
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::Malformed {
                key: format!("{column} marker"),
                reason: format!("{} bytes", value.len()),
            })?;
        Ok(u64::from_be_bytes(bytes))
    }
}

impl LogStorage for RocksStore {
    fn append(&self, batch: &AppendBatch) -> Result<(), StoreError> {
        let events = self.cf(CF_EVENTS);
        let idempotency = self.cf(CF_IDEMPOTENCY);
        let merkle = self.cf(CF_MERKLE);
        let mut write = WriteBatch::default();
        for record in &batch.records {
            write.put_cf(&events, record.seq.to_be_bytes(), record.encode());
        }
        for (key, entry) in &batch.idempotency {
            write.put_cf(&idempotency, key, entry.encode());
        }
        for subtree in &batch.subtrees {
            write.put_cf(
                &merkle,
                subtree_key(subtree.level, subtree.index),
                subtree.hash,
            );
        }
        if let Some(last) = batch.records.last() {
            let events = (last.seq + 1).to_be_bytes();
            write.put_cf(&idempotency, INDEXED_EVENTS_KEY, events);
            write.put_cf(&merkle, INDEXED_EVENTS_KEY, events);
        }
        let mut options = WriteOptions::default();
        options.set_sync(true);
        Ok(self.db.write_opt(write, &options)?)
    }

    fn indexed_events(&self) -> Result<u64, StoreError> {
        self.marker(CF_IDEMPOTENCY)
    }

    fn merkle_leaves(&self) -> Result<u64, StoreError> {
        self.marker(CF_MERKLE)
    }

    fn write_subtrees(&self, subtrees: &[Subtree], leaves: u64) -> Result<(), StoreError> {
        let merkle = self.cf(CF_MERKLE);
        let mut write = WriteBatch::default();
        for subtree in subtrees {
            write.put_cf(
                &merkle,
                subtree_key(subtree.level, subtree.index),
                subtree.hash,
            );
        }
        write.put_cf(&merkle, INDEXED_EVENTS_KEY, leaves.to_be_bytes());
        let mut options = WriteOptions::default();
        options.set_sync(true);
        Ok(self.db.write_opt(write, &options)?)
    }

    fn snapshots(&self) -> Result<Vec<u64>, StoreError> {
        let entries = match std::fs::read_dir(&self.snapshots) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(self.snapshot_error("")(error)),
        };
        let mut events = Vec::new();
        for entry in entries {
            let name = entry.map_err(self.snapshot_error(""))?.file_name();
            // Anything else there (a temporary file a crash left) is not a snapshot.
            if let Some(count) = name
                .to_str()
                .and_then(|name| name.strip_suffix(SNAPSHOT_SUFFIX))
                .filter(|count| count.len() == 20)
                .and_then(|count| count.parse().ok())
            {
                events.push(count);
            }
        }
        events.sort_unstable();
        Ok(events)
    }

    fn snapshot(&self, events: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let name = snapshot_name(events);
        match std::fs::read(self.snapshots.join(&name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(self.snapshot_error(&name)(error)),
        }
    }

    fn write_snapshot(&self, events: u64, snapshot: &[u8]) -> Result<(), StoreError> {
        let name = snapshot_name(events);
        let temporary = format!("{name}.tmp");
        std::fs::write(self.snapshots.join(&temporary), snapshot)
            .map_err(self.snapshot_error(&temporary))?;
        std::fs::rename(self.snapshots.join(&temporary), self.snapshots.join(&name))
            .map_err(self.snapshot_error(&name))?;
        for older in self
            .snapshots()?
            .into_iter()
            .filter(|older| *older < events)
        {
            self.delete_snapshot(older)?;
        }
        // One snapshot is written at a time: any other temporary file is what a stop in
        // the middle of a write left.
        for entry in std::fs::read_dir(&self.snapshots).map_err(self.snapshot_error(""))? {
            let path = entry.map_err(self.snapshot_error(""))?.path();
            if path.extension().is_some_and(|extension| extension == "tmp") {
                std::fs::remove_file(&path).map_err(self.snapshot_error(""))?;
            }
        }
        Ok(())
    }

    fn delete_snapshot(&self, events: u64) -> Result<(), StoreError> {
        let name = snapshot_name(events);
        match std::fs::remove_file(self.snapshots.join(&name)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(self.snapshot_error(&name)(error))
            }
            _ => Ok(()),
        }
    }

    fn subtree(&self, level: u32, index: u64) -> Result<Option<Hash>, StoreError> {
        let Some(value) = self
            .db
            .get_pinned_cf(&self.cf(CF_MERKLE), subtree_key(level, index))?
        else {
            return Ok(None);
        };
        value
            .as_ref()
            .try_into()
            .map(Some)
            .map_err(|_| StoreError::Malformed {
                key: format!("merkle subtree {level}/{index}"),
                reason: format!("{} bytes", value.len()),
            })
    }

    fn write_index(
        &self,
        entries: &[(Vec<u8>, IdempotencyEntry)],
        indexed_events: u64,
    ) -> Result<(), StoreError> {
        let idempotency = self.cf(CF_IDEMPOTENCY);
        let mut write = WriteBatch::default();
        for (key, entry) in entries {
            write.put_cf(&idempotency, key, entry.encode());
        }
        write.put_cf(
            &idempotency,
            INDEXED_EVENTS_KEY,
            indexed_events.to_be_bytes(),
        );
        let mut options = WriteOptions::default();
        options.set_sync(true);
        Ok(self.db.write_opt(write, &options)?)
    }

    fn idempotency(&self, composite_key: &[u8]) -> Result<Option<IdempotencyEntry>, StoreError> {
        let Some(value) = self
            .db
            .get_pinned_cf(&self.cf(CF_IDEMPOTENCY), composite_key)?
        else {
            return Ok(None);
        };
        IdempotencyEntry::decode(&value)
            .map(Some)
            .ok_or_else(|| StoreError::Malformed {
                key: hex::encode(composite_key),
                reason: format!("idempotency entry of {} bytes", value.len()),
            })
    }

    fn read_encoded(
        &self,
        from: u64,
        end: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        if from >= end {
            return Ok(out);
        }
        let from_key = from.to_be_bytes();
        let iterator = self.db.iterator_cf(
            &self.cf(CF_EVENTS),
            IteratorMode::From(&from_key, Direction::Forward),
        );
        for item in iterator.take(limit.min((end - from) as usize)) {
            let (_, value) = item?;
            bytes = bytes.saturating_add(value.len());
            if bytes > bytes_max && !out.is_empty() {
                break;
            }
            out.push(value.into_vec());
        }
        Ok(out)
    }

    fn scan(&self, from: u64, visit: crate::store::Visit<'_>) -> Result<(), ScanError> {
        let mut options = rocksdb::ReadOptions::default();
        options.set_readahead_size(4 << 20);
        options.fill_cache(false);
        let mut iterator = self.db.raw_iterator_cf_opt(&self.cf(CF_EVENTS), options);
        iterator.seek(from.to_be_bytes());
        while iterator.valid() {
            let key = iterator.key().expect("valid iterator has a key");
            let seq: [u8; 8] = key.try_into().map_err(|_| StoreError::Malformed {
                key: hex::encode(key),
                reason: "event key is not 8 bytes".into(),
            })?;
            visit(
                u64::from_be_bytes(seq),
                iterator.value().expect("valid iterator has a value"),
            )
            .map_err(ScanError::Visit)?;
            iterator.next();
        }
        iterator.status().map_err(StoreError::from)?;
        Ok(())
    }
}
