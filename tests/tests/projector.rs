//! `blyan-ledger project-postgres`: the PostgreSQL read model, projected from a log of
//! real learning rounds into a real PostgreSQL server, checked against the ledger's
//! own JSON views, killed with SIGKILL at random moments, and stopped by a log that
//! disagrees with it.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blyan_e2e::postgres::Postgres;
use blyan_e2e::{Server, binary, demo_server, deploy, families_named, metric, promtool};
use blyan_sdk::client::Client;
use blyan_sdk::codec;
use blyan_sdk::crypto::{Keypair, PublicKey};
use blyan_sdk::genesis::DevKeys;
use blyan_sdk::model::{Action, Burn, Capabilities, Command as LedgerCommand, Phase};

fn projector(server: &Server, database_url: &str, extra: &[&str]) -> Child {
    Command::new(binary("blyan-ledger"))
        .args(["project-postgres", "--server", &server.url])
        .args(["--database-url", database_url])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the projector")
}

fn kill9(child: &mut Child) {
    child.kill().expect("SIGKILL the projector");
    child.wait().expect("reap the projector");
}

/// The events the database has applied (0 before the projector made its tables).
async fn applied(db: &tokio_postgres::Client) -> u64 {
    match db
        .query_opt("SELECT seq_next FROM projector_position", &[])
        .await
    {
        Ok(Some(row)) => row.get::<_, i64>(0) as u64,
        Ok(None) | Err(_) => 0,
    }
}

