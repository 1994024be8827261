//! Wiring for `blyan-ledger serve`: genesis and keys, the engine, the listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use blyan_sdk::crypto::Keypair;
use blyan_sdk::genesis::{self, DevKeys};
use blyan_sdk::model::Genesis;
use blyan_sdk::protocol::{self, Validator};

use crate::api::{self, ApiConfig};
use crate::blobs::BlobStore;
use crate::conformance::{ChildLimits, Conformer};
use crate::engine::{Engine, EngineConfig};
use crate::learning;
use crate::listen::{self, ConnectionLimits};
use crate::policy;
use crate::scheduler;
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
    pub connections: ConnectionLimits,
    /// What the child that runs a proposal's conformance check may use.
    pub conformance: ChildLimits,
    /// The key file of a validator the server runs itself ([`builtin_validator`]).
    pub validator_key: Option<PathBuf>,
}

/// A limit given at start that the server cannot run with.
#[derive(Debug, thiserror::Error)]
#[error("--{flag} is {value}; it must be in {min}..={max}")]
pub struct LimitError {
    pub flag: &'static str,
    pub value: u64,
    pub min: u64,
    pub max: u64,
}

/// The longest timeout a flag takes: a day.
const TIMEOUT_MS_MAX: u64 = 86_400_000;

