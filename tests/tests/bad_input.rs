//! Every kind of bad input gets its documented 4xx with a JSON `{code, message}` body
//! and leaves the head exactly as it was.

use blyan_e2e::{Server, expect_refused, head, post_raw};
use blyan_sdk::codec;
use blyan_sdk::crypto::Keypair;
use blyan_sdk::model::{Action, Burn, Capabilities, Command, SignedCommand, limits};

fn capabilities() -> Capabilities {
    Capabilities {
        gpu_model: "RTX 4090".into(),
        vram_mib: 24_576,
        experts: vec![1, 2],
        endpoint: "https://node.test:8443".into(),
    }
}

fn command(key: &str, action: Action) -> Command {
    Command {
        idempotency_key: key.as_bytes().to_vec(),
        action,
    }
}

async fn post(url: &str, signed: &SignedCommand) -> (u16, serde_json::Value) {
    post_raw(url, codec::encode_signed_command(signed)).await
}

#[tokio::test]
async fn bad_inputs_are_refused_with_their_code_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let network = server.network_id().await;
    let node = Keypair::generate();
    let oracle = server.dev_key("burn-oracle");

    // Accepted once, so that duplicates and key reuse have something to collide with.
    let registration = codec::sign_command(
        &node,
        &network,
        &command("reg-1", Action::RegisterNode(capabilities())),
    );
    let (status, first) = post(&server.url, &registration).await;
    assert_eq!(status, 200, "{first}");
    let burn = Burn {
        chain_tx_id: "0xtx1".into(),
        burner: "0xholder".into(),
        amount: 5,
    };

    // Malformed protobuf.
    expect_refused(
        &server,
        vec![0xff, 0xff, 0xff, 0x01],
        400,
        "malformed_command",
    )
    .await;
    // A well-formed envelope whose body is not a Command.
    let mut garbage_body = registration.clone();
    garbage_body.body = vec![0x0a, 0xff];
    garbage_body.signature = node.sign(&blyan_sdk::crypto::signing_message(
        blyan_sdk::crypto::COMMAND_DOMAIN,
        &network,
        &garbage_body.body,
    ));
    expect_refused(
        &server,
        codec::encode_signed_command(&garbage_body),
        400,
        "malformed_command",
    )
    .await;

    // A wrong signature.
    let mut forged = codec::sign_command(
        &oracle,
        &network,
        &command("burn-1", Action::RecordBurn(burn.clone())),
    );
    forged.signature[10] ^= 0x40;
    expect_refused(
        &server,
        codec::encode_signed_command(&forged),
        401,
        "bad_signature",
    )
    .await;

    // A signature made for another network id.
    let other_network = codec::sign_command(
        &oracle,
        "blyan-mainnet",
        &command("burn-2", Action::RecordBurn(burn.clone())),
    );
    expect_refused(
        &server,
        codec::encode_signed_command(&other_network),
        401,
        "bad_signature",
    )
    .await;

    // A burn signed by a key that is not the oracle.
    let impostor = codec::sign_command(
        &node,
        &network,
        &command("burn-3", Action::RecordBurn(burn.clone())),
    );
    expect_refused(
        &server,
        codec::encode_signed_command(&impostor),
        403,
        "unauthorized",
    )
    .await;

    // An oversized body (the limit is the largest plugin module plus 64 KiB).
    let too_large = limits::PLUGIN_BYTES_MAX + 64 * 1024 + 1;
    expect_refused(&server, vec![0u8; too_large], 413, "body_too_large").await;

    // A duplicate registration under a fresh idempotency key.
    let again = codec::sign_command(
        &node,
        &network,
        &command("reg-2", Action::RegisterNode(capabilities())),
    );
    expect_refused(
        &server,
        codec::encode_signed_command(&again),
        409,
        "node_already_registered",
    )
    .await;

    // The same idempotency key reused for a different command.
    let reused = codec::sign_command(
        &node,
        &network,
        &command("reg-1", Action::Heartbeat { window: 0 }),
    );
    expect_refused(
        &server,
        codec::encode_signed_command(&reused),
        409,
        "idempotency_key_reused",
    )
    .await;

    // A field out of bounds.
    let zero = Burn {
        amount: 0,
        ..burn.clone()
    };
    let zero_burn = codec::sign_command(
        &oracle,
        &network,
        &command("burn-4", Action::RecordBurn(zero)),
    );
    expect_refused(
        &server,
        codec::encode_signed_command(&zero_burn),
        422,
        "invalid_field",
    )
    .await;

    // A heartbeat from a key that never registered.
    let stranger = codec::sign_command(
        &Keypair::generate(),
        &network,
        &command("hb-1", Action::Heartbeat { window: 0 }),
    );
    expect_refused(
        &server,
        codec::encode_signed_command(&stranger),
        409,
        "node_not_registered",
    )
    .await;

    // A heartbeat is held for the window it names, once per node, and logs nothing
    // until the window closes (the dev genesis's windows are long).
    let before = head(&server.url).await;
    let beat = codec::sign_command(
        &node,
        &network,
        &command("hb-2", Action::Heartbeat { window: 0 }),
    );
    let held = serde_json::json!({ "window": 0 });
    assert_eq!(post(&server.url, &beat).await, (202, held.clone()));
    assert_eq!(
        post(&server.url, &beat).await,
        (202, held),
        "the same one again"
    );
    let second = codec::sign_command(
        &node,
        &network,
        &command("hb-3", Action::Heartbeat { window: 0 }),
    );
    expect_refused(
        &server,
        codec::encode_signed_command(&second),
        429,
        "heartbeat_too_soon",
    )
    .await;
    // One signed for a window that is not open: a replay of an old one, or a guess.
    let other = codec::sign_command(
        &node,
        &network,
        &command("hb-4", Action::Heartbeat { window: 1 }),
    );
    expect_refused(
        &server,
        codec::encode_signed_command(&other),
        409,
        "liveness_window_not_open",
    )
    .await;
    assert_eq!(head(&server.url).await, before);

    // And the retry of the accepted command returns the identical answer, adding nothing.
    assert_eq!(post(&server.url, &registration).await, (200, first));
    assert_eq!(head(&server.url).await, before);
}

