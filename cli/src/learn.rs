//! The commands that learn: `pool generate` labels a dataset with a seeded teacher and
//! registers it, `node run` trains on a node's shards, `validator run` measures the
//! deltas a validator is assigned. Both train from and measure against the base model
//! each round pins on the ledger's parameter chain. Training and measuring are
//! blyan-ml's, on the CPU (or a GPU with the `cuda` feature).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use blyan_ml::{CandleMeasurer, CandleTrainer, Moe, MoeConfig, data};
use blyan_sdk::client::Client;
use blyan_sdk::core::State;
use blyan_sdk::core::experts::MergePlan;
use blyan_sdk::crypto::Keypair;
use blyan_sdk::model::{ExpertUpdate, Hash, ModelSpec, PoolItem, PoolSpec};
use blyan_sdk::protocol::{
    self, Item, Measurer, Node, RoundResult, Task, Trainer, Validator, Work, WorkError,
};
use serde_json::json;

/// What `pool generate` makes.
#[derive(Debug, clap::Args)]
pub struct Generate {
    /// A genesis curator key file.
    #[arg(long)]
    key: PathBuf,
    #[arg(long)]
    name: String,
    /// The seed of the hidden teacher model that labels the items.
    #[arg(long)]
    teacher_seed: u64,
    /// The seed of the items' inputs and noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Training items, assigned to nodes.
    #[arg(long)]
    train: u32,
    /// Held-out items, measured on by validators and never assigned.
    #[arg(long)]
    held_out: u32,
    /// Samples in each item.
    #[arg(long, default_value_t = 64)]
    samples: usize,
    #[arg(long)]
    idempotency_key: Option<String>,
}

/// Labels the items, uploads each as a blob, and registers the pool.
pub async fn generate(server: &str, json_out: bool, args: &Generate) -> anyhow::Result<()> {
    if args.train == 0 || args.held_out == 0 || args.samples == 0 {
        bail!("a pool needs training items, held-out items and samples in each");
    }
    let Some(count) = args.train.checked_add(args.held_out) else {
        bail!("more than 2^32 items");
    };
    let device = blyan_ml::device()?;
    let client = Client::new(server);
    // The teacher has the ledger's model sizes, so its items fit the student.
    let model = client
        .experts()
        .await
        .context("reading the ledger's model (GET /v1/experts)")?;
    let config = MoeConfig {
        inputs: model.inputs as usize,
        hidden: model.hidden as usize,
        outputs: model.outputs as usize,
        experts: model.experts as usize,
    };
    let teacher = Moe::init(config, args.teacher_seed, &device)?;
    let mut items = Vec::new();
    for index in 0..count {
        let bytes = data::item(&teacher, args.seed, index, args.samples)?;
        let stored = client
            .put_blob(&bytes)
            .await
            .with_context(|| format!("uploading item {index}"))?;
        items.push(PoolItem {
            bytes: stored.bytes,
            checksum: *blake3::hash(&bytes).as_bytes(),
            held_out: index >= args.train,
        });
    }
    let bytes: u64 = items.iter().map(|item| item.bytes).sum();
    if !json_out {
        println!(
            "{} training and {} held-out items of {} samples ({bytes} bytes) uploaded",
            args.train, args.held_out, args.samples
        );
    }
    let spec = PoolSpec {
        name: args.name.clone(),
        items,
    };
    crate::submit_as(
        server,
        json_out,
        &args.key,
        args.idempotency_key.clone(),
        blyan_sdk::model::Action::RegisterPool(spec),
    )
    .await
}

/// What `node run` and `validator run` share.
#[derive(Debug, clap::Args)]
pub struct Run {
    /// The node's or validator's key file.
    #[arg(long)]
    key: PathBuf,
    /// Rounds to take part in before exiting; every round, until stopped, when absent.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    rounds: Option<usize>,
    /// Follow the log from this seq; from the head when absent.
    #[arg(long)]
    from: Option<u64>,
    /// CPU threads to train or measure on; `RAYON_NUM_THREADS` when absent, else one,
    /// the fastest at the default size.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `node run`'s own settings.
#[derive(Debug, clap::Args)]
pub struct NodeRun {
    #[command(flatten)]
    pub run: Run,
    /// AdamW steps per delta.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    #[arg(long, default_value_t = 0.003)]
    learning_rate: f64,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 30)]
    heartbeat_secs: u64,
}

/// The message of a round without a model to train from or measure against.
const NO_MODEL: &str = "the ledger's genesis names no model: nothing to train or measure";

/// A trainer that says what it does; it starts from the first round's base model.
struct Reporting {
    trainer: Option<CandleTrainer>,
    steps: usize,
    learning_rate: f64,
    json: bool,
}

