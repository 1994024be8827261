//! The plugin development kit: the policy ABI (version 1) behind a typed function and
//! one macro, so that a policy plugin is a pure Rust function plus one line.
//!
//! Who uses it: the default plugins (`plugins/sharding`, `plugins/scoring`,
//! `plugins/reward`) and anyone writing a replacement policy for governance to adopt.
//! The host (`plugins/host`) does not depend on it: the ABI is the contract, and the
//! host checks every output whatever wrote it.
//!
//! # The ABI, version 1
//!
//! A plugin is a core-Wasm module with no imports. It exports:
//!
//! - `memory`;
//! - `blyan_abi_version() -> i32`, which returns [`ABI_VERSION`];
//! - `blyan_alloc(len: i32) -> i32`, a pointer to `len` writable bytes, where the host
//!   writes one encoded [`pb::PolicyInput`] (0 when `len` is negative);
//! - `blyan_policy(ptr: i32, len: i32) -> i64`, which decodes the input at
//!   `[ptr, ptr + len)`, runs the policy and returns the encoded
//!   [`pb::PolicyOutput`] of the same kind as `(out_ptr << 32) | out_len`.
//!
//! Any error (an undecodable input, the wrong kind, an arithmetic overflow, a broken
//! assertion) traps: plugins are built with `panic = "abort"`, so a panic is a Wasm
//! trap. The host calls every plugin in a fresh instance, so nothing is ever freed.
//!
//! # A complete plugin
//!
//! `Cargo.toml` names `crate-type = ["cdylib", "rlib"]` and depends on this crate;
//! `src/lib.rs` is:
//!
//! ```
//! use blyan_plugin_pdk::{pb, to_column, values};
//!
//! /// Gives every delta the highest score, quorum or not.
//! pub fn score(input: &pb::ScoringInput) -> pb::ScoringOutput {
//!     let deltas = values::<u32>(&input.measurement_counts);
//!     pb::ScoringOutput {
//!         scores: to_column(deltas.map(|_| input.max_score)),
//!     }
//! }
//!
//! blyan_plugin_pdk::export_scoring!(score);
//! # fn main() {
//! #     use prost::Message;
//! #     let input = pb::PolicyInput {
//! #         kind: Some(pb::policy_input::Kind::Scoring(pb::ScoringInput {
//! #             max_score: 7,
//! #             measurement_counts: to_column([0u32, 0]).into(),
//! #             ..Default::default()
//! #         })),
//! #     };
//! #     let output = pb::PolicyOutput::decode(&run(&input.encode_to_vec()).unwrap()[..]).unwrap();
//! #     let Some(pb::policy_output::Kind::Scoring(scoring)) = output.kind else { panic!() };
//! #     assert_eq!(values::<u64>(&scoring.scores).collect::<Vec<_>>(), [7, 7]);
//! # }
//! ```
//!
//! The macro adds `pub fn run(input: &[u8]) -> Result<Vec<u8>, PolicyError>`, the
//! policy on encoded bytes natively (the `.wasm` must return the same bytes), and, on
//! `wasm32` only, the ABI's exports above. `cargo build --target
//! wasm32-unknown-unknown --profile plugin` then builds the plugin.

use std::fmt;

use prost::Message;

/// The messages of the ABI, generated from `schemas/proto/blyan/v1/plugin.proto`.
pub use blyan_schemas::v1 as pb;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod abi;

/// The ABI version this crate implements, returned by `blyan_abi_version`.
pub use blyan_schemas::v1::ABI_VERSION;

mod sealed {
    pub trait Sealed {}
}

/// One of the three policy kinds: names its input and output messages.
///
/// Sealed: the kinds are those of `PolicyInput`'s oneof, and no others.
pub trait PolicyKind: sealed::Sealed {
    /// The message the policy reads.
    type Input;
    /// The message the policy returns.
    type Output;
    /// The kind's name, as errors show it.
    const NAME: &'static str;

