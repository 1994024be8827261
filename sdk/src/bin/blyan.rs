//! `blyan`: the command-line client of a Blyan ledger, for node owners, the burn oracle
//! and auditors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use blyan_sdk::client::Client;
use blyan_sdk::codec;
use blyan_sdk::crypto::Keypair;
use blyan_sdk::model::{Action, Burn, Capabilities, Command};
use blyan_sdk::replay::{ReplayChecks, Replayer};
use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(name = "blyan", version, about = "Client of a Blyan ledger server")]
struct Cli {
    /// Base URL of the ledger server.
    #[arg(
        long,
        global = true,
        env = "BLYAN_SERVER",
        default_value = "http://127.0.0.1:7420"
    )]
    server: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Debug, Subcommand)]
enum CliCommand {
    /// Generate an ed25519 key file (JSON; readable by the owner only).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Register the key as a GPU node.
    Register {
        /// The node's key file.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        gpu_model: String,
        #[arg(long)]
        vram_mib: u32,
        /// Experts this node can train, comma separated, increasing.
        #[arg(long, value_delimiter = ',', required = true)]
        experts: Vec<u32>,
        /// Where the node can be reached.
        #[arg(long)]
        endpoint: String,
        /// Idempotency key (text); a random one when absent.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Send a heartbeat for a registered node.
    Heartbeat {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Record a BLY burn (burn-oracle key only).
    Burn {
        /// The burn oracle's key file.
        #[arg(long)]
        key: PathBuf,
        /// The burn's transaction id on the token chain.
        #[arg(long)]
        tx: String,
        /// The burner's address on the token chain.
        #[arg(long)]
        burner: String,
        /// Amount in base units.
        #[arg(long)]
        amount: u128,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Show the head: event count, head hash and state root.
    Head,
    /// List events.
    Events {
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Download the whole log, rebuild it with the sdk's state machine, check the chain,
    /// every signature and every checkpoint, and compare the state root with the
    /// server's. Exits non-zero on any difference.
    Replay,
}

fn idempotency_key(given: Option<String>) -> Vec<u8> {
    given.map(String::into_bytes).unwrap_or_else(|| {
        let mut key = [0u8; 16];
        getrandom::fill(&mut key).expect("the OS random source failed");
        hex::encode(key).into_bytes()
    })
}

async fn submit(
    cli: &Cli,
    key: &std::path::Path,
    idempotency: Option<String>,
    action: Action,
) -> anyhow::Result<()> {
    let keypair = Keypair::read_file(key).with_context(|| format!("reading {}", key.display()))?;
    let client = Client::new(&cli.server);
    let head = client.head().await?;
    let command = Command {
        idempotency_key: idempotency_key(idempotency),
        action,
    };
    let signed = codec::sign_command(&keypair, &head.network_id, &command);
    let receipt = client.submit(&signed).await?;
    if cli.json {
        println!("{}", serde_json::to_string(&receipt)?);
    } else {
        println!(
            "accepted at seq {} (event {})",
            receipt.seq, receipt.event_hash
        );
    }
    Ok(())
}

async fn replay(cli: &Cli) -> anyhow::Result<()> {
    let client = Client::new(&cli.server);
    let head = client.head().await?;
    let mut replayer = Replayer::new(ReplayChecks::AUDIT);
    while replayer.len() < head.events {
        let page = client.events(replayer.len(), 1_000).await?;
        if page.is_empty() {
            bail!("the server returned no records from seq {}", replayer.len());
        }
        for record in page.iter().take((head.events - replayer.len()) as usize) {
            replayer
                .push(record)
                .with_context(|| format!("replaying seq {}", record.seq))?;
        }
    }
    let root = hex::encode(replayer.state().root());
    let head_hash = hex::encode(replayer.head_hash());
    let agrees = root == head.state_root && head_hash == head.head_hash;
    if cli.json {
        println!(
            "{}",
            json!({ "events": head.events, "head_hash": head_hash, "state_root": root,
                    "server_state_root": head.state_root, "agrees": agrees })
        );
    } else {
        println!(
            "events     {}\nhead_hash  {head_hash}\nstate_root {root}",
            head.events
        );
    }
    if !agrees {
        bail!(
            "replayed state root {root} (head {head_hash}) differs from the server's {} (head {})",
            head.state_root,
            head.head_hash
        );
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        CliCommand::Keygen { out } => {
            if out.exists() {
                bail!("{} exists; refusing to overwrite a key", out.display());
            }
            let keypair = Keypair::generate();
            keypair.write_file(out)?;
            if cli.json {
                println!("{}", json!({ "public_key": keypair.public(), "file": out }));
            } else {
                println!("{}", keypair.public());
            }
        }
        CliCommand::Register {
            key,
            gpu_model,
            vram_mib,
            experts,
            endpoint,
            idempotency_key,
        } => {
            let capabilities = Capabilities {
                gpu_model: gpu_model.clone(),
                vram_mib: *vram_mib,
                experts: experts.clone(),
                endpoint: endpoint.clone(),
            };
            submit(
                &cli,
                key,
                idempotency_key.clone(),
                Action::RegisterNode(capabilities),
            )
            .await?;
        }
        CliCommand::Heartbeat {
            key,
            idempotency_key,
        } => {
            submit(&cli, key, idempotency_key.clone(), Action::Heartbeat).await?;
        }
        CliCommand::Burn {
            key,
            tx,
            burner,
            amount,
            idempotency_key,
        } => {
            let burn = Burn {
                chain_tx_id: tx.clone(),
                burner: burner.clone(),
                amount: *amount,
            };
            submit(&cli, key, idempotency_key.clone(), Action::RecordBurn(burn)).await?;
        }
        CliCommand::Head => {
            let head = Client::new(&cli.server).head().await?;
            if cli.json {
                println!("{}", serde_json::to_string(&head)?);
            } else {
                println!(
                    "network    {}\nevents     {}\nhead_hash  {}\nstate_root {}",
                    head.network_id, head.events, head.head_hash, head.state_root
                );
            }
        }
        CliCommand::Events { from, limit } => {
            let records = Client::new(&cli.server).events(*from, *limit).await?;
            for record in records {
                let logged = codec::decode_logged_event(&record.body)?;
                if cli.json {
                    let signer = logged.cause.as_ref().map(|cause| cause.signer.to_hex());
                    println!(
                        "{}",
                        json!({ "seq": record.seq, "time_ms": record.time_ms, "hash": hex::encode(record.hash), "signer": signer, "event": logged.event })
                    );
                } else {
                    println!(
                        "{:>8}  {}  {:?}",
                        record.seq,
                        hex::encode(&record.hash[..8]),
                        logged.event
                    );
                }
            }
        }
        CliCommand::Replay => replay(&cli).await?,
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