impl Trainer for Reporting {
    fn train(&mut self, work: &Work) -> Result<Vec<u8>, WorkError> {
        let base = work.base.as_deref().ok_or(NO_MODEL)?;
        if self.trainer.is_none() {
            let mut trainer = CandleTrainer::new(Moe::from_base(base, &blyan_ml::device()?)?);
            trainer.steps = self.steps;
            trainer.learning_rate = self.learning_rate;
            self.trainer = Some(trainer);
        }
        let trainer = self.trainer.as_mut().expect("set above");
        if !self.json {
            let version = base.hashes.get(1 + work.expert as usize).map(hex::encode);
            println!(
                "round {}: training expert {} (weights {}) on {} items ({} steps)",
                work.round,
                work.expert,
                version.as_deref().map_or("-", |hash| &hash[..12]),
                work.items.len(),
                trainer.steps
            );
        }
        let started = Instant::now();
        let delta = trainer.train(work)?;
        let (first, last) = trainer.losses.unwrap_or((f64::NAN, f64::NAN));
        let seconds = started.elapsed().as_secs_f64();
        if self.json {
            println!(
                "{}",
                json!({ "kind": "training", "round": work.round, "expert": work.expert,
                        "items": work.items.len(),
                        "loss_before": first, "loss_after": last, "seconds": seconds,
                        "delta_bytes": delta.len() })
            );
        } else {
            println!(
                "round {}: training loss {first:.6} -> {last:.6} in {seconds:.2} s; delta of {} bytes",
                work.round,
                delta.len()
            );
        }
        Ok(delta)
    }
}

/// A measurer that says what it measured; it starts from the first round's base model.
struct Measuring {
    measurer: Option<CandleMeasurer>,
    json: bool,
}

impl Measuring {
    /// Every delta of a round without a usable base model measures harmful.
    fn measurer(&mut self, task: &Task) -> Result<&mut CandleMeasurer, String> {
        let base = task.base.as_deref().ok_or(NO_MODEL)?;
        if self.measurer.is_none() {
            let device = blyan_ml::device().map_err(|error| error.to_string())?;
            let model = Moe::from_base(base, &device).map_err(|error| error.to_string())?;
            self.measurer = Some(CandleMeasurer::new(model));
        }
        Ok(self.measurer.as_mut().expect("set above"))
    }
}

impl Measurer for Measuring {
    fn measure(&mut self, task: &Task, held_out: &[Item]) -> i64 {
        let value = match self.measurer(task) {
            Ok(measurer) => measurer.measure(task, held_out),
            Err(error) => {
                eprintln!("round {}: {error}", task.round);
                blyan_ml::HARMFUL
            }
        };
        if self.json {
            println!(
                "{}",
                json!({ "kind": "measurement", "round": task.round, "expert": task.expert,
                        "node": task.node, "measurement": value })
            );
        } else {
            println!(
                "round {}: the delta of {} measures {value} on {} held-out items",
                task.round,
                task.node,
                held_out.len()
            );
        }
        value
    }
}

async fn start(server: &str, run: &Run) -> anyhow::Result<(Client, Keypair, u64)> {
    let key =
        Keypair::read_file(&run.key).with_context(|| format!("reading {}", run.key.display()))?;
    let client = Client::new(server);
    let from = match run.from {
        Some(from) => from,
        None => client.head().await?.events,
    };
    Ok((client, key, from))
}

/// Prints each round's verified receipt, or its failure, as the round ends, and stops
/// after `rounds` of them (never when `None`).
struct Report {
    json: bool,
    rounds: Option<usize>,
    ended: usize,
    failed: usize,
}

impl Report {
    fn new(json: bool, rounds: Option<usize>) -> Report {
        Report {
            json,
            rounds,
            ended: 0,
            failed: 0,
        }
    }

    fn round(&mut self, result: RoundResult) -> ControlFlow<()> {
        self.ended += 1;
        match &result.receipt {
            Ok(proven) if self.json => {
                // Each line says what it is: training, measurement or receipt.
                let mut line = serde_json::to_value(proven).expect("a receipt serialises");
                line["kind"] = json!("receipt");
                println!("{line}");
            }
            Ok(proven) => println!(
                "round {}: receipt verified: {:?}, score {}, node reward {}, validator reward {}",
                result.round,
                proven.ending,
                proven.score.map_or("-".into(), |score| score.to_string()),
                proven
                    .node_reward
                    .map_or("-".into(), |amount| amount.to_string()),
                proven
                    .validator_reward
                    .map_or("-".into(), |amount| amount.to_string()),
            ),
            Err(error) => {
                self.failed += 1;
                eprintln!("round {}: {error}", result.round);
            }
        }
        match self.rounds {
            Some(rounds) if self.ended >= rounds => ControlFlow::Break(()),
            Some(_) | None => ControlFlow::Continue(()),
        }
    }

    /// Fails if any round failed.
    fn finish(&self) -> anyhow::Result<()> {
        if self.failed > 0 {
            bail!("{} of {} rounds failed", self.failed, self.ended);
        }
        Ok(())
    }
}

