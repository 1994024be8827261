//! Learning rounds at scale through HTTP against the real `blyan-ledger` release
//! binary: NODES registered nodes, VALIDATORS admitted validators, K = 5. Each round
//! runs from the threshold burn to the finalized checkpoint: every node fetches its
//! assignment, uploads a small delta blob, commits and reveals; every validator fetches
//! its tasks and submits its measurements. Training and measuring are excluded (the
//! deltas are 64-byte blobs, the measurements constants), and so is waiting for
//! deadlines: every phase closes early, once all have acted.
//!
//! Prints, per round, where the time went, then the burn → `RoundOpened` and
//! → `AssignmentsMade` latencies (p50, p99), the server's RSS with the nodes registered
//! and after the rounds, the log's size, and the start-up time on the log it built:
//! from the newest state snapshot the server took (at its default interval), and then
//! with the snapshots deleted, from the whole log.
//!
//! cargo bench -p blyan-ledger --bench round [-- NODES VALIDATORS ROUNDS]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use blyan_sdk::client::Client;
use blyan_sdk::codec;
use blyan_sdk::core::rounds;
use blyan_sdk::crypto::{Keypair, PublicKey};
use blyan_sdk::genesis::DevKeys;
use blyan_sdk::model::{
    Action, Burn, Capabilities, Command as LedgerCommand, Event, Parameters, Phase, PoolItem,
    PoolSpec, Reveal,
};

const CLIENTS: usize = 64;
const THRESHOLD: u128 = 1_000_000;

struct Bench {
    client: Client,
    keys: DevKeys,
    network_id: String,
}

impl Bench {
    fn sign(&self, key: &Keypair, idempotency: Vec<u8>, action: Action) -> Vec<u8> {
        let command = LedgerCommand {
            idempotency_key: idempotency,
            action,
        };
        codec::encode_signed_command(&codec::sign_command(key, &self.network_id, &command))
    }

    async fn submit(&self, key: &Keypair, idempotency: &str, action: Action) -> u64 {
        let body = self.sign(key, idempotency.as_bytes().to_vec(), action);
        self.client
            .submit_bytes_once(body)
            .await
            .unwrap_or_else(|error| panic!("{idempotency}: {error}"))
            .seq
    }

