//! Differential tests: on property-generated inputs, each default plugin's Wasm output
//! equals its native (rlib) output byte for byte, and passes the host's checks.

use std::sync::{Arc, OnceLock};

use blyan_plugin_host::check::u128_pb;
use blyan_plugin_host::column::to_column;
use blyan_plugin_host::{Compiled, Host, Limits, PluginKind, check, defaults, pb};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use prost::Message;

fn host() -> &'static (Host, Vec<Arc<Compiled>>) {
    static HOST: OnceLock<(Host, Vec<Arc<Compiled>>)> = OnceLock::new();
    HOST.get_or_init(|| {
        let host = Host::new(Limits::default());
        let compiled = PluginKind::ALL
            .iter()
            .map(|kind| host.compile(defaults::wasm(*kind)).unwrap())
            .collect();
        (host, compiled)
    })
}

/// Runs `input` natively and in Wasm and returns both outputs.
fn both(
    kind: PluginKind,
    input: &pb::PolicyInput,
    native: fn(&[u8]) -> Result<Vec<u8>, blyan_plugin_pdk::PolicyError>,
) -> (Vec<u8>, Vec<u8>) {
    let (host, compiled) = host();
    let bytes = input.encode_to_vec();
    let native = native(&bytes).expect("the native plugin answers");
    let index = PluginKind::ALL.iter().position(|k| *k == kind).unwrap();
    let (wasm, _fuel) = host
        .call_encoded(&compiled[index], &bytes, Limits::default().fuel_per_call)
        .expect("the Wasm plugin answers");
    (native, wasm)
}

fn assert_same(
    kind: PluginKind,
    input: pb::PolicyInput,
    native: fn(&[u8]) -> Result<Vec<u8>, blyan_plugin_pdk::PolicyError>,
) {
    let (native, wasm) = both(kind, &input, native);
    assert_eq!(native, wasm, "{kind}: Wasm and native outputs differ");
    let output = pb::PolicyOutput::decode(wasm.as_slice()).unwrap();
    assert_eq!(check::output(&input, &output), Ok(()), "{kind}");
}

/// Distinct keys, ascending (a BTreeSet iterates in order), as the host sends them:
/// the key column and the number of keys.
fn keys(count: std::ops::Range<usize>) -> impl Strategy<Value = (Vec<u8>, usize)> {
    btree_set(any::<[u8; 32]>(), count).prop_map(|keys| {
        let count = keys.len();
        (keys.into_iter().flatten().collect(), count)
    })
}

fn sharding() -> impl Strategy<Value = pb::PolicyInput> {
    (
        any::<u64>(),
        any::<[u8; 32]>(),
        prop_oneof![0u64..50, 0u64..1_000_000, Just(u64::MAX / 2)],
        keys(1..40).prop_flat_map(|(keys, count)| {
            (
                Just(keys),
                vec(
                    prop_oneof![1u64..10, 1u64..1_000_000, Just(u64::MAX / 64)],
                    count,
                ),
            )
        }),
    )
        .prop_map(
            |(round, seed, item_count, (node_keys, capabilities))| pb::PolicyInput {
                kind: Some(pb::policy_input::Kind::Sharding(pb::ShardingInput {
                    round,
                    seed: seed.to_vec(),
                    item_count,
                    node_keys: node_keys.into(),
                    capabilities: to_column(capabilities).into(),
                })),
            },
        )
}

fn scoring() -> impl Strategy<Value = pb::PolicyInput> {
    let measurement = prop_oneof![
        any::<i64>(),
        -1_000i64..1_000,
        Just(i64::MIN),
        Just(i64::MAX)
    ];
    (
        any::<u64>(),
        0u32..8,
        prop_oneof![Just(0u64), 1u64..1_000, Just(1u64 << 40), Just(u64::MAX)],
        vec(vec(measurement, 0..20), 0..30),
    )
        .prop_map(|(round, quorum, max_score, deltas)| pb::PolicyInput {
            kind: Some(pb::policy_input::Kind::Scoring(pb::ScoringInput {
                round,
                quorum,
                max_score,
                measurement_counts: to_column(deltas.iter().map(|delta| delta.len() as u32)).into(),
                measurements: to_column(deltas.concat()).into(),
            })),
        })
}

fn reward() -> impl Strategy<Value = pb::PolicyInput> {
    (
        any::<u64>(),
        prop_oneof![any::<u128>(), 0u128..1_000, Just(u128::MAX)],
        keys(0..40).prop_flat_map(|(keys, count)| {
            (
                Just(keys),
                vec(prop_oneof![Just(0u64), 0u64..100, 0u64..(1 << 40)], count),
            )
        }),
    )
        .prop_map(|(round, pool, (keys, scores))| pb::PolicyInput {
            kind: Some(pb::policy_input::Kind::Reward(pb::RewardInput {
                round,
                pool: Some(u128_pb(pool)),
                node_keys: keys.into(),
                scores: to_column(scores).into(),
            })),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn sharding_in_wasm_equals_native(input in sharding()) {
        prop_assume!(check::input(&input).is_ok());
        assert_same(PluginKind::Sharding, input, blyan_plugin_sharding::run);
    }

    #[test]
    fn scoring_in_wasm_equals_native(input in scoring()) {
        assert_same(PluginKind::Scoring, input, blyan_plugin_scoring::run);
    }

    #[test]
    fn reward_in_wasm_equals_native(input in reward()) {
        assert_same(PluginKind::Reward, input, blyan_plugin_reward::run);
    }
}
