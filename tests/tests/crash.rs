//! Crash safety: concurrent clients submit while the server is SIGKILLed at random
//! moments. After every restart each acknowledged command's event is in the log with
//! the hash it was acknowledged with, the chain is intact, and `blyan replay` agrees
//! with the server's state root. A backup of a stopped server's data directory
//! restores into a new one that serves the same log, blobs and root. A log cut where a
//! round awaited a plugin's answer or its merge is completed alike at start-up. A
//! start from a state snapshot reaches the root a full replay reaches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blyan_e2e::{Server, run_binary};
use blyan_sdk::api::Receipt;
use blyan_sdk::client::Client;
use blyan_sdk::codec;
use blyan_sdk::crypto::Keypair;
use blyan_sdk::genesis::DevKeys;
use blyan_sdk::model::{Action, Burn, Capabilities, Command, Phase, SignedCommand};
use blyan_sdk::replay::{ReplayChecks, Replayer};

const KILLS: usize = 20;
const CLIENTS: usize = 8;

/// xorshift64*, seeded from the clock and printed, so a failing run can be repeated by
/// setting BLYAN_CRASH_SEED.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[derive(Debug, Clone)]
struct Acked {
    signed: SignedCommand,
    receipt: Receipt,
}

fn make_command(
    client_index: usize,
    counter: u64,
    network: &str,
    oracle: &Keypair,
) -> SignedCommand {
    let key = format!("c{client_index}-{counter}").into_bytes();
    if counter.is_multiple_of(2) {
        let node = Keypair::generate();
        let capabilities = Capabilities {
            gpu_model: "A100".into(),
            vram_mib: 40_960,
            experts: vec![counter as u32 % 4],
            endpoint: format!("https://n{client_index}-{counter}"),
        };
        codec::sign_command(
            &node,
            network,
            &Command {
                idempotency_key: key,
                action: Action::RegisterNode(capabilities),
            },
        )
    } else {
        let mut tx = [0u8; 16];
        tx[..8].copy_from_slice(&Keypair::generate().public().0[..8]);
        let burn = Burn {
            chain_tx_id: format!("0x{}", hex::encode(tx)),
            burner: format!("0xholder{client_index}"),
            amount: u128::from(counter) + 1,
        };
        codec::sign_command(
            oracle,
            network,
            &Command {
                idempotency_key: key,
                action: Action::RecordBurn(burn),
            },
        )
    }
}

