# Sourced by the scripts: create .venv (if needed) and install styleserve with the given extras.
# torch is pinned to 2.13.0. From PyPI alone that is the multi-GB CUDA build on Linux, so when the PyTorch CPU
# index answers within a few seconds it is added (pip then picks 2.13.0+cpu); where only PyPI (or a local
# mirror with a CPU wheel) is reachable, the plain pin is installed. STYLESERVE_TORCH_INDEX overrides the probe
# (an index URL, or empty for none); STYLESERVE_VENV_DRY_RUN=1 prints the pip command instead of running it;
# STYLESERVE_VENV_OFFLINE=1 fails instead of installing (the tests run scripts/demo.sh so).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
extras=$1
dry_run=${STYLESERVE_VENV_DRY_RUN:-0}

# The extra index for torch's CPU wheel, or nothing: probed only when the extras install torch.
torch_index_args() {
  local index
  if [ -n "${STYLESERVE_TORCH_INDEX+set}" ]; then
    index=$STYLESERVE_TORCH_INDEX
  elif [[ ",$extras," == *,export,* ]] && "$PY" - "$TORCH_CPU_INDEX/torch/" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="HEAD"), timeout=5).close()
except Exception:
    sys.exit(1)
EOF
  then
    index=$TORCH_CPU_INDEX
  else
    index=
  fi
  if [ -n "$index" ]; then
    echo "--extra-index-url $index"
  fi
}

if [ "$dry_run" = 1 ]; then
  # shellcheck disable=SC2046
  echo pip install -q -c constraints.txt $(torch_index_args) -e ".[$extras]"
  return 0 2>/dev/null || exit 0
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pyproject_hash=$(sha256sum pyproject.toml | cut -c1-16)
stamp=".venv/.installed-$pyproject_hash-$extras"
# Installed when a stamp of this pyproject.toml names every requested extra: scripts/test.sh installs a superset of
# scripts/demo.sh's extras, so the demo after the tests installs nothing and needs no network.
venv_has_extras() {
  local have want
  for have in .venv/.installed-"$pyproject_hash"-*; do
    [ -f "$have" ] || continue
    have=",${have#.venv/.installed-"$pyproject_hash"-},"
    for want in ${extras//,/ }; do
      [[ $have == *",$want,"* ]] || continue 2
    done
    return 0
  done
  return 1
}
if ! venv_has_extras; then
  if [ "${STYLESERVE_VENV_OFFLINE:-0}" = 1 ]; then
    echo "scripts/_venv.sh: .venv lacks styleserve[$extras] for this pyproject.toml (STYLESERVE_VENV_OFFLINE=1)" >&2
    exit 1
  fi
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # shellcheck disable=SC2046
  .venv/bin/python -m pip install -q -c constraints.txt $(torch_index_args) -e ".[$extras]"
  touch "$stamp"
fi
