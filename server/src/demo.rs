//! `blyan-ledger demo`: a whole local network over the real API. It starts `serve` as a
//! child process of this binary on a genesis with small round parameters, admits the
//! validators through governance, registers a teacher-labelled pool, and runs the nodes
//! (candle training) and validators (candle measurement) as tasks that speak HTTP and
//! follow the WebSocket like any other client. Each round is one burn past the
//! threshold; the demo prints each phase as the round reaches it, and a table row once
//! the round ended and its merge is on the parameter chain.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use blyan_ml::{CandleMeasurer, CandleTrainer, Device, Moe, MoeConfig, data};
use blyan_sdk::api::ExpertVersionView;
use blyan_sdk::client::Client;
use blyan_sdk::codec;
use blyan_sdk::crypto::Keypair;
use blyan_sdk::genesis::DevKeys;
use blyan_sdk::model::{
    Action, Burn, Capabilities, Command, Hash, LOSS_SCALE, Parameters, Phase, PoolItem, PoolSpec,
};
use blyan_sdk::protocol::{self, Node, Validator};

/// What `demo` runs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub nodes: usize,
    pub validators: usize,
    pub rounds: usize,
    /// Kept after the demo when given; a temporary folder, removed, otherwise.
    pub data_dir: Option<PathBuf>,
    /// The server's address; a free loopback port when absent.
    pub listen: Option<std::net::SocketAddr>,
    /// Nodes of another process that the rounds wait for; the server keeps serving
    /// after the last round, until interrupted, when there are any.
    pub external_nodes: usize,
}

impl DemoConfig {
    /// Every node of a round: the demo's own and the external ones.
    fn nodes_all(&self) -> usize {
        self.nodes + self.external_nodes
    }
}

/// The demo genesis's network.
const NETWORK_ID: &str = "blyan-demo";

/// Burns per round: the demo genesis's threshold.
const THRESHOLD: u128 = 1_000;

/// Items each node trains on, and the pool's held-out items.
const ITEMS_PER_NODE: u32 = 6;
const HELD_OUT: u32 = 4;

fn parameters(config: &DemoConfig) -> Parameters {
    let per_delta = config.validators.min(3) as u32;
    Parameters {
        round_burn_threshold: THRESHOLD,
        nodes_per_round_min: config.nodes_all().min(3) as u32,
        validators_per_round: config.validators as u32,
        validators_per_delta: per_delta,
        validator_quorum: per_delta / 2 + 1,
        commit_deadline_ms: 60_000,
        reveal_deadline_ms: 60_000,
        validate_deadline_ms: 60_000,
        liveness_window_ms: 1_000,
        heartbeat_timeout_ms: 600_000,
        delta_bytes_max: 1 << 20,
        ..Parameters::default()
    }
}

/// The server, killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback address with a free port.
fn free_address() -> std::io::Result<std::net::SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn start_server(dir: &Path, config: &DemoConfig) -> anyhow::Result<(Child, String)> {
    let keys = DevKeys::derive();
    let mut genesis = keys.genesis();
    genesis.network_id = NETWORK_ID.into();
    genesis.parameters = parameters(config);
    let genesis_path = dir.join("genesis.json");
    std::fs::write(&genesis_path, serde_json::to_vec_pretty(&genesis)?)?;
    let operator_path = dir.join("operator.json");
    if !operator_path.exists() {
        keys.operator.write_file(&operator_path)?;
    }
    let address = match config.listen {
        // Another server there would answer in this one's place; port 0 would give
        // the nodes no address to reach.
        Some(address) if address.port() == 0 => bail!("--listen needs a port, not 0"),
        Some(address) => {
            std::net::TcpListener::bind(address)
                .with_context(|| format!("the demo can't listen on {address}"))?;
            address
        }
        None => free_address()?,
    };
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = std::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", &address.to_string()])
        .arg("--genesis")
        .arg(&genesis_path)
        .arg("--operator-key")
        .arg(&operator_path)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting the server")?;
    Ok((Child(child), format!("http://{address}")))
}

