//! The server against abuse at the connection and protocol level, on the real binary:
//! connections that trickle or send nothing, a connection cap, a body announced too
//! large, limits that can't run, and one error contract on every route.

use std::time::{Duration, Instant};

#[path = "../../plugins/host/tests/hostile/mod.rs"]
mod hostile;

use blyan_e2e::{Server, binary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn healthz_answers(url: &str) {
    let response = reqwest::Client::new()
        .get(format!("{url}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("healthz answers");
    assert!(response.status().is_success());
}

/// True once the peer closed the connection: a read returns end of file or an error.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    false
}

fn address(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn slow_and_silent_connections_are_closed_and_healthz_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--header-read-timeout-ms", "1000"]).await;
    let address = address(&server);

    let mut silent = Vec::new();
    let mut trickling = Vec::new();
    for _ in 0..10 {
        silent.push(TcpStream::connect(&address).await.unwrap());
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        trickling.push(stream);
    }
    // A keep-alive connection that sent one request and then nothing.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 512];
    let read = idle.read(&mut answer).await.unwrap();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));

    let started = Instant::now();
    for _ in 0..4 {
        healthz_answers(&server.url).await;
        // The trickle goes on, one header line at a time.
        for stream in &mut trickling {
            let _ = stream.write_all(b"X-Slow: 1\r\n").await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for stream in silent.iter_mut().chain(&mut trickling).chain([&mut idle]) {
        assert!(
            closed_within(stream, Duration::from_secs(5)).await,
            "a connection stayed open {:?} after it started",
            started.elapsed()
        );
    }
    healthz_answers(&server.url).await;
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_wait_and_then_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--connections-max", "8", "--header-read-timeout-ms", "1000"],
    )
    .await;
    let address = address(&server);
    // Sixteen idle sockets: eight take the cap, eight wait in the backlog.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(TcpStream::connect(&address).await.unwrap());
    }
    // Each idle one is closed after the header timeout, so a new client gets in.
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(format!("{}/healthz", server.url))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("served once idle connections time out");
    assert!(response.status().is_success());
    // It waited behind the cap until idle connections timed out (1 s).
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "served after {:?}: the cap did not hold",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    for stream in &mut idle {
        assert!(closed_within(stream, Duration::from_secs(5)).await);
    }
}

#[tokio::test]
async fn a_body_announced_too_large_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let address = address(&server);
    for (path, method) in [
        ("/v1/commands", "POST"),
        (&*format!("/v1/blobs/{}", "ab".repeat(32)), "PUT"),
    ] {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 1024];
        while !answer.windows(4).any(|window| window == b"\r\n\r\n") {
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
                .await
                .expect("answered without waiting for the body")
                .unwrap();
            assert!(read > 0, "closed without an answer");
            answer.extend_from_slice(&buffer[..read]);
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 413"), "{method} {path}: {text}");
        assert!(text.to_ascii_lowercase().contains("application/json"));
    }
    healthz_answers(&server.url).await;
}

