//! A plugin author's path, end to end: the example plugin of plugins/README.md, in a
//! crate of its own outside this workspace, built with `blyan plugin build` and checked
//! with `blyan plugin test`, as the README tells an author to.

use std::path::{Path, PathBuf};
use std::process::Command;

use blyan_e2e::binary;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lies in the workspace")
        .to_path_buf()
}

/// The fenced block of `readme` that starts with the line `first`.
fn block(readme: &str, first: &str) -> String {
    let start = readme
        .find(first)
        .unwrap_or_else(|| panic!("the README has a block starting {first:?}"));
    let end = start + readme[start..].find("```").expect("the block is closed");
    readme[start..end].to_string()
}

/// Runs the `blyan` CLI in `dir` with a clean cargo environment: the test suite's
/// build may have set a compiler wrapper that an author's build would not have.
fn blyan(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary("blyan"))
        .args(args)
        .current_dir(dir)
        // Kept between runs, so that only the first one compiles the dependencies.
        .env(
            "CARGO_TARGET_DIR",
            workspace().join("target").join("plugin-author"),
        )
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("run blyan");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_readme_plugin_builds_and_passes_the_conformance_check() {
    let readme = std::fs::read_to_string(workspace().join("plugins/README.md")).unwrap();
    let manifest = block(&readme, "# Cargo.toml");
    let source = block(&readme, "// src/lib.rs");
    // The README's crate depends on a checkout beside it; this one is that checkout.
    let dependency = r#"path = "../blyan-ledger/plugins/pdk""#;
    assert!(manifest.contains(dependency), "{manifest}");
    let pdk = workspace().join("plugins/pdk");
    let manifest = manifest.replace(dependency, &format!("path = {:?}", pdk.display()));

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.path().join("src/lib.rs"), source).unwrap();
    // The workspace's lockfile pins the dependencies to the versions this repository
    // builds with (cargo keeps the entries that still apply).
    std::fs::copy(
        workspace().join("Cargo.lock"),
        dir.path().join("Cargo.lock"),
    )
    .unwrap();

    let (built, stdout, stderr) = blyan(
        dir.path(),
        &["--json", "plugin", "build", "--manifest-path", "Cargo.toml"],
    );
    assert!(built, "blyan plugin build failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("JSON: {stdout}"));
    let wasm_path = report["wasm"].as_str().expect("the module's path");
    assert!(wasm_path.ends_with("mean_scoring.wasm"), "{wasm_path}");
    let wasm = std::fs::read(wasm_path).unwrap();
    assert_eq!(&wasm[..4], b"\0asm");
    assert_eq!(report["bytes"], wasm.len());
    let hash = hex::encode(blake3::hash(&wasm).as_bytes());
    assert_eq!(report["hash"], hash.as_str());

    // The conformance check the server runs at proposal time.
    let (conformant, stdout, stderr) = blyan(
        dir.path(),
        &["--json", "plugin", "test", "--kind", "scoring", wasm_path],
    );
    assert!(conformant, "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["conformant"], true);
    assert_eq!(report["hash"], hash.as_str());
    assert!(report["fuel_used"].as_u64().unwrap() > 0, "{report}");

    // Offered a reward input, the scoring plugin traps (the input is of another kind),
    // and the check says so.
    let (conformant, stdout, stderr) = blyan(
        dir.path(),
        &["--json", "plugin", "test", "--kind", "reward", wasm_path],
    );
    assert!(!conformant, "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["conformant"], false);
    assert_eq!(report["code"], "plugin_trap", "{report}");
}
