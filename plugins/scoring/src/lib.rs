//! The default scoring policy: each delta scores the median of its validators'
//! measurements, clamped to `[0, max_score]`.
//!
//! Who uses it: the host embeds it as the `.wasm` built from this crate; tests and
//! benchmarks call [`score`] or [`run`] natively. This documentation is the policy's
//! specification.
//!
//! # Specification
//!
//! Input: `quorum`, `max_score`, and for each delta its validators' signed
//! measurements (`measurement_counts` cuts `measurements` into deltas). `round` is not
//! read. The output holds exactly one score per delta, in input order:
//!
//! 1. **Quorum.** A delta with fewer than `max(quorum, 1)` measurements scores 0.
//! 2. **Median.** Otherwise, with the `m` measurements sorted ascending as
//!    `x[0] <= ... <= x[m - 1]`, the median is `x[m / 2]` when `m` is odd, and
//!    `floor((x[m / 2 - 1] + x[m / 2]) / 2)` when `m` is even, the sum taken in 128
//!    bits and the floor rounding toward negative infinity (so `(-3 + 0) / 2` is -2).
//! 3. **Clamp.** The score is the median clamped to `[0, max_score]`: a delta whose
//!    median is negative (it made the model worse) scores 0, never below.
//!
//! Why the median: while fewer than half of a delta's validators lie, whatever they
//! report (even `i64::MIN` or `i64::MAX`), the median lies between the lowest and the
//! highest honest measurement. The policy cannot overflow and never traps on a
//! well-formed input.

use blyan_plugin_pdk::{delta_measurements, pb, to_column};

blyan_plugin_pdk::export_scoring!(score);

/// Scores every delta of `input`, as the crate documentation specifies.
pub fn score(input: &pb::ScoringInput) -> pb::ScoringOutput {
    let quorum = input.quorum.max(1) as usize;
    // One scratch buffer for every delta's measurements, reordered in place.
    let mut scratch = Vec::new();
    let scores = delta_measurements(input).map(|measurements| {
        if measurements.len() < quorum {
            return 0;
        }
        let median = if measurements.len() <= NETWORK_INPUTS {
            small_median(measurements)
        } else {
            scratch.clear();
            scratch.extend(measurements);
            median(&mut scratch)
        };
        clamp(median, input.max_score)
    });
    pb::ScoringOutput {
        scores: to_column(scores),
    }
}

/// The median of step 2, reordering `measurements`, which is not empty. Selects the
/// middle value rather than sorting: the values before it are then the lower half,
/// whose largest is the other middle value when the count is even.
fn median(measurements: &mut [i64]) -> i128 {
    assert!(!measurements.is_empty(), "scoring: the median of nothing");
    let even = measurements.len().is_multiple_of(2);
    let middle = measurements.len() / 2;
    let (lower, &mut upper_middle, _) = measurements.select_nth_unstable(middle);
    match lower.iter().max() {
        Some(&lower_middle) if even => {
            (i128::from(lower_middle) + i128::from(upper_middle)).div_euclid(2)
        }
        _ => i128::from(upper_middle),
    }
}

/// Measurement counts up to this are sorted by [`sort_network`]. Larger ones are
/// selected by [`median`], which gives the same median but in Wasm costs several
/// times as much per measurement (see BENCHMARKS.md, "Policy plugins").
const NETWORK_INPUTS: usize = 16;

/// The median of step 2 of at most [`NETWORK_INPUTS`] measurements, which are not
/// empty, by a fixed sorting network: the same compare-exchanges whatever the values,
/// with no branch on them and no loop. Selecting instead spends its time in short
/// loops, and in Wasm each of their iterations also pays for the sandbox's fuel and
/// deadline checks.
///
/// The `n` measurements are padded to 16 values with `(16 - n) / 2` copies of
/// `i64::MIN` (which sort before them) and the rest `i64::MAX` (after them). The
/// lower middle measurement then always sorts to position 7 and the upper one to 8
/// (the one middle, when `n` is odd, to 7), so every index is a constant and the
/// values can stay in registers.
fn small_median(mut measurements: impl ExactSizeIterator<Item = i64>) -> i128 {
    let count = measurements.len();
    assert!(
        (1..=NETWORK_INPUTS).contains(&count),
        "scoring: {count} measurements for the sorting network"
    );
    let low_pads = (NETWORK_INPUTS - count) / 2;
    let mut values: [i64; NETWORK_INPUTS] = std::array::from_fn(|i| {
        if i < count {
            measurements
                .next()
                .expect("an exact-size iterator yields its length")
        } else if i < count + low_pads {
            i64::MIN
        } else {
            i64::MAX
        }
    });
    sort_network(&mut values);
    if count.is_multiple_of(2) {
        (i128::from(values[7]) + i128::from(values[8])).div_euclid(2)
    } else {
        i128::from(values[7])
    }
}

