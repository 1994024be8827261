//! The cost of the state as readers see it: `/v1/head` latency on the first read after
//! a commit (the state root of a new head) against a repeated read of the same head,
//! and the server's resident memory per registered node.
//!
//! cargo bench -p blyan-ledger --bench state [-- NODES... [max]]
//!
//! Each count of NODES starts the real `blyan-ledger` release binary on a fresh data
//! directory, registers that many nodes (2 experts each, or the largest capabilities
//! the ledger accepts with `max`), reads `VmRSS` before and after, then times 200
//! rounds of: one command committed (a burn, since a node may heartbeat only once per
//! interval), `/v1/head` read, `/v1/head` read again.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use blyan_sdk::client::Client;
use blyan_sdk::codec;
use blyan_sdk::crypto::Keypair;
use blyan_sdk::genesis::{DEV_NETWORK_ID, DevKeys};
use blyan_sdk::model::{Action, Burn, Capabilities, Command as LedgerCommand, Parameters, limits};

const SAMPLES: usize = 200;

fn node_key(index: usize) -> Keypair {
    let mut secret = [7u8; 32];
    secret[..8].copy_from_slice(&(index as u64).to_be_bytes());
    Keypair::from_secret(secret)
}

fn capabilities(maximal: bool) -> Capabilities {
    if maximal {
        Capabilities {
            gpu_model: "G".repeat(limits::GPU_MODEL_CHARS_MAX),
            vram_mib: u32::MAX,
            experts: (0..Parameters::default().model_experts).collect(),
            endpoint: format!("https://{}", "e".repeat(limits::ENDPOINT_CHARS_MAX - 8)),
        }
    } else {
        Capabilities {
            gpu_model: "H100".into(),
            vram_mib: 81_920,
            experts: vec![0, 3],
            endpoint: "https://node.example:8443".into(),
        }
    }
}

fn signed(key: &Keypair, idempotency_key: &str, action: Action) -> Vec<u8> {
    let command = LedgerCommand {
        idempotency_key: idempotency_key.as_bytes().to_vec(),
        action,
    };
    codec::encode_signed_command(&codec::sign_command(key, DEV_NETWORK_ID, &command))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let maximal = args.iter().any(|arg| arg == "max");
    let mut counts: Vec<usize> = args.iter().filter_map(|arg| arg.parse().ok()).collect();
    if counts.is_empty() {
        counts = vec![1_000, 10_000];
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for nodes in counts {
        runtime.block_on(measure(nodes, maximal));
    }
}

async fn measure(nodes: usize, maximal: bool) {
    let registrations: Vec<Vec<u8>> = (0..nodes)
        .map(|index| {
            signed(
                &node_key(index),
                "register",
                Action::RegisterNode(capabilities(maximal)),
            )
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let server = Command::new(env!("CARGO_BIN_EXE_blyan-ledger"))
        .args([
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            // Every node registers from loopback: one source.
            "--registrations-per-source-per-hour",
            "1048576",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = server.id();
    let _server = KillOnDrop(server);

    let client = Client::new(&url);
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.head().await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_before = rss_kib(pid);

    let registrations = Arc::new(registrations);
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let (client, registrations, next) =
                (client.clone(), registrations.clone(), next.clone());
            tokio::spawn(async move {
                while let Some(body) = registrations.get(next.fetch_add(1, Ordering::Relaxed)) {
                    client
                        .submit_bytes_once(body.clone())
                        .await
                        .expect("registered");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(client.state().await.unwrap().nodes, nodes);
    client.head().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(pid);

    let oracle = DevKeys::derive().burn_oracle;
    let (mut fresh, mut cached) = (Vec::new(), Vec::new());
    for sample in 0..SAMPLES {
        let body = signed(
            &oracle,
            &format!("burn-{sample}"),
            Action::RecordBurn(Burn {
                chain_tx_id: format!("0x{sample:064x}"),
                burner: "0xholder".into(),
                amount: 1_000,
            }),
        );
        let receipt = client.submit_bytes_once(body).await.expect("burn");
        let started = Instant::now();
        let head = client.head().await.unwrap();
        fresh.push(started.elapsed().as_secs_f64() * 1e3);
        assert!(head.events > receipt.seq, "the head includes the burn");
        let started = Instant::now();
        client.head().await.unwrap();
        cached.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let shape = if maximal { "maximal" } else { "2-expert" };
    println!(
        "state: {nodes} {shape} nodes: /v1/head after a commit {:.2} ms, again {:.2} ms (medians of {SAMPLES}); RSS {:.1} MiB -> {:.1} MiB, {:.2} KiB per node",
        median(fresh),
        median(cached),
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        (rss_after.saturating_sub(rss_before)) as f64 / nodes as f64,
    );
}

/// Kills the server however the benchmark ends, panics included.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
