//! Wiring for `blyan-ledger serve`: genesis and keys, the engine, the listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use blyan_sdk::crypto::Keypair;
use blyan_sdk::genesis::{self, DevKeys};
use blyan_sdk::model::Genesis;

use crate::api::{self, ApiConfig};
use crate::blobs::BlobStore;
use crate::engine::{Engine, EngineConfig};
use crate::policy;
use crate::store::RocksStore;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// A genesis file; the built-in dev genesis when absent.
    pub genesis: Option<PathBuf>,
    /// The operator's key file; required with a genesis file.
    pub operator_key: Option<PathBuf>,
    pub api: ApiConfig,
    pub engine: EngineConfig,
    /// Largest blob accepted by `PUT /v1/blobs/{hash}`.
    pub blob_bytes_max: u64,
}

/// Picks the genesis and the operator key. The dev genesis writes its secret keys
/// under `<data-dir>/dev-keys/` so local users and tests can act as its roles.
fn genesis_and_operator(config: &ServeConfig) -> anyhow::Result<(Genesis, Keypair)> {
    match (&config.genesis, &config.operator_key) {
        (Some(path), Some(key)) => {
            let genesis =
                genesis::read_file(path).with_context(|| format!("reading {}", path.display()))?;
            let operator =
                Keypair::read_file(key).with_context(|| format!("reading {}", key.display()))?;
            Ok((genesis, operator))
        }
        (Some(_), None) => {
            bail!("--genesis needs --operator-key: checkpoints are signed with the operator key")
        }
        (None, Some(_)) => bail!("--operator-key is only used with --genesis"),
        (None, None) => {
            let keys = DevKeys::derive();
            write_dev_keys(&config.data_dir, &keys)?;
            Ok((keys.genesis(), keys.operator.clone()))
        }
    }
}

fn write_dev_keys(data_dir: &Path, keys: &DevKeys) -> anyhow::Result<()> {
    let dir = data_dir.join("dev-keys");
    for (name, key) in keys.files() {
        key.write_file(&dir.join(name))
            .with_context(|| format!("writing {}", dir.display()))?;
    }
    Ok(())
}

/// Runs the server until the listener fails or the writer stops.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let (genesis, operator) = genesis_and_operator(&config)?;
    let store = RocksStore::open(&config.data_dir.join("log")).context("opening the log")?;
    let started = std::time::Instant::now();
    let (engine, writer) = Engine::start(store, genesis, operator, config.engine)?;
    {
        let published = engine.published();
        tracing::info!(
            events = published.events(),
            head_hash = %hex::encode(published.head_hash),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "log replayed"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, network_id = %engine.network_id(), "serving");
    let blobs = BlobStore::open(&config.data_dir.join("blobs"), config.blob_bytes_max)
        .context("opening the blob store")?;
    let router = api::app(
        engine,
        config.api,
        Arc::new(policy::host()),
        Arc::new(blobs),
    );
    tokio::select! {
        served = axum::serve(listener, router) => served.context("the HTTP server failed"),
        stopped = writer => match stopped.context("the writer task panicked")? {
            Ok(()) => bail!("the writer stopped"),
            Err(error) => bail!("storage failure, stopping: {error}"),
        },
    }
}
