//! Hostile plugins: each is refused at proposal time (the conformance check) and
//! contained at run time (the call fails with its reason, the fallback chain moves on,
//! and the host keeps working).

mod hostile;

use std::time::{Duration, Instant};

use blyan_plugin_host::{
    Host, Limits, PluginError, PluginKind, check, defaults, module_hash, reference,
    run_with_fallback,
};

fn wasm(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("the test module is valid text")
}

fn host() -> Host {
    Host::new(Limits::default())
}

fn refused(kind: PluginKind, module: &[u8]) -> PluginError {
    host()
        .conformance(kind, module)
        .expect_err("the conformance check refuses it")
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let error = refused(PluginKind::Sharding, &wasm(&hostile::infinite_loop()));
    assert_eq!(
        error,
        PluginError::OutOfFuel(Limits::default().conformance_fuel)
    );
    assert_eq!(error.code(), "plugin_out_of_fuel");
}

/// Fuel, not the wall clock, ends a call that uses its whole budget: a loop that burns
/// all of the default `fuel_per_call` runs out of fuel long before the deadline, so a
/// re-run on a quieter or busier machine ends the same way. (4-7 s here, against a
/// 120 s deadline; the time printed is the measurement BENCHMARKS.md records.)
#[test]
fn a_call_that_uses_all_its_fuel_ends_on_fuel_not_on_the_deadline() {
    let host = host();
    let compiled = host.compile(&wasm(&hostile::infinite_loop())).unwrap();
    let started = Instant::now();
    let error = host
        .run(&compiled, &reference::input(PluginKind::Scoring))
        .unwrap_err();
    let elapsed = started.elapsed();
    eprintln!(
        "{} fuel ran out in {elapsed:?}; the deadline is {:?}",
        Limits::default().fuel_per_call,
        Limits::default().deadline
    );
    assert_eq!(
        error,
        PluginError::OutOfFuel(Limits::default().fuel_per_call)
    );
}

#[test]
fn the_epoch_deadline_stops_a_loop_that_fuel_would_let_run() {
    let host = Host::new(Limits {
        fuel_per_call: u64::MAX,
        deadline: Duration::from_millis(200),
        ..Limits::default()
    });
    let compiled = host.compile(&wasm(&hostile::infinite_loop())).unwrap();
    let started = Instant::now();
    let error = host
        .run(&compiled, &reference::input(PluginKind::Scoring))
        .unwrap_err();
    assert_eq!(error, PluginError::Deadline(200));
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "stopped after {elapsed:?}"
    );
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    let error = refused(PluginKind::Reward, &wasm(&hostile::memory_bomb()));
    assert_eq!(
        error,
        PluginError::Memory(Limits::default().memory_bytes_max)
    );
    let at_start = refused(PluginKind::Reward, &wasm(&hostile::memory_bomb_at_start()));
    assert_eq!(at_start.code(), "plugin_memory", "{at_start}");
}

#[test]
fn a_trap_is_reported_as_one() {
    let error = refused(PluginKind::Scoring, &wasm(&hostile::trap()));
    assert_eq!(error.code(), "plugin_trap");
    assert!(error.to_string().contains("unreachable"), "{error}");
}

#[test]
fn a_huge_or_stray_output_is_refused() {
    let huge = refused(PluginKind::Scoring, &wasm(&hostile::huge_output()));
    assert_eq!(huge.code(), "plugin_output");
    assert!(huge.to_string().contains("4294967295 bytes"), "{huge}");
    let stray = refused(
        PluginKind::Scoring,
        &wasm(&hostile::output_outside_memory()),
    );
    assert!(stray.to_string().contains("outside"), "{stray}");
}

#[test]
fn an_output_that_breaks_an_invariant_is_refused() {
    let error = refused(PluginKind::Reward, &wasm(&hostile::invariant_breaker()));
    assert_eq!(
        error,
        PluginError::Invariant("0 amounts for 4 nodes".into()),
        "{error}"
    );
    // The same module answering a sharding input gives the wrong kind.
    let error = refused(PluginKind::Sharding, &wasm(&hostile::invariant_breaker()));
    assert!(error.to_string().contains("another policy kind"), "{error}");
}

#[test]
fn any_import_is_refused() {
    let error = refused(PluginKind::Sharding, &wasm(&hostile::wasi_import()));
    assert_eq!(
        error,
        PluginError::Import("wasi_snapshot_preview1::fd_write".into())
    );
}

#[test]
fn malformed_bytes_are_refused() {
    let error = refused(PluginKind::Sharding, &hostile::malformed());
    assert_eq!(error.code(), "plugin_malformed");
    assert_eq!(
        refused(PluginKind::Sharding, b"").code(),
        "plugin_malformed"
    );
}

