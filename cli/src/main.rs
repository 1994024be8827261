//! `blyan`: the command-line client of a Blyan ledger, for node owners, validators, the
//! burn oracle, curators, governance members, plugin authors and auditors.

mod learn;
mod rerun;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use blyan_sdk::client::Client;
use blyan_sdk::codec;
use blyan_sdk::core::governance::Subject;
use blyan_sdk::crypto::{Keypair, PublicKey};
use blyan_sdk::liveness;
use blyan_sdk::model::{
    Action, Burn, Capabilities, Cause, Command, Event, Hash, Parameters, PluginKind,
    PluginProposal, PolicyResult, PoolItem, PoolSpec, ServerInput, limits,
};
use blyan_sdk::receipt::{self, RoundReceipt};
use blyan_sdk::replay::{CheckedRecord, ReplayChecks, Replayer};
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
    /// Send a heartbeat for a registered node, in the liveness window open now. The
    /// server holds it and logs it with the window's others when the window closes.
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
    /// every signature and every checkpoint, decide every cause again, and compare the
    /// state root with the server's. Exits non-zero on any difference.
    Replay {
        /// Also run every logged policy call again, with the modules the log holds, on
        /// the input rebuilt from the state at that seq: each failure must fail with the
        /// same code and the answer must give the same bytes. A failure the log puts
        /// down to the wall clock is reported, not checked.
        #[arg(long)]
        rerun_plugins: bool,
        /// Also recompute the genesis model's weights from its seed, and every merge
        /// of the parameter chain from the blobs it names (the round's base versions,
        /// its accepted deltas and its pool's held-out items): each must give the
        /// weights hash the log records, and held-out losses within 0.1 % of it.
        #[arg(long)]
        recompute_merges: bool,
        /// Also fetch every closed liveness window's blob and check it against its
        /// event: every heartbeat signed by a registered node for that window, one per
        /// node, exactly the nodes of its bitmap, and its Merkle root.
        #[arg(long)]
        check_heartbeats: bool,
    },
    /// Propose, approve and list plugin and parameter changes (governance keys).
    #[command(subcommand)]
    Governance(GovernanceCommand),
    /// Build and check a policy plugin before proposing it.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Learning rounds: their phases, deltas, scores and rewards.
    #[command(subcommand)]
    Round(RoundCommand),
    /// Fetch a round's receipt for a key, and check one offline.
    #[command(subcommand)]
    Receipt(ReceiptCommand),
    /// Register, generate and show dataset pools (a genesis curator key registers).
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Take part in rounds as a GPU node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Take part in rounds as a validator.
    #[command(subcommand)]
    Validator(ValidatorCommand),
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Follow the log, and in each round the node is in: fetch and check its shard,
    /// train the round's expert on it (AdamW, candle), upload, commit and reveal the
    /// delta, heartbeat throughout, and fetch and verify the receipt. The node must be
    /// registered (`blyan register`). Exits non-zero if a round fails.
    Run(learn::NodeRun),
}

#[derive(Debug, Subcommand)]
enum ValidatorCommand {
    /// Follow the log, and in each round the validator sits on: fetch and check its
    /// tasks and the held-out items, measure every assigned delta against the base
    /// (held-out loss before minus after, fixed point), submit the measurements, and
    /// fetch and verify the receipt. Exits non-zero if a round fails.
    Run(learn::Run),
}

#[derive(Debug, Subcommand)]
enum RoundCommand {
    /// Rounds from `--from` on: expert, phase, deadline, nodes and progress.
    List {
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000))]
        limit: u32,
    },
    /// One round: its seed, roots, deltas with their scores, and its rewards.
    Show { round: u64 },
}

