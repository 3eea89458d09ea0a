#!/bin/bash
# VNN-COMP: install_tool.sh v1
# Installs the verifier and its dependencies into a virtual environment inside the checkout
# (.vnncomp-venv; another place with VERIFIER_VENV=DIR). Needs python3 (3.10 or newer) and pip
# access. PIP_ARGS adds pip options (e.g. an --index-url for a CUDA build of torch).
set -euo pipefail
VERSION="${1:-}"
if [ "$VERSION" != "v1" ]; then
    echo "install_tool.sh: expected the version argument v1, got '$VERSION'" >&2
    exit 1
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VERIFIER_VENV:-$ROOT/.vnncomp-venv}"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip ${PIP_ARGS:-}
"$VENV/bin/python" -m pip install ${PIP_ARGS:-} torch==2.13.0 -e "$ROOT"
"$VENV/bin/python" -c "import verifier, torch; print('verifier installed; torch', torch.__version__, 'cuda', torch.cuda.is_available())"