/// Downloads the whole log, replaying it with every check, and returns the record
/// hashes and bodies by seq.
async fn audit(client: &Client) -> (Vec<[u8; 32]>, Vec<Vec<u8>>) {
    let events = client.head().await.unwrap().events;
    let mut replayer = Replayer::new(ReplayChecks::AUDIT);
    let mut hashes = Vec::new();
    let mut bodies = Vec::new();
    while (hashes.len() as u64) < events {
        for record in client.events(hashes.len() as u64, 1_000).await.unwrap() {
            replayer
                .push(&record)
                .unwrap_or_else(|error| panic!("the log fails its audit: {error}"));
            hashes.push(record.hash);
            bodies.push(record.body);
        }
    }
    (hashes, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_commands_survive_kill_9() {
    let seed = std::env::var("BLYAN_CRASH_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed: {seed} (BLYAN_CRASH_SEED={seed} repeats it)");
    let mut random = Random(seed);

    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]).await;
    let network = server.network_id().await;
    let oracle = server.dev_key("burn-oracle");
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();

    for round in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for client_index in 0..CLIENTS {
            let (stop, acked, oracle, network) =
                (stop.clone(), acked.clone(), oracle.clone(), network.clone());
            let client = server.client();
            workers.push(tokio::spawn(async move {
                let mut counter = (round as u64) << 32;
                while !stop.load(Ordering::Relaxed) {
                    counter += 1;
                    let signed = make_command(client_index, counter, &network, &oracle);
                    match client.submit_once(&signed).await {
                        Ok(receipt) => acked.lock().unwrap().push(Acked { signed, receipt }),
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(50 + random.next() % 400)).await;
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.await.unwrap();
        }
        server.restart().await;

        let client = server.client();
        let (hashes, bodies) = audit(&client).await;
        let acked_now = acked.lock().unwrap().clone();
        for entry in &acked_now {
            let seq = entry.receipt.seq as usize;
            assert!(
                seq < hashes.len(),
                "round {round}: acknowledged seq {seq} is missing (log has {})",
                hashes.len()
            );
            assert_eq!(
                hex::encode(hashes[seq]),
                entry.receipt.event_hash,
                "round {round}: seq {seq} has another hash"
            );
            let logged = codec::decode_logged_event(&bodies[seq]).unwrap();
            assert_eq!(
                logged.cause.command(),
                Some(&entry.signed),
                "round {round}: seq {seq} holds another command"
            );
        }
        // The idempotency index survived too: a retry of an acknowledged command gets
        // its original receipt.
        if let Some(last) = acked_now.last() {
            assert_eq!(
                client.submit_once(&last.signed).await.unwrap(),
                last.receipt
            );
        }
        let (ok, stdout, stderr) =
            run_binary("blyan", &["--server", &server.url, "--json", "replay"]);
        assert!(ok, "round {round}: blyan replay failed: {stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["agrees"], true, "{report}");
        assert_eq!(report["events"].as_u64().unwrap(), hashes.len() as u64);
    }
    let total = acked.lock().unwrap().len();
    eprintln!("{total} commands acknowledged across {KILLS} kills");
    assert!(
        total >= KILLS * 10,
        "too few commands were acknowledged ({total}) for the test to mean anything"
    );
}

/// With a state snapshot at every checkpoint, a server killed with `kill -9` starts
/// from the newest snapshot, folds only the log after it, and serves the state root
/// that a full replay of the log reaches; every acknowledged command is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_from_a_snapshot_after_kill_9_agrees_with_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let keys = DevKeys::derive();
    let mut genesis = keys.genesis();
    genesis.parameters.checkpoint_interval_events = 16;
    let genesis_path = dir.path().join("genesis.json");
    std::fs::write(&genesis_path, serde_json::to_vec(&genesis).unwrap()).unwrap();
    let operator_path = dir.path().join("operator.json");
    keys.operator.write_file(&operator_path).unwrap();
    let args = [
        "--genesis",
        genesis_path.to_str().unwrap(),
        "--operator-key",
        operator_path.to_str().unwrap(),
        "--snapshot-interval-events",
        "1",
    ];
    let mut server = Server::start(&dir.path().join("data"), &args).await;
    assert_eq!(
        blyan_e2e::metric(&server.url, "blyan_start_snapshot_events").await,
        Some(0.0),
        "a new log has no snapshot to start from"
    );
    let network = server.network_id().await;
    let mut acked = Vec::new();
    let mut counter = 0;
    for kill in 0..3 {
        let client = server.client();
        // Enough for a few checkpoints, each taking a snapshot.
        for _ in 0..40 {
            counter += 1;
            let signed = make_command(0, counter, &network, &keys.burn_oracle);
            let receipt = client.submit_once(&signed).await.unwrap();
            acked.push((signed, receipt));
        }
        let events = client.head().await.unwrap().events;
        server.restart().await;
        let started = |series| blyan_e2e::metric(&server.url, series);
        let from = started("blyan_start_snapshot_events").await.unwrap();
        let replayed = started("blyan_start_replayed_events").await.unwrap();
        assert!(from > 0.0, "kill {kill}: the start began from a snapshot");
        assert_eq!(from + replayed, events as f64, "kill {kill}");
        assert!(
            replayed < 40.0,
            "kill {kill}: it replayed {replayed} events"
        );
        let client = server.client();
        let (hashes, bodies) = audit(&client).await;
        for (signed, receipt) in &acked {
            let seq = receipt.seq as usize;
            assert_eq!(hex::encode(hashes[seq]), receipt.event_hash, "kill {kill}");
            let logged = codec::decode_logged_event(&bodies[seq]).unwrap();
            assert_eq!(logged.cause.command(), Some(signed), "kill {kill}");
        }
        let (ok, stdout, stderr) =
            run_binary("blyan", &["--server", &server.url, "--json", "replay"]);
        assert!(ok, "kill {kill}: blyan replay failed: {stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["agrees"], true, "kill {kill}: {report}");
        assert_eq!(report["events"].as_u64().unwrap(), events, "kill {kill}");
    }
}

/// Copies a directory tree, as `cp -a` does for the files a backup holds.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_backup_restores_into_a_new_data_dir_that_serves_the_same_root() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("data");
    let mut server = Server::start(&original, &[]).await;
    let client = server.client();
    let network = server.network_id().await;
    let oracle = server.dev_key("burn-oracle");
    for counter in 0..40 {
        client
            .submit(&make_command(0, counter, &network, &oracle))
            .await
            .unwrap();
    }
    let blob = b"a blob the backup must keep".to_vec();
    client.put_blob(&blob).await.unwrap();
    let before = client.head().await.unwrap();
    // Stopped the hard way: a backup of a data directory after `kill -9` is as good
    // as one after a clean stop, since every acknowledged write was synced.
    server.kill9();
    let backup = dir.path().join("backup");
    copy_tree(&original, &backup);
    drop(server);
    std::fs::remove_dir_all(&original).unwrap();

    let restored = dir.path().join("restored");
    copy_tree(&backup, &restored);
    let server = Server::start(&restored, &[]).await;
    let client = server.client();
    let after = client.head().await.unwrap();
    assert_eq!(
        (after.events, &after.head_hash, &after.state_root),
        (before.events, &before.head_hash, &before.state_root)
    );
    assert_eq!(
        client.blob(blake3::hash(&blob).as_bytes()).await.unwrap(),
        blob
    );
    audit(&client).await;
    let (ok, stdout, stderr) = run_binary("blyan", &["--server", &server.url, "replay"]);
    assert!(ok, "{stdout}{stderr}");
    // The restored server goes on taking commands.
    client
        .submit(&make_command(0, 41, &network, &oracle))
        .await
        .unwrap();
    assert_eq!(client.head().await.unwrap().events, before.events + 1);
}

/// Cuts the log of a stopped server's data directory back to its first `seq` records,
/// as a crash right after record `seq - 1` was synced leaves it; the derived columns
/// go, to be rebuilt at start-up.
fn cut_log(data_dir: &std::path::Path, seq: u64) {
    let mut db = rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        data_dir.join("log"),
        ["events", "idempotency", "merkle"],
    )
    .unwrap();
    let events = db.cf_handle("events").unwrap();
    // Seqs are big-endian keys; none reaches u64::MAX.
    db.delete_range_cf(&events, seq.to_be_bytes(), u64::MAX.to_be_bytes())
        .unwrap();
    db.flush_cf(&events).unwrap();
    db.drop_cf("idempotency").unwrap();
    db.drop_cf("merkle").unwrap();
}

/// A crash after a round's phase began and before its plugin's answer (or after its
/// end and before its merge) was logged: at start-up the server asks the plugin again
/// (or merges again) and logs the same answer, from the log alone. Each cut is where a
/// cause's first record would have been; the server restarts on the prefix before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_answer_or_a_merge_lost_to_a_crash_is_made_again_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = blyan_e2e::demo_server(dir.path(), 1).await;
    let client = server.client();
    let page: serde_json::Value =
        reqwest::get(format!("{}/v1/events?from=0&limit=1000", server.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let records = page["records"].as_array().unwrap().clone();
    let original = client.round(1).await.unwrap();
    let expert = original.summary.expert;
    let version = client
        .expert_versions(expert, 1, 1)
        .await
        .unwrap()
        .remove(0);
    server.kill9();
    drop(server);
    let demo = dir.path().join("demo");

    // The event whose cause is lost: the sharding, scoring and reward plugins'
    // answers (the round left assigning, scoring and rewarding), and the merge.
    for kind in [
        "assignments_made",
        "scores_recorded",
        "round_finalized",
        "expert_updated",
    ] {
        let cut = records
            .iter()
            .find(|record| record["event"]["type"] == kind && record["event"]["round"] == 1)
            .unwrap_or_else(|| panic!("the demo's round logged {kind}"));
        assert!(
            cut["server_input"].is_object(),
            "{kind} opens its cause: {cut}"
        );
        let seq = cut["seq"].as_u64().unwrap();
        let data = dir.path().join(format!("cut-{kind}"));
        copy_tree(&demo.join("data"), &data);
        cut_log(&data, seq);
        let server = Server::start(
            &data,
            &[
                "--genesis",
                demo.join("genesis.json").to_str().unwrap(),
                "--operator-key",
                demo.join("operator.json").to_str().unwrap(),
            ],
        )
        .await;
        let client = server.client();
        // The record the cut removed is made again: the same answer, at the same seq.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let again = loop {
            let page: serde_json::Value =
                reqwest::get(format!("{}/v1/events?from={seq}&limit=1", server.url))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
            if let Some(record) = page["records"].get(0) {
                break record.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{kind} was not made again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(again["event"]["type"], kind);
        // Equal but for log time, and the deadlines that count from it.
        let without_time = |record: &serde_json::Value| {
            let mut event = record["event"].clone();
            let fields = event.as_object_mut().unwrap();
            fields.remove("time_ms");
            fields.remove("deadline_ms");
            (event, record["server_input"].clone())
        };
        assert_eq!(without_time(&again), without_time(cut), "{kind}");
        // The round moved on from where the crash left it, with the original's roots
        // as far as it went (after the assignments, its nodes are gone: it waits).
        let view = client.round(1).await.unwrap();
        assert_eq!(view.assignments_root, original.assignments_root);
        if kind != "assignments_made" {
            let ended = wait_over(&client, 1).await;
            assert_eq!(ended.summary.phase, Phase::Finalized);
            assert_eq!(ended.scores_root, original.scores_root);
            assert_eq!(ended.rewards_root, original.rewards_root);
            assert_eq!(ended.node_rewards, original.node_rewards);
            assert_eq!(ended.validator_rewards, original.validator_rewards);
        }
        if kind == "round_finalized" || kind == "expert_updated" {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let merged = loop {
                if let Some(merged) = client
                    .expert_versions(expert, 1, 1)
                    .await
                    .unwrap()
                    .into_iter()
                    .next()
                {
                    break merged;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no merge after {kind}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert_eq!(merged.weights_hash, version.weights_hash);
            assert_eq!(merged.held_out_loss, version.held_out_loss);
        }
        let (ok, stdout, stderr) = run_binary("blyan", &["--server", &server.url, "replay"]);
        assert!(ok, "{kind}: {stdout}{stderr}");
    }
}

/// Waits until `round` ended; its view.
async fn wait_over(client: &Client, round: u64) -> blyan_sdk::api::RoundView {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let view = client.round(round).await.unwrap();
        if view.summary.phase.is_over() {
            return view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "round {round} did not end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
