//! Restart: how long `Engine::start` takes on the log of 10,000 nodes that heartbeat
//! every minute of log time for DAYS days, from the newest state snapshot if there is
//! one and from nothing (the whole log), and what liveness costs the log and the blob
//! store per node per day.
//!
//! cargo bench -p blyan-ledger --bench restart [-- DAYS]
//!
//! The log: the dev genesis, 10,000 node registrations, then one liveness window a
//! minute for DAYS (default 30) days, each holding every node. The first
//! `REAL_WINDOWS` windows are real: 10,000 signed heartbeats each through
//! `Engine::heartbeat`, sealed into their blob as the scheduler does. The others log
//! the last real window's content again (its bitmap, root and blob name) under the
//! next number: the same bytes a real window logs, without signing 14 million
//! heartbeats a day to make them. State snapshots are taken every 100,000 events, as
//! `blyan-ledger serve` does by default. Log time is a clock the bench advances.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use blyan_ledger::engine::{Engine, EngineConfig, Submission};
use blyan_ledger::store::{LogStorage, RocksStore};
use blyan_sdk::codec;
use blyan_sdk::crypto::Keypair;
use blyan_sdk::genesis::{DEV_NETWORK_ID, DevKeys};
use blyan_sdk::liveness;
use blyan_sdk::model::{Action, Capabilities, Command, LivenessWindow, ServerInput};

const NODES: u64 = 10_000;

/// Windows made of real signed heartbeats.
const REAL_WINDOWS: u64 = 5;

/// Log time, in ms: the bench moves it a minute at a time.
static CLOCK_MS: AtomicU64 = AtomicU64::new(1_000_000);

fn clock_ms() -> u64 {
    CLOCK_MS.load(Ordering::SeqCst)
}

fn node(index: u64) -> Keypair {
    Keypair::from_secret(*blake3::hash(&index.to_be_bytes()).as_bytes())
}

fn submission(signer: &Keypair, key: String, action: Action) -> Submission {
    let command = Command {
        idempotency_key: key.into_bytes(),
        action,
    };
    Submission {
        signed: codec::sign_command(signer, DEV_NETWORK_ID, &command),
        command,
    }
}

fn config() -> EngineConfig {
    EngineConfig {
        queue_commands_max: 16_384,
        batch_commands_max: 8_192,
        clock_ms,
        ..EngineConfig::default()
    }
}

/// Submits every submission, 8,192 at a time.
async fn submit_all(engine: &Engine, submissions: Vec<Submission>) {
    let mut submissions = submissions.into_iter().peekable();
    while submissions.peek().is_some() {
        let chunk: Vec<Submission> = submissions.by_ref().take(8_192).collect();
        let answers =
            futures_util::future::join_all(chunk.into_iter().map(|s| engine.submit(s))).await;
        assert!(
            answers.iter().all(Result::is_ok),
            "every command is accepted"
        );
    }
}

/// Opens the store, once the last handle of an earlier one (a snapshot thread's) has
/// let go of RocksDB's lock.
fn open(dir: &std::path::Path) -> Arc<RocksStore> {
    for _ in 0..3_000 {
        if let Ok(store) = RocksStore::open(dir) {
            return store;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the store stayed locked");
}

/// Starts the engine on the log, and returns how long that took (opening RocksDB
/// included), the events of the snapshot it started from (0 for none), the events and
/// the state root.
fn start(dir: &std::path::Path, keys: &DevKeys) -> (f64, u64, u64, [u8; 32]) {
    drop(open(dir));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let started = Instant::now();
        let (engine, writer) = Engine::start(
            RocksStore::open(dir).unwrap(),
            keys.genesis(),
            keys.operator.clone(),
            config(),
        )
        .unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        let answer = {
            let published = engine.published();
            (
                elapsed,
                engine.metrics().start_replay().0,
                published.events(),
                published.state_root(),
            )
        };
        // The writer ends when its last handle is dropped.
        drop(engine);
        writer.await.unwrap().unwrap();
        answer
    })
}

