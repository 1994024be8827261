//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so no system
//! `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/blyan/v1/types.proto",
        "proto/blyan/v1/envelope.proto",
        "proto/blyan/v1/command.proto",
        "proto/blyan/v1/event.proto",
        "proto/blyan/v1/plugin.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new()
        // The columns of plugin inputs: a plugin decodes them as slices of its input
        // buffer, without a copy (see `blyan-plugin-pdk`).
        .bytes([
            ".blyan.v1.ShardingInput.node_keys",
            ".blyan.v1.ShardingInput.capabilities",
            ".blyan.v1.ScoringInput.measurement_counts",
            ".blyan.v1.ScoringInput.measurements",
            ".blyan.v1.RewardInput.node_keys",
            ".blyan.v1.RewardInput.scores",
        ])
        .compile_fds(descriptors)?;
    Ok(())
}