#[derive(Debug, Subcommand)]
enum ReceiptCommand {
    /// Download the receipt of `--key` in `--round` (it exists once the round ended)
    /// to `--out`.
    Get {
        #[arg(long)]
        round: u64,
        /// The node's or validator's public key (hex).
        #[arg(long, value_parser = parse_key)]
        key: PublicKey,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a receipt file offline: the checkpoint's signature under
    /// `--checkpoint-key`, every record's hash and inclusion in the checkpoint, and the
    /// assignment, score and payout proofs. Exits non-zero on any altered byte.
    Verify {
        file: PathBuf,
        /// The operator's public key (hex), which signs the checkpoints.
        #[arg(long, value_parser = parse_key)]
        checkpoint_key: PublicKey,
    },
}

#[derive(Debug, Subcommand)]
enum PoolCommand {
    /// Upload item files as blobs and register them as a pool: `--train` files are
    /// assigned to nodes, `--held-out` files only measured on by validators.
    Register {
        /// A genesis curator key file.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, value_delimiter = ',', required = true)]
        train: Vec<PathBuf>,
        #[arg(long, value_delimiter = ',', required = true)]
        held_out: Vec<PathBuf>,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Label items with a seeded teacher model (blyan-ml's regression data), upload
    /// them and register them as a pool.
    Generate(learn::Generate),
    /// A pool's curator, items root and items.
    Show { pool: u64 },
}

#[derive(Debug, Subcommand)]
enum GovernanceCommand {
    /// Propose a plugin. The server runs its conformance check first and refuses a
    /// module that fails it; the proposal counts as the proposer's approval.
    Propose {
        /// A governance key file.
        #[arg(long)]
        key: PathBuf,
        /// sharding, scoring or reward.
        #[arg(long, value_parser = parse_kind)]
        kind: PluginKind,
        /// The core-Wasm module.
        #[arg(long)]
        wasm: PathBuf,
        /// The first round that runs it; later than the round open now.
        #[arg(long)]
        activation_round: u64,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Propose parameters from a JSON file shaped like a genesis file's `parameters`
    /// (missing fields keep their defaults).
    ProposeParameters {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        activation_round: u64,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Approve a proposal; at M of N approvals it is activated.
    Approve {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        proposal: u64,
        /// The content hash of the proposal reviewed, as `--json governance list` shows it;
        /// the approval is refused if the proposal under that id is other content.
        #[arg(long)]
        hash: String,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Propose admitting (or, with `--remove`, removing) a validator key; it takes
    /// effect once M of N governance keys approved it.
    AdmitValidator {
        #[arg(long)]
        key: PathBuf,
        /// The validator's public key (hex).
        #[arg(long, value_parser = parse_key)]
        validator: PublicKey,
        /// Remove the key instead of admitting it.
        #[arg(long)]
        remove: bool,
        /// Later than the round open now.
        #[arg(long)]
        activation_round: u64,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// List proposals, activations and the stored plugins.
    List,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Build a plugin crate for wasm32-unknown-unknown and print the module's path, size
    /// and blake3 hash (the name governance will know it by). Unless RUSTFLAGS is set,
    /// it builds with the default plugins' code generation flags (wide arithmetic, a
    /// 256 KiB stack, 64 KiB of initial heap).
    Build {
        /// The plugin crate's Cargo.toml.
        #[arg(long, default_value = "Cargo.toml")]
        manifest_path: PathBuf,
        /// The cargo profile to build with.
        #[arg(long, default_value = "release")]
        profile: String,
    },
    /// Run the server's conformance check on a module, locally: compile it, check its
    /// imports, exports and ABI version, and run the reference input of `kind` within
    /// the fuel limit, checking the output as the server would.
    Test {
        #[arg(long, value_parser = parse_kind)]
        kind: PluginKind,
        /// The core-Wasm module.
        wasm: PathBuf,
    },
}

fn parse_kind(text: &str) -> Result<PluginKind, String> {
    PluginKind::from_name(text)
        .ok_or_else(|| format!("`{text}` is not a plugin kind: use sharding, scoring or reward"))
}

fn parse_key(text: &str) -> Result<PublicKey, String> {
    PublicKey::from_hex(text).ok_or_else(|| format!("`{text}` is not a 64-hex-character key"))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
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
    key: &Path,
    idempotency: Option<String>,
    action: Action,
) -> anyhow::Result<()> {
    submit_as(&cli.server, cli.json, key, idempotency, action).await
}

/// Signs `action` with the key file's key for the server's network and submits it.
async fn submit_as(
    server: &str,
    json_out: bool,
    key: &Path,
    idempotency: Option<String>,
    action: Action,
) -> anyhow::Result<()> {
    let keypair = Keypair::read_file(key).with_context(|| format!("reading {}", key.display()))?;
    let client = Client::new(server);
    let head = client.head().await?;
    let command = Command {
        idempotency_key: idempotency_key(idempotency),
        action,
    };
    let signed = codec::sign_command(&keypair, &head.network_id, &command);
    let receipt = client.submit(&signed).await?;
    if json_out {
        println!("{}", serde_json::to_string(&receipt)?);
    } else {
        println!(
            "accepted at seq {} (event {})",
            receipt.seq, receipt.event_hash
        );
    }
    Ok(())
}

/// Signs a heartbeat for the window open now and submits it.
async fn heartbeat(cli: &Cli, key: &Path, idempotency: Option<String>) -> anyhow::Result<()> {
    let keypair = Keypair::read_file(key).with_context(|| format!("reading {}", key.display()))?;
    let client = Client::new(&cli.server);
    let head = client.head().await?;
    let command = Command {
        idempotency_key: idempotency_key(idempotency),
        action: Action::Heartbeat {
            window: head.liveness_window,
        },
    };
    let held = client
        .heartbeat(&codec::sign_command(&keypair, &head.network_id, &command))
        .await?;
    if cli.json {
        println!("{}", serde_json::to_string(&held)?);
    } else {
        println!(
            "held for liveness window {}; logged when it closes",
            held.window
        );
    }
    Ok(())
}

async fn governance(cli: &Cli, command: &GovernanceCommand) -> anyhow::Result<()> {
    match command {
        GovernanceCommand::Propose {
            key,
            kind,
            wasm,
            activation_round,
            idempotency_key,
        } => {
            let proposal = PluginProposal {
                kind: *kind,
                wasm: read(wasm)?.into(),
                activation_round: *activation_round,
            };
            let action = Action::ProposePlugin(proposal);
            submit(cli, key, idempotency_key.clone(), action).await
        }
        GovernanceCommand::ProposeParameters {
            key,
            file,
            activation_round,
            idempotency_key,
        } => {
            let parameters: Parameters = serde_json::from_slice(&read(file)?)
                .with_context(|| format!("parsing {}", file.display()))?;
            let action = Action::ProposeParameters {
                parameters,
                activation_round: *activation_round,
            };
            submit(cli, key, idempotency_key.clone(), action).await
        }
        GovernanceCommand::Approve {
            key,
            proposal,
            hash,
            idempotency_key,
        } => {
            let proposal_hash = hex::decode(hash)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .context("--hash must be 64 hex characters")?;
            let action = Action::ApproveProposal {
                proposal_id: *proposal,
                proposal_hash: Some(proposal_hash),
            };
            submit(cli, key, idempotency_key.clone(), action).await
        }
        GovernanceCommand::AdmitValidator {
            key,
            validator,
            remove,
            activation_round,
            idempotency_key,
        } => {
            let action = Action::ProposeValidator {
                validator: *validator,
                admit: !*remove,
                activation_round: *activation_round,
            };
            submit(cli, key, idempotency_key.clone(), action).await
        }
        GovernanceCommand::List => {
            let client = Client::new(&cli.server);
            let governance = client.governance().await?;
            let plugins = client.plugins().await?;
            if cli.json {
                println!(
                    "{}",
                    json!({ "governance": governance, "plugins": plugins })
                );
                return Ok(());
            }
            let round = governance.round.as_ref().map_or(0, |round| round.round);
            println!("round open: {round}");
            for proposal in &governance.proposals {
                let what = match &proposal.subject {
                    Subject::Plugin { kind, hash } => {
                        format!("{kind} plugin {}", hex::encode(hash))
                    }
                    Subject::Parameters(_) => "parameters".to_string(),
                    Subject::Validator { validator, admit } => {
                        format!(
                            "{} validator {validator}",
                            if *admit { "admit" } else { "remove" }
                        )
                    }
                };
                let status = serde_json::to_value(proposal.status)?;
                println!(
                    "proposal {:>4}  {:<9}  round {:>4}  approvals {}  {what}",
                    proposal.id,
                    status.as_str().unwrap_or("?"),
                    proposal.activation_round,
                    proposal.approvals.len(),
                );
            }
            for plugin in &plugins.plugins {
                println!(
                    "plugin {}  {:<8}  {:>8} bytes  stored at seq {}",
                    plugin.hash,
                    plugin.kind.name(),
                    plugin.bytes,
                    plugin.stored_seq,
                );
            }
            Ok(())
        }
    }
}

fn plugin(cli: &Cli, command: &PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Build {
            manifest_path,
            profile,
        } => {
            let mut cargo =
                std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
            cargo
                .args([
                    "build",
                    "--target",
                    "wasm32-unknown-unknown",
                    "--message-format=json-render-diagnostics",
                    "--profile",
                ])
                .arg(profile)
                .arg("--manifest-path")
                .arg(manifest_path)
                .stderr(std::process::Stdio::inherit());
            // The default plugins' code generation flags, unless the author set their
            // own.
            if ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"]
                .iter()
                .all(|name| std::env::var_os(name).is_none())
            {
                cargo.env(
                    "CARGO_ENCODED_RUSTFLAGS",
                    blyan_plugin_host::PLUGIN_RUSTFLAGS.join("\x1f"),
                );
            }
            let output = cargo.output().context("running cargo")?;
            if !output.status.success() {
                bail!("cargo build failed ({})", output.status);
            }
            let modules: Vec<PathBuf> = String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|message| message["reason"] == "compiler-artifact")
                .flat_map(|message| message["filenames"].as_array().cloned().unwrap_or_default())
                .filter_map(|name| name.as_str().map(PathBuf::from))
                .filter(|name| name.extension().is_some_and(|ext| ext == "wasm"))
                .collect();
            if modules.is_empty() {
                bail!("the build produced no .wasm module: is the crate a `cdylib`?");
            }
            for module in modules {
                let wasm = read(&module)?;
                let hash = hex::encode(blake3::hash(&wasm).as_bytes());
                if cli.json {
                    println!(
                        "{}",
                        json!({ "wasm": module, "bytes": wasm.len(), "hash": hash })
                    );
                } else {
                    println!("{}  {} bytes  {hash}", module.display(), wasm.len());
                }
                if wasm.len() > limits::PLUGIN_BYTES_MAX {
                    bail!(
                        "{} is {} bytes; the ledger stores at most {}",
                        module.display(),
                        wasm.len(),
                        limits::PLUGIN_BYTES_MAX
                    );
                }
            }
            Ok(())
        }
        PluginCommand::Test { kind, wasm } => {
            let bytes = read(wasm)?;
            match rerun::ledger_host().conformance(*kind, &bytes) {
                Ok(conformance) => {
                    let hash = hex::encode(conformance.hash);
                    if cli.json {
                        println!(
                            "{}",
                            json!({ "conformant": true, "kind": kind, "hash": hash, "bytes": bytes.len(), "fuel_used": conformance.fuel_used })
                        );
                    } else {
                        println!(
                            "conformant {kind} plugin {hash} ({} bytes, {} fuel on the reference input)",
                            bytes.len(),
                            conformance.fuel_used
                        );
                    }
                    Ok(())
                }
                Err(error) => {
                    if cli.json {
                        println!(
                            "{}",
                            json!({ "conformant": false, "kind": kind, "code": error.code(), "message": error.to_string() })
                        );
                    }
                    bail!("not conformant ({}): {error}", error.code())
                }
            }
        }
    }
}

async fn round(cli: &Cli, command: &RoundCommand) -> anyhow::Result<()> {
    let client = Client::new(&cli.server);
    match command {
        RoundCommand::List { from, limit } => {
            let rounds = client.rounds(*from, *limit).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&rounds)?);
                return Ok(());
            }
            for round in rounds {
                println!(
                    "round {:>5}  expert {:>3}  {:<10}  deadline {:>14}  nodes {:>6}  commits {:>6}  reveals {:>6}  measured {:>4}  pool {}",
                    round.round,
                    round.expert,
                    round.phase.name(),
                    round.deadline_ms,
                    round.nodes,
                    round.commits,
                    round.reveals,
                    round.submissions,
                    round.reward_pool,
                );
            }
        }
        RoundCommand::Show { round } => {
            let view = client.round(*round).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&view)?);
                return Ok(());
            }
            let summary = &view.summary;
            println!(
                "round {}  expert {}  pool {}  {}{}",
                summary.round,
                summary.expert,
                summary.pool_id,
                summary.phase.name(),
                summary
                    .abort_reason
                    .as_ref()
                    .map_or(String::new(), |reason| format!(" ({reason})")),
            );
            println!("seed             {}", view.seed);
            println!("assignments_root {}", view.assignments_root);
            println!("scores_root      {}", view.scores_root);
            if let Some(root) = &view.rewards_root {
                println!("rewards_root     {root}");
            }
            println!(
                "reward pool      {}  carried {}",
                summary.reward_pool, view.carried
            );
            for delta in &view.deltas {
                let score = delta
                    .score
                    .map_or("-".to_string(), |score| score.to_string());
                println!("delta  {}  {}  score {score}", delta.node, delta.delta_hash);
            }
            for payout in &view.node_rewards {
                println!("node       {}  {}", payout.key, payout.amount);
            }
            for payout in &view.validator_rewards {
                println!("validator  {}  {}", payout.key, payout.amount);
            }
        }
    }
    Ok(())
}

