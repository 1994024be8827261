// A nested `cargo build` of this workspace for wasm32-unknown-unknown, run by a build
// script: the default plugins' (plugins/host/build.rs) and the explorer's audit
// module's (server/build.rs), each of which `include!`s this file.
//
// It uses its own target directory (so it never waits on the outer build's lock),
// none of the outer build's compiler wrappers and flags (so `cargo clippy` and `cargo
// build` share one nested build), and remaps paths so the module bytes don't depend on
// where the checkout or the cargo home lies.

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Builds `packages` with `profile` into `target/<dir>/` and returns the path of each
/// `lib` (a crate name with underscores) as a `.wasm`.
fn nested_wasm_build(
    workspace: &std::path::Path,
    dir: &str,
    profile: &str,
    packages: &[(&str, &str)],
    rustflags: &[&str],
) -> Vec<std::path::PathBuf> {
    use std::env;
    use std::path::{Path, PathBuf};
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|target| {
            if target.is_absolute() {
                target
            } else {
                workspace.join(target)
            }
        })
        .unwrap_or_else(|| workspace.join("target"))
        .join(dir);
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let mut flags = vec![format!("--remap-path-prefix={}=blyan", workspace.display())];
    flags.extend(rustflags.iter().map(|flag| flag.to_string()));
    if let Some(cargo_home) = cargo_home {
        flags.push(format!(
            "--remap-path-prefix={}=cargo",
            cargo_home.display()
        ));
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "build",
            "--locked",
            "--target",
            WASM_TARGET,
            "--profile",
            profile,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in packages {
        command.args(["-p", package]);
    }
    for inherited in [
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "CLIPPY_ARGS",
    ] {
        command.env_remove(inherited);
    }
    command.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));

    let status = command
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build {packages:?}: {e}"));
    assert!(
        status.success(),
        "building {packages:?} for {WASM_TARGET} failed; if the target is missing, run \
         `rustup target add {WASM_TARGET}` (scripts/setup.sh does)"
    );
    packages
        .iter()
        .map(|(_, lib)| {
            let wasm = target_dir
                .join(WASM_TARGET)
                .join(profile)
                .join(format!("{lib}.wasm"));
            assert!(wasm.exists(), "{} was not built", wasm.display());
            wasm
        })
        .collect()
}
