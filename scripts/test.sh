#!/usr/bin/env bash
# Runs every check and test: formatting, clippy with warnings as errors (during the
# build), then the unit, core and end-to-end tests (which start the real binaries, so
# those are built first).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each step says how long it took, so a slow CI run shows where its time went.
step() {
  local started=$SECONDS
  "$@"
  echo "step took $((SECONDS - started)) s: $*" >&2
}
step scripts/setup.sh
step cargo fmt --all -- --check
# Clippy lints the workspace crates inside the one build the tests use, exactly as
# `cargo clippy --workspace --all-targets -- -D warnings` does (same driver, same
# arguments), but without `cargo check`'s second build of every dependency: that one
# compiled RocksDB's C++ a second time (its build script's own dependencies differ
# between check and build), about 10 minutes on 2 cores.
export RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# One feature set for every step (--workspace --all-targets everywhere): selecting
# fewer packages or targets changes feature unification and recompiles RocksDB's C++.
step cargo build --locked --workspace --all-targets
log=$(mktemp)
trap 'rm -f "$log"' EXIT
step cargo test --locked --workspace 2>&1 | tee "$log"
# One closing line for the whole suite (the last of cargo's per-binary lines is often
# an empty doc-test run).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
