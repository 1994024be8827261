//! Builds the explorer's audit module (crate `blyan-audit`, the sdk's audit replay)
//! for wasm32-unknown-unknown, so that the server can embed it and serve it at
//! `/explorer/audit.wasm`: the normal `cargo build` of the server is all it takes. The
//! nested build is the default plugins' (`plugins/host/src/nested_build.rs`).

use std::path::PathBuf;

include!("../plugins/host/src/nested_build.rs");

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .join("..")
        .canonicalize()
        .expect("the workspace root exists");
    for watched in [
        "audit",
        "sdk/src",
        "sdk/Cargo.toml",
        "schemas/proto",
        "schemas/src",
        "schemas/build.rs",
        "plugins/host/src/nested_build.rs",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let [module] = nested_wasm_build(
        &workspace,
        "browser",
        "browser",
        &[("blyan-audit", "blyan_audit")],
        &[],
    )
    .try_into()
    .expect("one module");
    println!("cargo:rustc-env=BLYAN_AUDIT_WASM={}", module.display());
    // The binaries keep the workspace's line tables for backtraces, compressed in
    // place (std's backtraces read compressed sections): the release server was 78 MB
    // with them plain, 54 MB so (BENCHMARKS.md).
    println!("cargo:rustc-link-arg-bins=-Wl,--compress-debug-sections=zlib");
}
