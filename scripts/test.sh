#!/usr/bin/env bash
# Runs every check and test: formatting, clippy with warnings as errors, then the unit,
# core and end-to-end tests (which start the real binaries, so those are built first).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
# One feature set for every step (--all-targets everywhere), so RocksDB's C++ is
# compiled once, not once per step.
cargo build --locked --workspace --all-targets
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo test --locked --workspace