async fn wait_healthy(client: &Client, child: &mut Child, dir: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Its own server: another one that took the port would name another network.
        if let Ok(head) = client.head().await {
            if head.network_id == NETWORK_ID {
                return Ok(());
            }
            bail!(
                "another server ({}) answers on the demo's port",
                head.network_id
            );
        }
        if let Some(status) = child.0.try_wait()? {
            bail!(
                "the server exited ({status}); see {}",
                dir.join("server.log").display()
            );
        }
        if Instant::now() > deadline {
            bail!("the server did not answer within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Signs and submits commands as the dev genesis's role keys.
struct Operator {
    client: Client,
    network_id: String,
    keys: DevKeys,
}

impl Operator {
    async fn submit(
        &self,
        key: &Keypair,
        idempotency: &str,
        action: Action,
    ) -> anyhow::Result<u64> {
        let command = Command {
            idempotency_key: idempotency.as_bytes().to_vec(),
            action,
        };
        Ok(self
            .client
            .submit(&codec::sign_command(key, &self.network_id, &command))
            .await
            .with_context(|| idempotency.to_owned())?
            .seq)
    }

    /// Admits `validator` from round 1: one governance key proposes, a second approves.
    async fn admit(&self, index: usize, validator: &Keypair) -> anyhow::Result<()> {
        let [proposer, approver, ..] = &self.keys.governance[..] else {
            bail!("the dev genesis has governance keys");
        };
        let proposal = Action::ProposeValidator {
            validator: validator.public(),
            admit: true,
            activation_round: 1,
        };
        self.submit(proposer, &format!("admit-{index}"), proposal)
            .await?;
        let governance = self.client.governance().await?;
        let proposal = governance
            .proposals
            .last()
            .context("the proposal is listed")?;
        let hash: Hash = blyan_sdk::model::decode_hex(&proposal.content_hash)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .context("a content hash is 32 bytes of hex")?;
        let approval = Action::ApproveProposal {
            proposal_id: proposal.id,
            proposal_hash: Some(hash),
        };
        self.submit(approver, &format!("approve-{index}"), approval)
            .await?;
        Ok(())
    }

    /// Labels `training + held_out` items with a hidden teacher of the ledger's model
    /// sizes, uploads them and registers the pool.
    async fn register_pool(&self, training: u32, held_out: u32) -> anyhow::Result<()> {
        let model = self.client.experts().await?;
        let config = MoeConfig {
            inputs: model.inputs as usize,
            hidden: model.hidden as usize,
            outputs: model.outputs as usize,
            experts: model.experts as usize,
        };
        let teacher = Moe::init(config, 1_001, &Device::Cpu)?;
        let mut items = Vec::new();
        for index in 0..training + held_out {
            let bytes = data::item(&teacher, 7, index, 64)?;
            let stored = self.client.put_blob(&bytes).await?;
            items.push(PoolItem {
                bytes: stored.bytes,
                checksum: *blake3::hash(&bytes).as_bytes(),
                held_out: index >= training,
            });
        }
        let spec = PoolSpec {
            name: "demo".into(),
            items,
        };
        self.submit(&self.keys.curator, "pool", Action::RegisterPool(spec))
            .await?;
        Ok(())
    }
}

fn demo_key(role: &str, index: usize) -> Keypair {
    Keypair::from_secret(blake3::derive_key(
        "blyan-ledger 2026-12 demo key v1",
        format!("{role}-{index}").as_bytes(),
    ))
}

/// A stand-in base model; every round replaces it with the one it pins.
fn stand_in() -> anyhow::Result<Moe> {
    Ok(Moe::init(MoeConfig::default(), 0, &Device::Cpu)?)
}

/// One row of the round table.
fn row(round: &blyan_sdk::api::RoundView, version: Option<&ExpertVersionView>) -> String {
    let loss = |value: Option<u64>| {
        value
            .filter(|loss| *loss != u64::MAX)
            .map_or("-".to_owned(), |loss| {
                format!("{:.6}", loss as f64 / LOSS_SCALE)
            })
    };
    let held_out = match version {
        Some(version) => format!(
            "{} -> {} (v{})",
            loss(version.parent_held_out_loss),
            loss(version.held_out_loss),
            version.version
        ),
        None => "unchanged".to_owned(),
    };
    let scored = round
        .deltas
        .iter()
        .filter(|delta| delta.score > Some(0))
        .count();
    let paid: u128 = round
        .node_rewards
        .iter()
        .chain(&round.validator_rewards)
        .map(|payout| payout.amount)
        .sum();
    let plugins = round
        .plugins
        .iter()
        .map(|pinned| hex::encode(&pinned.hash[..4]))
        .collect::<Vec<_>>()
        .join("/");
    let phase = match round.summary.phase {
        Phase::Finalized => "finalized".to_owned(),
        phase => format!(
            "{} ({})",
            phase.name(),
            round.summary.abort_reason.as_deref().unwrap_or("")
        ),
    };
    format!(
        "{:>5}  {:>6}  {:<36}  {:>5}  {:>6}  {:>7}  {}  {}",
        round.summary.round,
        round.summary.expert,
        held_out,
        round.summary.reveals,
        format!("{scored}/{}", round.deltas.len()),
        paid,
        plugins,
        phase
    )
}

/// Runs the demo and prints its table.
pub async fn run(config: DemoConfig) -> anyhow::Result<()> {
    if config.nodes == 0 || config.validators == 0 || config.rounds == 0 {
        bail!("a demo needs at least one node, one validator and one round");
    }
    let started = Instant::now();
    let (dir, temporary) = match &config.data_dir {
        Some(dir) => (dir.clone(), false),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.subsec_nanos());
            let name = format!("blyan-demo-{}-{nanos:09}", std::process::id());
            (std::env::temp_dir().join(name), true)
        }
    };
    // A demo's rounds, burns and keys are its own: a folder that holds one already
    // would replay it and refuse the same commands again.
    if dir.join("data").exists() {
        bail!(
            "{} holds a demo already; give a new --data-dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Ctrl-C drops the network (the server is killed with it) and keeps the folder;
    // once the rounds are done (a demo with external nodes serves on), it is the end.
    let done = AtomicBool::new(false);
    let result = tokio::select! {
        result = run_in(&config, &dir, started, &done) => result,
        _ = tokio::signal::ctrl_c() => if done.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(anyhow::anyhow!("interrupted"))
        },
    };
    // A failed demo keeps its folder: the server log says why.
    if temporary && result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!(
            "the demo's log, blobs and server log are in {}",
            dir.display()
        );
    }
    result
}

async fn run_in(
    config: &DemoConfig,
    dir: &Path,
    started: Instant,
    done: &AtomicBool,
) -> anyhow::Result<()> {
    let (mut child, url) = start_server(dir, config)?;
    let client = Client::new(&url);
    wait_healthy(&client, &mut child, dir).await?;
    let head = client.head().await?;
    eprintln!(
        "server {url} (network {}): {} nodes, {} validators, {} rounds",
        head.network_id, config.nodes, config.validators, config.rounds
    );
    let operator = Operator {
        client: client.clone(),
        network_id: head.network_id,
        keys: DevKeys::derive(),
    };
    let validators: Vec<Keypair> = (0..config.validators)
        .map(|index| demo_key("validator", index))
        .collect();
    for (index, validator) in validators.iter().enumerate() {
        operator.admit(index, validator).await?;
    }
    operator
        .register_pool(ITEMS_PER_NODE * config.nodes_all() as u32, HELD_OUT)
        .await?;
    let model = client.experts().await?;
    let capabilities = Capabilities {
        gpu_model: "cpu".into(),
        vram_mib: 1,
        experts: (0..model.experts).collect(),
        endpoint: "http://127.0.0.1".into(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    let from = client.head().await?.events;
    for index in 0..config.nodes {
        let node = Node::connect(client.clone(), demo_key("node", index)).await?;
        node.register(capabilities.clone()).await?;
        let mut trainer = CandleTrainer::new(stand_in()?);
        tasks.spawn(async move {
            protocol::follow_node(
                &node,
                &mut trainer,
                from,
                Duration::from_secs(5),
                &mut |_| ControlFlow::Continue(()),
            )
            .await
        });
    }
    for key in validators {
        let validator = Validator::connect(client.clone(), key).await?;
        let mut measurer = CandleMeasurer::new(stand_in()?);
        tasks.spawn(async move {
            protocol::follow_validator(&validator, &mut measurer, from, &mut |_| {
                ControlFlow::Continue(())
            })
            .await
        });
    }
    eprintln!(
        "{} validators admitted, a pool of {} training and {HELD_OUT} held-out items, {} nodes registered ({:.1} s)",
        config.validators,
        ITEMS_PER_NODE * config.nodes_all() as u32,
        config.nodes,
        started.elapsed().as_secs_f64()
    );
    if config.external_nodes > 0 {
        wait_external(&client, config, &mut tasks, &mut child).await?;
    }
    println!(
        "{:>5}  {:>6}  {:<36}  {:>5}  {:>6}  {:>7}  {:<26}  ending",
        "round",
        "expert",
        "held-out loss (version)",
        "nodes",
        "scored",
        "paid",
        "plugins (shard/score/reward)"
    );
    let mut first_loss = None;
    let mut last_loss = None;
    for round in 1..=config.rounds as u64 {
        operator
            .submit(
                &operator.keys.burn_oracle,
                &format!("burn-{round}"),
                Action::RecordBurn(Burn {
                    chain_tx_id: format!("demo-burn-{round}"),
                    burner: "demo".into(),
                    amount: THRESHOLD,
                }),
            )
            .await?;
        let view = follow_round(&client, round, &mut tasks, &mut child).await?;
        let version = if view.deltas.iter().any(|delta| delta.score > Some(0)) {
            Some(wait_version(&client, round, view.summary.expert).await?)
        } else {
            None
        };
        let measured = |loss: Option<u64>| loss.filter(|loss| *loss != u64::MAX);
        if let Some(version) = &version {
            first_loss = first_loss.or(measured(version.parent_held_out_loss));
            last_loss = measured(version.held_out_loss).or(last_loss);
        }
        println!("{}", row(&view, version.as_ref()));
    }
    tasks.abort_all();
    if let (Some(first), Some(last)) = (first_loss, last_loss) {
        println!(
            "held-out loss {:.6} -> {:.6} over {} rounds in {:.1} s",
            first as f64 / LOSS_SCALE,
            last as f64 / LOSS_SCALE,
            config.rounds,
            started.elapsed().as_secs_f64()
        );
    }
    done.store(true, Ordering::SeqCst);
    if config.external_nodes > 0 {
        eprintln!("the rounds are done; serving {url} until interrupted (Ctrl-C)");
        loop {
            if let Some(status) = child.0.try_wait()? {
                bail!("the server exited ({status}); see its server.log");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// Waits until the external nodes registered, as many nodes in all as the demo's and
/// theirs; fails if a participant stopped.
async fn wait_external(
    client: &Client,
    config: &DemoConfig,
    tasks: &mut Participants,
    server: &mut Child,
) -> anyhow::Result<()> {
    eprintln!(
        "waiting for {} external node(s) to register at {} (for example: python -m blyan --server {} node --key node.json)",
        config.external_nodes,
        client.base_url(),
        client.base_url()
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        check_running(tasks, server)?;
        if client.state().await?.nodes >= config.nodes_all() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the external nodes did not register within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The demo's own nodes and validators.
type Participants = tokio::task::JoinSet<Result<(), protocol::ProtocolError>>;

/// Fails if the server or a participant stopped.
fn check_running(tasks: &mut Participants, server: &mut Child) -> anyhow::Result<()> {
    if let Some(status) = server.0.try_wait()? {
        bail!("the server exited ({status}); see its server.log");
    }
    match tasks.try_join_next() {
        None => Ok(()),
        Some(Ok(Ok(()))) => bail!("a participant stopped"),
        Some(Ok(Err(error))) => bail!("a participant failed: {error}"),
        Some(Err(error)) => bail!("a participant panicked: {error}"),
    }
}

/// Waits until `round` ended, printing each phase it reaches; fails if a participant
/// stopped.
async fn follow_round(
    client: &Client,
    round: u64,
    tasks: &mut Participants,
    server: &mut Child,
) -> anyhow::Result<blyan_sdk::api::RoundView> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut phase = None;
    loop {
        check_running(tasks, server)?;
        if let Ok(view) = client.round(round).await {
            if phase != Some(view.summary.phase) {
                phase = Some(view.summary.phase);
                let summary = &view.summary;
                eprintln!(
                    "  round {round} (expert {}): {} ({} commits, {} reveals, {} of {} validators)",
                    summary.expert,
                    summary.phase.name(),
                    summary.commits,
                    summary.reveals,
                    summary.submissions,
                    summary.committee.len()
                );
            }
            if view.summary.phase.is_over() {
                return Ok(view);
            }
        }
        if Instant::now() > deadline {
            bail!("round {round} did not end within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the merge of `round` is on `expert`'s chain.
async fn wait_version(
    client: &Client,
    round: u64,
    expert: u32,
) -> anyhow::Result<ExpertVersionView> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let head = client.experts().await?;
        let newest = head
            .versions
            .get(expert as usize)
            .context("the model has the round's expert")?;
        if newest.round == Some(round) {
            return Ok(newest.clone());
        }
        if Instant::now() > deadline {
            bail!("round {round}'s merge did not reach the chain within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