#[tokio::test]
async fn a_burn_is_idempotent_on_its_chain_tx_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let network = server.network_id().await;
    let oracle = server.dev_key("burn-oracle");
    let burn = Burn {
        chain_tx_id: "0xabc".into(),
        burner: "0xholder".into(),
        amount: u128::MAX / 3,
    };

    let first = codec::sign_command(
        &oracle,
        &network,
        &command("a", Action::RecordBurn(burn.clone())),
    );
    let (status, receipt) = post(&server.url, &first).await;
    assert_eq!(status, 200);
    let before = head(&server.url).await;

    // The oracle saw the same burn again and sends it under a new idempotency key.
    let seen_again = codec::sign_command(
        &oracle,
        &network,
        &command("b", Action::RecordBurn(burn.clone())),
    );
    assert_eq!(post(&server.url, &seen_again).await, (200, receipt));
    assert_eq!(head(&server.url).await, before);

    // The same tx id with another amount is a conflict.
    let conflicting = Burn { amount: 1, ..burn };
    let conflict = codec::sign_command(
        &oracle,
        &network,
        &command("c", Action::RecordBurn(conflicting)),
    );
    let (status, answer) = post(&server.url, &conflict).await;
    assert_eq!(
        (status, answer["code"].as_str().unwrap()),
        (409, "burn_conflict")
    );

    let state: serde_json::Value = reqwest::get(format!("{}/v1/state", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["burn_total"], (u128::MAX / 3).to_string());
    assert_eq!(state["burns"], 1);
}
