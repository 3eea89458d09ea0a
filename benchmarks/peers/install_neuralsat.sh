#!/usr/bin/env bash
# Installs the peer verifier NeuralSAT (PyPI package `neuralsat`, CPU only) into its own
# virtual environment at $NEURALSAT_VENV (default /work/neuralsat-venv), for use through
# benchmarks/peers/neuralsat.sh (`verify bench --tool neuralsat='bash benchmarks/peers/neuralsat.sh
# {onnx} {vnnlib} {timeout} {result}'`).
#
#   bash benchmarks/peers/install_neuralsat.sh            # creates (or refreshes) the venv
#   NEURALSAT_VENV=$HOME/ns bash benchmarks/peers/install_neuralsat.sh
#
# Environment:
#   NEURALSAT_VENV    where the venv goes (default /work/neuralsat-venv)
#   NEURALSAT_PYTHON  the Python 3.10-3.13 to create it with (default: python3.11 on PATH, else
#                     /root/.pyenv/versions/3.11.7/bin/python3.11, else python3)
#   NEURALSAT_TORCH   the torch requirement (default torch==2.13.0+cpu: the CPU build; pip finds it
#                     on this machine's local wheel store. Elsewhere give pip PyTorch's CPU wheel
#                     index with --extra-index-url, e.g. through PIP_EXTRA_INDEX_URL)
#
# Why torchvision and torchaudio are removed again: neuralsat requires them, but the torchvision
# wheels on PyPI are built against the CUDA build of torch (their _C.so links libtorch_cuda.so),
# so with CPU torch `import torchvision` dies with "operator torchvision::nms does not exist".
# NeuralSAT itself only uses torchvision for the ONNX NonMaxSuppression operator (never in
# ACAS Xu-like fully connected networks) and never imports torchaudio. neuralsat.sh runs NeuralSAT
# with a stand-in `torchvision` module (any use of it raises); without the broken package a
# direct `python .../src/main.py` fails plainly (no module named torchvision) instead of with the
# nms error. `pip check` therefore reports the two as missing; that is expected.
#
# Gurobi: gurobipy (a neuralsat dependency) must be installed: NeuralSAT imports it
# unconditionally. Its size-limited pip licence (2000 variables/constraints) loads fine here.
# NeuralSAT's default strategy on ACAS Xu (5 inputs) is input splitting, which never builds a
# MIP, so the licence limit does not matter there. (Forcing hidden splitting with
# --force_split hidden crashes in NeuralSAT's own MIP builder on ACAS Xu's input Sub node, an
# AssertionError in add_sub.py, before Gurobi solves anything.)
set -euo pipefail

VENV="${NEURALSAT_VENV:-/work/neuralsat-venv}"
TORCH_REQ="${NEURALSAT_TORCH:-torch==2.13.0+cpu}"
NEURALSAT_REQ="neuralsat==0.2.17"

if [[ -n "${NEURALSAT_PYTHON:-}" ]]; then
    PY="$NEURALSAT_PYTHON"
elif command -v python3.11 >/dev/null 2>&1; then
    PY="$(command -v python3.11)"
elif [[ -x /root/.pyenv/versions/3.11.7/bin/python3.11 ]]; then
    PY=/root/.pyenv/versions/3.11.7/bin/python3.11
else
    PY=python3
fi

echo "install_neuralsat: creating $VENV with $PY" >&2
"$PY" -m venv "$VENV"
# one command, so that the resolver keeps the CPU torch and picks the torchvision/torchaudio that
# match it (with torch left free it would move to a newer CUDA torch for the newest torchvision)
"$VENV/bin/pip" install "$TORCH_REQ" "$NEURALSAT_REQ"
"$VENV/bin/pip" uninstall -y torchvision torchaudio

# smoke test: NeuralSAT's modules import with the stand-in torchvision, and torch is a CPU build
SRC="$VENV/lib/python$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')/site-packages/src"
[[ -f "$SRC/main.py" ]] || { echo "install_neuralsat: $SRC/main.py not found" >&2; exit 1; }
(cd "$SRC" && "$VENV/bin/python" - <<'EOF'
import sys, types, importlib.machinery
stub = types.ModuleType("torchvision")
stub.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
sys.modules["torchvision"] = stub
sys.path.insert(0, ".")
import torch
from helper.network.read_onnx import parse_onnx  # noqa: F401  (pulls in the onnx2pytorch ops)
from verifier.verifier import Verifier  # noqa: F401
print(f"install_neuralsat: ok (torch {torch.__version__}, cuda build: {torch.version.cuda is not None})")
EOF
)
