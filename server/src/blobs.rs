//! The blob store: datasets, deltas, expert weights and plugin modules, each named by
//! the blake3 hash of its bytes.
//!
//! A blob is data, not truth: events reference blobs by hash, and a blob no event
//! references is kept until an operator removes it (nothing deletes blobs on its own).
//! Each blob is one file, `blobs/<first two hex digits>/<hash hex>`, written as a
//! temporary file under `blobs/incoming/`, checked against its name, synced, linked
//! into place and its directory synced: a blob is either absent or whole and right,
//! and an acknowledged one survives a crash. Backing the folder up with any file copy
//! is safe, since files are never changed once in place.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use blyan_sdk::model::Hash;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

/// Longest wait for the next bytes of an upload; the upload as a whole takes as long
/// as its bytes need.
pub const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where blobs live and how large one may be.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    blob_bytes_max: u64,
    /// Blobs stored and their bytes: counted once at open, then at every install.
    stored: Arc<(AtomicU64, AtomicU64)>,
}

/// The blobs under `root`'s two-hex-digit folders, and their bytes.
fn count(root: &Path) -> io::Result<(u64, u64)> {
    let (mut blobs, mut bytes) = (0, 0);
    for dir in std::fs::read_dir(root)? {
        let dir = dir?;
        if dir.file_name() == "incoming" || !dir.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dir.path())? {
            let file = file?;
            let named = file.file_name().to_str().is_some_and(|name| {
                name.len() == 64 && name.bytes().all(|byte| byte.is_ascii_hexdigit())
            });
            if named {
                blobs += 1;
                bytes += file.metadata()?.len();
            }
        }
    }
    Ok((blobs, bytes))
}

/// Why an upload was refused; nothing is stored for any of them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    #[error("the blob exceeds {max} bytes")]
    TooLarge { max: u64 },
    #[error("the content hashes to {found}, not to the hash it is stored under")]
    HashMismatch { found: String },
    #[error("the upload ended early: {0}")]
    Interrupted(String),
    #[error("cannot write the blob: {0}")]
    Io(#[from] io::Error),
}

/// A stored blob: its name and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub hash: Hash,
    pub bytes: u64,
}

impl BlobStore {
    /// Opens (creating if needed) the store under `root`, removing what an upload cut
    /// short by a crash left behind.
    pub fn open(root: &Path, blob_bytes_max: u64) -> io::Result<BlobStore> {
        let incoming = root.join("incoming");
        if incoming.exists() {
            std::fs::remove_dir_all(&incoming)?;
        }
        std::fs::create_dir_all(&incoming)?;
        sync_dir(root)?;
        let (blobs, bytes) = count(root)?;
        Ok(BlobStore {
            root: root.to_path_buf(),
            blob_bytes_max,
            stored: Arc::new((AtomicU64::new(blobs), AtomicU64::new(bytes))),
        })
    }

    /// Blobs stored, and their bytes.
    pub fn stored(&self) -> (u64, u64) {
        (
            self.stored.0.load(Ordering::Relaxed),
            self.stored.1.load(Ordering::Relaxed),
        )
    }

    pub fn blob_bytes_max(&self) -> u64 {
        self.blob_bytes_max
    }

    /// The file of a blob, whether or not it is stored.
    pub fn path(&self, hash: &Hash) -> PathBuf {
        let name = hex::encode(hash);
        self.root.join(&name[..2]).join(name)
    }

    /// The blob, if it is stored.
    pub fn stat(&self, hash: &Hash) -> io::Result<Option<Stored>> {
        match std::fs::metadata(self.path(hash)) {
            Ok(metadata) => Ok(Some(Stored {
                hash: *hash,
                bytes: metadata.len(),
            })),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Streams `body` into the blob named `hash`, and returns once it is synced. A
    /// blob already stored is answered as stored, without reading the body. Concurrent
    /// uploads of one blob each write their own temporary file; the first link into
    /// place wins, and the others find the same bytes there.
    pub async fn put<S, E>(&self, hash: &Hash, body: S) -> Result<Stored, PutError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if let Some(stored) = self.stat(hash)? {
            return Ok(stored);
        }
        let incoming = Incoming(self.root.join("incoming").join(format!(
            "{}-{:016x}",
            hex::encode(hash),
            rand_suffix()
        )));
        let (found, bytes) = self.write_incoming(&incoming.0, body).await?;
        if found != *hash {
            return Err(PutError::HashMismatch {
                found: hex::encode(found),
            });
        }
        let path = self.path(hash);
        let root = self.root.clone();
        let installed = tokio::task::spawn_blocking(move || install(&incoming, &root, &path))
            .await
            .expect("a blob install panicked")?;
        if installed {
            self.stored.0.fetch_add(1, Ordering::Relaxed);
            self.stored.1.fetch_add(bytes, Ordering::Relaxed);
        }
        Ok(Stored { hash: found, bytes })
    }

    /// Stores bytes the server made itself (an expert's weights), named by their hash.
    pub async fn put_bytes(&self, bytes: Vec<u8>) -> Result<Stored, PutError> {
        let hash = *blake3::hash(&bytes).as_bytes();
        let body =
            futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(bytes))]);
        self.put(&hash, body).await
    }

    /// The bytes of a stored blob, checked against its name; `None` when absent.
    pub async fn read(&self, hash: &Hash) -> io::Result<Option<Vec<u8>>> {
        match tokio::fs::read(self.path(hash)).await {
            Ok(bytes) if blake3::hash(&bytes).as_bytes() == hash => Ok(Some(bytes)),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {} does not hash to its name", hex::encode(hash)),
            )),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Reads the body into `path`, hashing it; an upload that sends nothing for
    /// [`BODY_IDLE_TIMEOUT`] is dropped, so a trickle can't hold a connection forever.
    async fn write_incoming<S, E>(&self, path: &Path, mut body: S) -> Result<(Hash, u64), PutError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(path).await?);
        let mut hasher = blake3::Hasher::new();
        let mut bytes = 0u64;
        loop {
            let next = tokio::time::timeout(BODY_IDLE_TIMEOUT, body.next())
                .await
                .map_err(|_| {
                    PutError::Interrupted(format!("no bytes for {} s", BODY_IDLE_TIMEOUT.as_secs()))
                })?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|error| PutError::Interrupted(error.to_string()))?;
            bytes += chunk.len() as u64;
            if bytes > self.blob_bytes_max {
                return Err(PutError::TooLarge {
                    max: self.blob_bytes_max,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.into_inner().sync_all().await?;
        Ok((*hasher.finalize().as_bytes(), bytes))
    }
}

/// A temporary upload file, removed when dropped: after its link into place, on every
/// refusal, and when the request is dropped midway (a timeout, a closed connection).
struct Incoming(PathBuf);

impl Drop for Incoming {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Links a synced file into place and syncs the directories that now name it: the
/// blob's own, and the root when that directory is new. False when a concurrent
/// upload of the same blob had put it in place already.
fn install(incoming: &Incoming, root: &Path, path: &Path) -> io::Result<bool> {
    let dir = path.parent().expect("a blob path has a directory");
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        sync_dir(root)?;
    }
    // A link, not a rename, so that of two uploads of one blob exactly one puts it in
    // place and counts it; the other finds it there. `Incoming` removes the file.
    let new = match std::fs::hard_link(&incoming.0, path) {
        Ok(()) => true,
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => false,
        Err(error) => return Err(error),
    };
    sync_dir(dir)?;
    Ok(new)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Tells concurrent uploads' temporary files apart.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) ^ u64::from(std::process::id()) << 40
}