    /// The input of this kind, or the input back when it is of another kind.
    #[doc(hidden)]
    fn input(kind: pb::policy_input::Kind) -> Result<Self::Input, pb::policy_input::Kind>;

    /// The output wrapped in `PolicyOutput`'s oneof.
    #[doc(hidden)]
    fn output(output: Self::Output) -> pb::policy_output::Kind;
}

macro_rules! policy_kind {
    ($(#[$doc:meta])* $kind:ident, $name:literal, $input:ident, $output:ident) => {
        $(#[$doc])*
        pub enum $kind {}

        impl sealed::Sealed for $kind {}

        impl PolicyKind for $kind {
            type Input = pb::$input;
            type Output = pb::$output;
            const NAME: &'static str = $name;

            fn input(
                kind: pb::policy_input::Kind,
            ) -> Result<Self::Input, pb::policy_input::Kind> {
                match kind {
                    pb::policy_input::Kind::$kind(input) => Ok(input),
                    other => Err(other),
                }
            }

            fn output(output: Self::Output) -> pb::policy_output::Kind {
                pb::policy_output::Kind::$kind(output)
            }
        }
    };
}

policy_kind!(
    /// The sharding policy: [`pb::ShardingInput`] to [`pb::ShardingOutput`].
    Sharding,
    "sharding",
    ShardingInput,
    ShardingOutput
);
policy_kind!(
    /// The scoring policy: [`pb::ScoringInput`] to [`pb::ScoringOutput`].
    Scoring,
    "scoring",
    ScoringInput,
    ScoringOutput
);
policy_kind!(
    /// The reward policy: [`pb::RewardInput`] to [`pb::RewardOutput`].
    Reward,
    "reward",
    RewardInput,
    RewardOutput
);

fn input_kind_name(kind: &pb::policy_input::Kind) -> &'static str {
    match kind {
        pb::policy_input::Kind::Sharding(_) => Sharding::NAME,
        pb::policy_input::Kind::Scoring(_) => Scoring::NAME,
        pb::policy_input::Kind::Reward(_) => Reward::NAME,
    }
}

/// Why [`run_encoded`] could not run a policy. In a plugin each of these traps.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// The bytes are not an encoded `PolicyInput`.
    Decode(prost::DecodeError),
    /// The `PolicyInput` sets none of its oneof's kinds.
    MissingKind,
    /// The `PolicyInput` is of another kind than the plugin's.
    WrongKind {
        /// The plugin's kind.
        expected: &'static str,
        /// The input's kind.
        found: &'static str,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(error) => write!(formatter, "the input is not a PolicyInput: {error}"),
            Self::MissingKind => formatter.write_str("the PolicyInput names no policy kind"),
            Self::WrongKind { expected, found } => {
                write!(formatter, "a {found} input given to a {expected} policy")
            }
        }
    }
}

impl std::error::Error for PolicyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Decode(error) => Some(error),
            Self::MissingKind | Self::WrongKind { .. } => None,
        }
    }
}

/// Runs `policy` on an encoded `PolicyInput` of kind `K` and returns the encoded
/// `PolicyOutput`, of kind `K` too.
///
/// This is what `blyan_policy` does inside the module, so the native result is the
/// plugin's result, byte for byte. A panic in `policy` (an overflow, a broken
/// assertion) is not turned into an error: it unwinds natively and traps in Wasm.
pub fn run_encoded<K: PolicyKind>(
    input: &[u8],
    policy: impl FnOnce(&K::Input) -> K::Output,
) -> Result<Vec<u8>, PolicyError> {
    run_decoded::<K>(input, policy)
}

