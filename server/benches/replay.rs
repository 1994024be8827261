//! Replay: rebuild state from a log of 1,000,000 events (the start-up path of the
//! server and of `blyan-ledger replay`: decode, hash chain, checkpoints, apply).
//!
//! cargo bench -p blyan-ledger --bench replay [-- EVENTS]

use std::time::Instant;

use blyan_ledger::engine::{Engine, EngineConfig, Submission, replay_store};
use blyan_ledger::store::{LogStorage, RocksStore};
use blyan_sdk::codec;
use blyan_sdk::genesis::{DEV_NETWORK_ID, DevKeys};
use blyan_sdk::model::{Action, Burn, Capabilities, Command};
use blyan_sdk::replay::{CheckedRecord, ReplayChecks, Replayer};

fn submission(keys: &DevKeys, index: u64) -> Submission {
    // Mostly burns, with a node registration every 16 commands.
    let (signer, action) = if index.is_multiple_of(16) {
        let node =
            blyan_sdk::crypto::Keypair::from_secret(*blake3::hash(&index.to_be_bytes()).as_bytes());
        let capabilities = Capabilities {
            gpu_model: "H100".into(),
            vram_mib: 81_920,
            experts: vec![(index % 4) as u32],
            endpoint: format!("https://node-{index}.example:8443"),
        };
        (node, Action::RegisterNode(capabilities))
    } else {
        let burn = Burn {
            chain_tx_id: format!("0x{index:064x}"),
            burner: "0x00000000000000000000000000000000000000b1".into(),
            amount: 1_000_000 + u128::from(index),
        };
        (keys.burn_oracle.clone(), Action::RecordBurn(burn))
    };
    let command = Command {
        idempotency_key: index.to_be_bytes().to_vec(),
        action,
    };
    Submission {
        signed: codec::sign_command(&signer, DEV_NETWORK_ID, &command),
        command,
    }
}

fn main() {
    let events: u64 = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(1_000_000);
    let keys = DevKeys::derive();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let started = Instant::now();
    runtime.block_on(async {
        let config = EngineConfig {
            queue_commands_max: 16_384,
            batch_commands_max: 8_192,
            ..EngineConfig::default()
        };
        let (engine, _writer) = Engine::start(
            RocksStore::open(dir.path()).unwrap(),
            keys.genesis(),
            keys.operator.clone(),
            config,
        )
        .unwrap();
        let mut index = 0;
        while engine.published().events() < events {
            let chunk: Vec<Submission> = (index..index + 8_192)
                .map(|index| submission(&keys, index))
                .collect();
            index += 8_192;
            let answers = futures_util::future::join_all(
                chunk
                    .into_iter()
                    .map(|submission| engine.submit(submission)),
            )
            .await;
            assert!(answers.iter().all(Result::is_ok));
        }
    });
    eprintln!("built the log in {:.1} s", started.elapsed().as_secs_f64());

    let mut rates = Vec::new();
    for _ in 0..3 {
        let store = RocksStore::open_read_only(dir.path()).unwrap();
        let started = Instant::now();
        let replayer = replay_store(store.as_ref(), &mut |_| {}).unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        let root = replayer.state().root();
        rates.push(replayer.len() as f64 / elapsed);
        eprintln!(
            "replayed {} events in {elapsed:.3} s, state root {}",
            replayer.len(),
            hex::encode(root)
        );
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "replay: {} events: median {:.0} events/s (min {:.0}, max {:.0})",
        events, rates[1], rates[0], rates[2]
    );

    // The auditor's replay, as `blyan replay` runs it on the pages it downloads: every
    // signature checked and every cause decided again. One pass, on one thread.
    let store = RocksStore::open_read_only(dir.path()).unwrap();
    let started = Instant::now();
    let mut auditor = Replayer::new(ReplayChecks::AUDIT);
    store
        .scan(0, &mut |seq, value| {
            let checked = CheckedRecord::decode(seq, value).map_err(Some)?;
            auditor.push_checked(&checked).map_err(Some)
        })
        .unwrap();
    auditor.finish().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "audit replay: {} events in {elapsed:.2} s: {:.0} events/s",
        auditor.len(),
        auditor.len() as f64 / elapsed
    );
}
