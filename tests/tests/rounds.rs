//! Learning rounds through the real binary: nodes and validators run the SDK's
//! protocol clients (with small test trainers and measurers) against `blyan-ledger
//! serve`, a round goes from the threshold burn to its rewards, and every receipt
//! verifies offline; each wrong round command is refused with its own 4xx; a `kill -9`
//! in each phase loses nothing; and `blyan pool generate`, `blyan node run` and
//! `blyan validator run` learn a round for real.

use std::path::Path;
use std::time::{Duration, Instant};

#[path = "../../plugins/host/tests/hostile/mod.rs"]
mod hostile;

use blyan_e2e::{Server, expect_refused, metric, run_binary};
use blyan_sdk::api::ExpertVersionView;
use blyan_sdk::client::Client;
use blyan_sdk::codec;
use blyan_sdk::core::rounds;
use blyan_sdk::crypto::{Keypair, PublicKey};
use blyan_sdk::genesis::DevKeys;
use blyan_sdk::merkle;
use blyan_sdk::model::{
    Action, Burn, Capabilities, Command, Event, Hash, Parameters, Phase, PluginKind,
    PluginProposal, PoolItem, PoolSpec, Reveal,
};
use blyan_sdk::protocol::{self, Item, Measurer, Node, Task, Trainer, Validator, WorkError};
use blyan_sdk::receipt::{self, Ending, RoundReceipt};

const THRESHOLD: u128 = 1_000;

fn parameters() -> Parameters {
    Parameters {
        round_burn_threshold: THRESHOLD,
        nodes_per_round_min: 3,
        validators_per_round: 4,
        validators_per_delta: 3,
        validator_quorum: 2,
        commit_deadline_ms: 30_000,
        reveal_deadline_ms: 30_000,
        validate_deadline_ms: 30_000,
        liveness_window_ms: 1_000,
        heartbeat_timeout_ms: 600_000,
        delta_bytes_max: 4_096,
        ..Parameters::default()
    }
}

/// A server on a dev genesis with `parameters`, and the keys of every role.
struct Network {
    server: Server,
    keys: DevKeys,
    network_id: String,
}

impl Network {
    async fn start(dir: &Path, parameters: Parameters) -> Network {
        Network::start_with(dir, parameters, &[]).await
    }

    /// A network whose server also takes `arguments`.
    async fn start_with(dir: &Path, parameters: Parameters, arguments: &[&str]) -> Network {
        let keys = DevKeys::derive();
        let mut genesis = keys.genesis();
        genesis.parameters = parameters;
        let genesis_path = dir.join("genesis.json");
        std::fs::write(&genesis_path, serde_json::to_vec(&genesis).unwrap()).unwrap();
        let operator_path = dir.join("operator.json");
        keys.operator.write_file(&operator_path).unwrap();
        let server = Server::start(
            &dir.join("data"),
            &[
                "--genesis",
                genesis_path.to_str().unwrap(),
                "--operator-key",
                operator_path.to_str().unwrap(),
            ]
            .into_iter()
            .chain(arguments.iter().copied())
            .collect::<Vec<_>>(),
        )
        .await;
        let network_id = server.network_id().await;
        Network {
            server,
            keys,
            network_id,
        }
    }

    fn client(&self) -> Client {
        self.server.client()
    }

    fn signed(&self, key: &Keypair, idempotency: &str, action: Action) -> Vec<u8> {
        let command = Command {
            idempotency_key: idempotency.as_bytes().to_vec(),
            action,
        };
        codec::encode_signed_command(&codec::sign_command(key, &self.network_id, &command))
    }

    async fn submit(&self, key: &Keypair, idempotency: &str, action: Action) -> u64 {
        let command = Command {
            idempotency_key: idempotency.as_bytes().to_vec(),
            action,
        };
        self.client()
            .submit(&codec::sign_command(key, &self.network_id, &command))
            .await
            .unwrap_or_else(|error| panic!("{idempotency}: {error}"))
            .seq
    }

    /// Puts `proposal` through governance: one key proposes, a second approves.
    async fn govern(&self, name: &str, proposal: Action) {
        let [proposer, approver, ..] = &self.keys.governance[..] else {
            panic!("the dev genesis has governance keys");
        };
        self.submit(proposer, &format!("propose-{name}"), proposal)
            .await;
        let governance = self.client().governance().await.unwrap();
        let proposal = governance.proposals.last().expect("the proposal is listed");
        let hash: Hash = hex::decode(&proposal.content_hash)
            .unwrap()
            .try_into()
            .unwrap();
        self.submit(
            approver,
            &format!("approve-{name}"),
            Action::ApproveProposal {
                proposal_id: proposal.id,
                proposal_hash: Some(hash),
            },
        )
        .await;
    }

    /// Admits `validator` through governance, from round 1.
    async fn admit(&self, validator: &PublicKey) {
        self.govern(
            &validator.to_hex()[..16],
            Action::ProposeValidator {
                validator: *validator,
                admit: true,
                activation_round: 1,
            },
        )
        .await;
    }

    /// Uploads `training` and `held_out` items and registers them as a pool.
    async fn register_pool(&self, training: usize, held_out: usize) {
        let items = (0..training + held_out)
            .map(|index| {
                let bytes = format!("item {index} of the pool").into_bytes();
                (bytes, index >= training)
            })
            .collect();
        self.register_items(items).await;
    }

    /// Uploads each item's bytes and registers them as a pool; `true` holds one out.
    async fn register_items(&self, items: Vec<(Vec<u8>, bool)>) {
        let client = self.client();
        let mut spec = PoolSpec {
            name: "e2e".into(),
            items: Vec::new(),
        };
        for (bytes, held_out) in items {
            client.put_blob(&bytes).await.unwrap();
            spec.items.push(PoolItem {
                bytes: bytes.len() as u64,
                checksum: *blake3::hash(&bytes).as_bytes(),
                held_out,
            });
        }
        self.submit(&self.keys.curator, "pool", Action::RegisterPool(spec))
            .await;
    }

    /// Admits `validators` validators, registers a pool of 8 training and 2 held-out
    /// items, and registers `nodes` nodes: what a round needs before its burn.
    async fn ready(&self, validators: usize, nodes: usize) -> (Vec<Keypair>, Vec<Keypair>) {
        let validators: Vec<Keypair> = (0..validators)
            .map(|i| keypair(&format!("validator-{i}")))
            .collect();
        for validator in &validators {
            self.admit(&validator.public()).await;
        }
        self.register_pool(8, 2).await;
        let nodes: Vec<Keypair> = (0..nodes).map(|i| keypair(&format!("node-{i}"))).collect();
        for node in &nodes {
            self.submit(node, "register", Action::RegisterNode(capabilities()))
                .await;
        }
        (validators, nodes)
    }

    async fn burn(&self, tx: &str, amount: u128) -> u64 {
        let burn = Burn {
            chain_tx_id: tx.into(),
            burner: "burner".into(),
            amount,
        };
        self.submit(&self.keys.burn_oracle, tx, Action::RecordBurn(burn))
            .await
    }