async fn receipt_command(cli: &Cli, command: &ReceiptCommand) -> anyhow::Result<()> {
    match command {
        ReceiptCommand::Get { round, key, out } => {
            let receipt = Client::new(&cli.server).receipt(*round, key).await?;
            std::fs::write(out, serde_json::to_vec_pretty(&receipt)?)
                .with_context(|| format!("writing {}", out.display()))?;
            if cli.json {
                println!(
                    "{}",
                    json!({ "file": out, "records": receipt.records.len() })
                );
            } else {
                println!(
                    "receipt of {key} in round {round}: {} records under checkpoint {} -> {}",
                    receipt.records.len(),
                    receipt.checkpoint.tree_size,
                    out.display()
                );
            }
        }
        ReceiptCommand::Verify {
            file,
            checkpoint_key,
        } => {
            let receipt: RoundReceipt = serde_json::from_slice(&read(file)?)
                .with_context(|| format!("parsing {}", file.display()))?;
            let proven = receipt::verify(&receipt, checkpoint_key)
                .with_context(|| format!("{} does not verify", file.display()))?;
            if cli.json {
                println!("{}", serde_json::to_string(&proven)?);
                return Ok(());
            }
            println!(
                "verified: round {} for {} under the checkpoint of {} events",
                proven.round, proven.key, proven.tree_size
            );
            println!("ending           {:?}", proven.ending);
            if let Some(shard) = proven.shard {
                println!(
                    "assignment       training items {}..{}",
                    shard.start,
                    shard.start + shard.count
                );
            }
            if let Some(hash) = proven.delta_hash {
                println!("delta            {}", hex::encode(hash));
            }
            if let Some(score) = proven.score {
                println!("score            {score} (accepted: {})", proven.accepted);
            }
            if let Some(amount) = proven.node_reward {
                println!("node reward      {amount}");
            }
            if let Some(amount) = proven.validator_reward {
                println!("validator reward {amount}");
            }
        }
    }
    Ok(())
}