/// Every route, hit with a wrong method, a bad query or an unknown path, answers its
/// 4xx with the JSON body `{code, message}`.
#[tokio::test]
async fn every_refusal_is_json_with_a_code_and_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--request-timeout-ms", "30000"]).await;
    let http = reqwest::Client::new();
    let blob = format!("/v1/blobs/{}", "ab".repeat(32));
    let node = format!("/v1/nodes/{}", "cd".repeat(32));
    let plugin = format!("/v1/plugins/{}", "ef".repeat(32));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("GET", "/nope".into(), 404, "not_found"),
        ("GET", "/v1".into(), 404, "not_found"),
        ("POST", "/v1/nope/deeper".into(), 404, "not_found"),
        ("GET", "/v1/commands".into(), 405, "method_not_allowed"),
        ("PUT", "/v1/commands".into(), 405, "method_not_allowed"),
        ("POST", "/v1/events".into(), 405, "method_not_allowed"),
        ("DELETE", "/v1/head".into(), 405, "method_not_allowed"),
        ("POST", "/v1/state".into(), 405, "method_not_allowed"),
        ("POST", node.clone(), 405, "method_not_allowed"),
        ("POST", "/v1/governance".into(), 405, "method_not_allowed"),
        ("POST", "/v1/plugins".into(), 405, "method_not_allowed"),
        ("POST", plugin.clone(), 405, "method_not_allowed"),
        ("POST", "/healthz".into(), 405, "method_not_allowed"),
        ("POST", "/metrics".into(), 405, "method_not_allowed"),
        ("POST", blob.clone(), 405, "method_not_allowed"),
        ("POST", "/v1/events/ws".into(), 405, "method_not_allowed"),
        (
            "GET",
            "/v1/events?limit=-1".into(),
            400,
            "malformed_request",
        ),
        (
            "GET",
            "/v1/events?from=abc".into(),
            400,
            "malformed_request",
        ),
        (
            "GET",
            "/v1/events?limit=4294967296".into(),
            400,
            "malformed_request",
        ),
        (
            "GET",
            "/v1/events/ws?from=abc".into(),
            400,
            "malformed_request",
        ),
        ("GET", "/v1/events/ws".into(), 400, "malformed_request"),
        ("GET", "/v1/nodes/zz".into(), 400, "malformed_request"),
        ("GET", "/v1/plugins/zz".into(), 400, "malformed_request"),
        ("GET", "/v1/blobs/zz".into(), 400, "malformed_request"),
        ("GET", node, 404, "node_not_found"),
        ("GET", plugin, 404, "plugin_not_found"),
        ("GET", blob, 404, "blob_not_found"),
    ];
    for (method, path, status, code) in cases {
        let response = http
            .request(method.parse().unwrap(), format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let content_type = response
            .headers()
            .get("content-type")
            .map(|value| value.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}: content-type {content_type:?}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{method} {path}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty()),
            "{method} {path}: {body}"
        );
    }
}

#[test]
fn limits_that_cannot_run_are_refused_at_start_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("--events-page-max", "0"),
        ("--events-page-bytes-max", "0"),
        ("--subscribers-max", "0"),
        ("--events-page-bytes-max", "18446744073709551615"),
        ("--subscribers-max", "18446744073709551615"),
        ("--queue-commands-max", "0"),
        ("--batch-commands-max", "0"),
        ("--body-bytes-max", "0"),
        ("--request-timeout-ms", "0"),
        ("--blob-bytes-max", "0"),
        ("--connections-max", "0"),
        ("--header-read-timeout-ms", "0"),
        ("--write-timeout-ms", "0"),
        ("--request-timeout-ms", "18446744073709551615"),
        ("--header-read-timeout-ms", "18446744073709551615"),
        ("--write-timeout-ms", "18446744073709551615"),
        ("--events-page-max", "4294967295"),
        ("--queue-commands-max", "18446744073709551615"),
        ("--batch-commands-max", "18446744073709551615"),
        ("--connections-max", "18446744073709551615"),
        ("--body-bytes-max", "18446744073709551615"),
        ("--blob-bytes-max", "18446744073709551615"),
        ("--registrations-per-source-per-hour", "0"),
        ("--registrations-per-source-per-hour", "4294967295"),
        ("--plugin-check-timeout-ms", "0"),
        ("--plugin-check-timeout-ms", "18446744073709551615"),
        ("--plugin-check-memory-mib", "0"),
        ("--plugin-check-memory-mib", "18446744073709551615"),
    ];
    for (flag, value) in cases {
        let output = std::process::Command::new(binary("blyan-ledger"))
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", flag, value])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{flag} {value} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(flag) && stderr.contains("must be in"),
            "{flag} {value}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{flag} {value}: {stderr}");
    }
}

