//! The host's decoder of plugin outputs, fed mutations of each default plugin's real
//! output: decoding and the host-side checks refuse or accept, never panic. A short
//! pass runs in the suite; `PROPTEST_CASES=1000000` makes it a long one.

#[path = "../../../sdk/tests/mutation/mod.rs"]
mod mutation;

use blyan_plugin_host::{Host, Limits, PluginKind, check, defaults, pb, reference};
use mutation::{mutate, mutation};
use proptest::prelude::*;
use prost::Message;

/// Each kind's reference input and the default plugin's encoded output for it.
fn seeds() -> Vec<(pb::PolicyInput, Vec<u8>)> {
    let host = Host::new(Limits::default());
    PluginKind::ALL
        .into_iter()
        .map(|kind| {
            let compiled = host.compile(defaults::wasm(kind)).unwrap();
            let input = reference::input(kind);
            let outcome = host.run(&compiled, &input).unwrap();
            (input, outcome.output.encode_to_vec())
        })
        .collect()
}

proptest! {
    #![proptest_config(mutation::config(1_000))]

    #[test]
    fn plugin_outputs_decode_and_check_or_refuse(
        kind in 0usize..3,
        mutations in proptest::collection::vec(mutation(), 1..8),
    ) {
        thread_local! {
            static SEEDS: Vec<(pb::PolicyInput, Vec<u8>)> = seeds();
        }
        SEEDS.with(|seeds| {
            let (input, seed) = &seeds[kind];
            let bytes = mutate(seed, &mutations);
            if let Ok(output) = pb::PolicyOutput::decode(bytes.as_slice()) {
                let _ = check::output(input, &output);
            }
        });
    }
}

#[test]
fn every_seed_passes_the_checks() {
    for (input, seed) in seeds() {
        let output = pb::PolicyOutput::decode(seed.as_slice()).unwrap();
        check::output(&input, &output).unwrap();
    }
}
