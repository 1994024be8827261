#!/usr/bin/env bash
# Installs what a fresh machine lacks to build Blyan Ledger. Idempotent: it does
# nothing when everything is already there.
#   - libclang-dev: RocksDB's Rust bindings are generated with bindgen.
#   - the wasm32-unknown-unknown target: the policy plugins and the explorer's audit
#     module are built for it.
#   - promtool (Debian's prometheus package): the tests check the alert rules and
#     the /metrics text with it.
#   - PostgreSQL (Debian's postgresql package): the read model's tests start a
#     throwaway server of their own.
#   - Chromium (Debian's chromium package): the explorer page's test renders it
#     headless.
#   - Python's venv (python3-venv where the interpreter lacks it): the Python SDK's
#     tests run in target/python, with the SDK's dependencies from PyPI.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q "install ok installed"; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi

if ! command -v promtool >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
fi

if ! command -v chromium >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi

# Python (the Python node's SDK and its tests): a virtual environment in
# target/python with the SDK installed editable, its dependencies and its dev extra.
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$root/target/python/bin/python"
if ! "$python" -c "import blyan, nacl, google.protobuf, blake3, numpy, safetensors, websockets, grpc_tools" 2>/dev/null; then
    if ! python3 -c "import venv, ensurepip" 2>/dev/null; then
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
    fi
    python3 -m venv "$root/target/python"
    "$python" -m pip install --quiet --disable-pip-version-check -e "$root/sdk/python[dev]"
fi
