//! Hostile and broken plugins, as WebAssembly text. Shared by the sandbox's tests and
//! the server's end-to-end governance tests (which include this file by path).
//!
//! Each module but the import one exports the whole ABI, so that what is tested is the
//! one hostile thing it does.

// Each including test crate uses the modules its tests need.
#![allow(dead_code)]

/// A module with the ABI's exports whose `blyan_policy` body is `policy`, with
/// `abi_version` as its version and `data` at offset 2048 of its memory.
pub fn with_policy(abi_version: i32, policy: &str, data: &str) -> String {
    format!(
        r#"(module
  (memory (export "memory") 1)
  (data (i32.const 2048) "{data}")
  (func (export "blyan_abi_version") (result i32) (i32.const {abi_version}))
  (func (export "blyan_alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "blyan_policy") (param i32 i32) (result i64) {policy}))"#
    )
}

/// Loops forever: stopped by fuel.
pub fn infinite_loop() -> String {
    with_policy(1, "(loop $spin (br $spin)) (unreachable)", "")
}

/// Grows its memory page by page until it is stopped.
pub fn memory_bomb() -> String {
    with_policy(
        1,
        "(loop $grow (drop (memory.grow (i32.const 16))) (br $grow)) (unreachable)",
        "",
    )
}

/// Asks for 4 GiB of memory when it is instantiated.
pub fn memory_bomb_at_start() -> String {
    with_policy(1, "(i64.const 0)", "").replace(
        "(memory (export \"memory\") 1)",
        "(memory (export \"memory\") 65536)",
    )
}

/// Traps at once.
pub fn trap() -> String {
    with_policy(1, "(unreachable)", "")
}

/// Claims a 4 GiB output.
pub fn huge_output() -> String {
    with_policy(1, "(i64.const 0xffffffff)", "")
}

/// Claims an output that runs past the end of its memory.
pub fn output_outside_memory() -> String {
    // ptr 65000, len 10000: within the output limit, past the 64 KiB memory.
    with_policy(1, "(i64.const 0x0000fde800002710)", "")
}

/// Answers every input with an empty `RewardOutput`: the right kind, but no amounts,
/// which breaks the invariant that every node gets one.
pub fn invariant_breaker() -> String {
    // PolicyOutput { reward (field 3): RewardOutput {} } = 0x1a 0x00, at 2048.
    with_policy(1, "(i64.const 0x0000080000000002)", "\\1a\\00")
}

/// Imports a WASI function.
pub fn wasi_import() -> String {
    r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "blyan_abi_version") (result i32) (i32.const 1))
  (func (export "blyan_alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "blyan_policy") (param i32 i32) (result i64) (i64.const 0)))"#
        .to_string()
}

/// Speaks ABI version 2.
pub fn wrong_abi_version() -> String {
    with_policy(2, "(i64.const 0)", "")
}

/// Lacks `blyan_alloc`.
pub fn missing_export() -> String {
    with_policy(1, "(i64.const 0)", "").replace("(export \"blyan_alloc\") ", "")
}

/// Not a WebAssembly module at all, though it starts like one.
pub fn malformed() -> Vec<u8> {
    b"\0asm\x01\0\0\0this is not a section".to_vec()
}

/// A valid module of `size` bytes: an empty ABI module padded with a custom section.
pub fn padded_to(minimal: Vec<u8>, size: usize) -> Vec<u8> {
    // Custom section: id 0, u32 LEB size, name "pad" (len 3), payload.
    let mut module = minimal;
    let header = 1 + 5 + 1 + 3;
    let payload = size - module.len() - header;
    let section_len = (1 + 3 + payload) as u32;
    module.push(0);
    for i in 0..5 {
        let byte = ((section_len >> (7 * i)) & 0x7f) as u8;
        module.push(if i < 4 { byte | 0x80 } else { byte });
    }
    module.push(3);
    module.extend_from_slice(b"pad");
    module.resize(size, 0);
    module
}

/// A function with `locals` i64 locals and `branches` `br_if`s, as WebAssembly text:
/// the shape whose compile time grows as their product.
fn costly_function(locals: usize, branches: usize) -> String {
    let declared = "i64 ".repeat(locals);
    let branch = "(br_if 0 (i32.const 0)) ";
    format!(
        "(func (local {declared}) (block {}))",
        branch.repeat(branches)
    )
}

/// Straight-line code with no branches, nearly as large as a module may be: four
/// functions of 130,000 additions each, 3.6 MB in all. It passes the shape check, and
/// its conformance check takes about 5 s and 220 MiB (a dev build of the server).
pub fn large_bodies() -> String {
    let add = "(local.set 0 (i64.add (local.get 0) (i64.const 1))) ";
    let function = format!("(func (local i64) {})", add.repeat(130_000));
    let functions = function.repeat(4);
    with_policy(1, "(unreachable)", "").replacen("(module", &format!("(module {functions}"), 1)
}

/// Compile bombs, one per bound of the shape check: the second compiles in about 6 s
/// and the third in about 9 s without it; the first declares more locals than any
/// plugin needs.
pub fn compile_bombs() -> Vec<(&'static str, String)> {
    let bomb = |functions: usize, locals: usize, branches: usize| {
        let extra = costly_function(locals, branches).repeat(functions);
        with_policy(1, "(unreachable)", "").replacen("(module", &format!("(module {extra}"), 1)
    };
    vec![
        ("many locals", bomb(1, 20_000, 10)),
        ("locals times branches", bomb(1, 5_000, 20_000)),
        ("summed over functions", bomb(100, 2_000, 2_000)),
    ]
}
