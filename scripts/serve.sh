#!/usr/bin/env bash
# Starts the ledger server on the embedded default: RocksDB under ./blyan-data, the
# built-in dev genesis (its role keys are written to ./blyan-data/dev-keys/), listening
# on 127.0.0.1:7420. Extra arguments go to `blyan-ledger serve` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release --locked -p blyan-ledger -- serve "$@"
