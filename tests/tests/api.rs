//! The read API, the WebSocket stream, the `blyan` CLI and start-up checks, against
//! the real binary.

use std::time::Duration;

use blyan_e2e::{Server, binary, head, run_binary};
use blyan_sdk::codec;
use blyan_sdk::crypto::Keypair;
use blyan_sdk::model::{Action, Burn, Capabilities, Command, Event};
use prost::Message;

async fn record_burns(server: &Server, count: u64, prefix: &str) {
    let network = server.network_id().await;
    let oracle = server.dev_key("burn-oracle");
    let client = server.client();
    for index in 0..count {
        let burn = Burn {
            chain_tx_id: format!("{prefix}-{index}"),
            burner: "0xholder".into(),
            amount: 1_000 + u128::from(index),
        };
        let command = Command {
            idempotency_key: format!("{prefix}-{index}").into_bytes(),
            action: Action::RecordBurn(burn),
        };
        client
            .submit(&codec::sign_command(&oracle, &network, &command))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn cli_registers_burns_and_replays_to_the_servers_root() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let url = server.url.as_str();
    let node_key = dir.path().join("node.json");
    let (ok, public_key, stderr) =
        run_binary("blyan", &["keygen", "--out", node_key.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let public_key = public_key.trim();
    let (ok, _, _) = run_binary("blyan", &["keygen", "--out", node_key.to_str().unwrap()]);
    assert!(!ok, "keygen must refuse to overwrite a key");

    let register = [
        "--server",
        url,
        "--json",
        "register",
        "--key",
        node_key.to_str().unwrap(),
        "--gpu-model",
        "H100",
        "--vram-mib",
        "81920",
        "--experts",
        "0,2,3",
        "--endpoint",
        "https://n1.test",
    ];
    let (ok, stdout, stderr) = run_binary("blyan", &register);
    assert!(ok, "{stderr}");
    let receipt: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(receipt["seq"], 1);

    let oracle_key = dir.path().join("dev-keys/burn-oracle.json");
    let burn = [
        "--server",
        url,
        "burn",
        "--key",
        oracle_key.to_str().unwrap(),
        "--tx",
        "0xfeed",
        "--burner",
        "0xholder",
        "--amount",
        "340282366920938463463374607431768211455",
    ];
    let (ok, _, stderr) = run_binary("blyan", &burn);
    assert!(ok, "{stderr}");
    // A node key is not the oracle: the CLI reports the refusal and fails.
    let burn_as_node = [
        "--server",
        url,
        "burn",
        "--key",
        node_key.to_str().unwrap(),
        "--tx",
        "0xbeef",
        "--burner",
        "0xholder",
        "--amount",
        "1",
    ];
    let (ok, _, stderr) = run_binary("blyan", &burn_as_node);
    assert!(!ok && stderr.contains("unauthorized"), "{stderr}");

    let node: serde_json::Value = reqwest::get(format!("{url}/v1/nodes/{public_key}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        node["node"]["capabilities"]["experts"],
        serde_json::json!([0, 2, 3])
    );
    let missing = reqwest::get(format!("{url}/v1/nodes/{}", Keypair::generate().public()))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let state: serde_json::Value = reqwest::get(format!("{url}/v1/state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["burn_total"], u128::MAX.to_string());

    let (ok, stdout, stderr) = run_binary("blyan", &["--server", url, "--json", "head"]);
    assert!(ok, "{stderr}");
    let cli_head: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(cli_head, head(url).await);
    assert_eq!(cli_head["events"], 3);

    let (ok, stdout, stderr) = run_binary("blyan", &["--server", url, "--json", "events"]);
    assert!(ok, "{stderr}");
    let kinds: Vec<String> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["event"]["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        ["genesis_created", "node_registered", "burn_recorded"]
    );

    let (ok, stdout, stderr) = run_binary("blyan", &["--server", url, "--json", "replay"]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["state_root"], cli_head["state_root"]);
    assert_eq!(report["agrees"], true);
}

#[tokio::test]
async fn events_come_as_json_or_protobuf_and_checkpoints_verify() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    record_burns(&server, 5, "tx").await;

    let json: serde_json::Value = reqwest::get(format!("{}/v1/events?from=1&limit=2", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let records = json["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["seq"], 1);
    assert_eq!(records[0]["event"]["type"], "burn_recorded");
    assert_eq!(records[1]["prev_hash"], records[0]["hash"]);

    let response = reqwest::Client::new()
        .get(format!("{}/v1/events?from=0&limit=1000", server.url))
        .header("accept", "application/x-protobuf")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let page = blyan_schemas::v1::EventRecordPage::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(page.records.len(), 6);
    assert_eq!(
        hex::encode(&page.records[2].hash),
        json["records"][1]["hash"].as_str().unwrap()
    );

    let bad = reqwest::get(format!("{}/v1/events?format=xml", server.url))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["code"], "malformed_request");

    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("blyan_commands_accepted_total 5"),
        "{metrics}"
    );
    assert!(metrics.contains("blyan_log_events 6"), "{metrics}");
}

#[tokio::test]
async fn websocket_sends_backlog_then_live_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]).await;
    record_burns(&server, 3, "early").await;
    let mut subscription = server.client().subscribe(0);
    for seq in 0..4 {
        let record = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.seq, seq);
    }
    // Live: a record committed after subscribing arrives.
    record_burns(&server, 1, "live").await;
    let live = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.seq, 4);
    let logged = codec::decode_logged_event(&live.body).unwrap();
    assert!(
        matches!(logged.event, Event::BurnRecorded { ref burn, .. } if burn.chain_tx_id == "live-0")
    );

    // The connection drops with the server; the subscription resumes at seq 5.
    server.restart().await;
    record_burns(&server, 2, "after").await;
    let mut seqs = Vec::new();
    for _ in 0..2 {
        seqs.push(
            tokio::time::timeout(Duration::from_secs(30), subscription.next())
                .await
                .unwrap()
                .unwrap()
                .seq,
        );
    }
    assert_eq!(seqs, [5, 6]);
}

#[tokio::test]
async fn a_corrupt_record_stops_start_up_and_names_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]).await;
    record_burns(&server, 6, "tx").await;
    server.kill9();
    let (ok, stdout, stderr) = run_binary(
        "blyan-ledger",
        &[
            "replay",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--json",
        ],
    );
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["seq"], 6);

    // Flip one byte inside the record at seq 3, leaving the rest of the log intact.
    {
        let log = dir.path().join("log");
        let mut options = rocksdb::Options::default();
        options.create_if_missing(false);
        let db = rocksdb::DB::open_cf(&options, &log, ["events", "idempotency", "merkle"]).unwrap();
        let events = db.cf_handle("events").unwrap();
        let mut value = db.get_cf(&events, 3u64.to_be_bytes()).unwrap().unwrap();
        let middle = value.len() / 2;
        value[middle] ^= 0x01;
        db.put_cf(&events, 3u64.to_be_bytes(), value).unwrap();
    }

    let output = std::process::Command::new(binary("blyan-ledger"))
        .args([
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "the server started on a corrupt log"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("seq 3"),
        "the error must name seq 3: {stderr}"
    );
    let (ok, _, stderr) = run_binary(
        "blyan-ledger",
        &["replay", "--data-dir", dir.path().to_str().unwrap()],
    );
    assert!(!ok && stderr.contains("seq 3"), "{stderr}");
}