async fn pool(cli: &Cli, command: &PoolCommand) -> anyhow::Result<()> {
    let client = Client::new(&cli.server);
    match command {
        PoolCommand::Register {
            key,
            name,
            train,
            held_out,
            idempotency_key,
        } => {
            let mut items = Vec::with_capacity(train.len() + held_out.len());
            let files = train
                .iter()
                .map(|path| (path, false))
                .chain(held_out.iter().map(|path| (path, true)));
            for (path, held_out) in files {
                let bytes = read(path)?;
                let stored = client
                    .put_blob(&bytes)
                    .await
                    .with_context(|| format!("uploading {}", path.display()))?;
                items.push(PoolItem {
                    bytes: stored.bytes,
                    checksum: *blake3::hash(&bytes).as_bytes(),
                    held_out,
                });
            }
            let spec = PoolSpec {
                name: name.clone(),
                items,
            };
            submit(
                cli,
                key,
                idempotency_key.clone(),
                Action::RegisterPool(spec),
            )
            .await
        }
        PoolCommand::Generate(args) => learn::generate(&cli.server, cli.json, args).await,
        PoolCommand::Show { pool } => {
            let view = client.pool(*pool).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&view)?);
                return Ok(());
            }
            println!(
                "pool {}  {}  curator {}  root {}",
                view.id, view.name, view.curator, view.merkle_root
            );
            for item in &view.items {
                println!(
                    "item {:>6}  {:>10} bytes  {}  {}",
                    item.id,
                    item.item.bytes,
                    hex::encode(item.item.checksum),
                    if item.item.held_out {
                        "held out"
                    } else {
                        "training"
                    },
                );
            }
            Ok(())
        }
    }
}