/// A log whose hash chain is intact but whose meaning is corrupt: one node registered
/// twice, every record after the altered one sealed again so that each link holds. Start-up refuses it by the bad seq, and nothing panics.
#[tokio::test]
async fn a_log_that_means_something_impossible_is_refused_by_seq_without_a_panic() {
    use blyan_sdk::codec;
    use blyan_sdk::crypto::Keypair;
    use blyan_sdk::model::{Action, Capabilities, Command, Event};
    use blyan_sdk::record::Record;

    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]).await;
    let network = server.network_id().await;
    let (node, other) = (Keypair::generate(), Keypair::generate());
    let client = server.client();
    let capabilities = Capabilities {
        gpu_model: "RTX 4090".into(),
        vram_mib: 24_576,
        experts: vec![1, 2],
        endpoint: "https://node.test:8443".into(),
    };
    let mut altered_seq = 0;
    for key in [&node, &other] {
        let command = Command {
            idempotency_key: b"register".to_vec(),
            action: Action::RegisterNode(capabilities.clone()),
        };
        let receipt = client
            .submit(&codec::sign_command(key, &network, &command))
            .await
            .unwrap();
        altered_seq = receipt.seq;
    }
    server.kill9();

    {
        let log = dir.path().join("log");
        let mut options = rocksdb::Options::default();
        options.create_if_missing(false);
        let db = rocksdb::DB::open_cf(&options, &log, ["events", "idempotency", "merkle"]).unwrap();
        let events = db.cf_handle("events").unwrap();
        let read = |seq: u64| {
            Record::decode(&db.get_cf(&events, seq.to_be_bytes()).unwrap().unwrap()).unwrap()
        };
        let mut prev_hash = read(altered_seq - 1).hash;
        let mut seq = altered_seq;
        while let Some(bytes) = db.get_cf(&events, seq.to_be_bytes()).unwrap() {
            let record = Record::decode(&bytes).unwrap();
            let mut logged = codec::decode_logged_event(&record.body).unwrap();
            if seq == altered_seq {
                let Event::NodeRegistered {
                    node: registered, ..
                } = &mut logged.event
                else {
                    panic!("seq {seq} is the second registration");
                };
                *registered = node.public();
            }
            let sealed = Record::seal(
                seq,
                prev_hash,
                record.time_ms,
                codec::encode_logged_event(&logged),
            );
            prev_hash = sealed.hash;
            db.put_cf(&events, seq.to_be_bytes(), sealed.encode())
                .unwrap();
            seq += 1;
        }
    }

    let output = std::process::Command::new(binary("blyan-ledger"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "the server started on the log");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("seq {altered_seq}")) && stderr.contains("is already registered"),
        "the error must name seq {altered_seq}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Pages are bounded by bytes as well as by records, in JSON and in protobuf, and a
