#!/usr/bin/env bash
# Runs the PyTorch node (examples/torch_node.py) in real rounds beside Rust nodes:
# `blyan-ledger demo` serves a local network (3 candle nodes, 3 candle validators) that
# waits for one external node, and this node joins it with the PyTorch trainer. Each
# round the node trains the round's expert, commits and reveals its delta, and prints
# its verified receipt as one JSON line: the delta's score (the held-out loss it
# removed, in billionths) and its payout.
#
#   sdk/python/examples/run_torch_node.sh [ROUNDS]
#
# It needs a built blyan-ledger (target/release, else target/debug) and installs the
# SDK and torch into target/python-torch (torch is a large download).
set -euo pipefail
cd "$(dirname "$0")/../../.."
rounds="${1:-2}"
ledger=target/release/blyan-ledger
[ -x "$ledger" ] || ledger=target/debug/blyan-ledger
[ -x "$ledger" ] || { echo "build blyan-ledger first: cargo build --release -p blyan-ledger" >&2; exit 1; }
venv=target/python-torch
if ! "$venv/bin/python" -c "import torch, blyan" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch -e sdk/python
fi
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$ledger" demo --nodes 3 --validators 3 --rounds "$rounds" --external-nodes 1 \
    --listen "127.0.0.1:$port" --data-dir "$work/demo" > "$work/demo.out" &
demo=$!
trap 'kill -INT $demo 2>/dev/null || true; wait $demo 2>/dev/null || true' EXIT
"$venv/bin/python" -m blyan keygen --out "$work/node.json" > /dev/null
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/v1/head" > /dev/null && break
    sleep 0.1
done
"$venv/bin/python" -m blyan --server "http://127.0.0.1:$port" node --key "$work/node.json" \
    --trainer sdk/python/examples/torch_node.py:train --rounds "$rounds" --receipts "$work/receipts"
cat "$work/demo.out"
echo "the receipts are in $work/receipts"
