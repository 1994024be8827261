//! `blyan replay --rerun-plugins`: every policy call of the log, run again.
//!
//! An audit replay decides each logged `PolicyResult` again, which checks that its
//! output fits the input rebuilt from the state and that its failures follow the
//! round's fallback chain. It can't tell whether the plugin really gave that output:
//! any output the checks accept would pass. A re-run closes that gap. For each logged
//! call it rebuilds the input from the state at that seq, runs every module the call
//! names (with the bytes the log holds) under the ledger's limits, and requires:
//!
//! - each module logged as failing fails again, with the same limit or check;
//! - the module logged as answering answers again, with the same bytes.
//!
//! Fuel, not the clock, ends a call on any machine, so both hold on any machine. The
//! one exception is the wall-clock backstop: a module the log says hit the deadline
//! may answer on a quieter machine. That is reported as a wall-clock fallback, not as
//! a mismatch.

use std::sync::Arc;

use blyan_plugin_host::{Host, Limits, PluginError, pb};
use blyan_sdk::core::State;
use blyan_sdk::model::{Hash, PluginKind, PolicyResult, limits};
use prost::Message as _;

/// The code of the wall-clock backstop in `PluginFailure` and fallback events.
const DEADLINE: &str = "plugin_deadline";

/// The host with the ledger's limits, as the server runs it: modules as large as the
/// ledger stores.
pub fn ledger_host() -> Host {
    Host::new(ledger_limits())
}

fn ledger_limits() -> Limits {
    Limits {
        module_bytes_max: limits::PLUGIN_BYTES_MAX,
        ..Limits::default()
    }
}

/// The ledger's host for a re-run: the same fuel and memory, with the wall-clock
/// backstop lifted, so that an auditor's slower machine can't turn a call the fuel
/// ended, or one that answered, into a mismatch.
pub fn rerun_host() -> Host {
    Host::new(Limits {
        deadline: std::time::Duration::from_secs(24 * 3_600),
        ..ledger_limits()
    })
}

/// Why a logged policy call did not come out again.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    #[error("the state awaits no {kind} call of round {round} here")]
    NotAwaited { round: u64, kind: PluginKind },
    #[error("module {} is not in the log", hex::encode(.0))]
    ModuleMissing(Hash),
    #[error(
        "module {} failed with {logged} in the log, but {} now: {}",
        hex::encode(.hash), .now.as_ref().map_or("answered", |error| error.code()),
        .now.as_ref().map_or_else(|| "a checked output".to_string(), ToString::to_string)
    )]
    Failure {
        hash: Hash,
        logged: String,
        now: Option<PluginError>,
    },
    #[error("module {} answered in the log, but fails now with {}: {now}", hex::encode(.hash), .now.code())]
    Answer { hash: Hash, now: PluginError },
    #[error(
        "module {} gives another output now: {now_bytes} bytes (blake3 {now_hash}) against the log's {logged_bytes} (blake3 {logged_hash})",
        hex::encode(.hash)
    )]
    Output {
        hash: Hash,
        logged_bytes: usize,
        logged_hash: String,
        now_bytes: usize,
        now_hash: String,
    },
}

/// What one logged call's re-run showed, when it agreed with the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rerun {
    /// Modules run again: the failures and the answer.
    pub modules: u64,
    /// Failures the log ascribes to the wall clock, which no re-run can check.
    pub wall_clock_fallbacks: u64,
    /// Of those, the modules that answer now, within their fuel: a busy server, or
    /// one that picked which plugin answers. The report shows them.
    pub wall_clock_answering_now: u64,
}

/// The input `result` answered, rebuilt from `before`: the state just before the
/// record that carries it.
pub fn input_of(before: &State, result: &PolicyResult) -> Result<pb::PolicyInput, Mismatch> {
    match before.policy_input(result.round) {
        Some((kind, input)) if kind == result.kind => Ok(input),
        _ => Err(Mismatch::NotAwaited {
            round: result.round,
            kind: result.kind,
        }),
    }
}