/// page that stops early is a prefix the next page continues.
#[tokio::test]
async fn event_pages_are_bounded_in_bytes_and_page_on() {
    use blyan_sdk::codec;
    use blyan_sdk::model::{Action, Burn, Command};

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--events-page-bytes-max", "2048"]).await;
    let network = server.network_id().await;
    let oracle = server.dev_key("burn-oracle");
    let client = server.client();
    for index in 0..30u64 {
        let command = Command {
            idempotency_key: format!("burn-{index}").into_bytes(),
            action: Action::RecordBurn(Burn {
                chain_tx_id: format!("0x{index:064x}"),
                burner: "0xholder".into(),
                amount: 1_000,
            }),
        };
        client
            .submit(&codec::sign_command(&oracle, &network, &command))
            .await
            .unwrap();
    }
    let events = client.head().await.unwrap().events;
    let http = reqwest::Client::new();
    let mut from = 0;
    let mut pages = 0;
    while from < events {
        let page: serde_json::Value = http
            .get(format!("{}/v1/events?from={from}&limit=1000", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let records = page["records"].as_array().unwrap();
        assert!(!records.is_empty());
        assert_eq!(
            records[0]["seq"], from,
            "pages continue where the last stopped"
        );
        if from == 0 {
            // The genesis holds the default plugins: a page of one record, however
            // large, so that paging always moves on.
            assert_eq!(records.len(), 1);
        }
        from += records.len() as u64;
        pages += 1;
        if from >= events {
            break;
        }
        let proto = http
            .get(format!(
                "{}/v1/events?from={from}&limit=1000&format=proto",
                server.url
            ))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(
            proto.len() <= 2048 + 64,
            "a protobuf page of {} bytes",
            proto.len()
        );
    }
    assert!(
        pages >= 3,
        "{events} events in {pages} pages of at most 2 KiB"
    );
    // Every record once, in order, through the client too.
    let mut seqs = Vec::new();
    let mut from = 0;
    while from < events {
        let page = client.events(from, 1_000).await.unwrap();
        seqs.extend(page.iter().map(|record| record.seq));
        from += page.len() as u64;
    }
    assert_eq!(seqs, (0..events).collect::<Vec<_>>());
}

/// Past the subscriber cap a WebSocket upgrade is answered 503 in JSON; a subscriber
/// that sends an oversized message is dropped, and its place is free again.
#[tokio::test]
async fn websocket_subscribers_are_capped_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--subscribers-max", "2"]).await;
    let address = address(&server);
    let upgrade = |key: &str| {
        format!(
            "GET /v1/events/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        )
    };
    async fn status_line(stream: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        let mut buffer = [0u8; 1];
        while !answer.ends_with(b"\r\n\r\n") {
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
                .await
                .expect("an answer")
                .unwrap();
            assert!(read > 0);
            answer.push(buffer[0]);
        }
        String::from_utf8_lossy(&answer).to_string()
    }
    let mut subscribers = Vec::new();
    for key in ["dGhlIHNhbXBsZSBub25jZQ==", "AQIDBAUGBwgJCgsMDQ4PEA=="] {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(upgrade(key).as_bytes()).await.unwrap();
        let answer = status_line(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
        subscribers.push(stream);
    }
    let response = reqwest::Client::new()
        .get(format!("{}/v1/events/ws", server.url))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "EBESExQVFhcYGRobHB0eHw==")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "too_many_subscribers");

    // A masked binary frame that announces 1 MiB: past the 64 KiB limit, so the
    // server closes the connection instead of buffering it.
    let mut frame = vec![0x82, 0xFF];
    frame.extend_from_slice(&(1u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[0u8; 4096]);
    let mut first = subscribers.remove(0);
    let _ = first.write_all(&frame).await;
    assert!(closed_within(&mut first, Duration::from_secs(5)).await);
    // Its place is free again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(upgrade("ICEiIyQlJicoKSorLC0uLw==").as_bytes())
            .await
            .unwrap();
        let answer = status_line(&mut stream).await;
        if answer.starts_with("HTTP/1.1 101") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the place was not freed: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sybil bounds at admission: a node may claim only the model's experts, and a second
/// heartbeat in one liveness window is refused (429); neither logs anything.
#[tokio::test]
async fn nodes_claim_only_the_models_experts_and_heartbeat_no_faster_than_allowed() {
    use blyan_e2e::{expect_refused, head};
    use blyan_sdk::codec;
    use blyan_sdk::crypto::Keypair;
    use blyan_sdk::model::{Action, Capabilities, Command, Parameters};

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let network = server.network_id().await;
    let node = Keypair::generate();
    let signed = |key: &str, action: Action| {
        codec::encode_signed_command(&codec::sign_command(
            &node,
            &network,
            &Command {
                idempotency_key: key.as_bytes().to_vec(),
                action,
            },
        ))
    };
    let capabilities = |experts: Vec<u32>| Capabilities {
        gpu_model: "RTX 4090".into(),
        vram_mib: 24_576,
        experts,
        endpoint: "https://node.test:8443".into(),
    };
    let experts = Parameters::default().model_experts;
    expect_refused(
        &server,
        signed("r0", Action::RegisterNode(capabilities(vec![0, experts]))),
        422,
        "invalid_field",
    )
    .await;
    let (status, receipt) = blyan_e2e::post_raw(
        &server.url,
        signed(
            "r1",
            Action::RegisterNode(capabilities(vec![0, experts - 1])),
        ),
    )
    .await;
    assert_eq!(status, 200, "{receipt}");
    let before = head(&server.url).await;
    let window = before["liveness_window"].as_u64().unwrap();
    let (status, held) =
        blyan_e2e::post_raw(&server.url, signed("h1", Action::Heartbeat { window })).await;
    assert_eq!(
        (status, held),
        (202, serde_json::json!({ "window": window }))
    );
    expect_refused(
        &server,
        signed("h2", Action::Heartbeat { window }),
        429,
        "heartbeat_too_soon",
    )
    .await;
    assert_eq!(head(&server.url).await, before);
}

/// Every node registration is charged to its source, at a rate the operator sets: past
/// it the answer is 429 with when to come back, and nothing is logged. A resent
/// registration is answered from the index, uncharged.
#[tokio::test]
async fn registrations_cost_a_rate_per_source_and_a_refused_one_changes_nothing() {
    use blyan_e2e::{head, post_raw};
    use blyan_sdk::codec;
    use blyan_sdk::crypto::Keypair;
    use blyan_sdk::model::{Action, Capabilities, Command};

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--registrations-per-source-per-hour", "3"]).await;
    let network = server.network_id().await;
    let register_as = |node: &Keypair, idempotency: &str| {
        codec::encode_signed_command(&codec::sign_command(
            node,
            &network,
            &Command {
                idempotency_key: idempotency.as_bytes().to_vec(),
                action: Action::RegisterNode(Capabilities {
                    gpu_model: "L4".into(),
                    vram_mib: 24_576,
                    experts: vec![0],
                    endpoint: "https://node.test".into(),
                }),
            },
        ))
    };
    let register = |node: &Keypair| register_as(node, "register");
    let nodes: Vec<Keypair> = (0..4).map(|_| Keypair::generate()).collect();
    let mut receipts = Vec::new();
    for (index, node) in nodes[..3].iter().enumerate() {
        let (status, receipt) = post_raw(&server.url, register(node)).await;
        assert_eq!(status, 200, "{receipt}");
        receipts.push(receipt);
        // A registration the ledger refuses costs nothing.
        if index == 0 {
            let (status, answer) = post_raw(&server.url, register_as(node, "again")).await;
            assert_eq!(
                (status, answer["code"].as_str()),
                (409, Some("node_already_registered")),
                "{answer}"
            );
        }
    }

    let before = head(&server.url).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/commands", server.url))
        .body(register(&nodes[3]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // A token comes back every 20 minutes.
    assert!((1_100..=1_201).contains(&retry_after), "{retry_after}");
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["code"], "registration_rate_limited", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("3 nodes an hour"),
        "{answer}"
    );
    assert_eq!(head(&server.url).await, before);
    let node = reqwest::get(format!(
        "{}/v1/nodes/{}",
        server.url,
        nodes[3].public().to_hex()
    ))
    .await
    .unwrap();
    assert_eq!(node.status(), 404);

    // A resend of an accepted registration gets its receipt again.
    let (status, again) = post_raw(&server.url, register(&nodes[0])).await;
    assert_eq!((status, &again), (200, &receipts[0]));
    assert_eq!(head(&server.url).await, before);
}

/// The conformance check of a proposal runs in a child process that the server kills
/// at its time limit and that can't use more than its memory limit: a module that
/// reaches either is refused with the limit's code, quickly, and the server goes on.
#[tokio::test]
async fn a_plugin_check_past_its_time_or_memory_is_refused_and_the_server_goes_on() {
    use blyan_e2e::expect_refused;
    use blyan_sdk::codec;
    use blyan_sdk::model::{Action, Command, PluginKind, PluginProposal};

    // About 5 s and 220 MiB to check; a trap is checked in about 0.3 s and 76 MiB.
    let costly = wat::parse_str(hostile::large_bodies()).unwrap();
    for (flags, code) in [
        (
            ["--plugin-check-timeout-ms", "2000"],
            "plugin_check_timeout",
        ),
        (["--plugin-check-memory-mib", "160"], "plugin_check_limit"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), &flags).await;
        let network = server.network_id().await;
        let governor = server.dev_key("governance-1");
        let propose = |key: &str, wasm: Vec<u8>| {
            codec::encode_signed_command(&codec::sign_command(
                &governor,
                &network,
                &Command {
                    idempotency_key: key.as_bytes().to_vec(),
                    action: Action::ProposePlugin(PluginProposal {
                        kind: PluginKind::Scoring,
                        wasm: wasm.into(),
                        activation_round: 1,
                    }),
                },
            ))
        };
        let started = Instant::now();
        expect_refused(&server, propose("costly", costly.clone()), 422, code).await;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{flags:?}: {:?}",
            started.elapsed()
        );
        healthz_answers(&server.url).await;
        // A module within the limits is checked as before and refused for what it is.
        let trap = wat::parse_str(hostile::trap()).unwrap();
        expect_refused(&server, propose("trap", trap), 422, "plugin_trap").await;
    }
}
