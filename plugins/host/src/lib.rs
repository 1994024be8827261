//! The sandbox that runs Blyan policy plugins.
//!
//! Who uses it: the server (conformance checks at proposal time, and the policies of a
//! round with their fallbacks), the `blyan plugin test` command, and the differential
//! tests and benchmarks of the default plugins.
//!
//! What it promises: a plugin is untrusted code, so nothing it does can stop the
//! caller, lose funds, or make two hosts disagree.
//!
//! - [`sandbox`]: one deterministic wasmtime engine; fuel, memory and wall-clock limits
//!   per call; a fresh store per call; compiled modules cached by blake3 hash (the
//!   most recently used, up to `Limits::cached_modules_max`); modules with imports
//!   refused.
//! - [`check`] (from `blyan-schemas`, so that the ledger's core runs the same checks
//!   again): the host-side checks every output must pass before anything uses it.
//! - [`run_with_fallback`]: runs the plugins of one kind from newest to oldest until
//!   one gives a checked output, recording why each failure failed.
//! - [`defaults`]: the default plugins, built for wasm32 by this crate's build script
//!   and embedded here.
//!
//! The ABI (version [`ABI_VERSION`]) is documented in plugins/README.md.

pub use blyan_schemas::check;
pub mod defaults;
pub mod reference;
pub mod sandbox;
pub mod shape;

include!("codegen.rs");

pub use blyan_schemas::PluginKind;
pub use blyan_schemas::column;
pub use blyan_schemas::v1 as pb;
pub use sandbox::{Compiled, Conformance, Host, Limits, PluginError, RunOutcome};

/// The plugin ABI version this host speaks; a plugin's `blyan_abi_version` must return
/// it.
pub use blyan_schemas::v1::ABI_VERSION;

/// The blake3 hash that names a plugin module everywhere: in the log, in the cache
/// and in the API.
pub fn module_hash(wasm: &[u8]) -> [u8; 32] {
    *blake3::hash(wasm).as_bytes()
}

/// Why one candidate of a fallback chain was passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub hash: [u8; 32],
    pub error: PluginError,
}

/// What [`run_with_fallback`] produced.
#[derive(Debug)]
pub struct FallbackRun {
    /// The checked output, from the first candidate that gave one.
    pub output: pb::PolicyOutput,
    /// Which candidate gave it.
    pub used: [u8; 32],
    /// The candidates before it, each with its failure. Empty when the first
    /// candidate (the one pinned by the round) succeeded.
    pub failures: Vec<Failure>,
}

/// Runs `input` through `candidates` in order (the pinned plugin, the one active before
/// it, ..., and last the embedded default) and returns the first checked output.
///
/// A trap, fuel exhaustion, a memory overrun, a deadline or an output that fails
/// [`check`] only moves on to the next candidate. The caller records every failure as
/// an event. `None` means every candidate failed, the default included, which the
/// default plugins' own tests rule out for any input [`check::input`] accepts.
pub fn run_with_fallback(
    host: &Host,
    candidates: &[&[u8]],
    input: &pb::PolicyInput,
) -> Result<FallbackRun, Vec<Failure>> {
    let mut failures = Vec::new();
    for wasm in candidates {
        let outcome = host
            .compile(wasm)
            .and_then(|compiled| host.run(&compiled, input));
        match outcome {
            Ok(outcome) => {
                return Ok(FallbackRun {
                    output: outcome.output,
                    used: module_hash(wasm),
                    failures,
                });
            }
            Err(error) => failures.push(Failure {
                hash: module_hash(wasm),
                error,
            }),
        }
    }
    Err(failures)
}