/// Runs every module `result` names on `input` again, with the bytes `stored` finds
/// for each hash (the log's modules) or the module `result` stores itself.
pub fn rerun(
    host: &Host,
    stored: impl Fn(&Hash) -> Option<Arc<[u8]>>,
    input: &pb::PolicyInput,
    result: &PolicyResult,
) -> Result<Rerun, Mismatch> {
    let module = |hash: &Hash| {
        stored(hash)
            .or_else(|| {
                result
                    .unstored_module
                    .as_ref()
                    .filter(|module| module.hash == *hash)
                    .map(|module| module.wasm.clone())
            })
            .ok_or(Mismatch::ModuleMissing(*hash))
    };
    let run = |wasm: &[u8]| {
        host.compile(wasm)
            .and_then(|compiled| host.run(&compiled, input))
    };
    let mut rerun = Rerun::default();
    for failure in &result.failures {
        let now = run(&module(&failure.hash)?).err();
        rerun.modules += 1;
        if failure.reason_code == DEADLINE {
            rerun.wall_clock_fallbacks += 1;
            rerun.wall_clock_answering_now += u64::from(now.is_none());
        } else if now.as_ref().map(PluginError::code) != Some(failure.reason_code.as_str()) {
            return Err(Mismatch::Failure {
                hash: failure.hash,
                logged: failure.reason_code.clone(),
                now,
            });
        }
    }
    let hash = result.module_hash;
    let output = run(&module(&hash)?)
        .map_err(|now| Mismatch::Answer { hash, now })?
        .output
        .encode_to_vec();
    rerun.modules += 1;
    if output != result.output {
        return Err(Mismatch::Output {
            hash,
            logged_bytes: result.output.len(),
            logged_hash: blake3::hash(&result.output).to_hex().to_string(),
            now_bytes: output.len(),
            now_hash: blake3::hash(&output).to_hex().to_string(),
        });
    }
    Ok(rerun)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use blyan_plugin_host::{defaults, module_hash, reference};
    use blyan_sdk::model::{PluginModule, PolicyFailure};

    use super::*;

    const KIND: PluginKind = PluginKind::Sharding;

    /// The embedded default sharding plugin, and a module that is not WebAssembly.
    fn modules() -> HashMap<Hash, Arc<[u8]>> {
        [defaults::wasm(KIND), b"\0asm, but not a module"]
            .into_iter()
            .map(|wasm| (module_hash(wasm), Arc::from(wasm)))
            .collect()
    }

    fn broken() -> Hash {
        module_hash(b"\0asm, but not a module")
    }

    /// What the default answers on the reference input, as the server logs it.
    fn logged() -> PolicyResult {
        let host = ledger_host();
        let compiled = host.compile(defaults::wasm(KIND)).unwrap();
        let output = host.run(&compiled, &reference::input(KIND)).unwrap().output;
        PolicyResult {
            round: 1,
            kind: KIND,
            module_hash: module_hash(defaults::wasm(KIND)),
            output: output.encode_to_vec(),
            failures: Vec::new(),
            unstored_module: None,
        }
    }

    fn failure(hash: Hash, code: &str) -> PolicyFailure {
        PolicyFailure {
            hash,
            reason_code: code.into(),
            reason: "as logged".into(),
        }
    }

    fn check(result: &PolicyResult) -> Result<Rerun, Mismatch> {
        let modules = modules();
        rerun(
            &ledger_host(),
            |hash| modules.get(hash).cloned(),
            &reference::input(KIND),
            result,
        )
    }

    #[test]
    fn a_call_that_comes_out_again_agrees() {
        let rerun = check(&logged()).unwrap();
        assert_eq!(
            rerun,
            Rerun {
                modules: 1,
                wall_clock_fallbacks: 0,
                wall_clock_answering_now: 0,
            }
        );

        let mut with_failure = logged();
        with_failure.failures = vec![failure(broken(), "plugin_malformed")];
        assert_eq!(check(&with_failure).unwrap().modules, 2);
    }

    #[test]
    fn another_output_is_a_mismatch_even_one_the_checks_would_accept() {
        let mut result = logged();
        let last = result.output.len() - 1;
        result.output[last] ^= 1;
        assert!(
            matches!(check(&result), Err(Mismatch::Output { .. })),
            "{:?}",
            check(&result)
        );
        result.output.clear();
        assert!(matches!(check(&result), Err(Mismatch::Output { .. })));
    }

    #[test]
    fn a_failure_must_fail_again_with_the_same_code() {
        let mut result = logged();
        result.failures = vec![failure(broken(), "plugin_trap")];
        let error = check(&result).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("plugin_trap in the log, but plugin_malformed now"),
            "{error}"
        );

        // A module that answers can't have failed on fuel or a trap.
        result.failures = vec![failure(
            module_hash(defaults::wasm(KIND)),
            "plugin_out_of_fuel",
        )];
        let error = check(&result).unwrap_err();
        assert!(
            matches!(&error, Mismatch::Failure { now: None, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("but answered now"), "{error}");

        // The answer must answer.
        let mut result = logged();
        result.module_hash = broken();
        assert!(matches!(check(&result), Err(Mismatch::Answer { .. })));
    }

    #[test]
    fn a_logged_deadline_is_reported_as_a_wall_clock_fallback() {
        let mut result = logged();
        result.failures = vec![
            failure(broken(), "plugin_malformed"),
            failure(module_hash(defaults::wasm(KIND)), "plugin_deadline"),
        ];
        assert_eq!(
            check(&result).unwrap(),
            Rerun {
                modules: 3,
                wall_clock_fallbacks: 1,
                wall_clock_answering_now: 1,
            }
        );
    }

    #[test]
    fn modules_come_from_the_log_or_from_the_call_itself() {
        let unknown = module_hash(b"never logged");
        let mut result = logged();
        result.failures = vec![failure(unknown, "plugin_trap")];
        assert!(matches!(check(&result), Err(Mismatch::ModuleMissing(hash)) if hash == unknown));

        // A default newer than the genesis answers with its own bytes in the call:
        // here the default with a custom section (id 0, 4 bytes, the name "pad").
        let padded: Vec<u8> = [defaults::wasm(KIND), &[0, 4, 3, b'p', b'a', b'd']].concat();
        let mut result = logged();
        result.module_hash = module_hash(&padded);
        assert!(matches!(check(&result), Err(Mismatch::ModuleMissing(_))));
        result.unstored_module = Some(PluginModule::new(KIND, padded));
        assert_eq!(check(&result).unwrap().modules, 1);
    }
}
