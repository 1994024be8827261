//! Training and measuring give the same bytes and the same number whatever the thread
//! count: each thread count runs in a process of its own (candle sizes its CPU thread
//! pool from `RAYON_NUM_THREADS` once per process), at a size where the matrix
//! products really split across threads.

use std::process::Command;

use blyan_ml::{CandleMeasurer, CandleTrainer, Device, Moe, MoeConfig, data};
use blyan_sdk::work::Item;

const CHILD: &str = "BLYAN_ML_THREADS_CHILD";
const NAME: &str = "training_and_measuring_do_not_depend_on_the_thread_count";

/// The delta's hash and its measurement, in this process.
fn learn() -> String {
    let config = MoeConfig {
        inputs: 64,
        hidden: 256,
        outputs: 64,
        experts: 2,
    };
    let teacher = Moe::init(config, 1, &Device::Cpu).unwrap();
    let base = Moe::init(config, 2, &Device::Cpu).unwrap();
    let items = |range: std::ops::Range<u32>| -> Vec<Item> {
        range
            .map(|id| Item {
                id,
                bytes: data::item(&teacher, 3, id, 512).unwrap(),
            })
            .collect()
    };
    let mut trainer = CandleTrainer::new(base.clone());
    trainer.steps = 5;
    let delta = trainer.train_expert(1, &items(0..2)).unwrap();
    let measured = CandleMeasurer::new(base).measure_delta(1, &delta, &items(2..4));
    format!("{} {measured}", blake3::hash(&delta).to_hex())
}

#[test]
fn training_and_measuring_do_not_depend_on_the_thread_count() {
    if std::env::var_os(CHILD).is_some() {
        println!("learned {}", learn());
        return;
    }
    let me = std::env::current_exe().unwrap();
    let results: Vec<String> = ["1", "2", "4"]
        .iter()
        .map(|threads| {
            let output = Command::new(&me)
                .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
                .env(CHILD, "1")
                .env("RAYON_NUM_THREADS", threads)
                .output()
                .unwrap();
            assert!(output.status.success(), "{output:?}");
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .find_map(|line| {
                    line.split_once("learned ")
                        .map(|(_, result)| result.to_owned())
                })
                .unwrap_or_else(|| panic!("no result with {threads} threads: {output:?}"))
        })
        .collect();
    assert!(
        results.iter().all(|result| *result == results[0]),
        "{results:?}"
    );
    // A real measurement: the trained delta helps on held-out data.
    let measured: i64 = results[0].split(' ').nth(1).unwrap().parse().unwrap();
    assert!(measured > 0, "{results:?}");
}
