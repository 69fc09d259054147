# Sourced by the scripts: create .venv (if needed) and install styleserve with the given extras.
# torch is pinned to 2.13.0 (a local CPU wheel); any other spec would pull GBs of CUDA packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
extras=$1
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-$extras"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[$extras]"
  touch "$stamp"
fi
