//! `blyan-ledger`: serve the ledger, or replay its log offline.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use blyan_ledger::api::ApiConfig;
use blyan_ledger::conformance::{ChildLimits, run_child};
use blyan_ledger::demo::{self, DemoConfig};
use blyan_ledger::engine::{EngineConfig, replay_store};
use blyan_ledger::listen::ConnectionLimits;
use blyan_ledger::projector::{self, ProjectorConfig};
use blyan_ledger::serve::{ServeConfig, serve};
use blyan_ledger::store::RocksStore;
use blyan_sdk::model::PluginKind;
use clap::{Parser, Subcommand, ValueEnum};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "blyan-ledger", version, about = "The Blyan Ledger server")]
struct Cli {
    /// Log output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (rebuilding state from the log first).
    Serve {
        /// Where the log and the dev keys live.
        #[arg(long, default_value = "./blyan-data")]
        data_dir: PathBuf,
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:7420")]
        listen: SocketAddr,
        /// Genesis JSON file; the built-in dev genesis when absent.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// The operator's key file (`blyan keygen`); required with --genesis.
        #[arg(long)]
        operator_key: Option<PathBuf>,
        /// Largest request body, in bytes.
        #[arg(long, default_value_t = ApiConfig::default().body_bytes_max)]
        body_bytes_max: usize,
        /// Requests slower than this are answered 408.
        #[arg(long, default_value_t = ApiConfig::default().request_timeout_ms)]
        request_timeout_ms: u64,
        /// Most records in one page of GET /v1/events.
        #[arg(long, default_value_t = ApiConfig::default().events_page_max)]
        events_page_max: u32,
        /// Most stored bytes in one page of GET /v1/events or one read of the
        /// WebSocket stream (a page holds at least one record).
        #[arg(long, default_value_t = ApiConfig::default().events_page_bytes_max)]
        events_page_bytes_max: usize,
        /// WebSocket subscribers at once; more are answered 503.
        #[arg(long, default_value_t = ApiConfig::default().subscribers_max)]
        subscribers_max: usize,
        /// Commands waiting for the writer before submitters wait.
        #[arg(long, default_value_t = EngineConfig::default().queue_commands_max)]
        queue_commands_max: usize,
        /// Commands committed in one synced write.
        #[arg(long, default_value_t = EngineConfig::default().batch_commands_max)]
        batch_commands_max: usize,
        /// Events between two state snapshots, taken at checkpoints so that a start
        /// replays only the log after the newest; 0 takes none.
        #[arg(long, default_value_t = EngineConfig::default().snapshot_interval_events)]
        snapshot_interval_events: u64,
        /// Largest blob one `PUT /v1/blobs/{hash}` stores, in bytes (apart from the
        /// command body limit).
        #[arg(long, default_value_t = 64 << 20)]
        blob_bytes_max: u64,
        /// Connections open at once; more wait to be accepted. Lowered to fit under
        /// the open-files limit.
        #[arg(long, default_value_t = ConnectionLimits::default().connections_max)]
        connections_max: usize,
        /// Time a client has to send a request's headers, from the connection's start
        /// or the end of the previous response: also the idle keep-alive limit.
        #[arg(long, default_value_t = ConnectionLimits::default().header_read_timeout_ms)]
        header_read_timeout_ms: u64,
        /// Time a response write may wait on a client that does not read.
        #[arg(long, default_value_t = ConnectionLimits::default().write_timeout_ms)]
        write_timeout_ms: u64,
        /// Node registrations one source (an IPv4 address or an IPv6 /64) may make in
        /// an hour; more are answered 429.
        #[arg(long, default_value_t = ApiConfig::default().registrations_per_source_per_hour)]
        registrations_per_source_per_hour: u32,
        /// Wall-clock time the conformance check of a proposed plugin may take (it
        /// runs in a child process, which is killed then).
        #[arg(long, default_value_t = ChildLimits::default().timeout_ms)]
        plugin_check_timeout_ms: u64,
        /// Memory that child may use (its data segment: heap and linear memory).
        #[arg(long, default_value_t = ChildLimits::default().memory_bytes >> 20)]
        plugin_check_memory_mib: u64,
        /// Also run a validator in the server, with this key file (`blyan keygen`):
        /// once governance admits the key, it measures the deltas its committees
        /// assign it, as `blyan validator run` does.
        #[arg(long)]
        validator_key: Option<PathBuf>,
    },
    /// Check a plugin module read from stdin on the reference input, within the given
    /// limits, and print the verdict as JSON: the child process `serve` runs for each
    /// proposal.
    #[command(hide = true)]
    CheckPlugin {
        #[arg(long, value_parser = parse_kind)]
        kind: PluginKind,
        #[arg(long)]
        memory_bytes: u64,
        #[arg(long)]
        cpu_seconds: u64,
    },
    /// Run a whole local network over the real API and print a table of its rounds:
    /// this binary's server as a child process, and nodes that train and validators
    /// that measure for real (candle, on the CPU) as tasks that speak HTTP.
    Demo {
        #[arg(long, default_value_t = 6)]
        nodes: usize,
        #[arg(long, default_value_t = 4)]
        validators: usize,
        #[arg(long, default_value_t = 8)]
        rounds: usize,
        /// Keep the demo's log, blobs and server log here; a temporary folder,
        /// removed at the end, when absent.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The server's address; a free loopback port when absent.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Nodes of your own (another process, e.g. `python -m blyan node`) that the
        /// rounds wait for: the first burn comes once they registered, and the server
        /// keeps serving after the last round until interrupted, so that they can
        /// fetch their receipts.
        #[arg(long, default_value_t = 0)]
        external_nodes: usize,
    },
    /// Follow a server's log into PostgreSQL tables (the read model of
    /// `projector/migrations/`), exactly once, until stopped.
    ProjectPostgres {
        /// The ledger server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:7420")]
        server: String,
        /// A PostgreSQL connection string, e.g.
        /// `postgresql://blyan@localhost/blyan` or `host=/run/postgresql dbname=blyan`.
        #[arg(long, env = "BLYAN_DATABASE_URL")]
        database_url: String,
        /// Most events applied in one transaction.
        #[arg(long, default_value_t = 500)]
        batch_events_max: u32,
        /// Serve the projector's own `GET /metrics` (its lag) here.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Rebuild state from the log offline, checking the chain; prints the head.
    Replay {
        #[arg(long, default_value = "./blyan-data")]
        data_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_kind(text: &str) -> Result<PluginKind, String> {
    PluginKind::from_name(text).ok_or_else(|| format!("`{text}` is not a plugin kind"))
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn replay(data_dir: PathBuf, json: bool) -> anyhow::Result<()> {
    let store =
        RocksStore::open_read_only(&data_dir.join("log")).context("opening the log read-only")?;
    let started = Instant::now();
    let mut progress = |seq: u64| {
        if seq > 0 && seq.is_multiple_of(1_000_000) {
            let rate = seq as f64 / started.elapsed().as_secs_f64();
            eprintln!("replayed {seq} events ({rate:.0} events/s)");
        }
    };
    let replayer = replay_store(store.as_ref(), &mut progress)?;
    let elapsed = started.elapsed();
    let events = replayer.len();
    anyhow::ensure!(events > 0, "the log is empty");
    let root = hex::encode(replayer.state().root());
    let head_hash = hex::encode(replayer.head_hash());
    if json {
        println!(
            "{}",
            serde_json::json!({ "seq": events - 1, "events": events, "head_hash": head_hash, "state_root": root, "elapsed_ms": elapsed.as_millis() as u64 })
        );
    } else {
        println!(
            "seq        {}\nhead_hash  {head_hash}\nstate_root {root}",
            events - 1
        );
        eprintln!(
            "{events} events in {:.3} s ({:.0} events/s)",
            elapsed.as_secs_f64(),
            events as f64 / elapsed.as_secs_f64()
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Serve {
            data_dir,
            listen,
            genesis,
            operator_key,
            body_bytes_max,
            request_timeout_ms,
            events_page_max,
            events_page_bytes_max,
            subscribers_max,
            queue_commands_max,
            batch_commands_max,
            snapshot_interval_events,
            blob_bytes_max,
            connections_max,
            header_read_timeout_ms,
            write_timeout_ms,
            registrations_per_source_per_hour,
            plugin_check_timeout_ms,
            plugin_check_memory_mib,
            validator_key,
        } => {
            let config = ServeConfig {
                data_dir,
                listen,
                genesis,
                operator_key,
                api: ApiConfig {
                    body_bytes_max,
                    request_timeout_ms,
                    events_page_max,
                    events_page_bytes_max,
                    subscribers_max,
                    registrations_per_source_per_hour,
                },
                engine: EngineConfig {
                    queue_commands_max,
                    batch_commands_max,
                    snapshot_interval_events,
                    ..EngineConfig::default()
                },
                blob_bytes_max,
                connections: ConnectionLimits {
                    connections_max,
                    header_read_timeout_ms,
                    write_timeout_ms,
                },
                conformance: ChildLimits {
                    timeout_ms: plugin_check_timeout_ms,
                    memory_bytes: plugin_check_memory_mib.saturating_mul(1 << 20),
                },
                validator_key,
            };
            tokio::runtime::Runtime::new()?.block_on(serve(config))
        }
        Command::Demo {
            nodes,
            validators,
            rounds,
            data_dir,
            listen,
            external_nodes,
        } => {
            // One candle thread per task, the fastest at the default size.
            blyan_ml::pin_threads(None)?;
            tokio::runtime::Runtime::new()?.block_on(demo::run(DemoConfig {
                nodes,
                validators,
                rounds,
                data_dir,
                listen,
                external_nodes,
            }))
        }
        Command::ProjectPostgres {
            server,
            database_url,
            batch_events_max,
            metrics_listen,
        } => Ok(
            tokio::runtime::Runtime::new()?.block_on(projector::run(ProjectorConfig {
                server,
                database_url,
                batch_events_max,
                metrics_listen,
            }))?,
        ),
        Command::Replay { data_dir, json } => replay(data_dir, json),
        Command::CheckPlugin {
            kind,
            memory_bytes,
            cpu_seconds,
        } => run_child(kind, memory_bytes, cpu_seconds),
    }
}