async fn wait_applied(db: &tokio_postgres::Client, events: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while applied(db).await < events {
        assert!(
            Instant::now() < deadline,
            "the projector applied {} of {events} events in 60 s",
            applied(db).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn events(server: &Server) -> u64 {
    server.client().head().await.expect("GET /v1/head").events
}

/// Signs and submits `action` as `key` on the server's network.
async fn submit(
    client: &Client,
    network_id: &str,
    key: &Keypair,
    idempotency: &str,
    action: Action,
) {
    let command = LedgerCommand {
        idempotency_key: idempotency.as_bytes().to_vec(),
        action,
    };
    client
        .submit(&codec::sign_command(key, network_id, &command))
        .await
        .unwrap_or_else(|error| panic!("{idempotency}: {error}"));
}

/// A node registration and a small burn (never enough to open a round): events that
/// grow the log while the projector follows it.
async fn grow(server: &Server, network_id: &str, tag: &str, count: usize) {
    let client = server.client();
    let oracle = DevKeys::derive().burn_oracle;
    for index in 0..count {
        let node = Keypair::generate();
        submit(
            &client,
            network_id,
            &node,
            &format!("{tag}-node-{index}"),
            Action::RegisterNode(Capabilities {
                gpu_model: "L4".into(),
                vram_mib: 24_576,
                experts: vec![(index % 4) as u32],
                endpoint: format!("https://{tag}-{index}.example"),
            }),
        )
        .await;
        if index % 8 == 0 {
            submit(
                &client,
                network_id,
                &oracle,
                &format!("{tag}-burn-{index}"),
                Action::RecordBurn(Burn {
                    chain_tx_id: format!("0x{tag}{index}"),
                    burner: "0xholder".into(),
                    amount: 1,
                }),
            )
            .await;
        }
    }
}

fn hex_of(row: &tokio_postgres::Row, column: &str) -> String {
    hex::encode(row.get::<_, Vec<u8>>(column))
}

fn key_of(row: &tokio_postgres::Row, column: &str) -> PublicKey {
    PublicKey::from_slice(&row.get::<_, Vec<u8>>(column)).expect("a 32-byte key")
}

/// Every table of the read model as sorted JSON rows, without the wall-clock columns
/// (when a row was written), which two projections of one log rightly differ in.
async fn dump(db: &tokio_postgres::Client) -> BTreeMap<String, Vec<String>> {
    let tables: Vec<String> = db
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut dump = BTreeMap::new();
    for table in tables {
        let rows = db
            .query(
                &format!(
                    "SELECT (to_jsonb(t) - 'updated_at' - 'applied_at')::text FROM {table} t
                     ORDER BY 1"
                ),
                &[],
            )
            .await
            .unwrap();
        dump.insert(table, rows.iter().map(|row| row.get(0)).collect());
    }
    dump
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tables_agree_with_the_ledgers_views_after_real_rounds_and_follow_it_live() {
    let dir = tempfile::tempdir().unwrap();
    let server = demo_server(dir.path(), 3).await;
    let network_id = server.network_id().await;
    let postgres = Postgres::start();
    postgres.create_database("ledger").await;
    let db = postgres.connect("ledger").await;
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_address = format!("127.0.0.1:{metrics_port}");
    let mut child = projector(
        &server,
        &postgres.url("ledger"),
        &["--metrics-listen", &metrics_address],
    );
    let backlog = events(&server).await;
    wait_applied(&db, backlog).await;

    // Live: what the server logs from now on arrives over the WebSocket. Among it,
    // values a command may set to the top of their range, which no column overflows.
    grow(&server, &network_id, "live", 12).await;
    let keys = DevKeys::derive();
    submit(
        &server.client(),
        &network_id,
        &Keypair::generate(),
        "live-big-node",
        Action::RegisterNode(Capabilities {
            gpu_model: "B200".into(),
            vram_mib: u32::MAX,
            experts: vec![0],
            endpoint: "https://big.example".into(),
        }),
    )
    .await;
    submit(
        &server.client(),
        &network_id,
        &keys.governance[0],
        "live-far-proposal",
        Action::ProposeValidator {
            validator: Keypair::generate().public(),
            admit: true,
            activation_round: u64::MAX,
        },
    )
    .await;
    let head = events(&server).await;
    assert!(head > backlog);
    wait_applied(&db, head).await;
    let projected: i64 = db
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(projected as u64, head);
    let head_hash: Vec<u8> = db
        .query_one("SELECT head_hash FROM projector_position", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        hex::encode(head_hash),
        server.client().head().await.unwrap().head_hash
    );

    // Its metrics: caught up, with no lag (the head is polled every 2 s).
    let metrics_url = format!("http://{metrics_address}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lag = metric(&metrics_url, "blyan_projector_lag_events").await;
        let head_seen = metric(&metrics_url, "blyan_projector_head_events").await;
        if lag == Some(0.0) && head_seen == Some(head as f64) {
            break;
        }
        assert!(Instant::now() < deadline, "lag {lag:?}, head {head_seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&metrics_url, "blyan_projector_applied_events").await,
        Some(head as f64)
    );
    // Valid exposition text, exporting what the alert rules and the dashboard use.
    let text = reqwest::get(format!("{metrics_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (ok, output) = promtool(dir.path(), &["check", "metrics"], text.as_bytes());
    assert!(ok, "{output}\n{text}");
    let exported = families_named(&text);
    for file in ["prometheus/alerts.yml", "grafana/blyan-ledger.json"] {
        let used: Vec<String> =
            families_named(&std::fs::read_to_string(deploy().join(file)).unwrap())
                .into_iter()
                .filter(|family| family.starts_with("blyan_projector_"))
                .collect();
        assert!(!used.is_empty(), "{file} watches the projector");
        for family in used {
            assert!(
                exported.contains(&family),
                "{file} uses {family}, which the projector lacks"
            );
        }
    }

    let client = server.client();
    // Rounds and their phase history.
    let rounds = client.rounds(0, 100).await.unwrap();
    assert!(rounds.len() >= 3, "the demo ran three rounds");
    let stored: i64 = db
        .query_one("SELECT count(*) FROM rounds", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored as usize, rounds.len());
    let mut paid_rounds = 0;
    for summary in &rounds {
        let view = client.round(summary.round).await.unwrap();
        let row = db
            .query_one(
                "SELECT expert, pool_id, phase, deadline_ms::text, reward_pool::text, seed,
                     assignments_root, scores_root, rewards_root, carried::text,
                     (SELECT count(*) FROM deltas d WHERE d.round = r.id) AS commits,
                     (SELECT count(*) FROM deltas d WHERE d.round = r.id
                          AND d.delta_hash IS NOT NULL) AS reveals,
                     (SELECT count(*) FROM measurements m WHERE m.round = r.id) AS submissions,
                     (SELECT count(*) FROM round_nodes n WHERE n.round = r.id) AS nodes,
                     (SELECT array_agg(phase ORDER BY seq) FROM round_phases p
                          WHERE p.round = r.id) AS phases
                 FROM rounds r WHERE id = $1",
                &[&(summary.round as i64)],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>("expert") as u32, summary.expert);
        assert_eq!(row.get::<_, i64>("pool_id") as u64, summary.pool_id);
        assert_eq!(row.get::<_, String>("phase"), summary.phase.name());
        assert_eq!(
            row.get::<_, String>("deadline_ms"),
            summary.deadline_ms.to_string()
        );
        assert_eq!(
            row.get::<_, String>("reward_pool"),
            summary.reward_pool.to_string()
        );
        assert_eq!(hex_of(&row, "seed"), view.seed);
        assert_eq!(hex_of(&row, "assignments_root"), view.assignments_root);
        assert_eq!(
            row.get::<_, i64>("commits") as u32,
            summary.commits,
            "round {}",
            summary.round
        );
        assert_eq!(row.get::<_, i64>("reveals") as u32, summary.reveals);
        assert_eq!(row.get::<_, i64>("submissions") as u32, summary.submissions);
        assert_eq!(row.get::<_, i64>("nodes") as usize, summary.nodes);
        let phases: Vec<String> = row.get("phases");
        assert_eq!(phases.first().map(String::as_str), Some("assigning"));
        assert_eq!(
            phases.last().map(String::as_str),
            Some(summary.phase.name())
        );
        if summary.phase == Phase::Finalized {
            assert_eq!(
                phases,
                [
                    "assigning",
                    "commit",
                    "reveal",
                    "validate",
                    "scoring",
                    "rewarding",
                    "finalized"
                ]
            );
            assert_eq!(hex_of(&row, "scores_root"), view.scores_root);
            assert_eq!(Some(hex_of(&row, "rewards_root")), view.rewards_root);
            assert_eq!(row.get::<_, String>("carried"), view.carried.to_string());
        }

        // Delta submissions, with their scores.
        let deltas = db
            .query(
                "SELECT node, delta_hash, delta_bytes, score::text FROM deltas
                 WHERE round = $1 AND delta_hash IS NOT NULL ORDER BY delta_index",
                &[&(summary.round as i64)],
            )
            .await
            .unwrap();
        assert_eq!(deltas.len(), view.deltas.len());
        for (row, delta) in deltas.iter().zip(&view.deltas) {
            assert_eq!(key_of(row, "node"), delta.node);
            assert_eq!(hex_of(row, "delta_hash"), delta.delta_hash);
            assert_eq!(row.get::<_, i64>("delta_bytes") as u64, delta.delta_bytes);
            assert_eq!(
                row.get::<_, Option<String>>("score"),
                delta.score.map(|score| score.to_string())
            );
        }

        // Reward distributions.
        for (role, payouts) in [
            ("node", &view.node_rewards),
            ("validator", &view.validator_rewards),
        ] {
            let rows = db
                .query(
                    "SELECT recipient, amount::text FROM rewards
                     WHERE round = $1 AND role = $2 ORDER BY recipient",
                    &[&(summary.round as i64), &role],
                )
                .await
                .unwrap();
            let mut expected: Vec<(PublicKey, String)> = payouts
                .iter()
                .map(|payout| (payout.key, payout.amount.to_string()))
                .collect();
            expected.sort();
            let got: Vec<(PublicKey, String)> = rows
                .iter()
                .map(|row| (key_of(row, "recipient"), row.get(1)))
                .collect();
            assert_eq!(got, expected, "round {} {role} rewards", summary.round);
            if role == "node" && payouts.iter().any(|payout| payout.amount > 0) {
                paid_rounds += 1;
            }
        }

        // Data assignments, node by node.
        for node in db
            .query(
                "SELECT node, start_item, items FROM assignments WHERE round = $1",
                &[&(summary.round as i64)],
            )
            .await
            .unwrap()
        {
            let assignment = client
                .assignment(summary.round, &key_of(&node, "node"))
                .await
                .unwrap();
            assert_eq!(
                node.get::<_, i64>("start_item") as u64,
                assignment.shard.start
            );
            assert_eq!(node.get::<_, i64>("items") as u64, assignment.shard.count);
        }

        // Validation records: each committee member's values, delta by delta, in the
        // order of its task list.
        for validator in &summary.committee {
            let tasks = client.tasks(summary.round, validator).await.unwrap();
            let records = db
                .query(
                    "SELECT v.node FROM validation_records v
                     JOIN deltas d ON d.round = v.round AND d.node = v.node
                     WHERE v.round = $1 AND v.validator = $2 ORDER BY d.delta_index",
                    &[&(summary.round as i64), &&validator.0[..]],
                )
                .await
                .unwrap();
            let measured: Vec<PublicKey> = records.iter().map(|row| key_of(row, "node")).collect();
            let submitted: i64 = db
                .query_one(
                    "SELECT count(*) FROM measurements WHERE round = $1 AND validator = $2",
                    &[&(summary.round as i64), &&validator.0[..]],
                )
                .await
                .unwrap()
                .get(0);
            if submitted == 1 {
                let tasked: Vec<PublicKey> = tasks.deltas.iter().map(|task| task.node).collect();
                assert_eq!(
                    measured, tasked,
                    "round {} validator {validator}",
                    summary.round
                );
            } else {
                assert!(measured.is_empty());
            }
        }
    }
    assert!(paid_rounds >= 1, "the demo's rounds paid their nodes");

    // Validators, with their reputations.
    let validators = client.validators().await.unwrap();
    assert_eq!(validators.len(), 3);
    for validator in &validators {
        let row = db
            .query_one(
                "SELECT reputation, admitted_seq, admitted FROM validators WHERE pubkey = $1",
                &[&&validator.key.0[..]],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0) as u64, validator.reputation);
        assert_eq!(row.get::<_, i64>(1) as u64, validator.admitted_seq);
        assert!(row.get::<_, bool>(2));
    }

    // The node registry with capabilities, for every node the log names.
    let nodes = db
        .query(
            "SELECT pubkey, gpu_model, vram_mib, endpoint, registered_seq, last_heartbeat_ms,
                 registry_index,
                 (SELECT array_agg(expert ORDER BY expert) FROM node_experts e
                      WHERE e.node = n.pubkey) AS experts
             FROM nodes n",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(nodes.len(), client.state().await.unwrap().nodes);
    for row in &nodes {
        let view = client.node(&key_of(row, "pubkey")).await.unwrap();
        let capabilities = &view.node.capabilities;
        assert_eq!(row.get::<_, String>("gpu_model"), capabilities.gpu_model);
        assert_eq!(
            row.get::<_, i64>("vram_mib"),
            i64::from(capabilities.vram_mib)
        );
        assert_eq!(row.get::<_, String>("endpoint"), capabilities.endpoint);
        let experts: Vec<i32> = row.get("experts");
        assert_eq!(
            experts
                .iter()
                .map(|expert| *expert as u32)
                .collect::<Vec<_>>(),
            capabilities.experts
        );
        assert_eq!(
            row.get::<_, i64>("registered_seq") as u64,
            view.node.registered_seq
        );
        // The nodes heartbeat into liveness windows; the table keeps the newest that
        // named each, as the ledger does while it is recent.
        assert_eq!(
            row.get::<_, i64>("last_heartbeat_ms") as u64,
            view.last_seen_ms
        );
        assert_eq!(row.get::<_, i64>("registry_index") as u64, view.node.index);
    }

    // Every closed liveness window, and each node's count of them.
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM liveness_windows),
                    (SELECT count(*) FROM events WHERE kind = 'liveness_window_closed'),
                    (SELECT coalesce(sum(nodes), 0)::bigint FROM liveness_windows),
                    (SELECT coalesce(sum(heartbeats), 0)::bigint FROM nodes)",
            &[],
        )
        .await
        .unwrap();
    let windows: i64 = row.get(0);
    assert!(windows > 0, "the nodes heartbeat into windows");
    assert_eq!(windows, row.get::<_, i64>(1));
    assert_eq!(row.get::<_, i64>(2), row.get::<_, i64>(3));

    // The burns ledger.
    let state = client.state().await.unwrap();
    let row = db
        .query_one(
            "SELECT count(*), coalesce(sum(amount), 0)::text FROM burns",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0) as usize, state.burns);
    assert_eq!(row.get::<_, String>(1), state.burn_total.to_string());

    // Experts and their versions: the parameter chain.
    let model = client.experts().await.unwrap();
    for newest in &model.versions {
        let versions = client.expert_versions(newest.expert, 0, 100).await.unwrap();
        let rows = db
            .query(
                "SELECT version, weights_hash, round, held_out_loss::text FROM expert_versions
                 WHERE expert = $1 ORDER BY version",
                &[&(newest.expert as i32)],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), versions.len());
        for (row, version) in rows.iter().zip(&versions) {
            assert_eq!(row.get::<_, i32>(0) as u32, version.version);
            assert_eq!(hex_of(row, "weights_hash"), version.weights_hash);
            assert_eq!(
                row.get::<_, Option<i64>>(2).map(|round| round as u64),
                version.round
            );
            assert_eq!(
                row.get::<_, Option<String>>(3),
                version.held_out_loss.map(|loss| loss.to_string())
            );
        }
        let current: i32 = db
            .query_one(
                "SELECT version FROM experts WHERE id = $1",
                &[&(newest.expert as i32)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(current as u32, newest.version);
    }
    let merged: i64 = db
        .query_one(
            "SELECT count(*) FROM expert_versions WHERE version > 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(merged >= 1, "the demo's rounds merged new versions");

    // Governance: the demo admitted its validators through proposals.
    let governance = client.governance().await.unwrap();
    for proposal in &governance.proposals {
        let row = db
            .query_one(
                "SELECT approvals, activated_seq, proposed_seq, activation_round::text
                 FROM proposals WHERE id = $1",
                &[&(proposal.id as i64)],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0) as usize, proposal.approvals.len());
        assert_eq!(
            row.get::<_, Option<i64>>(1).map(|seq| seq as u64),
            proposal.activated_seq
        );
        assert_eq!(row.get::<_, i64>(2) as u64, proposal.proposed_seq);
        assert_eq!(
            row.get::<_, String>(3),
            proposal.activation_round.to_string()
        );
    }
    let stored: i64 = db
        .query_one("SELECT count(*) FROM proposals", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored as usize, governance.proposals.len());

    // The read model only reads: the server's log is what it was.
    assert_eq!(events(&server).await, head);

    // A restart resumes where it stopped, and a second projector is kept off.
    let mut second = projector(&server, &postgres.url("ledger"), &[]);
    let stderr = wait_exit(&mut second).await;
    assert!(
        stderr.contains("another projector holds this database"),
        "{stderr}"
    );
    kill9(&mut child);
    let before = dump(&db).await;
    let mut child = projector(&server, &postgres.url("ledger"), &[]);
    grow(&server, &network_id, "again", 2).await;
    wait_applied(&db, events(&server).await).await;
    let after = dump(&db).await;
    // Two registrations and a burn (and any checkpoint), each applied once.
    assert_eq!(after["events"].len() as u64, events(&server).await);
    assert!(after["events"].len() >= before["events"].len() + 3);
    assert!(
        before["events"]
            .iter()
            .all(|row| after["events"].contains(row))
    );
    kill9(&mut child);
}

/// Waits for a projector that must stop by itself, and returns what it printed.
async fn wait_exit(child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            assert!(!status.success(), "the projector stopped without an error");
            return stderr;
        }
        if Instant::now() > deadline {
            kill9(child);
            panic!("the projector did not stop within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_moments_leaves_the_tables_equal_to_a_fresh_projection() {
    let dir = tempfile::tempdir().unwrap();
    let server = demo_server(dir.path(), 3).await;
    let network_id = server.network_id().await;
    // A backlog long enough that kills land in the middle of it.
    grow(&server, &network_id, "backlog", 800).await;
    let postgres = Postgres::start();
    postgres.create_database("killed").await;
    postgres.create_database("fresh").await;
    let db = postgres.connect("killed").await;

    // Events keep arriving while the projector is killed, so kills land in the
    // backlog and in the live stream.
    let writer = {
        let server_url = server.url.clone();
        let network_id = network_id.clone();
        tokio::spawn(async move {
            let client = Client::new(&server_url);
            let oracle = DevKeys::derive().burn_oracle;
            for index in 0..400 {
                submit(
                    &client,
                    &network_id,
                    &oracle,
                    &format!("during-{index}"),
                    Action::RecordBurn(Burn {
                        chain_tx_id: format!("0xduring{index}"),
                        burner: "0xholder".into(),
                        amount: 1,
                    }),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let mut positions = Vec::new();
    for _ in 0..20 {
        let mut child = projector(
            &server,
            &postgres.url("killed"),
            &["--batch-events-max", "7"],
        );
        // A random moment: a fresh key's bytes come from the OS's random source.
        let random = Keypair::generate().public().0;
        let delay = 20 + u64::from_le_bytes(random[..8].try_into().unwrap()) % 400;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        kill9(&mut child);
        positions.push(applied(&db).await);
    }
    writer.await.unwrap();
    let head = events(&server).await;
    assert!(
        positions.windows(2).all(|pair| pair[0] <= pair[1]),
        "the position never goes back: {positions:?}"
    );
    assert!(
        positions
            .iter()
            .any(|position| *position > 0 && *position < head),
        "some kills landed before the end of the log: {positions:?} of {head}"
    );

    // One more run to the head, then a fresh projection of the same log.
    let mut child = projector(&server, &postgres.url("killed"), &[]);
    wait_applied(&db, head).await;
    kill9(&mut child);
    let fresh = postgres.connect("fresh").await;
    let mut child = projector(&server, &postgres.url("fresh"), &[]);
    wait_applied(&fresh, head).await;
    kill9(&mut child);

    let killed = dump(&db).await;
    let expected = dump(&fresh).await;
    assert_eq!(
        killed.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &expected {
        assert_eq!(&killed[table], rows, "table {table} differs after 20 kills");
    }
    assert_eq!(killed["events"].len() as u64, head);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_that_disagrees_with_the_stored_position_stops_the_projector() {
    let dir = tempfile::tempdir().unwrap();
    // Two dev-genesis servers: two logs whose every event hash differs (the genesis
    // records its own time).
    let first = Server::start(&dir.path().join("first"), &[]).await;
    let second = Server::start(&dir.path().join("second"), &[]).await;
    let postgres = Postgres::start();
    postgres.create_database("ledger").await;
    let db = postgres.connect("ledger").await;
    let mut child = projector(&first, &postgres.url("ledger"), &[]);
    let projected = events(&first).await;
    wait_applied(&db, projected).await;
    kill9(&mut child);
    let before = dump(&db).await;

    let network_id = second.network_id().await;
    grow(&second, &network_id, "other", 4).await;
    assert!(events(&second).await > projected);
    let mut child = projector(&second, &postgres.url("ledger"), &[]);
    let stderr = wait_exit(&mut child).await;
    assert!(
        stderr.contains("the log disagrees with the projection")
            && stderr.contains(&format!("event {}", projected - 1)),
        "{stderr}"
    );
    assert_eq!(dump(&db).await, before, "a refused log changes no table");
}
