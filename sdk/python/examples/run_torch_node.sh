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
# SDK and torch into target/python-torch. PyPI's torch brings the CUDA libraries, a
# download of several GB; TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the
# CPU-only build instead.
set -euo pipefail
cd "$(dirname "$0")/../../.."
rounds="${1:-2}"
ledger=target/release/blyan-ledger
[ -x "$ledger" ] || ledger=target/debug/blyan-ledger
[ -x "$ledger" ] || { echo "build blyan-ledger first: cargo build --release -p blyan-ledger" >&2; exit 1; }
venv=target/python-torch
if ! "$venv/bin/python" -c "import torch, blyan" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch
    "$venv/bin/pip" install --quiet -e sdk/python
fi
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$ledger" demo --nodes 3 --validators 3 --rounds "$rounds" --external-nodes 1 \
    --listen "127.0.0.1:$port" --data-dir "$work/demo" > "$work/demo.out" 2> "$work/demo.err" &
demo=$!
trap 'kill -INT $demo 2>/dev/null || true; wait $demo 2>/dev/null || true' EXIT
"$venv/bin/python" -m blyan keygen --out "$work/node.json" > /dev/null
up=
for _ in $(seq 300); do
    if curl -sf "http://127.0.0.1:$port/v1/head" > /dev/null; then up=1; break; fi
    sleep 0.1
done
[ -n "$up" ] || { cat "$work/demo.err" >&2; echo "the demo's server did not start" >&2; exit 1; }
"$venv/bin/python" -m blyan --server "http://127.0.0.1:$port" node --key "$work/node.json" \
    --trainer sdk/python/examples/torch_node.py:train --rounds "$rounds" --receipts "$work/receipts"
# The demo's table is whole once its rounds are done; then Ctrl-C is its clean end.
for _ in $(seq 600); do
    grep -q "^the rounds are done" "$work/demo.err" && break
    sleep 0.1
done
kill -INT $demo
wait $demo
trap - EXIT
cat "$work/demo.out"
echo "the receipts are in $work/receipts; the demo's log, blobs and server log in $work/demo"
