//! Builds the default plugins for wasm32-unknown-unknown so that `defaults.rs` can
//! embed them: the normal `cargo build` of the server is all it takes.
//!
//! This runs a nested cargo on the same workspace and lockfile, with its own target
//! directory (so it never waits on the outer build's lock) and without the outer
//! build's compiler wrappers and flags (so `cargo clippy` and `cargo build` share one
//! plugin build). Paths are remapped so the module bytes don't depend on where the
//! checkout or the cargo home lies.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const PLUGINS: [(&str, &str); 3] = [
    ("sharding", "blyan_plugin_sharding"),
    ("scoring", "blyan_plugin_scoring"),
    ("reward", "blyan_plugin_reward"),
];

const WASM_TARGET: &str = "wasm32-unknown-unknown";

include!("src/codegen.rs");

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists");
    for watched in [
        "plugins/pdk",
        "plugins/sharding",
        "plugins/scoring",
        "plugins/reward",
        "schemas/proto",
        "schemas/src",
        "schemas/build.rs",
        "plugins/host/src/codegen.rs",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                workspace.join(dir)
            }
        })
        .unwrap_or_else(|| workspace.join("target"))
        .join("plugins");
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let mut rustflags = vec![format!("--remap-path-prefix={}=blyan", workspace.display())];
    rustflags.extend(PLUGIN_RUSTFLAGS.map(String::from));
    if let Some(cargo_home) = cargo_home {
        rustflags.push(format!(
            "--remap-path-prefix={}=cargo",
            cargo_home.display()
        ));
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args([
            "build",
            "--locked",
            "--target",
            WASM_TARGET,
            "--profile",
            "plugin",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for (name, _) in PLUGINS {
        command.args(["-p", &format!("blyan-plugin-{name}")]);
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
    command.env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f"));

    let status = command
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build the default plugins: {e}"));
    assert!(
        status.success(),
        "building the default plugins for {WASM_TARGET} failed; if the target is missing, run \
         `rustup target add {WASM_TARGET}` (scripts/setup.sh does)"
    );
    for (name, lib) in PLUGINS {
        let wasm = target_dir
            .join(WASM_TARGET)
            .join("plugin")
            .join(format!("{lib}.wasm"));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        println!(
            "cargo:rustc-env=BLYAN_DEFAULT_{}_WASM={}",
            name.to_uppercase(),
            wasm.display()
        );
    }
}