/// Sorts 16 values with Batcher's odd-even merge sort network: 63 compare-exchanges
/// in 10 layers (`tests::the_network_sorts_every_input` checks every 0-1 input,
/// which by the 0-1 principle shows it sorts any input).
fn sort_network(values: &mut [i64; NETWORK_INPUTS]) {
    macro_rules! network {
        ($(($a:literal, $b:literal))*) => {$(
            let (low, high) = (values[$a], values[$b]);
            values[$a] = low.min(high);
            values[$b] = low.max(high);
        )*};
    }
    network! {
        (0, 1) (2, 3) (4, 5) (6, 7) (8, 9) (10, 11) (12, 13) (14, 15)
        (0, 2) (1, 3) (4, 6) (5, 7) (8, 10) (9, 11) (12, 14) (13, 15)
        (1, 2) (5, 6) (9, 10) (13, 14)
        (0, 4) (1, 5) (2, 6) (3, 7) (8, 12) (9, 13) (10, 14) (11, 15)
        (2, 4) (3, 5) (10, 12) (11, 13)
        (1, 2) (3, 4) (5, 6) (9, 10) (11, 12) (13, 14)
        (0, 8) (1, 9) (2, 10) (3, 11) (4, 12) (5, 13) (6, 14) (7, 15)
        (4, 8) (5, 9) (6, 10) (7, 11)
        (2, 4) (3, 5) (6, 8) (7, 9) (10, 12) (11, 13)
        (1, 2) (3, 4) (5, 6) (7, 8) (9, 10) (11, 12) (13, 14)
    }
}