impl ServeConfig {
    /// Checks every limit before anything starts: a zero or an extreme is refused by
    /// its flag's name, never met later as a panic or a server that answers nothing.
    pub fn check(&self) -> Result<(), LimitError> {
        let limits: [(&'static str, u64, u64, u64); 14] = [
            (
                "body-bytes-max",
                self.api.body_bytes_max as u64,
                1_024,
                1 << 30,
            ),
            (
                "request-timeout-ms",
                self.api.request_timeout_ms,
                1,
                TIMEOUT_MS_MAX,
            ),
            (
                "events-page-max",
                u64::from(self.api.events_page_max),
                1,
                100_000,
            ),
            (
                "events-page-bytes-max",
                self.api.events_page_bytes_max as u64,
                1_024,
                1 << 30,
            ),
            (
                "subscribers-max",
                self.api.subscribers_max as u64,
                1,
                1 << 20,
            ),
            (
                "queue-commands-max",
                self.engine.queue_commands_max as u64,
                1,
                1 << 20,
            ),
            (
                "batch-commands-max",
                self.engine.batch_commands_max as u64,
                1,
                1 << 16,
            ),
            ("blob-bytes-max", self.blob_bytes_max, 1, 1 << 40),
            (
                "connections-max",
                self.connections.connections_max as u64,
                1,
                1 << 20,
            ),
            (
                "header-read-timeout-ms",
                self.connections.header_read_timeout_ms,
                1,
                TIMEOUT_MS_MAX,
            ),
            (
                "write-timeout-ms",
                self.connections.write_timeout_ms,
                1,
                TIMEOUT_MS_MAX,
            ),
            (
                "registrations-per-source-per-hour",
                u64::from(self.api.registrations_per_source_per_hour),
                1,
                1 << 20,
            ),
            (
                "plugin-check-timeout-ms",
                self.conformance.timeout_ms,
                1,
                TIMEOUT_MS_MAX,
            ),
            // The smallest check needs about 76 MiB; past a TiB is a typo.
            (
                "plugin-check-memory-mib",
                self.conformance.memory_bytes >> 20,
                96,
                1 << 20,
            ),
        ];
        for (flag, value, min, max) in limits {
            if !(min..=max).contains(&value) {
                return Err(LimitError {
                    flag,
                    value,
                    min,
                    max,
                });
            }
        }
        // The check answers within its own limit only if the request lasts longer.
        let request_timeout_ms = self.api.request_timeout_ms;
        if self.conformance.timeout_ms >= request_timeout_ms {
            return Err(LimitError {
                flag: "plugin-check-timeout-ms",
                value: self.conformance.timeout_ms,
                min: 1,
                max: request_timeout_ms - 1,
            });
        }
        Ok(())
    }
}

/// File descriptors kept for the log, the blob store and the process itself, out of
/// the open-files limit, when the connection cap is fitted under it.
const FILES_RESERVED: u64 = 64;

/// The soft limit on open files (`RLIMIT_NOFILE`), from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The connection cap, lowered to fit under the open-files limit with room for the
/// log, so that open sockets (WebSocket subscribers included: each holds a
/// connection's permit) can't take every descriptor. A blob served or uploaded holds
/// one more file while it streams.
fn fitted_connections_max(configured: usize) -> usize {
    let Some(files) = open_files_limit() else {
        return configured;
    };
    let fits = files.saturating_sub(FILES_RESERVED).max(1) as usize;
    if configured > fits {
        tracing::warn!(
            configured,
            open_files_limit = files,
            connections_max = fits,
            "--connections-max lowered to fit under the open-files limit"
        );
        fits
    } else {
        configured
    }
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

/// The server's own validator: the same protocol client and candle measurer as
/// `blyan validator run`, against the server's own API, on a thread of its own so
/// that measuring never holds an API worker. Its key takes part only once governance
/// admits it, like any other; it follows the log from the head at start, and after
/// a failure starts again from the head a second later.
fn builtin_validator(url: String, key: Keypair) {
    std::thread::Builder::new()
        .name("validator".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime starts");
            runtime.block_on(async move {
                let client = blyan_sdk::client::Client::new(&url);
                let stand_in = blyan_ml::Moe::init(
                    blyan_ml::MoeConfig::default(),
                    0,
                    &blyan_ml::Device::Cpu,
                )
                .expect("the default model initialises");
                let mut measurer = blyan_ml::CandleMeasurer::new(stand_in);
                tracing::info!(validator = %key.public(), "built-in validator following the log");
                loop {
                    let followed = async {
                        let validator =
                            Validator::connect(client.clone(), key.clone()).await?;
                        let from = client.head().await?.events;
                        protocol::follow_validator(&validator, &mut measurer, from, &mut |result| {
                            match result.receipt {
                                Ok(_) => tracing::info!(round = result.round, "built-in validator: receipt verified"),
                                Err(error) => tracing::warn!(round = result.round, %error, "built-in validator: round failed"),
                            }
                            std::ops::ControlFlow::Continue(())
                        })
                        .await
                    };
                    if let Err(error) = followed.await {
                        tracing::warn!(%error, "built-in validator stopped; starting again");
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            });
        })
        .expect("the validator thread starts");
}

/// Runs the server until the listener fails or the writer stops.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    config.check()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let (genesis, operator) = genesis_and_operator(&config)?;
    let blobs = BlobStore::open(&config.data_dir.join("blobs"), config.blob_bytes_max)
        .context("opening the blob store")?;
    let genesis = learning::with_model_weights(genesis, &blobs)
        .await
        .context("storing the genesis model's weights")?;
    let store = RocksStore::open(&config.data_dir.join("log")).context("opening the log")?;
    let started = std::time::Instant::now();
    let clock_ms = config.engine.clock_ms;
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
    let validator = config
        .validator_key
        .as_ref()
        .map(|path| Keypair::read_file(path).with_context(|| format!("reading {}", path.display())))
        .transpose()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    if let Some(key) = validator {
        let mut own = listener.local_addr()?;
        if own.ip().is_unspecified() {
            own.set_ip(match own {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        builtin_validator(format!("http://{own}"), key);
    }
    tracing::info!(listen = %listener.local_addr()?, network_id = %engine.network_id(), "serving");
    let blobs = Arc::new(blobs);
    let host = Arc::new(policy::host());
    tokio::spawn(scheduler::run(
        engine.clone(),
        host.clone(),
        blobs.clone(),
        clock_ms,
    ));
    let conformer = Conformer::new(
        Conformer::own_binary().context("finding this binary, which checks plugins")?,
        config.conformance,
    );
    let router = api::app(engine, config.api, Arc::new(conformer), blobs);
    let connections = ConnectionLimits {
        connections_max: fitted_connections_max(config.connections.connections_max),
        ..config.connections
    };
    tokio::select! {
        () = listen::serve(listener, router, connections) => bail!("the accept loop ended"),
        stopped = writer => match stopped.context("the writer task panicked")? {
            Ok(()) => bail!("the writer stopped"),
            Err(error) => bail!("storage failure, stopping: {error}"),
        },
    }
}
