#!/bin/bash
# VNN-COMP: run_instance.sh v1 CATEGORY ONNX_FILE VNNLIB_FILE RESULTS_FILE TIMEOUT
# Runs the verifier (on the GPU when torch sees one; in prepare_instance.sh's warm worker when
# one answers) and leaves the VNN-COMP result file at
# RESULTS_FILE: sat with the counterexample, unsat, unknown, timeout or error. The Python of
# install_tool.sh's environment is used, or VERIFIER_PYTHON when set.
set -uo pipefail
VERSION="${1:-}"; CATEGORY="${2:-}"; ONNX="${3:-}"; VNNLIB="${4:-}"; RESULTS="${5:-}"; TIMEOUT="${6:-}"
if [ "$VERSION" != "v1" ] || [ -z "$RESULTS" ] || [ -z "$TIMEOUT" ]; then
    echo "usage: run_instance.sh v1 CATEGORY ONNX_FILE VNNLIB_FILE RESULTS_FILE TIMEOUT" >&2
    exit 1
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${VERIFIER_PYTHON:-$ROOT/.vnncomp-venv/bin/python}"
if [ ! -x "$PY" ]; then
    echo "run_instance.sh: no Python at $PY: run install_tool.sh v1 first, or set VERIFIER_PYTHON" >&2
    echo "error" > "$RESULTS"
    exit 1
fi
for f in ONNX VNNLIB; do  # the competition may hand over gzipped files
    path="${!f}"
    if [ ! -f "$path" ] && [ -f "$path.gz" ]; then
        tmp="$(mktemp -d)/$(basename "$path")"
        gunzip -c "$path.gz" > "$tmp"
        printf -v "$f" '%s' "$tmp"
    fi
done
# shellcheck source=worker.sh
source "$ROOT/benchmarks/vnncomp/worker.sh"
# prepare_instance.sh's worker, through the client script under python -S (it starts faster
# than the full command line; a cold run if the worker does not answer)
LAUNCH=("$PY" -m verifier.cli)
if [ "${VERIFIER_WORKER:-on}" != "off" ] && [ -S "$WORKER_SOCKET" ]; then
    LAUNCH=("$PY" -S "$ROOT/verifier/warm/client_script.py" "$WORKER_SOCKET")
fi
"${LAUNCH[@]}" "$ONNX" "$VNNLIB" --timeout "$TIMEOUT" --out "$RESULTS" --device auto
code=$?
# the verdict is in the file (exit codes 0, 10, 20, 30); anything else also wrote 'error' there
if [ ! -s "$RESULTS" ]; then
    echo "error" > "$RESULTS"
fi
if [ "$code" -eq 0 ] || [ "$code" -eq 10 ] || [ "$code" -eq 20 ] || [ "$code" -eq 30 ]; then
    exit 0
fi
exit 1