/// [`run_encoded`] on any buffer. Decoding from a [`prost::bytes::Bytes`] (in Wasm,
/// the input buffer itself, which outlives the call) makes its columns slices of it;
/// from a `&[u8]`, only they are copied.
pub(crate) fn run_decoded<K: PolicyKind>(
    input: impl prost::bytes::Buf,
    policy: impl FnOnce(&K::Input) -> K::Output,
) -> Result<Vec<u8>, PolicyError> {
    let input = pb::PolicyInput::decode(input).map_err(PolicyError::Decode)?;
    let kind = input.kind.ok_or(PolicyError::MissingKind)?;
    let input = K::input(kind).map_err(|other| PolicyError::WrongKind {
        expected: K::NAME,
        found: input_kind_name(&other),
    })?;
    let output = pb::PolicyOutput {
        kind: Some(K::output(policy(&input))),
    };
    Ok(output.encode_to_vec())
}

pub use blyan_schemas::column::{self, Fixed, Values, to_column};

/// The length of a node key in a `node_keys` column.
pub use blyan_schemas::v1::NODE_KEY_LEN as KEY_LEN;

/// The keys of a `node_keys` column, in order. Panics when the column's length is not
/// a multiple of [`KEY_LEN`].
pub fn node_keys(column: &[u8]) -> impl ExactSizeIterator<Item = &[u8; KEY_LEN]> {
    assert!(
        column.len().is_multiple_of(KEY_LEN),
        "node_keys: {} bytes is not a whole number of {KEY_LEN}-byte keys",
        column.len()
    );
    column
        .chunks_exact(KEY_LEN)
        .map(|key| key.try_into().expect("chunks of KEY_LEN bytes"))
}

/// The values of a numeric column of the input, in order: `T` is the column's type,
/// as `plugin.proto` names it (`u32`, `u64` or `i64`). Panics (traps) when the
/// column's length is not a whole number of values, which the host never sends.
pub fn values<T: Fixed>(column: &[u8]) -> Values<'_, T> {
    column::values(column).unwrap_or_else(|ragged| panic!("values: {ragged}"))
}

/// Each delta's measurements, in delta order: `input.measurements` cut by
/// `input.measurement_counts`. Panics when the counts don't add up to the
/// measurements.
pub fn delta_measurements(
    input: &pb::ScoringInput,
) -> impl ExactSizeIterator<Item = Values<'_, i64>> {
    let counts = values::<u32>(&input.measurement_counts);
    let total = counts
        .clone()
        .map(|count| count as usize)
        .try_fold(0usize, usize::checked_add);
    let measurements = values::<i64>(&input.measurements).len();
    assert_eq!(
        total,
        Some(measurements),
        "delta_measurements: the counts do not add up to the measurements"
    );
    // Every count is now at most `measurements`, so its byte length fits a usize.
    let mut rest: &[u8] = &input.measurements;
    counts.map(move |count| {
        let (measurements, after) = rest.split_at(count as usize * i64::WIDTH);
        rest = after;
        values(measurements)
    })
}

/// A reward output from one amount per node.
pub fn reward_output(amounts: impl ExactSizeIterator<Item = u128> + Clone) -> pb::RewardOutput {
    pb::RewardOutput {
        amounts_hi: to_column(amounts.clone().map(|amount| (amount >> 64) as u64)),
        amounts_lo: to_column(amounts.map(|amount| amount as u64)),
    }
}

/// The amounts of a reward output, one per node. Panics when its columns are ragged or
/// differ in length.
pub fn reward_amounts(output: &pb::RewardOutput) -> Vec<u128> {
    let (high, low) = (
        values::<u64>(&output.amounts_hi),
        values::<u64>(&output.amounts_lo),
    );
    assert_eq!(
        high.len(),
        low.len(),
        "reward_amounts: the columns differ in length"
    );
    high.zip(low)
        .map(|(hi, lo)| (u128::from(hi) << 64) | u128::from(lo))
        .collect()
}

/// The value of a [`pb::U128`]: `hi * 2^64 + lo`.
pub fn u128_from_pb(value: &pb::U128) -> u128 {
    (u128::from(value.hi) << 64) | u128::from(value.lo)
}

/// `value` as a [`pb::U128`].
pub fn u128_to_pb(value: u128) -> pb::U128 {
    pb::U128 {
        hi: (value >> 64) as u64,
        lo: value as u64,
    }
}

