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
//! use blyan_plugin_pdk::pb;
//!
//! /// Gives every delta the highest score, quorum or not.
//! pub fn score(input: &pb::ScoringInput) -> pb::ScoringOutput {
//!     pb::ScoringOutput {
//!         scores: input.deltas.iter().map(|_| input.max_score).collect(),
//!     }
//! }
//!
//! blyan_plugin_pdk::export_scoring!(score);
//! # fn main() {
//! #     use prost::Message;
//! #     let input = pb::PolicyInput {
//! #         kind: Some(pb::policy_input::Kind::Scoring(pb::ScoringInput {
//! #             max_score: 7,
//! #             deltas: vec![pb::DeltaMeasurements::default(); 2],
//! #             ..Default::default()
//! #         })),
//! #     };
//! #     let output = pb::PolicyOutput::decode(&run(&input.encode_to_vec()).unwrap()[..]).unwrap();
//! #     let Some(pb::policy_output::Kind::Scoring(scoring)) = output.kind else { panic!() };
//! #     assert_eq!(scoring.scores, [7, 7]);
//! # }
//! ```
//!
//! The macro adds `pub fn run(input: &[u8]) -> Result<Vec<u8>, PolicyError>`, the
//! policy on encoded bytes natively (the `.wasm` must return the same bytes), and, on
//! `wasm32` only, the three exports above. `cargo build --target
//! wasm32-unknown-unknown --profile plugin` then builds the plugin.

use std::fmt;

use prost::Message;

/// The messages of the ABI, generated from `schemas/proto/blyan/v1/plugin.proto`.
pub use blyan_schemas::v1 as pb;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod abi;

/// The ABI version this crate implements, returned by `blyan_abi_version`.
pub const ABI_VERSION: i32 = 1;

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

/// `(a * b / d, a * b % d)` for a quotient known to fit a `u64` (`a * b < d * 2^64`).
///
/// Exact for every such input. When the product fits a `u64` it divides in 64 bits:
/// on wasm32 a 128-bit division is a slow software routine, while a 64-bit one is a
/// single instruction, natively as in Wasm. Panics when `d` is 0 or the quotient does
/// not fit.
pub fn mul_div_rem(a: u64, b: u64, d: u64) -> (u64, u64) {
    match a.checked_mul(b) {
        Some(product) => (product / d, product % d),
        None => {
            let product = u128::from(a) * u128::from(b);
            let d = u128::from(d);
            let quotient =
                u64::try_from(product / d).expect("mul_div_rem: the quotient fits a u64");
            (quotient, (product % d) as u64)
        }
    }
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

    #[test]
    fn mul_div_rem_is_exact_on_both_paths() {
        let cases = [
            (0, 5, 3),
            (7, 9, 4),
            (u64::MAX, 1, 1),
            (u64::MAX, u64::MAX - 1, u64::MAX),
            (1 << 40, 1 << 40, (1 << 30) + 7),
            (123_456_789_012, 987_654_321, 4_500_000_000_000),
        ];
        for (a, b, d) in cases {
            let product = u128::from(a) * u128::from(b);
            let expected = (
                (product / u128::from(d)) as u64,
                (product % u128::from(d)) as u64,
            );
            assert_eq!(mul_div_rem(a, b, d), expected, "{a} * {b} / {d}");
        }
    }

    fn scoring_input() -> pb::ScoringInput {
        pb::ScoringInput {
            round: 3,
            quorum: 1,
            max_score: 10,
            deltas: vec![pb::DeltaMeasurements {
                delta_id: vec![1, 2],
                measurements: vec![4, -2],
            }],
        }
    }

    fn count_measurements(input: &pb::ScoringInput) -> pb::ScoringOutput {
        pb::ScoringOutput {
            scores: input
                .deltas
                .iter()
                .map(|delta| delta.measurements.len() as u64)
                .collect(),
        }
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
                scores: vec![2],
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
