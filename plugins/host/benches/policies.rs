//! Wasm against native: each default plugin on the same encoded input, through the
//! same `bytes -> bytes` entry (decode, policy, encode), natively from its rlib and in
//! the sandbox (a fresh instance per call, fuel metered, epoch deadline armed).
//!
//! `cargo bench -p blyan-plugin-host --bench policies [-- SAMPLES [WORKLOAD]]`
//!
//! Prints the median of SAMPLES runs (default 31) of each workload (or only those
//! whose name starts with WORKLOAD; `overhead` for the small inputs only), the
//! Wasm/native ratio (target <= 1.5), and the per-call overhead on a small input: the
//! median Wasm call minus the median native call (target <= 50 us).
//!
//! The native, Wasm and floor runs of a workload alternate, sample by sample, so that
//! the machine's drift touches all three alike. The floor is a module that copies the
//! input in and returns nothing: what any plugin pays on that input before it
//! computes (instantiation, the input copy, resetting the memory afterwards).

use std::time::{Duration, Instant};

use blyan_plugin_host::check::u128_pb;
use blyan_plugin_host::column::to_column;
use blyan_plugin_host::{Host, Limits, PluginKind, check, defaults, pb, reference};
use prost::Message;

type Native = fn(&[u8]) -> Result<Vec<u8>, blyan_plugin_pdk::PolicyError>;

/// `count` distinct keys, ascending: the index big-endian, then pseudo-random bytes.
fn node_keys(count: u32) -> prost::bytes::Bytes {
    (0..count)
        .flat_map(|i| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            key[4..8].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
            key
        })
        .collect::<Vec<u8>>()
        .into()
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
            node_keys: node_keys(10_000),
            capabilities: to_column((0..10_000).map(|_| 1 + next() % 1_000)).into(),
        })),
    }
}

/// 10,000 deltas, each measured by `validators` validators.
fn scoring_input(validators: u32) -> pb::PolicyInput {
    let mut next = numbers(2);
    let measurements = 10_000 * validators;
    pb::PolicyInput {
        kind: Some(pb::policy_input::Kind::Scoring(pb::ScoringInput {
            round: 7,
            quorum: 3,
            max_score: 1_000_000_000,
            measurement_counts: to_column(std::iter::repeat_n(validators, 10_000)).into(),
            measurements: to_column(
                (0..measurements).map(|_| (next() % 2_000_000) as i64 - 500_000),
            )
            .into(),
        })),
    }
}

/// 16 validators per delta: the most the scoring policy's sorting network covers.
fn scoring_16() -> pb::PolicyInput {
    scoring_input(16)
}

/// 17 validators per delta: one more, so every median takes the selection instead.
fn scoring_17() -> pb::PolicyInput {
    scoring_input(17)
}