/// A `u64` divisor for many divisions of 128-bit numbers: each is a few 64-bit
/// multiplications by a precomputed reciprocal instead of a division (Möller and
/// Granlund, "Improved division by invariant integers", 2011, algorithm 4).
///
/// A 128-bit division is a slow software routine on every target, while a
/// 64 x 64 -> 128-bit multiply is one instruction (on wasm32, with the
/// `wide-arithmetic` feature; see [`mul_wide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Divisor {
    /// The divisor shifted left until its top bit is set.
    normalized: u64,
    shift: u32,
    /// `floor((2^128 - 1) / normalized) - 2^64`.
    reciprocal: u64,
}

impl Divisor {
    /// Panics when `divisor` is 0.
    pub fn new(divisor: u64) -> Divisor {
        assert!(divisor != 0, "Divisor: division by zero");
        let shift = divisor.leading_zeros();
        let normalized = divisor << shift;
        // normalized >= 2^63, so the quotient is below 2^65 and at least 2^64.
        let reciprocal = (u128::MAX / u128::from(normalized) - (1 << 64)) as u64;
        Divisor {
            normalized,
            shift,
            reciprocal,
        }
    }

    /// The divisor.
    pub fn get(self) -> u64 {
        self.normalized >> self.shift
    }

    /// `(high * 2^64 + low) / d` and its remainder, for `high < d` (so the quotient
    /// fits a `u64`). Panics otherwise.
    #[inline]
    pub fn div_rem_wide(self, high: u64, low: u64) -> (u64, u64) {
        assert!(high < self.get(), "Divisor: the quotient fits a u64");
        // Shift the dividend with the divisor; high < d keeps it within 128 bits.
        let (high, low) = if self.shift == 0 {
            (high, low)
        } else {
            (
                (high << self.shift) | (low >> (64 - self.shift)),
                low << self.shift,
            )
        };
        self.div_rem_normalized(high, low)
    }

    /// `(a * b / d, a * b % d)` for a share `a <= d` of `b`: the quotient is at most
    /// `b`. Panics when `a > d`.
    ///
    /// The normalising shift applies to `a` alone, which still fits a `u64` after
    /// it as `a <= d`, rather than to the 128-bit product: one 64-bit shift instead
    /// of a 128-bit one, and in a loop over many `b`s with one `a`, the shift of `a`
    /// and the check leave the loop.
    #[inline]
    pub fn mul_div_rem(self, a: u64, b: u64) -> (u64, u64) {
        assert!(
            a <= self.get(),
            "Divisor: a share {a} of more than the whole"
        );
        // a * 2^shift <= normalized, so the product is below normalized * 2^64.
        let (high, low) = mul_wide(a << self.shift, b);
        self.div_rem_normalized(high, low)
    }

    /// The division of a dividend already shifted with the divisor, for
    /// `high < normalized`; the remainder is shifted back.
    #[inline]
    fn div_rem_normalized(self, high: u64, low: u64) -> (u64, u64) {
        let estimate = (u128::from(self.reciprocal) * u128::from(high))
            .wrapping_add((u128::from(high) << 64) | u128::from(low));
        let mut quotient = ((estimate >> 64) as u64).wrapping_add(1);
        let mut remainder = low.wrapping_sub(quotient.wrapping_mul(self.normalized));
        if remainder > estimate as u64 {
            quotient = quotient.wrapping_sub(1);
            remainder = remainder.wrapping_add(self.normalized);
        }
        if remainder >= self.normalized {
            quotient += 1;
            remainder -= self.normalized;
        }
        (quotient, remainder >> self.shift)
    }
}

/// `a * b` exactly, as its (high, low) 64-bit halves.
///
/// On wasm32 this is one `i64.mul_wide_u` instruction when built with
/// `-C target-feature=+wide-arithmetic` (as the default plugins and `blyan plugin
/// build` are; the host enables the proposal), and a call into a software routine
/// otherwise.
#[inline]
pub fn mul_wide(a: u64, b: u64) -> (u64, u64) {
    let product = u128::from(a) * u128::from(b);
    ((product >> 64) as u64, product as u64)
}