#[test]
fn relaxed_simd_is_refused_and_wide_arithmetic_is_allowed() {
    // The ABI version computed as the high half of 2^32 * 2^32, by i64.mul_wide_u.
    let wide = hostile::with_policy(1, "(i64.const 0)", "").replace(
        "(result i32) (i32.const 1)",
        "(result i32) (i64.mul_wide_u (i64.const 0x100000000) (i64.const 0x100000000)) \
         (i32.wrap_i64) (local.set 0) (drop) (local.get 0)",
    );
    let wide = wide.replace(
        "(func (export \"blyan_abi_version\") (result i32)",
        "(func (export \"blyan_abi_version\") (result i32) (local i32)",
    );
    // Compiling checks the ABI version, which this module computes with the
    // instruction.
    host()
        .compile(&wasm(&wide))
        .expect("wide arithmetic compiles and computes version 1");

    let relaxed = hostile::with_policy(
        1,
        "(drop (i32x4.relaxed_trunc_f32x4_s (v128.const i32x4 0 0 0 0))) (i64.const 0)",
        "",
    );
    let error = refused(PluginKind::Scoring, &wasm(&relaxed));
    assert_eq!(error.code(), "plugin_malformed", "{error}");
}

#[test]
fn an_oversized_module_is_refused_before_it_is_compiled() {
    let max = Limits::default().module_bytes_max;
    let module = hostile::padded_to(wasm(&hostile::trap()), max + 1);
    let error = refused(PluginKind::Sharding, &module);
    assert_eq!(error, PluginError::TooLarge { size: max + 1, max });
    // One byte less is compiled (and then fails for what it does, not its size).
    let module = hostile::padded_to(wasm(&hostile::trap()), max);
    assert_eq!(refused(PluginKind::Sharding, &module).code(), "plugin_trap");
}

#[test]
fn a_wrong_abi_version_or_a_missing_export_is_refused() {
    let error = refused(PluginKind::Scoring, &wasm(&hostile::wrong_abi_version()));
    assert_eq!(
        error,
        PluginError::AbiVersion {
            found: 2,
            expected: 1
        }
    );
    let error = refused(PluginKind::Scoring, &wasm(&hostile::missing_export()));
    assert_eq!(error.code(), "plugin_exports");
    assert!(error.to_string().contains("blyan_alloc"), "{error}");
}

#[test]
fn the_default_plugins_pass_the_conformance_check() {
    let host = host();
    for kind in PluginKind::ALL {
        let conformance = host.conformance(kind, defaults::wasm(kind)).unwrap();
        assert_eq!(conformance.hash, module_hash(defaults::wasm(kind)));
        assert!(conformance.fuel_used > 0);
    }
}

#[test]
fn at_run_time_every_failure_falls_back_to_the_next_plugin_and_the_host_keeps_working() {
    // A smaller fuel budget keeps the infinite loop short.
    let host = Host::new(Limits {
        fuel_per_call: 50_000_000,
        ..Limits::default()
    });
    let hostile = [
        ("plugin_out_of_fuel", wasm(&hostile::infinite_loop())),
        ("plugin_memory", wasm(&hostile::memory_bomb())),
        ("plugin_trap", wasm(&hostile::trap())),
        ("plugin_output", wasm(&hostile::huge_output())),
        ("plugin_invariant", wasm(&hostile::invariant_breaker())),
        ("plugin_imports", wasm(&hostile::wasi_import())),
        ("plugin_malformed", hostile::malformed()),
        ("plugin_abi_version", wasm(&hostile::wrong_abi_version())),
    ];
    for kind in PluginKind::ALL {
        let input = reference::input(kind);
        let mut chain: Vec<&[u8]> = hostile.iter().map(|(_, module)| &module[..]).collect();
        chain.push(defaults::wasm(kind));
        let run = run_with_fallback(&host, &chain, &input).expect("the default answers");
        assert_eq!(run.used, module_hash(defaults::wasm(kind)));
        assert_eq!(check::output(&input, &run.output), Ok(()));
        let codes: Vec<&str> = run.failures.iter().map(|f| f.error.code()).collect();
        let expected: Vec<&str> = hostile.iter().map(|(code, _)| *code).collect();
        assert_eq!(codes, expected, "{kind}");
        for (failure, (_, module)) in run.failures.iter().zip(&hostile) {
            assert_eq!(failure.hash, module_hash(module));
        }
    }
    // Nothing leaked into later calls: the defaults still answer directly.
    let compiled = host.compile(defaults::wasm(PluginKind::Reward)).unwrap();
    host.run(&compiled, &reference::input(PluginKind::Reward))
        .unwrap();
}

#[test]
fn a_chain_where_everything_fails_reports_every_failure() {
    let host = host();
    let trap = wasm(&hostile::trap());
    let failures = run_with_fallback(
        &host,
        &[&trap, &hostile::malformed()],
        &reference::input(PluginKind::Scoring),
    )
    .unwrap_err();
    let codes: Vec<&str> = failures.iter().map(|f| f.error.code()).collect();
    assert_eq!(codes, ["plugin_trap", "plugin_malformed"]);
}

/// Counts its calls in a global and in a memory cell, and returns both counts.
const COUNTER: &str = r#"(module
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (func (export "blyan_abi_version") (result i32) (i32.const 1))
  (func (export "blyan_alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "blyan_policy") (param i32 i32) (result i64)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store8 (i32.const 0) (global.get $calls))
    (i32.store8 (i32.const 1) (i32.add (i32.load8_u (i32.const 1)) (i32.const 1)))
    ;; The output is the two bytes at address 0.
    (i64.const 2)))"#;