/// `median` clamped to `[0, max_score]`.
fn clamp(median: i128, max_score: u64) -> u64 {
    if median <= 0 {
        0
    } else {
        // A positive median fits a u64: it lies between two i64 values.
        (median as u64).min(max_score)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blyan_plugin_pdk::values;
    use prost::Message;

    fn input(quorum: u32, max_score: u64, deltas: &[&[i64]]) -> pb::ScoringInput {
        pb::ScoringInput {
            round: 1,
            quorum,
            max_score,
            measurement_counts: to_column(deltas.iter().map(|delta| delta.len() as u32)).into(),
            measurements: to_column(deltas.concat()).into(),
        }
    }

    fn scores(quorum: u32, max_score: u64, deltas: &[&[i64]]) -> Vec<u64> {
        let output = score(&input(quorum, max_score, deltas));
        let scores: Vec<u64> = values(&output.scores).collect();
        assert_eq!(scores.len(), deltas.len());
        scores
    }

    #[test]
    fn the_network_sorts_every_input() {
        // The 0-1 principle: a network that sorts every sequence of zeros and ones
        // sorts every sequence.
        for bits in 0u32..1 << NETWORK_INPUTS {
            let mut values: [i64; NETWORK_INPUTS] =
                std::array::from_fn(|i| i64::from((bits >> i) & 1));
            sort_network(&mut values);
            assert!(values.is_sorted(), "{bits:016b} gave {values:?}");
        }
    }

    /// Measurements at the extremes of `i64`, near zero, or anywhere.
    fn measurement() -> impl proptest::strategy::Strategy<Value = i64> {
        use proptest::prelude::*;
        prop_oneof![
            (0..3i64).prop_map(|k| i64::MIN + k),
            (0..3i64).prop_map(|k| i64::MAX - k),
            -3..=3i64,
            any::<i64>(),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        #[test]
        fn the_network_and_the_selection_agree(
            values in proptest::collection::vec(measurement(), 1..=NETWORK_INPUTS),
        ) {
            proptest::prop_assert_eq!(
                small_median(values.iter().copied()),
                median(&mut values.clone())
            );
        }
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_value() {
        assert_eq!(scores(1, 1000, &[&[30, 10, 20]]), [20]);
        assert_eq!(scores(1, 1000, &[&[5, 900, 1, 7, 6]]), [6]);
        assert_eq!(scores(1, 1000, &[&[42]]), [42]);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_floor_of_the_middle_mean() {
        assert_eq!(scores(1, 1000, &[&[10, 40, 20, 30]]), [25]);
        assert_eq!(scores(1, 1000, &[&[10, 21]]), [15]);
        assert_eq!(median(&mut [10, 21]), 15);
        // Floor, not truncation toward zero.
        assert_eq!(median(&mut [-3, 0]), -2);
        assert_eq!(median(&mut [-4, 1]), -2);
    }

    #[test]
    fn deltas_are_scored_independently_in_input_order() {
        assert_eq!(
            scores(2, 1000, &[&[1, 3], &[7], &[500, 600, 700], &[-5, -6]]),
            [2, 0, 600, 0]
        );
    }

    #[test]
    fn a_delta_below_quorum_scores_zero() {
        assert_eq!(scores(3, 1000, &[&[50, 60]]), [0]);
        assert_eq!(scores(3, 1000, &[&[50, 60, 70]]), [60]);
        // A quorum of 0 still needs one measurement.
        assert_eq!(scores(0, 1000, &[&[], &[9]]), [0, 9]);
    }

    #[test]
    fn a_harmful_delta_scores_zero() {
        assert_eq!(scores(1, 1000, &[&[-10, -20, 5]]), [0]);
        assert_eq!(scores(1, 1000, &[&[i64::MIN]]), [0]);
    }

    #[test]
    fn scores_are_clamped_to_max_score() {
        assert_eq!(scores(1, 100, &[&[150, 200, 250]]), [100]);
        assert_eq!(scores(1, 0, &[&[150]]), [0]);
        assert_eq!(scores(1, u64::MAX, &[&[i64::MAX]]), [i64::MAX as u64]);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        assert_eq!(
            scores(1, u64::MAX, &[&[i64::MAX, i64::MAX]]),
            [i64::MAX as u64]
        );
        assert_eq!(scores(1, u64::MAX, &[&[i64::MIN, i64::MIN]]), [0]);
        assert_eq!(median(&mut [i64::MIN, i64::MAX]), -1);
        assert_eq!(
            median(&mut [i64::MAX, i64::MAX - 1]),
            i128::from(i64::MAX - 1)
        );
    }

    #[test]
    fn seven_liars_of_sixteen_cannot_leave_the_honest_range() {
        let honest: Vec<i64> = (0..9).map(|i| 1000 + 10 * i).collect();
        let (low, high) = (1000, 1080);
        let lies: [&[i64]; 4] = [
            &[i64::MAX; 7],
            &[i64::MIN; 7],
            &[
                i64::MAX,
                i64::MIN,
                i64::MAX,
                i64::MIN,
                i64::MAX,
                i64::MIN,
                i64::MAX,
            ],
            &[0, 0, 0, 0, 0, 0, 0],
        ];
        for lie in lies {
            for split in 0..=honest.len() {
                // Liars' reports interleaved anywhere among the honest ones.
                let mut measurements = honest[..split].to_vec();
                measurements.extend_from_slice(lie);
                measurements.extend_from_slice(&honest[split..]);
                assert_eq!(measurements.len(), 16);
                let score = scores(16, u64::MAX, &[&measurements])[0];
                assert!(
                    (low..=high).contains(&score),
                    "{score} from {measurements:?}"
                );
            }
        }
    }

    #[test]
    fn run_round_trips_encoded_bytes() {
        let input = input(2, 50, &[&[1, 2, 3], &[100, 90]]);
        let encoded = pb::PolicyInput {
            kind: Some(pb::policy_input::Kind::Scoring(input)),
        }
        .encode_to_vec();
        let output = pb::PolicyOutput::decode(&run(&encoded).unwrap()[..]).unwrap();
        assert_eq!(
            output.kind,
            Some(pb::policy_output::Kind::Scoring(pb::ScoringOutput {
                scores: to_column([2u64, 50])
            }))
        );
    }

    #[test]
    fn run_rejects_another_kind() {
        let encoded = pb::PolicyInput {
            kind: Some(pb::policy_input::Kind::Sharding(
                pb::ShardingInput::default(),
            )),
        }
        .encode_to_vec();
        assert_eq!(
            run(&encoded),
            Err(blyan_plugin_pdk::PolicyError::WrongKind {
                expected: "scoring",
                found: "sharding"
            })
        );
    }
}
