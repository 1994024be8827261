//! Every decoder of outside bytes, fed mutations of a valid input: commands, records,
//! logged events and genesis files. None may panic; each either decodes or refuses
//! with its error. A stable-toolchain fuzz harness (proptest byte mutation): the suite
//! runs a short pass, and `PROPTEST_CASES=1000000 cargo test --workspace --test
//! decoders` a long one.

use blyan_sdk::codec;
use blyan_sdk::genesis::{self, DevKeys};
use blyan_sdk::model::{Action, Burn, Cause, Command, LoggedEvent, ServerInput};
use blyan_sdk::record::Record;
use blyan_sdk::replay::{CheckedRecord, ReplayChecks, Replayer};
use proptest::prelude::*;

mod mutation;
use mutation::{mutate, mutation};

fn signed_seed() -> Vec<u8> {
    let keys = DevKeys::derive();
    let command = Command {
        idempotency_key: b"seed".to_vec(),
        action: Action::RecordBurn(Burn {
            chain_tx_id: "0xseed".into(),
            burner: "0xholder".into(),
            amount: 12_345,
        }),
    };
    codec::encode_signed_command(&codec::sign_command(
        &keys.burn_oracle,
        "blyan-dev",
        &command,
    ))
}

/// The genesis record of the dev genesis, as stored.
fn record_seed() -> Vec<u8> {
    let genesis = DevKeys::derive().genesis();
    let logged = LoggedEvent {
        cause: Cause::Server(ServerInput::Genesis(Box::new(genesis.clone()))),
        event: blyan_sdk::model::Event::GenesisCreated(Box::new(genesis)),
    };
    Record::seal(0, [0; 32], 1, codec::encode_logged_event(&logged)).encode()
}

proptest! {
    #![proptest_config(mutation::config(2_000))]

    #[test]
    fn commands_decode_or_refuse(mutations in proptest::collection::vec(mutation(), 1..8)) {
        let bytes = mutate(&signed_seed(), &mutations);
        if let Ok(signed) = codec::decode_signed_command(&bytes) {
            let _ = codec::decode_command(&signed.body);
        }
        let _ = codec::decode_command(&bytes);
    }

    #[test]
    fn records_and_events_decode_or_refuse(mutations in proptest::collection::vec(mutation(), 1..8)) {
        let bytes = mutate(&record_seed(), &mutations);
        let _ = codec::decode_logged_event(&bytes);
        if let Ok(checked) = CheckedRecord::decode(0, &bytes) {
            // A record that still decodes goes through the whole audit, which must
            // refuse or accept it without panicking.
            let mut replayer = Replayer::new(ReplayChecks::AUDIT);
            if replayer.push_checked(&checked).is_ok() {
                let _ = replayer.finish();
            }
        }
    }

    #[test]
    fn genesis_files_parse_or_refuse(mutations in proptest::collection::vec(mutation(), 1..8)) {
        let seed = serde_json::to_vec(&DevKeys::derive().genesis()).unwrap();
        let bytes = mutate(&seed, &mutations);
        if let Ok(parsed) = serde_json::from_slice::<blyan_sdk::model::Genesis>(&bytes) {
            let _ = genesis::validate(&parsed);
        }
    }
}

#[test]
fn the_seeds_are_valid() {
    let signed = codec::decode_signed_command(&signed_seed()).unwrap();
    codec::decode_command(&signed.body).unwrap();
    let checked = CheckedRecord::decode(0, &record_seed()).unwrap();
    let mut replayer = Replayer::new(ReplayChecks::AUDIT);
    replayer.push_checked(&checked).unwrap();
    genesis::validate(&DevKeys::derive().genesis()).unwrap();
}