/// `a * b`, or `None` when it overflows a `u128`: two [`mul_wide`]s rather than a
/// full 128 x 128-bit multiply.
#[inline]
pub fn checked_mul_u128_u64(a: u128, b: u64) -> Option<u128> {
    let (low_high, low_low) = mul_wide(a as u64, b);
    let (high_high, high_low) = mul_wide((a >> 64) as u64, b);
    if high_high != 0 {
        return None;
    }
    let high = high_low.checked_add(low_high)?;
    Some((u128::from(high) << 64) | u128::from(low_low))
}

/// Exports a sharding policy, a `fn(&pb::ShardingInput) -> pb::ShardingOutput`.
///
/// Generates `pub fn run(input: &[u8]) -> Result<Vec<u8>, PolicyError>` in the calling
/// module and, on `wasm32` only, the ABI's exports. Use it once per crate, at its root.
#[macro_export]
macro_rules! export_sharding {
    ($policy:path) => {
        $crate::__export_policy!($crate::Sharding, $policy);
    };
}

/// Exports a scoring policy, a `fn(&pb::ScoringInput) -> pb::ScoringOutput`.
///
/// Generates what [`export_sharding!`] generates.
#[macro_export]
macro_rules! export_scoring {
    ($policy:path) => {
        $crate::__export_policy!($crate::Scoring, $policy);
    };
}

/// Exports a reward policy, a `fn(&pb::RewardInput) -> pb::RewardOutput`.
///
/// Generates what [`export_sharding!`] generates.
#[macro_export]
macro_rules! export_reward {
    ($policy:path) => {
        $crate::__export_policy!($crate::Reward, $policy);
    };
}