/// The bytes of the stored modules a policy call names, read from the records that
/// store them: the state keeps only where, and an auditor keeps only these in memory.
/// A module's hash is checked when its event decodes.
async fn logged_modules(
    client: &Client,
    state: &blyan_sdk::core::State,
    result: &PolicyResult,
) -> anyhow::Result<HashMap<Hash, Arc<[u8]>>> {
    let mut modules = HashMap::new();
    let named = result.failures.iter().map(|failure| failure.hash);
    for hash in named.chain([result.module_hash]) {
        let Some(plugin) = state.governance().plugin(&hash) else {
            continue;
        };
        let seq = plugin.stored_seq;
        let record = client
            .events(seq, 1)
            .await?
            .into_iter()
            .next()
            .with_context(|| format!("the server returned no record at seq {seq}"))?;
        let checked = CheckedRecord::check(record)?;
        anyhow::ensure!(
            checked.record.seq == seq,
            "asked for seq {seq}, got another"
        );
        if let Some(module) = checked
            .logged
            .event
            .modules()
            .iter()
            .find(|module| module.hash == hash)
        {
            modules.insert(hash, module.wasm.clone());
        }
    }
    Ok(modules)
}

/// What `blyan replay` checks beyond the log itself.
#[derive(Debug, Clone, Copy)]
struct ReplayOptions {
    rerun_plugins: bool,
    recompute_merges: bool,
    check_heartbeats: bool,
}

