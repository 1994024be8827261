//! Training and measuring speed on the CPU, and the peak memory of a node and of a
//! validator.
//!
//! `cargo bench -p blyan-ml --bench learn` runs every role below in a process of its
//! own (so that each reports its own peak RSS) and prints one line per role. One role
//! alone: `cargo bench -p blyan-ml --bench learn -- ROLE`.
//!
//! - `node`: [`CandleTrainer`] at the default size, one delta (100 AdamW steps on the
//!   round's expert) over 4 items of 64 samples, as a node trains in a round.
//! - `validator`: [`CandleMeasurer`] at the default size, deltas measured on 4
//!   held-out items of 64 samples each.
//! - `probe`: a plain MLP, 64 → 256 → 64 with ReLU, on a batch of 512, 200 AdamW
//!   steps: a size at which the arithmetic, not the per-operation overhead, dominates.
//!
//! `ml/bench/torch_peer.py` runs the same three in PyTorch, shapes, batch, optimizer and
//! step counts alike, for the side-by-side figures in BENCHMARKS.md. Both use the
//! threads they are given (`RAYON_NUM_THREADS` here, `--threads` there; all cores by
//! default).

use std::process::Command;
use std::time::Instant;

use blyan_ml::{CandleMeasurer, CandleTrainer, Device, Moe, MoeConfig, data};
use blyan_sdk::work::Item;
use candle_core::{DType, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

const ROLES: [&str; 3] = ["node", "validator", "probe"];

fn main() {
    // `cargo bench` passes `--bench`; the role is the first other argument.
    let role = std::env::args().skip(1).find(|arg| !arg.starts_with("--"));
    match role.as_deref() {
        None => {
            let me = std::env::current_exe().expect("the bench binary's path");
            for role in ROLES {
                let status = Command::new(&me).arg(role).status().expect("run one role");
                assert!(status.success(), "role {role} failed");
            }
        }
        Some("node") => node(),
        Some("validator") => validator(),
        Some("probe") => probe(),
        Some(other) => panic!("unknown role {other}; one of {ROLES:?}"),
    }
}

fn items(teacher: &Moe, range: std::ops::Range<u32>) -> Vec<Item> {
    range
        .map(|id| Item {
            id,
            bytes: data::item(teacher, 7, id, 64).expect("an item"),
        })
        .collect()
}

/// The process's peak resident set, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024.0
}

fn node() {
    let config = MoeConfig::default();
    let teacher = Moe::init(config, 1, &Device::Cpu).unwrap();
    let base = Moe::init(config, 2, &Device::Cpu).unwrap();
    let training = items(&teacher, 0..4);
    let mut trainer = CandleTrainer::new(base);
    // One warm-up delta, then the timed ones.
    trainer.train_expert(0, &training).unwrap();
    let deltas = 20;
    let started = Instant::now();
    for delta in 0..deltas {
        trainer
            .train_expert(delta % config.experts, &training)
            .unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let steps = (deltas * trainer.steps) as f64;
    println!(
        "node: {:.0} training steps/s ({:.1} ms a delta of {} steps, 256 samples), peak RSS {:.1} MiB",
        steps / seconds,
        seconds * 1e3 / deltas as f64,
        trainer.steps,
        peak_rss_mib()
    );
}

fn validator() {
    let config = MoeConfig::default();
    let teacher = Moe::init(config, 1, &Device::Cpu).unwrap();
    let base = Moe::init(config, 2, &Device::Cpu).unwrap();
    let training = items(&teacher, 0..4);
    let held_out = items(&teacher, 100..104);
    let mut trainer = CandleTrainer::new(base.clone());
    let deltas: Vec<Vec<u8>> = (0..config.experts)
        .map(|expert| trainer.train_expert(expert, &training).unwrap())
        .collect();
    let measurer = CandleMeasurer::new(base);
    measurer.measure_delta(0, &deltas[0], &held_out);
    let measured = 400;
    let started = Instant::now();
    for index in 0..measured {
        let expert = index % config.experts;
        std::hint::black_box(measurer.measure_delta(expert, &deltas[expert], &held_out));
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "validator: {:.0} deltas measured/s ({:.2} ms a delta, 256 held-out samples), peak RSS {:.1} MiB",
        measured as f64 / seconds,
        seconds * 1e3 / measured as f64,
        peak_rss_mib()
    );
}

fn probe() {
    let device = Device::Cpu;
    let (batch, inputs, hidden, outputs, steps) = (512, 64, 256, 64, 200);
    let normal = |shape: (usize, usize)| Tensor::randn(0f32, 1.0, shape, &device).unwrap();
    let x = normal((batch, inputs));
    let y = normal((batch, outputs));
    let var = |shape: (usize, usize), fan_in: usize| {
        let bound = 1.0 / (fan_in as f64).sqrt();
        Var::from_tensor(&(normal(shape) * bound).unwrap()).unwrap()
    };
    let w1 = var((hidden, inputs), inputs);
    let b1 = Var::zeros(hidden, DType::F32, &device).unwrap();
    let w2 = var((outputs, hidden), hidden);
    let b2 = Var::zeros(outputs, DType::F32, &device).unwrap();
    let mut optimizer = AdamW::new(
        vec![w1.clone(), b1.clone(), w2.clone(), b2.clone()],
        ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )
    .unwrap();
    let step = |optimizer: &mut AdamW| {
        let h = x
            .matmul(&w1.t().unwrap())
            .unwrap()
            .broadcast_add(&b1)
            .unwrap()
            .relu()
            .unwrap();
        let prediction = h
            .matmul(&w2.t().unwrap())
            .unwrap()
            .broadcast_add(&b2)
            .unwrap();
        let loss = (prediction - &y)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        optimizer.backward_step(&loss).unwrap();
    };
    for _ in 0..10 {
        step(&mut optimizer);
    }
    let started = Instant::now();
    for _ in 0..steps {
        step(&mut optimizer);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "probe: {steps} AdamW steps of a {inputs}->{hidden}->{outputs} MLP on a batch of {batch} in {:.3} s ({:.0} steps/s)",
        seconds,
        steps as f64 / seconds
    );
}