    async fn wait_phase(&self, round: u64, phase: Phase) {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(view) = self.client.round(round).await
                && view.summary.phase == phase
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "round {round} never reached {phase:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Runs `jobs` on CLIENTS concurrent workers.
async fn concurrently<T, F, Fut>(jobs: Vec<T>, work: F)
where
    T: Send + Sync + 'static,
    F: Fn(T) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send,
{
    let jobs: Arc<Vec<std::sync::Mutex<Option<T>>>> = Arc::new(
        jobs.into_iter()
            .map(|job| std::sync::Mutex::new(Some(job)))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (jobs, next, work) = (jobs.clone(), next.clone(), work.clone());
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(slot) = jobs.get(index) else {
                        break;
                    };
                    let job = slot.lock().unwrap().take().unwrap();
                    work(job).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| {
                    let meta = entry.metadata().unwrap();
                    if meta.is_dir() {
                        dir_bytes(&entry.path())
                    } else {
                        meta.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(data: &std::path::Path, genesis: &std::path::Path, operator: &std::path::Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_blyan-ledger"))
        .args(["serve", "--data-dir", data.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--genesis", genesis.to_str().unwrap()])
        .args(["--operator-key", operator.to_str().unwrap()])
        .args(["--connections-max", "512"])
        // Every node registers from loopback: one source.
        .args(["--registrations-per-source-per-hour", "1048576"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn wait_healthy(url: &str) -> Duration {
    let started = Instant::now();
    let http = reqwest::Client::new();
    loop {
        if let Ok(response) = http.get(format!("{url}/healthz")).send().await
            && response.status().is_success()
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One series of the server's `/metrics`.
async fn metric(url: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .parse()
        .unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let node_count = args.first().copied().unwrap_or(10_000);
    let validator_count = args.get(1).copied().unwrap_or(100);
    let round_count = args.get(2).copied().unwrap_or(10) as u64;

    let dir = tempfile::tempdir().unwrap();
    let keys = DevKeys::derive();
    let mut genesis = keys.genesis();
    genesis.parameters = Parameters {
        round_burn_threshold: THRESHOLD,
        nodes_per_round_min: 3,
        validators_per_round: validator_count as u32,
        validators_per_delta: 5,
        validator_quorum: 3,
        commit_deadline_ms: 600_000,
        reveal_deadline_ms: 600_000,
        validate_deadline_ms: 600_000,
        heartbeat_timeout_ms: 86_400_000,
        ..Parameters::default()
    };
    let genesis_path = dir.path().join("genesis.json");
    std::fs::write(&genesis_path, serde_json::to_vec(&genesis).unwrap()).unwrap();
    let operator_path = dir.path().join("operator.json");
    keys.operator.write_file(&operator_path).unwrap();
    let data = dir.path().join("data");
    let mut server = spawn(&data, &genesis_path, &operator_path);
    let pid = server.child.id();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        wait_healthy(&server.url).await;
        let client = Client::new(&server.url);
        let network_id = client.head().await.unwrap().network_id;
        let bench = Arc::new(Bench {
            client: client.clone(),
            keys,
            network_id,
        });

        // Set-up, not timed: validators, a pool, the nodes.
        let setup = Instant::now();
        let validators: Vec<Keypair> = (0..validator_count)
            .map(|index| Keypair::from_secret(*blake3::hash(format!("validator-{index}").as_bytes()).as_bytes()))
            .collect();
        let [proposer, approver, ..] = &bench.keys.governance[..] else {
            unreachable!()
        };
        for (index, validator) in validators.iter().enumerate() {
            bench
                .submit(
                    proposer,
                    &format!("admit-{index}"),
                    Action::ProposeValidator {
                        validator: validator.public(),
                        admit: true,
                        activation_round: 1,
                    },
                )
                .await;
            let governance = client.governance().await.unwrap();
            let proposal = governance.proposals.last().unwrap();
            bench
                .submit(
                    approver,
                    &format!("approve-{index}"),
                    Action::ApproveProposal {
                        proposal_id: proposal.id,
                        proposal_hash: Some(
                            hex::decode(&proposal.content_hash).unwrap().try_into().unwrap(),
                        ),
                    },
                )
                .await;
        }
        let item_count = node_count + 100;
        let items: Vec<Vec<u8>> = (0..item_count)
            .map(|index| format!("pool item {index:08}").into_bytes())
            .collect();
        let uploads: Vec<Vec<u8>> = items.clone();
        let uploader = client.clone();
        concurrently(uploads, move |bytes| {
            let client = uploader.clone();
            async move {
                client.put_blob(&bytes).await.unwrap();
            }
        })
        .await;
        let spec = PoolSpec {
            name: "bench".into(),
            items: items
                .iter()
                .enumerate()
                .map(|(index, bytes)| PoolItem {
                    bytes: bytes.len() as u64,
                    checksum: *blake3::hash(bytes).as_bytes(),
                    held_out: index >= node_count,
                })
                .collect(),
        };
        bench.submit(&bench.keys.curator, "pool", Action::RegisterPool(spec)).await;
        let nodes: Vec<Keypair> = (0..node_count)
            .map(|index| Keypair::from_secret(*blake3::hash(format!("node-{index}").as_bytes()).as_bytes()))
            .collect();
        let registrations: Vec<Vec<u8>> = nodes
            .iter()
            .map(|node| {
                bench.sign(
                    node,
                    b"register".to_vec(),
                    Action::RegisterNode(Capabilities {
                        gpu_model: "H100".into(),
                        vram_mib: 81_920,
                        experts: vec![0],
                        endpoint: "https://node.example".into(),
                    }),
                )
            })
            .collect();
        let registrar = client.clone();
        concurrently(registrations, move |body| {
            let client = registrar.clone();
            async move {
                client.submit_bytes_once(body).await.unwrap();
            }
        })
        .await;
        let rss_nodes = rss_kib(pid);
        eprintln!(
            "set-up: {validator_count} validators, a pool of {item_count} items, {node_count} nodes in {:.1} s",
            setup.elapsed().as_secs_f64()
        );

        let mut opened_ms = Vec::new();
        let mut assigned_ms = Vec::new();
        let mut totals = Vec::new();
        for round in 1..=round_count {
            // Pre-signed, not timed: each node's delta, commit and reveal.
            let deltas: Vec<Vec<u8>> = nodes
                .iter()
                .map(|node| {
                    let mut delta = vec![b'g'];
                    delta.extend_from_slice(&node.public().0);
                    delta.extend_from_slice(&round.to_be_bytes());
                    delta.resize(64, 0);
                    delta
                })
                .collect();
            let mut jobs = Vec::with_capacity(node_count);
            for (node, delta) in nodes.iter().zip(&deltas) {
                let reveal = Reveal {
                    round,
                    delta_hash: *blake3::hash(delta).as_bytes(),
                    salt: *blake3::hash(&node.secret()).as_bytes(),
                    delta_bytes: delta.len() as u64,
                };
                let commitment =
                    rounds::commitment(round, &node.public(), &reveal.delta_hash, &reveal.salt);
                let commit = bench.sign(
                    node,
                    format!("commit-{round}").into_bytes(),
                    Action::CommitDelta { round, commitment },
                );
                let reveal = bench.sign(
                    node,
                    format!("reveal-{round}").into_bytes(),
                    Action::RevealDelta(reveal),
                );
                jobs.push((node.public(), delta.clone(), commit, reveal));
            }

            let mut subscription = client.subscribe(client.head().await.unwrap().events);
            let burn = Action::RecordBurn(Burn {
                chain_tx_id: format!("burn-{round}"),
                burner: "burner".into(),
                amount: THRESHOLD,
            });
            let burn_body = bench.sign(&bench.keys.burn_oracle, format!("burn-{round}").into_bytes(), burn);
            let started = Instant::now();
            client.submit_bytes_once(burn_body).await.unwrap();
            let acked = Instant::now();
            let (mut opened, mut assigned) = (None, None);
            // Log time of the opening and of the assignments: the sharding policy's share.
            let (mut opened_log, mut assigned_log) = (0, 0);
            while assigned.is_none() {
                let record = subscription.next().await.unwrap();
                match codec::decode_logged_event(&record.body).unwrap().event {
                    Event::RoundOpened(_) => {
                        opened = Some(acked.elapsed());
                        opened_log = record.time_ms;
                    }
                    Event::AssignmentsMade { .. } => {
                        assigned = Some(acked.elapsed());
                        assigned_log = record.time_ms;
                    }
                    _ => {}
                }
            }
            opened_ms.push(opened.unwrap().as_secs_f64() * 1e3);
            assigned_ms.push(assigned.unwrap().as_secs_f64() * 1e3);

            // Every node fetches its assignment (with its proof), then uploads its
            // delta, then commits: three steps, timed apart.
            let worker_client = client.clone();
            let keys: Vec<PublicKey> = jobs.iter().map(|job| job.0).collect();
            concurrently(keys, move |node: PublicKey| {
                let client = worker_client.clone();
                async move {
                    client.assignment(round, &node).await.unwrap();
                }
            })
            .await;
            let fetched = started.elapsed();
            let worker_client = client.clone();
            let blobs: Vec<Vec<u8>> = jobs.iter().map(|job| job.1.clone()).collect();
            concurrently(blobs, move |delta: Vec<u8>| {
                let client = worker_client.clone();
                async move {
                    client.put_blob(&delta).await.unwrap();
                }
            })
            .await;
            let uploaded = started.elapsed();
            let reveals: Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Arc::default();
            let (worker_client, sink) = (client.clone(), reveals.clone());
            concurrently(jobs, move |(_, _, commit, reveal): (PublicKey, Vec<u8>, Vec<u8>, Vec<u8>)| {
                let (client, sink) = (worker_client.clone(), sink.clone());
                async move {
                    client.submit_bytes_once(commit).await.unwrap();
                    sink.lock().unwrap().push(reveal);
                }
            })
            .await;
            let commits_done = started.elapsed();
            bench.wait_phase(round, Phase::Reveal).await;
            let reveal_open = started.elapsed();
            let reveals = std::mem::take(&mut *reveals.lock().unwrap());
            let worker_client = client.clone();
            concurrently(reveals, move |body| {
                let client = worker_client.clone();
                async move {
                    client.submit_bytes_once(body).await.unwrap();
                }
            })
            .await;
            let reveals_done = started.elapsed();
            bench.wait_phase(round, Phase::Validate).await;
            let validate_open = started.elapsed();
            let measuring: Vec<Keypair> = validators.clone();
            let worker = bench.clone();
            concurrently(measuring, move |validator: Keypair| {
                let bench = worker.clone();
                async move {
                    let tasks = bench.client.tasks(round, &validator.public()).await.unwrap();
                    if tasks.deltas.is_empty() {
                        return;
                    }
                    let values = vec![100; tasks.deltas.len()];
                    bench
                        .submit(&validator, &format!("measure-{round}"), Action::SubmitMeasurements { round, values })
                        .await;
                }
            })
            .await;
            let measured = started.elapsed();
            bench.wait_phase(round, Phase::Finalized).await;
            let finalized = started.elapsed();
            let head = client.head().await.unwrap();
            let state = client.state().await.unwrap();
            let checkpoint = state.checkpoint_last.unwrap().tree_size;
            let view = client.round(round).await.unwrap();
            assert_eq!(view.summary.reveals as usize, node_count);
            assert!(view.node_rewards.iter().all(|payout| payout.amount > 0));
            // The log's own clock: the policies' share of the round.
            let page = client.events(head.events.saturating_sub(200 + validator_count as u64), 1_000).await.unwrap();
            let time_of = |wanted: fn(&Event) -> bool| {
                page.iter()
                    .rev()
                    .find(|record| wanted(&codec::decode_logged_event(&record.body).unwrap().event))
                    .map(|record| record.time_ms)
            };
            let measurement_last = time_of(|event| matches!(event, Event::MeasurementsSubmitted { .. }));
            let scores = time_of(|event| matches!(event, Event::ScoresRecorded { .. }));
            let finals = time_of(|event| matches!(event, Event::RoundFinalized(_)));
            eprintln!(
                "round {round}: opened {:.1} ms, assignments {:.1} ms after the burn's ack; assignments fetched {:.2} s, deltas uploaded {:.2} s, commits done {:.2} s, reveal phase {:.2} s, reveals done {:.2} s, validate phase {:.2} s, measurements done {:.2} s, finalized {:.2} s (checkpoint at {checkpoint}); log time: opened→assignments {} ms, measurements→scores {} ms, scores→finalized {} ms",
                opened_ms.last().unwrap(),
                assigned_ms.last().unwrap(),
                fetched.as_secs_f64(),
                uploaded.as_secs_f64(),
                commits_done.as_secs_f64(),
                reveal_open.as_secs_f64(),
                reveals_done.as_secs_f64(),
                validate_open.as_secs_f64(),
                measured.as_secs_f64(),
                finalized.as_secs_f64(),
                assigned_log - opened_log,
                scores.zip(measurement_last).map_or(0, |(a, b)| a.saturating_sub(b)),
                finals.zip(scores).map_or(0, |(a, b)| a.saturating_sub(b)),
            );
            totals.push(finalized.as_secs_f64());
        }
        let rss_after_rounds = rss_kib(pid);
        let events = client.head().await.unwrap().events;
        opened_ms.sort_by(f64::total_cmp);
        assigned_ms.sort_by(f64::total_cmp);
        totals.sort_by(f64::total_cmp);

        // Start-up on the log the rounds built: from the newest snapshot, then from the
        // whole log.
        drop(server);
        let snapshots = data.join("log").join("snapshots");
        let snapshot_bytes = dir_bytes(&snapshots);
        let log_bytes = dir_bytes(&data.join("log")) - snapshot_bytes;
        server = spawn(&data, &genesis_path, &operator_path);
        let startup = wait_healthy(&server.url).await;
        // Once more, with the page cache as warm as the whole log's start will find it.
        drop(server);
        server = spawn(&data, &genesis_path, &operator_path);
        let warm = wait_healthy(&server.url).await;
        let snapshot_events = metric(&server.url, "blyan_start_snapshot_events").await;
        let replayed = metric(&server.url, "blyan_start_replayed_events").await;
        drop(server);
        std::fs::remove_dir_all(&snapshots).unwrap();
        server = spawn(&data, &genesis_path, &operator_path);
        let whole = wait_healthy(&server.url).await;
        assert_eq!(metric(&server.url, "blyan_start_snapshot_events").await, 0.0);
        println!(
            "start-up: from the snapshot of {snapshot_events} events ({snapshot_bytes} bytes), replaying {replayed} after it: {:.2} s, then {:.2} s; from the whole log: {:.2} s",
            startup.as_secs_f64(),
            warm.as_secs_f64(),
            whole.as_secs_f64(),
        );
        println!(
            "rounds: {node_count} nodes, {validator_count} validators, K = 5, {round_count} rounds: burn → finalized median {:.2} s (min {:.2}, max {:.2}); burn ack → RoundOpened p50 {:.1} ms p99 {:.1} ms, → AssignmentsMade p50 {:.1} ms p99 {:.1} ms; RSS {} KiB with the nodes registered, {} KiB after the rounds; log {events} events, {} bytes; start-up on it {:.2} s (from a snapshot)",
            percentile(&totals, 0.5),
            totals[0],
            totals[totals.len() - 1],
            percentile(&opened_ms, 0.5),
            percentile(&opened_ms, 0.99),
            percentile(&assigned_ms, 0.5),
            percentile(&assigned_ms, 0.99),
            rss_nodes,
            rss_after_rounds,
            log_bytes,
            startup.as_secs_f64(),
        );
    });
}
