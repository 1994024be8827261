#!/usr/bin/env bash
# Starts the ledger server on the embedded default: RocksDB under ./blyan-data, the
# built-in dev genesis (its role keys are written to ./blyan-data/dev-keys/), listening
# on 127.0.0.1:7420. Extra arguments go to `blyan-ledger serve` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The server and the `blyan` CLI in one release build: README.md's examples use both
# (target/release/blyan-ledger and target/release/blyan).
cargo build --release --locked -p blyan-ledger -p blyan-cli
exec "${CARGO_TARGET_DIR:-target}/release/blyan-ledger" serve "$@"
