#!/usr/bin/env bash
# Regenerates the gRPC stubs in src/styleserve/v1/ from protos/ (committed; tests/test_protos.py checks they match).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m grpc_tools.protoc -Iprotos --python_out=src --pyi_out=src --grpc_python_out=src \
  protos/styleserve/v1/styleserve.proto
# KServe Open Inference Protocol (package `inference`) -> src/styleserve/inference/, messages only (server/oip.py
# registers its handlers), in a descriptor pool of their own: tritonclient registers the same `inference.*` names
# in the default pool, and one process (a test, an embedding app) may import both.
"$PY" -m grpc_tools.protoc -Iprotos --python_out=src/styleserve --pyi_out=src/styleserve protos/inference/grpc_service.proto
sed -i 's/_descriptor_pool\.Default()/_descriptor_pool.DescriptorPool()/' src/styleserve/inference/grpc_service_pb2.py