#[test]
fn every_call_starts_from_a_fresh_instance() {
    let host = host();
    let compiled = host.compile(&wasm(COUNTER)).unwrap();
    let input = [0u8; 16];
    for call in 0..3 {
        let (output, _) = host
            .call_encoded(&compiled, &input, Limits::default().fuel_per_call)
            .unwrap();
        assert_eq!(
            output,
            [1, 1],
            "call {call} saw an earlier call's global or memory"
        );
    }
}

#[test]
fn a_module_compiles_once_per_hash() {
    let host = host();
    let first = host.compile(defaults::wasm(PluginKind::Scoring)).unwrap();
    let again = host.compile(defaults::wasm(PluginKind::Scoring)).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    assert_eq!(
        first.hash(),
        module_hash(defaults::wasm(PluginKind::Scoring))
    );
    let other = host.compile(defaults::wasm(PluginKind::Reward)).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &other));

    // A module that fails the conformance check is not kept.
    let trap = wasm(&hostile::trap());
    let before = host.compile(&trap).unwrap();
    host.conformance(PluginKind::Reward, &trap).unwrap_err();
    let after = host.compile(&trap).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&before, &after));
}

#[test]
fn every_nan_comes_out_canonical() {
    // 0/0 (x86's default NaN has the sign bit set) and a NaN with a sign and a
    // payload through an addition; the output is the bits of both.
    let module = hostile::with_policy(
        1,
        "(i32.store (i32.const 0) \
           (i32.reinterpret_f32 (f32.div (f32.const 0) (f32.const 0)))) \
         (i64.store (i32.const 4) \
           (i64.reinterpret_f64 (f64.add (f64.const -nan:0x4) (f64.const 1)))) \
         (i64.const 12)",
        "",
    );
    let host = host();
    let compiled = host.compile(&wasm(&module)).unwrap();
    let (output, _) = host
        .call_encoded(&compiled, &[0; 4], Limits::default().fuel_per_call)
        .unwrap();
    assert_eq!(output[..4], 0x7fc0_0000u32.to_le_bytes());
    assert_eq!(output[4..], 0x7ff8_0000_0000_0000u64.to_le_bytes());
}

#[test]
fn a_shared_memory_is_refused() {
    let module = hostile::with_policy(1, "(i64.const 0)", "").replace(
        "(memory (export \"memory\") 1)",
        "(memory (export \"memory\") 1 1 shared)",
    );
    let error = refused(PluginKind::Scoring, &wasm(&module));
    // Refused by the parser (wasmtime is built without threads), before the export
    // check's own test for an unshared memory.
    assert_eq!(error.code(), "plugin_malformed", "{error}");
    assert!(error.to_string().contains("shared memories"), "{error}");
}

#[test]
fn the_cache_keeps_the_most_recently_used_modules() {
    let host = Host::new(Limits {
        cached_modules_max: 2,
        ..Limits::default()
    });
    let trap = wasm(&hostile::trap());
    let [a, b, c] = [16, 32, 48].map(|extra| hostile::padded_to(trap.clone(), trap.len() + extra));
    let first_a = host.compile(&a).unwrap();
    let first_b = host.compile(&b).unwrap();
    // A is used again, so B is the least recently used when C arrives.
    assert!(std::sync::Arc::ptr_eq(&first_a, &host.compile(&a).unwrap()));
    let first_c = host.compile(&c).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first_a, &host.compile(&a).unwrap()));
    assert!(std::sync::Arc::ptr_eq(&first_c, &host.compile(&c).unwrap()));
    assert!(!std::sync::Arc::ptr_eq(
        &first_b,
        &host.compile(&b).unwrap()
    ));
}

#[test]
fn a_second_table_is_refused() {
    let module = hostile::with_policy(1, "(i64.const 0)", "").replace(
        "(memory (export \"memory\") 1)",
        "(memory (export \"memory\") 1) (table 1 funcref) (table 1 funcref)",
    );
    let error = refused(PluginKind::Scoring, &wasm(&module));
    assert_eq!(error.code(), "plugin_malformed", "{error}");
    // Refused by the pooling allocator's per-instance limit, before the store's.
    assert!(error.to_string().contains("tables count"), "{error}");
}

/// Each shape of compile bomb is refused before compiling, in well under a second,
/// and the host then compiles and runs the default plugin as before.
#[test]
fn compile_bombs_are_refused_before_they_compile() {
    let host = host();
    for (shape, text) in hostile::compile_bombs() {
        let module = wasm(&text);
        let started = Instant::now();
        let error = host
            .conformance(PluginKind::Scoring, &module)
            .expect_err("a compile bomb is refused");
        assert_eq!(error.code(), "plugin_too_complex", "{shape}: {error}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{shape}: refused after {:?}",
            started.elapsed()
        );
    }
    let scoring = defaults::wasm(PluginKind::Scoring);
    host.conformance(PluginKind::Scoring, scoring)
        .expect("the default plugin passes");
}
