#!/usr/bin/env bash
# Runs every check and test: formatting, clippy with warnings as errors, then the unit,
# core and end-to-end tests (which start the real binaries, so those are built first).
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
# One feature set for every step (--workspace --all-targets everywhere): selecting
# fewer packages or targets changes feature unification and recompiles RocksDB's C++.
step cargo build --locked --workspace --all-targets
step cargo clippy --locked --workspace --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
step cargo test --locked --workspace 2>&1 | tee "$log"
# One closing line for the whole suite (the last of cargo's per-binary lines is often
# an empty doc-test run).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
