//! Durable ingest over HTTP: pre-signed commands from 64 concurrent clients against the
//! real `blyan-ledger` release binary, fsync on. Prints commands/s.
//!
//! cargo bench -p blyan-ledger --bench ingest [-- COMMANDS CLIENTS]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use blyan_sdk::client::Client;
use blyan_sdk::codec;
use blyan_sdk::genesis::{DEV_NETWORK_ID, DevKeys};
use blyan_sdk::model::{Action, Burn, Command as LedgerCommand};

fn sign_burns(keys: &DevKeys, range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range
        .map(|index| {
            let burn = Burn {
                chain_tx_id: format!("0x{index:064x}"),
                burner: "0x00000000000000000000000000000000000000b1".into(),
                amount: 1_000_000 + u128::from(index),
            };
            let command = LedgerCommand {
                idempotency_key: index.to_be_bytes().to_vec(),
                action: Action::RecordBurn(burn),
            };
            codec::encode_signed_command(&codec::sign_command(
                &keys.burn_oracle,
                DEV_NETWORK_ID,
                &command,
            ))
        })
        .collect()
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let commands = args.first().copied().unwrap_or(200_000);
    let clients = args.get(1).copied().unwrap_or(64);
    let warmup = 5_000;

    let keys = DevKeys::derive();
    let started = Instant::now();
    let total = warmup + commands;
    let half = total / 2;
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| sign_burns(&keys, 0..half));
        let second = scope.spawn(|| sign_burns(&keys, half..total));
        (first.join().unwrap(), second.join().unwrap())
    });
    let mut signed: Vec<Vec<u8>> = first.into_iter().chain(second).collect();
    eprintln!(
        "signed {total} commands in {:.1} s",
        started.elapsed().as_secs_f64()
    );

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
            // Every client registers from loopback: one source.
            "--registrations-per-source-per-hour",
            "1048576",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _server = KillOnDrop(server);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::new(&url);
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.head().await.is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let measured = signed.split_off(warmup as usize);
        let warm = run(&client, signed, clients).await;
        eprintln!("warm-up: {warm:.0} commands/s");
        let rate = run(&client, measured, clients).await;
        let state = client.state().await.unwrap();
        assert_eq!(
            state.burns as u64, total,
            "every command must be in the log"
        );
        println!(
            "ingest: {commands} signed commands, {clients} clients, fsync on: {rate:.0} commands/s"
        );
    });
}

/// Kills the server however the benchmark ends, panics included.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends every command once, `clients` at a time; returns commands/s.
async fn run(client: &Client, commands: Vec<Vec<u8>>, clients: u64) -> f64 {
    let count = commands.len();
    let commands = Arc::new(commands);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (client, commands, next) = (client.clone(), commands.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(body) = commands.get(index) else {
                        break;
                    };
                    client
                        .submit_bytes_once(body.clone())
                        .await
                        .expect("accepted");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    count as f64 / started.elapsed().as_secs_f64()
}
