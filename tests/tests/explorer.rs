//! The explorer page at `/`, in a real browser: the real server runs two learning
//! rounds with nodes that train and validators that measure for real, then Debian's
//! Chromium (headless) loads the page, which verifies the whole hash chain itself, and
//! the DOM it renders is checked against the API: the round count, a node's reward in
//! a round, the chain check and the plot of the merged versions. A screenshot is kept
//! as `target/test-artifacts/explorer.png`.
//!
//! Needs Debian's `chromium` package (`/usr/bin/chromium`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use blyan_e2e::Server;
use blyan_sdk::api::ExpertVersionView;
use blyan_sdk::client::Client;
use blyan_sdk::codec;
use blyan_sdk::crypto::{Keypair, PublicKey};
use blyan_sdk::genesis::DevKeys;
use blyan_sdk::model::{
    Action, Burn, Capabilities, Command as LedgerCommand, Hash, Parameters, Phase, PoolItem,
    PoolSpec,
};
use blyan_sdk::protocol::{self, Node, Validator};

const THRESHOLD: u128 = 1_000;
const ROUNDS: usize = 2;
const CHROMIUM: &str = "/usr/bin/chromium";
/// Past this, a browser run is killed: the test can't hang on it.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

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
        heartbeat_interval_min_ms: 1_000,
        heartbeat_timeout_ms: 600_000,
        delta_bytes_max: 1 << 20,
        ..Parameters::default()
    }
}

fn keypair(role: &str) -> Keypair {
    Keypair::from_secret(*blake3::hash(role.as_bytes()).as_bytes())
}

/// A server on a dev genesis with [`parameters`], and the keys of every role.
struct Network {
    server: Server,
    keys: DevKeys,
    network_id: String,
}

impl Network {
    async fn start(dir: &Path) -> Network {
        let keys = DevKeys::derive();
        let mut genesis = keys.genesis();
        genesis.parameters = parameters();
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
            ],
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

    async fn submit(&self, key: &Keypair, idempotency: &str, action: Action) -> u64 {
        let command = LedgerCommand {
            idempotency_key: idempotency.as_bytes().to_vec(),
            action,
        };
        self.client()
            .submit(&codec::sign_command(key, &self.network_id, &command))
            .await
            .unwrap_or_else(|error| panic!("{idempotency}: {error}"))
            .seq
    }

    /// Admits `validator` from round 1: one governance key proposes, a second approves.
    async fn admit(&self, validator: &PublicKey) {
        let [proposer, approver, ..] = &self.keys.governance[..] else {
            panic!("the dev genesis has governance keys");
        };
        let hex_key = validator.to_hex();
        let name = &hex_key[..16];
        let proposal = Action::ProposeValidator {
            validator: *validator,
            admit: true,
            activation_round: 1,
        };
        self.submit(proposer, &format!("propose-{name}"), proposal)
            .await;
        let governance = self.client().governance().await.unwrap();
        let proposal = governance.proposals.last().expect("the proposal is listed");
        let hash: Hash = hex::decode(&proposal.content_hash)
            .unwrap()
            .try_into()
            .unwrap();
        let approval = Action::ApproveProposal {
            proposal_id: proposal.id,
            proposal_hash: Some(hash),
        };
        self.submit(approver, &format!("approve-{name}"), approval)
            .await;
    }

    /// A pool of `training` and `held_out` items of 64 samples each, labelled by a
    /// hidden teacher of the dev genesis model's sizes.
    async fn register_teacher_pool(&self, training: u32, held_out: u32) {
        use blyan_ml::{Device, Moe, MoeConfig, data};
        let teacher = Moe::init(MoeConfig::default(), 1_001, &Device::Cpu).unwrap();
        let client = self.client();
        let mut spec = PoolSpec {
            name: "explorer".into(),
            items: Vec::new(),
        };
        for index in 0..training + held_out {
            let bytes = data::item(&teacher, 7, index, 64).unwrap();
            client.put_blob(&bytes).await.unwrap();
            spec.items.push(PoolItem {
                bytes: bytes.len() as u64,
                checksum: *blake3::hash(&bytes).as_bytes(),
                held_out: index >= training,
            });
        }
        self.submit(&self.keys.curator, "pool", Action::RegisterPool(spec))
            .await;
    }