/// The body of the `export_*!` macros. The exports exist only on `wasm32`, so several
/// plugins link into one native binary without clashing symbols; the raw-pointer code
/// they call lives in this crate's `abi` module.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_policy {
    ($kind:ty, $policy:path) => {
        /// Runs this plugin's policy natively on an encoded `PolicyInput`: the bytes
        /// the `.wasm` returns for the same input.
        pub fn run(
            input: &[u8],
        ) -> ::core::result::Result<::std::vec::Vec<u8>, $crate::PolicyError> {
            $crate::run_encoded::<$kind>(input, $policy)
        }

        #[cfg(target_arch = "wasm32")]
        #[global_allocator]
        static ALLOCATOR: $crate::abi::BumpAllocator = $crate::abi::BumpAllocator;

        /// The ABI version this plugin implements.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn blyan_abi_version() -> i32 {
            $crate::ABI_VERSION
        }

        /// A pointer to `len` writable bytes for the host's input; 0 if `len < 0`.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn blyan_alloc(len: i32) -> i32 {
            $crate::abi::alloc(len)
        }

        /// Runs the policy on the input at `[ptr, ptr + len)`; returns the output as
        /// `(out_ptr << 32) | out_len`, or traps.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn blyan_policy(ptr: i32, len: i32) -> i64 {
            $crate::abi::policy::<$kind>(ptr, len, $policy)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wide(a: u64, b: u64) -> (u64, u64) {
        let product = u128::from(a) * u128::from(b);
        ((product >> 64) as u64, product as u64)
    }

    fn divided(high: u64, low: u64, d: u64) -> (u64, u64) {
        let dividend = (u128::from(high) << 64) | u128::from(low);
        let d = u128::from(d);
        ((dividend / d) as u64, (dividend % d) as u64)
    }

    fn divided_product(a: u64, b: u64, d: u64) -> (u64, u64) {
        let (high, low) = wide(a, b);
        divided(high, low, d)
    }

    #[test]
    fn wide_arithmetic_is_exact_at_the_edges() {
        let edges = [
            0,
            1,
            2,
            3,
            (1 << 32) - 1,
            1 << 32,
            (1 << 32) + 1,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        for a in edges {
            for b in edges {
                assert_eq!(mul_wide(a, b), wide(a, b), "{a} * {b}");
                let Some(d) = (b != 0).then_some(b) else {
                    continue;
                };
                let divisor = Divisor::new(d);
                assert_eq!(divisor.get(), d);
                for high in [0, d / 2, d - 1] {
                    assert_eq!(
                        divisor.div_rem_wide(high, a),
                        divided(high, a, d),
                        "({high}, {a}) / {d}"
                    );
                }
                assert_eq!(divisor.mul_div_rem(d, a), (a, 0), "{d} * {a} / {d}");
                assert_eq!(divisor.mul_div_rem(1, a), (a / d, a % d), "{a} / {d}");
                assert_eq!(divisor.mul_div_rem(d - 1, a), divided_product(d - 1, a, d));
                assert_eq!(divisor.mul_div_rem(d / 2, a), divided_product(d / 2, a, d));
            }
        }
        assert_eq!(checked_mul_u128_u64(u128::MAX, 1), Some(u128::MAX));
        assert_eq!(checked_mul_u128_u64(u128::MAX, 2), None);
        assert_eq!(
            checked_mul_u128_u64(1 << 64, u64::MAX),
            Some(u128::from(u64::MAX) << 64)
        );
        assert_eq!(
            checked_mul_u128_u64((1 << 64) + u128::from(u64::MAX), u64::MAX),
            None
        );
    }

    #[test]
    #[should_panic(expected = "fits a u64")]
    fn a_quotient_past_a_u64_panics() {
        Divisor::new(10).div_rem_wide(10, 0);
    }

    #[test]
    #[should_panic(expected = "more than the whole")]
    fn a_share_above_the_whole_panics() {
        Divisor::new(10).mul_div_rem(11, 1);
    }

    proptest::proptest! {
        #[test]
        fn wide_arithmetic_matches_u128(
            a: u64,
            b: u64,
            d in 1u64..,
            fraction: u64,
            wide_a: u128,
        ) {
            proptest::prop_assert_eq!(mul_wide(a, b), wide(a, b));
            // Any high < d: a fraction of d, for this d and a smaller one (where the
            // normalising shift is larger).
            for d in [d, d >> (d % 64)] {
                if d == 0 {
                    continue;
                }
                let high = ((u128::from(fraction) * u128::from(d)) >> 64) as u64;
                proptest::prop_assert_eq!(
                    Divisor::new(d).div_rem_wide(high, a),
                    divided(high, a, d)
                );
            }
            // This d and a smaller one (where the normalising shift is larger).
            for d in [d, d >> (d % 64)] {
                if d == 0 {
                    continue;
                }
                for share in [a, a % d, d] {
                    if share <= d {
                        proptest::prop_assert_eq!(
                            Divisor::new(d).mul_div_rem(share, b),
                            divided_product(share, b, d)
                        );
                    }
                }
            }
            proptest::prop_assert_eq!(
                checked_mul_u128_u64(wide_a, b),
                wide_a.checked_mul(u128::from(b))
            );
        }
    }

    fn scoring_input() -> pb::ScoringInput {
        pb::ScoringInput {
            round: 3,
            quorum: 1,
            max_score: 10,
            measurement_counts: to_column([2u32]).into(),
            measurements: to_column([4i64, -2]).into(),
        }
    }

    fn count_measurements(input: &pb::ScoringInput) -> pb::ScoringOutput {
        pb::ScoringOutput {
            scores: to_column(
                delta_measurements(input).map(|measurements| measurements.len() as u64),
            ),
        }
    }

    #[test]
    fn columns_are_cut_into_keys_deltas_and_amounts() {
        let keys: Vec<u8> = (0..64).collect();
        let cut: Vec<&[u8; KEY_LEN]> = node_keys(&keys).collect();
        assert_eq!(cut.len(), 2);
        assert_eq!(cut[1][0], 32);
        assert!(std::panic::catch_unwind(|| node_keys(&keys[..40]).count()).is_err());

        let input = pb::ScoringInput {
            measurement_counts: to_column([2u32, 0, 3]).into(),
            measurements: to_column([1i64, 2, 3, 4, -5]).into(),
            ..Default::default()
        };
        let deltas: Vec<Vec<i64>> = delta_measurements(&input).map(Iterator::collect).collect();
        assert_eq!(deltas, [vec![1, 2], vec![], vec![3, 4, -5]]);
        let short = pb::ScoringInput {
            measurement_counts: to_column([2u32, 4]).into(),
            ..input.clone()
        };
        assert!(std::panic::catch_unwind(|| delta_measurements(&short).count()).is_err());
        let ragged = pb::ScoringInput {
            measurements: input.measurements.slice(..39),
            ..input.clone()
        };
        assert!(std::panic::catch_unwind(|| delta_measurements(&ragged).count()).is_err());

        let amounts = [0, 7, u128::MAX, 1 << 64];
        let output = reward_output(amounts.into_iter());
        assert_eq!(output.amounts_hi, to_column([0u64, 0, u64::MAX, 1]));
        assert_eq!(output.amounts_lo, to_column([0u64, 7, u64::MAX, 0]));
        assert_eq!(reward_amounts(&output), amounts);
        let mut short = output.clone();
        short.amounts_hi.truncate(24);
        assert!(std::panic::catch_unwind(|| reward_amounts(&short)).is_err());
        let mut ragged = output.clone();
        ragged.amounts_lo.truncate(31);
        assert!(std::panic::catch_unwind(|| reward_amounts(&ragged)).is_err());
    }

    #[test]
    fn run_encoded_passes_the_decoded_input_and_wraps_the_output() {
        let input = pb::PolicyInput {
            kind: Some(pb::policy_input::Kind::Scoring(scoring_input())),
        };
        let seen = std::cell::RefCell::new(None);
        let encoded = run_encoded::<Scoring>(&input.encode_to_vec(), |input| {
            *seen.borrow_mut() = Some(input.clone());
            count_measurements(input)
        })
        .unwrap();
        assert_eq!(seen.into_inner(), Some(scoring_input()));
        let expected = pb::PolicyOutput {
            kind: Some(pb::policy_output::Kind::Scoring(pb::ScoringOutput {
                scores: to_column([2u64]),
            })),
        };
        assert_eq!(encoded, expected.encode_to_vec());
    }

    #[test]
    fn run_encoded_rejects_another_kind() {
        let input = pb::PolicyInput {
            kind: Some(pb::policy_input::Kind::Reward(pb::RewardInput::default())),
        };
        let error = run_encoded::<Scoring>(&input.encode_to_vec(), count_measurements).unwrap_err();
        assert_eq!(
            error,
            PolicyError::WrongKind {
                expected: "scoring",
                found: "reward"
            }
        );
        assert_eq!(
            error.to_string(),
            "a reward input given to a scoring policy"
        );
    }

    #[test]
    fn run_encoded_rejects_an_empty_oneof_and_garbage() {
        assert_eq!(
            run_encoded::<Scoring>(&[], count_measurements),
            Err(PolicyError::MissingKind)
        );
        // Field 2 as a length-delimited value running past the end.
        let error = run_encoded::<Scoring>(&[0x12, 0x05, 0x00], count_measurements).unwrap_err();
        assert!(matches!(error, PolicyError::Decode(_)), "{error:?}");
    }

    #[test]
    fn u128_round_trips_through_hi_and_lo() {
        for value in [
            0,
            1,
            u128::from(u64::MAX),
            1 << 64,
            u128::MAX,
            0x1234 << 70 | 99,
        ] {
            let wire = u128_to_pb(value);
            assert_eq!(u128_from_pb(&wire), value);
        }
        assert_eq!(u128_to_pb((7 << 64) | 9), pb::U128 { hi: 7, lo: 9 });
    }
}
