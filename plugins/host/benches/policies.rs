//! Wasm against native: each default plugin on the same encoded input, through the
//! same `bytes -> bytes` entry (decode, policy, encode), natively from its rlib and in
//! the sandbox (a fresh instance per call, fuel metered).
//!
//! `cargo bench -p blyan-plugin-host --bench policies [-- SAMPLES]`
//!
//! Prints the median of SAMPLES runs (default 31) of each workload, the Wasm/native
//! ratio (target <= 1.5), and the per-call overhead on a small input: the median Wasm
//! call minus the median native call (target <= 50 us).

use std::time::{Duration, Instant};

use blyan_plugin_host::check::u128_pb;
use blyan_plugin_host::{Host, Limits, PluginKind, check, defaults, pb, reference};
use prost::Message;

type Native = fn(&[u8]) -> Result<Vec<u8>, blyan_plugin_pdk::PolicyError>;

fn key(i: u32) -> Vec<u8> {
    let mut key = vec![0u8; 32];
    key[..4].copy_from_slice(&i.to_be_bytes());
    key[4..8].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
    key
}

/// A small deterministic generator for benchmark data.
fn numbers(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn sharding_input() -> pb::PolicyInput {
    let mut next = numbers(1);
    pb::PolicyInput {
        kind: Some(pb::policy_input::Kind::Sharding(pb::ShardingInput {
            round: 7,
            seed: (0..32).collect(),
            item_count: 1_000_000,
            nodes: (0..10_000)
                .map(|i| pb::ShardingNode {
                    node: key(i),
                    capability: 1 + next() % 1_000,
                })
                .collect(),
        })),
    }
}

fn scoring_input() -> pb::PolicyInput {
    let mut next = numbers(2);
    pb::PolicyInput {
        kind: Some(pb::policy_input::Kind::Scoring(pb::ScoringInput {
            round: 7,
            quorum: 3,
            max_score: 1_000_000_000,
            deltas: (0..10_000)
                .map(|i| pb::DeltaMeasurements {
                    delta_id: key(i),
                    measurements: (0..16)
                        .map(|_| (next() % 2_000_000) as i64 - 500_000)
                        .collect(),
                })
                .collect(),
        })),
    }
}

fn reward_input() -> pb::PolicyInput {
    let mut next = numbers(3);
    pb::PolicyInput {
        kind: Some(pb::policy_input::Kind::Reward(pb::RewardInput {
            round: 7,
            pool: Some(u128_pb(123_456_789_000_000_000_000_000)),
            nodes: (0..10_000)
                .map(|i| pb::NodeScore {
                    node: key(i),
                    score: if i % 10 == 0 {
                        0
                    } else {
                        next() % 1_000_000_000
                    },
                })
                .collect(),
        })),
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(samples: usize, mut run: impl FnMut()) -> Duration {
    run();
    median(
        (0..samples)
            .map(|_| {
                let started = Instant::now();
                run();
                started.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let samples: usize = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .map(|arg| arg.parse().expect("SAMPLES is a number"))
        .unwrap_or(31);
    let host = Host::new(Limits::default());
    let fuel = Limits::default().fuel_per_call;
    let workloads: [(&str, PluginKind, pb::PolicyInput, Native); 3] = [
        (
            "sharding 1,000,000 items / 10,000 nodes",
            PluginKind::Sharding,
            sharding_input(),
            blyan_plugin_sharding::run,
        ),
        (
            "scoring 10,000 deltas x 16 validators",
            PluginKind::Scoring,
            scoring_input(),
            blyan_plugin_scoring::run,
        ),
        (
            "reward 10,000 nodes",
            PluginKind::Reward,
            reward_input(),
            blyan_plugin_reward::run,
        ),
    ];
    println!(
        "{:<42} {:>12} {:>12} {:>7} {:>14}",
        "workload", "native", "wasm", "ratio", "fuel"
    );
    for (name, kind, input, native) in &workloads {
        let bytes = input.encode_to_vec();
        let compiled = host.compile(defaults::wasm(*kind)).unwrap();
        // Both sides must give the same, valid output.
        let expected = native(&bytes).unwrap();
        let (wasm_output, fuel_used) = host.call_encoded(&compiled, &bytes, fuel).unwrap();
        assert_eq!(expected, wasm_output, "{name}: outputs differ");
        let output = pb::PolicyOutput::decode(wasm_output.as_slice()).unwrap();
        check::output(input, &output).unwrap();

        let native_time = time(samples, || {
            std::hint::black_box(native(std::hint::black_box(&bytes)).unwrap());
        });
        let wasm_time = time(samples, || {
            std::hint::black_box(host.call_encoded(&compiled, &bytes, fuel).unwrap());
        });
        println!(
            "{name:<42} {:>10.3}ms {:>10.3}ms {:>6.2}x {fuel_used:>14}",
            native_time.as_secs_f64() * 1e3,
            wasm_time.as_secs_f64() * 1e3,
            wasm_time.as_secs_f64() / native_time.as_secs_f64()
        );
    }

    // Per-call overhead: a small input, many calls.
    println!();
    println!(
        "{:<42} {:>12} {:>12} {:>12}",
        "small input (reference)", "native", "wasm", "overhead"
    );
    for (kind, native) in [
        (PluginKind::Sharding, blyan_plugin_sharding::run as Native),
        (PluginKind::Scoring, blyan_plugin_scoring::run),
        (PluginKind::Reward, blyan_plugin_reward::run),
    ] {
        let bytes = reference::input(kind).encode_to_vec();
        let compiled = host.compile(defaults::wasm(kind)).unwrap();
        let calls = samples * 200;
        let native_time = time(calls, || {
            std::hint::black_box(native(std::hint::black_box(&bytes)).unwrap());
        });
        let wasm_time = time(calls, || {
            std::hint::black_box(host.call_encoded(&compiled, &bytes, fuel).unwrap());
        });
        println!(
            "{:<42} {:>10.2}us {:>10.2}us {:>10.2}us",
            kind.name(),
            native_time.as_secs_f64() * 1e6,
            wasm_time.as_secs_f64() * 1e6,
            (wasm_time.as_secs_f64() - native_time.as_secs_f64()) * 1e6
        );
    }
}
