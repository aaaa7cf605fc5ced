#!/usr/bin/env bash
# Install afd_nb with its dev tools. Keeps an existing torch (e.g. the user's CUDA build); on a machine
# without torch it installs torch 2.13.0 first (the CPU wheel on this project's machines; elsewhere set
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu so that no multi-GB CUDA build is pulled in).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install -q "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
"$PY" -m pip install -q -e ".[dev]"
"$PY" -c "import torch, afd_nb; print(f'afd_nb {afd_nb.__version__} installed (torch {torch.__version__})')"