async fn replay(cli: &Cli, options: ReplayOptions) -> anyhow::Result<()> {
    let ReplayOptions {
        rerun_plugins,
        recompute_merges,
        check_heartbeats,
    } = options;
    let client = Client::new(&cli.server);
    let head = client.head().await?;
    let mut replayer = Replayer::new(ReplayChecks::AUDIT);
    let host = rerun_plugins.then(rerun::rerun_host);
    let mut reran = (0u64, rerun::Rerun::default());
    let mut merges = learn::Recomputed::default();
    // Windows and heartbeats checked against their blobs.
    let mut liveness_checked = (0u64, 0usize);
    while replayer.len() < head.events {
        let page = client.events(replayer.len(), 1_000).await?;
        if page.is_empty() {
            bail!("the server returned no records from seq {}", replayer.len());
        }
        for record in page.iter().take((head.events - replayer.len()) as usize) {
            let seq = record.seq;
            let checked = CheckedRecord::check(record.clone())
                .with_context(|| format!("replaying seq {seq}"))?;
            // The input comes from the state before the record; it is reported only
            // once the record itself replays.
            let call = match (&host, &checked.logged.cause) {
                (Some(host), Cause::Server(ServerInput::PolicyResult(result))) => {
                    Some((host, rerun::input_of(replayer.state(), result), result))
                }
                _ => None,
            };
            let merge = match &checked.logged.cause {
                Cause::Server(ServerInput::UpdateExpert(update)) if recompute_merges => {
                    Some((replayer.state().merge_plan(update.round), update))
                }
                _ => None,
            };
            replayer
                .push_checked(&checked)
                .with_context(|| format!("replaying seq {seq}"))?;
            if recompute_merges && seq == 0 {
                learn::check_genesis_model(replayer.state())?;
            }
            if let (true, Event::LivenessWindowClosed(window)) =
                (check_heartbeats, &checked.logged.event)
            {
                let blob = client.blob(&window.blob).await.with_context(|| {
                    format!("fetching the blob of liveness window {}", window.window)
                })?;
                let heartbeats =
                    liveness::verify(replayer.state(), &head.network_id, window, &blob)
                        .with_context(|| format!("seq {seq}: liveness window {}", window.window))?;
                liveness_checked.0 += 1;
                liveness_checked.1 += heartbeats;
            }
            if let Some((plan, update)) = merge {
                let plan = plan
                    .with_context(|| format!("seq {seq}: round {} owed no merge", update.round))?;
                let model = replayer.state().model().expect("a merge has a model");
                merges
                    .recompute(&client, model, &plan, update)
                    .await
                    .with_context(|| {
                        format!(
                            "recomputing the merge of round {} at seq {seq}",
                            update.round
                        )
                    })?;
            }
            if let Some((host, input, result)) = call {
                let input =
                    input.with_context(|| format!("re-running the policy call at seq {seq}"))?;
                let modules = logged_modules(&client, replayer.state(), result)
                    .await
                    .with_context(|| format!("reading the modules of the call at seq {seq}"))?;
                let rerun = rerun::rerun(host, |hash| modules.get(hash).cloned(), &input, result)
                    .with_context(|| {
                    format!(
                        "re-running the {} call of round {} at seq {seq}",
                        result.kind, result.round
                    )
                })?;
                if rerun.wall_clock_fallbacks > 0 {
                    eprintln!(
                        "seq {seq}: the {} call of round {} logged {} wall-clock fallback(s), which a re-run can't check; {} of those modules answer now within their fuel",
                        result.kind,
                        result.round,
                        rerun.wall_clock_fallbacks,
                        rerun.wall_clock_answering_now
                    );
                }
                reran.0 += 1;
                reran.1.modules += rerun.modules;
                reran.1.wall_clock_fallbacks += rerun.wall_clock_fallbacks;
                reran.1.wall_clock_answering_now += rerun.wall_clock_answering_now;
            }
        }
    }
    replayer
        .finish()
        .with_context(|| format!("at the head, seq {}", head.events))?;
    let root = hex::encode(replayer.state().root());
    let head_hash = hex::encode(replayer.head_hash());
    let agrees = root == head.state_root && head_hash == head.head_hash;
    let (
        calls,
        rerun::Rerun {
            modules,
            wall_clock_fallbacks,
            wall_clock_answering_now,
        },
    ) = reran;
    if cli.json {
        let mut report = json!({ "events": head.events, "head_hash": head_hash, "state_root": root,
                                 "server_state_root": head.state_root, "agrees": agrees });
        if recompute_merges {
            report["merges_recomputed"] = json!(merges.merges);
            report["held_out_loss_max_relative_difference"] = json!(merges.loss_difference_max);
        }
        if check_heartbeats {
            report["liveness_windows_checked"] = json!(liveness_checked.0);
            report["heartbeats_checked"] = json!(liveness_checked.1);
        }
        if rerun_plugins {
            report["policy_calls_rerun"] = json!(calls);
            report["modules_rerun"] = json!(modules);
            report["wall_clock_fallbacks"] = json!(wall_clock_fallbacks);
            report["wall_clock_fallbacks_answering_now"] = json!(wall_clock_answering_now);
        }
        println!("{report}");
    } else {
        println!(
            "events     {}\nhead_hash  {head_hash}\nstate_root {root}",
            head.events
        );
        if recompute_merges {
            println!(
                "merges     {} recomputed, held-out losses within {:.2e} of the log's",
                merges.merges, merges.loss_difference_max
            );
        }
        if check_heartbeats {
            println!(
                "liveness   {} windows and {} heartbeats checked against their blobs",
                liveness_checked.0, liveness_checked.1
            );
        }
        if rerun_plugins {
            println!(
                "plugins    {calls} policy calls re-run ({modules} modules), {wall_clock_fallbacks} wall-clock fallbacks ({wall_clock_answering_now} answering now)"
            );
        }
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
            heartbeat(&cli, key, idempotency_key.clone()).await?;
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
                    let signer = logged.cause.command().map(|cause| cause.signer.to_hex());
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
        CliCommand::Replay {
            rerun_plugins,
            recompute_merges,
            check_heartbeats,
        } => {
            let checks = ReplayOptions {
                rerun_plugins: *rerun_plugins,
                recompute_merges: *recompute_merges,
                check_heartbeats: *check_heartbeats,
            };
            replay(&cli, checks).await?
        }
        CliCommand::Governance(command) => governance(&cli, command).await?,
        CliCommand::Plugin(command) => plugin(&cli, command)?,
        CliCommand::Round(command) => round(&cli, command).await?,
        CliCommand::Receipt(command) => receipt_command(&cli, command).await?,
        CliCommand::Pool(command) => pool(&cli, command).await?,
        CliCommand::Node(NodeCommand::Run(args)) => {
            learn::node_run(&cli.server, cli.json, args).await?
        }
        CliCommand::Validator(ValidatorCommand::Run(args)) => {
            learn::validator_run(&cli.server, cli.json, args).await?
        }
    }
    Ok(())
}

/// A reader that closed its end of a pipe (`blyan events --json | head`) has what it
/// wanted: the write to stdout that fails with it ends the process quietly, with
/// success, as Unix tools do, instead of a panic's message.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// The error and its causes, each once: a cause whose text its parent already shows
/// (as a transport error shows the request's) is not repeated.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut parent = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if parent.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
        parent = message;
    }
    text
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let threads = match &cli.command {
        CliCommand::Node(NodeCommand::Run(args)) => Some(args.run.threads),
        CliCommand::Validator(ValidatorCommand::Run(args)) => Some(args.threads),
        _ => None,
    };
    if let Some(threads) = threads
        && let Err(error) = blyan_ml::pin_threads(threads)
    {
        eprintln!("error: {}", describe(&error.into()));
        return ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}