#[tokio::test]
async fn a_genesis_file_sets_the_network_keys_and_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let operator = Keypair::generate();
    let oracle = Keypair::generate();
    let operator_file = dir.path().join("operator.json");
    operator.write_file(&operator_file).unwrap();
    let genesis = serde_json::json!({
        "network_id": "blyan-test-7",
        "operator_key": operator.public(),
        "burn_oracle_key": oracle.public(),
        "governance_keys": [Keypair::generate().public(), Keypair::generate().public()],
        "governance_threshold": 2,
        "parameters": { "heartbeat_timeout_ms": 30000, "round_burn_threshold": "1000", "checkpoint_interval_events": 2 }
    });
    let genesis_file = dir.path().join("genesis.json");
    std::fs::write(&genesis_file, genesis.to_string()).unwrap();
    let data_dir = dir.path().join("data");
    let args = [
        "--genesis",
        genesis_file.to_str().unwrap(),
        "--operator-key",
        operator_file.to_str().unwrap(),
    ];
    let mut server = Server::start(&data_dir, &args).await;

    let head_json = head(&server.url).await;
    assert_eq!(head_json["network_id"], "blyan-test-7");
    assert!(
        !data_dir.join("dev-keys").exists(),
        "a file genesis has no dev keys"
    );
    let client = server.client();
    for index in 0..3 {
        let burn = Burn {
            chain_tx_id: format!("t{index}"),
            burner: "h".into(),
            amount: 10,
        };
        let command = Command {
            idempotency_key: vec![index],
            action: Action::RecordBurn(burn),
        };
        client
            .submit(&codec::sign_command(&oracle, "blyan-test-7", &command))
            .await
            .unwrap();
    }
    // Interval 2: genesis, burn, checkpoint(2), burn, burn, checkpoint(5).
    let state = client.state().await.unwrap();
    assert_eq!(state.checkpoint_last.unwrap().tree_size, 5);
    assert_eq!(state.genesis.unwrap().governance_threshold, 2);
    let (ok, stdout, stderr) = run_binary("blyan", &["--server", &server.url, "--json", "replay"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["agrees"],
        true
    );

    // The log remembers its genesis: another genesis file is refused.
    server.kill9();
    let other = genesis_file.with_file_name("other.json");
    let mut changed = genesis.clone();
    changed["network_id"] = "blyan-other".into();
    std::fs::write(&other, changed.to_string()).unwrap();
    let output = std::process::Command::new(binary("blyan-ledger"))
        .args([
            "serve",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args([
            "--genesis",
            other.to_str().unwrap(),
            "--operator-key",
            operator_file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("genesis differs"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_idempotency_index_is_rebuilt_from_the_log_after_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]).await;
    let network = server.network_id().await;
    // Registrations: without the index, a resent one would be a duplicate (409).
    let nodes: Vec<Keypair> = (0..4).map(|_| Keypair::generate()).collect();
    let capabilities = Capabilities {
        gpu_model: "L4".into(),
        vram_mib: 24_576,
        experts: vec![0],
        endpoint: "https://n".into(),
    };
    let signed: Vec<_> = nodes
        .iter()
        .map(|node| {
            let command = Command {
                idempotency_key: vec![7],
                action: Action::RegisterNode(capabilities.clone()),
            };
            codec::sign_command(node, &network, &command)
        })
        .collect();
    let mut receipts = Vec::new();
    for command in &signed {
        receipts.push(server.client().submit(command).await.unwrap());
    }
    server.kill9();
    {
        let mut db = rocksdb::DB::open_cf(
            &rocksdb::Options::default(),
            dir.path().join("log"),
            ["events", "idempotency", "merkle"],
        )
        .unwrap();
        db.drop_cf("idempotency").unwrap();
    }
    server.restart().await;
    let before = head(&server.url).await;
    for (command, receipt) in signed.iter().zip(&receipts) {
        assert_eq!(
            &server.client().submit_once(command).await.unwrap(),
            receipt
        );
    }
    // Reusing a rebuilt key for another command is still caught.
    let reuse = codec::sign_command(
        &nodes[0],
        &network,
        &Command {
            idempotency_key: vec![7],
            action: Action::Heartbeat { window: 0 },
        },
    );
    let error = server.client().submit_once(&reuse).await.unwrap_err();
    assert_eq!(error.code(), Some("idempotency_key_reused"));
    assert_eq!(head(&server.url).await, before);
}

#[tokio::test]
async fn the_cli_ends_quietly_on_a_closed_pipe_and_names_an_unreachable_server_once() {
    use std::io::Read;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    // More output than a pipe holds, so the CLI is still writing when the reader
    // goes.
    record_burns(&server, 300, "pipe").await;
    let url = server.url.clone();
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(binary("blyan"))
            .args(["--server", &url, "--json", "events", "--limit", "1000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 100];
        stdout.read_exact(&mut first).unwrap();
        assert_eq!(first[0], b'{', "{first:?}");
        drop(stdout);
        let output = child.wait_with_output().unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    // A port just closed refuses connections: one line, each cause once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("http://127.0.0.1:{port}");
    let (ok, _, stderr) = run_binary("blyan", &["--server", &unreachable, "head"]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches("error sending request").count(),
        1,
        "{stderr}"
    );
}
