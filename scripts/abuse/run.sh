#!/bin/bash
# Re-runs the abuse findings of «Harden the server against abuse» against a server
# binary and its CLI, and prints one line per figure (BENCHMARKS.md).
#   scripts/abuse/run.sh target/release/blyan-ledger target/release/blyan
set -u
L=$(realpath "$1"); B=$(realpath "$2")
HERE=$(dirname "$(realpath "$0")")
M=$(mktemp -d)
python3 "$HERE/modules.py" "$M" "$(dirname "$HERE")/../target/plugins/wasm32-unknown-unknown/plugin/blyan_plugin_reward.wasm"

start() {  # data dir
    PORT=$((20000 + RANDOM % 20000)); URL=http://127.0.0.1:$PORT
    RUST_LOG=warn RUST_BACKTRACE=0 "$L" serve --data-dir "$1" --listen 127.0.0.1:$PORT >/dev/null 2>>"$1.err" &
    PID=$!
    for _ in $(seq 200); do curl -sf "$URL/healthz" >/dev/null && return; sleep 0.1; done
    echo "the server did not start: $(tail -3 "$1.err")"; exit 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null; }
rss() { awk '/^VmRSS/ {printf "%d MiB", $2/1024}' "/proc/$PID/status"; }
propose8() {  # 8 proposals of just under 4 MiB, 4 from each of two keys
    for k in 1 2; do for i in 1 2 3 4; do
        "$B" --server "$URL" governance propose --key "$D/dev-keys/governance-$k.json" --kind reward \
            --wasm "$M/pad-$k-$i.wasm" --activation-round $((i + 1)) >/dev/null 2>&1 || echo "proposal $k-$i refused"
    done; done
}

D=$M/f3; start "$D"
echo "F3/F5 server: RSS $(rss) at start"
T0=$(date +%s.%N)
OUT=$("$B" --server "$URL" governance propose --key "$D/dev-keys/governance-1.json" --kind scoring \
      --wasm "$M/large.wasm" --activation-round 1 2>&1 | tail -1)
echo "F3 a 3.6 MB module under the shape bounds: answered in $(echo "$(date +%s.%N) - $T0" | bc | cut -c1-5) s, server RSS then $(rss): $OUT"
ok=0; refused=0; last=""
for i in $(seq 100); do
    "$B" keygen --out "$M/n$i.json" >/dev/null
    if "$B" --server "$URL" register --key "$M/n$i.json" --gpu-model L4 --vram-mib 1024 --experts 0 \
        --endpoint https://n >/dev/null 2>"$M/err"; then ok=$((ok + 1)); else refused=$((refused + 1)); last=$(tail -1 "$M/err"); fi
done
echo "F5 100 registrations from one source: $ok accepted, $refused refused${last:+; the last: $last}"
stop

D=$M/f4; start "$D"
before=$(rss); propose8
echo "F4 8 proposals of 4 MiB: RSS $before -> $(rss), log $(du -sm "$D/log" | cut -f1) MiB"
stop; start "$D"
echo "F4 after a restart on that log: RSS $(rss)"
stop

D=$M/f12; start "$D"; propose8
python3 "$HERE/connections.py" "$URL" "$PID"
curl -s -o /dev/null -w "healthz throughout: %{http_code} in %{time_total} s\n" "$URL/healthz"
stop
rm -rf "$M"
