//! Restart: how long `Engine::start` takes on a log of 10,000 nodes that heartbeat
//! every minute of log time, from the newest state snapshot and from nothing (the
//! whole log), and what a heartbeat costs the log.
//!
//! cargo bench -p blyan-ledger --bench restart [-- MINUTES]
//!
//! The log: the dev genesis, 10,000 node registrations, then MINUTES (default 100)
//! minutes in which every node heartbeats once (10,000 heartbeats a minute, each a
//! real signed command), with a state snapshot every 100,000 events as
//! `blyan-ledger serve` takes by default. Log time is a clock the bench advances.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use blyan_ledger::engine::{Engine, EngineConfig, Submission};
use blyan_ledger::store::{LogStorage, RocksStore};
use blyan_sdk::codec;
use blyan_sdk::crypto::Keypair;
use blyan_sdk::genesis::{DEV_NETWORK_ID, DevKeys};
use blyan_sdk::model::{Action, Capabilities, Command};

const NODES: u64 = 10_000;

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
    let minutes: u64 = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(100);
    let keys = DevKeys::derive();
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Keypair> = (0..NODES).map(node).collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let heartbeat_bytes = runtime.block_on(async {
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
        for minute in 0..minutes {
            CLOCK_MS.fetch_add(60_000, Ordering::SeqCst);
            let heartbeats = nodes
                .iter()
                .map(|node| submission(node, format!("h{minute}"), Action::Heartbeat))
                .collect();
            submit_all(&engine, heartbeats).await;
        }
        let events = engine.published().events();
        // What one heartbeat adds to the log: its stored record, read back.
        let last_minute = store
            .read_encoded(events - NODES, events, NODES as usize, usize::MAX)
            .unwrap();
        let bytes: usize = last_minute.iter().map(Vec::len).sum();
        drop(engine);
        writer.await.unwrap().unwrap();
        // The last snapshot's thread may still be writing it.
        bytes as f64 / last_minute.len() as f64
    });
    drop(runtime);
    eprintln!("built the log in {:.1} s", started.elapsed().as_secs_f64());

    let per_day = heartbeat_bytes * 1_440.0;
    println!(
        "heartbeat record: {heartbeat_bytes:.0} bytes; one a minute is {:.0} KB per node per day",
        per_day / 1e3
    );
    let store = open(dir.path());
    let newest = *store.snapshots().unwrap().last().expect("a snapshot");
    let snapshot_bytes = store.snapshot(newest).unwrap().unwrap().len();
    drop(store);
    let mut from_snapshot = Vec::new();
    let mut root_from_snapshot = None;
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
    // Without snapshots: every one deleted, as an operator may.
    let store = open(dir.path());
    for events in store.snapshots().unwrap() {
        store.delete_snapshot(events).unwrap();
    }
    drop(store);
    let (whole, resumed, events, root) = start(dir.path(), &keys);
    assert_eq!(resumed, 0);
    assert_eq!(
        Some((events, root)),
        root_from_snapshot,
        "both starts agree"
    );
    from_snapshot.sort_by(f64::total_cmp);
    println!(
        "start on {events} events ({NODES} nodes, {minutes} minutes): from a snapshot of {snapshot_bytes} bytes, {} events back: median {:.3} s (min {:.3}, max {:.3}); the whole log: {whole:.3} s",
        events - newest,
        from_snapshot[1],
        from_snapshot[0],
        from_snapshot[2],
    );
}
