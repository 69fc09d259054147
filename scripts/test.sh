#!/usr/bin/env bash
# The tests: lint, type check and the test suite (real exports, real onnxruntime sessions).
source "$(dirname "$0")/_venv.sh" export,server,openvino,client,dev
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
