#!/usr/bin/env bash
# Regenerates the gRPC stubs in src/styleserve/v1/ from protos/ (committed; tests/test_protos.py checks they match).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m grpc_tools.protoc -Iprotos --python_out=src --pyi_out=src --grpc_python_out=src \
  protos/styleserve/v1/styleserve.proto