    async fn burn(&self, tx: &str) {
        let burn = Burn {
            chain_tx_id: tx.into(),
            burner: "burner".into(),
            amount: THRESHOLD,
        };
        self.submit(&self.keys.burn_oracle, tx, Action::RecordBurn(burn))
            .await;
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

    /// Waits until the parameter chain holds `count` merged versions.
    async fn wait_versions(&self, count: usize) -> Vec<ExpertVersionView> {
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let model = client.experts().await.unwrap();
            let mut versions = Vec::new();
            for expert in 0..model.experts {
                versions.extend(client.expert_versions(expert, 1, 1_000).await.unwrap());
            }
            if versions.len() >= count {
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

    /// Runs `rounds` rounds one after another, each one burn past the threshold, with
    /// honest nodes that train and validators that measure for real (candle, on the
    /// CPU), all through the real binary; returns once every round ended and its merge
    /// is on the parameter chain.
    async fn learn(&self, nodes: usize, validators: usize, rounds: usize) {
        use blyan_ml::{CandleMeasurer, CandleTrainer, Device, Moe, MoeConfig};
        // A stand-in base model; every round replaces it with the one it pins.
        let stand_in = || Moe::init(MoeConfig::default(), 0, &Device::Cpu).unwrap();
        let capabilities = Capabilities {
            gpu_model: "cpu".into(),
            vram_mib: 1,
            experts: (0..4).collect(),
            endpoint: "http://node".into(),
        };
        let mut registered = Vec::new();
        for index in 0..nodes {
            let node = Node::connect(self.client(), keypair(&format!("node-{index}")))
                .await
                .unwrap();
            node.register(capabilities.clone()).await.unwrap();
            registered.push(node);
        }
        let mut admitted = Vec::new();
        for index in 0..validators {
            let key = keypair(&format!("validator-{index}"));
            self.admit(&key.public()).await;
            admitted.push(key);
        }
        let from = self.client().head().await.unwrap().events;
        let mut running = Vec::new();
        for node in registered {
            let mut trainer = CandleTrainer::new(stand_in());
            running.push(tokio::spawn(async move {
                protocol::run_node(&node, &mut trainer, from, rounds, Duration::from_secs(5))
                    .await
                    .unwrap()
            }));
        }
        for key in admitted {
            let validator = Validator::connect(self.client(), key).await.unwrap();
            let mut measurer = CandleMeasurer::new(stand_in());
            running.push(tokio::spawn(async move {
                protocol::run_validator(&validator, &mut measurer, from, rounds)
                    .await
                    .unwrap()
            }));
        }
        for round in 1..=rounds {
            self.burn(&format!("burn-{round}")).await;
            self.wait_ended(round as u64).await;
        }
        for task in running {
            let results = tokio::time::timeout(Duration::from_secs(300), task)
                .await
                .expect("a participant finished its rounds")
                .unwrap();
            assert_eq!(results.len(), rounds);
        }
        for round in 1..=rounds as u64 {
            let view = self.client().round(round).await.unwrap();
            assert_eq!(view.summary.phase, Phase::Finalized, "round {round}");
            assert!(!view.node_rewards.is_empty(), "round {round} paid no node");
            assert!(
                view.deltas.iter().any(|delta| delta.score > Some(0)),
                "round {round} accepted no delta"
            );
        }
        // Honest nodes: every round merged a version.
        let versions = self.wait_versions(rounds).await;
        assert_eq!(versions.len(), rounds, "{versions:#?}");
    }
}

/// The cargo target folder of the running test (`target/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test knows its own path");
    test_exe
        .ancestors()
        .nth(3)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

/// What one headless browser run printed.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs headless Chromium on a fresh profile with `args` (and the page last), and
/// kills it if it takes longer than [`CHROMIUM_TIMEOUT`].
fn chromium(dir: &Path, name: &str, args: &[String], url: &str) -> Run {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium package"
    );
    let profile = dir.join(format!("{name}-profile"));
    std::fs::create_dir_all(&profile).unwrap();
    // To files: a pipe that nobody reads would stall a large DOM dump.
    let stdout_path = dir.join(format!("{name}.stdout"));
    let stderr_path = dir.join(format!("{name}.stderr"));
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("chromium ({name}) ran past {CHROMIUM_TIMEOUT:?} and was killed:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Run {
        status,
        stdout: std::fs::read_to_string(&stdout_path).unwrap(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// The text of the element whose opening tag holds `marker` (up to its first child
/// tag or its end).
fn text_after<'a>(dom: &'a str, marker: &str) -> &'a str {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("the page has no {marker}"));
    let rest = &dom[at..];
    let start = rest.find('>').expect("the tag closes") + 1;
    let end = rest[start..].find('<').expect("the text ends");
    &rest[start..start + end]
}

/// The opening tag of `<body ...>`.
fn body_tag(dom: &str) -> &str {
    let at = dom.find("<body").expect("the page has a body");
    let end = dom[at..].find('>').expect("the body tag closes");
    &dom[at..at + end + 1]
}

/// The value of attribute `name` in `tag`.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let marker = format!(" {name}=\"");
    let start = tag.find(&marker)? + marker.len();
    let end = tag[start..].find('"')?;
    Some(&tag[start..start + end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_explorer_shows_the_rounds_rewards_and_a_verified_chain_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let network = Network::start(dir.path()).await;
    network.register_teacher_pool(24, 4).await;
    network.learn(4, 3, ROUNDS).await;

    // What the API says, once the ledger is still.
    let client = network.client();
    let rounds = client.rounds(0, 1_000).await.unwrap();
    assert_eq!(rounds.len(), ROUNDS);
    let round = rounds.last().unwrap().round;
    let view = client.round(round).await.unwrap();
    let paid = view.node_rewards.first().expect("the round paid its nodes");
    let events = client.head().await.unwrap().events;

    // The page is served at `/` as HTML.
    let url = format!("{}/", network.server.url);
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/html"), "{content_type}");

    // Virtual time does not advance while a fetch is pending, so the budget is spent
    // only once the page's first full load (every fetch of it) is done.
    let budget = "--virtual-time-budget=20000".to_string();
    let dump = tokio::task::block_in_place(|| {
        chromium(
            dir.path(),
            "dump",
            &[budget.clone(), "--dump-dom".into()],
            &url,
        )
    });
    assert!(dump.status.success(), "chromium: {}", dump.stderr);
    let dom = dump.stdout;
    let body = body_tag(&dom);
    assert_eq!(attribute(body, "data-ready"), Some("1"), "{body}\n{dom}");
    let verified: u64 = attribute(body, "data-events")
        .expect("the body counts the verified events")
        .parse()
        .unwrap();
    assert!(verified >= events, "{verified} of {events} events verified");
    let status = text_after(&dom, "id=\"chain-status\"");
    assert!(status.starts_with("verified"), "chain status: {status}");
    assert_eq!(status, format!("verified: {verified} events"));
    assert_eq!(
        text_after(&dom, "id=\"round-count\""),
        rounds.len().to_string(),
        "the round count"
    );
    // The node's reward in that round, exactly as the API gives it.
    let row = format!(
        "<tr data-round=\"{round}\" data-key=\"{}\" data-role=\"node\">",
        paid.key
    );
    let at = dom
        .find(&row)
        .unwrap_or_else(|| panic!("no reward row {row}"));
    let row_end = at + dom[at..].find("</tr>").expect("the row ends");
    let cell = text_after(&dom[at..row_end], "class=\"amount\"");
    assert_eq!(cell, paid.amount.to_string(), "{}", &dom[at..row_end]);
    // The loss plot draws the merged versions.
    let plot = dom
        .find("id=\"loss-plot\"")
        .expect("the page has the loss plot");
    assert!(
        dom[plot..].contains("<polyline data-expert="),
        "the plot draws no line"
    );

    // A screenshot, kept for a person to look at.
    let artifacts = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("explorer.png");
    let _ = std::fs::remove_file(&png);
    let shot = tokio::task::block_in_place(|| {
        chromium(
            dir.path(),
            "screenshot",
            &[
                budget,
                format!("--screenshot={}", png.display()),
                "--window-size=1280,2200".into(),
            ],
            &url,
        )
    });
    assert!(shot.status.success(), "chromium: {}", shot.stderr);
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 20_000,
        "a screenshot of {} bytes is blank",
        bytes.len()
    );
}