pub async fn node_run(server: &str, json_out: bool, args: &NodeRun) -> anyhow::Result<()> {
    let (client, key, from) = start(server, &args.run).await?;
    let node = Node::connect(client, key).await?;
    let mut reporting = Reporting {
        trainer: None,
        steps: args.steps,
        learning_rate: args.learning_rate,
        json: json_out,
    };
    if !json_out {
        println!(
            "node {} following the log from seq {from}, {}",
            node.key(),
            how_long(args.run.rounds)
        );
    }
    let mut report = Report::new(json_out, args.run.rounds);
    protocol::follow_node(
        &node,
        &mut reporting,
        from,
        Duration::from_secs(args.heartbeat_secs.max(1)),
        &mut |result| report.round(result),
    )
    .await?;
    report.finish()
}

fn how_long(rounds: Option<usize>) -> String {
    match rounds {
        Some(rounds) => format!("for {rounds} round(s)"),
        None => "until stopped".to_owned(),
    }
}

pub async fn validator_run(server: &str, json_out: bool, args: &Run) -> anyhow::Result<()> {
    let (client, key, from) = start(server, args).await?;
    let validator = Validator::connect(client, key).await?;
    let mut measuring = Measuring {
        measurer: None,
        json: json_out,
    };
    if !json_out {
        println!(
            "validator {} following the log from seq {from}, {}",
            validator.key(),
            how_long(args.rounds)
        );
    }
    let mut report = Report::new(json_out, args.rounds);
    protocol::follow_validator(&validator, &mut measuring, from, &mut |result| {
        report.round(result)
    })
    .await?;
    report.finish()
}

/// What `replay --recompute-merges` checked.
#[derive(Debug, Default)]
pub struct Recomputed {
    pub merges: u64,
    /// The largest relative difference between a recomputed held-out loss and the
    /// logged one: the forward pass's f32 kernels may differ across machines in their
    /// last bits, the merge itself never.
    pub loss_difference_max: f64,
}

/// The largest relative difference of held-out losses `recomputed` may have from the
/// logged ones.
const LOSS_TOLERANCE: f64 = 1e-3;

impl Recomputed {
    /// Recomputes one merge from the blobs its plan names and checks it against the
    /// logged update.
    pub async fn recompute(
        &mut self,
        client: &Client,
        model: &ModelSpec,
        plan: &MergePlan,
        update: &ExpertUpdate,
    ) -> anyhow::Result<()> {
        let shared = client.blob(&plan.shared).await?;
        let mut base = Vec::with_capacity(plan.base.len());
        for hash in &plan.base {
            base.push(client.blob(hash).await?);
        }
        let mut deltas = Vec::with_capacity(plan.deltas.len());
        for (hash, score) in &plan.deltas {
            deltas.push((client.blob(hash).await?, *score));
        }
        let mut held_out = Vec::with_capacity(plan.held_out.len());
        for (id, checksum) in &plan.held_out {
            held_out.push(Item {
                id: *id,
                bytes: client.blob(checksum).await?,
            });
        }
        let next = blyan_ml::next_version(
            MoeConfig::of(model),
            plan.expert as usize,
            &shared,
            &base,
            &deltas,
            &held_out,
            &blyan_ml::Device::Cpu,
        )?;
        let weights_hash = *blake3::hash(&next.merged.weights).as_bytes();
        let merged: Vec<Hash> = next
            .merged
            .merged
            .iter()
            .map(|index| plan.deltas[*index].0)
            .collect();
        if (update.expert, update.version, update.parent_hash)
            != (plan.expert, plan.version, plan.parent_hash)
        {
            bail!("the update is not the next version of the round's expert");
        }
        if merged != update.merged {
            bail!(
                "{} deltas merge, the log says {}",
                merged.len(),
                update.merged.len()
            );
        }
        if weights_hash != update.weights_hash {
            bail!(
                "the weights hash to {}, the log says {}",
                hex::encode(weights_hash),
                hex::encode(update.weights_hash)
            );
        }
        for (recomputed, logged) in [
            (next.parent_held_out_loss, update.parent_held_out_loss),
            (next.held_out_loss, update.held_out_loss),
        ] {
            let difference = if recomputed == logged {
                0.0
            } else {
                (recomputed as f64 - logged as f64).abs() / (logged as f64).max(1.0)
            };
            if difference > LOSS_TOLERANCE {
                bail!("a held-out loss recomputes to {recomputed}, the log says {logged}");
            }
            self.loss_difference_max = self.loss_difference_max.max(difference);
        }
        self.merges += 1;
        Ok(())
    }
}

/// The genesis model's version-0 weights are what its sizes and seed give.
pub fn check_genesis_model(state: &State) -> anyhow::Result<()> {
    let Some(model) = state.model() else {
        return Ok(());
    };
    let (shared, experts) = blyan_ml::initial_weights(model)?;
    let hash = |bytes: &[u8]| *blake3::hash(bytes).as_bytes();
    let expected: Vec<Hash> = experts.iter().map(|bytes| hash(bytes)).collect();
    if hash(&shared) != model.shared_hash || expected != model.expert_hashes {
        bail!(
            "the genesis model's weights are not those of its sizes and seed {}",
            model.seed
        );
    }
    Ok(())
}
