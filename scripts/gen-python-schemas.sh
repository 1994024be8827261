#!/usr/bin/env bash
# Regenerates the Python SDK's protobuf modules (sdk/python/src/blyan/v1) from
# schemas/proto with grpcio-tools' protoc (the SDK's dev extra, installed into
# target/python by scripts/setup.sh). The SDK's tests fail while they are stale.
set -euo pipefail
cd "$(dirname "$0")/.."
python=target/python/bin/python
find sdk/python/src/blyan/v1 -name '*_pb2.py*' -delete
"$python" -m grpc_tools.protoc -I schemas/proto --python_out=sdk/python/src \
    --pyi_out=sdk/python/src schemas/proto/blyan/v1/*.proto