fn reward_input() -> pb::PolicyInput {
    let mut next = numbers(3);
    pb::PolicyInput {
        kind: Some(pb::policy_input::Kind::Reward(pb::RewardInput {
            round: 7,
            pool: Some(u128_pb(123_456_789_000_000_000_000_000)),
            node_keys: node_keys(10_000),
            scores: to_column((0..10_000).map(|i| {
                if i % 10 == 0 {
                    0
                } else {
                    next() % 1_000_000_000
                }
            }))
            .into(),
        })),
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The median time of each of `runs`, sampled alternately, `samples` times each.
fn time<const N: usize>(samples: usize, mut runs: [&mut dyn FnMut(); N]) -> [Duration; N] {
    for run in runs.iter_mut() {
        run();
    }
    let mut times: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::with_capacity(samples));
    for _ in 0..samples {
        for (run, times) in runs.iter_mut().zip(&mut times) {
            let started = Instant::now();
            run();
            times.push(started.elapsed());
        }
    }
    times.map(median)
}

/// Takes any input (growing its memory to fit) and returns an empty output.
const FLOOR: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "blyan_abi_version") (result i32) (i32.const 1))
  (func (export "blyan_alloc") (param $len i32) (result i32)
    (i32.mul
      (memory.grow (i32.add (i32.shr_u (local.get $len) (i32.const 16)) (i32.const 1)))
      (i32.const 65536)))
  (func (export "blyan_policy") (param i32 i32) (result i64) (i64.const 0)))"#;

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| !arg.starts_with('-'));
    let samples: usize = args
        .next()
        .map(|arg| arg.parse().expect("SAMPLES is a number"))
        .unwrap_or(31);
    let only = args.next();
    let selected = |name: &str| {
        only.as_ref()
            .is_none_or(|only| name.starts_with(only.as_str()))
    };
    let host = Host::new(Limits::default());
    let fuel = Limits::default().fuel_per_call;
    let floor = host
        .compile(&wat::parse_str(FLOOR).expect("the floor module is valid WAT"))
        .unwrap();
    type Workload = (&'static str, PluginKind, fn() -> pb::PolicyInput, Native);
    let workloads: [Workload; 4] = [
        (
            "sharding 1,000,000 items / 10,000 nodes",
            PluginKind::Sharding,
            sharding_input,
            blyan_plugin_sharding::run,
        ),
        (
            "scoring 10,000 deltas x 16 validators",
            PluginKind::Scoring,
            scoring_16,
            blyan_plugin_scoring::run,
        ),
        (
            "scoring 10,000 deltas x 17 validators",
            PluginKind::Scoring,
            scoring_17,
            blyan_plugin_scoring::run,
        ),
        (
            "reward 10,000 nodes",
            PluginKind::Reward,
            reward_input,
            blyan_plugin_reward::run,
        ),
    ];
    println!(
        "{:<42} {:>10} {:>10} {:>7} {:>10} {:>12}",
        "workload", "native", "wasm", "ratio", "floor", "fuel"
    );
    for (name, kind, input, native) in workloads {
        if !selected(name) {
            continue;
        }
        let input = input();
        let bytes = input.encode_to_vec();
        let compiled = host.compile(defaults::wasm(kind)).unwrap();
        // Both sides must give the same, valid output.
        let expected = native(&bytes).unwrap();
        let (wasm_output, fuel_used) = host.call_encoded(&compiled, &bytes, fuel).unwrap();
        assert_eq!(expected, wasm_output, "{name}: outputs differ");
        let output = pb::PolicyOutput::decode(wasm_output.as_slice()).unwrap();
        check::output(&input, &output).unwrap();

        let [native_time, wasm_time, floor_time] = time(
            samples,
            [
                &mut || {
                    std::hint::black_box(native(std::hint::black_box(&bytes)).unwrap());
                },
                &mut || {
                    std::hint::black_box(host.call_encoded(&compiled, &bytes, fuel).unwrap());
                },
                &mut || {
                    std::hint::black_box(host.call_encoded(&floor, &bytes, fuel).unwrap());
                },
            ],
        );
        println!(
            "{name:<42} {:>8.3}ms {:>8.3}ms {:>6.2}x {:>8.3}ms {fuel_used:>12}",
            native_time.as_secs_f64() * 1e3,
            wasm_time.as_secs_f64() * 1e3,
            wasm_time.as_secs_f64() / native_time.as_secs_f64(),
            floor_time.as_secs_f64() * 1e3,
        );
    }

    // Per-call overhead: a small input, many calls.
    if !selected("overhead") && only.is_some() {
        return;
    }
    println!();
    println!(
        "{:<42} {:>10} {:>10} {:>10}",
        "small input (reference): overhead", "native", "wasm", "overhead"
    );
    for (kind, native) in [
        (PluginKind::Sharding, blyan_plugin_sharding::run as Native),
        (PluginKind::Scoring, blyan_plugin_scoring::run),
        (PluginKind::Reward, blyan_plugin_reward::run),
    ] {
        let bytes = reference::input(kind).encode_to_vec();
        let compiled = host.compile(defaults::wasm(kind)).unwrap();
        let [native_time, wasm_time] = time(
            samples * 200,
            [
                &mut || {
                    std::hint::black_box(native(std::hint::black_box(&bytes)).unwrap());
                },
                &mut || {
                    std::hint::black_box(host.call_encoded(&compiled, &bytes, fuel).unwrap());
                },
            ],
        );
        println!(
            "{:<42} {:>8.2}us {:>8.2}us {:>8.2}us",
            kind.name(),
            native_time.as_secs_f64() * 1e6,
            wasm_time.as_secs_f64() * 1e6,
            (wasm_time.as_secs_f64() - native_time.as_secs_f64()) * 1e6
        );
    }
}
