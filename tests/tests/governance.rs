//! Governance end to end: plugin and parameter proposals through the CLI and HTTP,
//! M-of-N activation, every module kept, and hostile modules refused at proposal time
//! with their reason while the server keeps serving.

#[path = "../../plugins/host/tests/hostile/mod.rs"]
mod hostile;

use blyan_e2e::{Server, expect_refused, head, post_raw, run_binary};
use blyan_sdk::codec;
use blyan_sdk::crypto::Keypair;
use blyan_sdk::model::{Action, Command, PluginKind, PluginProposal, limits};

async fn get_json(url: &str) -> serde_json::Value {
    let response = reqwest::get(url).await.unwrap();
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// The stored module of `kind` from the genesis, downloaded by hash.
async fn genesis_plugin(server: &Server, kind: &str) -> (String, Vec<u8>) {
    let plugins = get_json(&format!("{}/v1/plugins", server.url)).await;
    let plugin = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|plugin| plugin["kind"] == kind && plugin["stored_seq"] == 0)
        .unwrap_or_else(|| panic!("no genesis {kind} plugin in {plugins}"));
    let hash = plugin["hash"].as_str().unwrap().to_string();
    let bytes = reqwest::get(format!("{}/v1/plugins/{hash}", server.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    (hash, bytes)
}

fn blyan(server: &Server, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["--server", &server.url];
    all.extend_from_slice(args);
    run_binary("blyan", &all)
}

fn key_file(server: &Server, role: &str) -> String {
    server
        .data_dir
        .join("dev-keys")
        .join(format!("{role}.json"))
        .display()
        .to_string()
}

#[tokio::test]
async fn a_plugin_is_activated_at_m_of_n_approvals_and_every_module_stays_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]).await;

    // The genesis stored one plugin per kind, each named by the blake3 of its bytes.
    for kind in ["sharding", "scoring", "reward"] {
        let (hash, bytes) = genesis_plugin(&server, kind).await;
        assert_eq!(hash, hex::encode(blake3::hash(&bytes).as_bytes()), "{kind}");
        assert_eq!(&bytes[..4], b"\0asm", "{kind}");
    }

    // A new scoring module: the default with a custom section, so another hash.
    let (default_hash, default) = genesis_plugin(&server, "scoring").await;
    let module = hostile::padded_to(default.clone(), default.len() + 64);
    let module_hash = hex::encode(blake3::hash(&module).as_bytes());
    let wasm_path = dir.path().join("scoring.wasm");
    std::fs::write(&wasm_path, &module).unwrap();

    let (ok, out, err) = blyan(
        &server,
        &[
            "governance",
            "propose",
            "--key",
            &key_file(&server, "governance-1"),
            "--kind",
            "scoring",
            "--wasm",
            wasm_path.to_str().unwrap(),
            "--activation-round",
            "1",
        ],
    );
    assert!(ok, "propose failed: {out}{err}");

    // One approval of two: pending, nothing activated.
    let governance = get_json(&format!("{}/v1/governance", server.url)).await;
    let proposal = &governance["proposals"][0];
    assert_eq!(proposal["id"], 1);
    assert_eq!(proposal["status"], "pending", "{governance}");
    assert_eq!(proposal["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(proposal["subject"]["hash"], module_hash.as_str());
    assert_eq!(
        governance["plugin_activations"]["scoring"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "only the genesis plugin: {governance}"
    );

    // A key outside governance can't approve.
    let network = server.network_id().await;
    let outsider = Keypair::generate();
    let content_hash = proposal["content_hash"].as_str().unwrap().to_string();
    let proposal_hash: [u8; 32] = hex::decode(&content_hash).unwrap().try_into().unwrap();
    let approve = |key: &Keypair, idempotency: &str| {
        codec::sign_command(
            key,
            &network,
            &Command {
                idempotency_key: idempotency.as_bytes().to_vec(),
                action: Action::ApproveProposal {
                    proposal_id: 1,
                    proposal_hash: Some(proposal_hash),
                },
            },
        )
    };
    let error = server
        .client()
        .submit_once(&approve(&outsider, "a1"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("unauthorized"), "{error}");

    // The second governance key completes 2 of 3: activated in the same record.
    let (ok, out, err) = blyan(
        &server,
        &[
            "--json",
            "governance",
            "approve",
            "--key",
            &key_file(&server, "governance-2"),
            "--proposal",
            "1",
            "--hash",
            &content_hash,
        ],
    );
    assert!(ok, "approve failed: {out}{err}");
    let governance = get_json(&format!("{}/v1/governance", server.url)).await;
    assert_eq!(
        governance["proposals"][0]["status"], "activated",
        "{governance}"
    );
    let activations = governance["plugin_activations"]["scoring"]
        .as_array()
        .unwrap();
    assert_eq!(activations.len(), 2);
    assert_eq!(activations[1]["hash"], module_hash.as_str());
    assert_eq!(activations[1]["activation_round"], 1);

    // A third approval is refused: it is already activated.
    let error = server
        .client()
        .submit_once(&approve(&server.dev_key("governance-3"), "a3"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("proposal_already_activated"), "{error}");

    // Parameters go through the same flow.
    let parameters = dir.path().join("parameters.json");
    std::fs::write(
        &parameters,
        r#"{ "validator_quorum": 5, "reward_share_bps": 9000 }"#,
    )
    .unwrap();
    let key = key_file(&server, "governance-3");
    let (ok, out, err) = blyan(
        &server,
        &[
            "governance",
            "propose-parameters",
            "--file",
            parameters.to_str().unwrap(),
            "--activation-round",
            "2",
            "--key",
            &key,
        ],
    );
    assert!(ok, "{out}{err}");
    let governance = get_json(&format!("{}/v1/governance", server.url)).await;
    let second_hash = governance["proposals"][1]["content_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let key = key_file(&server, "governance-1");
    let (ok, out, err) = blyan(
        &server,
        &[
            "governance",
            "approve",
            "--proposal",
            "2",
            "--hash",
            &second_hash,
            "--key",
            &key,
        ],
    );
    assert!(ok, "{out}{err}");
    let governance = get_json(&format!("{}/v1/governance", server.url)).await;
    assert_eq!(
        governance["proposals"][1]["status"], "activated",
        "{governance}"
    );
    let scheduled = governance["parameter_activations"].as_array().unwrap();
    assert_eq!(scheduled.len(), 2, "genesis and the new set: {governance}");
    assert_eq!(scheduled[1]["parameters"]["validator_quorum"], 5);
    assert_eq!(scheduled[1]["activation_round"], 2);
    // In force only from round 2: the parameters now are still the genesis ones.
    assert_eq!(governance["parameters"]["validator_quorum"], 3);

    // Every module stays stored, old and new, and survives a crash.
    server.kill9();
    server.restart().await;
    let plugins = get_json(&format!("{}/v1/plugins", server.url)).await;
    let hashes: Vec<&str> = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|plugin| plugin["hash"].as_str().unwrap())
        .collect();
    assert_eq!(hashes.len(), 4, "{plugins}");
    assert!(hashes.contains(&module_hash.as_str()) && hashes.contains(&default_hash.as_str()));
    let stored = reqwest::get(format!("{}/v1/plugins/{module_hash}", server.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(stored.as_ref(), module.as_slice());
    let (ok, out, err) = blyan(&server, &["governance", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("activated"), "{out}");
    assert!(out.contains(&module_hash), "{out}");

    // An auditor's replay, with the proposals decided again, agrees with the server.
    let (ok, out, err) = blyan(&server, &["replay"]);
    assert!(ok, "replay disagrees: {out}{err}");
}

#[tokio::test]
async fn hostile_proposals_are_refused_with_their_reason_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let network = server.network_id().await;
    let governor = server.dev_key("governance-1");
    let wasm = |text: String| wat::parse_str(text).unwrap();
    let (_, default) = genesis_plugin(&server, "reward").await;
    let oversized = hostile::padded_to(wasm(hostile::trap()), limits::PLUGIN_BYTES_MAX + 1);

    let mut cases: Vec<(&str, PluginKind, Vec<u8>, u16, &str)> = hostile::compile_bombs()
        .into_iter()
        .map(|(name, text)| {
            (
                name,
                PluginKind::Scoring,
                wasm(text),
                422,
                "plugin_too_complex",
            )
        })
        .collect();
    cases.extend([
        (
            "infinite loop",
            PluginKind::Sharding,
            wasm(hostile::infinite_loop()),
            422,
            "plugin_out_of_fuel",
        ),
        (
            "memory bomb",
            PluginKind::Scoring,
            wasm(hostile::memory_bomb()),
            422,
            "plugin_memory",
        ),
        (
            "trap",
            PluginKind::Reward,
            wasm(hostile::trap()),
            422,
            "plugin_trap",
        ),
        (
            "huge output",
            PluginKind::Scoring,
            wasm(hostile::huge_output()),
            422,
            "plugin_output",
        ),
        (
            "broken invariant",
            PluginKind::Reward,
            wasm(hostile::invariant_breaker()),
            422,
            "plugin_invariant",
        ),
        (
            "WASI import",
            PluginKind::Sharding,
            wasm(hostile::wasi_import()),
            422,
            "plugin_imports",
        ),
        (
            "malformed bytes",
            PluginKind::Sharding,
            hostile::malformed(),
            422,
            "plugin_malformed",
        ),
        (
            "oversized module",
            PluginKind::Sharding,
            oversized,
            413,
            "plugin_too_large",
        ),
        (
            "wrong ABI version",
            PluginKind::Reward,
            wasm(hostile::wrong_abi_version()),
            422,
            "plugin_abi_version",
        ),
    ]);
    for (index, (name, kind, module, status, code)) in cases.into_iter().enumerate() {
        let before = head(&server.url).await;
        let signed = codec::sign_command(
            &governor,
            &network,
            &Command {
                idempotency_key: format!("hostile-{index}").into_bytes(),
                action: Action::ProposePlugin(PluginProposal {
                    kind,
                    wasm: module.into(),
                    activation_round: 1,
                }),
            },
        );
        let response = reqwest::Client::new()
            .post(format!("{}/v1/commands", server.url))
            .body(codec::encode_signed_command(&signed))
            .send()
            .await
            .unwrap();
        let got = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            (got, body["code"].as_str().unwrap()),
            (status, code),
            "{name}: {body}"
        );
        assert!(!body["message"].as_str().unwrap().is_empty(), "{name}");
        assert_eq!(head(&server.url).await, before, "{name} changed the head");
    }

    // A valid module from a key outside governance: refused before any compiling.
    let before = head(&server.url).await;
    let outsider = codec::sign_command(
        &Keypair::generate(),
        &network,
        &Command {
            idempotency_key: b"outsider".to_vec(),
            action: Action::ProposePlugin(PluginProposal {
                kind: PluginKind::Reward,
                wasm: default.clone().into(),
                activation_round: 1,
            }),
        },
    );
    let error = server.client().submit_once(&outsider).await.unwrap_err();
    assert_eq!(error.code(), Some("unauthorized"), "{error}");
    assert_eq!(head(&server.url).await, before);

    // The server kept serving throughout: a sound proposal is accepted now.
    let sound = hostile::padded_to(default.clone(), default.len() + 16);
    let signed = codec::sign_command(
        &governor,
        &network,
        &Command {
            idempotency_key: b"sound".to_vec(),
            action: Action::ProposePlugin(PluginProposal {
                kind: PluginKind::Reward,
                wasm: sound.into(),
                activation_round: 1,
            }),
        },
    );
    server.client().submit_once(&signed).await.unwrap();
    let governance = get_json(&format!("{}/v1/governance", server.url)).await;
    assert_eq!(
        governance["proposals"].as_array().unwrap().len(),
        1,
        "{governance}"
    );
}

#[tokio::test]
async fn plugin_test_runs_the_conformance_check_locally() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let (hash, default) = genesis_plugin(&server, "sharding").await;
    let good = dir.path().join("good.wasm");
    std::fs::write(&good, &default).unwrap();
    let (ok, out, err) = run_binary(
        "blyan",
        &[
            "--json",
            "plugin",
            "test",
            "--kind",
            "sharding",
            good.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}{err}");
    let verdict: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(verdict["conformant"], true);
    assert_eq!(verdict["hash"], hash.as_str());

    // The same module checked as another kind fails: it traps on an input of a kind
    // it doesn't serve.
    let (ok, _, err) = run_binary(
        "blyan",
        &["plugin", "test", "--kind", "reward", good.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(err.contains("plugin_trap"), "{err}");

    let looping = dir.path().join("loop.wasm");
    std::fs::write(&looping, wat::parse_str(hostile::infinite_loop()).unwrap()).unwrap();
    let (ok, _, err) = run_binary(
        "blyan",
        &[
            "plugin",
            "test",
            "--kind",
            "scoring",
            looping.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(err.contains("plugin_out_of_fuel"), "{err}");
}

#[tokio::test]
async fn bad_governance_inputs_are_refused_with_their_code_and_change_nothing() {
    use prost::Message;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let network = server.network_id().await;
    let governor = server.dev_key("governance-1");
    let (_, default) = genesis_plugin(&server, "reward").await;
    let sound = hostile::padded_to(default.clone(), default.len() + 16);
    let propose = |key: &str, wasm: &[u8], activation_round: u64| Command {
        idempotency_key: key.as_bytes().to_vec(),
        action: Action::ProposePlugin(PluginProposal {
            kind: PluginKind::Reward,
            wasm: wasm.to_vec().into(),
            activation_round,
        }),
    };
    let approve = |key: &str, proposal_id: u64, proposal_hash: [u8; 32]| Command {
        idempotency_key: key.as_bytes().to_vec(),
        action: Action::ApproveProposal {
            proposal_id,
            proposal_hash: Some(proposal_hash),
        },
    };
    // Accepted once: proposal 1, approved by its proposer.
    let accepted = codec::sign_command(&governor, &network, &propose("p1", &sound, 1));
    let (status, receipt) = post_raw(&server.url, codec::encode_signed_command(&accepted)).await;
    assert_eq!(status, 200, "{receipt}");
    let governance = get_json(&format!("{}/v1/governance", server.url)).await;
    let first_hash: [u8; 32] =
        hex::decode(governance["proposals"][0]["content_hash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();

    // Its retry returns the identical answer and adds nothing.
    let before = head(&server.url).await;
    assert_eq!(
        post_raw(&server.url, codec::encode_signed_command(&accepted)).await,
        (200, receipt)
    );
    assert_eq!(head(&server.url).await, before);

    // The same key for another proposal is a reused key, even for a module that
    // would fail the conformance check: a replay is answered before any compiling.
    let trap = wat::parse_str(hostile::trap()).unwrap();
    for wasm in [&sound, &trap] {
        let reused = codec::sign_command(&governor, &network, &propose("p1", wasm, 2));
        expect_refused(
            &server,
            codec::encode_signed_command(&reused),
            409,
            "idempotency_key_reused",
        )
        .await;
    }

    // Bad signatures, on a proposal and on an approval.
    for command in [propose("p2", &sound, 1), approve("a1", 1, first_hash)] {
        let mut forged = codec::sign_command(&governor, &network, &command);
        forged.signature[7] ^= 0x01;
        expect_refused(
            &server,
            codec::encode_signed_command(&forged),
            401,
            "bad_signature",
        )
        .await;
    }

    // A second approval (the proposer's own counted already), an unknown proposal, an
    // activation in the past, an empty module.
    for (command, status, code) in [
        (approve("a2", 1, first_hash), 409, "already_approved"),
        (approve("a3", 99, first_hash), 404, "proposal_not_found"),
        (approve("a5", 1, [7; 32]), 409, "proposal_hash_mismatch"),
        (propose("p3", &sound, 0), 422, "invalid_field"),
        (propose("p4", &[], 1), 422, "plugin_malformed"),
    ] {
        let signed = codec::sign_command(&governor, &network, &command);
        expect_refused(&server, codec::encode_signed_command(&signed), status, code).await;
    }

    // A proposal of no kind: a malformed command, however well signed.
    let body = blyan_schemas::v1::Command {
        idempotency_key: b"p5".to_vec(),
        action: Some(blyan_schemas::v1::command::Action::ProposePlugin(
            blyan_schemas::v1::ProposePlugin {
                kind: 0,
                wasm: sound.clone(),
                activation_round: 1,
            },
        )),
    }
    .encode_to_vec();
    let signature = governor.sign(&blyan_sdk::crypto::signing_message(
        blyan_sdk::crypto::COMMAND_DOMAIN,
        &network,
        &body,
    ));
    let unspecified = blyan_sdk::model::SignedCommand {
        body,
        signer: governor.public(),
        signature,
    };
    expect_refused(
        &server,
        codec::encode_signed_command(&unspecified),
        400,
        "malformed_command",
    )
    .await;

    // A stored module is fetched by its hash: one that is not hex, or not stored, is
    // refused.
    for (hash, status, code) in [
        ("not-hex".to_string(), 400, "malformed_request"),
        (hex::encode([7u8; 32]), 404, "plugin_not_found"),
    ] {
        let response = reqwest::get(format!("{}/v1/plugins/{hash}", server.url))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{hash}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["code"], code, "{answer}");
    }

    let governance = get_json(&format!("{}/v1/governance", server.url)).await;
    assert_eq!(
        governance["proposals"].as_array().unwrap().len(),
        1,
        "{governance}"
    );
}

/// An approval names the content it approves: one refused because its proposal did
/// not exist yet can't be replayed onto whatever proposal later takes that id.
#[tokio::test]
async fn an_approval_binds_to_the_content_it_approves() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let network = server.network_id().await;
    let proposer = server.dev_key("governance-1");
    let approver = server.dev_key("governance-2");
    let approve = |idempotency: &str, proposal_hash: Option<[u8; 32]>| {
        codec::encode_signed_command(&codec::sign_command(
            &approver,
            &network,
            &Command {
                idempotency_key: idempotency.as_bytes().to_vec(),
                action: Action::ApproveProposal {
                    proposal_id: 1,
                    proposal_hash,
                },
            },
        ))
    };
    let parameters = |validator_quorum| blyan_sdk::model::Parameters {
        validator_quorum,
        ..Default::default()
    };
    // The approver reviewed content A (quorum 5, from round 2, by governance-1) and
    // signs its approval before any proposal 1 exists.
    let reviewed = blyan_sdk::core::governance::Proposal {
        proposer: proposer.public(),
        subject: blyan_sdk::core::governance::Subject::Parameters(parameters(5)),
        activation_round: 2,
        approvals: Default::default(),
        proposed_seq: 0,
        activated_seq: None,
    }
    .content_hash();
    let early = approve("early", Some(reviewed));
    expect_refused(&server, early.clone(), 404, "proposal_not_found").await;
    // An approval that names no content is refused by the API.
    expect_refused(&server, approve("unbound", None), 422, "invalid_field").await;

    let proposal = codec::sign_command(
        &proposer,
        &network,
        &Command {
            idempotency_key: b"parameters".to_vec(),
            // Content B takes id 1: quorum 4.
            action: Action::ProposeParameters {
                parameters: parameters(4),
                activation_round: 2,
            },
        },
    );
    server.client().submit(&proposal).await.unwrap();

    // The same bytes again, now that proposal 1 is other content: refused.
    let before = head(&server.url).await;
    expect_refused(&server, early, 409, "proposal_hash_mismatch").await;
    assert_eq!(head(&server.url).await, before);

    // Named by its content hash, the approval goes through and activates it.
    let governance = get_json(&format!("{}/v1/governance", server.url)).await;
    let content_hash: [u8; 32] =
        hex::decode(governance["proposals"][0]["content_hash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
    assert_ne!(content_hash, reviewed);
    let (status, receipt) = post_raw(&server.url, approve("reviewed", Some(content_hash))).await;
    assert_eq!(status, 200, "{receipt}");
    let governance = get_json(&format!("{}/v1/governance", server.url)).await;
    assert_eq!(
        governance["proposals"][0]["status"], "activated",
        "{governance}"
    );
}
