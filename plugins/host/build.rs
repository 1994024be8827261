//! Builds the default plugins for wasm32-unknown-unknown so that `defaults.rs` can
//! embed them: the normal `cargo build` of the server is all it takes. The nested
//! build (`src/nested_build.rs`) runs cargo on the same workspace and lockfile.

use std::path::PathBuf;

const PLUGINS: [(&str, &str); 3] = [
    ("blyan-plugin-sharding", "blyan_plugin_sharding"),
    ("blyan-plugin-scoring", "blyan_plugin_scoring"),
    ("blyan-plugin-reward", "blyan_plugin_reward"),
];

include!("src/codegen.rs");
include!("src/nested_build.rs");

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
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
        "plugins/host/src/nested_build.rs",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let modules = nested_wasm_build(&workspace, "plugins", "plugin", &PLUGINS, &PLUGIN_RUSTFLAGS);
    for ((package, _), wasm) in PLUGINS.iter().zip(modules) {
        println!(
            "cargo:rustc-env=BLYAN_DEFAULT_{}_WASM={}",
            package.trim_start_matches("blyan-plugin-").to_uppercase(),
            wasm.display()
        );
    }
}