    /// Waits until round `round` ended, finalized or aborted.
    async fn wait_ended(&self, round: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(view) = self.client().round(round).await
                && view.summary.phase.is_over()
            {
                return;
            }
            assert!(Instant::now() < deadline, "round {round} never ended");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until round `round` is in `phase`.
    async fn wait_phase(&self, round: u64, phase: Phase) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(view) = self.client().round(round).await
                && view.summary.phase == phase
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "round {round} never reached {phase:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn capabilities() -> Capabilities {
    Capabilities {
        gpu_model: "test".into(),
        vram_mib: 1,
        experts: vec![0],
        endpoint: "http://node".into(),
    }
}

fn keypair(role: &str) -> Keypair {
    Keypair::from_secret(*blake3::hash(role.as_bytes()).as_bytes())
}

/// A node that "trains" by hashing its items: its delta names the node, the round and
/// every item it was given, and starts with `quality` (`g` helps, `b` harms).
struct HashTrainer {
    key: PublicKey,
    quality: u8,
}

impl Trainer for HashTrainer {
    fn train(&mut self, work: &protocol::Work) -> Result<Vec<u8>, WorkError> {
        assert!(!work.items.is_empty(), "a node is given items");
        let mut delta = vec![self.quality];
        delta.extend_from_slice(&self.key.0);
        delta.extend_from_slice(&work.round.to_be_bytes());
        for item in &work.items {
            delta.extend_from_slice(blake3::hash(&item.bytes).as_bytes());
        }
        Ok(delta)
    }
}

/// Measures a delta by its first byte: `g` is worth +100, anything else −100; a liar
/// says the opposite.
struct ByteMeasurer {
    liar: bool,
}

impl Measurer for ByteMeasurer {
    fn measure(&mut self, task: &Task, held_out: &[Item]) -> i64 {
        assert!(
            !held_out.is_empty(),
            "a validator measures on held-out items"
        );
        let good = task.delta.first() == Some(&b'g');
        if good != self.liar { 100 } else { -100 }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_round_runs_from_the_threshold_burn_to_verified_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let network = Network::start(dir.path(), parameters()).await;
    let validators: Vec<Keypair> = (0..4).map(|i| keypair(&format!("validator-{i}"))).collect();
    for validator in &validators {
        network.admit(&validator.public()).await;
    }
    network.register_pool(12, 3).await;

    // Four nodes, one of which trains badly.
    let mut nodes = Vec::new();
    for index in 0..4 {
        let key = keypair(&format!("node-{index}"));
        let node = Node::connect(network.client(), key.clone()).await.unwrap();
        // A registration counts as the node's first heartbeat.
        node.register(capabilities()).await.unwrap();
        nodes.push((node, if index == 3 { b'b' } else { b'g' }));
    }
    let from = network.client().head().await.unwrap().events;
    let mut running = Vec::new();
    for (node, quality) in nodes.clone() {
        running.push(tokio::spawn(async move {
            let mut trainer = HashTrainer {
                key: node.key(),
                quality,
            };
            let receipts =
                protocol::run_node(&node, &mut trainer, from, 1, Duration::from_secs(5)).await;
            (node.key(), receipts)
        }));
    }
    let mut measuring = Vec::new();
    for (index, key) in validators.iter().enumerate() {
        let validator = Validator::connect(network.client(), key.clone())
            .await
            .unwrap();
        measuring.push(tokio::spawn(async move {
            // One validator of four lies.
            let mut measurer = ByteMeasurer { liar: index == 0 };
            let receipts = protocol::run_validator(&validator, &mut measurer, from, 1).await;
            (validator.key(), receipts)
        }));
    }

    // Below the threshold nothing opens; the burn that crosses it opens round 1.
    network.burn("burn-1", THRESHOLD / 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(network.client().rounds(0, 100).await.unwrap().is_empty());
    network.burn("burn-2", THRESHOLD / 2).await;

    let timeout = Duration::from_secs(120);
    let mut node_receipts = Vec::new();
    for task in running {
        let (key, receipts) = tokio::time::timeout(timeout, task)
            .await
            .expect("the node finished its round")
            .unwrap();
        let receipts = receipts.unwrap_or_else(|error| panic!("node {key}: {error}"));
        let result = receipts.into_iter().next().unwrap();
        assert_eq!(result.round, 1);
        node_receipts.push((key, result.receipt.unwrap()));
    }
    let mut validator_receipts = Vec::new();
    for task in measuring {
        let (key, receipts) = tokio::time::timeout(timeout, task)
            .await
            .expect("the validator finished its round")
            .unwrap();
        let receipts = receipts.unwrap_or_else(|error| panic!("validator {key}: {error}"));
        let result = receipts.into_iter().next().unwrap();
        validator_receipts.push((key, result.receipt.unwrap()));
    }

    let view = network.client().round(1).await.unwrap();
    assert_eq!(view.summary.phase, Phase::Finalized, "{view:?}");
    assert_eq!(view.summary.reveals, 4);
    // Every node proved its shard, its delta, its score and its reward.
    for (index, (key, proven)) in node_receipts.iter().enumerate() {
        assert_eq!(proven.key, *key);
        assert_eq!(proven.ending, Ending::Finalized);
        assert!(proven.shard.is_some_and(|shard| shard.count > 0));
        let delta = view.deltas.iter().find(|delta| delta.node == *key).unwrap();
        assert_eq!(hex::encode(proven.delta_hash.unwrap()), delta.delta_hash);
        assert_eq!(proven.score, delta.score);
        let reward = proven.node_reward.unwrap();
        if index == 3 {
            assert_eq!((proven.score, reward, proven.accepted), (Some(0), 0, false));
        } else {
            assert!(proven.score.unwrap() > 0 && reward > 0 && proven.accepted);
        }
    }
    // The liar agreed with no final score and earned nothing; the honest ones earned.
    for (key, proven) in &validator_receipts {
        let reward = proven.validator_reward.unwrap();
        if *key == validators[0].public() {
            assert_eq!(reward, 0);
        } else {
            assert!(reward > 0, "honest validator {key}");
        }
    }
    // Any pool item's inclusion proof verifies against the pool's root.
    let pool = network.client().pool(view.summary.pool_id).await.unwrap();
    for item in [0, 7, 14] {
        let proof = network
            .client()
            .item_proof(view.summary.pool_id, item)
            .await
            .unwrap();
        assert_eq!(proof.merkle_root, pool.merkle_root);
        let hashes: Vec<Hash> = proof
            .proof
            .hashes
            .iter()
            .map(|hash| hex::decode(hash).unwrap().try_into().unwrap())
            .collect();
        let root: Hash = hex::decode(&pool.merkle_root).unwrap().try_into().unwrap();
        let leaf: Hash = hex::decode(&proof.leaf).unwrap().try_into().unwrap();
        assert!(merkle::verify(&root, item as usize, 15, &leaf, &hashes));
        assert!(!merkle::verify(
            &root,
            item as usize + 1,
            15,
            &leaf,
            &hashes
        ));
    }
    // Payouts plus what carries over are the round's pool, to the base unit.
    let paid: u128 = view
        .node_rewards
        .iter()
        .chain(&view.validator_rewards)
        .map(|payout| payout.amount)
        .sum();
    assert_eq!(paid + view.carried, view.summary.reward_pool);
    assert!(view.summary.reward_pool > 0);

    // The CLI fetches a receipt and verifies it offline; any altered byte fails it.
    let url = network.server.url.clone();
    let file = dir.path().join("receipt.json");
    let node_key = node_receipts[0].0.to_hex();
    let operator = network.keys.operator.public().to_hex();
    let (ok, _, stderr) = run_binary(
        "blyan",
        &[
            "--server",
            &url,
            "receipt",
            "get",
            "--round",
            "1",
            "--key",
            &node_key,
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    let verify = |path: &Path, key: &str| {
        run_binary(
            "blyan",
            &[
                "--json",
                "receipt",
                "verify",
                path.to_str().unwrap(),
                "--checkpoint-key",
                key,
            ],
        )
    };
    let (ok, stdout, stderr) = verify(&file, &operator);
    assert!(ok, "{stderr}");
    let proven: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(proven["key"], node_key);
    assert_eq!(
        proven["node_reward"],
        node_receipts[0].1.node_reward.unwrap().to_string()
    );
    // Another key is not the operator's.
    let (ok, _, stderr) = verify(&file, &validators[1].public().to_hex());
    assert!(!ok && stderr.contains("signature"), "{stderr}");
    // Every digit of the file, changed, breaks it: checked in process for each one,
    // and through the CLI for one.
    let text = std::fs::read_to_string(&file).unwrap();
    let operator_key = network.keys.operator.public();
    let mut altered = 0;
    for (position, byte) in text.bytes().enumerate() {
        if !byte.is_ascii_hexdigit() {
            continue;
        }
        let mut bytes = text.clone().into_bytes();
        bytes[position] = if byte == b'1' { b'2' } else { b'1' };
        let Ok(tampered) = serde_json::from_slice::<RoundReceipt>(&bytes) else {
            altered += 1;
            continue;
        };
        assert!(
            receipt::verify(&tampered, &operator_key).is_err(),
            "changing byte {position} of the receipt went unnoticed"
        );
        altered += 1;
    }
    assert!(altered > 1_000, "{altered} digits altered");
    // Hex has one spelling, and a proof one length: an upper-case digit or a hash
    // appended to a proof is a different receipt.
    let original: RoundReceipt = serde_json::from_str(&text).unwrap();
    let upper = text.replacen(
        &hex::encode(original.checkpoint.merkle_root),
        &hex::encode(original.checkpoint.merkle_root).to_uppercase(),
        1,
    );
    assert!(serde_json::from_str::<RoundReceipt>(&upper).is_err());
    let mut longer = original.clone();
    longer.records[0].proof.push([0; 32]);
    assert!(receipt::verify(&longer, &operator_key).is_err());
    let mut longer = original.clone();
    longer.payouts[0].hashes.push([0; 32]);
    assert!(receipt::verify(&longer, &operator_key).is_err());
    assert!(receipt::verify(&original, &operator_key).is_ok());
    let mut bytes = text.into_bytes();
    let position = bytes.len() / 2
        + bytes[bytes.len() / 2..]
            .iter()
            .position(|byte| byte.is_ascii_hexdigit())
            .unwrap();
    bytes[position] = if bytes[position] == b'1' { b'2' } else { b'1' };
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, bytes).unwrap();
    let (ok, _, stderr) = verify(&tampered, &operator);
    assert!(!ok, "a tampered receipt verified");
    assert!(stderr.contains("does not verify"), "{stderr}");

    // Any event's proof against the latest checkpoint, offline; an event after it has
    // none yet.
    let client = network.client();
    let state = client.state().await.unwrap();
    let covered = state
        .checkpoint_last
        .expect("a round's end is checkpointed")
        .tree_size;
    for seq in [0, covered / 2, covered - 1] {
        let event_proof = client.event_proof(seq).await.unwrap();
        assert_eq!(event_proof.record.seq, seq);
        receipt::verify_event(&event_proof, &operator_key).unwrap();
        let mut forged = event_proof.clone();
        forged.record.time_ms += 1;
        assert!(receipt::verify_event(&forged, &operator_key).is_err());
    }
    if covered < state.events {
        let error = client.event_proof(covered).await.unwrap_err();
        assert_eq!(error.code(), Some("not_checkpointed"));
    }
    let error = client.event_proof(state.events + 10).await.unwrap_err();
    assert_eq!(error.code(), Some("event_not_found"));

    // The CLI shows the round, and an audit replay agrees with the server.
    let (ok, stdout, stderr) = run_binary("blyan", &["--server", &url, "round", "list"]);
    assert!(ok && stdout.contains("finalized"), "{stdout}{stderr}");
    let (ok, stdout, stderr) = run_binary("blyan", &["--server", &url, "round", "show", "1"]);
    assert!(ok && stdout.contains(&node_key), "{stdout}{stderr}");
    let (ok, stdout, stderr) = run_binary("blyan", &["--server", &url, "replay"]);
    assert!(ok, "{stdout}{stderr}");
}

/// A sharding plugin that answers every input with one shard of 1,000 items: right
/// for the conformance check's reference input, wrong for any round of another size.
fn canned_sharding() -> Vec<u8> {
    use blyan_schemas::column::to_column;
    use blyan_schemas::v1 as pb;
    use prost::Message as _;
    let output = pb::PolicyOutput {
        kind: Some(pb::policy_output::Kind::Sharding(pb::ShardingOutput {
            node_indexes: to_column([0u32]),
            starts: to_column([0u64]),
            counts: to_column([1_000u64]),
        })),
    }
    .encode_to_vec();
    let data: String = output.iter().map(|byte| format!("\\{byte:02x}")).collect();
    let policy = format!("(i64.const {})", (2048u64 << 32) | output.len() as u64);
    wat::parse_str(hostile::with_policy(1, &policy, &data)).unwrap()
}

/// A plugin that passes its conformance check and fails on a real round: the round
/// falls back to the genesis plugin and logs why, and an auditor's replay runs every
/// policy call of the round again, the failure included, and agrees with the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_that_fails_in_a_round_falls_back_and_every_call_reruns_alike() {
    let dir = tempfile::tempdir().unwrap();
    let network = Network::start(dir.path(), parameters()).await;
    let canned = canned_sharding();
    let canned_hash = *blake3::hash(&canned).as_bytes();
    network
        .govern(
            "canned-sharding",
            Action::ProposePlugin(PluginProposal {
                kind: PluginKind::Sharding,
                wasm: canned.into(),
                activation_round: 1,
            }),
        )
        .await;
    let (validators, nodes) = network.ready(4, 3).await;
    let from = network.client().head().await.unwrap().events;
    let mut clients = Vec::new();
    for key in nodes {
        let node = Node::connect(network.client(), key).await.unwrap();
        clients.push(tokio::spawn(async move {
            let mut trainer = HashTrainer {
                key: node.key(),
                quality: b'g',
            };
            protocol::run_node(&node, &mut trainer, from, 1, Duration::from_secs(5))
                .await
                .map(drop)
        }));
    }
    for key in validators {
        let validator = Validator::connect(network.client(), key).await.unwrap();
        clients.push(tokio::spawn(async move {
            let mut measurer = ByteMeasurer { liar: false };
            protocol::run_validator(&validator, &mut measurer, from, 1)
                .await
                .map(drop)
        }));
    }
    network.burn("burn", THRESHOLD).await;
    for client in clients {
        tokio::time::timeout(Duration::from_secs(120), client)
            .await
            .expect("the client finished its round")
            .unwrap()
            .unwrap();
    }
    network.wait_phase(1, Phase::Finalized).await;

    // The pinned plugin failed its output check, and the genesis plugin answered.
    let head = network.client().head().await.unwrap().events;
    let governance = network.client().governance().await.unwrap();
    let mut fallbacks = Vec::new();
    let mut at = from;
    while at < head {
        let page = network.client().events(at, 1_000).await.unwrap();
        at += page.len() as u64;
        for record in page {
            if let Event::PluginFallback(fallback) =
                codec::decode_logged_event(&record.body).unwrap().event
            {
                fallbacks.push(fallback);
            }
        }
    }
    let [fallback] = &fallbacks[..] else {
        panic!("one fallback: {fallbacks:?}");
    };
    assert_eq!((fallback.round, fallback.kind), (1, PluginKind::Sharding));
    assert_eq!(fallback.failed_hash, canned_hash);
    assert_eq!(fallback.reason_code, "plugin_invariant", "{fallback:?}");
    assert!(fallback.reason.contains("has 8 items"), "{fallback:?}");
    assert_ne!(fallback.used_hash, canned_hash);
    let url = &network.server.url;
    let counted = |series: &'static str| metric(url, series);
    assert_eq!(
        counted("blyan_plugin_fallbacks_total{kind=\"sharding\"}").await,
        Some(1.0)
    );
    assert_eq!(
        counted("blyan_plugin_fallbacks_total{kind=\"scoring\"}").await,
        Some(0.0)
    );
    assert_eq!(
        counted("blyan_rounds_ended_total{ending=\"finalized\"}").await,
        Some(1.0)
    );
    let activations = &governance.plugin_activations["sharding"];
    assert_eq!(
        activations.len(),
        2,
        "the genesis plugin, then the canned one"
    );
    assert_eq!(activations[0].hash, hex::encode(fallback.used_hash));
    assert_eq!(activations[1].hash, hex::encode(canned_hash));

    // The three calls of the round (sharding, scoring, reward), four modules in all,
    // run again and give what the log holds.
    let (ok, stdout, stderr) = run_binary(
        "blyan",
        &[
            "--server",
            &network.server.url,
            "--json",
            "replay",
            "--rerun-plugins",
        ],
    );
    assert!(ok, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["agrees"], true, "{report}");
    assert_eq!(report["policy_calls_rerun"], 3, "{report}");
    assert_eq!(report["modules_rerun"], 4, "{report}");
    assert_eq!(report["wall_clock_fallbacks"], 0, "{report}");
    assert_eq!(report["wall_clock_fallbacks_answering_now"], 0, "{report}");
}

/// One node's delta for a round, its blob uploaded, and its commitment.
struct Delta {
    reveal: Reveal,
    commitment: Hash,
}

async fn delta(
    network: &Network,
    round: u64,
    node: &PublicKey,
    bytes: &[u8],
    upload: bool,
) -> Delta {
    if upload {
        network.client().put_blob(bytes).await.unwrap();
    }
    let reveal = Reveal {
        round,
        delta_hash: *blake3::hash(bytes).as_bytes(),
        salt: *blake3::hash(&node.0).as_bytes(),
        delta_bytes: bytes.len() as u64,
    };
    Delta {
        commitment: rounds::commitment(round, node, &reveal.delta_hash, &reveal.salt),
        reveal,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wrong_round_command_is_refused_with_its_own_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let network = Network::start(
        dir.path(),
        Parameters {
            commit_deadline_ms: 4_000,
            reveal_deadline_ms: 4_000,
            ..parameters()
        },
    )
    .await;
    let (validators, nodes) = network.ready(3, 4).await;
    network.burn("burn", THRESHOLD).await;
    network.wait_phase(1, Phase::Commit).await;
    let [a, b, c, d] = &nodes[..] else {
        unreachable!()
    };
    let deltas = [
        delta(&network, 1, &a.public(), b"delta of a", true).await,
        // b commits to a's delta hash, to copy it once a reveals.
        delta(&network, 1, &b.public(), b"delta of a", false).await,
        delta(&network, 1, &c.public(), &[7u8; 5_000], true).await,
    ];
    let commit = |delta: &Delta| Action::CommitDelta {
        round: 1,
        commitment: delta.commitment,
    };

    // A node outside the round's snapshot.
    let outsider = keypair("outsider");
    network
        .submit(&outsider, "register", Action::RegisterNode(capabilities()))
        .await;
    expect_refused(
        &network.server,
        network.signed(&outsider, "commit", commit(&deltas[0])),
        403,
        "not_in_round",
    )
    .await;
    // A reveal in the commit phase.
    expect_refused(
        &network.server,
        network.signed(a, "early", Action::RevealDelta(deltas[0].reveal)),
        409,
        "wrong_phase",
    )
    .await;
    for (node, delta) in [a, b, c].into_iter().zip(&deltas) {
        network.submit(node, "commit", commit(delta)).await;
    }
    // A second commit.
    expect_refused(
        &network.server,
        network.signed(a, "commit-again", commit(&deltas[1])),
        409,
        "already_committed",
    )
    .await;

    // d never commits, so the commit phase closes at its deadline.
    network.wait_phase(1, Phase::Reveal).await;
    expect_refused(
        &network.server,
        network.signed(d, "late-commit", commit(&deltas[0])),
        409,
        "wrong_phase",
    )
    .await;
    // A reveal without a commit.
    expect_refused(
        &network.server,
        network.signed(d, "reveal", Action::RevealDelta(deltas[0].reveal)),
        409,
        "not_committed",
    )
    .await;
    // A reveal that does not match its commitment.
    let mut wrong_salt = deltas[0].reveal;
    wrong_salt.salt[0] ^= 1;
    expect_refused(
        &network.server,
        network.signed(a, "wrong-salt", Action::RevealDelta(wrong_salt)),
        422,
        "commitment_mismatch",
    )
    .await;
    // A delta larger than `delta_bytes_max`.
    expect_refused(
        &network.server,
        network.signed(c, "too-large", Action::RevealDelta(deltas[2].reveal)),
        413,
        "delta_too_large",
    )
    .await;
    // A reveal whose blob was never uploaded.
    let unstored = delta(&network, 1, &a.public(), b"never uploaded", false).await;
    expect_refused(
        &network.server,
        network.signed(a, "unstored", Action::RevealDelta(unstored.reveal)),
        409,
        "blob_missing",
    )
    .await;
    network
        .submit(a, "reveal", Action::RevealDelta(deltas[0].reveal))
        .await;
    // b reveals the delta hash a revealed: a copy.
    expect_refused(
        &network.server,
        network.signed(b, "copy", Action::RevealDelta(deltas[1].reveal)),
        409,
        "delta_copied",
    )
    .await;

    // The reveal phase closes at its deadline; a node can't act after it.
    network.wait_phase(1, Phase::Validate).await;
    expect_refused(
        &network.server,
        network.signed(c, "late-reveal", Action::RevealDelta(deltas[2].reveal)),
        409,
        "wrong_phase",
    )
    .await;
    // Measurements from a key that is not on the committee.
    expect_refused(
        &network.server,
        network.signed(
            d,
            "measure",
            Action::SubmitMeasurements {
                round: 1,
                values: vec![1],
            },
        ),
        403,
        "not_on_committee",
    )
    .await;
    // A validator's measurements of deltas it was not assigned.
    expect_refused(
        &network.server,
        network.signed(
            &validators[0],
            "measure-too-many",
            Action::SubmitMeasurements {
                round: 1,
                values: vec![1, 2, 3],
            },
        ),
        422,
        "invalid_field",
    )
    .await;
}

/// Waits until the round's progress shows `commits` commits and `reveals` reveals.
async fn progress(network: &Network, round: u64) -> (u32, u32, u32) {
    let view = network.client().round(round).await.unwrap();
    (
        view.summary.commits,
        view.summary.reveals,
        view.summary.submissions,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_survives_kill_9_in_every_phase() {
    let dir = tempfile::tempdir().unwrap();
    let mut network = Network::start(
        dir.path(),
        Parameters {
            commit_deadline_ms: 3_000,
            reveal_deadline_ms: 3_000,
            validate_deadline_ms: 3_000,
            validators_per_round: 3,
            ..parameters()
        },
    )
    .await;
    let (validators, nodes) = network.ready(3, 4).await;
    network.burn("burn", THRESHOLD).await;
    network.wait_phase(1, Phase::Commit).await;

    // Commit: three of four commit, then the server dies and stays down past the
    // commit deadline.
    let mut deltas = Vec::new();
    for (index, node) in nodes.iter().take(3).enumerate() {
        let bytes = format!("g delta {index}").into_bytes();
        let delta = delta(&network, 1, &node.public(), &bytes, true).await;
        network
            .submit(
                node,
                "commit",
                Action::CommitDelta {
                    round: 1,
                    commitment: delta.commitment,
                },
            )
            .await;
        deltas.push(delta);
    }
    network.server.kill9();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    network.server.restart().await;
    // The deadline that passed while it was down is handled at start-up: the
    // acknowledged commits are there and the reveal phase has begun.
    network.wait_phase(1, Phase::Reveal).await;
    assert_eq!(progress(&network, 1).await, (3, 0, 0));

    // Reveal: two reveal, the server dies, and the third reveals after the restart.
    for (node, delta) in nodes.iter().zip(&deltas).take(2) {
        network
            .submit(node, "reveal", Action::RevealDelta(delta.reveal))
            .await;
    }
    network.server.restart().await;
    assert_eq!(progress(&network, 1).await, (3, 2, 0));
    for delta in &deltas {
        // No acknowledged blob is lost.
        let blob = network
            .client()
            .blob(&delta.reveal.delta_hash)
            .await
            .unwrap();
        assert_eq!(blob.len() as u64, delta.reveal.delta_bytes);
    }
    network
        .submit(&nodes[2], "reveal", Action::RevealDelta(deltas[2].reveal))
        .await;
    // All committed nodes revealed: validation starts at once.
    network.wait_phase(1, Phase::Validate).await;

    // Validate: one validator submits, the server dies, the others submit after.
    let (mut submitted, mut restarted) = (0, false);
    for validator in &validators {
        let tasks = network
            .client()
            .tasks(1, &validator.public())
            .await
            .unwrap();
        if tasks.deltas.is_empty() {
            continue;
        }
        let values = vec![100; tasks.deltas.len()];
        network
            .submit(
                validator,
                "measure",
                Action::SubmitMeasurements { round: 1, values },
            )
            .await;
        submitted += 1;
        if submitted == 1 {
            network.server.restart().await;
            assert_eq!(progress(&network, 1).await, (3, 3, 1));
            restarted = true;
        }
    }
    assert!(submitted >= 2 && restarted);
    network.wait_phase(1, Phase::Finalized).await;

    // Finalized: after one more kill, with the derived Merkle subtrees deleted too,
    // the round, its receipts and the log are intact.
    let before = network.client().round(1).await.unwrap();
    network.server.kill9();
    {
        let mut db = rocksdb::DB::open_cf(
            &rocksdb::Options::default(),
            network.server.data_dir.join("log"),
            ["events", "idempotency", "merkle"],
        )
        .unwrap();
        db.drop_cf("merkle").unwrap();
    }
    network.server.restart().await;
    assert_eq!(network.client().round(1).await.unwrap(), before);
    let operator = network.keys.operator.public();
    for node in nodes.iter().take(3) {
        let receipt = network.client().receipt(1, &node.public()).await.unwrap();
        let proven = receipt::verify(&receipt, &operator).unwrap();
        assert!(proven.node_reward.unwrap() > 0);
    }
    let paid: u128 = before
        .node_rewards
        .iter()
        .chain(&before.validator_rewards)
        .map(|payout| payout.amount)
        .sum();
    assert_eq!(paid + before.carried, before.summary.reward_pool);
    let (ok, stdout, stderr) = run_binary("blyan", &["--server", &network.server.url, "replay"]);
    assert!(ok, "{stdout}{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_without_commits_aborts_and_its_pool_carries_over() {
    let dir = tempfile::tempdir().unwrap();
    let network = Network::start(
        dir.path(),
        Parameters {
            commit_deadline_ms: 1_500,
            reveal_deadline_ms: 1_500,
            ..parameters()
        },
    )
    .await;
    network.ready(3, 3).await;
    network.burn("burn", THRESHOLD).await;
    // Nobody commits: the round aborts at the commit deadline.
    network.wait_phase(1, Phase::Aborted).await;
    // The deadline that passed and the abort are counted, and nothing runs.
    let url = &network.server.url;
    let aborts = metric(url, "blyan_rounds_ended_total{ending=\"aborted\"}").await;
    assert_eq!(aborts, Some(1.0));
    let deadlines = metric(url, "blyan_deadlines_passed_total").await.unwrap();
    assert!(deadlines >= 1.0, "{deadlines}");
    for phase in ["assigning", "commit", "reveal", "validate"] {
        let running = metric(url, &format!("blyan_rounds_running{{phase=\"{phase}\"}}")).await;
        assert_eq!(running, Some(0.0), "{phase}");
    }
    let aborted = network.client().round(1).await.unwrap();
    assert_eq!(aborted.carried, aborted.summary.reward_pool);
    assert!(aborted.summary.abort_reason.is_some());
    // The next round's pool is its own share plus what the first carried.
    network.burn("burn-2", THRESHOLD).await;
    network.wait_phase(2, Phase::Commit).await;
    let second = network.client().round(2).await.unwrap();
    assert_eq!(second.summary.reward_pool, 2 * aborted.summary.reward_pool);
    // Rounds list in pages by number. (Round 2 carries its pool over when it aborts,
    // which opens round 3 by itself: no page here depends on what comes after 2.)
    let client = network.client();
    assert_eq!(round_numbers(&client, 0, 2).await, [1, 2]);
    assert_eq!(round_numbers(&client, 0, 1).await, [1]);
    assert_eq!(round_numbers(&client, 2, 1).await, [2]);
    assert!(round_numbers(&client, 1_000_000, 100).await.is_empty());
    let (ok, stdout, stderr) = run_binary(
        "blyan",
        &[
            "--server",
            &network.server.url,
            "round",
            "list",
            "--from",
            "2",
            "--limit",
            "1",
        ],
    );
    assert!(
        ok && stdout.contains("round     2") && !stdout.contains("round     1"),
        "{stdout}{stderr}"
    );
    // An aborted round still has receipts: no payout, and the reason.
    let node = keypair("node-0").public();
    let proven = receipt::verify(
        &network.client().receipt(1, &node).await.unwrap(),
        &network.keys.operator.public(),
    )
    .unwrap();
    assert!(matches!(proven.ending, Ending::Aborted { .. }));
    assert_eq!(proven.node_reward, None);
}

async fn round_numbers(client: &Client, from: u64, limit: u32) -> Vec<u64> {
    let rounds = client.rounds(from, limit).await.unwrap();
    rounds.iter().map(|round| round.round).collect()
}

/// A node that uploads bytes that are no model delta at all.
struct GarbageTrainer;

impl Trainer for GarbageTrainer {
    fn train(&mut self, _: &protocol::Work) -> Result<Vec<u8>, WorkError> {
        Ok(b"g: not a delta".to_vec())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_that_really_train_are_scored_and_paid_and_garbage_is_not() {
    use blyan_ml::{CandleMeasurer, CandleTrainer, Device, HARMFUL, Moe, MoeConfig, data};

    let dir = tempfile::tempdir().unwrap();
    let network = Network::start(
        dir.path(),
        Parameters {
            delta_bytes_max: 1 << 20,
            ..parameters()
        },
    )
    .await;
    let validators: Vec<Keypair> = (0..3).map(|i| keypair(&format!("validator-{i}"))).collect();
    for validator in &validators {
        network.admit(&validator.public()).await;
    }
    // A pool labelled by a hidden teacher: 12 training items and 3 held out.
    let config = MoeConfig::default();
    let teacher = Moe::init(config, 1_001, &Device::Cpu).unwrap();
    let items = (0..15u32)
        .map(|index| (data::item(&teacher, 7, index, 64).unwrap(), index >= 12))
        .collect();
    network.register_items(items).await;
    // A stand-in: every node trains from, and every validator measures against, the
    // model the round pins on the parameter chain, which replaces it.
    let base = Moe::init(config, 2_002, &Device::Cpu).unwrap();

    let mut nodes = Vec::new();
    for index in 0..4 {
        let node = Node::connect(network.client(), keypair(&format!("node-{index}")))
            .await
            .unwrap();
        node.register(capabilities()).await.unwrap();
        nodes.push(node);
    }
    let from = network.client().head().await.unwrap().events;
    let mut running = Vec::new();
    for (index, node) in nodes.iter().cloned().enumerate() {
        let base = base.clone();
        running.push(tokio::spawn(async move {
            let receipts = if index == 3 {
                protocol::run_node(&node, &mut GarbageTrainer, from, 1, Duration::from_secs(5))
                    .await
            } else {
                let mut trainer = CandleTrainer::new(base);
                protocol::run_node(&node, &mut trainer, from, 1, Duration::from_secs(5)).await
            };
            (node.key(), receipts.unwrap().remove(0).receipt.unwrap())
        }));
    }
    let mut measuring = Vec::new();
    for key in &validators {
        let validator = Validator::connect(network.client(), key.clone())
            .await
            .unwrap();
        let mut measurer = CandleMeasurer::new(base.clone());
        measuring.push(tokio::spawn(async move {
            protocol::run_validator(&validator, &mut measurer, from, 1)
                .await
                .unwrap()
                .remove(0)
                .receipt
                .unwrap()
        }));
    }
    network.burn("burn", THRESHOLD).await;
    let timeout = Duration::from_secs(120);
    let mut proven = Vec::new();
    for task in running {
        proven.push(tokio::time::timeout(timeout, task).await.unwrap().unwrap());
    }
    for task in measuring {
        tokio::time::timeout(timeout, task).await.unwrap().unwrap();
    }

    let view = network.client().round(1).await.unwrap();
    assert_eq!(view.summary.phase, Phase::Finalized);
    for (index, (key, receipt)) in proven.iter().enumerate() {
        let delta = view.deltas.iter().find(|delta| delta.node == *key).unwrap();
        if index == 3 {
            assert_eq!((delta.score, receipt.node_reward), (Some(0), Some(0)));
        } else {
            assert!(
                delta.score.unwrap() > 0,
                "a trained delta scores: {delta:?}"
            );
            assert!(receipt.node_reward.unwrap() > 0 && receipt.accepted);
        }
    }
    // The validators measured real gains: each of their measurements, matched to its
    // delta through their tasks, is positive for a trained delta and harmful for the
    // garbage one.
    let garbage = proven[3].0;
    let records = network.client().events(0, 10_000).await.unwrap();
    let mut measured = 0;
    for record in records {
        let blyan_sdk::model::Event::MeasurementsSubmitted {
            validator, values, ..
        } = codec::decode_logged_event(&record.body).unwrap().event
        else {
            continue;
        };
        let tasks = network.client().tasks(1, &validator).await.unwrap();
        assert_eq!(tasks.deltas.len(), values.len());
        for (task, value) in tasks.deltas.iter().zip(&values) {
            if task.node == garbage {
                assert_eq!(*value, HARMFUL);
            } else {
                assert!(*value > 0, "a trained delta measured {value}");
            }
            measured += 1;
        }
    }
    assert_eq!(measured, 4 * 3, "each delta measured by K = 3 validators");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_generates_a_pool_and_its_nodes_train_and_its_validators_measure() {
    let dir = tempfile::tempdir().unwrap();
    let network = Network::start(
        dir.path(),
        Parameters {
            delta_bytes_max: 1 << 20,
            ..parameters()
        },
    )
    .await;
    let url = network.server.url.clone();
    let file = |name: &str, key: &Keypair| {
        let path = dir.path().join(format!("{name}.json"));
        key.write_file(&path).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let curator = file("curator", &network.keys.curator);
    let (ok, stdout, stderr) = run_binary(
        "blyan",
        &[
            "--server",
            &url,
            "pool",
            "generate",
            "--key",
            &curator,
            "--name",
            "teacher",
            "--teacher-seed",
            "1001",
            "--train",
            "12",
            "--held-out",
            "3",
        ],
    );
    assert!(ok, "pool generate: {stdout} {stderr}");
    let pool = network.client().pool(1).await.unwrap();
    assert_eq!(pool.items.len(), 15);
    assert_eq!(
        pool.items.iter().filter(|item| item.item.held_out).count(),
        3
    );

    let mut validators = Vec::new();
    for index in 0..3 {
        let key = keypair(&format!("validator-{index}"));
        network.admit(&key.public()).await;
        validators.push(file(&format!("validator-{index}"), &key));
    }
    let mut nodes = Vec::new();
    for index in 0..3 {
        let key = keypair(&format!("node-{index}"));
        network
            .submit(&key, "register", Action::RegisterNode(capabilities()))
            .await;
        nodes.push((key.public(), file(&format!("node-{index}"), &key)));
    }
    let from = network.client().head().await.unwrap().events.to_string();
    // Killed when dropped, so a test that fails or times out leaves none behind.
    let spawn = |args: &[&str]| {
        tokio::process::Command::new(blyan_e2e::binary("blyan"))
            .args(["--server", &url])
            .args(args)
            .args(["--from", &from, "--rounds", "1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut children = Vec::new();
    for (_, key) in &nodes {
        let args = ["node", "run", "--key", key, "--heartbeat-secs", "5"];
        children.push(spawn(&args));
    }
    for key in &validators {
        children.push(spawn(&["validator", "run", "--key", key]));
    }
    network.burn("burn", THRESHOLD).await;

    let outputs = futures_util::future::join_all(
        children
            .into_iter()
            .map(tokio::process::Child::wait_with_output),
    );
    let outputs = tokio::time::timeout(Duration::from_secs(180), outputs)
        .await
        .expect("every node and validator finishes its round");
    for (index, output) in outputs.into_iter().enumerate() {
        let output = output.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "process {index}: {stdout} {stderr}"
        );
        assert!(
            stdout.contains("round 1: receipt verified: Finalized"),
            "{stdout}"
        );
        if index < 3 {
            // The node reports its training loss, which fell.
            let line = stdout
                .lines()
                .find(|line| line.contains("training loss"))
                .unwrap_or_else(|| panic!("no training loss: {stdout}"));
            let losses: Vec<f64> = line
                .split(['>', ' '])
                .filter_map(|word| word.parse().ok())
                .collect();
            assert!(losses[1] < losses[0], "{line}");
        } else {
            assert!(stdout.contains("measures"), "{stdout}");
        }
    }
    let view = network.client().round(1).await.unwrap();
    assert_eq!(view.summary.phase, Phase::Finalized);
    for (key, _) in &nodes {
        let delta = view.deltas.iter().find(|delta| delta.node == *key).unwrap();
        assert!(
            delta.score.unwrap() > 0,
            "a trained delta scores: {delta:?}"
        );
    }
    // The server merged the accepted deltas into expert 0's version 1, which has a
    // lower held-out loss than version 0.
    let updates = wait_versions(&network, 1).await;
    assert_eq!((updates[0].expert, updates[0].version), (0, 1));
    assert_eq!(updates[0].merged, 3);
    assert!(updates[0].held_out_loss < updates[0].parent_held_out_loss);
}

/// Waits until the parameter chain holds `count` versions past the genesis's, and
/// returns them in round order.
async fn wait_versions(network: &Network, count: usize) -> Vec<ExpertVersionView> {
    let client = network.client();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let model = client.experts().await.unwrap();
        let mut versions = Vec::new();
        for expert in 0..model.experts {
            versions.extend(client.expert_versions(expert, 1, 1_000).await.unwrap());
        }
        if versions.len() >= count {
            versions.sort_by_key(|version| version.round);
            return versions;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} versions after 120 s",
            versions.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A pool of `training` and `held_out` items of 64 samples each, labelled by a hidden
/// teacher of the dev genesis model's sizes.
async fn register_teacher_pool(network: &Network, training: u32, held_out: u32) {
    use blyan_ml::{Device, Moe, MoeConfig, data};
    let teacher = Moe::init(MoeConfig::default(), 1_001, &Device::Cpu).unwrap();
    let items = (0..training + held_out)
        .map(|index| {
            (
                data::item(&teacher, 7, index, 64).unwrap(),
                index >= training,
            )
        })
        .collect();
    network.register_items(items).await;
}

/// What a node does to the delta it trained honestly before submitting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    Honest,
    /// Noise of the delta's shapes, uniform in ±1.
    Random,
    SignFlipped,
    /// Twenty-five times the trained delta.
    ScaledUp,
    /// A delta the round before accepted, from the blob store (garbage in round 1,
    /// with nothing to copy): a copy of another expert's delta, which does not fit.
    /// (A copy of a delta of its own round can't be committed before that delta is
    /// revealed; `every_wrong_round_command_is_refused_with_its_own_4xx` covers it.)
    Copied,
}

/// A node that trains for real with blyan-ml, then applies its attack.
struct LearningNode {
    trainer: blyan_ml::CandleTrainer,
    attack: Attack,
    client: Client,
}

impl LearningNode {
    fn new(attack: Attack, client: Client) -> LearningNode {
        use blyan_ml::{Device, Moe, MoeConfig};
        // A stand-in that the round's pinned model replaces.
        let base = Moe::init(MoeConfig::default(), 0, &Device::Cpu).unwrap();
        LearningNode {
            trainer: blyan_ml::CandleTrainer::new(base),
            attack,
            client,
        }
    }

    /// A delta that round `round` accepted, if any.
    fn accepted_delta(&self, round: u64) -> Option<Vec<u8>> {
        let client = self.client.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                let view = client.round(round).await.ok()?;
                let delta = view.deltas.iter().find(|delta| delta.score > Some(0))?;
                let hash: Hash = hex::decode(&delta.delta_hash).ok()?.try_into().ok()?;
                client.blob(&hash).await.ok()
            })
        })
    }
}

impl Trainer for LearningNode {
    fn train(&mut self, work: &protocol::Work) -> Result<Vec<u8>, WorkError> {
        use candle_core::{Device, Tensor};
        if self.attack == Attack::Copied {
            return Ok(self
                .accepted_delta(work.round - 1)
                .unwrap_or_else(|| b"nothing to copy yet".to_vec()));
        }
        let delta = self.trainer.train(work)?;
        if self.attack == Attack::Honest {
            return Ok(delta);
        }
        let tensors = candle_core::safetensors::load_buffer(&delta, &Device::Cpu)?;
        let mut attacked = std::collections::BTreeMap::new();
        for (name, tensor) in tensors {
            let changed = match self.attack {
                Attack::Honest | Attack::Copied => tensor,
                Attack::Random => Tensor::rand(-1f32, 1f32, tensor.shape(), &Device::Cpu)?,
                Attack::SignFlipped => tensor.neg()?,
                Attack::ScaledUp => (tensor * 25.0)?,
            };
            attacked.insert(name, changed);
        }
        Ok(safetensors::serialize(attacked.iter(), None)?)
    }
}

/// A validator that measures for real, and, if it lies, reports every delta that does
/// not help as a large gain.
struct LearningValidator {
    measurer: blyan_ml::CandleMeasurer,
    inflates: bool,
}

impl LearningValidator {
    fn new(inflates: bool) -> LearningValidator {
        use blyan_ml::{Device, Moe, MoeConfig};
        let base = Moe::init(MoeConfig::default(), 0, &Device::Cpu).unwrap();
        LearningValidator {
            measurer: blyan_ml::CandleMeasurer::new(base),
            inflates,
        }
    }
}

impl Measurer for LearningValidator {
    fn measure(&mut self, task: &Task, held_out: &[Item]) -> i64 {
        let value = self.measurer.measure(task, held_out);
        if self.inflates && value <= 0 {
            1_000_000_000
        } else {
            value
        }
    }
}

/// Runs `rounds` rounds one after another (a burn, then the round's merge) with real
/// learning nodes and validators, each all the way through the real binary, and
/// returns the receipts of every node and validator and the chain's versions.
async fn learn(
    network: &Network,
    attacks: &[Attack],
    inflating: &[bool],
    rounds: usize,
) -> (
    Vec<(PublicKey, Attack, Vec<protocol::RoundResult>)>,
    Vec<(PublicKey, bool, Vec<protocol::RoundResult>)>,
    Vec<ExpertVersionView>,
) {
    let all_experts = Capabilities {
        experts: (0..4).collect(),
        ..capabilities()
    };
    let mut nodes = Vec::new();
    for (index, attack) in attacks.iter().enumerate() {
        let node = Node::connect(network.client(), keypair(&format!("node-{index}")))
            .await
            .unwrap();
        node.register(all_experts.clone()).await.unwrap();
        nodes.push((node, *attack));
    }
    let mut validators = Vec::new();
    for (index, inflates) in inflating.iter().enumerate() {
        let key = keypair(&format!("validator-{index}"));
        network.admit(&key.public()).await;
        validators.push((key, *inflates));
    }
    let from = network.client().head().await.unwrap().events;
    let mut running = Vec::new();
    for (node, attack) in nodes {
        let client = network.client();
        running.push(tokio::spawn(async move {
            let mut trainer = LearningNode::new(attack, client);
            let results =
                protocol::run_node(&node, &mut trainer, from, rounds, Duration::from_secs(5))
                    .await
                    .unwrap();
            (node.key(), attack, results)
        }));
    }
    let mut measuring = Vec::new();
    for (key, inflates) in validators {
        let validator = Validator::connect(network.client(), key).await.unwrap();
        measuring.push(tokio::spawn(async move {
            let mut measurer = LearningValidator::new(inflates);
            let results = protocol::run_validator(&validator, &mut measurer, from, rounds)
                .await
                .unwrap();
            (validator.key(), inflates, results)
        }));
    }
    for round in 1..=rounds {
        network.burn(&format!("burn-{round}"), THRESHOLD).await;
        // The next round opens only once this one ended; its expert's merge may
        // still be owed, which only holds back a round of that expert.
        network.wait_ended(round as u64).await;
    }
    let timeout = Duration::from_secs(300);
    let mut node_results = Vec::new();
    for task in running {
        node_results.push(tokio::time::timeout(timeout, task).await.unwrap().unwrap());
    }
    let mut validator_results = Vec::new();
    for task in measuring {
        validator_results.push(tokio::time::timeout(timeout, task).await.unwrap().unwrap());
    }
    let mut accepted = 0;
    for round in 1..=rounds as u64 {
        let view = network.client().round(round).await.unwrap();
        assert_eq!(view.summary.phase, Phase::Finalized, "round {round}");
        accepted += usize::from(view.deltas.iter().any(|delta| delta.score > Some(0)));
    }
    let versions = wait_versions(network, accepted).await;
    (node_results, validator_results, versions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn honest_nodes_lower_the_held_out_loss_round_after_round() {
    let dir = tempfile::tempdir().unwrap();
    let network = Network::start(
        dir.path(),
        Parameters {
            delta_bytes_max: 1 << 20,
            ..parameters()
        },
    )
    .await;
    register_teacher_pool(&network, 24, 4).await;
    let (nodes, _, versions) = learn(&network, &[Attack::Honest; 4], &[false; 3], 10).await;
    // Every round merged a version, experts taking turns, and each has a lower
    // held-out loss than the model its round trained from, which is the model the
    // round before it left.
    assert_eq!(versions.len(), 10, "{versions:#?}");
    for (index, version) in versions.iter().enumerate() {
        assert_eq!(version.round, Some(index as u64 + 1));
        assert_eq!(version.expert, index as u32 % 4);
        assert!(version.merged > 0);
        let (before, after) = (
            version.parent_held_out_loss.unwrap(),
            version.held_out_loss.unwrap(),
        );
        assert!(after < before, "round {}: {before} -> {after}", index + 1);
        if index > 0 {
            assert_eq!(versions[index - 1].held_out_loss, Some(before));
        }
    }
    let first = versions[0].parent_held_out_loss.unwrap();
    let last = versions[9].held_out_loss.unwrap();
    assert!(last < first / 10 * 9, "10 rounds: {first} -> {last}");
    // An auditor recomputes the genesis weights and every merge from the blobs, and
    // gets the logged hashes and losses.
    let (ok, stdout, stderr) = run_binary(
        "blyan",
        &[
            "--server",
            &network.server.url,
            "--json",
            "replay",
            "--recompute-merges",
        ],
    );
    assert!(ok, "{stdout} {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["agrees"], true);
    assert_eq!(report["merges_recomputed"], 10);
    assert!(
        report["held_out_loss_max_relative_difference"]
            .as_f64()
            .unwrap()
            <= 1e-3
    );
    // /metrics exports each expert's newest version and its held-out loss.
    let url = &network.server.url;
    assert_eq!(
        metric(url, "blyan_expert_version{expert=\"0\"}").await,
        Some(3.0)
    );
    let loss = metric(url, "blyan_expert_held_out_loss{expert=\"1\"}").await;
    assert_eq!(loss, Some(versions[9].held_out_loss.unwrap() as f64 / 1e9));
    // Every node's every receipt verified.
    for (_, _, results) in &nodes {
        assert_eq!(results.len(), 10);
        assert!(results.iter().all(|result| result.receipt.is_ok()));
    }
    // The chain's newest versions are what /v1/experts lists, each a stored blob.
    let model = network.client().experts().await.unwrap();
    for head in &model.versions {
        let newest = versions
            .iter()
            .rfind(|version| version.expert == head.expert)
            .unwrap();
        assert_eq!(head, newest);
        let hash: Hash = hex::decode(&head.weights_hash).unwrap().try_into().unwrap();
        network.client().blob(&hash).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attacking_nodes_and_an_inflating_validator_earn_nothing_and_the_loss_still_falls() {
    let dir = tempfile::tempdir().unwrap();
    let network = Network::start(
        dir.path(),
        Parameters {
            delta_bytes_max: 1 << 20,
            ..parameters()
        },
    )
    .await;
    register_teacher_pool(&network, 52, 4).await;
    // 4 of 13 nodes (30 %) attack; 1 of the 4 validators, so at most 1 of the 3 that
    // measure any delta, inflates every harmful delta.
    let mut attacks = vec![Attack::Honest; 9];
    attacks.extend([
        Attack::Random,
        Attack::SignFlipped,
        Attack::ScaledUp,
        Attack::Copied,
    ]);
    let (nodes, validators, versions) =
        learn(&network, &attacks, &[true, false, false, false], 3).await;
    assert_eq!(versions.len(), 3, "{versions:#?}");
    for version in &versions {
        let (before, after) = (
            version.parent_held_out_loss.unwrap(),
            version.held_out_loss.unwrap(),
        );
        assert!(
            after < before,
            "round {:?}: {before} -> {after}",
            version.round
        );
    }
    let mut honest_paid = 0;
    for (key, attack, results) in &nodes {
        for result in results {
            let view = network.client().round(result.round).await.unwrap();
            let delta = view.deltas.iter().find(|delta| delta.node == *key);
            let reward = view
                .node_rewards
                .iter()
                .find(|payout| payout.key == *key)
                .map_or(0, |payout| payout.amount);
            match attack {
                Attack::Honest => honest_paid += usize::from(reward > 0),
                _ => {
                    let proven = result.receipt.as_ref().unwrap();
                    assert_eq!(
                        delta.unwrap().score,
                        Some(0),
                        "{attack:?} in round {}",
                        result.round
                    );
                    assert_eq!(proven.node_reward, Some(0), "{attack:?}");
                    assert!(!proven.accepted);
                }
            }
        }
    }
    assert!(
        honest_paid >= 9,
        "honest nodes were paid {honest_paid} times in 3 rounds"
    );
    // The inflating validator disagreed with the final scores, and its reputation
    // fell below every honest validator's.
    let reputations = network.client().validators().await.unwrap();
    let reputation = |key: &PublicKey| {
        reputations
            .iter()
            .find(|validator| validator.key == *key)
            .unwrap()
            .reputation
    };
    let liar = validators
        .iter()
        .find(|(_, inflates, _)| *inflates)
        .unwrap();
    for (key, inflates, _) in &validators {
        if !inflates {
            assert!(reputation(key) > reputation(&liar.0));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_servers_built_in_validator_measures_its_share_once_admitted() {
    let dir = tempfile::tempdir().unwrap();
    let builtin = keypair("built-in validator");
    let key_path = dir.path().join("builtin.json");
    builtin.write_file(&key_path).unwrap();
    let network = Network::start_with(
        dir.path(),
        Parameters {
            delta_bytes_max: 1 << 20,
            ..parameters()
        },
        &["--validator-key", key_path.to_str().unwrap()],
    )
    .await;
    network.admit(&builtin.public()).await;
    register_teacher_pool(&network, 24, 4).await;
    // Two validators of its own and the server's: a committee of 3, each delta measured
    // by all three.
    let (_, _, versions) = learn(&network, &[Attack::Honest; 3], &[false, false], 1).await;
    assert_eq!(versions.len(), 1);
    let view = network.client().round(1).await.unwrap();
    assert_eq!(view.summary.committee.len(), 3);
    assert!(view.summary.committee.contains(&builtin.public()));
    assert_eq!(
        view.summary.submissions, 3,
        "the built-in validator submitted"
    );
    let reward = view
        .validator_rewards
        .iter()
        .find(|payout| payout.key == builtin.public())
        .unwrap();
    assert!(reward.amount > 0, "its measurements agreed: {reward:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_documented_route_answers_with_its_documented_schema() {
    let dir = tempfile::tempdir().unwrap();
    let network = Network::start(
        dir.path(),
        Parameters {
            delta_bytes_max: 1 << 20,
            ..parameters()
        },
    )
    .await;
    register_teacher_pool(&network, 24, 4).await;
    let (nodes, validators, versions) = learn(&network, &[Attack::Honest; 3], &[false; 3], 1).await;
    let url = &network.server.url;
    let document: serde_json::Value = reqwest::get(format!("{url}/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plugin = network.client().plugins().await.unwrap().plugins[0]
        .hash
        .clone();
    let (node, validator) = (nodes[0].0.to_hex(), validators[0].0.to_hex());
    let fill = |path: &str| -> String {
        let value = |name: &str| match (name, path) {
            ("hash", path) if path.starts_with("/v1/plugins") => plugin.clone(),
            ("hash", _) => versions[0].weights_hash.clone(),
            ("node" | "key" | "pubkey", _) => node.clone(),
            ("validator", _) => validator.clone(),
            ("id", path) if path.starts_with("/v1/experts") => "0".into(),
            ("id", _) => "1".into(),
            ("item" | "seq", _) => "0".into(),
            (other, _) => panic!("no value for the path parameter {other} of {path}"),
        };
        path.split('/')
            .map(
                |part| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) => value(name),
                    None => part.to_owned(),
                },
            )
            .collect::<Vec<_>>()
            .join("/")
    };
    // Strict schemas: a field the server sends that its schema does not name fails.
    // A schema composed with `allOf` (a flattened struct) is strict as a whole, and
    // the parts it composes are left open.
    let mut components = document["components"].clone();
    let composed: Vec<String> = {
        let mut names = Vec::new();
        let text = serde_json::to_string(&document["components"]).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        for schema in parsed["schemas"].as_object().unwrap().values() {
            for part in schema["allOf"].as_array().into_iter().flatten() {
                if let Some(target) = part["$ref"].as_str() {
                    names.push(target.rsplit('/').next().unwrap().to_owned());
                }
            }
        }
        names
    };
    for (name, schema) in components["schemas"].as_object_mut().unwrap() {
        let object = schema.as_object_mut().unwrap();
        let strict = !composed.contains(name)
            && (object.contains_key("allOf") || object.contains_key("properties"));
        if strict {
            object.insert("unevaluatedProperties".into(), false.into());
        }
    }
    let paths = document["paths"].as_object().unwrap();
    let mut checked = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            // Writes have their own tests, and the stream needs an upgrade.
            if method != "get" || path == "/v1/events/ws" {
                continue;
            }
            let mut target = format!("{url}{}", fill(path));
            if path == "/v1/events" {
                target.push_str("?format=json");
            }
            let response = reqwest::get(&target).await.unwrap();
            assert_eq!(response.status(), 200, "GET {target}");
            let Some(schema) = operation.pointer("/responses/200/content/application~1json/schema")
            else {
                continue;
            };
            let body: serde_json::Value = response.json().await.unwrap();
            let mut root = schema.clone();
            root.as_object_mut()
                .unwrap()
                .insert("components".into(), components.clone());
            let validator = jsonschema::validator_for(&root)
                .unwrap_or_else(|error| panic!("the schema of {path}: {error}"));
            let errors: Vec<String> = validator
                .iter_errors(&body)
                .map(|error| {
                    let mut text = error.to_string();
                    text.truncate(300);
                    format!("{text} at {}", error.instance_path)
                })
                .collect();
            assert!(errors.is_empty(), "GET {path}: {errors:#?}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} JSON answers checked");
}

/// Liveness through the real binary: heartbeats are held, one per node, for the window
/// they name, and logged as one event when it closes, with their blob stored; the
/// event's bitmap makes exactly those nodes live, a heartbeat of the closed window is
/// refused from then on, and `blyan replay --check-heartbeats` checks the blob against
/// the event.
#[tokio::test]
async fn heartbeats_close_into_one_window_event_whose_blob_an_auditor_checks() {
    let dir = tempfile::tempdir().unwrap();
    let network = Network::start(dir.path(), parameters()).await;
    let client = network.client();
    let nodes: Vec<Keypair> = (0..3).map(|_| Keypair::generate()).collect();
    for (index, node) in nodes.iter().enumerate() {
        network
            .submit(
                node,
                &format!("register-{index}"),
                Action::RegisterNode(capabilities()),
            )
            .await;
    }
    let head = client.head().await.unwrap();
    assert_eq!(head.liveness_window, 0);
    // Nodes 0 and 2 heartbeat; node 1 does not.
    let beats: Vec<_> = [0, 2]
        .iter()
        .map(|index| {
            let command = Command {
                idempotency_key: format!("beat-{index}").into_bytes(),
                action: Action::Heartbeat { window: 0 },
            };
            codec::sign_command(&nodes[*index], &network.network_id, &command)
        })
        .collect();
    for beat in &beats {
        assert_eq!(client.heartbeat(beat).await.unwrap().window, 0);
    }
    // The window closes a window's length after its first heartbeat.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (window, seq) = loop {
        let records = client.events(head.events, 100).await.unwrap();
        let closed = records.iter().find_map(|record| {
            match codec::decode_logged_event(&record.body).unwrap().event {
                Event::LivenessWindowClosed(window) => Some((window, record.seq)),
                _ => None,
            }
        });
        if let Some(closed) = closed {
            break closed;
        }
        assert!(Instant::now() < deadline, "the window never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(window.window, 0);
    assert_eq!(
        window.live,
        vec![0b101],
        "nodes 0 and 2, by registration order"
    );
    let blob = client.blob(&window.blob).await.unwrap();
    assert_eq!(*blake3::hash(&blob).as_bytes(), window.blob);
    assert_eq!(client.head().await.unwrap().liveness_window, 1);
    assert_eq!(
        client.head().await.unwrap().events,
        seq + 1,
        "one event for the window"
    );
    for (index, node) in nodes.iter().enumerate() {
        let view = client.node(&node.public()).await.unwrap();
        let expected = if index == 1 {
            view.node.registered_ms
        } else {
            window.closed_ms
        };
        assert_eq!(view.last_seen_ms, expected, "node {index}");
    }
    // A heartbeat of the closed window, sent again, is refused and logs nothing.
    let replayed = client.heartbeat(&beats[0]).await.unwrap_err();
    assert_eq!(replayed.code(), Some("liveness_window_not_open"));
    assert_eq!(client.head().await.unwrap().events, seq + 1);

    let (ok, stdout, stderr) = run_binary(
        "blyan",
        &[
            "--server",
            &network.server.url,
            "--json",
            "replay",
            "--check-heartbeats",
        ],
    );
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["agrees"], true, "{report}");
    assert_eq!(report["liveness_windows_checked"], 1, "{report}");
    assert_eq!(report["heartbeats_checked"], 2, "{report}");
}