fn main() {
    let days: u64 = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(30);
    let windows = days * 1_440;
    let keys = DevKeys::derive();
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Keypair> = (0..NODES).map(node).collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let (window_bytes, blob_bytes) = runtime.block_on(async {
        let store = RocksStore::open(dir.path()).unwrap();
        let (engine, writer) = Engine::start(
            store.clone(),
            keys.genesis(),
            keys.operator.clone(),
            config(),
        )
        .unwrap();
        let registrations = nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let capabilities = Capabilities {
                    gpu_model: "H100".into(),
                    vram_mib: 81_920,
                    experts: vec![index as u32 % 4],
                    endpoint: format!("https://node-{index}.example:8443"),
                };
                submission(
                    node,
                    format!("r{index}"),
                    Action::RegisterNode(capabilities),
                )
            })
            .collect();
        submit_all(&engine, registrations).await;
        let mut last: Option<LivenessWindow> = None;
        let mut blob_bytes = 0;
        for window in 0..windows {
            CLOCK_MS.fetch_add(60_000, Ordering::SeqCst);
            let sealed = if window < REAL_WINDOWS {
                let heartbeats = nodes.iter().map(|node| {
                    engine.heartbeat(submission(
                        node,
                        format!("h{window}"),
                        Action::Heartbeat { window },
                    ))
                });
                let answers = futures_util::future::join_all(heartbeats).await;
                assert!(answers.iter().all(Result::is_ok), "every heartbeat is held");
                let (number, held) = engine
                    .take_heartbeats(clock_ms())
                    .expect("the window is due");
                assert_eq!((number, held.len() as u64), (window, NODES));
                let (sealed, blob) = liveness::seal(window, 0, &held);
                blob_bytes = blob.len();
                sealed
            } else {
                LivenessWindow {
                    window,
                    ..last.clone().expect("a real window came first")
                }
            };
            let receipt = engine
                .submit_input(ServerInput::CloseLivenessWindow(sealed.clone()))
                .await
                .unwrap();
            assert!(receipt.is_some(), "window {window} closes");
            last = Some(sealed);
        }
        let events = engine.published().events();
        // What one window adds to the log: its stored record, read back.
        let record = store
            .read_encoded(events - 1, events, 1, usize::MAX)
            .unwrap();
        drop(engine);
        writer.await.unwrap().unwrap();
        // The last snapshot's thread may still be writing it.
        (record[0].len(), blob_bytes)
    });
    drop(runtime);
    eprintln!("built the log in {:.1} s", started.elapsed().as_secs_f64());

    let per_node_day = |bytes: usize| bytes as f64 * 1_440.0 / NODES as f64;
    println!(
        "liveness window of {NODES} nodes: its record {window_bytes} bytes, its blob {blob_bytes} bytes; one a minute is {:.0} bytes per node per day in the log and {:.0} KB in the blob store",
        per_node_day(window_bytes),
        per_node_day(blob_bytes) / 1e3
    );
    let store = open(dir.path());
    let newest = store.snapshots().unwrap().last().copied();
    let snapshot_bytes = newest.map(|events| store.snapshot(events).unwrap().unwrap().len());
    drop(store);
    let mut from_snapshot = Vec::new();
    let mut root_from_snapshot = None;
    if let Some(newest) = newest {
        for _ in 0..3 {
            let (elapsed, resumed, events, root) = start(dir.path(), &keys);
            assert_eq!(resumed, newest);
            eprintln!(
                "start from the snapshot of {newest} events ({} after it): {elapsed:.3} s",
                events - newest
            );
            from_snapshot.push(elapsed);
            root_from_snapshot = Some((events, root));
        }
    }
    // Without snapshots: every one deleted, as an operator may.
    let store = open(dir.path());
    for events in store.snapshots().unwrap() {
        store.delete_snapshot(events).unwrap();
    }
    drop(store);
    let mut whole = Vec::new();
    for _ in 0..3 {
        let (elapsed, resumed, events, root) = start(dir.path(), &keys);
        assert_eq!(resumed, 0);
        if let Some(from_snapshot) = root_from_snapshot {
            assert_eq!((events, root), from_snapshot, "both starts agree");
        }
        whole.push((elapsed, events));
    }
    whole.sort_by(|a, b| a.0.total_cmp(&b.0));
    let events = whole[0].1;
    let snapshot = match (newest, snapshot_bytes) {
        (Some(newest), Some(bytes)) => {
            from_snapshot.sort_by(f64::total_cmp);
            format!(
                "from a snapshot of {bytes} bytes, {} events back: median {:.3} s (min {:.3}, max {:.3})",
                events - newest,
                from_snapshot[1],
                from_snapshot[0],
                from_snapshot[2]
            )
        }
        _ => "no snapshot was due".to_string(),
    };
    println!(
        "start on {events} events ({NODES} nodes, {days} days of windows): {snapshot}; the whole log: median {:.3} s (min {:.3}, max {:.3})",
        whole[1].0, whole[0].0, whole[2].0,
    );
}
